//! The dataplane handle: start, apply a config, read counters and state, shut down.

use crate::health::{self, CheckTarget, Health};
use crate::listener::{self, BoundSocket, Listener, ListenerKey};
use crate::liveness::{ListenerInfo, Liveness};
use crate::persistence::PersistenceTable;
use crate::pool::{PoolRuntime, PoolServer, ServerRegistry, ServerState};
use crate::service::{ServiceRuntime, ServiceState};
use crate::state_stream::{StateChange, StateTables, Stream};
use crate::stats::{ServerStats, StatsSnapshot};
use crate::tls::ticket_keys::TicketKeyRing;
use crate::tls::{server_config, upstream};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tandem_config::{HealthCheck, SharedConfig, UpstreamTls};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How the dataplane runs on this box (not part of the shared config).
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// Where generated self-signed certificates are kept (`tls/` below it).
    pub state_dir: PathBuf,
    /// This box's name (a SAN of generated certificates).
    pub node_name: String,
    /// How often a new session-ticket key is made.
    pub ticket_rotation: Duration,
    /// How long a ticket key still decrypts after it stopped encrypting; also the ticket
    /// lifetime announced to clients.
    pub ticket_lifetime: Duration,
    /// Events the state stream holds for a slow subscriber before it reports `Lagged`.
    pub state_stream_capacity: usize,
    /// Flows per UDP service; the oldest is evicted beyond.
    pub udp_max_flows: usize,
    /// Move TCP bytes with splice(2) (else a copy loop).
    pub splice: bool,
    /// Listen backlog of stream listeners.
    pub listen_backlog: i32,
    /// How often expired persistence entries and idle rate buckets are swept.
    pub sweep_interval: Duration,
}

impl DataplaneOptions {
    pub fn new(state_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        DataplaneOptions {
            state_dir: state_dir.into(),
            node_name: node_name.into(),
            ticket_rotation: Duration::from_secs(3600),
            ticket_lifetime: Duration::from_secs(4 * 3600),
            state_stream_capacity: 65536,
            udp_max_flows: 65536,
            splice: true,
            listen_backlog: 4096,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("service `{service}` cannot listen on {address} ({protocol}): {source}")]
    Bind {
        service: String,
        address: SocketAddr,
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("service `{service}`: TLS: {message}")]
    Tls { service: String, message: String },
    #[error("pool `{pool}`: TLS towards the servers: {message}")]
    UpstreamTls { pool: String, message: String },
    #[error("service `{service}` uses pool `{pool}`, which is not defined")]
    UnknownPool { service: String, pool: String },
    #[error("the dataplane is shut down")]
    ShutDown,
}

/// What an apply changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Listeners bound by this apply.
    pub added: Vec<ListenerInfo>,
    /// Listeners that stopped accepting (their connections finish).
    pub removed: Vec<ListenerInfo>,
    /// Listeners left running (now serving the new config).
    pub kept: Vec<ListenerInfo>,
    /// Servers whose address changed, so their health starts over: `(pool, id)`.
    pub health_reset: Vec<(String, String)>,
}

/// The dataplane. A cheap-clone handle.
#[derive(Clone)]
pub struct Dataplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("node", &self.inner.opts.node_name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    opts: DataplaneOptions,
    current: ArcSwap<Generation>,
    control: tokio::sync::Mutex<Control>,
    servers: ServerRegistry,
    services: Mutex<HashMap<Arc<str>, Arc<ServiceState>>>,
    stream: Arc<Stream>,
    tables: StateTables,
    tickets: TicketKeyRing,
    liveness: Liveness,
    /// Sweepers and ticket rotation.
    background: CancellationToken,
    /// Ends every connection (after the shutdown grace).
    hard_stop: CancellationToken,
    shut_down: AtomicBool,
}

#[derive(Default)]
struct Control {
    listeners: HashMap<ListenerKey, (Listener, ListenerInfo)>,
    checkers: HashMap<(Arc<str>, Arc<str>), Checker>,
}

struct Checker {
    fingerprint: (SocketAddr, HealthCheck, Option<UpstreamTls>),
    task: JoinHandle<()>,
}

/// One applied config: its services and pools.
pub(crate) struct Generation {
    services: Vec<Arc<ServiceRuntime>>,
    pools: Vec<Arc<PoolRuntime>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.background.cancel();
        for (_, (l, _)) in self.control.get_mut().listeners.drain() {
            l.stop.cancel();
        }
        for (_, c) in self.control.get_mut().checkers.drain() {
            c.task.abort();
        }
    }
}

