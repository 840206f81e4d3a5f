//! The HTTP engine over real sockets on loopback: servers written here (an HTTP/1.1 server
//! that names itself and records what it received, and a raw TCP "server" that records
//! bytes and sends whatever response it is given), clients written here (raw HTTP/1.1 over
//! TCP, the `h2` crate, and a raw HTTP/2 frame writer for requests `h2` refuses to send).

mod common;

use bytes::Bytes;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(10);

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 server.

/// What the test server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// An HTTP/1.1 keep-alive server. Paths:
/// `/slow/MS`, `/bytes/N`, `/stream/N/MS` (N KiB chunked, one per MS), `/ws` (101 then
/// echo), `/close` (Connection: close), anything else: body `NAME\n`. Every answer has
/// `X-Server: NAME`.
struct Web {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Web {
    async fn start(name: &str) -> Web {
        Self::start_on(name, TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn start_on(name: &str, l: TcpListener) -> Web {
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s, n) = (connections.clone(), seen.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                c.fetch_add(1, SeqCst);
                let (s, n) = (s.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = serve_web(stream, &n, &s).await;
                });
            }
        });
        Web {
            addr,
            connections,
            seen,
            task,
        }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_web<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    name: &str,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut s, &mut buf).await? else {
            return Ok(());
        };
        let path = head
            .split(' ')
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        seen.lock().unwrap().push(Seen {
            head: head.clone(),
            body: body.clone(),
        });
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let num = |i: usize| {
            parts
                .get(i)
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let plain = |body: &[u8], extra: &str| {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nX-Server: {name}\r\nContent-Length: {}\r\n{extra}\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        match parts.first().copied() {
            Some("slow") => {
                tokio::time::sleep(Duration::from_millis(num(1))).await;
                s.write_all(&plain(format!("{name}\n").as_bytes(), ""))
                    .await?;
            }
            Some("bytes") => {
                s.write_all(&plain(&vec![b'x'; num(1) as usize], ""))
                    .await?
            }
            Some("echo") => s.write_all(&plain(&body, "")).await?,
            Some("close") => {
                s.write_all(&plain(
                    format!("{name}\n").as_bytes(),
                    "Connection: close\r\n",
                ))
                .await?;
                return Ok(());
            }
            Some("stream") => {
                s.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nX-Server: {name}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
                for _ in 0..num(1) {
                    s.write_all(b"400\r\n").await?;
                    s.write_all(&[b's'; 1024]).await?;
                    s.write_all(b"\r\n").await?;
                    tokio::time::sleep(Duration::from_millis(num(2))).await;
                }
                s.write_all(b"0\r\n\r\n").await?;
            }
            Some("ws") => {
                s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                )
                .await?;
                let mut b = [0u8; 1024];
                loop {
                    let n = s.read(&mut b).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    s.write_all(&b[..n]).await?;
                }
            }
            _ => {
                s.write_all(&plain(format!("{name}\n").as_bytes(), ""))
                    .await?
            }
        }
    }
}

/// Reads one request (head, and a Content-Length or chunked body) from `s`.
async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if !fill(s, buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if !fill(s, buf).await? {
                    return Ok(None);
                }
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&buf[..line_end])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap_or(0);
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if !fill(s, buf).await? {
                    return Ok(None);
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while buf.len() < n {
            if !fill(s, buf).await? {
                return Ok(None);
            }
        }
        body = buf.drain(..n).collect();
    }
    Ok(Some((head, body)))
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

// ---------------------------------------------------------------------------------------
// A raw TCP "server": records every byte, answers each connection with the next canned
// response (the last one repeats), then keeps the connection open.

struct Raw {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Raw {
    async fn start(responses: Vec<&'static [u8]>) -> Raw {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let i = c.fetch_add(1, SeqCst);
                let response = responses[i.min(responses.len() - 1)];
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => r.lock().unwrap().extend_from_slice(&buf[..n]),
                        }
                        let got = r.lock().unwrap().clone();
                        if !answered && got.windows(4).any(|w| w == b"\r\n\r\n") {
                            answered = true;
                            let _ = s.write_all(response).await;
                        }
                    }
                });
            }
        });
        Raw {
            addr,
            received,
            connections,
            task,
        }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 client side.

