//! The console's view of tandemd: [`AdminBackend`] implements `tandem_admin::Backend` over the
//! running config (every console change goes through [`RunningConfig::apply`], the one commit
//! path), the dataplane's counters, the heartbeat and, once it runs, the sync link.
//!
//! It also runs two small tasks:
//! - **the admin password hand-over** (`docs/console.md`): the first-boot wizard and the serial
//!   console's menu write the admin password's argon2id hash to
//!   `<state-dir>/admin-password.argon2`. When that file changes (or at the first start) and
//!   this box writes the config, the hash becomes user `admin`'s in `shared.users` (created
//!   with the role `admin` if missing), committed as a version like any change. So the wizard's
//!   password logs in to the console, a password reset on the serial console works, and the
//!   user replicates to the peer;
//! - **alerts** (`tandem_admin::alerts`): failover, server down or up, config committed,
//!   certificate expiring, sync link down or lagging, watched once a second.

use super::running_config::{Refusal, RunningConfig};
use super::{Daemon, unix_ms};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tandem_admin::alerts::{Alert, AlertSender};
use tandem_admin::{
    Backend, BoxStatus, Change, CommitError, DrillReport, DrillStep, FailoverEvent, PeerView,
    Readiness, ReadinessCheck, RouterView, TrackView,
};
use tandem_config::store::{CommitInfo, KeptBranch, Version, VersionMeta};
use tandem_config::{Config, Diagnostics, Role, SCHEMA_VERSION, SharedConfig, User};
use tandem_dataplane::{Health, StatsSnapshot};
use tandem_sync::{AuditEntry, AuditLog, NewAuditEntry, SyncHandle};

/// Where the wizard leaves the admin password's hash (`docs/image.md`).
pub const ADMIN_PASSWORD_FILE: &str = "admin-password.argon2";

pub struct AdminBackend {
    daemon: Arc<Daemon>,
    audit: AuditLog,
    /// The sync link, once tandemd runs one.
    sync: Option<Arc<SyncHandle>>,
    cache: Mutex<Option<Arc<Version>>>,
}

impl AdminBackend {
    pub fn new(daemon: Arc<Daemon>, audit: AuditLog, sync: Option<Arc<SyncHandle>>) -> Self {
        AdminBackend {
            daemon,
            audit,
            sync,
            cache: Mutex::new(None),
        }
    }

    /// Whether this box may change the shared config: the sync link's view when there is one
    /// (the check every edit path shares, [`RunningConfig::check_writer`]); without it, the
    /// console still refuses edits on a passive box, by the heartbeat's role.
    fn is_writer(&self, running: &RunningConfig) -> Result<(), String> {
        if self.sync.is_some() {
            return running.check_writer().map_err(|e| e.to_string());
        }
        if self.daemon.pair.role_name() == "passive" {
            let active = self
                .daemon
                .pair
                .status()
                .and_then(|s| s.routers.iter().find_map(|r| r.master))
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            return Err(format!(
                "this box is passive: the config is edited on the active box{active}"
            ));
        }
        Ok(())
    }

    async fn node_config(&self) -> tandem_config::NodeConfig {
        self.daemon.running.lock().await.node().clone()
    }
}

