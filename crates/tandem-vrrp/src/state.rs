//! The states of a virtual router (RFC 5798 §6.4) and why it moves between them.

use std::fmt;
use std::net::IpAddr;

/// RFC 5798 §6.4's three states. RFC 9568 renames Master to Active; the rules are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// §6.4.1: not running; waiting for a Startup event.
    Initialize,
    /// §6.4.2: monitoring the Master; holds no virtual address.
    Backup,
    /// §6.4.3: holds the virtual addresses and advertises.
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        })
    }
}

/// Why a Master gives its role up in the make-before-break way (docs/vrrp.md): it sends
/// priority 0 and keeps the virtual addresses until it hears the new Master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepDownCause {
    /// `shutdown()`: ends in Initialize.
    Shutdown,
    /// A fault track object went down: ends in Backup.
    Fault,
    /// Another member of the sync group left Master: ends in Backup.
    SyncGroup,
}

/// Why a state changed, for the log line and the role-change counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// RFC 5798 §6.4.1: Startup of a router that does not own the addresses.
    Startup,
    /// RFC 5798 §6.4.1: Startup of (or fault cleared on) the address owner, priority 255.
    AddressOwner,
    /// RFC 5798 §6.4.2: the Master_Down_Timer fired: no Master was heard for
    /// Master_Down_Interval, or Skew_Time passed after a priority 0 advert.
    MasterDown,
    /// RFC 5798 §6.4.3: an advert with a higher priority, or an equal priority from a
    /// higher primary address.
    Preempted { by: IpAddr, priority: u8 },
    /// RFC 5798 §6.4.2: Shutdown event in Backup.
    Shutdown,
    /// A make-before-break step-down finished: `new_master` announced itself, or nobody
    /// did within Master_Down_Interval (`None`).
    SteppedDown {
        cause: StepDownCause,
        new_master: Option<IpAddr>,
    },
    /// Another member of the sync group became Master.
    SyncGroup,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => f.write_str("address owner"),
            Reason::MasterDown => f.write_str("master down timer fired"),
            Reason::Preempted { by, priority } => {
                write!(f, "advert from {by} with priority {priority}")
            }
            Reason::Shutdown => f.write_str("shutdown"),
            Reason::SteppedDown { cause, new_master } => {
                let cause = match cause {
                    StepDownCause::Shutdown => "shutdown",
                    StepDownCause::Fault => "fault",
                    StepDownCause::SyncGroup => "sync group",
                };
                match new_master {
                    Some(m) => write!(f, "{cause}: handed over to {m}"),
                    None => write!(
                        f,
                        "{cause}: no new master heard within master down interval"
                    ),
                }
            }
            Reason::SyncGroup => f.write_str("sync group member became master"),
        }
    }
}

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleChange {
    pub from: State,
    pub to: State,
    pub reason: Reason,
}

impl fmt::Display for RoleChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} ({})", self.from, self.to, self.reason)
    }
}
