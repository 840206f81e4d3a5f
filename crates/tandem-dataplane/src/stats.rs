//! Counters per service and per server, and the plain-data snapshot the console, `tandemctl
//! status` and `/metrics` read.
//!
//! Counters are atomics updated with `Relaxed` ordering: the hot path never takes a lock, and a
//! snapshot is a set of independent reads (a counter may be one event ahead of another).
//!
//! Byte directions follow HAProxy: `bytes_in` is the request direction (client → server),
//! `bytes_out` the response direction (server → client), on services and servers alike.

use crate::health::Health;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tandem_config::{AdminState, Protocol};

/// Upper bounds (seconds) of the latency histogram buckets; a last `+Inf` bucket follows.
/// Prometheus's default buckets, which dashboards expect.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Traffic counters shared by services and servers.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    active: AtomicU64,
    total: AtomicU64,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    responses: [AtomicU64; 5],
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

impl TrafficCounters {
    /// A connection (or UDP flow) opened: counts it as active and in the total.
    pub fn connection_opened(&self) {
        self.active.fetch_add(1, Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Reserves an active slot when fewer than `max` are in use. Counts the connection as
    /// opened on success.
    pub(crate) fn try_open(&self, max: Option<u32>) -> bool {
        match max {
            None => {
                self.connection_opened();
                true
            }
            Some(max) => {
                let before = self.active.fetch_add(1, Relaxed);
                if before >= u64::from(max) {
                    self.active.fetch_sub(1, Relaxed);
                    false
                } else {
                    self.total.fetch_add(1, Relaxed);
                    true
                }
            }
        }
    }

    pub fn add_request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }

    /// A response of `status` after `latency` (time to the response head).
    pub fn observe_response(&self, status: u16, latency: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
        self.observe_latency(latency);
    }

    pub fn observe_latency(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    pub fn snapshot(&self) -> TrafficSnapshot {
        let mut cumulative = Vec::with_capacity(self.latency.len());
        let mut running = 0;
        for bucket in &self.latency {
            running += bucket.load(Relaxed);
            cumulative.push(running);
        }
        TrafficSnapshot {
            active: self.active.load(Relaxed),
            total: self.total.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            responses: std::array::from_fn(|i| self.responses[i].load(Relaxed)),
            latency: Histogram {
                count: running,
                sum_seconds: self.latency_sum_us.load(Relaxed) as f64 / 1e6,
                cumulative,
            },
        }
    }
}

/// A latency histogram in Prometheus form: `cumulative[i]` counts observations ≤
/// `LATENCY_BUCKETS[i]`; the last element is the `+Inf` bucket and equals `count`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrafficSnapshot {
    pub active: u64,
    pub total: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub responses: [u64; 5],
    pub latency: Histogram,
}

/// Per-service counters beyond traffic: refusals by the limits.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub traffic: TrafficCounters,
    /// Connections refused because `limits.max_connections` was reached.
    pub refused_max_connections: AtomicU64,
    /// Connections refused by the per-source connection rate.
    pub refused_connection_rate: AtomicU64,
    /// Requests refused by the per-source request rate (429).
    pub refused_request_rate: AtomicU64,
    /// Sessions refused because no server was available (TCP refused, HTTP 503).
    pub no_server: AtomicU64,
    /// UDP flows evicted because the flow table was full.
    pub udp_flows_evicted: AtomicU64,
    /// HTTP requests refused for their framing or syntax (400, 501, 505), never forwarded.
    pub http_malformed: AtomicU64,
    /// HTTP requests cut off by the header read timeout (408, slow clients).
    pub http_header_timeouts: AtomicU64,
    /// HTTP requests refused for their size: head (431, 414) or body (413).
    pub http_too_large: AtomicU64,
}

/// Per-server counters beyond traffic.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub traffic: TrafficCounters,
    pub connect_failures: AtomicU64,
    pub health_transitions: AtomicU64,
    pub checks_failed: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceStats {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub traffic: TrafficSnapshot,
    pub refused_max_connections: u64,
    pub refused_connection_rate: u64,
    pub refused_request_rate: u64,
    pub no_server: u64,
    pub udp_flows_evicted: u64,
    pub http_malformed: u64,
    pub http_header_timeouts: u64,
    pub http_too_large: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerStats {
    pub pool: String,
    pub id: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub admin: AdminState,
    pub health: Health,
    pub traffic: TrafficSnapshot,
    pub connect_failures: u64,
    pub health_transitions: u64,
    pub checks_failed: u64,
}

/// Every counter of the running config, services and servers in config order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    pub services: Vec<ServiceStats>,
    pub servers: Vec<ServerStats>,
}

impl ServiceCounters {
    pub(crate) fn snapshot(
        &self,
        name: &str,
        protocol: Protocol,
        listen: SocketAddr,
    ) -> ServiceStats {
        ServiceStats {
            name: name.to_owned(),
            protocol,
            listen,
            traffic: self.traffic.snapshot(),
            refused_max_connections: self.refused_max_connections.load(Relaxed),
            refused_connection_rate: self.refused_connection_rate.load(Relaxed),
            refused_request_rate: self.refused_request_rate.load(Relaxed),
            no_server: self.no_server.load(Relaxed),
            udp_flows_evicted: self.udp_flows_evicted.load(Relaxed),
            http_malformed: self.http_malformed.load(Relaxed),
            http_header_timeouts: self.http_header_timeouts.load(Relaxed),
            http_too_large: self.http_too_large.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_classes_are_counted() {
        let c = TrafficCounters::default();
        c.observe_response(200, Duration::from_millis(3));
        c.observe_response(503, Duration::from_millis(30));
        c.observe_response(404, Duration::from_secs(20));
        let s = c.snapshot();
        assert_eq!(s.responses, [0, 1, 0, 1, 1]);
        assert_eq!(s.latency.cumulative[0], 1); // ≤ 5 ms
        assert_eq!(s.latency.cumulative[3], 2); // ≤ 50 ms
        assert_eq!(s.latency.cumulative[10], 2); // ≤ 10 s
        assert_eq!(*s.latency.cumulative.last().unwrap(), 3);
        assert_eq!(s.latency.count, 3);
        assert!((s.latency.sum_seconds - 20.033).abs() < 1e-6);
    }

    #[test]
    fn try_open_respects_the_maximum() {
        let c = TrafficCounters::default();
        assert!(c.try_open(Some(2)));
        assert!(c.try_open(Some(2)));
        assert!(!c.try_open(Some(2)));
        c.connection_closed();
        assert!(c.try_open(Some(2)));
        assert_eq!(c.snapshot().total, 3);
        assert_eq!(c.active(), 2);
    }
}