#[async_trait]
impl Backend for AdminBackend {
    async fn status(&self) -> BoxStatus {
        let (node, meta, shared) = {
            let running = self.daemon.running.lock().await;
            (
                running.node().clone(),
                running.current().meta.clone(),
                running.current().shared.clone(),
            )
        };
        let ha = self.daemon.pair.status();
        let mut routers = Vec::new();
        let mut last_failover: Option<FailoverEvent> = None;
        let mut healthy = true;
        let mut health_detail = Vec::new();
        if let Some(ha) = &ha {
            for r in &ha.routers {
                let shared_router = shared.vrrp.router(&r.name);
                let master = r.state == tandem_ha::RouterState::Master;
                routers.push(RouterView {
                    name: r.name.clone(),
                    interface: r.interface.clone(),
                    vrid: r.vrid,
                    vips: r.vips.iter().map(|v| v.addr().to_string()).collect(),
                    state: r.state.as_str().to_owned(),
                    priority: r.priority,
                    effective_priority: r.effective_priority,
                    advert_interval_ms: shared_router
                        .map(|s| s.advert_interval.get().as_millis() as u64)
                        .unwrap_or(0),
                    preempt: shared_router.is_some_and(|s| s.preempt),
                    holder: if master {
                        format!("this box ({})", node.name)
                    } else {
                        r.master
                            .map(|m| format!("peer {m}"))
                            .unwrap_or_else(|| "nobody heard".into())
                    },
                    tracks: ha
                        .tracks
                        .iter()
                        .map(|t| TrackView {
                            name: t.name.clone(),
                            up: t.up,
                        })
                        .collect(),
                    faults: r.faults.clone(),
                });
                if let Some(t) = &r.last_transition
                    && (t.to == tandem_ha::RouterState::Master
                        || t.from == tandem_ha::RouterState::Master)
                {
                    let at = unix_ms(t.at);
                    if last_failover.as_ref().is_none_or(|l| l.at_unix_ms < at) {
                        last_failover = Some(FailoverEvent {
                            at_unix_ms: at,
                            router: r.name.clone(),
                            from: t.from.as_str().to_owned(),
                            to: t.to.as_str().to_owned(),
                            reason: t.reason.clone(),
                        });
                    }
                }
            }
            for t in &ha.tracks {
                if !t.up {
                    healthy = false;
                    health_detail.push(format!("{} is down", t.name));
                }
            }
        }
        let stats = self.daemon.dataplane.stats();
        for pool in &shared.pools {
            let servers: Vec<_> = stats
                .servers
                .iter()
                .filter(|s| s.pool == pool.name)
                .collect();
            if !servers.is_empty() && servers.iter().all(|s| s.health == Health::Down) {
                healthy = false;
                health_detail.push(format!("every server of pool {} is down", pool.name));
            }
        }
        let peer = self.peer_view(&node, ha.as_deref());
        BoxStatus {
            node: node.name.clone(),
            role: self.daemon.pair.role_name().to_owned(),
            healthy,
            health_detail,
            management: node.management.listen.to_string(),
            uptime_seconds: self.daemon.started.elapsed().as_secs(),
            config: meta,
            routers,
            last_failover,
            peer,
        }
    }

    fn stats(&self) -> StatsSnapshot {
        self.daemon.dataplane.stats()
    }

    async fn current(&self) -> Arc<Version> {
        let running = self.daemon.running.lock().await;
        let cur = running.current();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_ref() {
            Some(v) if v.meta.id == cur.meta.id => v.clone(),
            _ => {
                let v = Arc::new(cur.clone());
                *cache = Some(v.clone());
                v
            }
        }
    }

    async fn check(&self, shared: &SharedConfig) -> Result<(), Diagnostics> {
        Config {
            schema: SCHEMA_VERSION,
            node: self.node_config().await,
            shared: shared.clone(),
        }
        .validate()
    }

    async fn commit(
        &self,
        shared: SharedConfig,
        change: &Change,
    ) -> Result<VersionMeta, CommitError> {
        let mut running = self.daemon.running.lock().await;
        self.is_writer(&running).map_err(CommitError::Passive)?;
        let config = Config {
            schema: SCHEMA_VERSION,
            node: running.node().clone(),
            shared,
        };
        config.validate().map_err(CommitError::Invalid)?;
        let node = running.node().name.clone();
        // RunningConfig::apply refuses it on the passive box and publishes a changed version
        // to the sync link itself.
        running
            .apply(
                config.shared,
                CommitInfo {
                    author: change.who.clone(),
                    reason: change.reason.clone(),
                    node,
                },
            )
            .await
            .map_err(|e| match e {
                Refusal::Invalid(d) => CommitError::Invalid(d),
                Refusal::Dataplane(m) => CommitError::Refused(m),
                Refusal::Store(m) => CommitError::Failed(m),
                Refusal::Passive(m) => CommitError::Passive(m),
            })?;
        Ok(running.current().meta.clone())
    }

