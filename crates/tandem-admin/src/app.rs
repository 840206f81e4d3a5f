//! The console's shared state and the router built from the route table.

use crate::MetricsSource;
use crate::alerts::AlertSender;
use crate::backend::{Backend, DrillReport};
use crate::login_throttle::LoginThrottle;
use crate::metrics_access::MetricsAccess;
use crate::session::Sessions;
use crate::traffic::TrafficHistory;
use axum::Router;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tandem_config::Role;
use tokio::sync::Semaphore;

/// Who makes a request, as the gate established it.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub via: Via,
    /// The client's address.
    pub from: String,
}

#[derive(Clone, Debug)]
pub enum Via {
    Session { csrf: String, cookie: String },
    Token { name: String },
}

impl Principal {
    /// As the audit log and version authors name it.
    pub fn who(&self) -> String {
        match &self.via {
            Via::Session { .. } => self.user.clone(),
            Via::Token { name } => format!("{} (token {name})", self.user),
        }
    }

    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Token { .. } => "",
        }
    }
}

pub struct Inner {
    pub backend: Arc<dyn Backend>,
    pub sessions: Sessions,
    pub throttle: LoginThrottle,
    /// Argon2 costs 19 MiB and tens of milliseconds: at most two checks run at once, so a
    /// flood of logins cannot take the box's memory or both cores.
    pub verify_slots: Semaphore,
    pub history: TrafficHistory,
    pub metrics: MetricsSource,
    pub metrics_access: MetricsAccess,
    /// `<state-dir>/admin`: keys of CSRs waiting for their certificate.
    pub dir: PathBuf,
    pub alerts: Option<AlertSender>,
    pub last_drill: Mutex<Option<DrillReport>>,
    pub drill_running: tokio::sync::Mutex<()>,
    /// The management certificate's SHA-256, shown for `tandemctl --api-fingerprint`.
    pub fingerprint: std::sync::OnceLock<String>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The whole management plane: every route of the table behind the gate, the security
/// headers on every answer.
pub fn router(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for r in crate::routes::table() {
        router = router.route(r.path, (r.make)());
    }
    router
        .fallback(crate::pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::gate::gate,
        ))
        .layer(axum::middleware::from_fn(crate::gate::security_headers))
        .with_state(state)
}
