//! Pools of real servers: their runtime state, and picking one for a new session.
//!
//! A server's *runtime state* ([`ServerState`]: health, admin state, counters, active
//! connections) outlives config versions: it is kept by `(pool name, server id)` in the
//! [`ServerRegistry`]. A [`PoolRuntime`] is one config version's view of a pool (its servers,
//! weights and balancer) pointing at those states.
//!
//! Who may take what:
//!
//! | admin state | new session | pinned client (persistence) |
//! | --- | --- | --- |
//! | `enabled`  | when up and below `max_connections` | when up and below `max_connections` |
//! | `drain`    | never | kept until the entry expires, while up |
//! | `disabled` | never | never: persistence is ignored and the client re-balanced |
//!
//! A server never checked yet (right after start or an address change) takes new sessions only
//! when no server of its pool is known up (see `health.rs`).

use crate::balance::{Balancer, Load};
use crate::health::Health;
use crate::stats::ServerCounters;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tandem_config::{AdminState, Pool};

/// The runtime state of one server, shared by every config version that has it.
#[derive(Debug)]
pub struct ServerState {
    pub pool: Arc<str>,
    pub id: Arc<str>,
    health: AtomicU8,
    admin: AtomicU8,
    pub counters: ServerCounters,
}

impl ServerState {
    pub(crate) fn new(pool: Arc<str>, id: Arc<str>, admin: AdminState) -> Self {
        ServerState {
            pool,
            id,
            health: AtomicU8::new(Health::Unchecked as u8),
            admin: AtomicU8::new(admin_code(admin)),
            counters: ServerCounters::default(),
        }
    }

    pub fn health(&self) -> Health {
        Health::from_code(self.health.load(Relaxed))
    }

    /// Sets the health; returns the previous one.
    pub(crate) fn set_health(&self, h: Health) -> Health {
        Health::from_code(self.health.swap(h as u8, Relaxed))
    }

    pub fn admin(&self) -> AdminState {
        match self.admin.load(Relaxed) {
            1 => AdminState::Drain,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }

    pub(crate) fn set_admin(&self, a: AdminState) -> AdminState {
        let old = self.admin();
        self.admin.store(admin_code(a), Relaxed);
        old
    }
}

fn admin_code(a: AdminState) -> u8 {
    match a {
        AdminState::Enabled => 0,
        AdminState::Drain => 1,
        AdminState::Disabled => 2,
    }
}

/// `(pool name, server id)`.
pub type ServerKey = (Arc<str>, Arc<str>);

/// A server's state and the address it was last configured with.
type RegisteredServer = (Arc<ServerState>, SocketAddr);

/// Server states by `(pool, id)`, with the address each was last configured with (a changed
/// address resets health). Only config apply and snapshots lock it.
#[derive(Clone, Debug, Default)]
pub struct ServerRegistry {
    inner: Arc<Mutex<HashMap<ServerKey, RegisteredServer>>>,
}

impl ServerRegistry {
    pub(crate) fn get(&self, pool: &str, id: &str) -> Option<(Arc<ServerState>, SocketAddr)> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(Arc::from(pool), Arc::from(id))).cloned()
    }

    /// Replaces the whole set (at config apply).
    pub(crate) fn replace(&self, entries: Vec<(Arc<ServerState>, SocketAddr)>) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *map = entries
            .into_iter()
            .map(|(s, a)| ((s.pool.clone(), s.id.clone()), (s, a)))
            .collect();
    }

    pub(crate) fn all(&self) -> Vec<Arc<ServerState>> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(|(s, _)| s.clone()).collect()
    }
}

/// A server as one config version sees it.
#[derive(Debug)]
pub struct PoolServer {
    pub id: Arc<str>,
    pub address: SocketAddr,
    pub weight: u32,
    pub max_connections: Option<u32>,
    pub admin: AdminState,
    pub state: Arc<ServerState>,
}

/// No server can take the session: HTTP answers 503, TCP refuses the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no server available")]
pub struct NoServer;

/// One config version's pool.
#[derive(Debug)]
pub struct PoolRuntime {
    pub name: Arc<str>,
    pub config: Pool,
    pub servers: Vec<PoolServer>,
    balancer: Balancer,
    /// TLS client settings towards the servers (re-encryption), when the pool has `tls`.
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// The HTTP engine's idle keep-alive connections to the servers, per server.
    pub idle: crate::http::IdleConnections,
}

impl PoolRuntime {
    pub(crate) fn new(
        config: Pool,
        servers: Vec<PoolServer>,
        upstream_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let ids: Vec<(&str, u32)> = servers.iter().map(|s| (&*s.id, s.weight)).collect();
        let balancer = Balancer::new(config.algorithm, &ids);
        PoolRuntime {
            name: Arc::from(config.name.as_str()),
            idle: crate::http::IdleConnections::new(servers.len()),
            config,
            servers,
            balancer,
            upstream_tls,
        }
    }

