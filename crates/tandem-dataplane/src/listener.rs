//! Listening sockets and their accept loops.
//!
//! Every service binds its address, IPv4 or IPv6 alike (IPv6 sockets with `IPV6_V6ONLY`, so
//! `[::]:443` and `0.0.0.0:443` are separate services), with `SO_REUSEADDR` and
//! `IP_FREEBIND`/`IPV6_FREEBIND`: the passive box binds VIPs it does not hold yet, and a
//! takeover is then only "add the address and announce it". Binding happens in `start`/`apply`
//! so that an error is returned to the caller, never logged from a task.
//!
//! A listener is identified by its socket kind and address ([`ListenerKey`]). A config apply
//! keeps a listener whose key is unchanged (same socket, same accept task) and only swaps the
//! service runtime it hands new connections to.

use crate::liveness::Liveness;
use crate::service::ServiceRuntime;
use crate::{http, tcp_proxy, udp_proxy};
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tandem_config::Protocol;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SocketKind {
    Stream,
    Datagram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ListenerKey {
    pub kind: SocketKind,
    pub address: SocketAddr,
}

impl ListenerKey {
    pub(crate) fn of(protocol: Protocol, address: SocketAddr) -> Self {
        ListenerKey {
            kind: if protocol.is_stream() {
                SocketKind::Stream
            } else {
                SocketKind::Datagram
            },
            address,
        }
    }
}

/// A bound socket not yet serving.
pub(crate) enum BoundSocket {
    Stream(std::net::TcpListener),
    Datagram(std::net::UdpSocket),
}

/// A running listener.
pub(crate) struct Listener {
    pub runtime: Arc<ArcSwap<ServiceRuntime>>,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

fn socket(address: SocketAddr, kind: SocketKind) -> io::Result<Socket> {
    let domain = Domain::for_address(address);
    let (ty, proto) = match kind {
        SocketKind::Stream => (Type::STREAM, SockProtocol::TCP),
        SocketKind::Datagram => (Type::DGRAM, SockProtocol::UDP),
    };
    let s = Socket::new(domain, ty.cloexec(), Some(proto))?;
    s.set_reuse_address(true)?;
    if address.is_ipv6() {
        s.set_only_v6(true)?;
        // IPV6_FREEBIND needs Linux 4.15; IP_FREEBIND covers IPv6 sockets on older kernels.
        if s.set_freebind_v6(true).is_err() {
            s.set_freebind_v4(true)?;
        }
    } else {
        s.set_freebind_v4(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(address))?;
    Ok(s)
}

/// Binds a service's socket (not yet accepting).
pub(crate) fn bind(key: ListenerKey, backlog: i32) -> io::Result<BoundSocket> {
    let s = socket(key.address, key.kind)?;
    Ok(match key.kind {
        SocketKind::Stream => {
            s.listen(backlog)?;
            BoundSocket::Stream(s.into())
        }
        SocketKind::Datagram => BoundSocket::Datagram(s.into()),
    })
}

/// Starts serving a bound socket for the runtime in `runtime` (swappable).
pub(crate) fn spawn(
    bound: BoundSocket,
    runtime: Arc<ArcSwap<ServiceRuntime>>,
    liveness: Liveness,
) -> io::Result<Listener> {
    let stop = CancellationToken::new();
    let task = match bound {
        BoundSocket::Stream(l) => {
            let l = TcpListener::from_std(l)?;
            tokio::spawn(accept_loop(l, runtime.clone(), stop.clone(), liveness))
        }
        BoundSocket::Datagram(s) => {
            let s = Arc::new(UdpSocket::from_std(s)?);
            tokio::spawn(udp_proxy::run(s, runtime.clone(), stop.clone()))
        }
    };
    Ok(Listener {
        runtime,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    runtime: Arc<ArcSwap<ServiceRuntime>>,
    stop: CancellationToken,
    liveness: Liveness,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off a little instead of spinning.
                let ctx = runtime.load();
                tracing::error!(service = %ctx.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if liveness.claim(peer) {
            continue;
        }
        let ctx = runtime.load_full();
        dispatch(ctx, stream, peer);
    }
}

fn dispatch(ctx: Arc<ServiceRuntime>, stream: TcpStream, peer: SocketAddr) {
    let (admission, slot) = ctx.admit(peer.ip());
    let hard_stop = ctx.hard_stop.clone();
    match ctx.config.protocol {
        Protocol::Tcp => {
            let Some(slot) = slot else { return };
            tokio::spawn(tcp_proxy::serve(ctx, stream, peer, slot));
        }
        Protocol::Http => {
            let _ = stream.set_nodelay(true);
            tokio::spawn(http::serve_plain(ctx, stream, peer, admission, slot));
        }
        Protocol::Https => {
            // A refused client gets no handshake: answering it over TLS would spend the CPU the
            // limit is there to save.
            let Some(slot) = slot else { return };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                tokio::select! {
                    _ = serve_https(ctx, stream, peer, slot) => {}
                    _ = hard_stop.cancelled() => {}
                }
            });
        }
        Protocol::Udp => {}
    }
}

async fn serve_https(
    ctx: Arc<ServiceRuntime>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: crate::service::ServiceSlot,
) {
    let Some(acceptor) = ctx.tls_acceptor().cloned() else {
        return;
    };
    match crate::tls::accept_tls(&acceptor, stream, ctx.config.limits.header_timeout.get()).await {
        Ok((tls, info)) => {
            http::serve_http(
                ctx,
                tls,
                peer,
                Some(info),
                crate::limits::Admission::Allowed,
                Some(slot),
            )
            .await
        }
        Err(e) => {
            if ctx
                .log_throttle()
                .should_log(peer.ip(), tokio::time::Instant::now())
            {
                tracing::info!(service = %ctx.name, client = %peer, error = %e,
                    "TLS handshake failed (logged once a minute per source)");
            }
        }
    }
}
