//! What the console needs from the box it runs on. tandemd implements [`Backend`]
//! (`crates/tandem/src/daemon/admin_backend.rs`); the tests of this crate implement it in
//! memory. Every config change goes through [`Backend::commit`], which is tandemd's single
//! commit path (validate → dataplane swap → store commit → replicate).

use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use tandem_config::store::{KeptBranch, Version, VersionMeta};
use tandem_config::{Diagnostics, SharedConfig};
use tandem_dataplane::StatsSnapshot;
use tandem_sync::{AuditEntry, NewAuditEntry};

/// This box as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BoxStatus {
    pub node: String,
    /// `standalone`, `active` or `passive`.
    pub role: String,
    /// False when something this box watches is down (the dataplane, a tracked pool).
    pub healthy: bool,
    /// Why it is not healthy, or what it watches.
    pub health_detail: Vec<String>,
    pub management: String,
    pub uptime_seconds: u64,
    pub config: VersionMeta,
    pub routers: Vec<RouterView>,
    pub last_failover: Option<FailoverEvent>,
    pub peer: Option<PeerView>,
}

/// One VRRP router of this box.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RouterView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub vips: Vec<String>,
    /// `master`, `backup`, `initialize`.
    pub state: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub advert_interval_ms: u64,
    pub preempt: bool,
    /// Who holds the VIPs: `this box`, or the peer's address.
    pub holder: String,
    pub tracks: Vec<TrackView>,
    pub faults: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TrackView {
    pub name: String,
    pub up: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FailoverEvent {
    pub at_unix_ms: u64,
    pub router: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// The other box as this one knows it (sync link, VRRP adverts).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerView {
    pub node: String,
    pub address: String,
    /// Its management listener, for a link.
    pub management: String,
    pub role: String,
    /// The sync link is up.
    pub connected: bool,
    pub config_version: Option<String>,
    pub same_config: bool,
    pub sync_lag_ms: u64,
}

/// One check of the readiness panel.
#[derive(Clone, Debug, Serialize)]
pub struct ReadinessCheck {
    pub name: String,
    pub ok: bool,
    pub reason: String,
}

/// Can the passive box take over right now?
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Which box was judged (the passive one).
    pub node: String,
    pub checks: Vec<ReadinessCheck>,
}

impl Readiness {
    pub fn from_checks(node: String, checks: Vec<ReadinessCheck>) -> Readiness {
        Readiness {
            ready: checks.iter().all(|c| c.ok),
            node,
            checks,
        }
    }
}

/// What a failover drill measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    /// Each handover: who gave the VIP to whom, who probed, the longest gap seen.
    pub steps: Vec<DrillStep>,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DrillStep {
    pub from: String,
    pub to: String,
    pub prober: String,
    pub target: String,
    pub probes: u64,
    pub failed: u64,
    /// The longest time without a successful probe, in milliseconds.
    pub gap_ms: u64,
    pub handover_ms: u64,
}

/// Who commits a change, from where, and why (the version's author and reason, and the audit
/// entry).
#[derive(Clone, Debug)]
pub struct Change {
    pub who: String,
    pub from: String,
    /// A stable word for the audit log: `service.create`, `server.drain`, …
    pub action: String,
    /// For people: "drain web/web1".
    pub reason: String,
}

/// Why a commit did not happen. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the config is invalid")]
    Invalid(Diagnostics),
    /// The edit was made on the passive box; the message names the active one.
    #[error("{0}")]
    Passive(String),
    /// The dataplane cannot run it (an address in use, say).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// This box's status.
    async fn status(&self) -> BoxStatus;
    /// The dataplane's counters now (cheap: atomics).
    fn stats(&self) -> StatsSnapshot;
    /// The running version (the same `Arc` until the next commit).
    async fn current(&self) -> Arc<Version>;
    /// The checks `tandemctl check` makes, with this box's node part.
    async fn check(&self, shared: &SharedConfig) -> Result<(), Diagnostics>;
    /// Validates, runs and commits `shared` as a new version; records nothing in the audit log
    /// (the console does, knowing who and from where).
    async fn commit(
        &self,
        shared: SharedConfig,
        change: &Change,
    ) -> Result<VersionMeta, CommitError>;
    async fn versions(&self) -> Result<Vec<VersionMeta>, String>;
    async fn version(&self, epoch: u64, n: u64) -> Result<Version, String>;
    async fn branches(&self) -> Result<Vec<KeptBranch>, String>;
    /// Graceful handover to the peer; says what happened.
    async fn failover(&self) -> Result<String, String>;
    /// Hands over and back while the box without the VIP probes it.
    async fn drill(&self) -> Result<DrillReport, String>;
    async fn readiness(&self) -> Readiness;
    fn audit_record(&self, entry: NewAuditEntry);
    /// The newest `limit` entries, newest last.
    fn audit_recent(&self, limit: usize) -> Vec<AuditEntry>;
}
