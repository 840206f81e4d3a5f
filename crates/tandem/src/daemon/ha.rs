//! The pair in tandemd: the heartbeat (`tandem-ha`) started after the dataplane, fed with what
//! only tandemd can see, and the pair's role kept for the parts that follow it.
//!
//! [`Pair::start`] starts the heartbeat when the node part places virtual routers on this box
//! (a box without `node.vrrp.routers` is standalone, and its role is always Active). Then:
//!
//! - **Tracked pools** (`pool:NAME`): a pool is down when none of its servers can take a
//!   session — every one health-down or disabled (unchecked and draining servers count as up:
//!   the dataplane still uses them, and the peer runs the same config). Recomputed on every
//!   server health or admin change on the dataplane's state stream, and after every apply.
//! - **The dataplane's own liveness** (`dataplane`): a watchdog on a thread of its own probes
//!   every stream listener on an address this box holds, and counts a listener alive only when
//!   its accept loop took that very connection off the queue (`tandem_dataplane::Liveness`: a
//!   kernel handshake alone proves nothing). A box that holds no listener address (the passive
//!   one) checks instead that the dataplane's runtime still runs a task, so a wedged passive box
//!   does not take the VIPs either. [`FALL`] bad rounds in a row take it down; [`RISE`] good ones
//!   bring it back, twice as many each time it fails again soon after recovering, so a box whose
//!   dataplane keeps failing stops taking the role back.
//! - **The role** ([`Pair::role`]): a `watch` that sync and the console follow.
//!
//! Nothing here can make the heartbeat wait. Every report is a non-blocking send on its handle,
//! and the watchdog has its own thread and runtime: a dataplane runtime that stopped running
//! tasks cannot keep it from reporting, nor from probing.

use super::unix_ms;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde_json::{Value, json};
use tandem_config::{AdminState, NodeConfig, SharedConfig};
use tandem_dataplane::{Dataplane, Health, Liveness, StatsSnapshot, StreamError};
use tandem_ha::{Ha, HaConfig, HaError, HaHandle, HaStatus, Role, TrackState, track};
use tokio::sync::{RwLock, oneshot, watch};

/// Time between two rounds of the dataplane watchdog.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a listener may take to accept a probe. Above one SYN retransmission (1 s), so a
/// probe whose first SYN met a full backlog under load still counts.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Bad rounds in a row that take the dataplane down.
pub const FALL: u32 = 2;
/// Good rounds in a row that bring it back up (at first; see [`Verdict`]).
pub const RISE: u32 = 3;
/// An up period shorter than this many rounds doubles the rounds the next recovery needs.
const STABLE_ROUNDS: u32 = 60;
/// The most rounds a recovery needs (five minutes at one round a second).
const MAX_RISE: u32 = 300;

/// The pair's heartbeat and role, or a standalone box.
pub struct Pair {
    heartbeat: Option<Heartbeat>,
    role: watch::Receiver<Role>,
    /// Keeps a standalone box's constant role open: a closed watch fails `changed()` at once.
    _standalone: Option<watch::Sender<Role>>,
}

struct Heartbeat {
    /// `None` once stopped. Readers never wait on each other; the only writer is
    /// [`Pair::shutdown`].
    handle: Arc<RwLock<Option<HaHandle>>>,
    /// What runs, as last started or applied (without `initial_tracks`).
    config: Mutex<HaConfig>,
    /// The pools some router tracks, for the pool tracker.
    tracked_pools: watch::Sender<BTreeSet<String>>,
    /// Set to `true` to stop the pool tracker and the watchdog.
    stop: watch::Sender<bool>,
}