impl Dataplane {
    /// Binds every listener of `shared` and starts serving it on the caller's (multi-thread)
    /// tokio runtime. Fails, with nothing left bound, if any listener cannot bind or any TLS
    /// setting cannot be built.
    pub async fn start(
        shared: Arc<SharedConfig>,
        opts: DataplaneOptions,
    ) -> Result<Dataplane, DataplaneError> {
        let stream = Arc::new(Stream::new(opts.state_stream_capacity));
        let tickets = TicketKeyRing::new(opts.ticket_rotation, opts.ticket_lifetime);
        tickets.publish_to(stream.clone());
        let servers = ServerRegistry::default();
        let tables = StateTables::new(
            stream.clone(),
            PersistenceTable::new(stream.clone()),
            servers.clone(),
            tickets.clone(),
        );
        let dp = Dataplane {
            inner: Arc::new(Inner {
                opts,
                current: ArcSwap::from_pointee(Generation {
                    services: Vec::new(),
                    pools: Vec::new(),
                }),
                control: tokio::sync::Mutex::new(Control::default()),
                servers,
                services: Mutex::new(HashMap::new()),
                stream,
                tables,
                tickets,
                liveness: Liveness::default(),
                background: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                shut_down: AtomicBool::new(false),
            }),
        };
        dp.apply(shared).await?;
        tokio::spawn(sweeper(
            Arc::downgrade(&dp.inner),
            dp.inner.background.clone(),
        ));
        tokio::spawn(ticket_rotation(
            dp.inner.tickets.clone(),
            dp.inner.background.clone(),
        ));
        Ok(dp)
    }

