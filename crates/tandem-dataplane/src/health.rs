//! Health checks, per pool, run on both boxes of a pair.
//!
//! **Start state.** A server starts `unchecked`. Its first check runs at once (checks of a pool
//! are spread over the first `min(interval, 500ms)`) and its result alone decides: up after one
//! success, down after one failure; `rise` and `fall` apply from the second result on. While a
//! server is unchecked it takes new sessions only if no server of its pool is known up. So a
//! freshly started box sends nothing to a dead server once any server has answered, yet does
//! not refuse traffic for `rise × interval` after a restart either: the first good answer
//! (within one check timeout) puts a server in rotation. HAProxy starts servers up and lets
//! them fail, which sends traffic to dead servers for `fall × interval`; we do not.
//!
//! **Leaving rotation.** Checks run every `interval` (each wait shortened by up to 10 % at
//! random, never lengthened, so checks of many servers drift apart instead of lining up); a
//! check fails after `timeout`. A server that stops answering is down within
//! `fall × interval + timeout`.
//!
//! Every change is logged with its reason (`connect refused`, `status 503`, `timeout after 1s`,
//! `body lacks "ok"`), counted, and published on the state stream.

use crate::pool::ServerState;
use crate::state_stream::{StateChange, Stream};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tandem_config::{CheckKind, HealthCheck};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most of the response body searched for `body_contains`.
pub const BODY_SEARCH_LIMIT: usize = 64 * 1024;
/// Most of the response head read.
const HEAD_LIMIT: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No check result yet.
    Unchecked = 0,
    Up = 1,
    Down = 2,
}