impl Pair {
    /// Starts the heartbeat if the node part places routers on this box, with the tracked
    /// pools' current states, then the pool tracker and the watchdog. `Ha::start` removes any
    /// VIP a crashed predecessor left on the interfaces before anything else.
    pub async fn start(
        node: &NodeConfig,
        shared: &SharedConfig,
        dataplane: &Dataplane,
    ) -> anyhow::Result<Pair> {
        if node.vrrp.routers.is_empty() {
            let (tx, rx) = watch::channel(Role::Active);
            return Ok(Pair {
                heartbeat: None,
                role: rx,
                _standalone: Some(tx),
            });
        }
        let config = HaConfig::from_config(node, shared).unwrap_or_else(|| {
            // Only a store version that lost the routers the node part places gets here
            // (validation refuses such a file); the next apply that brings them starts them.
            tracing::warn!(
                "the running shared config defines none of the VRRP routers this box places; the heartbeat starts without routers"
            );
            HaConfig::new(Vec::new())
        });
        let pools = tracked_pools(&config);
        let stats = dataplane.stats();
        let mut initial = config.clone();
        let states: BTreeMap<String, TrackState> = pools
            .iter()
            .map(|p| (p.clone(), pool_state(&stats, p)))
            .collect();
        for (pool, state) in &states {
            initial.initial_tracks.insert(track::pool(pool), *state);
        }
        // The dataplane just started; the watchdog reports it from now on.
        initial
            .initial_tracks
            .insert(track::DATAPLANE.to_owned(), TrackState::Up);
        let handle = tokio::task::spawn_blocking(move || Ha::start(initial))
            .await
            .context("the heartbeat's start panicked")?
            .context("the heartbeat cannot start")?;
        let role = handle.role();
        let handle = Arc::new(RwLock::new(Some(handle)));
        let (tracked_pools, tracked_rx) = watch::channel(pools);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(track_pools(
            handle.clone(),
            dataplane.clone(),
            tracked_rx,
            stop_rx.clone(),
            states,
        ));
        spawn_watchdog(
            dataplane.liveness(),
            tokio::runtime::Handle::current(),
            handle.clone(),
            stop_rx,
        )?;
        Ok(Pair {
            heartbeat: Some(Heartbeat {
                handle,
                config: Mutex::new(config),
                tracked_pools,
                stop,
            }),
            role,
            _standalone: None,
        })
    }

    /// The pair's role as it changes: Active while this box's sync group is Master; always
    /// Active on a standalone box.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Whether this box runs VRRP routers.
    pub fn is_pair(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// The heartbeat's published status; `None` on a standalone box or once stopped.
    pub fn status(&self) -> Option<Arc<HaStatus>> {
        let hb = self.heartbeat.as_ref()?;
        let guard = hb.handle.try_read().ok()?;
        guard.as_ref().map(HaHandle::status)
    }

    /// `standalone`, `active` or `passive`, as the status document and the console name it.
    pub fn role_name(&self) -> &'static str {
        if self.is_pair() {
            self.role.borrow().as_str()
        } else {
            "standalone"
        }
    }

    /// The heartbeat's part of `/metrics` (empty on a standalone box).
    pub fn render_prometheus(&self) -> String {
        self.status()
            .map(|s| s.render_prometheus())
            .unwrap_or_default()
    }

    /// The heartbeat's part of the status document (`null` on a standalone box).
    pub fn status_json(&self) -> Value {
        match self.status() {
            Some(s) => status_json(&s),
            None => Value::Null,
        }
    }

