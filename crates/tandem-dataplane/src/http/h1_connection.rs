//! One HTTP/1.1 client connection: its requests one after another, each relayed to a server
//! and its response back, in order (keep-alive and pipelining: a pipelined request waits in
//! the buffer until the previous response is complete).
//!
//! One task per connection and no task per request. The connection owns three buffers,
//! reused for every request: what the client sent (`buf`), the head going to the server
//! (`to_server`) and what goes to the client (`out`). Request heads are split off `buf`
//! without a copy; small bodies travel in the same write as their head; a response body is
//! written from the server connection's buffer (a vectored write with the head), never
//! copied on the way.
//!
//! Timeouts:
//! - `header_timeout`: from the connection's start for the first request, from the first
//!   byte of the head for the next ones; a head still incomplete then gets 408 and the
//!   connection closes (slow-loris). A connection that sent nothing is closed silently.
//! - `idle_timeout`: between keep-alive requests (closed silently), and as the inactivity
//!   limit while reading a request body or writing a response to the client.
//! - the pool's `response_timeout`: from the request sent to the response head (504), and
//!   as the inactivity limit while reading a response body (then the client connection is
//!   cut: its response has started).

use super::access_log::{self, Record};
use super::exchange::{self, OpenError, UpstreamError};
use super::upstream_pool::{LocalConnections, ServerConn};
use super::{ConnContext, Timer, route};
use crate::limits::Admission;
use crate::pool::{PoolRuntime, ServerLease};
use bytes::{Buf, BytesMut};
use http::StatusCode;
use std::io::IoSlice;
use std::time::Duration;
use tandem_http::canned::{self, Reply};
use tandem_http::{
    BodyDecoder, BodyOut, LAST_CHUNK, RequestHead, RequestReader, RequestRewrite, ResponseReader,
    ResponseRewrite, Side, encode_chunk, write_request, write_response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Initial size of the client read buffer.
const READ_BUFFER: usize = 8 * 1024;
/// How long a connection being closed after an error is drained, so that the client reads
/// the answer rather than a reset (a "lingering close").
const LINGER: Duration = Duration::from_secs(1);
/// Bytes drained at most while lingering.
const LINGER_BYTES: usize = 256 * 1024;
/// How long a client may pause between requests before the server connections it holds
/// go back to the shared pool.
const RELEASE_IDLE_SERVERS: Duration = Duration::from_secs(1);
/// The read of a client whose buffers were released while it paused: a typical request head.
const IDLE_READ: usize = 1024;
/// Read size for response bodies that span more than one read.
const LARGE_READ: usize = 64 * 1024;
/// A response body smaller than this is copied behind its head (one buffer, one write);
/// larger ones are written from the server's buffer with a vectored write.
const COPY_BODY_BELOW: usize = 4096;

/// A client connection handed back to be parked while it idles between requests.
pub(crate) struct Parked<IO> {
    pub io: IO,
    /// When its keep-alive wait ends.
    pub idle_until: Instant,
}

/// Serves one HTTP/1.1 client connection to its end; or, with `park`, until it has idled a
/// moment between requests, when it comes back to be parked outside this (large) task.
pub(crate) async fn serve<IO>(
    cc: ConnContext,
    io: IO,
    admission: Admission,
    park: bool,
) -> Option<Parked<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut c = H1 {
        reader: RequestReader::new(cc.request_limits.clone()),
        cc: &cc,
        io,
        buf: BytesMut::with_capacity(READ_BUFFER),
        out: BytesMut::new(),
        to_server: BytesMut::new(),
        timer: Timer::new(),
        local: LocalConnections::default(),
        park,
    };
    let parked = match admission {
        Admission::Allowed => c.run().await,
        refused => {
            c.refuse_connection(refused).await;
            None
        }
    };
    c.local.release(cc.pools());
    parked.map(|idle_until| Parked {
        io: c.io,
        idle_until,
    })
}

struct H1<'a, IO> {
    cc: &'a ConnContext,
    io: IO,
    buf: BytesMut,
    out: BytesMut,
    to_server: BytesMut,
    reader: RequestReader,
    timer: Timer,
    local: LocalConnections,
    /// Whether an idle connection is handed back to be parked (see `serve`).
    park: bool,
}