    async fn versions(&self) -> Result<Vec<VersionMeta>, String> {
        self.daemon
            .running
            .lock()
            .await
            .store()
            .list()
            .map_err(|e| e.to_string())
    }

    async fn version(&self, epoch: u64, n: u64) -> Result<Version, String> {
        self.daemon
            .running
            .lock()
            .await
            .store()
            .get(epoch, n)
            .map_err(|e| e.to_string())
    }

    async fn branches(&self) -> Result<Vec<KeptBranch>, String> {
        self.daemon
            .running
            .lock()
            .await
            .store()
            .branches()
            .map_err(|e| e.to_string())
    }

    async fn failover(&self) -> Result<String, String> {
        self.daemon.pair.failover().await
    }

    async fn drill(&self) -> Result<DrillReport, String> {
        drill(&self.daemon, &self.node_config().await).await
    }

    async fn readiness(&self) -> Readiness {
        self.readiness_now().await
    }

    fn audit_record(&self, entry: NewAuditEntry) {
        if let Err(e) = self.audit.record(entry) {
            tracing::error!(error = %e, "the audit log cannot be written");
        }
    }

    fn audit_recent(&self, limit: usize) -> Vec<AuditEntry> {
        self.audit.recent(limit)
    }
}

impl AdminBackend {
    fn peer_view(
        &self,
        node: &tandem_config::NodeConfig,
        ha: Option<&tandem_ha::HaStatus>,
    ) -> Option<PeerView> {
        if let Some(sync) = &self.sync {
            let s = sync.status();
            let peer = s.peer.as_ref();
            return Some(PeerView {
                node: peer
                    .map(|p| p.node.clone())
                    .unwrap_or_else(|| "peer".into()),
                address: s.peer_address.clone(),
                management: peer.map(|p| p.management.clone()).unwrap_or_default(),
                role: peer
                    .map(|p| p.role.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".into()),
                connected: s.connected,
                config_version: s.config.peer.as_ref().map(|v| v.to_string()),
                same_config: s.config.same,
                sync_lag_ms: s.lag.ms,
            });
        }
        let ha = ha?;
        // Without the sync link, what VRRP shows: a Backup hears the Master's adverts; a
        // Master hears nothing from its Backup (RFC 5798 §6.4.3).
        let master_elsewhere = ha
            .routers
            .iter()
            .find(|r| r.state != tandem_ha::RouterState::Master)
            .and_then(|r| r.master);
        let configured = node.sync.as_ref().map(|s| s.peer.to_string());
        match (master_elsewhere, configured) {
            (Some(m), _) => Some(PeerView {
                node: format!("the other box ({m})"),
                address: m.to_string(),
                role: "active".into(),
                ..PeerView::default()
            }),
            (None, Some(addr)) => Some(PeerView {
                node: format!("the other box ({addr})"),
                address: addr,
                role: "passive (not heard: a Backup sends no adverts)".into(),
                ..PeerView::default()
            }),
            (None, None) => Some(PeerView {
                node: "the other box".into(),
                address: "not known without the sync link".into(),
                role: "passive (not heard: a Backup sends no adverts)".into(),
                ..PeerView::default()
            }),
        }
    }

    /// Can the passive box take over now? Judged on the passive box from its own view; on the
    /// active box from what the sync link says of the peer.
    async fn readiness_now(&self) -> Readiness {
        let (node, shared) = {
            let r = self.daemon.running.lock().await;
            (r.node().clone(), r.current().shared.clone())
        };
        let role = self.daemon.pair.role_name();
        if role == "standalone" {
            return Readiness::from_checks(
                node.name.clone(),
                vec![check(
                    false,
                    "pair",
                    "this box is standalone: there is no passive box to take over",
                )],
            );
        }
        let ha = self.daemon.pair.status();
        let mut checks = Vec::new();
        let sync = self.sync.as_ref().map(|s| s.status());
        let judged = if role == "passive" {
            node.name.clone()
        } else {
            sync.as_ref()
                .and_then(|s| s.peer.as_ref().map(|p| p.node.clone()))
                .unwrap_or_else(|| "the passive box".into())
        };
        // The heartbeat: on the passive box, the active's adverts arrive.
        if role == "passive" {
            let heard = ha.as_ref().is_some_and(|h| {
                !h.routers.is_empty()
                    && h.routers
                        .iter()
                        .all(|r| r.state == tandem_ha::RouterState::Backup && r.master.is_some())
            });
            checks.push(check(
                heard,
                "heartbeat",
                if heard {
                    "every router is Backup and hears the Master's adverts"
                } else {
                    "some router hears no Master or is not Backup"
                },
            ));
            let faults: Vec<String> = ha
                .iter()
                .flat_map(|h| h.routers.iter().flat_map(|r| r.faults.clone()))
                .collect();
            checks.push(check(
                faults.is_empty(),
                "tracking",
                &if faults.is_empty() {
                    "no fault holds a router".to_owned()
                } else {
                    format!("held by {}", faults.join(", "))
                },
            ));
        }
        match &sync {
            Some(s) => {
                checks.push(check(
                    s.connected,
                    "peer link",
                    &if s.connected {
                        "the sync link is up".to_owned()
                    } else {
                        format!(
                            "the sync link is down{}",
                            s.last_error
                                .as_ref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )
                    },
                ));
                let bound = shared.alerts.sync_lag_max.get().as_millis() as u64;
                checks.push(check(
                    s.connected && s.lag.ms <= bound,
                    "sync lag",
                    &format!("{} ms behind (bound {bound} ms)", s.lag.ms),
                ));
                checks.push(check(
                    s.config.same,
                    "same config",
                    &format!(
                        "this box runs {}, the peer {}",
                        s.config
                            .local
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or("?".into()),
                        s.config
                            .peer
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or("?".into())
                    ),
                ));
            }
            None => {
                checks.push(check(
                    false,
                    "peer link",
                    "no sync link runs on this box (node.sync), so state and config are not replicated",
                ));
                checks.push(check(false, "same config", "unknown without the sync link"));
            }
        }
        // The servers, as this box's own health checks see them.
        let stats = self.daemon.dataplane.stats();
        let mut down_pools = Vec::new();
        for pool in &shared.pools {
            let servers: Vec<_> = stats
                .servers
                .iter()
                .filter(|s| s.pool == pool.name)
                .collect();
            if !servers.is_empty() && servers.iter().all(|s| s.health == Health::Down) {
                down_pools.push(pool.name.clone());
            }
        }
        checks.push(check(
            down_pools.is_empty(),
            "servers healthy",
            &if down_pools.is_empty() {
                "every pool has a server up (or unchecked)".to_owned()
            } else {
                format!("no server up in {}", down_pools.join(", "))
            },
        ));
        let now = (unix_ms(SystemTime::now()) / 1000) as i64;
        let mut missing = Vec::new();
        for svc in &shared.services {
            for name in svc.tls.iter().flat_map(|t| t.certificates.iter()) {
                match shared.certificate(name) {
                    Some(c) => {
                        let v = tandem_admin::certs::describe(
                            &c.name,
                            c.cert_pem.as_deref(),
                            c.key_pem.is_some(),
                            now,
                        );
                        if c.key_pem.is_none() || v.status == "expired" {
                            missing.push(format!(
                                "{name} ({})",
                                if c.key_pem.is_none() {
                                    "no key"
                                } else {
                                    "expired"
                                }
                            ));
                        }
                    }
                    None => missing.push(format!("{name} (absent)")),
                }
            }
        }
        checks.push(check(
            missing.is_empty(),
            "certificates present",
            &if missing.is_empty() {
                "every certificate the services use is present, with its key, and valid".to_owned()
            } else {
                missing.join(", ")
            },
        ));
        Readiness::from_checks(judged, checks)
    }
}

fn check(ok: bool, name: &str, reason: &str) -> ReadinessCheck {
    ReadinessCheck {
        name: name.to_owned(),
        ok,
        reason: reason.to_owned(),
    }
}

/// A failover drill, run on the active box, in two steps, each probed from this box: a prober
/// connects to the first TCP service on a VIP every 20 ms while
/// 1. this box hands over to the peer (make before break), and
/// 2. asks the peer over the sync link to hand back (the same graceful handover, there).
///
/// While the peer holds the VIP this box is the one without it, so each probe leaves through
/// the VIP's interface and crosses the data link to the peer. The longest time without a
/// successful connection in each step is the gap a client would have seen. Without a sync
/// link the second step cannot be asked for: it is the same drill on the peer's console.
async fn drill(
    daemon: &Arc<Daemon>,
    node: &tandem_config::NodeConfig,
) -> Result<DrillReport, String> {
    if daemon.pair.role_name() != "active" {
        return Err("a drill starts on the active box of a pair".into());
    }
    let (target, interface) = {
        let running = daemon.running.lock().await;
        let shared = &running.current().shared;
        let ha = daemon.pair.status().ok_or("the heartbeat is not running")?;
        let mut found = None;
        'outer: for r in &ha.routers {
            for svc in &shared.services {
                if svc.protocol.is_stream() && r.vips.iter().any(|v| v.addr() == svc.listen.ip()) {
                    found = Some((svc.listen, r.interface.clone()));
                    break 'outer;
                }
            }
        }
        found.ok_or("no TCP service listens on a VIP of this box's routers: nothing to probe")?
    };
    let peer = daemon
        .sync
        .as_ref()
        .and_then(|s| s.pair().borrow().peer.as_ref().map(|p| p.node.clone()))
        .unwrap_or_else(|| "the peer".into());
    let prober = format!("{} via {interface}", node.name);