    /// A graceful handover to the peer (`tandemctl failover`): every Master advertises
    /// priority 0 and keeps its VIPs until the peer has announced itself. Waits until this box
    /// is passive (at most Master_Down_Interval and a second) and says who took over. Refused
    /// on a passive or standalone box.
    pub async fn failover(&self) -> Result<String, String> {
        let Some(hb) = &self.heartbeat else {
            return Err(
                "this box is standalone: its config places no VRRP router on it, so there is no peer to hand over to"
                    .into(),
            );
        };
        let (mut role, bound) = {
            let guard = hb.handle.read().await;
            let handle = guard.as_ref().ok_or("the heartbeat is stopping")?;
            let status = handle.status();
            match handle.failover_now() {
                Ok(()) => {}
                Err(HaError::NotActive) => {
                    return Err(format!(
                        "this box is passive; a handover starts on the active box{}",
                        match peer_master(&status) {
                            Some(m) => format!(" ({m})"),
                            None => String::new(),
                        }
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
            (handle.role(), handover_bound(&lock(&hb.config)))
        };
        tracing::info!("tandemctl failover: handing over to the peer");
        let passive = tokio::time::timeout(bound, role.wait_for(|r| *r == Role::Passive))
            .await
            .is_ok_and(|r| r.is_ok());
        let status = self.status();
        let master = status.as_deref().and_then(peer_master);
        Ok(match (passive, master) {
            (true, Some(m)) => {
                format!("handed over: {m} is active now; this box is passive and keeps priority 1 until it is active again")
            }
            (true, None) => "gave the role up, but no peer has announced itself: this box takes the VIPs back after Master_Down_Interval".into(),
            (false, _) => format!(
                "handover started, but this box is still active after {bound:?}; see `tandemctl status`"
            ),
        })
    }

    /// Follows a change of the shared config (`tandemctl apply`, SIGHUP, the console): when the
    /// VRRP part of this box changed, the heartbeat applies it (unchanged routers keep running).
    /// The pools the new config tracks are reported first, so a new router starts with their
    /// real state. Returns notes for the operator.
    pub async fn apply_shared(
        &self,
        node: &NodeConfig,
        shared: &SharedConfig,
        dataplane: &Dataplane,
    ) -> Vec<String> {
        let Some(hb) = &self.heartbeat else {
            return Vec::new();
        };
        let config = HaConfig::from_config(node, shared).unwrap_or_else(|| HaConfig::new(vec![]));
        if *lock(&hb.config) == config {
            return Vec::new();
        }
        let guard = hb.handle.read().await;
        let Some(handle) = guard.as_ref() else {
            return vec!["the heartbeat is stopping; the VRRP change was not applied".into()];
        };
        let pools = tracked_pools(&config);
        let stats = dataplane.stats();
        for pool in &pools {
            handle.set_track(&track::pool(pool), pool_state(&stats, pool));
        }
        let result = handle.apply(config.clone()).await;
        hb.tracked_pools.send_replace(pools);
        match result {
            Ok(()) => {
                tracing::info!(
                    routers = config.routers.len(),
                    "VRRP routers reloaded; unchanged routers kept running"
                );
                *lock(&hb.config) = config;
                vec![
                    "the VRRP routers changed and were reloaded; unchanged routers kept running"
                        .into(),
                ]
            }
            Err(e) => {
                tracing::error!(error = %e, "the heartbeat refused the new VRRP routers");
                vec![format!("the VRRP routers were not reloaded: {e}")]
            }
        }
    }

    /// Graceful stop, before the dataplane's: each Master advertises priority 0 and keeps its
    /// VIPs (the dataplane still serving them) until the peer is heard, at most
    /// Master_Down_Interval and a second; then the heartbeat ends.
    pub async fn shutdown(&self) {
        let Some(hb) = &self.heartbeat else {
            return;
        };
        hb.stop.send_replace(true);
        let handle = hb.handle.write().await.take();
        if let Some(handle) = handle {
            tracing::info!("handing the VIPs over to the peer (make before break)");
            if let Err(e) = handle.shutdown().await {
                tracing::error!(error = %e, "the heartbeat did not stop gracefully");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a handover may take: Master_Down_Interval at the lowest priority (the bound of a
/// make-before-break step-down) of the slowest router, and a second.
fn handover_bound(config: &HaConfig) -> Duration {
    config
        .routers
        .iter()
        .map(|r| 4 * r.advert_interval)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1)
}

/// The current Master of the pair's routers when it is not this box.
fn peer_master(status: &HaStatus) -> Option<IpAddr> {
    status
        .routers
        .iter()
        .filter(|r| r.primary_address != r.master)
        .find_map(|r| r.master)
}

/// The pools some router tracks.
fn tracked_pools(config: &HaConfig) -> BTreeSet<String> {
    config
        .routers
        .iter()
        .flat_map(|r| r.pool_tracks.iter().map(|(p, _)| p.clone()))
        .collect()
}

/// Down when no server of `pool` can take a session: each is health-down or disabled.
fn pool_state(stats: &StatsSnapshot, pool: &str) -> TrackState {
    let up = stats
        .servers
        .iter()
        .any(|s| s.pool == pool && s.admin != AdminState::Disabled && s.health != Health::Down);
    if up { TrackState::Up } else { TrackState::Down }
}

/// Reports the tracked pools' states on every server health or admin change (coalesced), on
/// a change of the tracked set, and every few seconds in case an apply removed servers.
async fn track_pools(
    handle: Arc<RwLock<Option<HaHandle>>>,
    dataplane: Dataplane,
    mut tracked: watch::Receiver<BTreeSet<String>>,
    mut stop: watch::Receiver<bool>,
    mut last: BTreeMap<String, TrackState>,
) {
    use tandem_dataplane::StateChange;
    let tables = dataplane.state();
    let mut events = tables.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tracked.changed() => {}
            _ = tick.tick() => {}
            event = events.recv() => match event {
                Ok(e) if matches!(e.change, StateChange::ServerHealth { .. } | StateChange::ServerAdmin { .. }) => {}
                Ok(_) => continue,
                Err(StreamError::Lagged { .. }) => events = tables.subscribe(),
                Err(StreamError::Closed) => return,
            },
        }
        // A burst of changes (a reload, a switch port going down) is one recomputation.
        while let Ok(Some(_)) = events.try_recv() {}
        let pools = tracked.borrow_and_update().clone();
        let stats = dataplane.stats();
        let now: BTreeMap<String, TrackState> = pools
            .iter()
            .map(|p| (p.clone(), pool_state(&stats, p)))
            .collect();
        {
            let guard = handle.read().await;
            let Some(h) = guard.as_ref() else { return };
            for (pool, state) in &now {
                if last.get(pool) != Some(state) {
                    match state {
                        TrackState::Down => {
                            tracing::warn!(pool, "tracked pool down: no server can take a session")
                        }
                        TrackState::Up => tracing::info!(pool, "tracked pool up again"),
                    }
                    h.set_track(&track::pool(pool), *state);
                }
            }
        }
        last = now;
    }
}

/// The watchdog's rise and fall counting, a pure state machine fed one round at a time.
#[derive(Clone, Debug)]
pub struct Verdict {
    state: TrackState,
    streak: u32,
    rise_needed: u32,
    rounds_up: u32,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            state: TrackState::Up,
            streak: 0,
            rise_needed: RISE,
            // The start counts as a long, stable up period.
            rounds_up: u32::MAX,
        }
    }
}

impl Verdict {
    pub fn state(&self) -> TrackState {
        self.state
    }

    /// One round: `good` when every probe of it passed. Returns the new state when it changed.
    pub fn record(&mut self, good: bool) -> Option<TrackState> {
        match self.state {
            TrackState::Up => {
                self.rounds_up = self.rounds_up.saturating_add(1);
                if good {
                    self.streak = 0;
                    return None;
                }
                self.streak += 1;
                if self.streak < FALL {
                    return None;
                }
                // Failing again soon after a recovery: make the next one slower, so that a box
                // that keeps failing stops pulling the role back to itself.
                self.rise_needed = if self.rounds_up < STABLE_ROUNDS {
                    (self.rise_needed * 2).min(MAX_RISE)
                } else {
                    RISE
                };
                self.state = TrackState::Down;
                self.streak = 0;
                Some(TrackState::Down)
            }
            TrackState::Down => {
                if !good {
                    self.streak = 0;
                    return None;
                }
                self.streak += 1;
                if self.streak < self.rise_needed {
                    return None;
                }
                self.state = TrackState::Up;
                self.streak = 0;
                self.rounds_up = 0;
                Some(TrackState::Up)
            }
        }
    }
}

/// Starts the watchdog thread: one probe round every [`PROBE_INTERVAL`] on a runtime of its
/// own, reporting `dataplane` to the heartbeat when the verdict changes.
fn spawn_watchdog(
    liveness: Liveness,
    dataplane_runtime: tokio::runtime::Handle,
    handle: Arc<RwLock<Option<HaHandle>>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the dataplane watchdog's runtime")?;
    std::thread::Builder::new()
        .name("tandem-watchdog".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut verdict = Verdict::default();
                let mut ticks = tokio::time::interval(PROBE_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = ticks.tick() => {}
                    }
                    let round = probe_round(&liveness, &dataplane_runtime).await;
                    if let Err(why) = &round
                        && verdict.state() == TrackState::Up
                    {
                        tracing::warn!(%why, "dataplane liveness probe failed");
                    }
                    let Some(state) = verdict.record(round.is_ok()) else {
                        continue;
                    };
                    match (state, &round) {
                        (TrackState::Down, Err(why)) => tracing::error!(
                            %why,
                            rounds = FALL,
                            "the dataplane stopped accepting: reporting it down to the heartbeat"
                        ),
                        _ => tracing::info!(
                            "the dataplane accepts again: reporting it up to the heartbeat"
                        ),
                    }
                    // Only a graceful stop holds the write lock; a report lost then is moot.
                    if let Ok(guard) = handle.try_read()
                        && let Some(h) = guard.as_ref()
                    {
                        h.set_track(track::DATAPLANE, state);
                    }
                }
            });
        })
        .context("cannot start the dataplane watchdog thread")?;
    Ok(())
}

