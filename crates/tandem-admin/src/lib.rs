//! The management plane: one HTTPS listener on the management address (never on a VIP) for
//! the console, the REST API and `/metrics`.

#![forbid(unsafe_code)]

mod metrics_access;
mod server;

pub use server::{AdminError, Management};

use std::sync::Arc;

/// Renders the Prometheus text exposition of the box's counters on demand.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;
