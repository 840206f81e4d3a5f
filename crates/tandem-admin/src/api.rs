//! The REST API under `/api/v1`: JSON in and out, the same operations as the pages
//! ([`crate::ops`]). Authentication, roles and CSRF are the gate's; the document describing
//! every route is [`crate::openapi`].

use crate::app::{AppState, Principal};
use crate::ops::{self, OpError};
use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use tandem_config::store::VersionMeta;
use tandem_config::{Pool, Role, Service};

pub type ApiResult = Result<Response, ApiError>;

pub struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let message = e.message();
        match e {
            OpError::Invalid(d) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": "the config is invalid", "diagnostics": d.items }),
            ),
            OpError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, json!({ "error": message })),
            OpError::Conflict(_) | OpError::Passive(_) => {
                ApiError(StatusCode::CONFLICT, json!({ "error": message }))
            }
            OpError::Refused(_) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": message }),
            ),
            OpError::Failed(_) => ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": message }),
            ),
        }
    }
}

fn not_found(what: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, json!({ "error": what }))
}

fn committed(meta: VersionMeta) -> ApiResult {
    Ok(Json(json!({ "version": meta.id.to_string(), "meta": meta })).into_response())
}

pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

pub async fn status(State(state): State<AppState>) -> Response {
    Json(state.backend.status().await).into_response()
}

pub async fn stats(State(state): State<AppState>) -> Response {
    Json(state.backend.stats()).into_response()
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    seconds: Option<u64>,
    prefix: Option<String>,
}

pub async fn stats_history(
    State(state): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let seconds = q.seconds.unwrap_or(600).min(crate::traffic::KEEP as u64);
    Json(
        state
            .history
            .history(seconds, q.prefix.as_deref().unwrap_or("")),
    )
    .into_response()
}

/// Server-sent events: the newest second of every series, once a second. A stream opened with
/// a session ends within a second of its logout or revocation, and after the idle timeout in
/// any case (the browser reconnects, which checks and refreshes the session: an open
/// dashboard counts as activity).
pub async fn stats_stream(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = state.history.subscribe();
    let idle = state
        .backend
        .current()
        .await
        .shared
        .console
        .session_idle_timeout
        .get();
    let cookie = match &who.via {
        crate::app::Via::Session { cookie, .. } => Some(cookie.clone()),
        crate::app::Via::Token { .. } => None,
    };
    let until = std::time::Instant::now() + idle;
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let state = state.clone();
        let cookie = cookie.clone();
        async move {
            rx.changed().await.ok()?;
            if std::time::Instant::now() > until
                || cookie.as_deref().is_some_and(|c| !state.sessions.exists(c))
            {
                return None;
            }
            let frame = rx.borrow_and_update().clone();
            let data = serde_json::to_string(&*frame).unwrap_or_default();
            Some((Ok(Event::default().event("frame").data(data)), rx))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

pub async fn services(State(state): State<AppState>) -> Response {
    Json(&state.backend.current().await.shared.services).into_response()
}

pub async fn service(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let cur = state.backend.current().await;
    let s = cur
        .shared
        .service(&name)
        .ok_or_else(|| not_found(format!("no service named `{name}`")))?;
    Ok(Json(s).into_response())
}

pub async fn service_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(s): Json<Service>,
) -> ApiResult {
    committed(ops::service_upsert(&state, &who, None, s).await?)
}

pub async fn service_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Json(s): Json<Service>,
) -> ApiResult {
    committed(ops::service_upsert(&state, &who, Some(&name), s).await?)
}

pub async fn service_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    committed(ops::service_delete(&state, &who, &name).await?)
}

pub async fn pools(State(state): State<AppState>) -> Response {
    Json(&state.backend.current().await.shared.pools).into_response()
}

pub async fn pool(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let cur = state.backend.current().await;
    let p = cur
        .shared
        .pool(&name)
        .ok_or_else(|| not_found(format!("no pool named `{name}`")))?;
    Ok(Json(p).into_response())
}

pub async fn pool_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(p): Json<Pool>,
) -> ApiResult {
    committed(ops::pool_upsert(&state, &who, None, p).await?)
}

pub async fn pool_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Json(p): Json<Pool>,
) -> ApiResult {
    committed(ops::pool_upsert(&state, &who, Some(&name), p).await?)
}

pub async fn pool_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    committed(ops::pool_delete(&state, &who, &name).await?)
}