    let (over, over_result) = drill_step(target, || async { daemon.pair.failover().await }).await;
    let mut steps = vec![DrillStep {
        from: node.name.clone(),
        to: peer.clone(),
        prober: prober.clone(),
        target: target.to_string(),
        ..over
    }];
    let handed_over = match over_result {
        Ok(m) => m,
        Err(e) => {
            return Ok(DrillReport {
                ok: false,
                message: format!("the handover failed: {e}"),
                steps,
            });
        }
    };
    let first_gap = steps[0].gap_ms;
    let Some(sync) = daemon.sync.clone() else {
        return Ok(DrillReport {
            ok: first_gap < DRILL_GAP_LIMIT_MS,
            message: format!(
                "{handed_over}. Longest gap seen from this box: {first_gap} ms. This box runs no sync link, so it cannot ask {peer} to hand back: run the drill on {peer}'s console."
            ),
            steps,
        });
    };

    let reason = format!("failover drill started on {}", node.name);
    let mut role = daemon.pair.role();
    let (back, back_result) = drill_step(target, || async {
        sync.ask_handover(&reason).await?;
        // The peer answers once it is passive; this box is Master as soon as it hears the
        // peer's priority 0 advert, a moment before or after the answer.
        tokio::time::timeout(
            Duration::from_secs(5),
            role.wait_for(|r| *r == tandem_ha::Role::Active),
        )
        .await
        .map_err(|_| format!("{peer} handed over, but this box is not active 5 s later"))?
        .map_err(|_| "the heartbeat stopped".to_owned())?;
        Ok::<_, String>(())
    })
    .await;
    steps.push(DrillStep {
        from: peer.clone(),
        to: node.name.clone(),
        prober,
        target: target.to_string(),
        ..back
    });
    let gaps = steps.iter().map(|s| s.gap_ms).max().unwrap_or(0);
    Ok(match back_result {
        Ok(()) => DrillReport {
            ok: gaps < DRILL_GAP_LIMIT_MS,
            message: format!(
                "handed over to {peer} and back; longest gap seen from this box: {} ms over, {} ms back",
                steps[0].gap_ms, steps[1].gap_ms
            ),
            steps,
        },
        Err(e) => DrillReport {
            ok: false,
            message: format!(
                "{handed_over}. Longest gap seen from this box: {first_gap} ms. The hand-back failed: {e}"
            ),
            steps,
        },
    })
}

