//! Starting the heartbeat and talking to it: [`Ha::start`] spawns its thread and returns a
//! [`HaHandle`]. Every call on the handle returns at once: inputs travel over an unbounded
//! channel and the status is a published snapshot, so the dataplane never waits on the
//! heartbeat nor the heartbeat on the dataplane.

use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::config::HaConfig;
use crate::instance::{Command, Instance};
use crate::notify::Notifier;
use crate::status::{HaStatus, Role};
use tandem_vrrp::TrackState;

/// Why the heartbeat could not start, apply a config, or take a command.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("invalid HA configuration: {0}")]
    Config(String),
    #[error("router `{router}`: {message}")]
    Router { router: String, message: String },
    #[error("interface {interface}: {message}")]
    Interface { interface: String, message: String },
    /// The interface has no address to advertise from yet (an IPv6 link-local appears
    /// only once the link has carrier). The router starts when it has one.
    #[error("interface {interface} is not ready: {message}")]
    NotReady { interface: String, message: String },
    #[error("cannot start the heartbeat thread: {0}")]
    Thread(String),
    #[error("this box is not active; a handover starts on the active box")]
    NotActive,
    #[error("the heartbeat has stopped")]
    Stopped,
}

/// The heartbeat: VRRPv3 on its own OS thread.
pub struct Ha;

impl Ha {
    /// Starts the heartbeat thread in the calling thread's network namespace and waits
    /// until it is running: the thread enters `SCHED_FIFO` and locks memory (logging and
    /// going on without them where that is not permitted), removes VIPs that a crashed
    /// predecessor left on its interfaces, opens its sockets, reads the tracked links,
    /// probes the gateway once, and starts every router (RFC 5798 §6.4.1 Startup).
    ///
    /// Blocks for at most the gateway probe's timeout plus a few system calls; from async
    /// code, call it from `spawn_blocking`.
    pub fn start(config: HaConfig) -> Result<HaHandle, HaError> {
        config.check().map_err(HaError::Config)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (role_tx, role_rx) = watch::channel(Role::Passive);
        let status = Arc::new(ArcSwap::from_pointee(HaStatus::starting()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let published = status.clone();
        // The notify runner is spawned first: a thread created by a SCHED_FIFO thread
        // would inherit its policy, and notify commands must never compete with adverts.
        let notifier = Notifier::spawn().map_err(|e| HaError::Thread(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("tandem-ha".into())
            .spawn(move || {
                let realtime = enter_realtime(config.realtime_priority);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(HaError::Thread(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut instance =
                        match Instance::start(config, role_tx, published, notifier, realtime).await
                        {
                            Ok(i) => i,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                    let _ = ready_tx.send(Ok(()));
                    instance.run(command_rx).await;
                });
            })
            .map_err(|e| HaError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(HaHandle {
                commands,
                role: role_rx,
                status,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(HaError::Thread(
                    "the heartbeat thread ended while starting".into(),
                ))
            }
        }
    }
}

fn enter_realtime(priority: Option<i32>) -> bool {
    let Some(priority) = priority else {
        return false;
    };
    let (fifo, lock) = tandem_net::realtime::enter_realtime(priority);
    for (what, result) in [("SCHED_FIFO", &fifo), ("mlockall", &lock)] {
        match result {
            Ok(()) => {}
            Err(e) if e.is_permission_denied() => {
                warn!(%e, "heartbeat runs without {what}: not permitted here; a saturated CPU may delay adverts")
            }
            Err(e) => error!(%e, "heartbeat runs without {what}"),
        }
    }
    let ok = fifo.is_ok() && lock.is_ok();
    if ok {
        info!(
            priority,
            "heartbeat thread runs SCHED_FIFO with memory locked"
        );
    }
    ok
}

/// The running heartbeat.
///
/// Dropping it stops the heartbeat thread at once, **like a crash**: no priority 0
/// advert, the VIPs stay where they are (the peer takes over after Master_Down_Interval,
/// and the next start removes them). Call [`HaHandle::shutdown`] for a graceful stop.
pub struct HaHandle {
    commands: mpsc::UnboundedSender<Command>,
    role: watch::Receiver<Role>,
    status: Arc<ArcSwap<HaStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl HaHandle {
    /// The pair's role, as it changes. Active when this box's sync group is Master.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Reports a tracked object reported by tandemd: `track::pool(NAME)` (down when no
    /// server of the pool is up), `track::DATAPLANE`. Objects no router tracks are
    /// remembered (a later `apply` may track them) and otherwise ignored. Never blocks.
    pub fn set_track(&self, name: &str, state: TrackState) {
        let _ = self
            .commands
            .send(Command::SetTrack(name.to_owned(), state));
    }

    /// Graceful handover to the peer: every Master advertises priority 0 and keeps its
    /// VIPs until the peer has announced itself (make before break), then this box stays
    /// passive at priority 1 until it becomes active again (the peer failing, or a handover
    /// from the peer), so a preempting box does not take the role straight back.
    pub fn failover_now(&self) -> Result<(), HaError> {
        if *self.role.borrow() != Role::Active {
            return Err(HaError::NotActive);
        }
        self.commands
            .send(Command::FailoverNow)
            .map_err(|_| HaError::Stopped)
    }

    /// A snapshot of everything the heartbeat shows.
    pub fn status(&self) -> Arc<HaStatus> {
        self.status.load_full()
    }

    /// Applies a reloaded configuration: routers whose settings are unchanged keep running
    /// (state, timers, VIPs); changed routers are recreated (a changed Master gives its
    /// VIPs up and the new router is elected again); removed routers give their VIPs up.
    pub async fn apply(&self, config: HaConfig) -> Result<(), HaError> {
        config.check().map_err(HaError::Config)?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Apply(Box::new(config), tx))
            .map_err(|_| HaError::Stopped)?;
        rx.await.map_err(|_| HaError::Stopped)?
    }

    /// Graceful stop: each Master advertises priority 0 and keeps its VIPs until the new
    /// Master is heard (at most Master_Down_Interval), then removes them; then the thread
    /// ends.
    pub async fn shutdown(mut self) -> Result<(), HaError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(tx))
            .map_err(|_| HaError::Stopped)?;
        let _ = rx.await;
        if let Some(thread) = self.thread.take() {
            // The thread ends right after answering.
            let _ = thread.join();
        }
        Ok(())
    }
}

impl Drop for HaHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Closing the command channel ends the loop without touching anything.
            let (closed, _) = mpsc::unbounded_channel();
            self.commands = closed;
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_across_tandemd_tasks() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<HaHandle>();
        shared::<HaStatus>();
    }

    #[test]
    fn a_hand_built_config_is_checked_before_any_thread_starts() {
        let r = crate::RouterConfig::new("a", "eth9", 1, vec![]);
        assert!(matches!(
            Ha::start(HaConfig::new(vec![r])),
            Err(HaError::Config(_))
        ));
    }
}
