//! Self-probes of the listeners, for tandemd's watchdog: a dataplane that stops accepting
//! lowers the box's VRRP priority, so a wedged box gives the VIPs up.
//!
//! A TCP handshake alone proves nothing (the kernel completes it from the backlog even when
//! nothing accepts), so a probe connects from a known local address and waits until the
//! listener's accept loop has taken that very connection off the queue; the accept loop
//! recognises it and closes it without proxying or counting it. Probe the addresses the box
//! holds only: a VIP held by the peer would be answered by the peer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tandem_config::Protocol;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A listener the dataplane runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub service: String,
    pub protocol: Protocol,
    pub address: SocketAddr,
}

/// Probing the dataplane's own listeners. A cheap-clone handle.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: AtomicUsize,
    probes: Mutex<HashMap<SocketAddr, oneshot::Sender<()>>>,
    listeners: Mutex<Vec<ListenerInfo>>,
}

impl Liveness {
    /// The listeners running now.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_listeners(&self, list: Vec<ListenerInfo>) {
        *self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// Called by the accept loops: whether `peer` is a probe (then it is answered and the
    /// connection must be dropped). One atomic load when no probe is running.
    pub(crate) fn claim(&self, peer: SocketAddr) -> bool {
        if self.inner.pending.load(Relaxed) == 0 {
            return false;
        }
        let tx = self
            .inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        match tx {
            Some(tx) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }

    /// Probes the stream listener on `address`: the time until its accept loop took the probe
    /// connection. An unspecified address is probed through loopback.
    pub async fn probe(&self, address: SocketAddr, timeout: Duration) -> io::Result<Duration> {
        let target = match address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, address.port()))
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::from((Ipv6Addr::LOCALHOST, address.port()))
            }
            _ => address,
        };
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // From the target's own address: no outside client can come from there.
        socket.bind(SocketAddr::new(target.ip(), 0))?;
        let local = socket.local_addr()?;
        let (tx, rx) = oneshot::channel();
        self.inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(local, tx);
        self.inner.pending.fetch_add(1, Relaxed);
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let _conn = socket.connect(target).await?;
            rx.await.map_err(|_| io::Error::other("probe abandoned"))
        })
        .await;
        self.inner.pending.fetch_sub(1, Relaxed);
        self.inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&local);
        match result {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the listener did not accept the probe in time",
            )),
        }
    }

    /// Probes every stream listener for which `held(address)` is true.
    pub async fn probe_all(
        &self,
        timeout: Duration,
        held: impl Fn(SocketAddr) -> bool,
    ) -> Vec<(ListenerInfo, io::Result<Duration>)> {
        let mut out = Vec::new();
        for l in self.listeners() {
            if l.protocol.is_stream() && held(l.address) {
                let r = self.probe(l.address, timeout).await;
                out.push((l, r));
            }
        }
        out
    }
}
