//! One HTTP/2 client connection (ALPN `h2`), with the `h2` crate as the protocol engine:
//! one task per connection, its streams polled side by side in that task (no task per
//! stream), each stream relayed as one HTTP/1.1 exchange to a server.
//!
//! The mapping (RFC 9113 §8):
//! - **Refused as a stream error (RST_STREAM `PROTOCOL_ERROR`), never forwarded**:
//!   connection-specific fields (`connection`, `transfer-encoding`, `keep-alive`,
//!   `proxy-connection`, `upgrade`, `te` other than `trailers`; §8.2.2), a `content-length`
//!   that disagrees with the DATA received (§8.1.1), a `host` that names another authority
//!   than `:authority` (§8.3.1), and any field the strict HTTP/1.1 codec would refuse in
//!   the head built for the server (bytes no HTTP/1.1 field may hold). `h2` itself refuses
//!   the first two; the engine checks them again, so a change in `h2` cannot open a hole.
//! - **The request head for the server** is built as HTTP/1.1 bytes (method, `:path`,
//!   `Host` from `:authority`, the fields, the `cookie` fields joined with `; ` per §8.2.3)
//!   and read back by the same strict reader as client heads, then rewritten by the same
//!   code (forwarded fields, framing). So both protocols reach servers in one form.
//! - **Bodies**: up to [`HELD_BODY`] of the request body is received before a server is
//!   chosen. A body that ends within it is checked against `content-length` by then (an
//!   error reaches no server) and sent with the head, `Content-Length: N`. A longer body is
//!   streamed: with `Content-Length` when the client gave one, its last byte held back until
//!   the stream's end is seen (so a disagreement leaves the server an incomplete request,
//!   which it cannot act on), else chunked, the last chunk sent only at the stream's end.
//! - **The response** is the server's, with HTTP/1.1 connection fields removed and the body
//!   de-chunked into DATA frames (flow control respected); 1xx other than 101 are sent as
//!   informational responses. Trailers from the server are not relayed.

