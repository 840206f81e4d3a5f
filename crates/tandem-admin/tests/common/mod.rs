//! An in-memory [`Backend`] over a real config store, and a client that drives the console's
//! router in-process (no TLS, no sockets), with the client address of our choosing.

#![allow(dead_code)]

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tandem_admin::*;
use tandem_config::store::{CommitInfo, KeptBranch, Store, Version, VersionMeta};
use tandem_config::{Diagnostics, Role, SharedConfig, User};
use tandem_dataplane::StatsSnapshot;
use tandem_sync::{AuditEntry, AuditLog, NewAuditEntry};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "Correct-Horse-42";

pub struct MemoryBackend {
    pub store: Store,
    pub current: Mutex<Arc<Version>>,
    pub audit: AuditLog,
    pub failovers: Mutex<u32>,
    _dir: tempfile::TempDir,
}

impl MemoryBackend {
    pub fn new(shared: SharedConfig) -> Arc<MemoryBackend> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v = store
            .commit(
                &shared,
                CommitInfo {
                    author: "test".into(),
                    reason: "start".into(),
                    node: "lb-a".into(),
                },
            )
            .unwrap();
        Arc::new(MemoryBackend {
            store,
            current: Mutex::new(Arc::new(v)),
            audit: AuditLog::in_memory("lb-a"),
            failovers: Mutex::new(0),
            _dir: dir,
        })
    }

    pub fn version(&self) -> String {
        self.current.lock().unwrap().meta.id.to_string()
    }
}

/// A config with one user per role (all with [`ADMIN_PASSWORD`]) and `services` HTTP
/// services over one pool.
pub fn shared(services: usize) -> SharedConfig {
    let hash = tandem_admin::secret::hash_password(ADMIN_PASSWORD);
    let mut text = String::from(
        "schema: 1\nshared:\n  pools:\n    - name: web\n      servers:\n        - { id: web1, address: '127.0.0.1:9001' }\n        - { id: web2, address: '127.0.0.1:9002' }\n  services:\n",
    );
    for i in 0..services {
        text.push_str(&format!(
            "    - {{ name: svc{i}, listen: '127.0.0.1:{}', protocol: http, pool: web }}\n",
            20000 + i
        ));
    }
    if services == 0 {
        text = text.replace("  services:\n", "");
    }
    let mut s = tandem_config::parse_shared_document(&text).unwrap().shared;
    for (name, role) in [
        ("admin", Role::Admin),
        ("olga", Role::Operator),
        ("vic", Role::Viewer),
    ] {
        s.users.push(User {
            name: name.into(),
            role,
            password_hash: hash.clone(),
        });
    }
    s
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn status(&self) -> BoxStatus {
        let v = self.current.lock().unwrap().clone();
        BoxStatus {
            node: "lb-a".into(),
            role: "active".into(),
            healthy: true,
            health_detail: vec![],
            management: "127.0.0.1:9443".into(),
            uptime_seconds: 5,
            config: v.meta.clone(),
            routers: vec![],
            last_failover: None,
            peer: None,
        }
    }

    fn stats(&self) -> StatsSnapshot {
        StatsSnapshot::default()
    }

    async fn current(&self) -> Arc<Version> {
        self.current.lock().unwrap().clone()
    }

    async fn check(&self, shared: &SharedConfig) -> Result<(), Diagnostics> {
        shared.validate()
    }

    async fn commit(
        &self,
        shared: SharedConfig,
        change: &Change,
    ) -> Result<VersionMeta, CommitError> {
        shared.validate().map_err(CommitError::Invalid)?;
        let v = self
            .store
            .commit(
                &shared,
                CommitInfo {
                    author: change.who.clone(),
                    reason: change.reason.clone(),
                    node: "lb-a".into(),
                },
            )
            .map_err(|e| CommitError::Failed(e.to_string()))?;
        let meta = v.meta.clone();
        *self.current.lock().unwrap() = Arc::new(v);
        Ok(meta)
    }

    async fn versions(&self) -> Result<Vec<VersionMeta>, String> {
        self.store.list().map_err(|e| e.to_string())
    }

    async fn version(&self, epoch: u64, n: u64) -> Result<Version, String> {
        self.store.get(epoch, n).map_err(|e| e.to_string())
    }

    async fn branches(&self) -> Result<Vec<KeptBranch>, String> {
        self.store.branches().map_err(|e| e.to_string())
    }

    async fn failover(&self) -> Result<String, String> {
        *self.failovers.lock().unwrap() += 1;
        Ok("handed over".into())
    }

    async fn drill(&self) -> Result<DrillReport, String> {
        Err("standalone".into())
    }

    async fn readiness(&self) -> Readiness {
        Readiness::from_checks("lb-b".into(), vec![])
    }

    fn audit_record(&self, entry: NewAuditEntry) {
        self.audit.record(entry).unwrap();
    }

    fn audit_recent(&self, limit: usize) -> Vec<AuditEntry> {
        self.audit.recent(limit)
    }
}