#[derive(Deserialize)]
pub struct ServerStateBody {
    /// `enabled`, `drain` or `disabled`.
    state: String,
}

pub async fn server_state(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((pool, id)): Path<(String, String)>,
    Json(body): Json<ServerStateBody>,
) -> ApiResult {
    let wanted = ops::parse_admin_state(&body.state).ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": format!("`{}` is not a server state: use enabled, drain or disabled", body.state) }),
        )
    })?;
    committed(ops::server_state(&state, &who, &pool, &id, wanted).await?)
}

pub async fn certificates(State(state): State<AppState>) -> Response {
    let cur = state.backend.current().await;
    let now = (ops::now_unix_ms() / 1000) as i64;
    let list: Vec<_> = cur
        .shared
        .certificates
        .iter()
        .map(|c| crate::certs::describe(&c.name, c.cert_pem.as_deref(), c.key_pem.is_some(), now))
        .collect();
    Json(json!({ "certificates": list, "pending_csrs": crate::certs::pending(&state.dir) }))
        .into_response()
}

#[derive(Deserialize)]
pub struct CertificateBody {
    name: String,
    cert_pem: String,
    key_pem: Option<String>,
}

pub async fn certificate_upload(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(b): Json<CertificateBody>,
) -> ApiResult {
    committed(ops::certificate_put(&state, &who, &b.name, &b.cert_pem, b.key_pem.as_deref()).await?)
}

#[derive(Deserialize)]
pub struct CsrBody {
    name: String,
    dns_names: Vec<String>,
}

pub async fn certificate_csr(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(b): Json<CsrBody>,
) -> ApiResult {
    let csr = crate::certs::generate_csr(&state.dir, &b.name, &b.dns_names)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": e })))?;
    ops::audit(
        &state,
        &who,
        "certificate.csr",
        format!("new key and CSR for {}", b.name),
        None,
    );
    Ok(Json(json!({ "name": b.name, "csr_pem": csr })).into_response())
}

pub async fn certificate_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    committed(ops::certificate_delete(&state, &who, &name).await?)
}

pub async fn ha(State(state): State<AppState>) -> Response {
    let status = state.backend.status().await;
    let drill = state
        .last_drill
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Json(json!({
        "role": status.role,
        "routers": status.routers,
        "last_failover": status.last_failover,
        "peer": status.peer,
        "vrrp": state.backend.current().await.shared.vrrp,
        "last_drill": drill,
    }))
    .into_response()
}

pub async fn readiness(State(state): State<AppState>) -> Response {
    Json(state.backend.readiness().await).into_response()
}

pub async fn failover(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult {
    match state.backend.failover().await {
        Ok(message) => {
            ops::audit(&state, &who, "ha.failover", message.clone(), None);
            Ok(Json(json!({ "message": message })).into_response())
        }
        Err(e) => Err(ApiError(StatusCode::CONFLICT, json!({ "error": e }))),
    }
}

pub async fn drill(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult {
    let report = run_drill(&state, &who)
        .await
        .map_err(|e| ApiError(StatusCode::CONFLICT, json!({ "error": e })))?;
    Ok(Json(report).into_response())
}

/// One drill at a time; the report is kept for the HA page.
pub async fn run_drill(
    state: &AppState,
    who: &Principal,
) -> Result<crate::backend::DrillReport, String> {
    let Ok(_guard) = state.drill_running.try_lock() else {
        return Err("a drill is running already".into());
    };
    let report = state.backend.drill().await?;
    ops::audit(state, who, "ha.drill", report.message.clone(), None);
    *state.last_drill.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
    Ok(report)
}

pub async fn versions(State(state): State<AppState>) -> ApiResult {
    let v = state
        .backend
        .versions()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e })))?;
    Ok(
        Json(
            json!({ "current": state.backend.current().await.meta.id.to_string(), "versions": v }),
        )
        .into_response(),
    )
}

pub async fn version(
    State(state): State<AppState>,
    Path((epoch, n)): Path<(u64, u64)>,
) -> ApiResult {
    let v = state.backend.version(epoch, n).await.map_err(not_found)?;
    Ok(Json(json!({ "meta": v.meta, "text": ops::redacted_text(&v.shared) })).into_response())
}

#[derive(Deserialize)]
pub struct DiffQuery {
    /// `epoch.n`
    pub from: String,
    pub to: String,
}

