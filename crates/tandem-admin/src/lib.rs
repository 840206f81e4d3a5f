//! The management plane: one HTTPS listener on the management address (never on a VIP) for
//! the console, the REST API and `/metrics` (`docs/console.md`).
//!
//! - [`routes`]: every route with who may use it; [`gate`]: the one check every request
//!   passes (session or API token, role, CSRF); [`session`], [`login_throttle`], [`secret`].
//! - [`pages`] (askama templates from `web-ui/templates/`) and [`api`] (`/api/v1`, described by
//!   [`openapi`]) both call [`ops`], which commits through the [`Backend`] tandemd implements.
//! - [`traffic`]: the last hour of rates behind the dashboard's graphs; [`alerts`]: syslog and
//!   webhooks; [`certs`]: certificate expiry and CSRs.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod assets;
pub mod backend;
pub mod certs;
pub mod gate;
pub mod login_throttle;
mod metrics_access;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod routes;
pub mod secret;
mod server;
pub mod session;
pub mod traffic;

pub use backend::{
    Backend, BoxStatus, Change, CommitError, DrillReport, DrillStep, FailoverEvent, PeerView,
    Readiness, ReadinessCheck, RouterView, TrackView,
};
pub use metrics_access::MetricsAccess;
pub use server::{AdminError, Management, console_state};

use std::sync::Arc;

/// Renders the Prometheus text exposition of the box's counters on demand.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;
