//! The console's pages: server-rendered HTML (askama templates from `web-ui/templates/`).
//! A GET only reads; every change is a POST of a form carrying the session's CSRF token (the
//! gate checks it), answered by a redirect with a message, or by the same form again with
//! each problem next to its field.

use crate::app::{AppState, Principal};
use crate::backend::{BoxStatus, DrillReport, Readiness};
use crate::certs::CertView;
use crate::ops::{self, OpError};
use crate::session;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tandem_config::{Diagnostics, Pool, Role, Service};

type Errors = BTreeMap<String, Vec<String>>;

/// What every page's frame shows.
pub struct PageCtx {
    pub title: String,
    pub node: String,
    pub node_role: String,
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub nav: &'static str,
    pub flash: Option<String>,
    pub error: Option<String>,
}

impl PageCtx {
    pub fn links(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        let mut l = vec![
            ("/", "Dashboard", "dashboard"),
            ("/services", "Services", "services"),
            ("/pools", "Pools", "pools"),
            ("/certificates", "Certificates", "certificates"),
            ("/ha", "HA", "ha"),
            ("/history", "History", "history"),
            ("/audit", "Audit", "audit"),
        ];
        if self.role == Role::Admin {
            l.push(("/users", "Users", "users"));
        }
        l
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }
}

/// Marks a flash message as an error.
const ERROR_MARK: char = '\u{1}';

async fn ctx(state: &AppState, who: &Principal, nav: &'static str, title: &str) -> PageCtx {
    let status = state.backend.status().await;
    let (mut flash, mut error) = (None, None);
    if let crate::app::Via::Session { cookie, .. } = &who.via
        && let Some(f) = state.sessions.take_flash(cookie)
    {
        match f.strip_prefix(ERROR_MARK) {
            Some(e) => error = Some(e.to_owned()),
            None => flash = Some(f),
        }
    }
    PageCtx {
        title: title.to_owned(),
        node: status.node,
        node_role: status.role,
        user: who.user.clone(),
        role: who.role,
        csrf: who.csrf().to_owned(),
        nav,
        flash,
        error,
    }
}

/// After a POST: a message for the next page, and a redirect to it.
fn done(state: &AppState, who: &Principal, to: &str, message: Result<String, String>) -> Response {
    if let crate::app::Via::Session { cookie, .. } = &who.via {
        let text = match message {
            Ok(m) => m,
            Err(e) => format!("{ERROR_MARK}{e}"),
        };
        state.sessions.set_flash(cookie, text);
    }
    Redirect::to(to).into_response()
}

fn when(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms),
    )
    .to_string()
    .replace('T', " ")
    .replace('Z', " UTC")
}

fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered\n",
            )
                .into_response()
        }
    }
}

fn render_status(status: StatusCode, t: impl Template) -> Response {
    let mut r = render(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    render_status(
        status,
        ErrorPage {
            status: status.as_u16(),
            message,
        },
    )
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "There is no such page.")
}

