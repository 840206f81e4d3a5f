//! Connections to servers: opening them (plain TCP or TLS re-encryption), and keeping the
//! idle ones for the next request.
//!
//! Two levels, so that a busy keep-alive client never takes a lock to reach its server:
//!
//! - [`LocalConnections`]: the few server connections one client connection holds between
//!   its requests (at most [`LOCAL_IDLE`], one per server it talks to). Taking and returning
//!   one is a scan of a tiny array, no lock, no syscall.
//! - [`IdleConnections`]: per pool and server, the connections no client connection holds,
//!   shared by all of them (one mutex per server; taken when a client connection starts
//!   talking to a server and when it ends). At most [`SHARED_IDLE_PER_SERVER`] per server;
//!   one idle for more than [`IDLE_TIMEOUT`] is closed when the list is next touched.
//!
//! A connection goes back only when its last response said it may be reused, its body was
//! read to the end and no byte is left unread on it (see `exchange.rs`). Before reuse it is
//! checked without a syscall when possible: a pending EOF or stray bytes mean it is closed.

use crate::pool::PoolRuntime;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Idle connections one client connection keeps for its next requests.
pub(crate) const LOCAL_IDLE: usize = 4;
/// Idle connections kept per server for any client connection.
pub(crate) const SHARED_IDLE_PER_SERVER: usize = 128;
/// An idle connection older than this is closed rather than reused: below the keep-alive
/// timeouts servers commonly use (Apache 5 s, nginx 75 s) would be safest, but a server
/// closing first is handled anyway (a reused connection that fails before any response byte
/// is retried for idempotent requests without a body).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Initial read buffer of a server connection.
const READ_BUFFER: usize = 16 * 1024;

/// The byte stream to a server: plain TCP, or TLS when the pool re-encrypts.
pub(crate) enum ServerIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(s) => s.is_write_vectored(),
            ServerIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One connection to a server, with its read buffer.
pub(crate) struct ServerConn {
    pub io: ServerIo,
    pub buf: BytesMut,
    /// The server's index in its pool.
    pub server: usize,
    pub address: SocketAddr,
    /// When it was last returned idle.
    pub idle_since: Instant,
    /// It has carried a request before (a failure on it may be the server closing an idle
    /// connection, see the retry rule).
    pub reused: bool,
}

impl ServerConn {
    /// Whether an idle connection still looks usable: no EOF, error or stray byte waiting.
    /// Uses the reactor's readiness, so a connection with nothing new costs no syscall.
    fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

/// Why no connection could be opened to a server.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Io(io::Error),
    Timeout(Duration),
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Timeout(d) => write!(f, "no answer within {d:?}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// Opens a connection to server `index` of `pool` within the pool's `connect_timeout` (the
/// TLS handshake included, when the pool re-encrypts).
pub(crate) async fn connect(
    pool: &PoolRuntime,
    index: usize,
    address: SocketAddr,
) -> Result<ServerConn, ConnectError> {
    let timeout = pool.config.connect_timeout.get();
    let open = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(ConnectError::Io)?;
        let _ = tcp.set_nodelay(true);
        let io = match (&pool.upstream_tls, &pool.config.tls) {
            (Some(config), Some(settings)) => {
                let name = crate::tls::upstream::server_name(settings, address);
                let tls = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                ServerIo::Tls(Box::new(tls))
            }
            _ => ServerIo::Plain(tcp),
        };
        Ok(io)
    };
    let io = tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    Ok(ServerConn {
        io,
        buf: BytesMut::with_capacity(READ_BUFFER),
        server: index,
        address,
        idle_since: Instant::now(),
        reused: false,
    })
}

/// A pool's idle connections, per server, shared by every client connection.
pub struct IdleConnections {
    servers: Box<[Mutex<Vec<ServerConn>>]>,
}

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConnections")
            .field("servers", &self.servers.len())
            .finish()
    }
}

