//! Real-time scheduling and locked memory for the heartbeat thread.
//!
//! The design says the heartbeat never waits on the dataplane: a dataplane at 100 % CPU
//! must not delay an advert or the Master_Down timer (RFC 5798 §6.4.2), or the backup sees
//! a dead master that is merely starved. So the VRRP thread runs `SCHED_FIFO` (it preempts
//! every normal thread as soon as it is runnable) and memory is locked (a page fault on a
//! swapped-out or not-yet-touched page cannot stall it).
//!
//! Both can fail where privileges are missing (a container without `CAP_SYS_NICE` /
//! `CAP_IPC_LOCK`, an RT-throttled cgroup): the errors are typed so that the caller logs
//! them and runs on, slower to react under load but still correct.

use nix::errno::Errno;
use nix::sys::mman::{MlockAllFlags, mlockall};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RealtimeError {
    #[error("SCHED_FIFO priority {priority} is outside {min}..={max}")]
    InvalidPriority { priority: i32, min: i32, max: i32 },
    #[error("cannot switch the thread to SCHED_FIFO: {errno} ({})", errno.desc())]
    Scheduler { errno: Errno },
    #[error("cannot lock memory (mlockall): {errno} ({})", errno.desc())]
    LockMemory { errno: Errno },
}

impl RealtimeError {
    /// A missing privilege (`EPERM`, e.g. in an unprivileged container) rather than a bug.
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            RealtimeError::Scheduler {
                errno: Errno::EPERM
            } | RealtimeError::LockMemory {
                errno: Errno::EPERM
            }
        )
    }
}

/// The valid `SCHED_FIFO` priorities on this system (1..=99 on Linux).
pub fn fifo_priority_range() -> (i32, i32) {
    // SAFETY: sched_get_priority_min/max only read their integer argument.
    unsafe {
        (
            libc::sched_get_priority_min(libc::SCHED_FIFO),
            libc::sched_get_priority_max(libc::SCHED_FIFO),
        )
    }
}

/// Switch the *calling thread* to `SCHED_FIFO` at `priority`. Other threads of the process
/// keep their policy (on Linux, `sched_setscheduler(0, …)` acts on the calling thread).
pub fn set_fifo_scheduler(priority: i32) -> Result<(), RealtimeError> {
    let (min, max) = fifo_priority_range();
    if !(min..=max).contains(&priority) {
        return Err(RealtimeError::InvalidPriority { priority, min, max });
    }
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call; pid 0
    // names the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    Errno::result(result)
        .map(drop)
        .map_err(|errno| RealtimeError::Scheduler { errno })
}

/// The calling thread's scheduling policy and priority (`SCHED_FIFO` is
/// `libc::SCHED_FIFO`).
pub fn current_scheduler() -> Result<(i32, i32), Errno> {
    // SAFETY: pid 0 names the calling thread; sched_getscheduler takes no pointers.
    let policy = Errno::result(unsafe { libc::sched_getscheduler(0) })?;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param the call writes into.
    Errno::result(unsafe { libc::sched_getparam(0, &mut param) })?;
    Ok((policy, param.sched_priority))
}

/// Lock every current and future page of the *process* in RAM (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`). This is process-wide by nature: the dataplane's memory is locked too,
/// so the box must have the RAM for it (an appliance has no swap anyway; what this buys
/// is no major faults on the heartbeat's path).
pub fn lock_memory() -> Result<(), RealtimeError> {
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .map_err(|errno| RealtimeError::LockMemory { errno })
}

/// Both, for the heartbeat thread: returns each step's result, so that the caller can log
/// each failure and go on.
pub fn enter_realtime(priority: i32) -> (Result<(), RealtimeError>, Result<(), RealtimeError>) {
    (set_fifo_scheduler(priority), lock_memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_is_validated_before_any_syscall() {
        let (min, max) = fifo_priority_range();
        assert_eq!((min, max), (1, 99));
        assert_eq!(
            set_fifo_scheduler(0),
            Err(RealtimeError::InvalidPriority {
                priority: 0,
                min,
                max
            })
        );
        assert!(matches!(
            set_fifo_scheduler(100),
            Err(RealtimeError::InvalidPriority { .. })
        ));
    }

    #[test]
    fn permission_errors_are_recognisable() {
        assert!(
            RealtimeError::Scheduler {
                errno: Errno::EPERM
            }
            .is_permission_denied()
        );
        assert!(
            RealtimeError::LockMemory {
                errno: Errno::EPERM
            }
            .is_permission_denied()
        );
        assert!(
            !RealtimeError::LockMemory {
                errno: Errno::ENOMEM
            }
            .is_permission_denied()
        );
    }
}