/// The console on `backend`, driven in-process.
pub struct Console {
    pub router: axum::Router,
    pub backend: Arc<MemoryBackend>,
    _dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
    }

    /// The value of `<input name=csrf value=…>` or of the csrf-token meta tag.
    pub fn csrf(&self) -> String {
        for marker in ["name=\"csrf\" value=\"", "name=\"csrf-token\" content=\""] {
            if let Some(i) = self.body.find(marker) {
                let rest = &self.body[i + marker.len()..];
                return rest[..rest.find('"').unwrap()].to_owned();
            }
        }
        panic!("no CSRF token in the page:\n{}", self.body)
    }
}

impl Console {
    pub fn new(shared: SharedConfig) -> Console {
        let backend = MemoryBackend::new(shared);
        let dir = tempfile::tempdir().unwrap();
        let state = console_state(
            dir.path(),
            Arc::new(|| "tandem_up 1\n".to_owned()),
            MetricsAccess::new(&tandem_config::MetricsAccess::default()),
            backend.clone(),
            None,
        );
        Console {
            router: tandem_admin::app::router(state),
            backend,
            _dir: dir,
        }
    }

    pub async fn send(&self, from: &str, req: Request<Body>) -> Answer {
        let mut req = req;
        let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        let resp: Response<Body> = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, cookie: Option<&str>, path: &str) -> Answer {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("__Host-tandem_session={c}"));
        }
        self.send("192.0.2.10", b.body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_form(
        &self,
        cookie: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("__Host-tandem_session={c}"));
        }
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send("192.0.2.10", b.body(Body::from(body)).unwrap())
            .await
    }

    /// Logs in from `from`; returns the answer (a session cookie on success).
    pub async fn login_from(&self, from: &str, user: &str, password: &str) -> Answer {
        let page = self
            .send(from, Request::get("/login").body(Body::empty()).unwrap())
            .await;
        let login_cookie = page.cookie("__Host-tandem_login").unwrap();
        let csrf = page.csrf();
        let body = serde_urlencoded::to_string([
            ("username", user),
            ("password", password),
            ("csrf", csrf.as_str()),
            ("next", "/"),
        ])
        .unwrap();
        self.send(
            from,
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(
                    header::COOKIE,
                    format!("__Host-tandem_login={login_cookie}"),
                )
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// A session of `user`: (cookie, csrf).
    pub async fn session(&self, user: &str) -> (String, String) {
        let a = self.login_from("192.0.2.10", user, ADMIN_PASSWORD).await;
        assert_eq!(
            a.status,
            StatusCode::SEE_OTHER,
            "login of {user}: {}",
            a.body
        );
        let cookie = a.cookie("__Host-tandem_session").expect("a session cookie");
        let page = self.get(Some(&cookie), "/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        (cookie, page.csrf())
    }
}

/// A concrete path for a route pattern (`{name}` → an existing name).
pub fn concrete(path: &str) -> String {
    path.replace("{*file}", "console.css")
        .replace("{name}/servers/{id}", "web/servers/web1")
        .replace("{name}", "web")
        .replace("{id}", "web1")
        .replace("{epoch}", "1")
        .replace("{n}", "1")
}
