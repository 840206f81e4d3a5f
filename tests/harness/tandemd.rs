//! A real tandemd process inside a namespace, with its own config file, state directory and
//! control socket.

use crate::{Netns, Proc, bins, wait_for};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub struct Tandemd {
    proc: Proc,
    dir: tempfile::TempDir,
    ns_name: String,
}

impl Tandemd {
    /// Writes `config` to a file and starts tandemd on it inside `ns`; returns once its
    /// control socket answers.
    pub fn start(ns: &Netns, config: &str) -> Tandemd {
        let dir = tempfile::tempdir().expect("temp dir for tandemd");
        std::fs::write(dir.path().join("tandem.yaml"), config).expect("write config");
        Tandemd::start_in(ns, dir)
    }

    /// Starts tandemd with the files already in `dir` (`tandem.yaml`, and `state/` if a
    /// previous run left one).
    pub fn start_in(ns: &Netns, dir: tempfile::TempDir) -> Tandemd {
        Tandemd::start_wrapped(ns, dir, &[])
    }

    /// Starts tandemd as `start_in` does, through `wrapper` (a program and its arguments that
    /// exec the rest, e.g. `prlimit --nofile=1024:4096 --`), so the PID is still tandemd's.
    pub fn start_wrapped(ns: &Netns, dir: tempfile::TempDir, wrapper: &[&str]) -> Tandemd {
        let mut cmd = match wrapper.split_first() {
            None => ns.command(bins::tandemd()),
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).args(["ip", "netns", "exec", ns.name()]);
                c.arg(bins::tandemd());
                c
            }
        };
        cmd.arg("--config")
            .arg(dir.path().join("tandem.yaml"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--control-socket")
            .arg(dir.path().join("tandemd.sock"))
            .env("RUST_LOG", "info");
        let log = dir.path().join("tandemd.log");
        let proc = Proc::spawn("tandemd", cmd, &log);
        let mut d = Tandemd {
            proc,
            dir,
            ns_name: ns.name().to_owned(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        wait_for(
            "tandemd to answer on its control socket",
            Duration::from_secs(30),
            || {
                assert!(
                    self.proc.is_running(),
                    "tandemd exited during start:\n{}",
                    self.proc.log()
                );
                self.ctl(&["status", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// Runs `tandemctl ARGS` against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        std::process::Command::new(bins::tandemctl())
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run tandemctl")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("tandemd.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tandem.yaml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn netns_name(&self) -> &str {
        &self.ns_name
    }

    /// The parsed `tandemctl status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        assert!(
            out.status.success(),
            "tandemctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }

    /// Kills the daemon (SIGKILL) and hands back its directory, so it can be restarted on the
    /// same state.
    pub fn crash(mut self) -> tempfile::TempDir {
        self.proc.kill();
        let Tandemd { dir, .. } = self;
        dir
    }
}
