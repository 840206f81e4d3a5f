//! Balancing algorithms. Each is a pure function of its inputs (the server set, their weights
//! and loads, the flow) plus, where the algorithm needs one, a single atomic cursor: picking
//! never takes a lock.
//!
//! The caller passes `eligible(i)`: whether server `i` may take a new session now (enabled,
//! healthy, below its `max_connections`). Down, draining, disabled and full servers are skipped
//! by every algorithm.

pub mod least_conn;
pub mod maglev;
pub mod power_of_two;
pub mod round_robin;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tandem_config::Algorithm;

/// One pool's balancer, built for its server set at config apply.
#[derive(Debug)]
pub(crate) enum Balancer {
    RoundRobin(round_robin::RoundRobin),
    LeastConnections { cursor: AtomicUsize },
    SourceHash(maglev::MaglevTable),
    PowerOfTwo,
}

/// What a balancer knows of server `i` when it compares loads.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub active: u64,
    pub weight: u32,
}

impl Balancer {
    /// `servers`: `(stable id, weight)` in config order.
    pub(crate) fn new(algorithm: Algorithm, servers: &[(&str, u32)]) -> Self {
        match algorithm {
            Algorithm::RoundRobin => Balancer::RoundRobin(round_robin::RoundRobin::new(
                &servers.iter().map(|s| s.1).collect::<Vec<_>>(),
            )),
            Algorithm::LeastConnections => Balancer::LeastConnections {
                cursor: AtomicUsize::new(0),
            },
            Algorithm::SourceHash => Balancer::SourceHash(maglev::MaglevTable::build(
                servers,
                maglev::table_size(servers.len()),
            )),
            Algorithm::PowerOfTwo => Balancer::PowerOfTwo,
        }
    }

    pub(crate) fn pick(
        &self,
        client: IpAddr,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> Load,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin(rr) => rr.pick(n, &eligible, |i| load(i).weight),
            Balancer::LeastConnections { cursor } => {
                least_conn::pick(n, cursor.fetch_add(1, Relaxed), eligible, load)
            }
            Balancer::SourceHash(table) => table.pick(maglev::flow_hash(client), n, eligible),
            Balancer::PowerOfTwo => power_of_two::pick(n, power_of_two::random(), eligible, load),
        }
    }
}
