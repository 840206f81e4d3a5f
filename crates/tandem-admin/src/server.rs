//! The HTTPS listener of the management plane and its routes.

use crate::MetricsSource;
use crate::alerts::AlertSender;
use crate::app::{AppState, Inner};
use crate::backend::Backend;
use crate::login_throttle::LoginThrottle;
use crate::metrics_access::{Decision, MetricsAccess};
use crate::session::Sessions;
use crate::traffic::TrafficHistory;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("management certificate: {0}")]
    Certificate(String),
}

/// The running management listener.
pub struct Management {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

/// The console's state, as [`Management::start_console`] builds it (tests build routers on it
/// without a listener).
pub fn console_state(
    state_dir: &Path,
    metrics: MetricsSource,
    metrics_access: MetricsAccess,
    backend: Arc<dyn Backend>,
    alerts: Option<AlertSender>,
) -> AppState {
    AppState(Arc::new(Inner {
        backend,
        sessions: Sessions::default(),
        throttle: LoginThrottle::default(),
        verify_slots: tokio::sync::Semaphore::new(2),
        history: TrafficHistory::default(),
        metrics,
        metrics_access,
        dir: state_dir.join("admin"),
        alerts,
        last_drill: std::sync::Mutex::new(None),
        drill_running: tokio::sync::Mutex::new(()),
        fingerprint: std::sync::OnceLock::new(),
    }))
}

#[derive(Clone)]
struct MetricsOnly {
    metrics: MetricsSource,
    access: Arc<MetricsAccess>,
}

impl Management {
    pub async fn start(
        cfg: &tandem_config::Management,
        state_dir: &Path,
        metrics: MetricsSource,
    ) -> Result<Management, AdminError> {
        let tls = tls_config(cfg, state_dir)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AdminError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let state = MetricsOnly {
            metrics,
            access: Arc::new(MetricsAccess::new(&cfg.metrics)),
        };
        let router = Router::new()
            .route("/metrics", get(serve_metrics_only))
            .with_state(state);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(tls.0)),
            router,
        ));
        Ok(Management {
            local_addr,
            task,
            sampler: None,
        })
    }

    /// Starts the listener with the whole console and REST API on `backend`, and the
    /// once-a-second traffic sampler behind the dashboard's graphs.
    pub async fn start_console(
        cfg: &tandem_config::Management,
        state_dir: &Path,
        metrics: MetricsSource,
        backend: Arc<dyn Backend>,
        alerts: Option<AlertSender>,
    ) -> Result<Management, AdminError> {
        let tls = tls_config(cfg, state_dir)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AdminError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let state = console_state(
            state_dir,
            metrics,
            MetricsAccess::new(&cfg.metrics),
            backend,
            alerts,
        );
        let _ = state.fingerprint.set(tls.1.clone());
        let sampler = tokio::spawn(crate::traffic::run_sampler(state.0.clone()));
        let router = crate::app::router(state);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(tls.0)),
            router,
        ));
        Ok(Management {
            local_addr,
            task,
            sampler: Some(sampler),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Management {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(s) = &self.sampler {
            s.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, router: Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "management accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "management TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service =
                router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
        });
    }
}

async fn serve_metrics_only(
    State(state): State<MetricsOnly>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    metrics_answer(&state.access, &state.metrics, peer, &headers)
}

/// `/metrics`: public as far as the gate is concerned, with its own rule (a scrape token or
/// a source in the allowed networks).
pub async fn serve_metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    metrics_answer(&state.metrics_access, &state.metrics, peer, &headers)
}

fn metrics_answer(
    access: &MetricsAccess,
    metrics: &MetricsSource,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match access.decide(peer.ip(), authorization) {
        Decision::Allowed => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics(),
        )
            .into_response(),
        Decision::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a scrape token is needed from this address\n",
        )
            .into_response(),
        Decision::Forbidden => (StatusCode::FORBIDDEN, "wrong scrape token\n").into_response(),
    }
}

/// The listener's TLS config and its certificate's fingerprint (`sha256:…`, for
/// `tandemctl --api-fingerprint`).
fn tls_config(
    cfg: &tandem_config::Management,
    state_dir: &Path,
) -> Result<(rustls::ServerConfig, String), AdminError> {
    let (chain, key) = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => read_pem_pair(cert, key)?,
        _ => {
            let names = vec!["localhost".to_owned(), cfg.listen.ip().to_string()];
            tandem_dataplane::tls::self_signed::load_or_generate(state_dir, "management", &names)
                .map_err(|e| AdminError::Certificate(e.to_string()))?
        }
    };
    let fingerprint = chain
        .first()
        .map(|c| {
            let d: [u8; 32] =
                sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(c.as_ref()))
                    .into();
            tandem_config::format_fingerprint(&d)
        })
        .unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AdminError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| AdminError::Certificate(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, fingerprint))
}

fn read_pem_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), AdminError> {
    let failed = |path: &Path, e: &dyn std::fmt::Display| {
        AdminError::Certificate(format!("{}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| failed(cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| failed(key, &e))?;
    Ok((chain, key))
}