impl Health {
    pub(crate) fn from_code(c: u8) -> Health {
        match c {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unchecked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unchecked => "unchecked",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// Rise/fall counting, a pure state machine: feed it results, it says when health changes.
#[derive(Clone, Debug)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    streak: u32,
}

impl HealthTracker {
    pub fn new(rise: u32, fall: u32) -> Self {
        HealthTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
        }
    }

    /// One check result for a server now in `current`; the new health if it changes.
    pub fn observe(&mut self, current: Health, ok: bool) -> Option<Health> {
        match (current, ok) {
            (Health::Unchecked, true) => Some(Health::Up),
            (Health::Unchecked, false) => Some(Health::Down),
            (Health::Up, true) | (Health::Down, false) => {
                self.streak = 0;
                None
            }
            (Health::Up, false) | (Health::Down, true) => {
                self.streak += 1;
                let needed = if current == Health::Up {
                    self.fall
                } else {
                    self.rise
                };
                (self.streak >= needed).then(|| {
                    self.streak = 0;
                    if ok { Health::Up } else { Health::Down }
                })
            }
        }
    }
}

/// What one checker needs.
pub(crate) struct CheckTarget {
    pub pool: Arc<str>,
    pub server: Arc<str>,
    pub address: SocketAddr,
    pub check: HealthCheck,
    /// TLS client settings for HTTP-over-TLS and TLS checks.
    pub tls: Arc<rustls::ClientConfig>,
    pub state: Arc<ServerState>,
    pub stream: Arc<Stream>,
    pub first_delay: Duration,
}

/// The delay before the first check of the `index`-th of `count` servers of a pool.
pub(crate) fn first_delay(check: &HealthCheck, index: usize, count: usize) -> Duration {
    let window = check.interval.get().min(Duration::from_millis(500));
    window.mul_f64(index as f64 / count.max(1) as f64)
}

pub(crate) fn spawn(target: CheckTarget) -> JoinHandle<()> {
    tokio::spawn(run(target))
}

async fn run(t: CheckTarget) {
    let mut tracker = HealthTracker::new(t.check.rise, t.check.fall);
    tokio::time::sleep(t.first_delay).await;
    let address = SocketAddr::new(t.address.ip(), t.check.port.unwrap_or(t.address.port()));
    loop {
        let started = Instant::now();
        let timeout = t.check.timeout.get();
        let result = match tokio::time::timeout(timeout, probe(&t, address)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timeout after {}", humanize(timeout))),
        };
        if let Err(reason) = &result {
            t.state.counters.checks_failed.fetch_add(1, Relaxed);
            tracing::debug!(pool = %t.pool, server = %t.server, %reason, "health check failed");
        }
        let current = t.state.health();
        if let Some(new) = tracker.observe(current, result.is_ok()) {
            t.state.set_health(new);
            t.state.counters.health_transitions.fetch_add(1, Relaxed);
            t.stream.publish(StateChange::ServerHealth {
                pool: t.pool.clone(),
                server: t.server.clone(),
                health: new,
            });
            match &result {
                Ok(()) => tracing::info!(pool = %t.pool, server = %t.server, %address,
                    from = current.as_str(), "server is up"),
                Err(reason) => tracing::warn!(pool = %t.pool, server = %t.server, %address,
                    from = current.as_str(), %reason, "server is down"),
            }
        }
        let interval = t.check.interval.get();
        let jitter = 1.0 - 0.1 * (crate::balance::power_of_two::random() % 1000) as f64 / 1000.0;
        tokio::time::sleep_until(started + interval.mul_f64(jitter)).await;
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

async fn probe(t: &CheckTarget, address: SocketAddr) -> Result<(), String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| connect_error(&e))?;
    let _ = tcp.set_nodelay(true);
    match t.check.kind() {
        Some(CheckKind::Tcp) | None => Ok(()),
        Some(CheckKind::Tls(tls)) => {
            let name = server_name(tls.sni.as_deref(), address)?;
            let mut s = tls_connect(t, name, tcp).await?;
            let _ = s.shutdown().await;
            Ok(())
        }
        Some(CheckKind::Http(http)) => {
            let host = http.host.clone().unwrap_or_else(|| address.to_string());
            let request = format!(
                "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tandem-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                http.method, http.path
            );
            let head_only = http.method == "HEAD";
            if http.tls {
                let name = server_name(http.host.as_deref(), address)?;
                let s = tls_connect(t, name, tcp).await?;
                http_exchange(
                    s,
                    &request,
                    http.expect_status,
                    http.body_contains.as_deref(),
                    head_only,
                )
                .await
            } else {
                http_exchange(
                    tcp,
                    &request,
                    http.expect_status,
                    http.body_contains.as_deref(),
                    head_only,
                )
                .await
            }
        }
    }
}

fn connect_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect refused".to_owned(),
        io::ErrorKind::TimedOut => "connect timed out".to_owned(),
        _ => format!("connect failed: {e}"),
    }
}

fn server_name(
    name: Option<&str>,
    address: SocketAddr,
) -> Result<rustls::pki_types::ServerName<'static>, String> {
    match name {
        Some(n) => rustls::pki_types::ServerName::try_from(n.to_owned())
            .map_err(|_| format!("`{n}` is not a valid TLS server name")),
        None => Ok(rustls::pki_types::ServerName::IpAddress(
            address.ip().into(),
        )),
    }
}

async fn tls_connect(
    t: &CheckTarget,
    name: rustls::pki_types::ServerName<'static>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    tokio_rustls::TlsConnector::from(t.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}

/// Sends `request`, reads the response (head, then up to 64 KiB of body when a substring is
/// wanted) and judges it.
pub(crate) async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
    expect: [u16; 2],
    body_contains: Option<&str>,
    head_only: bool,
) -> Result<(), String> {
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let (status, head_len, framing) = loop {
        let n = read_some(&mut s, &mut buf, HEAD_LIMIT).await?;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                break (status, len, Framing::of(resp.headers));
            }
            Ok(httparse::Status::Partial) if n == 0 => {
                return Err("connection closed before a complete response head".to_owned());
            }
            Ok(httparse::Status::Partial) if buf.len() >= HEAD_LIMIT => {
                return Err("response head larger than 16 KiB".to_owned());
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("malformed response ({e})")),
        }
    };
    if !(expect[0]..=expect[1]).contains(&status) {
        return Err(format!("status {status}"));
    }
    let Some(needle) = body_contains else {
        return Ok(());
    };
    if head_only {
        return Err(format!("body lacks \"{needle}\" (HEAD has no body)"));
    }
    let mut body = buf.split_off(head_len);
    let want = match framing {
        Framing::Length(n) => n.min(BODY_SEARCH_LIMIT as u64) as usize,
        _ => BODY_SEARCH_LIMIT,
    };
    while body.len() < want {
        if read_some(&mut s, &mut body, want).await? == 0 {
            break;
        }
    }
    let body = match framing {
        Framing::Chunked => dechunk(&body),
        _ => body,
    };
    let body = &body[..body.len().min(BODY_SEARCH_LIMIT)];
    if contains(body, needle.as_bytes()) {
        Ok(())
    } else {
        Err(format!("body lacks \"{needle}\""))
    }
}