use super::access_log::{self, Record};
use super::exchange::{self, OpenError, UpstreamError};
use super::upstream_pool::{LocalConnections, ServerConn};
use super::{ConnContext, Timer, route};
use crate::pool::{PoolRuntime, ServerLease};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::future::poll_fn;
use std::sync::Mutex;
use std::time::Duration;
use tandem_http::canned::Reply;
use tandem_http::{
    BodyDecoder, BodyKind, CHUNK_END, ChunkHeader, LAST_CHUNK, RequestHead, RequestReader,
    RequestRewrite, ResponseHead, ResponseReader, Side, write_request,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Request body received before the exchange starts (see the module's "Bodies").
pub(crate) const HELD_BODY: usize = 64 * 1024;
/// How long a client may go without streams before the server connections it holds go
/// back to the shared pool.
const RELEASE_IDLE_SERVERS: Duration = Duration::from_secs(1);
/// Response data below this size is copied into its DATA frame (see `relay`).
const COPY_DATA_BELOW: usize = 16 * 1024;
/// Streams one client may have open at once.
const MAX_STREAMS: u32 = 128;
/// Flow-control windows offered to clients: per stream, and for the connection.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;

/// Serves one HTTP/2 client connection to its end.
pub(crate) async fn serve<IO>(cc: ConnContext, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = &cc.ctx.config.limits;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(cc.request_limits.max_head_bytes as u32)
        .max_send_buffer_size(256 * 1024);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(limits.header_timeout.get(), handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(service = %cc.ctx.name, client = %cc.peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            exchange::refused(&cc, 408, "HTTP/2 preface not received in time");
            return;
        }
    };
    let shared = Shared {
        cc: &cc,
        local: Mutex::new(LocalConnections::default()),
    };
    let idle_timeout = limits.idle_timeout.get();
    let mut streams = FuturesUnordered::new();
    let mut idle = Timer::new();
    let mut idle_since = Instant::now();
    let mut closing = false;
    // Server connections held by this client go back to the shared pool once it has had no
    // stream for a moment.
    let mut released = true;
    loop {
        let wake = if released {
            idle_since + idle_timeout
        } else {
            idle_since + RELEASE_IDLE_SERVERS
        };
        tokio::select! {
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {
                if streams.is_empty() {
                    idle_since = Instant::now();
                    released = false;
                }
            }
            r = conn.accept() => match r {
                Some(Ok((request, respond))) => streams.push(stream(&shared, request, respond)),
                Some(Err(e)) => {
                    tracing::debug!(service = %cc.ctx.name, client = %cc.peer, error = %e, "HTTP/2 connection error");
                    break;
                }
                None => break,
            },
            _ = idle.within(wake, std::future::pending::<()>()),
                if streams.is_empty() && !closing => {
                if !released {
                    shared.release();
                    released = true;
                } else {
                    // No stream for idle_timeout: GOAWAY, then the connection ends by itself.
                    conn.graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    drop(streams);
    shared.release();
}

/// What the streams of one connection share.
struct Shared<'a> {
    cc: &'a ConnContext,
    /// Idle server connections kept by this client connection (locked only to take or
    /// return one, never across an await; the streams all run in one task).
    local: Mutex<LocalConnections>,
}

impl Shared<'_> {
    fn take(
        &self,
        pool: &PoolRuntime,
        index: usize,
        address: std::net::SocketAddr,
    ) -> Option<ServerConn> {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(pool, index, address)
    }

    fn release(&self) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(self.cc.pools());
    }

    fn put(&self, pool: &PoolRuntime, conn: ServerConn) {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(pool, conn);
    }
}

/// The request body received before the exchange starts.
struct Held {
    body: BytesMut,
    /// The stream ended within [`HELD_BODY`].
    complete: bool,
}

/// One stream: refused, answered here, or relayed to a server.
async fn stream(sh: &Shared<'_>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let cc = sh.cc;
    let ctx = &*cc.ctx;
    let started = Instant::now();
    ctx.counters().traffic.add_request();
    let (parts, mut recv) = request.into_parts();
    let mut rec = Record {
        protocol: "HTTP/2",
        method: parts.method.as_str(),
        host: parts.uri.authority().map(|a| a.host()),
        path: parts.uri.path(),
        status: 0,
        server: None,
        latency: Duration::ZERO,
        bytes_in: 0,
        bytes_out: 0,
        started,
        error: None,
    };
    let head_request = parts.method == http::Method::HEAD;

    if let Err(why) = check_fields(&parts) {
        respond.send_reset(Reason::PROTOCOL_ERROR);
        exchange::refused(cc, 400, why);
        rec.error = Some(why);
        access_log::record(cc, &rec);
        return;
    }
    if !ctx.request_allowed(cc.peer.ip()) {
        rec.status = 429;
        rec.bytes_out = reply(
            &mut respond,
            StatusCode::TOO_MANY_REQUESTS,
            Some(1),
            head_request,
        );
        access_log::record(cc, &rec);
        return;
    }
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && !recv.is_end_stream() {
        let _ = respond
            .send_informational(Response::builder().status(100).body(()).unwrap_or_default());
    }

    let mut timer = Timer::new();
    let idle = ctx.config.limits.idle_timeout.get();
    let max_body = cc.request_limits.max_body_bytes.unwrap_or(u64::MAX);
    let held = match hold_body(&mut recv, &mut timer, idle, max_body).await {
        Ok(h) => h,
        Err(HoldError::TooLarge) => {
            exchange::refused(cc, 413, "body too large");
            rec.status = 413;
            rec.bytes_out = reply(
                &mut respond,
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                head_request,
            );
            access_log::record(cc, &rec);
            return;
        }
        Err(HoldError::Stream(why)) => {
            // h2 has reset the stream (a content-length disagreement) or the client did.
            respond.send_reset(Reason::PROTOCOL_ERROR);
            if why != "client went away" {
                exchange::refused(cc, 400, why);
            }
            rec.error = Some(why);
            access_log::record(cc, &rec);
            return;
        }
    };

    // The HTTP/1.1 head, read back by the strict reader.
    let declared_length = content_length(&parts.headers);
    let framing = if held.complete {
        Framing::Length(held.body.len() as u64)
    } else if let Some(n) = declared_length {
        Framing::Length(n)
    } else {
        Framing::Chunked
    };
    let mut head_bytes = BytesMut::with_capacity(512);
    build_head(&parts, framing, &mut head_bytes);
    // The reader splits the head off without a copy.
    let mut reader = RequestReader::new(cc.request_limits.clone());
    let head = match reader.read(&mut head_bytes) {
        Ok(Some(head)) => head,
        Ok(None) => {
            respond.send_reset(Reason::PROTOCOL_ERROR);
            rec.error = Some("head could not be mapped");
            access_log::record(cc, &rec);
            return;
        }
        Err(e) => {
            let status = e.status();
            exchange::refused(cc, status.as_u16(), e.reason());
            rec.error = Some(e.reason());
            if status == StatusCode::BAD_REQUEST {
                // Malformed (RFC 9113 §8.1.1): a stream error.
                respond.send_reset(Reason::PROTOCOL_ERROR);
            } else {
                rec.status = status.as_u16();
                rec.bytes_out = reply(&mut respond, status, None, head_request);
            }
            access_log::record(cc, &rec);
            return;
        }
    };

    let Some(pool) = route::pool_for(ctx, cc.default_pool.as_ref(), &head) else {
        rec.status = 503;
        rec.bytes_out = reply(
            &mut respond,
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            head_request,
        );
        access_log::record(cc, &rec);
        return;
    };
    let cookie = cc.cookie.as_ref().and_then(|(name, _)| head.cookie(name));
    let opened = match exchange::open(cc, pool, cookie, |p, i, a| sh.take(p, i, a)).await {
        Ok(o) => o,
        Err(OpenError::NoServer | OpenError::ConnectFailed) => {
            rec.status = 503;
            rec.bytes_out = reply(
                &mut respond,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                head_request,
            );
            access_log::record(cc, &rec);
            return;
        }
    };
    let exchange::Opened {
        lease,
        mut conn,
        set_cookie,
    } = opened;
    rec.server = Some(&lease);
    let outcome = relay(
        sh,
        &head,
        held,
        framing,
        &mut recv,
        &mut respond,
        pool,
        &lease,
        &mut conn,
        &mut timer,
        &mut rec,
        set_cookie,
    )
    .await;
    rec.latency = if rec.latency.is_zero() {
        started.elapsed()
    } else {
        rec.latency
    };
    match outcome {
        Ok(reusable) => {
            if reusable {
                sh.put(pool, conn);
            }
        }
        Err(why) => rec.error = Some(why),
    }
    access_log::record(cc, &rec);
}

/// How the request body is framed towards the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Relays one stream's request to the server and the response back. `Ok(true)`: the server
/// connection may be reused.
#[allow(clippy::too_many_arguments)]
async fn relay(
    sh: &Shared<'_>,
    head: &RequestHead,
    held: Held,
    framing: Framing,
    recv: &mut RecvStream,
    respond: &mut SendResponse<Bytes>,
    pool: &PoolRuntime,
    lease: &ServerLease,
    conn: &mut ServerConn,
    timer: &mut Timer,
    rec: &mut Record<'_>,
    set_cookie: bool,
) -> Result<bool, &'static str> {
    let cc = sh.cc;
    let idle = cc.ctx.config.limits.idle_timeout.get();
    let response_timeout = pool.config.response_timeout.get();
    let head_request = head.method() == http::Method::HEAD;

    let mut to_server = BytesMut::with_capacity(head.as_bytes().len() + 256 + held.body.len());
    let missing_host = head.host().is_none().then(|| lease.address.to_string());
    let rewrite = RequestRewrite {
        forwarding: &cc.forwarding,
        close: false,
        pass_upgrade: false,
        extra: &[],
        host_if_missing: missing_host.as_deref(),
    };
    let ex = match write_request(head, &rewrite, &mut to_server) {
        Ok(ex) => ex,
        Err(e) => {
            rec.status = 500;
            rec.bytes_out = reply(respond, e.status(), None, head_request);
            return Err(e.reason());
        }
    };
    let held_all = held.complete;
    let mut held_body = held.body;
    // With Content-Length and more to come, keep the last byte until the stream's end.
    let mut last_byte = None;
    match framing {
        Framing::Chunked => {
            if !held_body.is_empty() {
                to_server.put_slice(ChunkHeader::new(held_body.len() as u64).as_bytes());
                to_server.put_slice(&held_body);
                to_server.put_slice(CHUNK_END);
            }
        }
        Framing::Length(_) => {
            if !held_all && let Some(b) = held_body.last().copied() {
                held_body.truncate(held_body.len() - 1);
                last_byte = Some(b);
            }
            to_server.put_slice(&held_body);
        }
    }

    let retry_allowed = held_all && exchange::idempotent(head.method());
    let mut retried = false;
    let mut reader = ResponseReader::new(cc.response_limits.clone());
    let mut received = false;
    let response: ResponseHead = 'attempt: loop {
        let deadline = Instant::now() + response_timeout;
        let mut sent = exchange::send(conn, &to_server, timer, deadline).await;
        if sent.is_ok() {
            rec.bytes_in = to_server.len() as u64;
            if !held_all {
                match stream_body(recv, conn, timer, idle, framing, &mut last_byte, rec).await {
                    Ok(()) => {}
                    Err(BodyError::Client(why)) => {
                        respond.send_reset(Reason::PROTOCOL_ERROR);
                        return Err(why);
                    }
                    Err(BodyError::Server) => {
                        sent = Err(UpstreamError::Closed {
                            nothing_received: true,
                        })
                    }
                }
            }
        }
        let _ = sent;
        let deadline = Instant::now() + response_timeout;
        loop {
            match exchange::read_head(conn, &mut reader, &ex, timer, deadline, &mut received).await
            {
                Ok(r) if r.is_interim() => {
                    if r.status() != StatusCode::CONTINUE {
                        let _ = respond.send_informational(
                            Response::builder()
                                .status(r.status())
                                .body(())
                                .unwrap_or_default(),
                        );
                    }
                }
                Ok(r) => break 'attempt r,
                Err(UpstreamError::Closed {
                    nothing_received: true,
                }) if conn.reused && retry_allowed && !retried => {
                    retried = true;
                    match exchange::reconnect(cc, pool, lease).await {
                        Some(c) => {
                            *conn = c;
                            reader = ResponseReader::new(cc.response_limits.clone());
                            continue 'attempt;
                        }
                        None => {
                            rec.status = 503;
                            rec.bytes_out =
                                reply(respond, StatusCode::SERVICE_UNAVAILABLE, None, head_request);
                            return Err("connect failed");
                        }
                    }
                }
                Err(e) => {
                    let (status, why) = match &e {
                        UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "response timeout"),
                        UpstreamError::Closed { .. } => {
                            (StatusCode::BAD_GATEWAY, "server closed the connection")
                        }
                        UpstreamError::Invalid(e) => (StatusCode::BAD_GATEWAY, e.reason()),
                    };
                    rec.status = status.as_u16();
                    rec.bytes_out = reply(respond, status, None, head_request);
                    return Err(why);
                }
            }
        }
    };
    rec.latency = rec.started.elapsed();
    let status = response.status();
    rec.status = status.as_u16();
    let cookie = if set_cookie {
        cc.set_cookie(&lease.id)
    } else {
        None
    };
    let Some(mapped) = map_response(&response, cookie.as_deref()) else {
        rec.status = 502;
        rec.bytes_out = reply(respond, StatusCode::BAD_GATEWAY, None, head_request);
        return Err("response head cannot be sent over HTTP/2");
    };
    let server_keep = response.keep_alive();
    let kind = response.body();
    let head_len = response.as_bytes().len() as u64;
    drop(response);
    if kind == BodyKind::Tunnel {
        rec.status = 502;
        rec.bytes_out = reply(respond, StatusCode::BAD_GATEWAY, None, head_request);
        return Err("server switched protocols");
    }
    let no_body = kind == BodyKind::None || kind == BodyKind::Length(0);
    let mut send = match respond.send_response(mapped, no_body) {
        Ok(s) => s,
        Err(_) => return Err("client went away"),
    };
    rec.bytes_out = head_len;
    if no_body {
        return Ok(server_keep && conn.buf.is_empty());
    }
    let mut decoder = BodyDecoder::new(kind, Side::Response, &cc.response_limits);
    loop {
        let step = match decoder.decode(&conn.buf) {
            Ok(s) => s,
            Err(e) => {
                send.send_reset(Reason::INTERNAL_ERROR);
                return Err(e.reason());
            }
        };
        if step.consumed > 0 {
            // Small pieces are copied out, so the connection's buffer stays its own and is
            // reused; large ones are handed to h2 without a copy.
            let data = if step.data.len() < COPY_DATA_BELOW {
                let data = Bytes::copy_from_slice(&conn.buf[step.data.clone()]);
                conn.buf.advance(step.consumed);
                data
            } else {
                conn.buf.split_to(step.consumed).freeze().slice(step.data)
            };
            rec.bytes_out += data.len() as u64;
            if !data.is_empty() || step.done {
                send_data(&mut send, data, step.done, timer, idle).await?;
            }
        }
        if step.done {
            return Ok(server_keep && conn.buf.is_empty());
        }
        if step.consumed > 0 && !conn.buf.is_empty() {
            continue;
        }
        match exchange::read_more(conn, timer, Instant::now() + response_timeout).await {
            Some(Ok(0)) => {
                if decoder.finish().is_err() {
                    send.send_reset(Reason::INTERNAL_ERROR);
                    return Err("response truncated by the server");
                }
                send_data(&mut send, Bytes::new(), true, timer, idle).await?;
                return Ok(false);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => {
                send.send_reset(Reason::INTERNAL_ERROR);
                return Err("server connection failed mid-response");
            }
            None => {
                send.send_reset(Reason::INTERNAL_ERROR);
                return Err("server stalled mid-response");
            }
        }
    }
}

enum BodyError {
    /// The client's stream failed (reset, content-length disagreement, stalled).
    Client(&'static str),
    /// The server stopped taking the body.
    Server,
}

/// Forwards the rest of a request body that did not fit in [`HELD_BODY`].
#[allow(clippy::too_many_arguments)]
async fn stream_body(
    recv: &mut RecvStream,
    conn: &mut ServerConn,
    timer: &mut Timer,
    idle: Duration,
    framing: Framing,
    last_byte: &mut Option<u8>,
    rec: &mut Record<'_>,
) -> Result<(), BodyError> {
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let next = timer
            .within(Instant::now() + idle, poll_fn(|cx| recv.poll_data(cx)))
            .await;
        out.clear();
        let end = match next {
            None => return Err(BodyError::Client("request body stalled")),
            Some(Some(Err(_))) => {
                return Err(BodyError::Client("request body refused by HTTP/2 rules"));
            }
            Some(Some(Ok(mut data))) => {
                let _ = recv.flow_control().release_capacity(data.len());
                let end = recv.is_end_stream();
                match framing {
                    Framing::Chunked => {
                        if !data.is_empty() {
                            out.put_slice(ChunkHeader::new(data.len() as u64).as_bytes());
                            out.put_slice(&data);
                            out.put_slice(CHUNK_END);
                        }
                    }
                    Framing::Length(_) => {
                        if let Some(b) = last_byte.take() {
                            out.put_u8(b);
                        }
                        if !end && !data.is_empty() {
                            *last_byte = data.last().copied();
                            data.truncate(data.len() - 1);
                        }
                        out.put_slice(&data);
                    }
                }
                end
            }
            Some(None) => true,
        };
        if end {
            match framing {
                Framing::Chunked => out.put_slice(LAST_CHUNK),
                Framing::Length(_) => {
                    if let Some(b) = last_byte.take() {
                        out.put_u8(b);
                    }
                }
            }
        }
        if !out.is_empty() {
            exchange::send(conn, &out, timer, Instant::now() + idle)
                .await
                .map_err(|_| BodyError::Server)?;
            rec.bytes_in += out.len() as u64;
        }
        if end {
            return Ok(());
        }
    }
}

enum HoldError {
    TooLarge,
    Stream(&'static str),
}

/// Receives the request body until its end or [`HELD_BODY`] bytes.
async fn hold_body(
    recv: &mut RecvStream,
    timer: &mut Timer,
    idle: Duration,
    max_body: u64,
) -> Result<Held, HoldError> {
    let mut body = BytesMut::new();
    if recv.is_end_stream() {
        return Ok(Held {
            body,
            complete: true,
        });
    }
    loop {
        let next = timer
            .within(Instant::now() + idle, poll_fn(|cx| recv.poll_data(cx)))
            .await;
        match next {
            None => return Err(HoldError::Stream("request body stalled")),
            Some(None) => {
                return Ok(Held {
                    body,
                    complete: true,
                });
            }
            Some(Some(Err(e))) => {
                return Err(HoldError::Stream(if e.is_remote() || e.is_io() {
                    "client went away"
                } else {
                    "content-length disagrees with the DATA received"
                }));
            }
            Some(Some(Ok(data))) => {
                let _ = recv.flow_control().release_capacity(data.len());
                body.extend_from_slice(&data);
                if body.len() as u64 > max_body {
                    return Err(HoldError::TooLarge);
                }
                if recv.is_end_stream() {
                    return Ok(Held {
                        body,
                        complete: true,
                    });
                }
                if body.len() >= HELD_BODY {
                    return Ok(Held {
                        body,
                        complete: false,
                    });
                }
            }
        }
    }
}

/// RFC 9113 §8.2.2 and §8.3.1, checked again here (see the module documentation).
fn check_fields(parts: &http::request::Parts) -> Result<(), &'static str> {
    let h = &parts.headers;
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        if h.contains_key(&name) {
            return Err("connection-specific field in an HTTP/2 request");
        }
    }
    if h.get_all(header::TE).iter().any(|v| v != "trailers") {
        return Err("TE other than trailers in an HTTP/2 request");
    }
    if let (Some(authority), Some(host)) = (parts.uri.authority(), h.get(header::HOST))
        && !same_authority(parts.uri.scheme_str(), authority, host.as_bytes())
    {
        return Err("Host differs from :authority");
    }
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next()
        && (lengths.any(|v| v != first) || parse_length(first.as_bytes()).is_none())
    {
        return Err("invalid content-length");
    }
    Ok(())
}