// ---------------------------------------------------------------------------------------
// Login and logout.

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    node: String,
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
    no_users: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path on this console: never `//host` or a scheme.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains(['\r', '\n'])
                && n.len() < 512 =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: String,
    username: String,
    error: Option<String>,
) -> Response {
    let current = state.backend.current().await;
    let node = state.backend.status().await.node;
    // The login form's own CSRF token: a random value in a cookie, repeated in the form.
    let (token, set) = match session::cookie_value(headers, session::LOGIN_COOKIE)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(v) => (v.to_owned(), None),
        None => {
            let v = hex::encode(crate::secret::random_bytes());
            (
                v.clone(),
                Some(session::set_cookie(session::LOGIN_COOKIE, &v)),
            )
        }
    };
    let mut resp = render_status(
        status,
        LoginPage {
            node,
            csrf: token,
            next,
            username,
            error,
            no_users: current.shared.users.is_empty(),
        },
    );
    if let Some(c) = set
        && let Ok(v) = c.parse()
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    login_page(
        &state,
        &headers,
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        String::new(),
        None,
    )
    .await
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let username: String = f.username.chars().take(64).collect();
    let expected = session::cookie_value(&headers, session::LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty()
        || !crate::secret::constant_time_eq(expected.as_bytes(), f.csrf.as_bytes())
    {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            next,
            username,
            Some("The login form expired; please try again.".into()),
        )
        .await;
    }
    let source = peer.ip().to_canonical();
    let now = std::time::Instant::now();
    match state.throttle.admit(&username, source, now) {
        crate::login_throttle::Admit::Wait(w) => {
            let secs = w.as_secs().max(1);
            let mut r = login_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                next,
                username,
                Some(format!(
                    "Too many failed logins from your address: wait {secs} s before trying again."
                )),
            )
            .await;
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        crate::login_throttle::Admit::Check(pause) => {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    let current = state.backend.current().await;
    let user = current.shared.user(&username).cloned();
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| crate::secret::decoy_hash().to_owned());
    let ok = {
        let Ok(_permit) = state.verify_slots.acquire().await else {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "stopping");
        };
        let password = f.password.clone();
        tokio::task::spawn_blocking(move || crate::secret::verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    } && user.is_some();
    let from = source.to_string();
    let settings = &current.shared.console;
    if !ok {
        state.throttle.failed(
            &username,
            source,
            settings.login_backoff.get(),
            settings.login_backoff_max.get(),
            now,
        );
        state.backend.audit_record(tandem_sync::NewAuditEntry {
            at_unix_ms: ops::now_unix_ms(),
            who: username.clone(),
            from,
            action: "login.failed".into(),
            detail: "wrong user or password".into(),
            config_version: None,
        });
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            next,
            username,
            Some("Wrong user or password.".into()),
        )
        .await;
    }
    let user = user.expect("checked above");
    state.throttle.succeeded(&username, source);
    let (cookie, _) = state
        .sessions
        .create(&user.name, &user.password_hash, &from);
    state.backend.audit_record(tandem_sync::NewAuditEntry {
        at_unix_ms: ops::now_unix_ms(),
        who: user.name.clone(),
        from,
        action: "login".into(),
        detail: format!("logged in ({})", user.role),
        config_version: None,
    });
    let mut r = Redirect::to(&next).into_response();
    for c in [
        session::set_cookie(session::COOKIE, &cookie),
        session::clear_cookie(session::LOGIN_COOKIE),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    if let crate::app::Via::Session { cookie, .. } = &who.via {
        state.sessions.remove(cookie);
    }
    ops::audit(&state, &who, "logout", "logged out".into(), None);
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = session::clear_cookie(session::COOKIE).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------------------------------
// Dashboard.

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    ctx: PageCtx,
    status: BoxStatus,
    services: Vec<String>,
    servers: Vec<String>,
}

impl DashboardPage {
    fn when<T: std::borrow::Borrow<u64>>(&self, unix_ms: T) -> String {
        when(*unix_ms.borrow())
    }

    fn uptime(&self) -> String {
        humantime::format_duration(std::time::Duration::from_secs(self.status.uptime_seconds))
            .to_string()
    }
}

pub async fn dashboard(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "dashboard", "Dashboard").await;
    let status = state.backend.status().await;
    let cur = state.backend.current().await;
    let services = cur.shared.services.iter().map(|s| s.name.clone()).collect();
    let servers = cur
        .shared
        .pools
        .iter()
        .flat_map(|p| {
            p.servers
                .iter()
                .map(move |s| format!("{}/{}", p.name, s.id))
        })
        .collect();
    render(DashboardPage {
        ctx,
        status,
        services,
        servers,
    })
}

// ---------------------------------------------------------------------------------------
// Services.

struct ServiceRow {
    name: String,
    protocol: String,
    listen: String,
    pool: Option<String>,
    routes: usize,
    rps: String,
    cps: String,
    active: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "services.html")]
struct ServicesPage {
    ctx: PageCtx,
    services: Vec<ServiceRow>,
}

fn rate(v: f32) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub async fn services(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "services", "Services").await;
    let cur = state.backend.current().await;
    let frame = state.history.latest();
    let services = cur
        .shared
        .services
        .iter()
        .map(|s| {
            let p = frame
                .series
                .get(&format!("service:{}", s.name))
                .copied()
                .unwrap_or_default();
            ServiceRow {
                name: s.name.clone(),
                protocol: s.protocol.as_str().to_owned(),
                listen: s.listen.to_string(),
                pool: s.pool.clone(),
                routes: s.routes.len(),
                rps: rate(p.rps),
                cps: rate(p.cps),
                active: rate(p.active),
            }
        })
        .collect();
    render(ServicesPage { ctx, services })
}