async fn read_some<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, String> {
    let room = limit.saturating_sub(buf.len()).clamp(1, 16 * 1024);
    let start = buf.len();
    buf.resize(start + room, 0);
    let r = s.read(&mut buf[start..]).await;
    let n = *r.as_ref().unwrap_or(&0);
    buf.truncate(start + n);
    r.map_err(|e| format!("read failed: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(headers: &[httparse::Header<'_>]) -> Framing {
        let mut framing = Framing::UntilClose;
        for h in headers {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if h.value.to_ascii_lowercase().ends_with(b"chunked") {
                    return Framing::Chunked;
                }
            } else if h.name.eq_ignore_ascii_case("content-length")
                && let Some(n) = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
            {
                framing = Framing::Length(n);
            }
        }
        framing
    }
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        raw = &raw[eol + 2..];
        if size == 0 {
            break;
        }
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        if take < size || raw.len() < size + 2 {
            break;
        }
        raw = &raw[size + 2..];
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_rise_and_fall() {
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.observe(Health::Unchecked, true), Some(Health::Up));
        assert_eq!(t.observe(Health::Up, false), None);
        assert_eq!(t.observe(Health::Up, false), None);
        assert_eq!(t.observe(Health::Up, true), None); // streak broken
        assert_eq!(t.observe(Health::Up, false), None);
        assert_eq!(t.observe(Health::Up, false), None);
        assert_eq!(t.observe(Health::Up, false), Some(Health::Down));
        assert_eq!(t.observe(Health::Down, true), None);
        assert_eq!(t.observe(Health::Down, true), Some(Health::Up));
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.observe(Health::Unchecked, false), Some(Health::Down));
    }

    async fn judge(
        response: &'static [u8],
        expect: [u16; 2],
        body: Option<&str>,
    ) -> Result<(), String> {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let _ = server.read(&mut req).await;
            server.write_all(response).await.unwrap();
        });
        let r = http_exchange(client, "GET / HTTP/1.1\r\n\r\n", expect, body, false).await;
        server.await.unwrap();
        r
    }

    #[tokio::test]
    async fn http_judgement_gives_reasons() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nall ok\n";
        assert_eq!(judge(ok, [200, 399], Some("ok")).await, Ok(()));
        assert_eq!(
            judge(
                b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n",
                [200, 399],
                None
            )
            .await,
            Err("status 503".into())
        );
        assert_eq!(
            judge(ok, [200, 399], Some("fine")).await,
            Err("body lacks \"fine\"".into())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nall\r\n4\r\n ok!\r\n0\r\n\r\n";
        assert_eq!(judge(chunked, [200, 200], Some("all ok!")).await, Ok(()));
        assert!(
            judge(b"garbage\r\n\r\n", [200, 399], None)
                .await
                .unwrap_err()
                .starts_with("malformed")
        );
    }

    #[test]
    fn first_checks_are_spread() {
        let check: HealthCheck = HealthCheck {
            interval: tandem_config::Duration::from_secs(2),
            timeout: tandem_config::Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            tcp: Some(Default::default()),
            http: None,
            tls: None,
        };
        let delays: Vec<_> = (0..100).map(|i| first_delay(&check, i, 100)).collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[50], Duration::from_millis(250));
        assert!(
            delays
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(4))
        );
    }
}
