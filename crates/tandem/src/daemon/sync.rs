//! The pair's sync link inside tandemd (`docs/sync.md`): started from `node.sync` after the
//! dataplane and the heartbeat, it follows the heartbeat's role, and the versions it receives
//! from the active box are run here.
//!
//! Three small pieces of glue live here and nowhere else:
//! - **the role bridge**: the heartbeat publishes `tandem_ha::Role`, the link wants
//!   `tandem_sync::Role`. The two crates do not know each other (each is tested on its own),
//!   so a task copies one watch into the other;
//! - **running received versions**: on `SyncEvent::VersionReceived` the version is already
//!   stored; [`RunningConfig::run_replicated`](super::running_config::RunningConfig::run_replicated)
//!   swaps it into the dataplane and makes it current, then the link is told it runs;
//! - **handovers the peer asks for**: on `SyncEvent::HandoverAsked` this box hands over as
//!   `tandemctl failover` does, and answers.

use super::Daemon;
use super::ha::Pair;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tandem_config::NodeConfig;
use tandem_config::store::Store;
use tandem_dataplane::Dataplane;
use tandem_sync::{
    AuditLog, DiskStore, NewAuditEntry, SyncEvent, SyncHandle, SyncLink, SyncSettings,
};
use tokio::sync::watch;

/// Why the sync link could not start. tandemd refuses to start then: a pair whose link is
/// silently off would fail over to stale state.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("node.sync: this box's certificate and key cannot be read or made: {0}")]
    Identity(std::io::Error),
    #[error("node.sync: the config store cannot be opened for the sync link: {0}")]
    Store(#[from] tandem_config::store::StoreError),
    #[error("the sync link cannot start: {0}")]
    Link(std::io::Error),
}

/// Starts the link if `node.sync` names a peer; `None` on a box without one.
pub async fn start(
    node: &NodeConfig,
    state_dir: &Path,
    dataplane: &Dataplane,
    pair: &Pair,
    audit: AuditLog,
) -> Result<Option<Arc<SyncHandle>>, StartError> {
    let Some(settings) = SyncSettings::from_node(node, state_dir).map_err(StartError::Identity)?
    else {
        return Ok(None);
    };
    // The link reads and writes the same files as RunningConfig's store (each write is an
    // atomic rename), through a handle of its own.
    let store = DiskStore {
        store: Store::open(state_dir)?,
        audit,
    };
    let handle = SyncLink::start(settings, dataplane.state(), store, bridge_role(pair.role()))
        .await
        .map_err(StartError::Link)?;
    tracing::info!(
        fingerprint = %handle.fingerprint(),
        "sync link running; pin this fingerprint in the peer's node.sync.peer_fingerprint"
    );
    Ok(Some(Arc::new(handle)))
}

/// The heartbeat's role as the link wants it, following every change.
fn bridge_role(mut ha: watch::Receiver<tandem_ha::Role>) -> watch::Receiver<tandem_sync::Role> {
    let (tx, rx) = watch::channel(convert(*ha.borrow_and_update()));
    tokio::spawn(async move {
        // Ends when the heartbeat's sender is gone (tandemd stopping); the link then keeps
        // the last role, which is what it should do while the process winds down.
        while ha.changed().await.is_ok() {
            let role = convert(*ha.borrow_and_update());
            if tx.send(role).is_err() {
                return; // the link stopped
            }
        }
    });
    rx
}

fn convert(role: tandem_ha::Role) -> tandem_sync::Role {
    match role {
        tandem_ha::Role::Active => tandem_sync::Role::Active,
        tandem_ha::Role::Passive => tandem_sync::Role::Passive,
    }
}

/// Carries out what the link tells tandemd, until the link stops.
pub async fn follow(daemon: Arc<Daemon>, sync: Arc<SyncHandle>, audit: AuditLog) {
    let Some(mut events) = sync.events() else {
        tracing::error!(
            "the sync link's events were taken already; received versions will not run"
        );
        return;
    };
    while let Some(event) = events.recv().await {
        match event {
            SyncEvent::VersionReceived(meta) => {
                let mut running = daemon.running.lock().await;
                match running.run_replicated(&meta).await {
                    Ok(applied) => {
                        tracing::info!(version = %applied.version, changed = applied.changed, notes = ?applied.notes, "sync: running the active box's config version");
                        sync.config_running();
                    }
                    // The link asks again at the next connect; meanwhile the status shows
                    // the two boxes on different versions.
                    Err(e) => {
                        tracing::error!(version = %meta.id, error = %e, "sync: the active box's config version cannot run here; the old one keeps running")
                    }
                }
            }
            SyncEvent::BranchKept(branch) => {
                tracing::warn!(
                    branch = %branch.name,
                    winner = %branch.winner,
                    versions = branch.versions.len(),
                    "sync: after a partition the active box's config history won; this branch is kept for review (tandemctl versions, the console)"
                );
            }
            // The link logs these itself; here only for debugging tandemd's side.
            SyncEvent::PeerConnected(peer) => {
                tracing::debug!(peer = %peer.node, role = peer.role.as_str(), schema = peer.schema, "sync: peer connected");
            }
            SyncEvent::PeerDisconnected { reason } => {
                tracing::debug!(%reason, "sync: peer disconnected");
            }
            // A handover waits up to Master_Down_Interval and a second: not in this loop.
            SyncEvent::HandoverAsked { id, reason } => {
                tokio::spawn(hand_over_to_peer(
                    daemon.clone(),
                    sync.clone(),
                    audit.clone(),
                    id,
                    reason,
                ));
            }
        }
    }
}

/// The passive peer asked this box to hand over (its console's failover drill hands back so):
/// the same graceful handover as `tandemctl failover`, recorded in the audit log.
async fn hand_over_to_peer(
    daemon: Arc<Daemon>,
    sync: Arc<SyncHandle>,
    audit: AuditLog,
    id: u64,
    reason: String,
) {
    let result = daemon.pair.failover().await;
    let detail = match &result {
        Ok(m) => format!("asked by the peer over the sync link ({reason}): {m}"),
        Err(e) => format!("asked by the peer over the sync link ({reason}), refused: {e}"),
    };
    tracing::info!(%detail, "sync: handover");
    let _ = audit.record(NewAuditEntry {
        at_unix_ms: super::unix_ms(SystemTime::now()),
        who: "peer".into(),
        from: "sync link".into(),
        action: "ha.failover".into(),
        detail,
        config_version: None,
    });
    sync.answer_handover(id, result.err());
}
