//! The entry point of HTTP and HTTPS connections into the HTTP engine.
//!
//! INTERIM: the HTTP/1.1 and HTTP/2 engine is not built yet. Until it replaces
//! [`serve_http`], every request is answered `503` with the body "HTTP engine not built yet",
//! and the connection closed, so the listener, limits and TLS paths (SNI, ALPN, resumption)
//! can be exercised by real clients. An `h2` connection is closed at once.
//!
//! The engine gets, per connection: the service runtime (`ServiceRuntime`: pools, persistence,
//! limits, counters, access-log switch, upstream TLS), the client stream (plain TCP, or TLS
//! after the handshake), the client address, what TLS settled ([`TlsInfo`]), and the accept-time
//! limits decision with the connection's slot (`ServiceFull` → 503, `SourceRateExceeded` →
//! 429, then close; HTTPS connections refused at accept never reach it).

use crate::limits::Admission;
use crate::service::{ServiceRuntime, ServiceSlot};
use crate::tls::TlsInfo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Serves one client connection of an `http` or `https` service.
pub(crate) async fn serve_http<IO>(
    ctx: Arc<ServiceRuntime>,
    mut io: IO,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    admission: Admission,
    _slot: Option<ServiceSlot>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    if tls.as_ref().is_some_and(TlsInfo::is_h2) {
        let _ = io.shutdown().await;
        return;
    }
    let started = Instant::now();
    let (status, reason, body): (u16, &str, &str) = match admission {
        Admission::ServiceFull => (
            503,
            "Service Unavailable",
            "service at its connection limit\n",
        ),
        Admission::SourceRateExceeded => (429, "Too Many Requests", "too many connections\n"),
        Admission::Allowed => {
            if !read_head(&ctx, &mut io).await {
                return;
            }
            ctx.counters().traffic.add_request();
            if ctx.request_allowed(peer.ip()) {
                (503, "Service Unavailable", "HTTP engine not built yet\n")
            } else {
                (429, "Too Many Requests", "too many requests\n")
            }
        }
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if io.write_all(response.as_bytes()).await.is_ok() {
        let _ = io.shutdown().await;
    }
    ctx.counters()
        .traffic
        .observe_response(status, started.elapsed());
}

/// Reads a request head (until an empty line) within the header timeout and size limit.
async fn read_head<IO: AsyncRead + Unpin>(ctx: &ServiceRuntime, io: &mut IO) -> bool {
    let limit = ctx.config.limits.max_header_bytes.bytes() as usize;
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            let n = io.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if buf.len() > limit {
                return None;
            }
        }
    };
    matches!(
        tokio::time::timeout(ctx.config.limits.header_timeout.get(), read).await,
        Ok(Some(()))
    )
}
