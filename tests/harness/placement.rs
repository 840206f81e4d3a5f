//! CPU placement for a load test on one machine: the two boxes as two machines have them.
//!
//! When lb-a, its load and lb-b share every CPU and the load fills them, the kernel hands
//! packet processing to ksoftirqd (an ordinary thread), and the lab's bridge then forwards
//! lb-a's adverts more than Master_Down_Interval late: lb-b takes the VIP although lb-a is
//! alive. That is the lab's shared wire starving, not the heartbeat waiting on the dataplane
//! (docs/performance.md, "Saturation"). Two machines each have their own CPUs and NIC, so here
//! lb-b gets the last CPU to itself, and receive packet steering (RPS) moves the processing of
//! the frames lb-a sends, and of those lb-b receives, onto that CPU — the work a switch and
//! lb-b's NIC do. Everything else (lb-a, the load) runs on the other CPUs.

use crate::PairLab;
use crate::netns::Netns;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use std::io::Write;
use std::process::Stdio;

/// The CPUs of lb-a and its load; lb-b has the remaining one.
#[derive(Clone)]
pub struct TwoMachines {
    busy: CpuSet,
}

impl TwoMachines {
    /// Places both running boxes of `lab`. None on a machine of one CPU (the boxes share it).
    pub fn place(lab: &mut PairLab) -> Option<TwoMachines> {
        let allowed = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap_or(false))
            .collect();
        let Some((&passive_cpu, busy_cpus)) = cpus.split_last().filter(|(_, r)| !r.is_empty())
        else {
            eprintln!("placement: one CPU, the two boxes share it");
            return None;
        };
        let mut busy = CpuSet::new();
        for &c in busy_cpus {
            busy.set(c).expect("a CPU number in range");
        }
        let mut passive = CpuSet::new();
        passive.set(passive_cpu).expect("a CPU number in range");
        pin_process(lab.daemon_mut(0).proc().pid(), &busy);
        pin_process(lab.daemon_mut(1).proc().pid(), &passive);
        let mask = cpu_mask(passive_cpu);
        let port = PairLab::port(0);
        write_sysfs(
            lab.switch.netns(),
            &format!("/sys/class/net/{port}/queues/rx-0/rps_cpus"),
            &mask,
        );
        write_sysfs(
            &lab.boxes[1],
            "/sys/class/net/eth0/queues/rx-0/rps_cpus",
            &mask,
        );
        eprintln!(
            "placement: lb-b and the frames lb-a sends on CPU {passive_cpu}, lb-a and the load on {busy_cpus:?}"
        );
        Some(TwoMachines { busy })
    }

    /// Pins the calling thread to lb-a's CPUs (for the threads that make the load).
    pub fn pin_current_thread(&self) {
        sched_setaffinity(Pid::from_raw(0), &self.busy).expect("pin a load thread");
    }
}

/// Pins every thread of `pid` (threads it starts later inherit it).
fn pin_process(pid: Pid, set: &CpuSet) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads");
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            // A thread that ended meanwhile is no error.
            let _ = sched_setaffinity(Pid::from_raw(tid), set);
        }
    }
}

/// The sysfs CPU bitmap of one CPU: hex, in comma-separated 32-bit groups.
fn cpu_mask(cpu: usize) -> String {
    let groups = cpu / 32 + 1;
    (0..groups)
        .rev()
        .map(|g| {
            let bits: u32 = if g == cpu / 32 { 1 << (cpu % 32) } else { 0 };
            format!("{bits:08x}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `value` to `path` as seen inside `ns` (`ip netns exec` mounts that namespace's
/// sysfs; a thread that only entered the namespace would still see the host's devices).
fn write_sysfs(ns: &Netns, path: &str, value: &str) {
    let mut child = ns
        .command("tee")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run tee");
    writeln!(child.stdin.take().expect("stdin"), "{value}").expect("write to tee");
    let status = child.wait().expect("tee");
    assert!(
        status.success(),
        "cannot write {value} to {path} in {}",
        ns.name()
    );
}

#[cfg(test)]
mod tests {
    use super::cpu_mask;

    #[test]
    fn masks_name_one_cpu_in_32_bit_groups() {
        assert_eq!(cpu_mask(1), "00000002");
        assert_eq!(cpu_mask(31), "80000000");
        assert_eq!(cpu_mask(33), "00000002,00000000");
    }
}