#[derive(Template, WebTemplate)]
#[template(path = "service_form.html")]
struct ServiceForm {
    ctx: PageCtx,
    is_new: bool,
    original: String,
    name: String,
    protocol: String,
    listen: String,
    pool: String,
    pools: Vec<String>,
    extra: String,
    errors: Errors,
}

impl ServiceForm {
    fn errs(&self, field: &str) -> &[String] {
        self.errors.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[derive(Deserialize, Default)]
pub struct ServiceFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    listen: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    extra: String,
}

/// The settings beyond the form's fields, as YAML.
fn extra_yaml<T: serde::Serialize>(value: &T, skip: &[&str]) -> String {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(value) else {
        return String::new();
    };
    for k in skip {
        map.remove(*k);
    }
    if map.is_empty() {
        return String::new();
    }
    serde_saphyr::to_string(&map).unwrap_or_default()
}

/// Builds a value from the form's fields and its YAML extras; a problem is reported at the
/// field it comes from.
fn from_fields<T: serde::de::DeserializeOwned>(
    fields: Vec<(&str, serde_json::Value)>,
    extra: &str,
) -> Result<T, OpError> {
    let mut map = if extra.trim().is_empty() {
        serde_json::Map::new()
    } else {
        match serde_saphyr::from_str::<serde_json::Value>(extra) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return Err(OpError::invalid(
                    "extra",
                    "the extra settings are not a YAML mapping",
                    "write `key: value` lines, e.g. `persistence: { source: {} }`",
                ));
            }
            Err(e) => {
                return Err(OpError::invalid(
                    "extra",
                    format!("the extra settings are not valid YAML: {e}"),
                    "check the indentation and the `key: value` form",
                ));
            }
        }
    };
    for (k, v) in fields {
        if !v.is_null() {
            map.insert(k.to_owned(), v);
        }
    }
    serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().unwrap_or_default().to_owned();
        let field = if field == "." || field.is_empty() {
            "extra".to_owned()
        } else {
            field
        };
        OpError::invalid(
            &field,
            e.into_inner().to_string(),
            "see docs/config.md for this setting",
        )
    })
}

fn service_from(f: &ServiceFields) -> Result<Service, OpError> {
    use serde_json::Value;
    let listen: Result<SocketAddr, _> = f.listen.trim().parse();
    if listen.is_err() {
        return Err(OpError::invalid(
            "listen",
            format!("`{}` is not an address and port", f.listen),
            "write it like `10.0.0.100:80` or `[2001:db8::100]:443`",
        ));
    }
    from_fields(
        vec![
            ("name", Value::String(f.name.trim().to_owned())),
            ("protocol", Value::String(f.protocol.clone())),
            ("listen", Value::String(f.listen.trim().to_owned())),
            (
                "pool",
                if f.pool.is_empty() {
                    Value::Null
                } else {
                    Value::String(f.pool.clone())
                },
            ),
        ],
        &f.extra,
    )
}

/// Errors by form field; those of nested settings go to the YAML box.
fn service_errors(d: &Diagnostics, prefix: &str, form_fields: &[&str]) -> Errors {
    let mut out = Errors::new();
    for (field, msgs) in ops::errors_by_field(d, prefix) {
        let key = if field.is_empty() || form_fields.contains(&field.as_str()) {
            field.clone()
        } else {
            "extra".to_owned()
        };
        let msgs = if key == "extra" && !field.is_empty() && field != "extra" {
            msgs.into_iter()
                .map(|m| format!("`{field}`: {m}"))
                .collect()
        } else {
            msgs
        };
        out.entry(key).or_default().extend(msgs);
    }
    out
}

async fn pool_names(state: &AppState) -> Vec<String> {
    state
        .backend
        .current()
        .await
        .shared
        .pools
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

pub async fn service_new(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "services", "New service").await;
    render(ServiceForm {
        ctx,
        is_new: true,
        original: String::new(),
        name: String::new(),
        protocol: "http".into(),
        listen: String::new(),
        pool: String::new(),
        pools: pool_names(&state).await,
        extra: String::new(),
        errors: Errors::new(),
    })
}