    /// The index of the server with this id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.servers.iter().position(|s| &*s.id == id)
    }

    fn full(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.max_connections
            .is_some_and(|max| s.state.counters.traffic.active() >= u64::from(max))
    }

    /// Whether server `i` may take a new session.
    pub fn takes_new(&self, i: usize, allow_unchecked: bool) -> bool {
        let s = &self.servers[i];
        s.admin == AdminState::Enabled
            && match s.state.health() {
                Health::Up => true,
                Health::Unchecked => allow_unchecked,
                Health::Down => false,
            }
            && !self.full(i)
    }

    /// Whether a client pinned to server `i` keeps it (drain keeps pinned clients).
    pub fn keeps_pinned(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.admin != AdminState::Disabled && s.state.health() != Health::Down && !self.full(i)
    }

    /// Picks a server for a new session from `client`, skipping the servers in `exclude`
    /// (those that already failed to connect for this session).
    pub fn pick(&self, client: IpAddr, exclude: &[usize]) -> Result<ServerLease, NoServer> {
        let n = self.servers.len();
        let load = |i: usize| Load {
            active: self.servers[i].state.counters.traffic.active(),
            weight: self.servers[i].weight,
        };
        for allow_unchecked in [false, true] {
            // A few tries: a server may fill up between the pick and the lease.
            for _ in 0..3 {
                let eligible =
                    |i: usize| !exclude.contains(&i) && self.takes_new(i, allow_unchecked);
                match self.balancer.pick(client, n, eligible, load) {
                    Some(i) => {
                        if let Some(lease) = self.lease(i) {
                            return Ok(lease);
                        }
                    }
                    None => break,
                }
            }
        }
        Err(NoServer)
    }

    /// Takes a connection slot on server `i` (fails when it is at `max_connections`).
    pub fn lease(&self, i: usize) -> Option<ServerLease> {
        let s = &self.servers[i];
        s.state
            .counters
            .traffic
            .try_open(s.max_connections)
            .then(|| ServerLease {
                index: i,
                id: s.id.clone(),
                address: s.address,
                state: s.state.clone(),
            })
    }
}

/// A server chosen for a session, holding one of its connection slots until dropped.
#[derive(Debug)]
pub struct ServerLease {
    pub index: usize,
    pub id: Arc<str>,
    pub address: SocketAddr,
    pub state: Arc<ServerState>,
}

impl Drop for ServerLease {
    fn drop(&mut self) {
        self.state.counters.traffic.connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::{Algorithm, Server};

    fn pool(algorithm: Algorithm, servers: &[(&str, u32, Option<u32>, AdminState)]) -> PoolRuntime {
        let config = Pool {
            name: "p".into(),
            algorithm,
            servers: servers
                .iter()
                .enumerate()
                .map(|(i, s)| Server {
                    id: s.0.into(),
                    address: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                    weight: s.1,
                    max_connections: s.2,
                    state: s.3,
                })
                .collect(),
            health_check: None,
            tls: None,
            connect_timeout: tandem_config::Duration::from_secs(1),
            response_timeout: tandem_config::Duration::from_secs(1),
        };
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let state = Arc::new(ServerState::new("p".into(), s.id.as_str().into(), s.state));
                state.set_health(Health::Up);
                PoolServer {
                    id: s.id.as_str().into(),
                    address: s.address,
                    weight: s.weight,
                    max_connections: s.max_connections,
                    admin: s.state,
                    state,
                }
            })
            .collect();
        PoolRuntime::new(config, servers, None)
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn skips_down_draining_disabled_and_full() {
        use AdminState::*;
        let p = pool(
            Algorithm::RoundRobin,
            &[
                ("a", 1, None, Enabled),
                ("b", 1, None, Drain),
                ("c", 1, None, Disabled),
                ("d", 1, Some(1), Enabled),
                ("e", 1, None, Enabled),
            ],
        );
        p.servers[4].state.set_health(Health::Down);
        let held = p.pick(CLIENT, &[]).unwrap();
        // Only `a` and `d` are eligible; `d` takes one connection at most.
        let mut picked = vec![held.id.to_string()];
        let mut leases = vec![held];
        for _ in 0..5 {
            let l = p.pick(CLIENT, &[]).unwrap();
            picked.push(l.id.to_string());
            leases.push(l);
        }
        assert_eq!(picked.iter().filter(|s| *s == "d").count(), 1, "{picked:?}");
        assert!(picked.iter().all(|s| s == "a" || s == "d"), "{picked:?}");
        // Pinned clients keep a draining server, never a disabled one.
        assert!(p.keeps_pinned(1));
        assert!(!p.keeps_pinned(2));
        assert!(!p.keeps_pinned(4));
    }

    #[test]
    fn no_server_is_a_typed_result_and_leases_release() {
        let p = pool(
            Algorithm::LeastConnections,
            &[("a", 1, Some(1), AdminState::Enabled)],
        );
        let lease = p.pick(CLIENT, &[]).unwrap();
        assert_eq!(p.pick(CLIENT, &[]).unwrap_err(), NoServer);
        drop(lease);
        assert!(p.pick(CLIENT, &[]).is_ok());
        assert_eq!(p.pick(CLIENT, &[0]).unwrap_err(), NoServer);
    }

    #[test]
    fn unchecked_servers_serve_only_when_none_is_known_up() {
        let p = pool(
            Algorithm::RoundRobin,
            &[
                ("a", 1, None, AdminState::Enabled),
                ("b", 1, None, AdminState::Enabled),
            ],
        );
        p.servers[0].state.set_health(Health::Unchecked);
        for _ in 0..4 {
            assert_eq!(&*p.pick(CLIENT, &[]).unwrap().id, "b");
        }
        p.servers[1].state.set_health(Health::Down);
        assert_eq!(&*p.pick(CLIENT, &[]).unwrap().id, "a");
    }

    #[test]
    fn source_hash_is_stable_per_client() {
        let p = pool(
            Algorithm::SourceHash,
            &[
                ("a", 1, None, AdminState::Enabled),
                ("b", 1, None, AdminState::Enabled),
                ("c", 1, None, AdminState::Enabled),
            ],
        );
        for i in 0..50u8 {
            let c = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i));
            let first = p.pick(c, &[]).unwrap().id.clone();
            for _ in 0..5 {
                assert_eq!(p.pick(c, &[]).unwrap().id, first);
            }
        }
    }
}
