//! The HTTP engine: HTTP/1.1 and HTTP/2 from clients, HTTP/1.1 to servers.
//!
//! Every `http` connection, and every `https` connection after its handshake, enters at
//! [`serve_http`]. What happens to the bytes is decided by the strict codec of
//! `tandem-http` (see `docs/http.md`); this module does the I/O around it:
//!
//! - `h1_connection.rs`: one task per HTTP/1.1 client connection, its requests one after
//!   another (keep-alive, pipelining), no task per request, buffers reused;
//! - `h2_connection.rs`: one task per HTTP/2 client connection (ALPN `h2`), each stream
//!   becomes one HTTP/1.1 exchange with a server;
//! - `exchange.rs`: the server side of one exchange: server choice (persistence,
//!   balancer, retries), sending the request, reading the response head;
//! - `park.rs`: an idle plain HTTP/1.1 client between two requests, in a small task;
//! - `upstream_pool.rs`: server connections (plain or re-encrypted) and their keep-alive
//!   pools;
//! - `route.rs`: routing rules to pools;
//! - `access_log.rs`: counters and the access-log line of each request.
//!
//! The decisions (retry rule, 502 vs 503, cookie attributes, HTTP/2 mapping, timeouts) are
//! listed in `docs/dataplane.md`, "The HTTP engine".

mod access_log;
mod exchange;
mod h1_connection;
mod h2_connection;
mod park;
mod route;
mod upstream_pool;

pub use upstream_pool::IdleConnections;

use crate::limits::Admission;
use crate::pool::PoolRuntime;
use crate::service::{ServiceRuntime, ServiceSlot};
use crate::tls::TlsInfo;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tandem_config::Persistence;
use tandem_http::{Forwarding, Limits, Scheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Largest response head accepted from a server (servers send bigger heads than clients:
/// `Set-Cookie`, `Content-Security-Policy`...).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Serves one client connection of an `http` or `https` service: HTTP/2 when ALPN chose
/// `h2`, else HTTP/1.1. `admission` is the accept-time limits decision (`ServiceFull` →
/// 503, `SourceRateExceeded` → 429, then close); `slot` holds the connection's place in
/// the service's count until the connection ends.
pub(crate) async fn serve_http<IO>(
    ctx: Arc<ServiceRuntime>,
    io: IO,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    admission: Admission,
    _slot: Option<ServiceSlot>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let h2 = tls.as_ref().is_some_and(TlsInfo::is_h2);
    let cc = ConnContext::new(ctx, peer, tls.is_some());
    if h2 {
        h2_connection::serve(cc, io).await;
    } else {
        h1_connection::serve(cc, io, admission, false).await;
    }
}

/// Serves a plain HTTP/1.1 client connection; while it idles between requests it is parked
/// in a task a few hundred bytes large ([`park::Park`]) instead of the connection's own
/// (several KiB with its buffers), so that thousands of idle keep-alive clients cost little
/// memory.
pub(crate) fn serve_plain(
    ctx: Arc<ServiceRuntime>,
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    slot: Option<ServiceSlot>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    // Boxed: this future spawns `Park`, which spawns this one again.
    Box::pin(async move {
        let hard_stop = ctx.hard_stop.clone();
        let cc = ConnContext::new(ctx.clone(), peer, false);
        let parked = tokio::select! {
            p = h1_connection::serve(cc, stream, admission, true) => p,
            _ = hard_stop.cancelled() => None,
        };
        if let Some(p) = parked {
            tokio::spawn(park::Park::new(ctx, p.io, p.idle_until, slot));
        }
    })
}

/// What every request of one client connection shares: computed once per connection.
pub(crate) struct ConnContext {
    pub ctx: Arc<ServiceRuntime>,
    pub peer: SocketAddr,
    pub https: bool,
    /// The forwarded-field values (`trusted` decided once from `trusted_proxies`).
    pub forwarding: Forwarding,
    pub request_limits: Limits,
    pub response_limits: Limits,
    pub default_pool: Option<Arc<PoolRuntime>>,
    /// Cookie persistence: the cookie's name and lifetime.
    pub cookie: Option<(String, Duration)>,
    pub accepted: Instant,
}

impl ConnContext {
    pub(crate) fn new(ctx: Arc<ServiceRuntime>, peer: SocketAddr, https: bool) -> Self {
        let ip = peer.ip().to_canonical();
        let trusted = ctx.config.trusted_proxies.iter().any(|n| n.contains(&ip));
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let limits = &ctx.config.limits;
        let request_limits = Limits {
            max_head_bytes: usize::try_from(limits.max_header_bytes.bytes())
                .unwrap_or(usize::MAX)
                .min(tandem_http::MAX_HEAD_BYTES_CAP),
            max_body_bytes: Some(limits.max_body_bytes.bytes()),
            ..Limits::default()
        };
        let response_limits = Limits {
            max_head_bytes: MAX_RESPONSE_HEAD,
            max_fields: 200,
            ..Limits::default()
        };
        let cookie = match &ctx.config.persistence {
            Some(Persistence::Cookie(c)) => Some((c.name.clone(), c.timeout.get())),
            _ => None,
        };
        ConnContext {
            default_pool: ctx.default_pool().cloned(),
            forwarding: Forwarding::new(ip, scheme, trusted),
            peer,
            https,
            request_limits,
            response_limits,
            cookie,
            ctx,
            accepted: Instant::now(),
        }
    }

    /// The `Set-Cookie` value pinning the client to `server` (see `docs/dataplane.md`).
    pub(crate) fn set_cookie(&self, server: &str) -> Option<String> {
        let (name, timeout) = self.cookie.as_ref()?;
        Some(crate::persistence::set_cookie_value(
            name, server, *timeout, self.https,
        ))
    }

    /// Every pool this connection's service may use (for returning idle connections).
    pub(crate) fn pools(&self) -> impl Iterator<Item = &PoolRuntime> {
        self.ctx.pools.values().map(|p| &**p)
    }
}

/// One reusable timer per connection (or HTTP/2 stream): a deadline for whatever I/O is
/// awaited. The timer is only armed when the I/O is not ready at once, so the common case
/// (data already there) touches no timer.
pub(crate) struct Timer(Pin<Box<Sleep>>);

impl Timer {
    pub(crate) fn new() -> Timer {
        Timer(Box::pin(tokio::time::sleep(Duration::from_secs(3600))))
    }

    /// `fut`'s output, or `None` when `deadline` passes first.
    pub(crate) async fn within<F: Future>(
        &mut self,
        deadline: Instant,
        fut: F,
    ) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let mut armed = false;
        let sleep = &mut self.0;
        poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if !armed {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                armed = true;
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await
    }
}