pub async fn service_edit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let cur = state.backend.current().await;
    let Some(s) = cur.shared.service(&name) else {
        return not_found().await;
    };
    let ctx = ctx(&state, &who, "services", &format!("Service {name}")).await;
    render(ServiceForm {
        ctx,
        is_new: false,
        original: name.clone(),
        name: s.name.clone(),
        protocol: s.protocol.as_str().to_owned(),
        listen: s.listen.to_string(),
        pool: s.pool.clone().unwrap_or_default(),
        pools: pool_names(&state).await,
        extra: extra_yaml(s, &["name", "protocol", "listen", "pool"]),
        errors: Errors::new(),
    })
}

async fn service_save(
    state: AppState,
    who: Principal,
    original: Option<String>,
    f: ServiceFields,
) -> Response {
    let result = match service_from(&f) {
        Ok(s) => ops::service_upsert(&state, &who, original.as_deref(), s).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(meta) => done(
            &state,
            &who,
            "/services",
            Ok(format!(
                "Service {} saved: version {}",
                f.name.trim(),
                meta.id
            )),
        ),
        Err(OpError::Invalid(d)) => {
            let cur = state.backend.current().await;
            let index = match &original {
                Some(o) => cur.shared.services.iter().position(|s| &s.name == o),
                None => None,
            }
            .unwrap_or(cur.shared.services.len());
            let prefix = format!("shared.services[{index}]");
            let errors = service_errors(
                &d,
                &prefix,
                &["name", "protocol", "listen", "pool", "extra"],
            );
            let title = if original.is_some() {
                "Edit service"
            } else {
                "New service"
            };
            let ctx = ctx(&state, &who, "services", title).await;
            render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                ServiceForm {
                    ctx,
                    is_new: original.is_none(),
                    original: original.unwrap_or_default(),
                    name: f.name,
                    protocol: f.protocol,
                    listen: f.listen,
                    pool: f.pool,
                    pools: pool_names(&state).await,
                    extra: f.extra,
                    errors,
                },
            )
        }
        Err(e) => done(&state, &who, "/services", Err(e.message())),
    }
}

pub async fn service_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<ServiceFields>,
) -> Response {
    service_save(state, who, None, f).await
}

pub async fn service_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<ServiceFields>,
) -> Response {
    service_save(state, who, Some(name), f).await
}

pub async fn service_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let r = ops::service_delete(&state, &who, &name).await;
    done(
        &state,
        &who,
        "/services",
        r.map(|m| format!("Service {name} deleted: version {}", m.id))
            .map_err(|e| e.message()),
    )
}

// ---------------------------------------------------------------------------------------
// Pools and servers.

struct ServerRow {
    id: String,
    address: String,
    weight: u32,
    admin: String,
    health: String,
    rps: String,
    cps: String,
    active: String,
}

struct PoolView {
    name: String,
    algorithm: String,
    checked: bool,
    servers: Vec<ServerRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pools.html")]
struct PoolsPage {
    ctx: PageCtx,
    pools: Vec<PoolView>,
}

fn algorithm_name(p: &Pool) -> String {
    serde_json::to_value(p.algorithm)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub async fn pools(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "pools", "Pools").await;
    let cur = state.backend.current().await;
    let frame = state.history.latest();
    let stats = state.backend.stats();
    let pools = cur
        .shared
        .pools
        .iter()
        .map(|p| PoolView {
            name: p.name.clone(),
            algorithm: algorithm_name(p),
            checked: p.health_check.is_some(),
            servers: p
                .servers
                .iter()
                .map(|s| {
                    let key = format!("{}/{}", p.name, s.id);
                    let pt = frame
                        .series
                        .get(&format!("server:{key}"))
                        .copied()
                        .unwrap_or_default();
                    let health = stats
                        .servers
                        .iter()
                        .find(|x| x.pool == p.name && x.id == s.id)
                        .map(|x| format!("{:?}", x.health).to_lowercase())
                        .unwrap_or_else(|| "unknown".into());
                    ServerRow {
                        id: s.id.clone(),
                        address: s.address.to_string(),
                        weight: s.weight,
                        admin: ops::admin_state_str(s.state).to_owned(),
                        health,
                        rps: rate(pt.rps),
                        cps: rate(pt.cps),
                        active: rate(pt.active),
                    }
                })
                .collect(),
        })
        .collect();
    render(PoolsPage { ctx, pools })
}

#[derive(Template, WebTemplate)]
#[template(path = "pool_form.html")]
struct PoolForm {
    ctx: PageCtx,
    is_new: bool,
    original: String,
    name: String,
    algorithm: String,
    algorithms: Vec<&'static str>,
    extra: String,
    errors: Errors,
}

impl PoolForm {
    fn errs(&self, field: &str) -> &[String] {
        self.errors.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

const ALGORITHMS: [&str; 4] = [
    "round_robin",
    "least_connections",
    "source_hash",
    "power_of_two",
];

#[derive(Deserialize, Default)]
pub struct PoolFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    algorithm: String,
    #[serde(default)]
    extra: String,
}

pub async fn pool_new(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "pools", "New pool").await;
    render(PoolForm {
        ctx,
        is_new: true,
        original: String::new(),
        name: String::new(),
        algorithm: "round_robin".into(),
        algorithms: ALGORITHMS.to_vec(),
        extra: "servers:\n  - { id: web1, address: '10.0.1.11:8080' }\n".into(),
        errors: Errors::new(),
    })
}

pub async fn pool_edit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let cur = state.backend.current().await;
    let Some(p) = cur.shared.pool(&name) else {
        return not_found().await;
    };
    let ctx = ctx(&state, &who, "pools", &format!("Pool {name}")).await;
    render(PoolForm {
        ctx,
        is_new: false,
        original: name.clone(),
        name: p.name.clone(),
        algorithm: algorithm_name(p),
        algorithms: ALGORITHMS.to_vec(),
        extra: extra_yaml(p, &["name", "algorithm"]),
        errors: Errors::new(),
    })
}

