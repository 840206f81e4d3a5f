//! Tandem's dataplane core: listeners on the VIPs, pools and balancing, health checks,
//! persistence, limits, TCP and UDP proxying, TLS termination, counters, and the ordered
//! change stream the sync link replicates. The HTTP/1.1 and HTTP/2 engine plugs in at
//! [`http`] (see `docs/dataplane.md`).
//!
//! ```text
//! Dataplane::start(shared, opts) ─► listeners (FREEBIND) ─► accept ─► limits ─► tcp_proxy / udp_proxy / tls ─► http
//!                                                                        │
//!                                            ServiceRuntime ─► persistence ─► pool ─► balance
//! ```

#![forbid(unsafe_code)]

pub mod balance;
mod dataplane;
pub mod health;
mod http;
pub mod limits;
mod listener;
pub mod liveness;
pub mod metrics;
pub mod persistence;
pub mod pool;
pub mod proxy_protocol;
pub mod service;
pub mod splice;
pub mod state_stream;
pub mod stats;
mod tcp_proxy;
pub mod tls;
mod udp_proxy;

pub use dataplane::{ApplyReport, Dataplane, DataplaneError, DataplaneOptions};
pub use health::Health;
pub use limits::{Admission, LogThrottle};
pub use liveness::{ListenerInfo, Liveness};
pub use metrics::render_prometheus;
pub use pool::{NoServer, PoolRuntime, ServerLease};
pub use service::{CookiePick, ServiceRuntime};
pub use state_stream::{StateChange, StateEvent, StateSubscription, StateTables, StreamError};
pub use stats::StatsSnapshot;
pub use tls::TlsInfo;
pub use tls::ticket_keys::{TicketKeyRing, TicketKeysExport};
