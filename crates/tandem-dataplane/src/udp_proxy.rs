//! `udp` services (DNS, RADIUS): a flow table from client address to server.
//!
//! - The first datagram of a client address opens a flow: the limits admit it (a flow counts
//!   as a connection), persistence and the balancer choose its server, and it gets its own
//!   upstream socket connected to that server, so the server's replies are matched to the
//!   client by the kernel. Replies are sent back from the service's listening socket, that is
//!   from the VIP address and port the client talked to.
//! - Later datagrams of the flow go to the same server while it may keep the client (a down or
//!   disabled server makes the next datagram open a new flow; a draining one keeps it).
//! - A flow ends after `udp.idle_timeout` without a datagram in either direction.
//! - The table holds at most `DataplaneOptions::udp_max_flows` flows per service; when full,
//!   the oldest flow is evicted (counted in `udp_flows_evicted`).
//! - A datagram the upstream socket cannot take at once is dropped, as the network would.

use crate::pool::{PoolRuntime, ServerLease};
use crate::service::{ServiceRuntime, ServiceSlot};
use crate::splice::Activity;
use arc_swap::ArcSwap;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const MAX_DATAGRAM: usize = 65536;
/// How long a datagram may wait for a socket to take it before it is dropped.
const SEND_WAIT: Duration = Duration::from_millis(10);

struct Flow {
    id: u64,
    upstream: Arc<UdpSocket>,
    pool: Arc<PoolRuntime>,
    server: usize,
    lease: ServerLease,
    activity: Activity,
    end: CancellationToken,
}

#[derive(Default)]
struct FlowTable {
    flows: HashMap<SocketAddr, Arc<Flow>>,
    /// Flows in creation order (entries of ended flows are skipped when met).
    order: VecDeque<(SocketAddr, u64)>,
    next_id: u64,
}

impl FlowTable {
    fn remove_if(&mut self, client: SocketAddr, id: u64) {
        if self.flows.get(&client).is_some_and(|f| f.id == id) {
            self.flows.remove(&client);
        }
    }

    /// Ends the oldest live flow.
    fn evict_oldest(&mut self) -> bool {
        while let Some((client, id)) = self.order.pop_front() {
            if self.flows.get(&client).is_some_and(|f| f.id == id) {
                if let Some(f) = self.flows.remove(&client) {
                    f.end.cancel();
                }
                return true;
            }
        }
        false
    }
}

/// Receives client datagrams on `socket` until `stop`.
pub(crate) async fn run(
    socket: Arc<UdpSocket>,
    runtime: Arc<ArcSwap<ServiceRuntime>>,
    stop: CancellationToken,
) {
    let table = Arc::new(Mutex::new(FlowTable::default()));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let ctx = runtime.load_full();
        let existing = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flows
            .get(&client)
            .cloned();
        let flow = match existing {
            Some(f) if !f.end.is_cancelled() && f.pool.keeps_pinned(f.server) => f,
            old => {
                if let Some(old) = old {
                    old.end.cancel();
                }
                match open_flow(&ctx, &socket, &table, client).await {
                    Some(f) => f,
                    None => continue,
                }
            }
        };
        flow.activity.touch();
        let svc = &ctx.counters().traffic;
        let srv = &flow.lease.state.counters.traffic;
        svc.add_request();
        srv.add_request();
        let sent = match flow.upstream.try_send(&buf[..n]) {
            // A new socket's write readiness is not known before the reactor's first look at
            // it; wait for it briefly rather than drop the flow's first datagram.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(SEND_WAIT, flow.upstream.send(&buf[..n]))
                    .await
                    .unwrap_or_else(|_| Err(io::ErrorKind::WouldBlock.into()))
            }
            r => r,
        };
        match sent {
            Ok(sent) => {
                svc.add_bytes_in(sent as u64);
                srv.add_bytes_in(sent as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(service = %ctx.name, server = %flow.lease.id, error = %e, "udp send to server failed")
            }
        }
    }
}