async fn pool_save(
    state: AppState,
    who: Principal,
    original: Option<String>,
    f: PoolFields,
) -> Response {
    use serde_json::Value;
    let result = match from_fields::<Pool>(
        vec![
            ("name", Value::String(f.name.trim().to_owned())),
            ("algorithm", Value::String(f.algorithm.clone())),
        ],
        &f.extra,
    ) {
        Ok(p) => ops::pool_upsert(&state, &who, original.as_deref(), p).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(meta) => done(
            &state,
            &who,
            "/pools",
            Ok(format!("Pool {} saved: version {}", f.name.trim(), meta.id)),
        ),
        Err(OpError::Invalid(d)) => {
            let cur = state.backend.current().await;
            let index = original
                .as_ref()
                .and_then(|o| cur.shared.pools.iter().position(|p| &p.name == o))
                .unwrap_or(cur.shared.pools.len());
            let errors = service_errors(
                &d,
                &format!("shared.pools[{index}]"),
                &[
                    "name",
                    "algorithm",
                    "extra",
                    "servers",
                    "health_check",
                    "tls",
                    "connect_timeout",
                    "response_timeout",
                ],
            );
            let ctx = ctx(&state, &who, "pools", "Pool").await;
            render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                PoolForm {
                    ctx,
                    is_new: original.is_none(),
                    original: original.unwrap_or_default(),
                    name: f.name,
                    algorithm: f.algorithm,
                    algorithms: ALGORITHMS.to_vec(),
                    extra: f.extra,
                    errors,
                },
            )
        }
        Err(e) => done(&state, &who, "/pools", Err(e.message())),
    }
}

pub async fn pool_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<PoolFields>,
) -> Response {
    pool_save(state, who, None, f).await
}

pub async fn pool_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<PoolFields>,
) -> Response {
    pool_save(state, who, Some(name), f).await
}

pub async fn pool_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let r = ops::pool_delete(&state, &who, &name).await;
    done(
        &state,
        &who,
        "/pools",
        r.map(|m| format!("Pool {name} deleted: version {}", m.id))
            .map_err(|e| e.message()),
    )
}

#[derive(Deserialize)]
pub struct StateForm {
    state: String,
}

pub async fn server_state(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((pool, id)): Path<(String, String)>,
    Form(f): Form<StateForm>,
) -> Response {
    let r = match ops::parse_admin_state(&f.state) {
        Some(s) => ops::server_state(&state, &who, &pool, &id, s)
            .await
            .map(|m| {
                format!(
                    "{pool}/{id} is now {}: version {}",
                    ops::admin_state_str(s),
                    m.id
                )
            })
            .map_err(|e| e.message()),
        None => Err(format!("`{}` is not a server state", f.state)),
    };
    done(&state, &who, &format!("/pools#pool-{pool}"), r)
}

// ---------------------------------------------------------------------------------------
// Certificates.

#[derive(Template, WebTemplate)]
#[template(path = "certificates.html")]
struct CertificatesPage {
    ctx: PageCtx,
    certs: Vec<CertView>,
    pending: Vec<String>,
    form_name: String,
    errors: Errors,
}

