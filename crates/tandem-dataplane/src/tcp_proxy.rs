//! `tcp` services: a bidirectional byte proxy between a client and a server.
//!
//! - The server is chosen by the service's persistence and its pool's balancer. A connect that
//!   fails or exceeds the pool's `connect_timeout` is counted on that server and the next
//!   server is tried (at most three servers per client connection); "no server" refuses the
//!   client (the connection is closed).
//! - An optional PROXY protocol v2 header goes to the server first.
//! - Bytes move with splice(2) (see `splice.rs`); each direction half-closes on its own.
//! - The connection is closed after `limits.idle_timeout` without a byte in either direction.

use crate::proxy_protocol;
use crate::service::{ServiceRuntime, ServiceSlot};
use crate::splice::{self, Activity, Mode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tandem_config::ProxyProtocol;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Servers tried per client connection.
pub const MAX_TRIES: usize = 3;

/// Serves one accepted client connection to the end.
pub(crate) async fn serve(
    ctx: Arc<ServiceRuntime>,
    client: TcpStream,
    peer: SocketAddr,
    _slot: ServiceSlot,
) {
    let started = tokio::time::Instant::now();
    let Some(pool) = ctx.default_pool().cloned() else {
        return;
    };
    let local = client.local_addr().unwrap_or(ctx.config.listen);
    let mut failed: Vec<usize> = Vec::new();
    let (server, lease) = loop {
        let lease = match ctx.choose_server(&pool, peer.ip(), &failed) {
            Ok(l) => l,
            Err(_) => {
                if ctx.log_throttle().should_log(peer.ip(), started) {
                    tracing::warn!(service = %ctx.name, pool = %pool.name, client = %peer,
                        tried = failed.len(), "no server available; connection refused");
                }
                return;
            }
        };
        let timeout = pool.config.connect_timeout.get();
        let reason = match tokio::time::timeout(timeout, TcpStream::connect(lease.address)).await {
            Ok(Ok(s)) => break (s, lease),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        lease.state.counters.connect_failures.fetch_add(1, Relaxed);
        tracing::warn!(service = %ctx.name, pool = %pool.name, server = %lease.id,
            address = %lease.address, %reason, "connect to server failed");
        failed.push(lease.index);
        if failed.len() >= MAX_TRIES.min(pool.servers.len()) {
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let svc = &ctx.counters().traffic;
    let srv = &lease.state.counters.traffic;

    let mut server = server;
    if ctx.config.proxy_protocol == Some(ProxyProtocol::V2) {
        let mut header = [0u8; proxy_protocol::MAX_LEN];
        let n = proxy_protocol::encode_v2(peer, local, &mut header);
        if server.write_all(&header[..n]).await.is_err() {
            return;
        }
    }

    let mode = if ctx.splice { Mode::Splice } else { Mode::Copy };
    let activity = Activity::new();
    let idle = ctx.config.limits.idle_timeout.get();
    let upstream = splice::pump(&client, &server, mode, &activity, |n| {
        svc.add_bytes_in(n);
        srv.add_bytes_in(n);
    });
    let downstream = splice::pump(&server, &client, mode, &activity, |n| {
        svc.add_bytes_out(n);
        srv.add_bytes_out(n);
    });
    let outcome = tokio::select! {
        // An error in either direction (a reset) ends both.
        r = async { tokio::try_join!(upstream, downstream) } => match r {
            Ok((up, down)) => Outcome::Done { up, down },
            Err(e) => Outcome::Error(e.to_string()),
        },
        _ = activity.idle_for(idle) => Outcome::Idle(idle),
        _ = ctx.hard_stop.cancelled() => Outcome::Error("dataplane stopped".into()),
    };
    if ctx.access_log() {
        let elapsed = started.elapsed();
        match &outcome {
            Outcome::Done { up, down } => {
                tracing::info!(target: "access", service = %ctx.name,
                client = %peer, server = %lease.id, bytes_in = up, bytes_out = down,
                duration_ms = elapsed.as_millis() as u64, "tcp connection closed")
            }
            Outcome::Idle(d) => tracing::info!(target: "access", service = %ctx.name,
                client = %peer, server = %lease.id, duration_ms = elapsed.as_millis() as u64,
                "tcp connection closed after {d:?} idle"),
            Outcome::Error(e) => tracing::info!(target: "access", service = %ctx.name,
                client = %peer, server = %lease.id, duration_ms = elapsed.as_millis() as u64,
                error = %e, "tcp connection ended by an error"),
        }
    }
}

enum Outcome {
    Done { up: u64, down: u64 },
    Idle(Duration),
    Error(String),
}