    /// Swaps in a new config atomically. Unchanged listeners keep running untouched; added
    /// ones are bound first (if any cannot bind, nothing changes and the error names the
    /// service, address and reason); removed ones stop accepting. Connections in flight finish
    /// on the config they started with. Server state (health, counters, active connections)
    /// is kept by `(pool, server id)`; a changed address resets health.
    pub async fn apply(&self, shared: Arc<SharedConfig>) -> Result<ApplyReport, DataplaneError> {
        let inner = &self.inner;
        let mut ctl = inner.control.lock().await;
        if inner.shut_down.load(Relaxed) {
            return Err(DataplaneError::ShutDown);
        }

        // 1. Build everything that can fail, changing nothing yet.
        let mut staged_servers = Vec::new();
        let mut fresh: Vec<Arc<ServerState>> = Vec::new();
        let mut reset: Vec<Arc<ServerState>> = Vec::new();
        let mut pools: Vec<Arc<PoolRuntime>> = Vec::new();
        for pool in &shared.pools {
            let pool_name: Arc<str> = Arc::from(pool.name.as_str());
            let upstream_tls = match &pool.tls {
                Some(t) => Some(upstream::client_config(t, &shared).map_err(|message| {
                    DataplaneError::UpstreamTls {
                        pool: pool.name.clone(),
                        message,
                    }
                })?),
                None => None,
            };
            let mut servers = Vec::with_capacity(pool.servers.len());
            for s in &pool.servers {
                let id: Arc<str> = Arc::from(s.id.as_str());
                let state = match inner.servers.get(&pool.name, &s.id) {
                    Some((state, address)) => {
                        if address != s.address {
                            reset.push(state.clone());
                        }
                        state
                    }
                    None => {
                        let state =
                            Arc::new(ServerState::new(pool_name.clone(), id.clone(), s.state));
                        fresh.push(state.clone());
                        state
                    }
                };
                staged_servers.push((state.clone(), s.address));
                servers.push(PoolServer {
                    id,
                    address: s.address,
                    weight: s.weight,
                    max_connections: s.max_connections,
                    admin: s.state,
                    state,
                });
            }
            pools.push(Arc::new(PoolRuntime::new(
                pool.clone(),
                servers,
                upstream_tls,
            )));
        }
        let pool_map: HashMap<&str, &Arc<PoolRuntime>> =
            pools.iter().map(|p| (&*p.name, p)).collect();

        let old_states = inner
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut service_states = HashMap::new();
        let mut services = Vec::with_capacity(shared.services.len());
        for svc in &shared.services {
            let name: Arc<str> = Arc::from(svc.name.as_str());
            let state = old_states
                .get(&name)
                .cloned()
                .unwrap_or_else(|| Arc::new(ServiceState::new()));
            let mut svc_pools = HashMap::new();
            for p in svc.pool.iter().chain(svc.routes.iter().map(|r| &r.pool)) {
                let pool = pool_map
                    .get(p.as_str())
                    .ok_or_else(|| DataplaneError::UnknownPool {
                        service: svc.name.clone(),
                        pool: p.clone(),
                    })?;
                svc_pools.insert(p.clone(), Arc::clone(pool));
            }
            let tls = if svc.protocol == tandem_config::Protocol::Https {
                let config = server_config::build(
                    svc,
                    &shared,
                    &inner.opts.state_dir,
                    &inner.opts.node_name,
                    &inner.tickets,
                )
                .map_err(|message| DataplaneError::Tls {
                    service: svc.name.clone(),
                    message,
                })?;
                Some(TlsAcceptor::from(config))
            } else {
                None
            };
            service_states.insert(name.clone(), state.clone());
            services.push(Arc::new(ServiceRuntime {
                name,
                config: svc.clone(),
                pools: svc_pools,
                state,
                tables: inner.tables.clone(),
                tls,
                hard_stop: inner.hard_stop.clone(),
                splice: inner.opts.splice,
                udp_max_flows: inner.opts.udp_max_flows.max(1),
            }));
        }

        let mut wanted: HashMap<ListenerKey, (Arc<ServiceRuntime>, ListenerInfo)> = HashMap::new();
        for rt in &services {
            let info = ListenerInfo {
                service: rt.config.name.clone(),
                protocol: rt.config.protocol,
                address: rt.config.listen,
            };
            wanted.insert(
                ListenerKey::of(rt.config.protocol, rt.config.listen),
                (rt.clone(), info),
            );
        }
        let mut bound: Vec<(ListenerKey, BoundSocket)> = Vec::new();
        for (key, (rt, _)) in &wanted {
            if ctl.listeners.contains_key(key) {
                continue;
            }
            match listener::bind(*key, inner.opts.listen_backlog) {
                Ok(b) => bound.push((*key, b)),
                // Dropping `bound` closes what this apply bound so far.
                Err(source) => {
                    return Err(DataplaneError::Bind {
                        service: rt.config.name.clone(),
                        address: key.address,
                        protocol: rt.config.protocol.as_str(),
                        source,
                    });
                }
            }
        }

        // 2. Commit: nothing below fails.
        let mut report = ApplyReport::default();
        inner.servers.replace(staged_servers);
        for s in &reset {
            report
                .health_reset
                .push((s.pool.to_string(), s.id.to_string()));
            self.set_health(s, Health::Unchecked, "address changed");
        }
        for pool in &pools {
            for s in &pool.servers {
                let is_fresh = fresh.iter().any(|f| Arc::ptr_eq(f, &s.state));
                if s.state.set_admin(s.admin) != s.admin || is_fresh {
                    inner.stream.publish(StateChange::ServerAdmin {
                        pool: pool.name.clone(),
                        server: s.id.clone(),
                        state: s.admin,
                    });
                    if !is_fresh {
                        tracing::info!(pool = %pool.name, server = %s.id, state = s.admin.as_str(), "server admin state changed");
                    }
                }
                if pool.config.health_check.is_none() {
                    self.set_health(&s.state, Health::Up, "no health check");
                }
            }
        }
        for rt in &services {
            rt.state.configure(&rt.config);
        }
        *inner.services.lock().unwrap_or_else(|e| e.into_inner()) = service_states;
        inner.current.store(Arc::new(Generation {
            services: services.clone(),
            pools: pools.clone(),
        }));

        let removed: Vec<ListenerKey> = ctl
            .listeners
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        let mut stopped = Vec::new();
        for key in removed {
            if let Some((l, info)) = ctl.listeners.remove(&key) {
                l.stop.cancel();
                stopped.push(l.task);
                report.removed.push(info);
            }
        }
        // The accept loop drops its socket on its way out: wait for that, so once apply
        // returns a removed address refuses connections and can be bound again.
        for task in stopped {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        for (key, (listener, info)) in ctl.listeners.iter_mut() {
            if let Some((rt, new_info)) = wanted.get(key) {
                listener.runtime.store(rt.clone());
                *info = new_info.clone();
                report.kept.push(new_info.clone());
            }
        }
        for (key, socket) in bound {
            let (rt, info) = &wanted[&key];
            match listener::spawn(
                socket,
                Arc::new(ArcSwap::new(rt.clone())),
                inner.liveness.clone(),
            ) {
                Ok(l) => {
                    tracing::info!(service = %info.service, address = %info.address, protocol = info.protocol.as_str(), "listening");
                    ctl.listeners.insert(key, (l, info.clone()));
                    report.added.push(info.clone());
                }
                Err(e) => {
                    tracing::error!(service = %info.service, error = %e, "cannot register the listener")
                }
            }
        }
        inner
            .liveness
            .set_listeners(ctl.listeners.values().map(|(_, i)| i.clone()).collect());

        self.update_checkers(&mut ctl, &pools);
        Ok(report)
    }

    fn set_health(&self, s: &ServerState, h: Health, reason: &str) {
        let old = s.set_health(h);
        if old != h {
            s.counters.health_transitions.fetch_add(1, Relaxed);
            self.inner.stream.publish(StateChange::ServerHealth {
                pool: s.pool.clone(),
                server: s.id.clone(),
                health: h,
            });
            tracing::info!(pool = %s.pool, server = %s.id, from = old.as_str(), to = h.as_str(), reason, "server health changed");
        }
    }

    /// Keeps the checkers whose target and settings are unchanged, starts new ones, stops the
    /// others.
    fn update_checkers(&self, ctl: &mut Control, pools: &[Arc<PoolRuntime>]) {
        static UNVERIFIED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
        let mut next = HashMap::new();
        for pool in pools {
            let Some(check) = &pool.config.health_check else {
                continue;
            };
            for (i, s) in pool.servers.iter().enumerate() {
                let key = (pool.name.clone(), s.id.clone());
                let fingerprint = (s.address, check.clone(), pool.config.tls.clone());
                if let Some(c) = ctl.checkers.remove(&key)
                    && c.fingerprint == fingerprint
                    && !c.task.is_finished()
                {
                    next.insert(key, c);
                    continue;
                } else if let Some(c) = next.get(&key) {
                    c.task.abort();
                }
                let tls = pool.upstream_tls.clone().unwrap_or_else(|| {
                    UNVERIFIED
                        .get_or_init(upstream::unverified_client_config)
                        .clone()
                });
                let task = health::spawn(CheckTarget {
                    pool: pool.name.clone(),
                    server: s.id.clone(),
                    address: s.address,
                    check: check.clone(),
                    tls,
                    state: s.state.clone(),
                    stream: self.inner.stream.clone(),
                    first_delay: health::first_delay(check, i, pool.servers.len()),
                });
                next.insert(key, Checker { fingerprint, task });
            }
        }
        for (_, c) in ctl.checkers.drain() {
            c.task.abort();
        }
        ctl.checkers = next;
    }

    /// Every counter of the running config.
    pub fn stats(&self) -> StatsSnapshot {
        let g = self.inner.current.load();
        StatsSnapshot {
            services: g
                .services
                .iter()
                .map(|s| {
                    s.state
                        .counters
                        .snapshot(&s.name, s.config.protocol, s.config.listen)
                })
                .collect(),
            servers: g
                .pools
                .iter()
                .flat_map(|p| {
                    p.servers.iter().map(|s| {
                        let c = &s.state.counters;
                        ServerStats {
                            pool: p.name.to_string(),
                            id: s.id.to_string(),
                            address: s.address,
                            weight: s.weight,
                            admin: s.admin,
                            health: s.state.health(),
                            traffic: c.traffic.snapshot(),
                            connect_failures: c.connect_failures.load(Relaxed),
                            health_transitions: c.health_transitions.load(Relaxed),
                            checks_failed: c.checks_failed.load(Relaxed),
                        }
                    })
                })
                .collect(),
        }
    }

    /// The replicated tables and their change stream.
    pub fn state(&self) -> StateTables {
        self.inner.tables.clone()
    }

    /// The session-ticket key ring (shared by all HTTPS services).
    pub fn tickets(&self) -> TicketKeyRing {
        self.inner.tickets.clone()
    }

    /// Self-probes of the listeners, for tandemd's watchdog.
    pub fn liveness(&self) -> Liveness {
        self.inner.liveness.clone()
    }

    /// The running service runtime of `name` (for the HTTP engine's tests and tandemd).
    pub fn service(&self, name: &str) -> Option<Arc<ServiceRuntime>> {
        self.inner
            .current
            .load()
            .services
            .iter()
            .find(|s| &*s.name == name)
            .cloned()
    }

    /// Stops accepting on every listener, stops health checks, lets connections finish for up
    /// to `grace`, then ends the remaining ones.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        {
            let mut ctl = inner.control.lock().await;
            inner.shut_down.store(true, Relaxed);
            for (_, (l, _)) in ctl.listeners.drain() {
                l.stop.cancel();
                let _ = l.task.await;
            }
            for (_, c) in ctl.checkers.drain() {
                c.task.abort();
            }
            inner.liveness.set_listeners(Vec::new());
        }
        inner.background.cancel();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            let active: u64 = inner
                .current
                .load()
                .services
                .iter()
                .map(|s| s.state.counters.traffic.active())
                .sum();
            if active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        inner.hard_stop.cancel();
    }
}

async fn sweeper(inner: Weak<Inner>, stop: CancellationToken) {
    let period = inner
        .upgrade()
        .map_or(Duration::from_secs(1), |i| i.opts.sweep_interval);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        inner.tables.persistence().sweep(now);
        let states: Vec<_> = inner
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in states {
            s.connection_rate.sweep(now);
            s.request_rate.sweep(now);
            s.log_throttle.sweep(now);
        }
    }
}

async fn ticket_rotation(tickets: TicketKeyRing, stop: CancellationToken) {
    loop {
        // Looked at again at least every minute: an import may move the rotation earlier.
        let next = tickets
            .next_rotation()
            .min(Instant::now() + Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        tickets.rotate_if_due(Instant::now());
    }
}