impl CertificatesPage {
    fn errs(&self, field: &str) -> &[String] {
        self.errors.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

async fn certificates_page(
    state: &AppState,
    who: &Principal,
    form_name: String,
    errors: Errors,
) -> CertificatesPage {
    let ctx = ctx(state, who, "certificates", "Certificates").await;
    let cur = state.backend.current().await;
    let now = (ops::now_unix_ms() / 1000) as i64;
    CertificatesPage {
        ctx,
        certs: cur
            .shared
            .certificates
            .iter()
            .map(|c| {
                crate::certs::describe(&c.name, c.cert_pem.as_deref(), c.key_pem.is_some(), now)
            })
            .collect(),
        pending: crate::certs::pending(&state.dir),
        form_name,
        errors,
    }
}

pub async fn certificates(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    render(certificates_page(&state, &who, String::new(), Errors::new()).await)
}

#[derive(Deserialize)]
pub struct CertForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cert_pem: String,
    #[serde(default)]
    key_pem: String,
}

pub async fn certificate_upload(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<CertForm>,
) -> Response {
    let name = f.name.trim().to_owned();
    match ops::certificate_put(&state, &who, &name, &f.cert_pem, Some(&f.key_pem)).await {
        Ok(meta) => done(
            &state,
            &who,
            "/certificates",
            Ok(format!("Certificate {name} saved: version {}", meta.id)),
        ),
        Err(OpError::Invalid(d)) => {
            let cur = state.backend.current().await;
            let index = cur
                .shared
                .certificates
                .iter()
                .position(|c| c.name == name)
                .unwrap_or(cur.shared.certificates.len());
            let errors = ops::errors_by_field(&d, &format!("shared.certificates[{index}]"));
            render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                certificates_page(&state, &who, name, errors).await,
            )
        }
        Err(e) => done(&state, &who, "/certificates", Err(e.message())),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "csr.html")]
struct CsrPage {
    ctx: PageCtx,
    name: String,
    csr: String,
}

#[derive(Deserialize)]
pub struct CsrForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    dns_names: String,
}

pub async fn certificate_csr(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<CsrForm>,
) -> Response {
    let names: Vec<String> = f
        .dns_names
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let name = f.name.trim().to_owned();
    match crate::certs::generate_csr(&state.dir, &name, &names) {
        Ok(csr) => {
            ops::audit(
                &state,
                &who,
                "certificate.csr",
                format!("new key and CSR for {name}"),
                None,
            );
            let ctx = ctx(&state, &who, "certificates", "CSR").await;
            render(CsrPage { ctx, name, csr })
        }
        Err(e) => done(&state, &who, "/certificates", Err(e)),
    }
}

pub async fn certificate_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let r = ops::certificate_delete(&state, &who, &name).await;
    done(
        &state,
        &who,
        "/certificates",
        r.map(|m| format!("Certificate {name} deleted: version {}", m.id))
            .map_err(|e| e.message()),
    )
}

// ---------------------------------------------------------------------------------------
// HA.

#[derive(Template, WebTemplate)]
#[template(path = "ha.html")]
struct HaPage {
    ctx: PageCtx,
    status: BoxStatus,
    readiness: Readiness,
    drill: Option<DrillReport>,
}

impl HaPage {
    fn when<T: std::borrow::Borrow<u64>>(&self, unix_ms: T) -> String {
        when(*unix_ms.borrow())
    }
}

pub async fn ha(State(state): State<AppState>, Extension(who): Extension<Principal>) -> Response {
    let ctx = ctx(&state, &who, "ha", "HA").await;
    let status = state.backend.status().await;
    let readiness = state.backend.readiness().await;
    let drill = state
        .last_drill
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    render(HaPage {
        ctx,
        status,
        readiness,
        drill,
    })
}

pub async fn failover(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let r = state.backend.failover().await;
    if let Ok(m) = &r {
        ops::audit(&state, &who, "ha.failover", m.clone(), None);
    }
    done(&state, &who, "/ha", r)
}

pub async fn drill(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let r = crate::api::run_drill(&state, &who).await.map(|d| d.message);
    done(&state, &who, "/ha", r)
}

// ---------------------------------------------------------------------------------------
// Config history.

