//! The server side of one exchange, shared by the HTTP/1.1 and HTTP/2 connections: which
//! server (persistence, balancer, retries on connect failure), a connection to it, sending
//! the request, reading the response head.
//!
//! **Retry rule.** A request is sent to another server, or again on a fresh connection,
//! only when the server cannot have acted on it:
//! - a connect that fails or times out (`connect_timeout`, TLS handshake included) is
//!   counted on that server and the next server is tried, whatever the request: nothing was
//!   sent. At most three servers per request; when all fail the client gets a 503;
//! - a *reused* keep-alive connection that fails before the first byte of the response
//!   (write error, EOF, reset: the server closed it while idle) is replaced by a fresh
//!   connection to the same server once, when the request is idempotent (RFC 9110 §9.2.2:
//!   GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and the whole request, body included, was still
//!   held by the proxy (sent in one write, so it can be sent again);
//! - nothing else is retried: a response timeout is a 504, a malformed or truncated response
//!   a 502, and a request whose body was streamed is never replayed.

use super::upstream_pool::{self, ConnectError, ServerConn};
use super::{ConnContext, Timer};
use crate::pool::{NoServer, PoolRuntime, ServerLease};
use bytes::BytesMut;
use http::Method;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use tandem_config::Persistence;
use tandem_http::{Exchange, ResponseHead, ResponseReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Servers tried per request when connects fail.
pub(crate) const MAX_CONNECT_TRIES: usize = 3;

/// Why no server connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// No server may take the request (all down, drained, disabled or full): 503.
    NoServer,
    /// Every server tried refused or did not answer the connect: 503.
    ConnectFailed,
}

/// A server chosen for one request and a connection to it.
pub(crate) struct Opened {
    pub lease: ServerLease,
    pub conn: ServerConn,
    /// Send the persistence cookie with the response.
    pub set_cookie: bool,
}

/// Chooses a server of `pool` for a request (cookie or source persistence, then the
/// balancer) and gets a connection to it: an idle one from `take`, else a new one. A failed
/// connect moves on to another server (see the retry rule).
pub(crate) async fn open(
    cc: &ConnContext,
    pool: &PoolRuntime,
    cookie: Option<&[u8]>,
    mut take: impl FnMut(&PoolRuntime, usize, SocketAddr) -> Option<ServerConn>,
) -> Result<Opened, OpenError> {
    let mut failed = [usize::MAX; MAX_CONNECT_TRIES];
    let mut tries = 0;
    let ip = cc.peer.ip();
    loop {
        let picked = match (&cc.ctx.config.persistence, &cc.cookie) {
            (Some(Persistence::Cookie(_)), Some(_)) => {
                let value = cookie.and_then(|v| std::str::from_utf8(v).ok());
                cc.ctx
                    .choose_server_by_cookie(pool, value, ip, &failed[..tries])
                    .map(|p| (p.lease, p.set_cookie))
            }
            _ => cc
                .ctx
                .choose_server(pool, ip, &failed[..tries])
                .map(|l| (l, false)),
        };
        let (lease, set_cookie) = match picked {
            Ok(p) => p,
            Err(NoServer) if tries == 0 => return Err(OpenError::NoServer),
            Err(NoServer) => return Err(OpenError::ConnectFailed),
        };
        if let Some(conn) = take(pool, lease.index, lease.address) {
            return Ok(Opened {
                lease,
                conn,
                set_cookie,
            });
        }
        match upstream_pool::connect(pool, lease.index, lease.address).await {
            Ok(conn) => {
                return Ok(Opened {
                    lease,
                    conn,
                    set_cookie,
                });
            }
            Err(e) => {
                connect_failed(cc, pool, &lease, &e);
                failed[tries] = lease.index;
                tries += 1;
                if tries >= MAX_CONNECT_TRIES.min(pool.servers.len()) {
                    return Err(OpenError::ConnectFailed);
                }
            }
        }
    }
}

