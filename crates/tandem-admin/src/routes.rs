//! Every route of the management plane, with who may use it. The router is built from this
//! table and the gate reads each request's rule from it, so a route cannot exist without a
//! rule; the tests walk it to prove that each one refuses a request without a session, and
//! the OpenAPI document is checked against its `/api/v1` part.

use crate::app::AppState;
use crate::{api, pages};
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use std::sync::OnceLock;
use tandem_config::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No login: the login page, the static files and `/metrics` (which has its own rule).
    Public,
    /// A logged-in user with at least this role.
    Min(Role),
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub make: fn() -> MethodRouter<AppState>,
}

fn r(
    method: Method,
    path: &'static str,
    access: Access,
    make: fn() -> MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        access,
        make,
    }
}

const PUBLIC: Access = Access::Public;
const VIEWER: Access = Access::Min(Role::Viewer);
const OPERATOR: Access = Access::Min(Role::Operator);
const ADMIN: Access = Access::Min(Role::Admin);

pub fn table() -> &'static [Route] {
    static TABLE: OnceLock<Vec<Route>> = OnceLock::new();
    TABLE.get_or_init(|| {
        use Method as M;
        vec![
            // Public.
            r(M::GET, "/login", PUBLIC, || get(pages::login_form)),
            r(M::POST, "/login", PUBLIC, || post(pages::login)),
            r(M::GET, "/static/{*file}", PUBLIC, || {
                get(crate::assets::serve)
            }),
            r(M::GET, "/metrics", PUBLIC, || {
                get(crate::server::serve_metrics)
            }),
            // Pages.
            r(M::POST, "/logout", VIEWER, || post(pages::logout)),
            r(M::GET, "/", VIEWER, || get(pages::dashboard)),
            r(M::GET, "/services", VIEWER, || get(pages::services)),
            r(M::POST, "/services", ADMIN, || post(pages::service_create)),
            r(M::GET, "/services/new", ADMIN, || get(pages::service_new)),
            r(M::GET, "/services/{name}", VIEWER, || {
                get(pages::service_edit)
            }),
            r(M::POST, "/services/{name}", ADMIN, || {
                post(pages::service_update)
            }),
            r(M::POST, "/services/{name}/delete", ADMIN, || {
                post(pages::service_delete)
            }),
            r(M::GET, "/pools", VIEWER, || get(pages::pools)),
            r(M::POST, "/pools", ADMIN, || post(pages::pool_create)),
            r(M::GET, "/pools/new", ADMIN, || get(pages::pool_new)),
            r(M::GET, "/pools/{name}", VIEWER, || get(pages::pool_edit)),
            r(M::POST, "/pools/{name}", ADMIN, || post(pages::pool_update)),
            r(M::POST, "/pools/{name}/delete", ADMIN, || {
                post(pages::pool_delete)
            }),
            r(
                M::POST,
                "/pools/{name}/servers/{id}/state",
                OPERATOR,
                || post(pages::server_state),
            ),
            r(M::GET, "/certificates", VIEWER, || get(pages::certificates)),
            r(M::POST, "/certificates", ADMIN, || {
                post(pages::certificate_upload)
            }),
            r(M::POST, "/certificates/csr", ADMIN, || {
                post(pages::certificate_csr)
            }),
            r(M::POST, "/certificates/{name}/delete", ADMIN, || {
                post(pages::certificate_delete)
            }),
            r(M::GET, "/ha", VIEWER, || get(pages::ha)),
            r(M::POST, "/ha/failover", ADMIN, || post(pages::failover)),
            r(M::POST, "/ha/drill", ADMIN, || post(pages::drill)),
            r(M::GET, "/history", VIEWER, || get(pages::history)),
            r(M::GET, "/history/diff", VIEWER, || get(pages::diff)),
            r(M::GET, "/history/{epoch}/{n}", VIEWER, || {
                get(pages::version)
            }),
            r(M::POST, "/history/rollback", ADMIN, || {
                post(pages::rollback)
            }),
            r(M::GET, "/history/backup", ADMIN, || get(api::backup)),
            r(M::POST, "/history/restore", ADMIN, || post(pages::restore)),
            r(M::GET, "/audit", VIEWER, || get(pages::audit)),
            r(M::GET, "/users", ADMIN, || get(pages::users)),
            r(M::POST, "/users", ADMIN, || post(pages::user_create)),
            r(M::POST, "/users/{name}", ADMIN, || post(pages::user_update)),
            r(M::POST, "/users/{name}/delete", ADMIN, || {
                post(pages::user_delete)
            }),
            r(M::POST, "/tokens", ADMIN, || post(pages::token_create)),
            r(M::POST, "/tokens/{name}/delete", ADMIN, || {
                post(pages::token_delete)
            }),
            // The REST API.
            r(M::GET, "/api/v1/openapi.json", VIEWER, || get(api::openapi)),
            r(M::GET, "/api/v1/status", VIEWER, || get(api::status)),
            r(M::GET, "/api/v1/stats", VIEWER, || get(api::stats)),
            r(M::GET, "/api/v1/stats/history", VIEWER, || {
                get(api::stats_history)
            }),
            r(M::GET, "/api/v1/stats/stream", VIEWER, || {
                get(api::stats_stream)
            }),
            r(M::GET, "/api/v1/services", VIEWER, || get(api::services)),
            r(M::POST, "/api/v1/services", ADMIN, || {
                post(api::service_create)
            }),
            r(M::GET, "/api/v1/services/{name}", VIEWER, || {
                get(api::service)
            }),
            r(M::PUT, "/api/v1/services/{name}", ADMIN, || {
                put(api::service_update)
            }),
            r(M::DELETE, "/api/v1/services/{name}", ADMIN, || {
                delete(api::service_delete)
            }),
            r(M::GET, "/api/v1/pools", VIEWER, || get(api::pools)),
            r(M::POST, "/api/v1/pools", ADMIN, || post(api::pool_create)),
            r(M::GET, "/api/v1/pools/{name}", VIEWER, || get(api::pool)),
            r(M::PUT, "/api/v1/pools/{name}", ADMIN, || {
                put(api::pool_update)
            }),
            r(M::DELETE, "/api/v1/pools/{name}", ADMIN, || {
                delete(api::pool_delete)
            }),
            r(
                M::PUT,
                "/api/v1/pools/{name}/servers/{id}/state",
                OPERATOR,
                || put(api::server_state),
            ),
            r(M::GET, "/api/v1/certificates", VIEWER, || {
                get(api::certificates)
            }),
            r(M::POST, "/api/v1/certificates", ADMIN, || {
                post(api::certificate_upload)
            }),
            r(M::POST, "/api/v1/certificates/csr", ADMIN, || {
                post(api::certificate_csr)
            }),
            r(M::DELETE, "/api/v1/certificates/{name}", ADMIN, || {
                delete(api::certificate_delete)
            }),
            r(M::GET, "/api/v1/ha", VIEWER, || get(api::ha)),
            r(M::GET, "/api/v1/ha/readiness", VIEWER, || {
                get(api::readiness)
            }),
            r(M::POST, "/api/v1/ha/failover", ADMIN, || {
                post(api::failover)
            }),
            r(M::POST, "/api/v1/ha/drill", ADMIN, || post(api::drill)),
            r(M::GET, "/api/v1/versions", VIEWER, || get(api::versions)),
            r(M::GET, "/api/v1/versions/diff", VIEWER, || get(api::diff)),
            r(M::GET, "/api/v1/versions/{epoch}/{n}", VIEWER, || {
                get(api::version)
            }),
            r(
                M::POST,
                "/api/v1/versions/{epoch}/{n}/rollback",
                ADMIN,
                || post(api::rollback),
            ),
            r(M::GET, "/api/v1/branches", VIEWER, || get(api::branches)),
            r(M::GET, "/api/v1/config/backup", ADMIN, || get(api::backup)),
            r(M::POST, "/api/v1/config/restore", ADMIN, || {
                post(api::restore)
            }),
            r(M::GET, "/api/v1/audit", VIEWER, || get(api::audit)),
            r(M::GET, "/api/v1/users", ADMIN, || get(api::users)),
            r(M::POST, "/api/v1/users", ADMIN, || post(api::user_create)),
            r(M::PUT, "/api/v1/users/{name}", ADMIN, || {
                put(api::user_update)
            }),
            r(M::DELETE, "/api/v1/users/{name}", ADMIN, || {
                delete(api::user_delete)
            }),
            r(M::GET, "/api/v1/tokens", ADMIN, || get(api::tokens)),
            r(M::POST, "/api/v1/tokens", ADMIN, || post(api::token_create)),
            r(M::DELETE, "/api/v1/tokens/{name}", ADMIN, || {
                delete(api::token_delete)
            }),
        ]
    })
}

/// The rule of a route by method and matched path.
pub fn find(method: &Method, path: &str) -> Option<&'static Route> {
    table()
        .iter()
        .find(|r| r.path == path && r.method == *method)
}
