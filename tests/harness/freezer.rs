//! A wedged process, made with the kernel's cgroup freezer: some threads of a process stop
//! dead (as if stuck in a deadlock or an endless loop) while the others run on. tandemd's
//! dataplane runtime can be wedged this way while its heartbeat and watchdog threads keep
//! running, which SIGSTOP cannot do (it stops every thread).
//!
//! cgroup v1 (a `freezer` hierarchy) takes single threads in its `tasks` file; cgroup v2 takes
//! them in a threaded child (`cgroup.threads`, `cgroup.freeze`). The guard thaws and removes
//! its cgroups when dropped — before the process is killed, since a frozen task only dies
//! once thawed.

use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Frozen {
    kind: Kind,
    threads: Vec<(u32, String)>,
}

enum Kind {
    /// The freezer cgroup.
    V1 { dir: PathBuf, root: PathBuf },
    /// The process's own domain cgroup, the threaded child holding the frozen threads, and
    /// where the process was before.
    V2 {
        domain: PathBuf,
        frozen: PathBuf,
        running: PathBuf,
        original: PathBuf,
        pid: Pid,
    },
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

/// The threads of `pid` with their names (`comm`).
pub fn threads(pid: Pid) -> Vec<(u32, String)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}")) {
        let entry = entry.unwrap();
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        out.push((tid, comm.trim().to_owned()));
    }
    out
}

impl Frozen {
    /// Freezes every thread of `pid` whose name does not start with one of `keep`, and
    /// returns once the kernel reports them frozen. Panics (the test fails) where neither
    /// cgroup freezer is available.
    pub fn threads_except(pid: Pid, keep: &[&str], name: &str) -> Frozen {
        let threads: Vec<(u32, String)> = threads(pid)
            .into_iter()
            .filter(|(_, comm)| !keep.iter().any(|k| comm.starts_with(k)))
            .collect();
        assert!(!threads.is_empty(), "no thread of {pid} to freeze");
        let v1 = Path::new("/sys/fs/cgroup/freezer");
        let kind = if v1.join("tasks").exists() {
            let dir = v1.join(name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            for (tid, _) in &threads {
                write(&dir.join("tasks"), &tid.to_string());
            }
            write(&dir.join("freezer.state"), "FROZEN");
            wait_until(|| {
                std::fs::read_to_string(dir.join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            });
            Kind::V1 {
                dir,
                root: v1.to_owned(),
            }
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let original = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("the process's cgroup v2 path");
            let original = Path::new("/sys/fs/cgroup").join(original.trim_start_matches('/'));
            let domain = Path::new("/sys/fs/cgroup").join(name);
            std::fs::create_dir(&domain)
                .unwrap_or_else(|e| panic!("create {}: {e}", domain.display()));
            write(&domain.join("cgroup.procs"), &pid.to_string());
            let frozen = domain.join("frozen");
            let running = domain.join("running");
            for d in [&frozen, &running] {
                std::fs::create_dir(d).unwrap();
                write(&d.join("cgroup.type"), "threaded");
            }
            for (tid, _) in crate::freezer::threads(pid) {
                let into = if threads.iter().any(|(t, _)| *t == tid) {
                    &frozen
                } else {
                    &running
                };
                write(&into.join("cgroup.threads"), &tid.to_string());
            }
            write(&frozen.join("cgroup.freeze"), "1");
            wait_until(|| {
                std::fs::read_to_string(frozen.join("cgroup.events"))
                    .is_ok_and(|s| s.contains("frozen 1"))
            });
            Kind::V2 {
                domain,
                frozen,
                running,
                original,
                pid,
            }
        } else {
            panic!(
                "no cgroup freezer: neither /sys/fs/cgroup/freezer (v1) nor cgroup v2 is mounted"
            );
        };
        Frozen { kind, threads }
    }

    /// The frozen threads, `(tid, name)`.
    pub fn threads(&self) -> &[(u32, String)] {
        &self.threads
    }
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "the freezer did not settle");
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        match &self.kind {
            Kind::V1 { dir, root } => {
                let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
                for (tid, _) in &self.threads {
                    let _ = std::fs::write(root.join("tasks"), tid.to_string());
                }
                let _ = std::fs::remove_dir(dir);
            }
            Kind::V2 {
                domain,
                frozen,
                running,
                original,
                pid,
            } => {
                let _ = std::fs::write(frozen.join("cgroup.freeze"), "0");
                let _ = std::fs::write(original.join("cgroup.procs"), pid.to_string());
                for d in [frozen, running, domain] {
                    let _ = std::fs::remove_dir(d);
                }
            }
        }
    }
}