/// How reading a request head ended.
enum HeadRead {
    Head(RequestHead),
    /// EOF, a read error, or the keep-alive wait over: close without a word.
    Closed,
    /// Idle with nothing buffered: park until the keep-alive wait ends at this instant.
    Park(Instant),
    /// Part of a head came, not all of it within `header_timeout`: 408.
    Timeout,
    Refused(tandem_http::Error),
}

/// After an exchange: go on with the next request, or close.
#[derive(PartialEq, Eq)]
enum Next {
    KeepAlive,
    /// Close after a lingering drain (an answer was sent that the client must read).
    Close,
    /// Close at once (the client or the exchange failed mid-message).
    Abort,
}

/// A response the proxy makes itself.
enum Local<'r> {
    TooManyRequests,
    NoServer,
    Error(StatusCode),
    RedirectToHttps(u16, StatusCode),
    Refused(&'r tandem_http::Error),
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> H1<'_, IO> {
    /// Serves requests until the connection ends (`None`) or is to be parked (`Some`, until
    /// when it may idle).
    async fn run(&mut self) -> Option<Instant> {
        let mut first = true;
        loop {
            let head = match self.read_head(first).await {
                HeadRead::Head(h) => h,
                HeadRead::Closed => return None,
                HeadRead::Park(until) => return Some(until),
                HeadRead::Timeout => {
                    exchange::refused(self.cc, 408, "request head not complete in time");
                    self.out.clear();
                    canned::error(
                        StatusCode::REQUEST_TIMEOUT,
                        &Reply::default(),
                        &mut self.out,
                    );
                    self.write_out_and_linger().await;
                    return None;
                }
                HeadRead::Refused(e) => {
                    let status = e.status();
                    exchange::refused(self.cc, status.as_u16(), e.reason());
                    self.out.clear();
                    canned::for_error(&e, &Reply::default(), &mut self.out);
                    self.cc.ctx.counters().traffic.add_request();
                    let started = Instant::now();
                    self.write_out_and_linger().await;
                    access_log::record(
                        self.cc,
                        &Record {
                            protocol: "HTTP/1.1",
                            method: "-",
                            host: None,
                            path: "-",
                            status: status.as_u16(),
                            server: None,
                            latency: Duration::ZERO,
                            bytes_in: 0,
                            bytes_out: self.out.len() as u64,
                            started,
                            error: Some(e.reason()),
                        },
                    );
                    return None;
                }
            };
            first = false;
            match self.exchange(head).await {
                Next::KeepAlive => {}
                Next::Close => {
                    self.linger().await;
                    return None;
                }
                Next::Abort => return None,
            }
        }
    }

    /// Whether a pause would free buffer memory (see `read_head`).
    fn holds_idle_buffers(&self) -> bool {
        self.buf.is_empty()
            && self.buf.capacity() + self.out.capacity() + self.to_server.capacity() > 0
    }

    /// Reads the next request head (see the module's timeouts).
    async fn read_head(&mut self, first: bool) -> HeadRead {
        let limits = &self.cc.ctx.config.limits;
        let header_timeout = limits.header_timeout.get();
        let mut head_deadline = if first {
            Some(self.cc.accepted + header_timeout)
        } else if !self.buf.is_empty() {
            Some(Instant::now() + header_timeout)
        } else {
            None
        };
        let idle_deadline = Instant::now() + limits.idle_timeout.get();
        let mut got_bytes = !self.buf.is_empty();
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {}
                Err(e) => return HeadRead::Refused(e),
            }
            let mut deadline = head_deadline.unwrap_or(idle_deadline);
            // A client that pauses between requests gives its server connections back to
            // the shared pool after a moment (an idle client must not hold a server's
            // connection), and its buffers back to the allocator (10,000 idle keep-alive
            // clients must not hold 16 KiB each); a busy one keeps both, with no lock and no
            // allocation per request.
            let release_at = Instant::now() + RELEASE_IDLE_SERVERS;
            let releasing =
                (!self.local.is_empty() || self.holds_idle_buffers()) && release_at < deadline;
            if releasing {
                deadline = release_at;
            }
            let read = if self.buf.capacity() == 0 {
                // Released: wait for the next request with a small buffer of the task's own,
                // and allocate only once one arrives.
                let mut first = [0u8; IDLE_READ];
                let r = self.timer.within(deadline, self.io.read(&mut first)).await;
                if let Some(Ok(n)) = r {
                    self.buf.extend_from_slice(&first[..n]);
                }
                r
            } else {
                exchange::reserve(&mut self.buf);
                self.timer
                    .within(deadline, self.io.read_buf(&mut self.buf))
                    .await
            };
            match read {
                None if releasing => {
                    self.local.release(self.cc.pools());
                    if self.park && self.buf.is_empty() {
                        return HeadRead::Park(idle_deadline);
                    }
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                        self.out = BytesMut::new();
                        self.to_server = BytesMut::new();
                    }
                    continue;
                }
                None if got_bytes => return HeadRead::Timeout,
                None | Some(Ok(0)) | Some(Err(_)) => return HeadRead::Closed,
                Some(Ok(_)) => {
                    got_bytes = true;
                    if head_deadline.is_none() {
                        head_deadline = Some(Instant::now() + header_timeout);
                    }
                }
            }
        }
    }

    /// One request: relayed to a server (or answered here), its response relayed back.
    async fn exchange(&mut self, head: RequestHead) -> Next {
        let cc = self.cc;
        let ctx = &*cc.ctx;
        let started = Instant::now();
        ctx.counters().traffic.add_request();

        if !ctx.request_allowed(cc.peer.ip()) {
            return self.reply(&head, Local::TooManyRequests, started).await;
        }
        if let Some(r) = &ctx.config.redirect_to_https {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            return self
                .reply(&head, Local::RedirectToHttps(r.port, status), started)
                .await;
        }
        let Some(pool) = route::pool_for(ctx, cc.default_pool.as_ref(), &head) else {
            return self.reply(&head, Local::NoServer, started).await;
        };
        // The part of the body already here is checked before any server is involved: a
        // framing error in it reaches no server, not even as a connection.
        let mut body = BodyDecoder::new(head.body(), Side::Request, &cc.request_limits);
        let held = match self.scan_buffered_body(&mut body) {
            Ok(n) => n,
            Err(e) => {
                exchange::refused(cc, e.status().as_u16(), e.reason());
                return self.reply(&head, Local::Refused(&e), started).await;
            }
        };
        let cookie = cc.cookie.as_ref().and_then(|(name, _)| head.cookie(name));
        let local = &mut self.local;
        let opened = match exchange::open(cc, pool, cookie, |p, i, a| local.take(p, i, a)).await {
            Ok(o) => o,
            Err(OpenError::NoServer | OpenError::ConnectFailed) => {
                return self.reply(&head, Local::NoServer, started).await;
            }
        };
        self.relay(head, pool, opened, body, held, started).await
    }

    /// Relays `head` (and its body) on `opened`, and the response back.
    async fn relay(
        &mut self,
        head: RequestHead,
        pool: &PoolRuntime,
        opened: exchange::Opened,
        mut body: BodyDecoder,
        held: usize,
        started: Instant,
    ) -> Next {
        let cc = self.cc;
        let exchange::Opened {
            lease,
            mut conn,
            set_cookie,
        } = opened;
        let mut rec = Record {
            protocol: "HTTP/1.1",
            method: head.method().as_str(),
            host: None,
            path: head.path(),
            status: 0,
            server: Some(&lease),
            latency: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            started,
            error: None,
        };
        let host = head.host();
        rec.host = host.as_deref();

        // The head for the server, and as much of the body as is here already.
        self.to_server.clear();
        let missing_host = head
            .host_field()
            .is_none()
            .then(|| lease.address.to_string());
        let rewrite = RequestRewrite {
            forwarding: &cc.forwarding,
            close: false,
            pass_upgrade: true,
            extra: &[],
            host_if_missing: missing_host.as_deref(),
        };
        let ex = match write_request(&head, &rewrite, &mut self.to_server) {
            Ok(ex) => ex,
            Err(e) => {
                rec.error = Some(e.reason());
                return self
                    .finish_local(&head, Local::Error(e.status()), rec, BodyState::Unread)
                    .await;
            }
        };
        // The body already here travels with the head (and is held for a retry).
        self.to_server.extend_from_slice(&self.buf[..held]);
        self.buf.advance(held);
        let whole_request_held = body.is_done();

        // Expect: 100-continue (RFC 9110 §10.1.1): the server is reachable, so say go on;
        // a 100 from the server is then not passed on.
        let mut sent_continue = false;
        if head.expects_continue() && !body.is_done() && self.buf.is_empty() {
            if self
                .io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                return Next::Abort;
            }
            sent_continue = true;
        }

        let response_timeout = pool.config.response_timeout.get();
        let retry_allowed = whole_request_held && exchange::idempotent(head.method());
        let mut retried = false;
        let mut request_complete = true;
        let mut reader = ResponseReader::new(cc.response_limits.clone());
        let mut received = false;
        let response = 'attempt: loop {
            // Send the head (and the body held so far), then the rest of the body.
            let deadline = Instant::now() + response_timeout;
            let sent = exchange::send(&mut conn, &self.to_server, &mut self.timer, deadline).await;
            let sent = match sent {
                Ok(()) => {
                    rec.bytes_in = self.to_server.len() as u64;
                    if body.is_done() {
                        Ok(())
                    } else {
                        self.stream_body(&mut body, &mut conn, &mut rec).await
                    }
                }
                Err(_) => Err(BodyFailure::Server),
            };
            match sent {
                Ok(()) => {}
                Err(BodyFailure::Client) => return Next::Abort,
                Err(BodyFailure::Refused(e)) => {
                    // Part of the body went to the server: its connection is dropped.
                    drop(conn);
                    exchange::refused(cc, e.status().as_u16(), e.reason());
                    rec.error = Some(e.reason());
                    return self
                        .finish_local(&head, Local::Refused(&e), rec, BodyState::Incomplete)
                        .await;
                }
                Err(BodyFailure::Server) => {
                    // The server may have answered early and closed: look for its answer.
                    request_complete = body.is_done();
                }
            }

            // The response head (interim ones passed on or dropped).
            let deadline = Instant::now() + response_timeout;
            loop {
                let r = exchange::read_head(
                    &mut conn,
                    &mut reader,
                    &ex,
                    &mut self.timer,
                    deadline,
                    &mut received,
                )
                .await;
                match r {
                    Ok(r) if r.is_interim() => {
                        if r.status() == StatusCode::CONTINUE && sent_continue {
                            continue;
                        }
                        self.out.clear();
                        let rw = ResponseRewrite {
                            keep_alive: true,
                            extra: &[],
                        };
                        if let Ok(plan) = write_response(&r, &ex, &rw, &mut self.out)
                            && plan.send
                            && self.io.write_all(&self.out).await.is_err()
                        {
                            return Next::Abort;
                        }
                    }
                    Ok(r) => break 'attempt r,
                    Err(UpstreamError::Closed {
                        nothing_received: true,
                    }) if conn.reused && retry_allowed && !retried && request_complete => {
                        // A keep-alive connection the server had closed: once more, fresh.
                        retried = true;
                        match exchange::reconnect(cc, pool, &lease).await {
                            Some(c) => {
                                conn = c;
                                reader = ResponseReader::new(cc.response_limits.clone());
                                continue 'attempt;
                            }
                            None => {
                                rec.error = Some("connect failed");
                                let read = BodyState::Consumed;
                                return self.finish_local(&head, Local::NoServer, rec, read).await;
                            }
                        }
                    }
                    Err(e) => {
                        let (status, why) = match &e {
                            UpstreamError::Timeout => {
                                (StatusCode::GATEWAY_TIMEOUT, "response timeout")
                            }
                            UpstreamError::Closed { .. } => {
                                (StatusCode::BAD_GATEWAY, "server closed the connection")
                            }
                            UpstreamError::Invalid(e) => (StatusCode::BAD_GATEWAY, e.reason()),
                        };
                        if let UpstreamError::Invalid(err) = &e {
                            server_misbehaved(cc, &lease, err.reason());
                        }
                        rec.error = Some(why);
                        // A client whose request was not read to its end cannot stay.
                        let read = BodyState::after(request_complete);
                        return self
                            .finish_local(&head, Local::Error(status), rec, read)
                            .await;
                    }
                }
            }
        };
        rec.latency = started.elapsed();
        rec.status = response.status().as_u16();

        // The response head for the client.
        let cookie = if set_cookie {
            cc.set_cookie(&lease.id)
        } else {
            None
        };
        let extra_one;
        let extra: &[(&str, &[u8])] = match &cookie {
            Some(v) => {
                extra_one = [("Set-Cookie", v.as_bytes())];
                &extra_one
            }
            None => &[],
        };
        let client_keep = head.keep_alive() && request_complete;
        self.out.clear();
        let rw = ResponseRewrite {
            keep_alive: client_keep,
            extra,
        };
        let plan = match write_response(&response, &ex, &rw, &mut self.out) {
            Ok(p) => p,
            Err(e) => {
                rec.error = Some(e.reason());
                let read = BodyState::after(request_complete);
                return self
                    .finish_local(&head, Local::Error(StatusCode::BAD_GATEWAY), rec, read)
                    .await;
            }
        };
        let server_keep = response.keep_alive();
        let body_kind = response.body();
        drop(response);

        let next = match plan.body {
            BodyOut::Tunnel => {
                rec.bytes_out = self.out.len() as u64;
                let out = std::mem::take(&mut self.out);
                if self.io.write_all(&out).await.is_ok() {
                    self.out = out;
                    let (up, down) = self.tunnel(&mut conn).await;
                    rec.bytes_in += up;
                    rec.bytes_out += down;
                }
                access_log::record(cc, &rec);
                return Next::Abort;
            }
            BodyOut::None => {
                rec.bytes_out = self.out.len() as u64;
                let out = std::mem::take(&mut self.out);
                let ok = self.write_client(&out, &[]).await;
                self.out = out;
                if !ok {
                    rec.error = Some("client went away");
                    access_log::record(cc, &rec);
                    return Next::Abort;
                }
                if server_keep && conn.buf.is_empty() {
                    self.local.put(pool, conn);
                }
                Next::KeepAlive
            }
            out_mode => {
                let mut decoder = BodyDecoder::new(body_kind, Side::Response, &cc.response_limits);
                match self
                    .relay_body(&mut conn, &mut decoder, out_mode, pool, &mut rec)
                    .await
                {
                    Ok(()) => {
                        if server_keep && decoder.is_done() && conn.buf.is_empty() {
                            self.local.put(pool, conn);
                        }
                        Next::KeepAlive
                    }
                    Err(why) => {
                        rec.error = Some(why);
                        access_log::record(cc, &rec);
                        return Next::Abort;
                    }
                }
            }
        };
        access_log::record(cc, &rec);
        if plan.close || !client_keep {
            Next::Close
        } else {
            next
        }
    }

    /// Runs the part of the request body already in `buf` through `body`; returns its
    /// length (those bytes are checked and go with the head).
    fn scan_buffered_body(&mut self, body: &mut BodyDecoder) -> Result<usize, tandem_http::Error> {
        let mut consumed = 0;
        while !body.is_done() {
            let step = body.decode(&self.buf[consumed..])?;
            consumed += step.consumed;
            if step.consumed == 0 {
                break;
            }
        }
        Ok(consumed)
    }

    /// Reads the rest of the request body from the client and forwards it, as received
    /// (its framing was checked line by line).
    async fn stream_body(
        &mut self,
        body: &mut BodyDecoder,
        conn: &mut ServerConn,
        rec: &mut Record<'_>,
    ) -> Result<(), BodyFailure> {
        let idle = self.cc.ctx.config.limits.idle_timeout.get();
        while !body.is_done() {
            exchange::reserve(&mut self.buf);
            match self
                .timer
                .within(Instant::now() + idle, self.io.read_buf(&mut self.buf))
                .await
            {
                Some(Ok(n)) if n > 0 => {}
                _ => return Err(BodyFailure::Client),
            }
            let mut consumed = 0;
            while !body.is_done() {
                let step = body
                    .decode(&self.buf[consumed..])
                    .map_err(BodyFailure::Refused)?;
                consumed += step.consumed;
                if step.consumed == 0 {
                    break;
                }
            }
            if consumed > 0 {
                exchange::send(
                    conn,
                    &self.buf[..consumed],
                    &mut self.timer,
                    Instant::now() + idle,
                )
                .await
                .map_err(|_| BodyFailure::Server)?;
                rec.bytes_in += consumed as u64;
                self.buf.advance(consumed);
            }
        }
        Ok(())
    }

    /// Relays a response body as `mode` says, until its end.
    async fn relay_body(
        &mut self,
        conn: &mut ServerConn,
        decoder: &mut BodyDecoder,
        mode: BodyOut,
        pool: &PoolRuntime,
        rec: &mut Record<'_>,
    ) -> Result<(), &'static str> {
        let inactivity = pool.config.response_timeout.get();
        loop {
            // Decode what is buffered: one run of bytes to send on.
            let mut consumed = 0;
            let mut done = false;
            loop {
                let step = decoder
                    .decode(&conn.buf[consumed..])
                    .map_err(|e| server_misbehaved(self.cc, rec.server.unwrap(), e.reason()))?;
                match mode {
                    BodyOut::Dechunk => self
                        .out
                        .extend_from_slice(&conn.buf[consumed..][step.data.clone()]),
                    BodyOut::Chunk => {
                        encode_chunk(&conn.buf[consumed..][step.data.clone()], &mut self.out)
                    }
                    _ => {}
                }
                consumed += step.consumed;
                if step.done {
                    done = true;
                    break;
                }
                if step.consumed == 0 || consumed == conn.buf.len() {
                    break;
                }
            }
            let verbatim = mode == BodyOut::Verbatim;
            if verbatim && consumed < COPY_BODY_BELOW {
                self.out.extend_from_slice(&conn.buf[..consumed]);
            }
            if done && mode == BodyOut::Chunk {
                self.out.extend_from_slice(LAST_CHUNK);
            }
            let body_slice: &[u8] = if verbatim && consumed >= COPY_BODY_BELOW {
                &conn.buf[..consumed]
            } else {
                &[]
            };
            let n = self.out.len() + body_slice.len();
            if n > 0 {
                let out = std::mem::take(&mut self.out);
                let ok = self.write_client(&out, body_slice).await;
                self.out = out;
                self.out.clear();
                if !ok {
                    return Err("client went away");
                }
                rec.bytes_out += n as u64;
            }
            conn.buf.advance(consumed);
            if done {
                return Ok(());
            }
            // A body still coming in volume: read it in large pieces (fewer syscalls).
            if conn.buf.capacity() - conn.buf.len() < LARGE_READ / 2 {
                conn.buf.reserve(LARGE_READ);
            }
            match exchange::read_more(conn, &mut self.timer, Instant::now() + inactivity).await {
                Some(Ok(0)) => {
                    decoder
                        .finish()
                        .map_err(|_| "response truncated by the server")?;
                    if mode == BodyOut::Chunk {
                        self.out.extend_from_slice(LAST_CHUNK);
                        let out = std::mem::take(&mut self.out);
                        let ok = self.write_client(&out, &[]).await;
                        rec.bytes_out += out.len() as u64;
                        self.out = out;
                        if !ok {
                            return Err("client went away");
                        }
                    }
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => return Err("server connection failed mid-response"),
                None => return Err("server stalled mid-response"),
            }
        }
    }

    /// Writes `head` then `body` to the client (one vectored write when both are there),
    /// within the idle timeout. False when the client is gone.
    async fn write_client(&mut self, head: &[u8], body: &[u8]) -> bool {
        let deadline = Instant::now() + self.cc.ctx.config.limits.idle_timeout.get();
        let io = &mut self.io;
        let write = async {
            let (mut head, mut body) = (head, body);
            while !head.is_empty() || !body.is_empty() {
                let n = if head.is_empty() {
                    io.write(body).await?
                } else if body.is_empty() {
                    io.write(head).await?
                } else {
                    io.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                        .await?
                };
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                let from_head = n.min(head.len());
                head = &head[from_head..];
                body = &body[n - from_head..];
            }
            io.flush().await
        };
        matches!(self.timer.within(deadline, write).await, Some(Ok(())))
    }

    /// Copies bytes both ways after a `101 Switching Protocols`, until both sides have
    /// closed or nothing moved for `idle_timeout`. Returns (client → server, server →
    /// client) byte counts.
    async fn tunnel(&mut self, conn: &mut ServerConn) -> (u64, u64) {
        let idle = self.cc.ctx.config.limits.idle_timeout.get();
        let (mut up, mut down) = (0u64, 0u64);
        // Bytes that came behind the heads belong to the tunnel.
        if !conn.buf.is_empty() {
            if self.io.write_all(&conn.buf).await.is_err() {
                return (up, down);
            }
            down += conn.buf.len() as u64;
            conn.buf.clear();
        }
        if !self.buf.is_empty() {
            if conn.io.write_all(&self.buf).await.is_err() {
                return (up, down);
            }
            up += self.buf.len() as u64;
            self.buf.clear();
        }
        let mut from_server = vec![0u8; 16 * 1024];
        let (mut client_open, mut server_open) = (true, true);
        while client_open || server_open {
            let deadline = Instant::now() + idle;
            let (io, buf, server) = (&mut self.io, &mut self.buf, &mut conn.io);
            let step = self
                .timer
                .within(deadline, async {
                    tokio::select! {
                        r = io.read_buf(buf), if client_open => (true, r),
                        r = server.read(&mut from_server), if server_open => (false, r),
                    }
                })
                .await;
            let Some((from_client, r)) = step else { break };
            match (from_client, r) {
                (true, Ok(0)) => {
                    client_open = false;
                    let _ = conn.io.shutdown().await;
                }
                (true, Ok(n)) => {
                    if conn.io.write_all(&self.buf).await.is_err() {
                        break;
                    }
                    up += n as u64;
                    self.buf.clear();
                    exchange::reserve(&mut self.buf);
                }
                (false, Ok(0)) => {
                    server_open = false;
                    let _ = self.io.shutdown().await;
                }
                (false, Ok(n)) => {
                    if self.io.write_all(&from_server[..n]).await.is_err() {
                        break;
                    }
                    down += n as u64;
                }
                (_, Err(_)) => break,
            }
        }
        (up, down)
    }

    /// Answers `head` from here (no server involved) and counts and logs it.
    async fn reply(&mut self, head: &RequestHead, what: Local<'_>, started: Instant) -> Next {
        let host = head.host();
        let rec = Record {
            protocol: "HTTP/1.1",
            method: head.method().as_str(),
            host: host.as_deref(),
            path: head.path(),
            status: 0,
            server: None,
            latency: Duration::ZERO,
            bytes_in: 0,
            bytes_out: 0,
            started,
            error: None,
        };
        self.finish_local(head, what, rec, BodyState::Unread).await
    }

    /// Writes a response of the proxy's own for `head` and records `rec` with it. The
    /// connection stays open only when the client wants it and the request's body was read
    /// (or is here to be skipped).
    async fn finish_local(
        &mut self,
        head: &RequestHead,
        what: Local<'_>,
        mut rec: Record<'_>,
        body: BodyState,
    ) -> Next {
        let read = match body {
            BodyState::Unread => !matches!(what, Local::Refused(_)) && self.skip_body(head),
            BodyState::Consumed => true,
            BodyState::Incomplete => false,
        };
        let close = !head.keep_alive() || !read;
        let reply = Reply {
            close,
            ..Reply::for_request(head, None)
        };
        self.out.clear();
        match what {
            Local::TooManyRequests => canned::too_many_requests(1, &reply, &mut self.out),
            Local::NoServer => canned::service_unavailable(None, &reply, &mut self.out),
            Local::Error(status) => canned::error(status, &reply, &mut self.out),
            Local::Refused(e) => canned::for_error(e, &reply, &mut self.out),
            Local::RedirectToHttps(port, status) => {
                if let Err(e) = canned::redirect_to_https(head, port, status, &reply, &mut self.out)
                {
                    self.out.clear();
                    canned::for_error(&e, &reply, &mut self.out);
                }
            }
        }
        rec.status = status_of(&self.out);
        rec.latency = rec.started.elapsed();
        rec.bytes_out = self.out.len() as u64;
        let out = std::mem::take(&mut self.out);
        let ok = self.write_client(&out, &[]).await;
        self.out = out;
        access_log::record(self.cc, &rec);
        match (ok, close) {
            (false, _) => Next::Abort,
            (true, true) => Next::Close,
            (true, false) => Next::KeepAlive,
        }
    }

    /// Skips the body of a request answered here when all of it is in the buffer. False
    /// when it is not (or is malformed): the connection must then close.
    fn skip_body(&mut self, head: &RequestHead) -> bool {
        let mut body = BodyDecoder::new(head.body(), Side::Request, &self.cc.request_limits);
        let mut consumed = 0;
        while !body.is_done() {
            match body.decode(&self.buf[consumed..]) {
                Ok(step) if step.consumed > 0 || step.done => consumed += step.consumed,
                _ => return false,
            }
        }
        self.buf.advance(consumed);
        true
    }

    /// An accept-time refusal: 503 (service full) or 429 (connection rate), then close.
    async fn refuse_connection(&mut self, admission: Admission) {
        let reply = Reply::default();
        self.out.clear();
        match admission {
            Admission::ServiceFull => canned::service_unavailable(Some(1), &reply, &mut self.out),
            _ => canned::too_many_requests(1, &reply, &mut self.out),
        }
        self.cc
            .ctx
            .counters()
            .traffic
            .observe_response(status_of(&self.out), Duration::ZERO);
        self.write_out_and_linger().await;
    }

    async fn write_out_and_linger(&mut self) {
        let out = std::mem::take(&mut self.out);
        let ok = self.write_client(&out, &[]).await;
        self.out = out;
        if ok {
            self.linger().await;
        }
    }

    /// Closes our side and drains what the client still sends for a moment, so that the
    /// answer just written is read rather than lost to a reset (RFC 9112 §9.6).
    async fn linger(&mut self) {
        let _ = self
            .timer
            .within(Instant::now() + LINGER, self.io.shutdown())
            .await;
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.buf.clear();
            exchange::reserve(&mut self.buf);
            match self
                .timer
                .within(deadline, self.io.read_buf(&mut self.buf))
                .await
            {
                Some(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}

/// Where the request body stands when the proxy answers by itself.
enum BodyState {
    /// Not touched yet: skipped if it is all in the buffer, else the connection closes.
    Unread,
    /// Read to its end (forwarded or held).
    Consumed,
    /// Partly read: the connection closes after the answer.
    Incomplete,
}

impl BodyState {
    fn after(complete: bool) -> BodyState {
        if complete {
            BodyState::Consumed
        } else {
            BodyState::Incomplete
        }
    }
}

enum BodyFailure {
    /// The client went away or stalled mid-body: nothing to answer.
    Client,
    /// The body's framing was refused (400, 413): answer it, close both connections.
    Refused(tandem_http::Error),
    /// The server stopped taking the body (it may have answered early).
    Server,
}

/// Logs (once a minute per server address) a server's response refused by the codec; the
/// connection is closed by the caller.
fn server_misbehaved(cc: &ConnContext, lease: &ServerLease, reason: &'static str) -> &'static str {
    if cc
        .ctx
        .log_throttle()
        .should_log(lease.address.ip(), Instant::now())
    {
        tracing::warn!(service = %cc.ctx.name, server = %lease.id, address = %lease.address,
            reason, "invalid response from server: 502, connection closed (logged once a minute per server address)");
    }
    reason
}

/// The status code of a response the proxy wrote (`HTTP/1.1 NNN ...`).
fn status_of(out: &[u8]) -> u16 {
    out.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
