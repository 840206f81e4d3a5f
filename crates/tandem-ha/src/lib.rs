//! Tandem's heartbeat: the I/O loop around `tandem-vrrp`.
//!
//! `tandem-vrrp` decides (RFC 5798's state machine, sans-IO); `tandem-net` does (raw
//! sockets, netlink, announcements); this crate connects them on **its own OS thread with
//! its own single-threaded tokio runtime**, at `SCHED_FIFO` with memory locked, so that a
//! dataplane at 100 % CPU cannot delay an advert or a Master_Down timer. Nothing here ever
//! waits on the rest of tandemd: tracking states, handovers and reloads arrive through a
//! channel, the role is a `watch`, the status a published snapshot.
//!
//! ```text
//! Ha::start(HaConfig::from_config(&node, &shared)?) -> HaHandle
//!   .role()            watch::Receiver<Role>   Active | Passive
//!   .set_track(n, s)   pools, dataplane        never blocks
//!   .failover_now()    make-before-break handover to the peer
//!   .status()          HaStatus (render_prometheus for /metrics)
//!   .apply(config)     reload: unchanged routers keep running
//!   .shutdown()        graceful: priority 0, VIPs kept until the new Master is heard
//! ```
//!
//! Files by role, as holo-vrrp has them: `network.rs` the sockets and links, `tasks.rs` the
//! tokio tasks that feed the loop, `events.rs` one function per input event, `actions.rs`
//! the state machine's actions carried out, `instance.rs` the state and the loop. The
//! operator's view is `docs/ha.md`.

#![forbid(unsafe_code)]

mod actions;
mod config;
mod events;
mod handle;
mod instance;
mod network;
mod notify;
mod status;
mod tasks;

pub use config::{
    DEFAULT_REALTIME_PRIORITY, GatewayConfig, HaConfig, NotifyConfig, ProbeMethod, RouterConfig,
    track,
};
pub use handle::{Ha, HaError, HaHandle};
pub use status::{HaStatus, Role, RouterState, RouterStatus, TrackStatus, Transition};
pub use tandem_net::Burst;
pub use tandem_vrrp::{TrackEffect, TrackState};