impl IdleConnections {
    pub(crate) fn new(servers: usize) -> Self {
        IdleConnections {
            servers: (0..servers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// The most recently used live idle connection to server `index` (stale ones are closed).
    pub(crate) fn take(&self, index: usize, address: SocketAddr) -> Option<ServerConn> {
        let slot = self.servers.get(index)?;
        let now = Instant::now();
        loop {
            let mut c = slot.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if c.address == address
                && now.saturating_duration_since(c.idle_since) < IDLE_TIMEOUT
                && c.is_usable()
            {
                return Some(c);
            }
        }
    }

    /// Keeps `conn` for another client connection (or closes it when the server has enough
    /// idle ones).
    pub(crate) fn put(&self, mut conn: ServerConn) {
        let Some(slot) = self.servers.get(conn.server) else {
            return;
        };
        if conn.buf.capacity() > 4 * READ_BUFFER {
            // Grown for a large body: an idle connection keeps the usual size.
            conn.buf = BytesMut::with_capacity(READ_BUFFER);
        }
        let now = Instant::now();
        let mut list = slot.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are at the front: drop the stale ones while the lock is held anyway.
        let stale = list
            .iter()
            .take_while(|c| now.saturating_duration_since(c.idle_since) >= IDLE_TIMEOUT)
            .count();
        let closing: Vec<ServerConn> = list.drain(..stale).collect();
        if list.len() < SHARED_IDLE_PER_SERVER {
            list.push(conn);
        }
        drop(list);
        drop(closing);
    }

    /// How many idle connections server `index` has (for tests and the console).
    pub fn idle(&self, index: usize) -> usize {
        self.servers
            .get(index)
            .map_or(0, |s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
    }
}

/// The idle server connections one client connection keeps between its requests, keyed by
/// pool (its address: a client connection keeps one config version) and server.
#[derive(Default)]
pub(crate) struct LocalConnections {
    slots: Vec<(usize, ServerConn)>,
}

impl LocalConnections {
    fn key(pool: &PoolRuntime) -> usize {
        pool as *const PoolRuntime as usize
    }

    /// A live connection to server `index` of `pool`: this client connection's own, else a
    /// shared idle one.
    pub(crate) fn take(
        &mut self,
        pool: &PoolRuntime,
        index: usize,
        address: SocketAddr,
    ) -> Option<ServerConn> {
        let key = Self::key(pool);
        while let Some(i) = self
            .slots
            .iter()
            .position(|(k, c)| *k == key && c.server == index)
        {
            let (_, mut c) = self.slots.swap_remove(i);
            if c.address == address && c.is_usable() {
                return Some(c);
            }
        }
        pool.idle.take(index, address)
    }

    /// Keeps `conn` for this client connection's next request; the oldest goes to the
    /// shared pool when more than [`LOCAL_IDLE`] are held.
    pub(crate) fn put(&mut self, pool: &PoolRuntime, mut conn: ServerConn) {
        conn.idle_since = Instant::now();
        conn.reused = true;
        if self.slots.len() >= LOCAL_IDLE {
            let (key, oldest) = self.slots.remove(0);
            // The oldest may belong to another pool of the same config; it goes back to the
            // shared list only if it is this one (else it is closed: rare, never wrong).
            if key == Self::key(pool) {
                pool.idle.put(oldest);
            }
        }
        self.slots.push((Self::key(pool), conn));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Hands every held connection back to its pool's shared list (the client connection
    /// ends). `pools` are the pools of the client connection's service.
    pub(crate) fn release<'a>(&mut self, pools: impl Iterator<Item = &'a PoolRuntime>) {
        if self.slots.is_empty() {
            return;
        }
        for pool in pools {
            let key = Self::key(pool);
            let mut i = 0;
            while i < self.slots.len() {
                if self.slots[i].0 == key {
                    let (_, c) = self.slots.swap_remove(i);
                    pool.idle.put(c);
                } else {
                    i += 1;
                }
            }
        }
        self.slots.clear();
    }
}
