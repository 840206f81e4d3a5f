//! One virtual service at run time: the context every connection of the service carries.
//!
//! A [`ServiceRuntime`] belongs to one config version; a connection keeps the one it was
//! accepted with until it ends, so a config apply never changes a connection in flight. What
//! must outlive versions (counters, rate buckets) lives in the [`ServiceState`], kept by
//! service name.
//!
//! The protocol handlers (TCP, UDP, and the HTTP engine) use this small API:
//!
//! - [`ServiceRuntime::admit`] at accept: the connection limits' decision and a slot;
//! - [`ServiceRuntime::request_allowed`] per HTTP request (false → 429);
//! - [`ServiceRuntime::pool`] / [`ServiceRuntime::default_pool`]: the pools it may use;
//! - [`ServiceRuntime::choose_server`]: source persistence, then the balancer; and
//!   [`ServiceRuntime::choose_server_by_cookie`] for cookie persistence;
//! - [`ServiceRuntime::counters`] and the server lease's counters;
//! - [`ServiceRuntime::access_log`], [`ServiceRuntime::log_throttle`];
//! - [`PoolRuntime::upstream_tls`] and [`crate::tls::upstream::server_name`] for re-encryption.

use crate::limits::{Admission, LogThrottle, SourceRateLimiter};
use crate::persistence::{PersistenceKey, mask_address, server_for_cookie};
use crate::pool::{NoServer, PoolRuntime, ServerLease};
use crate::state_stream::StateTables;
use crate::stats::ServiceCounters;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tandem_config::{AdminState, Persistence, Service};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What a service keeps across config versions.
#[derive(Debug)]
pub struct ServiceState {
    pub counters: ServiceCounters,
    pub connection_rate: SourceRateLimiter,
    pub request_rate: SourceRateLimiter,
    pub log_throttle: LogThrottle,
}

impl ServiceState {
    pub(crate) fn new() -> Self {
        ServiceState {
            counters: ServiceCounters::default(),
            connection_rate: SourceRateLimiter::new(0),
            request_rate: SourceRateLimiter::new(0),
            log_throttle: LogThrottle::per_minute(),
        }
    }

    pub(crate) fn configure(&self, service: &Service) {
        let per_source = service.limits.per_source.as_ref();
        self.connection_rate.set_rate(
            per_source
                .and_then(|p| p.connections_per_second)
                .unwrap_or(0),
        );
        self.request_rate
            .set_rate(per_source.and_then(|p| p.requests_per_second).unwrap_or(0));
    }
}

/// One config version's service.
pub struct ServiceRuntime {
    pub name: Arc<str>,
    pub config: Service,
    /// The pools this service may send to (its `pool` and its routes' pools), by name.
    pub pools: HashMap<String, Arc<PoolRuntime>>,
    pub(crate) state: Arc<ServiceState>,
    pub(crate) tables: StateTables,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Cancelled when the dataplane's shutdown grace period is over.
    pub(crate) hard_stop: CancellationToken,
    pub(crate) splice: bool,
    pub(crate) udp_max_flows: usize,
}

impl std::fmt::Debug for ServiceRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRuntime")
            .field("name", &self.name)
            .field("protocol", &self.config.protocol)
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A service connection slot (counted in `connections_active`), released when dropped.
#[derive(Debug)]
pub struct ServiceSlot {
    state: Arc<ServiceState>,
}

impl Drop for ServiceSlot {
    fn drop(&mut self) {
        self.state.counters.traffic.connection_closed();
    }
}

/// A server chosen under cookie persistence.
#[derive(Debug)]
pub struct CookiePick {
    pub lease: ServerLease,
    /// Whether to (re)send the cookie with `Max-Age = timeout`: true for a new pin and for a
    /// client pinned to an enabled server; false for one pinned to a draining server, whose
    /// cookie is left to expire.
    pub set_cookie: bool,
}

impl ServiceRuntime {
    pub fn counters(&self) -> &ServiceCounters {
        &self.state.counters
    }

    pub fn access_log(&self) -> bool {
        self.config.access_log
    }

    /// For logging misbehaving clients once a minute per source.
    pub fn log_throttle(&self) -> &LogThrottle {
        &self.state.log_throttle
    }