struct VersionRow {
    id: String,
    short: String,
    epoch: u64,
    n: u64,
    parent: Option<String>,
    when: String,
    author: String,
    node: String,
    reason: String,
    current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
struct HistoryPage {
    ctx: PageCtx,
    versions: Vec<VersionRow>,
    branches: Vec<tandem_config::store::KeptBranch>,
    errors: Errors,
}

impl HistoryPage {
    fn errs(&self, field: &str) -> &[String] {
        self.errors.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

async fn history_page(state: &AppState, who: &Principal, errors: Errors) -> Response {
    let ctx = ctx(state, who, "history", "Config history").await;
    let current = state.backend.current().await.meta.id.clone();
    let mut metas = state.backend.versions().await.unwrap_or_default();
    metas.reverse();
    let versions = metas
        .into_iter()
        .map(|m| VersionRow {
            id: m.id.to_string(),
            short: format!("{}.{}", m.id.epoch, m.id.n),
            epoch: m.id.epoch,
            n: m.id.n,
            parent: m.parent.as_ref().map(|p| format!("{}.{}", p.epoch, p.n)),
            when: when(m.committed_at * 1000),
            author: m.author,
            node: m.node,
            reason: m.reason,
            current: m.id == current,
        })
        .collect();
    let branches = state.backend.branches().await.unwrap_or_default();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_status(
        status,
        HistoryPage {
            ctx,
            versions,
            branches,
            errors,
        },
    )
}

pub async fn history(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    history_page(&state, &who, Errors::new()).await
}

#[derive(Template, WebTemplate)]
#[template(path = "diff.html")]
struct DiffPage {
    ctx: PageCtx,
    from: String,
    to: String,
    lines: Vec<(&'static str, String)>,
}

pub async fn diff(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<crate::api::DiffQuery>,
) -> Response {
    let text = match crate::api::diff_text(&state, &q.from, &q.to).await {
        Ok(t) => t,
        Err(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &format!("no such versions: {} and {}", q.from, q.to),
            );
        }
    };
    let lines = text
        .lines()
        .map(|l| {
            let class = if l.starts_with("+++") || l.starts_with("---") {
                "head"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else if l.starts_with("@@") {
                "hunk"
            } else {
                "ctx"
            };
            (class, l.to_owned())
        })
        .collect();
    let ctx = ctx(&state, &who, "history", "Diff").await;
    render(DiffPage {
        ctx,
        from: q.from,
        to: q.to,
        lines,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "version.html")]
struct VersionPage {
    ctx: PageCtx,
    id: String,
    when: String,
    author: String,
    node: String,
    reason: String,
    text: String,
}

pub async fn version(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((epoch, n)): Path<(u64, u64)>,
) -> Response {
    let Ok(v) = state.backend.version(epoch, n).await else {
        return not_found().await;
    };
    let ctx = ctx(&state, &who, "history", "Version").await;
    render(VersionPage {
        ctx,
        id: v.meta.id.to_string(),
        when: when(v.meta.committed_at * 1000),
        author: v.meta.author,
        node: v.meta.node,
        reason: v.meta.reason,
        text: ops::redacted_text(&v.shared),
    })
}

#[derive(Deserialize)]
pub struct RollbackForm {
    version: String,
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<RollbackForm>,
) -> Response {
    let r = match crate::api::parse_version_ref(&f.version) {
        Some((e, n)) => ops::rollback(&state, &who, e, n)
            .await
            .map(|m| format!("Rolled back to {}: now version {}", f.version, m.id))
            .map_err(|e| e.message()),
        None => Err(format!("`{}` is not a version", f.version)),
    };
    done(&state, &who, "/history", r)
}

#[derive(Deserialize)]
pub struct RestoreForm {
    #[serde(default)]
    yaml: String,
}

pub async fn restore(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<RestoreForm>,
) -> Response {
    match ops::restore(&state, &who, &f.yaml).await {
        Ok(meta) => done(
            &state,
            &who,
            "/history",
            Ok(format!("Backup restored: version {}", meta.id)),
        ),
        Err(e) => {
            let mut errors = Errors::new();
            errors.insert(
                String::new(),
                e.message().lines().map(str::to_owned).collect(),
            );
            history_page(&state, &who, errors).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// Audit log.

struct AuditRow {
    when: String,
    who: String,
    from: String,
    origin: String,
    action: String,
    detail: String,
    version: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    ctx: PageCtx,
    entries: Vec<AuditRow>,
}

pub async fn audit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    let ctx = ctx(&state, &who, "audit", "Audit log").await;
    let mut list = state.backend.audit_recent(500);
    list.reverse();
    let entries = list
        .into_iter()
        .map(|e| AuditRow {
            when: when(e.at_unix_ms),
            who: e.who,
            from: e.from,
            origin: e.origin,
            action: e.action,
            detail: e.detail,
            version: e.config_version.unwrap_or_default(),
        })
        .collect();
    render(AuditPage { ctx, entries })
}

// ---------------------------------------------------------------------------------------
// Users and tokens.

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
struct UsersPage {
    ctx: PageCtx,
    users: Vec<(String, String)>,
    tokens: Vec<(String, String, String)>,
    new_token: Option<(String, String)>,
    errors: Errors,
    fingerprint: String,
}

impl UsersPage {
    fn errs(&self, field: &str) -> &[String] {
        self.errors.get(field).map(Vec::as_slice).unwrap_or(&[])
    }
}

async fn users_page(
    state: &AppState,
    who: &Principal,
    new_token: Option<(String, String)>,
    errors: Errors,
) -> Response {
    let ctx = ctx(state, who, "users", "Users").await;
    let cur = state.backend.current().await;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_status(
        status,
        UsersPage {
            ctx,
            users: cur
                .shared
                .users
                .iter()
                .map(|u| (u.name.clone(), u.role.as_str().to_owned()))
                .collect(),
            tokens: cur
                .shared
                .api_tokens
                .iter()
                .map(|t| (t.name.clone(), t.user.clone(), when(t.created * 1000)))
                .collect(),
            new_token,
            errors,
            fingerprint: state.fingerprint.get().cloned().unwrap_or_default(),
        },
    )
}

pub async fn users(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Response {
    users_page(&state, &who, None, Errors::new()).await
}

fn op_errors(e: &OpError) -> Errors {
    match e {
        OpError::Invalid(d) => {
            let mut out = Errors::new();
            for i in &d.items {
                let key = if i.path.contains('.') {
                    String::new()
                } else {
                    i.path.clone()
                };
                out.entry(key)
                    .or_default()
                    .push(format!("{} — {}", i.message, i.hint));
            }
            out
        }
        other => [(String::new(), vec![other.message()])]
            .into_iter()
            .collect(),
    }
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub async fn user_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<UserForm>,
) -> Response {
    let Some(role) = Role::parse(&f.role) else {
        return done(
            &state,
            &who,
            "/users",
            Err(format!("`{}` is not a role", f.role)),
        );
    };
    let name = f.name.trim().to_owned();
    match ops::user_create(
        &state,
        &who,
        ops::NewUser {
            name: name.clone(),
            role,
            password: f.password,
        },
    )
    .await
    {
        Ok(m) => done(
            &state,
            &who,
            "/users",
            Ok(format!("User {name} added: version {}", m.id)),
        ),
        Err(e) => users_page(&state, &who, None, op_errors(&e)).await,
    }
}

pub async fn user_update(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(f): Form<UserForm>,
) -> Response {
    let role = Role::parse(&f.role);
    match ops::user_update(&state, &who, &name, role, Some(&f.password)).await {
        Ok(m) => done(
            &state,
            &who,
            "/users",
            Ok(format!("User {name} changed: version {}", m.id)),
        ),
        Err(e) => users_page(&state, &who, None, op_errors(&e)).await,
    }
}

pub async fn user_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let r = ops::user_delete(&state, &who, &name).await;
    done(
        &state,
        &who,
        "/users",
        r.map(|m| format!("User {name} deleted: version {}", m.id))
            .map_err(|e| e.message()),
    )
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    user: String,
}

pub async fn token_create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(f): Form<TokenForm>,
) -> Response {
    let name = f.name.trim().to_owned();
    match ops::token_create(&state, &who, &name, &f.user).await {
        // Shown once, on this answer only.
        Ok((token, _)) => users_page(&state, &who, Some((name, token)), Errors::new()).await,
        Err(e) => users_page(&state, &who, None, op_errors(&e)).await,
    }
}

pub async fn token_delete(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let r = ops::token_delete(&state, &who, &name).await;
    done(
        &state,
        &who,
        "/users",
        r.map(|m| format!("Token {name} revoked: version {}", m.id))
            .map_err(|e| e.message()),
    )
}
