//! Shared pieces of the integration tests: real backends on 127.0.0.1, free ports, configs
//! from YAML, a dataplane in a temporary state directory.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tandem_config::SharedConfig;
use tandem_dataplane::{Dataplane, DataplaneOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// A port free right now on 127.0.0.1 (for a Tandem service), for TCP and UDP alike.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn shared(yaml: &str) -> Arc<SharedConfig> {
    let text = format!("schema: 1\nshared:\n{}", indent(yaml));
    match tandem_config::parse_shared_document(&text) {
        Ok(doc) => Arc::new(doc.shared),
        Err(e) => panic!("test config invalid:\n{text}\n{e:?}"),
    }
}

fn indent(s: &str) -> String {
    let min = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    s.lines()
        .map(|l| {
            if l.len() >= min {
                format!("  {}\n", &l[min..])
            } else {
                "\n".to_owned()
            }
        })
        .collect()
}

pub struct Running {
    pub dp: Dataplane,
    pub dir: tempfile::TempDir,
}

pub async fn start(yaml: &str) -> Running {
    start_with(yaml, |_| {}).await
}

pub async fn start_with(yaml: &str, tweak: impl FnOnce(&mut DataplaneOptions)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DataplaneOptions::new(dir.path(), "test-box");
    tweak(&mut opts);
    let dp = Dataplane::start(shared(yaml), opts)
        .await
        .expect("dataplane starts");
    Running { dp, dir }
}

/// A TCP backend: on each connection it writes its name and a newline, then echoes until the
/// client ends, then ends too.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub async fn tcp(name: &str) -> Backend {
        Self::tcp_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn tcp_at(name: &str, addr: SocketAddr) -> Backend {
        let l = TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let greeting = format!("{name}\n");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                count.fetch_add(1, SeqCst);
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    if s.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Backend {
            addr,
            name: name.to_owned(),
            accepted,
            task,
        }
    }

    /// Stops listening (new connections are refused).
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP backend for health checks: answers every request with `status` and body `ok`.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start() -> HttpBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let st = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0;
                    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    let code = st.load(SeqCst);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 7\r\nConnection: close\r\n\r\nall ok\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        HttpBackend { addr, status, task }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP backend: answers every datagram with `name:` and the datagram.
pub struct UdpBackend {
    pub addr: SocketAddr,
    pub received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UdpBackend {
    pub async fn start(name: &str) -> UdpBackend {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    return;
                };
                count.fetch_add(1, SeqCst);
                let mut reply = format!("{name}:").into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&reply, from).await;
            }
        });
        UdpBackend {
            addr,
            received,
            task,
        }
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `vip` and returns the name the server greets with (an error if the proxy
/// closes the connection first).
pub async fn ask(vip: SocketAddr) -> std::io::Result<String> {
    let s = TcpStream::connect(vip).await?;
    greeting(s).await
}

/// Like [`ask`], from a chosen source address (any 127.0.0.0/8 address works on loopback).
pub async fn ask_from(src: IpAddr, vip: SocketAddr) -> std::io::Result<String> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let s = sock.connect(vip).await?;
    greeting(s).await
}

pub async fn greeting(s: TcpStream) -> std::io::Result<String> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no greeting within 5 s"))??;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a greeting",
        ));
    }
    Ok(line.trim_end().to_owned())
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns the time it took.
pub async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond().then(|| start.elapsed())
}

pub fn health_of(dp: &Dataplane, pool: &str, server: &str) -> tandem_dataplane::Health {
    dp.stats()
        .servers
        .iter()
        .find(|s| s.pool == pool && s.id == server)
        .map(|s| s.health)
        .expect("server in stats")
}