    pub fn tls_acceptor(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolRuntime>> {
        self.pools.get(name)
    }

    pub fn default_pool(&self) -> Option<&Arc<PoolRuntime>> {
        self.config.pool.as_deref().and_then(|p| self.pools.get(p))
    }

    /// The accept-time decision for a new connection from `source`. `Allowed` comes with the
    /// connection's slot; refusals are counted and logged once a minute per source.
    pub fn admit(&self, source: IpAddr) -> (Admission, Option<ServiceSlot>) {
        let now = Instant::now();
        let c = &self.state.counters;
        let admission = if !self.state.connection_rate.allow(source, now) {
            c.refused_connection_rate.fetch_add(1, Relaxed);
            Admission::SourceRateExceeded
        } else if !c.traffic.try_open(self.config.limits.max_connections) {
            c.refused_max_connections.fetch_add(1, Relaxed);
            Admission::ServiceFull
        } else {
            return (
                Admission::Allowed,
                Some(ServiceSlot {
                    state: self.state.clone(),
                }),
            );
        };
        if self.state.log_throttle.should_log(source, now) {
            tracing::warn!(service = %self.name, %source, ?admission,
                "connection refused by limits (logged once a minute per source)");
        }
        (admission, None)
    }

    /// Whether `source` may send one more HTTP request now (false → 429). Counts refusals.
    pub fn request_allowed(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        if self.state.request_rate.allow(source, now) {
            return true;
        }
        self.state
            .counters
            .refused_request_rate
            .fetch_add(1, Relaxed);
        if self.state.log_throttle.should_log(source, now) {
            tracing::warn!(service = %self.name, %source,
                "requests refused by the per-source rate (logged once a minute per source)");
        }
        false
    }

    /// A server of `pool` for a new session from `client`: the pinned one when source
    /// persistence holds a usable pin (and nothing was excluded), else the balancer's pick,
    /// which is then pinned. `exclude`: servers that already failed for this session.
    pub fn choose_server(
        &self,
        pool: &PoolRuntime,
        client: IpAddr,
        exclude: &[usize],
    ) -> Result<ServerLease, NoServer> {
        let Some(Persistence::Source(sp)) = &self.config.persistence else {
            return self.counted(pool.pick(client, exclude));
        };
        let key = PersistenceKey {
            service: self.name.clone(),
            client: mask_address(client, sp.mask_v4, sp.mask_v6),
        };
        let now = Instant::now();
        let timeout = sp.timeout.get();
        let table = self.tables.persistence();
        if exclude.is_empty() {
            let pinned = table.touch(&key, now, timeout, |pool_name, server| {
                if pool_name != &*pool.name {
                    return None;
                }
                let i = pool.find(server)?;
                if pool.keeps_pinned(i) {
                    pool.lease(i)
                } else {
                    None
                }
            });
            if let Some(lease) = pinned {
                return Ok(lease);
            }
        }
        let lease = self.counted(pool.pick(client, exclude))?;
        table.insert(key, pool.name.clone(), lease.id.clone(), now, timeout);
        Ok(lease)
    }

    /// Cookie persistence: the server the cookie names when it may keep the client, else a
    /// new pick (with source persistence ignored).
    pub fn choose_server_by_cookie(
        &self,
        pool: &PoolRuntime,
        cookie: Option<&str>,
        client: IpAddr,
        exclude: &[usize],
    ) -> Result<CookiePick, NoServer> {
        if let Some(i) =
            cookie.and_then(|v| server_for_cookie(pool.servers.iter().map(|s| &*s.id), v))
            && !exclude.contains(&i)
            && pool.keeps_pinned(i)
            && let Some(lease) = pool.lease(i)
        {
            let set_cookie = pool.servers[i].admin == AdminState::Enabled;
            return Ok(CookiePick { lease, set_cookie });
        }
        let lease = self.counted(pool.pick(client, exclude))?;
        Ok(CookiePick {
            lease,
            set_cookie: true,
        })
    }

    fn counted(&self, r: Result<ServerLease, NoServer>) -> Result<ServerLease, NoServer> {
        if r.is_err() {
            self.state.counters.no_server.fetch_add(1, Relaxed);
        }
        r
    }
}
