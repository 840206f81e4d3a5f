//! SCHED_FIFO and mlockall on a thread. In its own test binary (its own process): mlockall
//! is process-wide and must not leak into the other tests.

use tandem_net::realtime::{current_scheduler, enter_realtime, set_fifo_scheduler};

fn locked_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmLck:"))
        .expect("VmLck in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_heartbeat_thread_runs_fifo_with_memory_locked() {
    let (policy_before, _) = current_scheduler().unwrap();
    let heartbeat = std::thread::spawn(|| {
        let (scheduler, memory) = enter_realtime(20);
        scheduler.expect("SCHED_FIFO (tests run as root)");
        memory.expect("mlockall (tests run as root)");
        let (policy, priority) = current_scheduler().unwrap();
        // Memory allocated after mlockall(MCL_FUTURE) is locked as it is touched.
        let buffer = vec![1u8; 4 << 20];
        let locked = locked_kib();
        std::hint::black_box(&buffer);
        (policy, priority, locked)
    });
    let (policy, priority, locked) = heartbeat.join().unwrap();
    assert_eq!(policy, libc::SCHED_FIFO);
    assert_eq!(priority, 20);
    assert!(locked >= 4096, "only {locked} KiB locked");
    // Only that thread changed policy.
    assert_eq!(current_scheduler().unwrap().0, policy_before);
    assert_ne!(policy_before, libc::SCHED_FIFO);

    // SAFETY: munlockall takes no arguments; it undoes the lock for the rest of this binary.
    unsafe { libc::munlockall() };
}

#[test]
fn invalid_priorities_are_refused() {
    assert!(set_fifo_scheduler(0).is_err());
    assert!(set_fifo_scheduler(1000).is_err());
}