/// A fresh connection to the server of `lease` (the retry on a stale keep-alive
/// connection).
pub(crate) async fn reconnect(
    cc: &ConnContext,
    pool: &PoolRuntime,
    lease: &ServerLease,
) -> Option<ServerConn> {
    match upstream_pool::connect(pool, lease.index, lease.address).await {
        Ok(c) => Some(c),
        Err(e) => {
            connect_failed(cc, pool, lease, &e);
            None
        }
    }
}

fn connect_failed(cc: &ConnContext, pool: &PoolRuntime, lease: &ServerLease, e: &ConnectError) {
    lease.state.counters.connect_failures.fetch_add(1, Relaxed);
    // Once a minute per server address, not per request.
    if cc
        .ctx
        .log_throttle()
        .should_log(lease.address.ip(), Instant::now())
    {
        tracing::warn!(service = %cc.ctx.name, pool = %pool.name, server = %lease.id,
            address = %lease.address, reason = %e,
            "connect to server failed (logged once a minute per server address)");
    }
}

/// Whether a request may be sent again after a reused connection failed before any
/// response byte (RFC 9110 §9.2.2: idempotent methods).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What went wrong on the server side of an exchange.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No response head within `response_timeout`: 504.
    Timeout,
    /// The connection failed or closed; `nothing_received`: not one byte of the response
    /// came (a stale keep-alive connection, if it was reused).
    Closed { nothing_received: bool },
    /// The response was refused by the codec: 502, the connection closed.
    Invalid(tandem_http::Error),
}

/// Sends `bytes` to the server, within `deadline`.
pub(crate) async fn send(
    conn: &mut ServerConn,
    bytes: &[u8],
    timer: &mut Timer,
    deadline: Instant,
) -> Result<(), UpstreamError> {
    match timer.within(deadline, conn.io.write_all(bytes)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(UpstreamError::Closed {
            nothing_received: true,
        }),
        None => Err(UpstreamError::Timeout),
    }
}

/// Reads from the server into its buffer, within `deadline`. `Ok(0)` is EOF.
pub(crate) async fn read_more(
    conn: &mut ServerConn,
    timer: &mut Timer,
    deadline: Instant,
) -> Option<std::io::Result<usize>> {
    reserve(&mut conn.buf);
    timer
        .within(deadline, conn.io.read_buf(&mut conn.buf))
        .await
}

/// Makes room for a reasonably large read.
pub(crate) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
}

/// Reads the next response head of `exchange` (interim ones included: the caller loops).
pub(crate) async fn read_head(
    conn: &mut ServerConn,
    reader: &mut ResponseReader,
    exchange: &Exchange,
    timer: &mut Timer,
    deadline: Instant,
    received: &mut bool,
) -> Result<ResponseHead, UpstreamError> {
    loop {
        if !conn.buf.is_empty() {
            *received = true;
        }
        match reader.read(&mut conn.buf, exchange) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(UpstreamError::Invalid(e)),
        }
        match read_more(conn, timer, deadline).await {
            None => return Err(UpstreamError::Timeout),
            Some(Ok(0)) | Some(Err(_)) => {
                return Err(UpstreamError::Closed {
                    nothing_received: !*received && conn.buf.is_empty(),
                });
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Counts a refused request and logs it once a minute per source.
pub(crate) fn refused(cc: &ConnContext, status: u16, reason: &str) {
    let c = cc.ctx.counters();
    match status {
        408 => &c.http_header_timeouts,
        413 | 414 | 431 => &c.http_too_large,
        _ => &c.http_malformed,
    }
    .fetch_add(1, Relaxed);
    if cc
        .ctx
        .log_throttle()
        .should_log(cc.peer.ip(), Instant::now())
    {
        tracing::warn!(service = %cc.ctx.name, client = %cc.peer, status, reason,
            "request refused (logged once a minute per source)");
    }
}
