//! What is recorded of each request: the service's and the server's counters, and one
//! access-log line (tracing target `access`, so `RUST_LOG=info,access=off` silences it;
//! skipped when the service has `access_log: false`).

use super::ConnContext;
use crate::pool::ServerLease;
use std::time::Duration;
use tokio::time::Instant;

/// One finished request, as counted and logged.
pub(crate) struct Record<'a> {
    pub protocol: &'static str,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// The status sent to the client; 0 when none could be (the client or the server went
    /// away mid-response).
    pub status: u16,
    pub server: Option<&'a ServerLease>,
    /// Time to the response head (the latency histogram).
    pub latency: Duration,
    /// Request bytes sent to the server (head and body).
    pub bytes_in: u64,
    /// Response bytes sent to the client (head and body).
    pub bytes_out: u64,
    pub started: Instant,
    /// Why the exchange ended early, if it did.
    pub error: Option<&'a str>,
}

/// Counts `r` on the service and its server, and logs it.
pub(crate) fn record(cc: &ConnContext, r: &Record<'_>) {
    let svc = &cc.ctx.counters().traffic;
    svc.add_bytes_in(r.bytes_in);
    svc.add_bytes_out(r.bytes_out);
    if r.status != 0 {
        svc.observe_response(r.status, r.latency);
    }
    if let Some(lease) = r.server {
        let srv = &lease.state.counters.traffic;
        srv.add_request();
        srv.add_bytes_in(r.bytes_in);
        srv.add_bytes_out(r.bytes_out);
        if r.status != 0 {
            srv.observe_response(r.status, r.latency);
        }
    }
    if !cc.ctx.access_log() {
        return;
    }
    let duration_ms = r.started.elapsed().as_millis() as u64;
    let server = r.server.map_or("-", |l| &*l.id);
    match r.error {
        None => tracing::info!(target: "access", service = %cc.ctx.name, client = %cc.peer,
            proto = r.protocol, method = r.method, host = r.host.unwrap_or("-"), path = r.path,
            status = r.status, server, bytes = r.bytes_out, duration_ms, "request"),
        Some(error) => tracing::info!(target: "access", service = %cc.ctx.name,
            client = %cc.peer, proto = r.protocol, method = r.method,
            host = r.host.unwrap_or("-"), path = r.path, status = r.status, server,
            bytes = r.bytes_out, duration_ms, error, "request"),
    }
}