async fn open_flow(
    ctx: &Arc<ServiceRuntime>,
    listener: &Arc<UdpSocket>,
    table: &Arc<Mutex<FlowTable>>,
    client: SocketAddr,
) -> Option<Arc<Flow>> {
    let (admission, slot) = ctx.admit(client.ip());
    let slot = slot.or_else(|| {
        tracing::trace!(?admission, %client, "udp flow refused");
        None
    })?;
    let pool = ctx.default_pool()?.clone();
    let lease = ctx.choose_server(&pool, client.ip(), &[]).ok()?;
    let bind: SocketAddr = match lease.address.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = match async {
        let s = UdpSocket::bind(bind).await?;
        s.connect(lease.address).await?;
        Ok::<_, io::Error>(s)
    }
    .await
    {
        Ok(s) => Arc::new(s),
        Err(e) => {
            lease.state.counters.connect_failures.fetch_add(1, Relaxed);
            tracing::warn!(service = %ctx.name, server = %lease.id, error = %e, "cannot open a udp flow socket");
            return None;
        }
    };
    let server = lease.index;
    let flow = {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        while t.flows.len() >= ctx.udp_max_flows && t.evict_oldest() {
            ctx.counters().udp_flows_evicted.fetch_add(1, Relaxed);
        }
        t.next_id += 1;
        let flow = Arc::new(Flow {
            id: t.next_id,
            upstream,
            pool,
            server,
            lease,
            activity: Activity::new(),
            end: ctx.hard_stop.child_token(),
        });
        t.flows.insert(client, flow.clone());
        t.order.push_back((client, flow.id));
        flow
    };
    tokio::spawn(replies(
        ctx.clone(),
        flow.clone(),
        listener.clone(),
        table.clone(),
        client,
        slot,
    ));
    Some(flow)
}

enum ReplyStep {
    Sent(usize),
    /// The listening socket could not take the reply at once: send it after a wait.
    Retry(Vec<u8>),
    Failed(io::Error),
}

thread_local! {
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_DATAGRAM]);
}

/// Relays the server's replies of one flow to its client until the flow ends.
async fn replies(
    ctx: Arc<ServiceRuntime>,
    flow: Arc<Flow>,
    listener: Arc<UdpSocket>,
    table: Arc<Mutex<FlowTable>>,
    client: SocketAddr,
    _slot: ServiceSlot,
) {
    let idle = ctx
        .config
        .udp
        .as_ref()
        .map(|u| u.idle_timeout.get())
        .unwrap_or(Duration::from_secs(30));
    let svc = &ctx.counters().traffic;
    let srv = &flow.lease.state.counters.traffic;
    loop {
        tokio::select! {
            r = flow.upstream.readable() => {
                if r.is_err() {
                    break;
                }
                // One shared buffer per thread: no await between receiving and sending, and no
                // 64 KiB buffer per flow.
                let step = REPLY_BUF.with(|b| {
                    let mut b = b.borrow_mut();
                    let n = match flow.upstream.try_recv(&mut b) {
                        Ok(n) => n,
                        Err(e) => return ReplyStep::Failed(e),
                    };
                    match listener.try_send_to(&b[..n], client) {
                        Ok(sent) => ReplyStep::Sent(sent),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReplyStep::Retry(b[..n].to_vec()),
                        Err(e) => ReplyStep::Failed(e),
                    }
                });
                let sent = match step {
                    ReplyStep::Sent(n) => Ok(n),
                    // Rare: the listening socket could not take the reply at once.
                    ReplyStep::Retry(data) => tokio::time::timeout(SEND_WAIT, listener.send_to(&data, client))
                        .await
                        .unwrap_or_else(|_| Err(io::ErrorKind::WouldBlock.into())),
                    ReplyStep::Failed(e) => Err(e),
                };
                match sent {
                    Ok(n) => {
                        flow.activity.touch();
                        svc.add_bytes_out(n as u64);
                        srv.add_bytes_out(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // ICMP "port unreachable" from the server arrives here; the flow stays.
                    Err(e) => tracing::debug!(service = %ctx.name, server = %flow.lease.id, error = %e, "udp reply failed"),
                }
            }
            _ = flow.activity.idle_for(idle) => break,
            _ = flow.end.cancelled() => break,
        }
    }
    flow.end.cancel();
    table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove_if(client, flow.id);
}