/// A parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive client connection.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn connect_from(src: IpAddr, addr: SocketAddr) -> Client {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(src, 0)).unwrap();
        Client {
            s: sock.connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.s.write_all(raw).await.unwrap();
    }

    /// Reads one response (None: the connection closed first).
    async fn read(&mut self) -> Option<Resp> {
        tokio::time::timeout(T, self.read_inner())
            .await
            .expect("response within the deadline")
    }

    async fn read_inner(&mut self) -> Option<Resp> {
        loop {
            let end = loop {
                if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                if !fill(&mut self.s, &mut self.buf).await.ok()? {
                    return None;
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end);
            let status: u16 = head.get(9..12)?.parse().ok()?;
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let lower = head.to_ascii_lowercase();
            let mut body = Vec::new();
            if lower.contains("transfer-encoding: chunked") {
                loop {
                    let line_end = loop {
                        if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break p;
                        }
                        if !fill(&mut self.s, &mut self.buf).await.ok()? {
                            return None;
                        }
                    };
                    let size = usize::from_str_radix(
                        String::from_utf8_lossy(&self.buf[..line_end]).trim(),
                        16,
                    )
                    .ok()?;
                    self.buf.drain(..line_end + 2);
                    while self.buf.len() < size + 2 {
                        if !fill(&mut self.s, &mut self.buf).await.ok()? {
                            return None;
                        }
                    }
                    body.extend_from_slice(&self.buf[..size]);
                    self.buf.drain(..size + 2);
                    if size == 0 {
                        break;
                    }
                }
            } else if let Some(n) = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                && status != 304
                && status != 204
            {
                while self.buf.len() < n {
                    if !fill(&mut self.s, &mut self.buf).await.ok()? {
                        return None;
                    }
                }
                body = self.buf.drain(..n).collect();
            }
            return Some(Resp { status, head, body });
        }
    }

    /// Whether the proxy closed the connection (EOF within the deadline).
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(T, self.s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn get(&mut self, path: &str, host: &str, extra: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes())
            .await;
        self.read().await.expect("a response")
    }
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    Client::connect(addr).await.get(path, "test", "").await
}

// ---------------------------------------------------------------------------------------
// Configs.

fn http_service(port: u16, extra: &str) -> String {
    format!(
        "services:\n  - name: web\n    listen: \"127.0.0.1:{port}\"\n    protocol: http\n    pool: p\n{extra}"
    )
}

fn pool(name: &str, servers: &[(&str, SocketAddr)], extra: &str) -> String {
    let mut s = format!("  - name: {name}\n{extra}    servers:\n");
    for (id, a) in servers {
        s.push_str(&format!("      - {{ id: {id}, address: \"{a}\" }}\n"));
    }
    s
}

fn one_pool(
    port: u16,
    service_extra: &str,
    servers: &[(&str, SocketAddr)],
    pool_extra: &str,
) -> String {
    format!(
        "{}pools:\n{}",
        http_service(port, service_extra),
        pool("p", servers, pool_extra)
    )
}