/// Whether `host` names the same authority as `authority`: host case-insensitive, an
/// absent port the scheme's default.
fn same_authority(scheme: Option<&str>, authority: &http::uri::Authority, host: &[u8]) -> bool {
    let Ok(host) = http::uri::Authority::try_from(host) else {
        return false;
    };
    let default = if scheme == Some("http") { 80 } else { 443 };
    authority.host().eq_ignore_ascii_case(host.host())
        && authority.port_u16().unwrap_or(default) == host.port_u16().unwrap_or(default)
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| parse_length(v.as_bytes()))
}

/// Writes the HTTP/1.1 form of an HTTP/2 request head (read back by the strict reader).
fn build_head(parts: &http::request::Parts, framing: Framing, out: &mut BytesMut) {
    out.put_slice(parts.method.as_str().as_bytes());
    out.put_u8(b' ');
    let target = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str(),
        None => parts.uri.authority().map_or("/", |a| a.as_str()),
    };
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    // RFC 9113 §8.3.1: Host from :authority; else the client's own Host; else empty.
    out.put_slice(b"host: ");
    match (parts.uri.authority(), parts.headers.get(header::HOST)) {
        (Some(a), _) => out.put_slice(a.as_str().as_bytes()),
        (None, Some(h)) => out.put_slice(h.as_bytes()),
        (None, None) => {}
    }
    out.put_slice(b"\r\n");
    let mut cookies = parts.headers.get_all(header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        // RFC 9113 §8.2.3: cookie fields are joined with "; " for HTTP/1.1.
        out.put_slice(b"cookie: ");
        out.put_slice(first.as_bytes());
        for c in cookies {
            out.put_slice(b"; ");
            out.put_slice(c.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::HOST | header::COOKIE | header::CONTENT_LENGTH | header::TE
        ) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        Framing::Length(0)
            if parts.method != http::Method::POST && parts.method != http::Method::PUT => {}
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

/// The HTTP/2 form of a server's response head: status, fields without the HTTP/1.1
/// connection fields (RFC 9113 §8.2.2), `content-length` when it describes the body (or is
/// metadata on HEAD and 304), and the persistence cookie. `None` when a field cannot be
/// carried.
fn map_response(r: &ResponseHead, set_cookie: Option<&str>) -> Option<Response<()>> {
    let mut response = Response::new(());
    *response.status_mut() = r.status();
    // One copy of the head; every value is a slice of it.
    let whole = Bytes::copy_from_slice(r.as_bytes());
    let headers = response.headers_mut();
    let listed: Vec<&[u8]> = r
        .headers("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .collect();
    for (name, value) in r.fields() {
        let lower = name.as_bytes();
        if [
            &b"connection"[..],
            b"keep-alive",
            b"proxy-connection",
            b"transfer-encoding",
            b"upgrade",
            b"te",
            b"trailer",
            b"content-length",
        ]
        .iter()
        .any(|h| lower.eq_ignore_ascii_case(h))
            || listed.iter().any(|l| lower.eq_ignore_ascii_case(l))
        {
            continue;
        }
        let name = HeaderName::from_bytes(lower).ok()?;
        let start = (value.as_ptr() as usize).checked_sub(r.as_bytes().as_ptr() as usize)?;
        let value = HeaderValue::from_maybe_shared(whole.slice(start..start + value.len())).ok()?;
        headers.append(name, value);
    }
    let length = match r.body() {
        BodyKind::Length(n) => Some(n),
        BodyKind::None
            if r.status() != StatusCode::NO_CONTENT && !r.status().is_informational() =>
        {
            r.header("content-length").and_then(parse_length)
        }
        _ => None,
    };
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Some(c) = set_cookie {
        headers.append(header::SET_COOKIE, HeaderValue::from_str(c).ok()?);
    }
    Some(response)
}

/// Sends `data` on a response stream as the client's flow-control window allows.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    timer: &mut Timer,
    idle: Duration,
) -> Result<(), &'static str> {
    if data.is_empty() {
        return send.send_data(data, end).map_err(|_| "client went away");
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let mut available = send.capacity();
        if available == 0 {
            available = match timer
                .within(Instant::now() + idle, poll_fn(|cx| send.poll_capacity(cx)))
                .await
            {
                Some(Some(Ok(n))) => n,
                Some(_) => return Err("client went away"),
                None => {
                    send.send_reset(Reason::CANCEL);
                    return Err("client stopped reading");
                }
            };
        }
        let piece = data.split_to(available.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(|_| "client went away")?;
    }
    Ok(())
}

/// A response of the proxy's own on a stream (status, short text body). Returns the body
/// bytes sent.
fn reply(
    respond: &mut SendResponse<Bytes>,
    status: StatusCode,
    retry_after: Option<u32>,
    head_request: bool,
) -> u64 {
    // The same one-line bodies as the HTTP/1.1 canned responses.
    let mut text = BytesMut::new();
    let reply = Reply {
        close: false,
        head_request: false,
        ..Reply::default()
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tandem_http::canned::service_unavailable(retry_after, &reply, &mut text);
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        tandem_http::canned::too_many_requests(retry_after.unwrap_or(1), &reply, &mut text);
    } else {
        tandem_http::canned::error(status, &reply, &mut text);
    }
    let body_start = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(text.len(), |p| p + 4);
    let body = text.split_off(body_start).freeze();
    let mut response = Response::new(());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    let send_body = !head_request && !body.is_empty();
    let n = body.len() as u64;
    match respond.send_response(response, !send_body) {
        Ok(mut s) if send_body => {
            let _ = s.send_data(body, true);
            n
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(fields: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder()
            .method("POST")
            .uri("https://www.example.org/a?b");
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn connection_fields_and_a_foreign_host_are_refused() {
        assert!(check_fields(&parts(&[("x-a", "1")])).is_ok());
        assert!(check_fields(&parts(&[("te", "trailers")])).is_ok());
        assert!(check_fields(&parts(&[("host", "WWW.example.org:443")])).is_ok());
        for bad in [
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("keep-alive", "1"),
            ("proxy-connection", "x"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("host", "evil.example"),
            ("host", "www.example.org:8443"),
            ("content-length", "5x"),
        ] {
            assert!(check_fields(&parts(&[bad])).is_err(), "{bad:?}");
        }
        assert!(check_fields(&parts(&[("content-length", "5"), ("content-length", "6")])).is_err());
    }

    #[test]
    fn the_http11_head_joins_cookies_and_regenerates_framing() {
        let p = parts(&[
            ("cookie", "a=1"),
            ("x-b", "2"),
            ("cookie", "c=3"),
            ("content-length", "9"),
        ]);
        let mut out = BytesMut::new();
        build_head(&p, Framing::Length(4), &mut out);
        assert_eq!(
            &out[..],
            b"POST /a?b HTTP/1.1\r\nhost: www.example.org\r\ncookie: a=1; c=3\r\nx-b: 2\r\ncontent-length: 4\r\n\r\n"
        );
        let mut out = BytesMut::new();
        build_head(&p, Framing::Chunked, &mut out);
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        // A value no HTTP/1.1 field may hold never gets through the strict reader.
        let mut bad = BytesMut::from(&b"GET / HTTP/1.1\r\nhost: a\r\nx: a\x00b\r\n\r\n"[..]);
        assert!(
            RequestReader::new(Default::default())
                .read(&mut bad)
                .is_err()
        );
    }
}