pub fn parse_version_ref(s: &str) -> Option<(u64, u64)> {
    let (e, n) = s.split_once('.')?;
    Some((e.parse().ok()?, n.split('-').next()?.parse().ok()?))
}

/// The unified diff between two versions (secrets redacted).
pub async fn diff_text(state: &AppState, from: &str, to: &str) -> Result<String, ApiError> {
    let bad = |s: &str| {
        ApiError(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("`{s}` is not a version: write EPOCH.N, e.g. 1.4") }),
        )
    };
    let (fe, fnn) = parse_version_ref(from).ok_or_else(|| bad(from))?;
    let (te, tn) = parse_version_ref(to).ok_or_else(|| bad(to))?;
    let a = state.backend.version(fe, fnn).await.map_err(not_found)?;
    let b = state.backend.version(te, tn).await.map_err(not_found)?;
    let (ta, tb) = (ops::redacted_text(&a.shared), ops::redacted_text(&b.shared));
    Ok(similar::TextDiff::from_lines(&ta, &tb)
        .unified_diff()
        .context_radius(3)
        .header(&a.meta.id.to_string(), &b.meta.id.to_string())
        .to_string())
}

pub async fn diff(State(state): State<AppState>, Query(q): Query<DiffQuery>) -> ApiResult {
    let d = diff_text(&state, &q.from, &q.to).await?;
    Ok(Json(json!({ "from": q.from, "to": q.to, "diff": d })).into_response())
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((epoch, n)): Path<(u64, u64)>,
) -> ApiResult {
    committed(ops::rollback(&state, &who, epoch, n).await?)
}

pub async fn branches(State(state): State<AppState>) -> ApiResult {
    let b = state
        .backend
        .branches()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e })))?;
    Ok(Json(b).into_response())
}

/// The running shared config as YAML, secrets included (admins only).
pub async fn backup(State(state): State<AppState>) -> Response {
    let cur = state.backend.current().await;
    let name = format!(
        "attachment; filename=\"tandem-{}.{}.yaml\"",
        cur.meta.id.epoch, cur.meta.id.n
    );
    (
        [
            (header::CONTENT_TYPE, "application/yaml".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        cur.text.clone(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct RestoreBody {
    yaml: String,
}

pub async fn restore(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(b): Json<RestoreBody>,
) -> ApiResult {
    committed(ops::restore(&state, &who, &b.yaml).await?)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
}

pub async fn audit(State(state): State<AppState>, Query(q): Query<AuditQuery>) -> Response {
    let mut list = state
        .backend
        .audit_recent(q.limit.unwrap_or(200).min(10_000));
    list.reverse();
    Json(list).into_response()
}

pub async fn users(State(state): State<AppState>) -> Response {
    let cur = state.backend.current().await;
    let list: Vec<Value> = cur
        .shared
        .users
        .iter()
        .map(|u| json!({ "name": u.name, "role": u.role }))
        .collect();
    Json(list).into_response()
}

pub async fn user_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(u): Json<ops::NewUser>,
) -> ApiResult {
    committed(ops::user_create(&state, &who, u).await?)
}

#[derive(Deserialize)]
pub struct UserUpdate {
    role: Option<Role>,
    password: Option<String>,
}

pub async fn user_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Json(u): Json<UserUpdate>,
) -> ApiResult {
    committed(ops::user_update(&state, &who, &name, u.role, u.password.as_deref()).await?)
}

pub async fn user_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    committed(ops::user_delete(&state, &who, &name).await?)
}

pub async fn tokens(State(state): State<AppState>) -> Response {
    let cur = state.backend.current().await;
    let list: Vec<Value> = cur
        .shared
        .api_tokens
        .iter()
        .map(|t| json!({ "name": t.name, "user": t.user, "created": t.created }))
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
pub struct TokenBody {
    name: String,
    /// Default: the caller.
    user: Option<String>,
}

pub async fn token_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(b): Json<TokenBody>,
) -> ApiResult {
    let user = b.user.unwrap_or_else(|| who.user.clone());
    let (token, meta) = ops::token_create(&state, &who, &b.name, &user).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "name": b.name, "user": user, "token": token, "version": meta.id.to_string() }),
        ),
    )
        .into_response())
}

pub async fn token_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult {
    committed(ops::token_delete(&state, &who, &name).await?)
}