fn stats_service(r: &Running) -> tandem_dataplane::stats::ServiceStats {
    r.dp.stats().services.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelining_keep_order_on_one_server_connection() {
    let web = Web::start("a").await;
    let port = free_port();
    let r = start(&one_pool(port, "", &[("a", web.addr)], "")).await;
    let mut c = Client::connect(vip(port)).await;
    for i in 0..3 {
        let resp = c.get(&format!("/echo-{i}"), "test", "").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-server").as_deref(), Some("a"));
    }
    // Three requests in one write: three responses, in order.
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none\
          POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthree",
    )
    .await;
    for want in ["one", "two", "three"] {
        let resp = c.read().await.unwrap();
        assert_eq!(resp.text(), want);
    }
    // One server connection carried all six requests.
    assert_eq!(web.connections.load(SeqCst), 1);
    assert_eq!(web.requests().len(), 6);
    let s = stats_service(&r);
    assert_eq!(s.traffic.requests, 6);
    assert_eq!(s.traffic.responses[1], 6);
    let srv = &r.dp.stats().servers[0];
    assert_eq!(srv.traffic.requests, 6);
    assert!(srv.traffic.bytes_in > 0 && srv.traffic.bytes_out > 0);
    assert_eq!(srv.traffic.latency.count, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_are_shared_between_clients_and_never_reused_half_read() {
    let web = Web::start("a").await;
    let port = free_port();
    let _r = start(&one_pool(port, "", &[("a", web.addr)], "")).await;
    // A client that pauses gives its server connection back; the next client takes it.
    let mut first = Client::connect(vip(port)).await;
    assert_eq!(first.get("/", "h", "").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(vip(port), "/").await.status, 200);
    assert_eq!(web.connections.load(SeqCst), 1);
    // A response that says `Connection: close`: that server connection is not reused.
    assert_eq!(get(vip(port), "/close").await.status, 200);
    assert_eq!(get(vip(port), "/").await.status, 200);
    assert_eq!(web.connections.load(SeqCst), 2);
    // A client gone mid-download: the server connection, its body unread, is dropped.
    let mut quitter = Client::connect(vip(port)).await;
    quitter
        .send(b"GET /bytes/50000000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let mut some = [0u8; 1024];
    quitter.s.read_exact(&mut some).await.unwrap();
    drop(quitter);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = get(vip(port), "/").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "a\n"));
    assert_eq!(web.connections.load(SeqCst), 3);
}

/// A keep-alive client that pauses is parked outside its connection task (docs/dataplane.md):
/// its next request on the same connection is served as before, and the keep-alive wait
/// still ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_client_is_parked_and_served_again_then_timed_out() {
    let web = Web::start("a").await;
    let port = free_port();
    let r = start(&one_pool(
        port,
        "    limits: { idle_timeout: 2500ms }\n",
        &[("a", web.addr)],
        "",
    ))
    .await;
    let mut c = Client::connect(vip(port)).await;
    assert_eq!(c.get("/one", "h", "").await.status, 200);
    // Past the one-second pause that parks it, twice over.
    for path in ["/two", "/three"] {
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let resp = c.get(path, "h", "").await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "a\n"));
    }
    assert_eq!(web.requests().len(), 3);
    assert_eq!(stats_service(&r).traffic.requests, 3);
    // Parked, it is closed when the keep-alive wait is over (2.5 s), not before.
    let idle_from = std::time::Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), c.closed())
            .await
            .expect("the parked connection was never closed")
    );
    let idled = idle_from.elapsed();
    assert!(
        idled >= Duration::from_millis(2000),
        "closed after {idled:?}, before its keep-alive wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_path_and_header_in_order_then_the_default_pool() {
    let (api, shop, gold, def) = (
        Web::start("api").await,
        Web::start("shop").await,
        Web::start("gold").await,
        Web::start("default").await,
    );
    let port = free_port();
    let routes = "    routes:\n      - { header: { name: X-Tier, value: gold }, pool: gold }\n      - { host: api.example.org, pool: api }\n      - { host: \"*.shop.example\", path_prefix: /cart/, pool: shop }\n";
    let yaml = format!(
        "{}pools:\n{}{}{}{}",
        http_service(port, routes),
        pool("p", &[("d", def.addr)], ""),
        pool("api", &[("a", api.addr)], ""),
        pool("shop", &[("s", shop.addr)], ""),
        pool("gold", &[("g", gold.addr)], ""),
    );
    let _r = start(&yaml).await;
    let mut c = Client::connect(vip(port)).await;
    for (host, path, extra, want) in [
        ("API.example.org:80", "/x", "", "api"),
        ("www.shop.example", "/cart/1", "", "shop"),
        ("www.shop.example", "/home", "", "default"),
        ("a.b.shop.example", "/cart/1", "", "default"),
        ("api.example.org", "/", "X-Tier: gold\r\n", "gold"),
        ("other.example", "/", "", "default"),
    ] {
        let resp = c.get(path, host, extra).await;
        assert_eq!(
            resp.header("x-server").as_deref(),
            Some(want),
            "{host}{path}"
        );
    }
    // Absolute-form targets route on their authority.
    c.send(b"GET http://api.example.org/v1 HTTP/1.1\r\nHost: api.example.org\r\n\r\n")
        .await;
    assert_eq!(
        c.read().await.unwrap().header("x-server").as_deref(),
        Some("api")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_https_keeps_host_and_target() {
    let port = free_port();
    let yaml = format!(
        "services:\n  - {{ name: web, listen: \"127.0.0.1:{port}\", protocol: http, redirect_to_https: {{ port: 8443, status: 308 }} }}\n"
    );
    let _r = start(&yaml).await;
    let mut c = Client::connect(vip(port)).await;
    let resp = c.get("/a/b?c=d", "Example.org:8080", "").await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location").as_deref(),
        Some("https://example.org:8443/a/b?c=d")
    );
    // Kept alive: a second request on the same connection.
    assert_eq!(c.get("/", "x.org", "").await.status, 308);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_fields_are_replaced_for_clients_and_appended_for_trusted_proxies() {
    let web = Web::start("a").await;
    let port = free_port();
    let _r = start(&one_pool(
        port,
        "    trusted_proxies: [127.0.0.2/32]\n",
        &[("a", web.addr)],
        "",
    ))
    .await;
    let spoof = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.9\r\n";
    let mut c = Client::connect_from([127, 0, 0, 1].into(), vip(port)).await;
    c.get("/", "h.example", spoof).await;
    let mut t = Client::connect_from([127, 0, 0, 2].into(), vip(port)).await;
    t.get("/", "h.example", spoof).await;
    let seen = web.requests();
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(seen[0].header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen[0].header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=h.example")
    );
    assert_eq!(
        seen[1].header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.2")
    );
    assert_eq!(
        seen[1].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert!(
        seen[1]
            .header("forwarded")
            .unwrap()
            .starts_with("for=203.0.113.9, for=127.0.0.2"),
        "{:?}",
        seen[1].header("forwarded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_violation_gets_400_and_close_and_reaches_no_server() {
    let raw = Raw::start(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]).await;
    let port = free_port();
    let r = start(&one_pool(port, "", &[("a", raw.addr)], "")).await;
    let cases: [(&str, &[u8]); 9] = [
        (
            "CL and TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "malformed CL",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "TE not ending in chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
        ),
        (
            "whitespace before colon",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n",
        ),
        ("empty header name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"),
        (
            "malformed chunk size",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n-1\r\n\r\n",
        ),
        (
            "chunk size with 0x",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let mut c = Client::connect(vip(port)).await;
        c.send(request).await;
        let resp = c
            .read()
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(resp.status, 400, "{what}: {}", resp.head);
        assert_eq!(
            resp.header("connection").as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(c.closed().await, "{what}: connection left open");
    }
    // Nothing ever reached the server: not a byte, not even a connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(raw.connections.load(SeqCst), 0);
    assert!(raw.received().is_empty());
    assert_eq!(stats_service(&r).http_malformed, cases.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_response_gets_502_and_the_next_request_is_not_desynchronised() {
    // First connection: a response with both framings (a desync attempt), plus a smuggled
    // second response behind it. Later connections: a proper response.
    let raw = Raw::start(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean",
    ])
    .await;
    let port = free_port();
    let r = start(&one_pool(port, "", &[("a", raw.addr)], "")).await;
    let mut c = Client::connect(vip(port)).await;
    let first = c.get("/", "h", "").await;
    assert_eq!(first.status, 502);
    let second = c.get("/", "h", "").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "clean");
    // The bad server connection was closed, not reused.
    assert_eq!(raw.connections.load(SeqCst), 2);
    let srv = &r.dp.stats().servers[0];
    assert_eq!(srv.traffic.responses[4], 1);
    // A truncated body after a complete head: the client connection is cut, not completed.
    let raw = Raw::start(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"]).await;
    let port = free_port();
    let _r = start(&one_pool(
        port,
        "",
        &[("a", raw.addr)],
        "    response_timeout: 300ms\n",
    ))
    .await;
    let mut c = Client::connect(vip(port)).await;
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(
        c.read().await.is_none(),
        "a truncated body must not look complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_get_408_and_oversized_requests_413_and_431() {
    let web = Web::start("a").await;
    let port = free_port();
    let limits =
        "    limits: { header_timeout: 500ms, max_header_bytes: 1KiB, max_body_bytes: 1KiB }\n";
    let r = start(&one_pool(port, limits, &[("a", web.addr)], "")).await;

    let mut slow = Client::connect(vip(port)).await;
    slow.send(b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    let started = std::time::Instant::now();
    let resp = slow.read().await.unwrap();
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(slow.closed().await);

    let mut big = Client::connect(vip(port)).await;
    let filler = "x".repeat(2000);
    big.send(format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {filler}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(big.read().await.unwrap().status, 431);

    let mut body = Client::connect(vip(port)).await;
    body.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        .await;
    assert_eq!(body.read().await.unwrap().status, 413);
    assert!(body.closed().await);
    // A chunked body going over the limit is cut as well.
    let mut chunked = Client::connect(vip(port)).await;
    chunked
        .send(
            format!(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n",
                "y".repeat(0x800)
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(chunked.read().await.unwrap().status, 413);

    let s = stats_service(&r);
    assert_eq!(s.http_header_timeouts, 1);
    assert_eq!(s.http_too_large, 3);
    assert!(web.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_request_rate_gets_429_with_retry_after() {
    let web = Web::start("a").await;
    let port = free_port();
    let r = start(&one_pool(
        port,
        "    limits: { per_source: { requests_per_second: 3 } }\n",
        &[("a", web.addr)],
        "",
    ))
    .await;
    let mut c = Client::connect(vip(port)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = c.get("/", "a", "").await;
        if resp.status == 429 {
            assert_eq!(resp.header("retry-after").as_deref(), Some("1"));
        }
        statuses.push(resp.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(stats_service(&r).refused_request_rate, 3);
    // Another source has its own budget.
    let mut other = Client::connect_from([127, 0, 0, 3].into(), vip(port)).await;
    assert_eq!(other.get("/", "a", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_up_and_a_full_service_get_503() {
    // Nothing listens on the server's address: every connect fails.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let port = free_port();
    let r = start(&one_pool(port, "", &[("dead", dead)], "")).await;
    let resp = get(vip(port), "/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.text(), "no server is available\n");
    assert_eq!(r.dp.stats().servers[0].connect_failures, 1);

    // A disabled server: no server may take the request.
    let web = Web::start("a").await;
    let port = free_port();
    let yaml = format!(
        "{}pools:\n  - name: p\n    servers:\n      - {{ id: a, address: \"{}\", state: disabled }}\n",
        http_service(port, ""),
        web.addr
    );
    let r = start(&yaml).await;
    assert_eq!(get(vip(port), "/").await.status, 503);
    assert_eq!(stats_service(&r).no_server, 1);

    // A full service: the second connection is refused with 503 at accept.
    let port = free_port();
    let _r = start(&one_pool(
        port,
        "    limits: { max_connections: 1 }\n",
        &[("a", web.addr)],
        "",
    ))
    .await;
    let mut first = Client::connect(vip(port)).await;
    assert_eq!(first.get("/", "a", "").await.status, 200);
    let mut second = Client::connect(vip(port)).await;
    second.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let resp = second.read().await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(second.closed().await);
    assert_eq!(first.get("/", "a", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_gets_504_after_the_response_timeout() {
    let web = Web::start("a").await;
    let port = free_port();
    let r = start(&one_pool(
        port,
        "",
        &[("a", web.addr)],
        "    response_timeout: 300ms\n",
    ))
    .await;
    let started = std::time::Instant::now();
    let mut c = Client::connect(vip(port)).await;
    let resp = c.get("/slow/3000", "a", "").await;
    assert_eq!(resp.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The client connection is still usable.
    assert_eq!(c.get("/", "a", "").await.status, 200);
    assert_eq!(stats_service(&r).traffic.responses[4], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_and_the_body_forwarded() {
    let web = Web::start("a").await;
    let port = free_port();
    let _r = start(&one_pool(port, "", &[("a", web.addr)], "")).await;
    let mut c = Client::connect(vip(port)).await;
    c.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .await;
    let mut b = [0u8; 25];
    tokio::time::timeout(T, c.s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"body").await;
    let resp = c.read().await.unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "body"));
}

fn cookie_yaml(port: u16, a: SocketAddr, b: SocketAddr, sa: &str, sb: &str) -> String {
    format!(
        "{}pools:\n  - name: p\n    servers:\n      - {{ id: a, address: \"{a}\", state: {sa} }}\n      - {{ id: b, address: \"{b}\", state: {sb} }}\n",
        http_service(
            port,
            "    persistence: { cookie: { name: SRV, timeout: 10m } }\n"
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_persistence_keeps_clients_follows_drain_and_ignores_disabled_servers() {
    let (a, b) = (Web::start("a").await, Web::start("b").await);
    let port = free_port();
    let r = start(&cookie_yaml(port, a.addr, b.addr, "enabled", "enabled")).await;
    let first = get(vip(port), "/").await;
    let server = first.header("x-server").unwrap();
    let set = first.header("set-cookie").unwrap();
    assert_eq!(
        set,
        format!("SRV={server}; Max-Age=600; Path=/; HttpOnly; SameSite=Lax")
    );
    // Round robin would alternate; the cookie keeps the client on its server.
    for _ in 0..4 {
        let resp = Client::connect(vip(port))
            .await
            .get("/", "h", &format!("Cookie: x=1; SRV={server}\r\n"))
            .await;
        assert_eq!(resp.header("x-server").as_deref(), Some(server.as_str()));
        assert!(resp.header("set-cookie").is_some(), "refreshed");
    }

    // b drains: its pinned clients stay (cookie not refreshed), new clients go to a.
    r.dp.apply(shared(&cookie_yaml(
        port, a.addr, b.addr, "enabled", "drain",
    )))
    .await
    .unwrap();
    let pinned = get_with(vip(port), "Cookie: SRV=b\r\n").await;
    assert_eq!(pinned.header("x-server").as_deref(), Some("b"));
    assert_eq!(pinned.header("set-cookie"), None);
    for _ in 0..3 {
        let fresh = get(vip(port), "/").await;
        assert_eq!(fresh.header("x-server").as_deref(), Some("a"));
        assert!(fresh.header("set-cookie").unwrap().starts_with("SRV=a;"));
    }

    // b disabled: its cookie is ignored and the client re-pinned.
    r.dp.apply(shared(&cookie_yaml(
        port, a.addr, b.addr, "enabled", "disabled",
    )))
    .await
    .unwrap();
    let moved = get_with(vip(port), "Cookie: SRV=b\r\n").await;
    assert_eq!(moved.header("x-server").as_deref(), Some("a"));
    assert!(moved.header("set-cookie").unwrap().starts_with("SRV=a;"));
}

async fn get_with(addr: SocketAddr, extra: &str) -> Resp {
    Client::connect(addr).await.get("/", "h", extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_persistence_keeps_each_client_on_its_server() {
    let (a, b) = (Web::start("a").await, Web::start("b").await);
    let port = free_port();
    let _r = start(&one_pool(
        port,
        "    persistence: { source: { timeout: 10m } }\n",
        &[("a", a.addr), ("b", b.addr)],
        "",
    ))
    .await;
    let mut picked = HashMap::new();
    for src in 1..=6u8 {
        let ip: IpAddr = [127, 0, 0, src].into();
        for _ in 0..3 {
            let mut c = Client::connect_from(ip, vip(port)).await;
            let server = c.get("/", "h", "").await.header("x-server").unwrap();
            assert_eq!(picked.entry(src).or_insert(server.clone()), &server);
        }
    }
    // Both servers took clients (round robin for new ones).
    let used: std::collections::HashSet<_> = picked.values().collect();
    assert_eq!(used.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_becomes_a_tunnel_after_101() {
    let web = Web::start("a").await;
    let port = free_port();
    let _r = start(&one_pool(port, "", &[("a", web.addr)], "")).await;
    let mut c = Client::connect(vip(port)).await;
    c.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    let resp = c.read().await.unwrap();
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade").as_deref(), Some("websocket"));
    for msg in [&b"ping"[..], b"\x81\x05hello"] {
        c.send(msg).await;
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(T, c.s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    let seen = &web.requests()[0];
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_in_flight_is_not_cut_by_a_reload() {
    let (old, new) = (Web::start("old").await, Web::start("new").await);
    let port = free_port();
    let r = start(&one_pool(port, "", &[("old", old.addr)], "")).await;
    let mut c = Client::connect(vip(port)).await;
    c.send(b"GET /stream/20/100 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let download = tokio::spawn(async move {
        let resp = c.read().await;
        (resp, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.dp.apply(shared(&one_pool(port, "", &[("new", new.addr)], "")))
        .await
        .unwrap();
    // New requests go to the new config at once...
    assert_eq!(
        get(vip(port), "/").await.header("x-server").as_deref(),
        Some("new")
    );
    // ...while the download finishes whole, on the old one.
    let (resp, mut c) = download.await.unwrap();
    let resp = resp.expect("the download completes");
    assert_eq!(resp.body.len(), 20 * 1024);
    assert_eq!(resp.header("x-server").as_deref(), Some("old"));
    // And that connection keeps its config: still the old server.
    assert_eq!(
        c.get("/", "a", "").await.header("x-server").as_deref(),
        Some("old")
    );
}

// ---------------------------------------------------------------------------------------
// TLS: HTTPS services, HTTP/2, re-encryption.

fn pem_block(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn cert(names: &[&str]) -> Cert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let c = params.self_signed(&key).unwrap();
    Cert {
        cert_pem: c.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn https_yaml(port: u16, servers: &[(&str, SocketAddr)], pool_extra: &str, certs: &str) -> String {
    let c = cert(&["www.example.org"]);
    format!(
        "services:\n  - name: web\n    listen: \"127.0.0.1:{port}\"\n    protocol: https\n    pool: p\n    tls: {{ certificates: [vip] }}\npools:\n{}certificates:\n  - name: vip\n    cert_pem: |\n{}    key_pem: |\n{}{certs}",
        pool("p", servers, pool_extra),
        pem_block(&c.cert_pem),
        pem_block(&c.key_pem)
    )
}

mod insecure {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

async fn tls_connect(
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.example.org").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_keep_alive_and_the_secure_cookie() {
    let web = Web::start("a").await;
    let port = free_port();
    let yaml = https_yaml(port, &[("a", web.addr)], "", "").replace(
        "    pool: p\n",
        "    pool: p\n    persistence: { cookie: { timeout: 1m } }\n",
    );
    let _r = start(&yaml).await;
    let mut tls = tls_connect(vip(port), &[b"http/1.1"]).await;
    let mut buf = Vec::new();
    for _ in 0..2 {
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: www.example.org\r\n\r\n")
            .await
            .unwrap();
        let head = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let h = String::from_utf8_lossy(&buf[..p]).into_owned();
                buf.drain(..p + 4 + 2); // body "a\n"
                break h;
            }
            fill(&mut tls, &mut buf).await.unwrap();
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.contains(
                "Set-Cookie: TANDEM_SERVER=a; Max-Age=60; Path=/; HttpOnly; SameSite=Lax; Secure"
            ),
            "{head}"
        );
    }
    let seen = web.requests();
    assert_eq!(
        seen[0].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(web.connections.load(SeqCst), 1);
}

async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tls = tls_connect(addr, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_get(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    body: Option<&'static [u8]>,
) -> (http::response::Parts, Vec<u8>) {
    let req = http::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(format!("https://www.example.org{path}"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(())
        .unwrap();
    let mut send = send.clone().ready().await.unwrap();
    let (resp, mut stream) = send.send_request(req, body.is_none()).unwrap();
    if let Some(b) = body {
        stream.send_data(Bytes::from_static(b), true).unwrap();
    }
    let resp = tokio::time::timeout(T, resp).await.unwrap().unwrap();
    let (parts, mut recv) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    (parts, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_become_http11_exchanges() {
    let (a, b) = (Web::start("a").await, Web::start("b").await);
    let port = free_port();
    let r = start(&https_yaml(port, &[("a", a.addr), ("b", b.addr)], "", "")).await;
    let mut send = h2_client(vip(port)).await;
    let (parts, body) = h2_get(&mut send, "/hello?x=1", None).await;
    assert_eq!(parts.status, 200);
    assert!(body == b"a\n" || body == b"b\n");
    assert!(parts.headers.get("connection").is_none());
    // Concurrent streams on one connection, bodies both ways.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut s = send.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                h2_get(&mut s, "/bytes/100000", None).await.1.len()
            } else {
                h2_get(&mut s, "/echo", Some(b"posted body")).await.1.len()
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let n = t.await.unwrap();
        assert_eq!(n, if i % 2 == 0 { 100000 } else { 11 });
    }
    let seen: Vec<Seen> = a.requests().into_iter().chain(b.requests()).collect();
    let first = seen
        .iter()
        .find(|s| s.head.starts_with("GET /hello?x=1 HTTP/1.1"))
        .unwrap();
    assert_eq!(first.header("host").as_deref(), Some("www.example.org"));
    assert_eq!(first.header("cookie").as_deref(), Some("a=1; b=2"));
    assert_eq!(first.header("x-forwarded-proto").as_deref(), Some("https"));
    let post = seen
        .iter()
        .find(|s| s.head.starts_with("POST /echo"))
        .unwrap();
    assert_eq!(post.header("content-length").as_deref(), Some("11"));
    assert_eq!(post.body, b"posted body");
    assert_eq!(stats_service(&r).traffic.responses[1], 21);
}

/// A raw HTTP/2 client: the preface, SETTINGS, and one HEADERS (+ DATA) frame written by
/// hand with literal HPACK fields, so that it can send what the `h2` crate refuses to.
async fn raw_h2_request(
    addr: SocketAddr,
    fields: &[(&str, &str)],
    data: Option<&[u8]>,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut tls = tls_connect(addr, &[b"h2"]).await;
    let mut out = Vec::new();
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS
    let mut block = Vec::new();
    for (n, v) in fields {
        // Literal header field without indexing, new name (RFC 7541 §6.2.2); lengths < 127.
        block.push(0x00);
        block.push(n.len() as u8);
        block.extend_from_slice(n.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    let end_stream = if data.is_none() { 0x1 } else { 0 };
    frame(&mut out, 0x1, 0x4 | end_stream, 1, &block); // HEADERS, END_HEADERS
    if let Some(d) = data {
        frame(&mut out, 0x0, 0x1, 1, d); // DATA, END_STREAM
    }
    tls.write_all(&out).await.unwrap();
    // Read frames until RST_STREAM/HEADERS on stream 1, GOAWAY, or EOF.
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let read = async {
        loop {
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (ty, flags) = (buf[3], buf[4]);
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                if ty == 0x4 && flags & 0x1 == 0 {
                    // Acknowledge the server's SETTINGS.
                    let mut ack = Vec::new();
                    frame(&mut ack, 0x4, 0x1, 0, &[]);
                    let _ = tls.write_all(&ack).await;
                }
                let done = (stream == 1 && (ty == 0x3 || ty == 0x1)) || ty == 0x7;
                frames.push((ty, flags, stream, payload));
                if done {
                    return;
                }
            }
            if !fill(&mut tls, &mut buf).await.unwrap_or(false) {
                return;
            }
        }
    };
    tokio::time::timeout(T, read)
        .await
        .expect("an answer on stream 1");
    frames
}

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_with_transfer_encoding_or_a_wrong_content_length_are_reset() {
    let raw = Raw::start(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]).await;
    let port = free_port();
    let _r = start(&https_yaml(port, &[("a", raw.addr)], "", "")).await;
    let base = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "www.example.org"),
        (":path", "/"),
    ];
    let rst_protocol_error = |frames: &[(u8, u8, u32, Vec<u8>)]| {
        frames
            .iter()
            .any(|(ty, _, stream, p)| *ty == 0x3 && *stream == 1 && p == &[0, 0, 0, 1])
    };

    // A proper request through the same raw client works (the client itself is sound).
    let mut ok = base.to_vec();
    ok.push(("content-length", "5"));
    let frames = raw_h2_request(vip(port), &ok, Some(b"hello")).await;
    assert!(
        frames.iter().any(|(ty, _, s, _)| *ty == 0x1 && *s == 1),
        "{frames:?}"
    );
    assert_eq!(raw.connections.load(SeqCst), 1);
    raw.received.lock().unwrap().clear();

    // transfer-encoding: a connection-specific field (RFC 9113 §8.2.2).
    let mut te = base.to_vec();
    te.push(("transfer-encoding", "chunked"));
    let frames = raw_h2_request(vip(port), &te, Some(b"5\r\nhello\r\n0\r\n\r\n")).await;
    assert!(rst_protocol_error(&frames), "{frames:?}");

    // content-length larger than the DATA sent.
    let mut short = base.to_vec();
    short.push(("content-length", "10"));
    let frames = raw_h2_request(vip(port), &short, Some(b"hello")).await;
    assert!(rst_protocol_error(&frames), "{frames:?}");

    // content-length smaller than the DATA sent.
    let mut long = base.to_vec();
    long.push(("content-length", "2"));
    let frames = raw_h2_request(vip(port), &long, Some(b"hello")).await;
    assert!(rst_protocol_error(&frames), "{frames:?}");

    // Never downgraded: the server got nothing (and no new connection).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        raw.received().is_empty(),
        "{}",
        String::from_utf8_lossy(&raw.received())
    );
    assert_eq!(raw.connections.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_re_encryption_to_servers_with_sni_and_ca_verification() {
    // A TLS server with a certificate for `backend.internal`, signed by a CA the pool names.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["backend.internal".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sn, se) = (snis.clone(), seen.clone());
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, sn, se) = (acceptor.clone(), sn.clone(), se.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                sn.lock()
                    .unwrap()
                    .push(tls.get_ref().1.server_name().map(str::to_owned));
                let _ = serve_web(tls, "tls-backend", &se).await;
            });
        }
    });
    let ca_yaml = format!(
        "  - name: internal-ca\n    cert_pem: |\n{}",
        pem_block(&ca.pem())
    );
    let port = free_port();
    let _r = start(&https_yaml(
        port,
        &[("t", backend)],
        "    tls: { ca: internal-ca, sni: backend.internal }\n",
        &ca_yaml,
    ))
    .await;
    let mut send = h2_client(vip(port)).await;
    for _ in 0..3 {
        let (parts, body) = h2_get(&mut send, "/", None).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, b"tls-backend\n");
    }
    assert_eq!(snis.lock().unwrap()[0].as_deref(), Some("backend.internal"));
    // Kept alive: one TLS connection to the server for the three requests.
    assert_eq!(snis.lock().unwrap().len(), 1);

    // A pool that expects another name refuses the certificate: no server (503).
    let port = free_port();
    let _r2 = start(&https_yaml(
        port,
        &[("t", backend)],
        "    tls: { ca: internal-ca, sni: other.internal }\n",
        &ca_yaml,
    ))
    .await;
    let mut send = h2_client(vip(port)).await;
    assert_eq!(h2_get(&mut send, "/", None).await.0.status, 503);
    server.abort();
}
