//! The box's status, as `tandemctl status` and the management plane show it.

use super::Daemon;
use std::sync::Arc;

/// The status document: who this box is, its role and heartbeat, what config runs, and the
/// dataplane's counters.
pub async fn report(daemon: &Daemon) -> serde_json::Value {
    let running = daemon.running.lock().await;
    let version = &running.current().meta;
    serde_json::json!({
        "node": running.node().name,
        "role": daemon.pair.role_name(),
        "ha": daemon.pair.status_json(),
        "uptime_seconds": daemon.started.elapsed().as_secs(),
        "config": {
            "version": version.id,
            "committed_at": version.committed_at,
            "author": version.author,
            "reason": version.reason,
        },
        "dataplane": daemon.dataplane.stats(),
    })
}

/// What `/metrics` renders: the dataplane's counters and the heartbeat's, in Prometheus text
/// format.
pub fn metrics_source(daemon: Arc<Daemon>) -> tandem_admin::MetricsSource {
    Arc::new(move || {
        let mut out = String::new();
        tandem_dataplane::metrics::render_prometheus(&daemon.dataplane.stats(), &mut out);
        out.push_str(&daemon.pair.render_prometheus());
        out
    })
}