/// A drill step fails when a client would have waited this long (a TCP retransmit).
const DRILL_GAP_LIMIT_MS: u64 = 1000;

/// One drill step: probes `target` from 300 ms before `handover` until 2 s after it returned
/// (so that a late gap shows). The step's probes, failures, longest gap and the handover's
/// time, and what the handover returned.
async fn drill_step<F, Fut, T>(
    target: std::net::SocketAddr,
    handover: F,
) -> (DrillStep, Result<T, String>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        tokio::spawn(async move { probe(target, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let result = handover().await;
    let handover_ms = started.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (probes, failed, gap_ms) = prober.await.unwrap_or((0, 0, u64::MAX));
    let step = DrillStep {
        probes,
        failed,
        gap_ms,
        handover_ms,
        ..DrillStep::default()
    };
    (step, result)
}

/// Connects to `target` every 20 ms (each attempt bounded by 200 ms) until `stop`; returns
/// (probes, failures, longest gap between two successes in ms). Once this box has given the
/// VIP up, the connected route sends each probe out of the VIP's interface to the peer.
async fn probe(
    target: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64, u64) {
    let (mut probes, mut failed, mut gap) = (0u64, 0u64, 0u64);
    let mut last_ok = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        probes += 1;
        let attempt = async {
            let sock = if target.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }?;
            sock.connect(target).await
        };
        match tokio::time::timeout(Duration::from_millis(200), attempt).await {
            Ok(Ok(_)) => {
                gap = gap.max(last_ok.elapsed().as_millis() as u64);
                last_ok = std::time::Instant::now();
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gap = gap.max(last_ok.elapsed().as_millis() as u64);
    (probes, failed, gap.saturating_sub(20))
}

/// Takes the wizard's admin password hash into `shared.users` when it changed (see the
/// module's documentation). Returns what it did, if anything.
pub async fn import_admin_password(
    daemon: &Daemon,
    state_dir: &Path,
    audit: &AuditLog,
) -> Option<String> {
    let file = state_dir.join(ADMIN_PASSWORD_FILE);
    let hash = std::fs::read_to_string(&file).ok()?.trim().to_owned();
    if !tandem_config::is_argon2id_phc(&hash) {
        tracing::warn!(file = %file.display(), "not an argon2id hash; ignored");
        return None;
    }
    let marker = state_dir.join("admin").join("imported-password.sha256");
    let digest = tandem_admin::secret::sha256_hex(hash.as_bytes());
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(digest.as_str()) {
        return None;
    }
    if daemon.pair.role_name() == "passive" {
        return None; // the active box writes the config; tried again when this box is
    }
    let mut running = daemon.running.lock().await;
    let mut shared = running.current().shared.clone();
    let what = match shared.users.iter_mut().find(|u| u.name == "admin") {
        Some(u) if u.password_hash == hash => None,
        Some(u) => {
            u.password_hash = hash.clone();
            u.role = Role::Admin;
            Some("the admin password was reset on the serial console")
        }
        None => {
            shared.users.push(User {
                name: "admin".into(),
                role: Role::Admin,
                password_hash: hash.clone(),
            });
            Some("user admin created from the first-boot wizard's password")
        }
    };
    if let Some(what) = what {
        let node = running.node().name.clone();
        match running
            .apply(
                shared,
                CommitInfo {
                    author: "serial console".into(),
                    reason: what.into(),
                    node,
                },
            )
            .await
        {
            Ok(a) => {
                let _ = audit.record(NewAuditEntry {
                    at_unix_ms: unix_ms(SystemTime::now()),
                    who: "serial console".into(),
                    from: "serial console".into(),
                    action: "user.password".into(),
                    detail: what.into(),
                    config_version: Some(a.version.to_string()),
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "the admin password could not be taken over");
                return None;
            }
        }
    }
    let _ = std::fs::create_dir_all(marker.parent()?);
    let _ = tandem_config::store::write_atomic(&marker, digest.as_bytes());
    what.map(str::to_owned)
}

/// Watches the box once a second and raises alerts; also takes a changed admin password file.
pub async fn watch(
    daemon: Arc<Daemon>,
    state_dir: PathBuf,
    audit: AuditLog,
    alerts: AlertSender,
    sync: Option<Arc<SyncHandle>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut role = daemon.pair.role_name();
    let mut version = None;
    let mut health: BTreeMap<String, Health> = BTreeMap::new();
    let mut certs_warned: BTreeMap<String, u64> = BTreeMap::new();
    let mut sync_up: Option<bool> = None;
    let mut lagging = false;
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let (node, meta, shared) = {
            let r = daemon.running.lock().await;
            (
                r.node().name.clone(),
                r.current().meta.clone(),
                r.current().shared.clone(),
            )
        };
        alerts.configure(&shared.alerts);
        if version.as_ref() != Some(&meta.id) {
            if version.is_some() {
                alerts.send(Alert::new(
                    "config.committed",
                    "info",
                    &node,
                    format!(
                        "config {} committed by {}: {}",
                        meta.id, meta.author, meta.reason
                    ),
                ));
            }
            version = Some(meta.id.clone());
        }
        let now_role = daemon.pair.role_name();
        if now_role != role {
            alerts.send(Alert::new(
                "failover",
                "critical",
                &node,
                format!("{node} is {now_role} now (was {role})"),
            ));
            role = now_role;
        }
        for s in daemon.dataplane.stats().servers {
            let key = format!("{}/{}", s.pool, s.id);
            let before = health.insert(key.clone(), s.health);
            match (before, s.health) {
                (Some(b), Health::Down) if b != Health::Down => alerts.send(Alert::new(
                    "server.down",
                    "warning",
                    &node,
                    format!("server {key} ({}) is down", s.address),
                )),
                (Some(Health::Down), Health::Up) => alerts.send(Alert::new(
                    "server.up",
                    "info",
                    &node,
                    format!("server {key} ({}) is up again", s.address),
                )),
                _ => {}
            }
        }
        if let Some(sync) = &sync {
            let s = sync.status();
            if sync_up.is_some_and(|u| u != s.connected) {
                alerts.send(Alert::new(
                    if s.connected { "sync.up" } else { "sync.down" },
                    if s.connected { "info" } else { "critical" },
                    &node,
                    if s.connected {
                        "the sync link to the peer is up".to_owned()
                    } else {
                        format!(
                            "the sync link to the peer is down: {}",
                            s.last_error.unwrap_or_default()
                        )
                    },
                ));
            }
            sync_up = Some(s.connected);
            let over = s.lag.ms > shared.alerts.sync_lag_max.get().as_millis() as u64;
            if over && !lagging {
                alerts.send(Alert::new(
                    "sync.lag",
                    "warning",
                    &node,
                    format!(
                        "the peer is {} ms behind (bound {})",
                        s.lag.ms, shared.alerts.sync_lag_max
                    ),
                ));
            }
            lagging = over;
        }
        // Certificates: at most once a day each.
        let now = unix_ms(SystemTime::now()) / 1000;
        let warn = shared.alerts.certificate_warning.get().as_secs();
        for c in &shared.certificates {
            let v = tandem_admin::certs::describe(
                &c.name,
                c.cert_pem.as_deref(),
                c.key_pem.is_some(),
                now as i64,
            );
            if v.not_after_unix > 0 && (v.not_after_unix as u64) < now + warn {
                let last = certs_warned.get(&c.name).copied().unwrap_or(0);
                if now.saturating_sub(last) >= 86_400 {
                    certs_warned.insert(c.name.clone(), now);
                    alerts.send(Alert::new(
                        "certificate.expiring",
                        "warning",
                        &node,
                        format!(
                            "certificate {} expires {} ({} days)",
                            c.name, v.not_after, v.days_left
                        ),
                    ));
                }
            }
        }
        if n % 5 == 1
            && let Some(what) = import_admin_password(&daemon, &state_dir, &audit).await
        {
            tracing::info!("{what}");
        }
    }
}