/// One round: every stream listener on an address this box holds must accept its probe
/// within [`PROBE_TIMEOUT`] (probed together). With none held, the dataplane's runtime must
/// run a task within that time.
async fn probe_round(
    liveness: &Liveness,
    dataplane_runtime: &tokio::runtime::Handle,
) -> Result<(), String> {
    let held = held_addresses();
    let listeners: Vec<_> = liveness
        .listeners()
        .into_iter()
        .filter(|l| {
            l.protocol.is_stream()
                && (l.address.ip().is_unspecified() || held.contains(&l.address.ip()))
        })
        .collect();
    if listeners.is_empty() {
        let (tx, rx) = oneshot::channel();
        dataplane_runtime.spawn(async move {
            let _ = tx.send(());
        });
        return match tokio::time::timeout(PROBE_TIMEOUT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(format!(
                "the dataplane's runtime did not run a task within {PROBE_TIMEOUT:?}"
            )),
        };
    }
    let mut probes = tokio::task::JoinSet::new();
    for l in listeners {
        let liveness = liveness.clone();
        probes.spawn(async move {
            let result = liveness.probe(l.address, PROBE_TIMEOUT).await;
            (l, result)
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = probes.join_next().await {
        match done {
            Ok((_, Ok(_))) => {}
            Ok((l, Err(e))) => failures.push(format!(
                "{} {} ({}): {e}",
                l.protocol.as_str(),
                l.address,
                l.service
            )),
            Err(e) => failures.push(format!("probe task: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// The addresses on this box's interfaces (in tandemd's network namespace).
fn held_addresses() -> HashSet<IpAddr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return HashSet::new();
    };
    addresses
        .filter_map(|a| {
            let s = a.address?;
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// The heartbeat's status as the status document carries it: times as RFC 3339 (UTC) and
/// Unix milliseconds, drop counters as `{reason: count}`.
pub fn status_json(status: &HaStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    let counts = |list: &[(String, u64)]| -> Value {
        Value::Object(
            list.iter()
                .map(|(reason, n)| (reason.clone(), json!(n)))
                .collect(),
        )
    };
    if let Some(routers) = v["routers"].as_array_mut() {
        for (r, s) in routers.iter_mut().zip(&status.routers) {
            if let Some(t) = &s.last_transition {
                r["last_transition"]["at"] = json!(rfc3339(t.at));
                r["last_transition"]["at_unix_ms"] = json!(unix_ms(t.at));
            }
            r["drops"] = counts(&s.drops);
        }
    }
    v["unattributed_drops"] = counts(&status.unattributed_drops);
    v
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;
    use tandem_ha::{RouterState, RouterStatus, TrackStatus, Transition};

    #[test]
    fn the_dataplane_goes_down_after_fall_bad_rounds_and_up_after_rise_good_ones() {
        let mut v = Verdict::default();
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(true), None, "a good round resets the streak");
        for _ in 1..FALL {
            assert_eq!(v.record(false), None);
        }
        assert_eq!(v.record(false), Some(TrackState::Down));
        for _ in 1..RISE {
            assert_eq!(v.record(true), None);
        }
        assert_eq!(v.record(false), None, "a bad round resets the rise");
        for _ in 1..RISE {
            assert_eq!(v.record(true), None);
        }
        assert_eq!(v.record(true), Some(TrackState::Up));
    }

    #[test]
    fn a_dataplane_that_fails_again_soon_needs_twice_as_long_to_come_back_each_time() {
        let mut v = Verdict::default();
        let mut rise = RISE;
        for _ in 0..12 {
            let mut changed = None;
            for _ in 0..FALL {
                changed = v.record(false);
            }
            assert_eq!(changed, Some(TrackState::Down));
            for _ in 1..rise {
                assert_eq!(v.record(true), None);
            }
            assert_eq!(v.record(true), Some(TrackState::Up));
            rise = (rise * 2).min(MAX_RISE);
        }
        assert_eq!(rise, MAX_RISE);
        // Up long enough: the next recovery is quick again.
        for _ in 0..STABLE_ROUNDS {
            assert_eq!(v.record(true), None);
        }
        v.record(false);
        assert_eq!(v.record(false), Some(TrackState::Down));
        for _ in 1..RISE {
            assert_eq!(v.record(true), None);
        }
        assert_eq!(v.record(true), Some(TrackState::Up));
    }

    fn server(
        pool: &str,
        health: Health,
        admin: AdminState,
    ) -> tandem_dataplane::stats::ServerStats {
        tandem_dataplane::stats::ServerStats {
            pool: pool.into(),
            id: "s".into(),
            address: "10.0.0.1:80".parse().unwrap(),
            weight: 1,
            admin,
            health,
            traffic: Default::default(),
            connect_failures: 0,
            health_transitions: 0,
            checks_failed: 0,
        }
    }

    #[test]
    fn a_pool_is_down_when_no_server_can_take_a_session() {
        let stats = |servers| StatsSnapshot {
            services: vec![],
            servers,
        };
        let s = stats(vec![
            server("web", Health::Down, AdminState::Enabled),
            server("web", Health::Up, AdminState::Disabled),
            server("api", Health::Up, AdminState::Enabled),
        ]);
        assert_eq!(pool_state(&s, "web"), TrackState::Down);
        assert_eq!(pool_state(&s, "api"), TrackState::Up);
        assert_eq!(pool_state(&s, "none"), TrackState::Down, "no server at all");
        let s = stats(vec![
            server("web", Health::Down, AdminState::Enabled),
            server("web", Health::Unchecked, AdminState::Drain),
        ]);
        assert_eq!(
            pool_state(&s, "web"),
            TrackState::Up,
            "unchecked and draining servers are still used"
        );
    }

    #[test]
    fn the_status_document_has_readable_times_and_drop_counts() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let status = HaStatus {
            role: Role::Active,
            role_changes: 1,
            yielding: false,
            realtime: true,
            routers: vec![RouterStatus {
                name: "front".into(),
                interface: "eth0".into(),
                vrid: 51,
                vips: vec!["10.0.0.100/24".parse().unwrap()],
                state: RouterState::Master,
                stepping_down: None,
                priority: 200,
                effective_priority: 200,
                faults: vec![],
                primary_address: Some("10.0.0.2".parse().unwrap()),
                master: Some("10.0.0.2".parse().unwrap()),
                last_transition: Some(Transition {
                    from: RouterState::Backup,
                    to: RouterState::Master,
                    reason: "master down timer fired".into(),
                    at,
                }),
                transitions: 2,
                adverts_sent: 10,
                adverts_received: 3,
                send_errors: 0,
                address_list_mismatches: 0,
                drops: vec![("ttl_not_255".into(), 2)],
            }],
            tracks: vec![TrackStatus {
                name: "dataplane".into(),
                up: true,
            }],
            unattributed_drops: vec![],
            stopped: false,
        };
        let v = status_json(&status);
        let t = &v["routers"][0]["last_transition"];
        assert_eq!(t["at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(t["at_unix_ms"], 1_700_000_000_123u64);
        assert_eq!(t["reason"], "master down timer fired");
        assert_eq!(v["routers"][0]["drops"]["ttl_not_255"], 2);
        assert_eq!(v["role"], "active");
        assert_eq!(v["unattributed_drops"], json!({}));
        assert_eq!(peer_master(&status), None, "this box is the Master");
    }
}
