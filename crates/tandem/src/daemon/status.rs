//! The box's status, as `tandemctl status` and the management plane show it.

use super::Daemon;
use std::sync::Arc;
use std::time::Duration;

/// How long the status waits for the sync link's current status before taking its cached one.
const SYNC_STATUS_WAIT: Duration = Duration::from_millis(500);

/// The status document: who this box is, its role and heartbeat, what config runs, the sync
/// link (`null` without one) and the dataplane's counters.
pub async fn report(daemon: &Daemon) -> serde_json::Value {
    // Before the config lock: the link's task never waits on it, but keep the two apart. A
    // busy link (a large snapshot) answers with its status of at most 200 ms ago instead of
    // holding up `tandemctl status`.
    let sync = match &daemon.sync {
        Some(s) => {
            let status = tokio::time::timeout(SYNC_STATUS_WAIT, s.status_now())
                .await
                .unwrap_or_else(|_| s.status());
            serde_json::to_value(status).unwrap_or(serde_json::Value::Null)
        }
        None => serde_json::Value::Null,
    };
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
        "sync": sync,
        "dataplane": daemon.dataplane.stats(),
    })
}

/// What `/metrics` renders: the dataplane's counters, the heartbeat's and the sync link's, in
/// Prometheus text format.
pub fn metrics_source(daemon: Arc<Daemon>) -> tandem_admin::MetricsSource {
    Arc::new(move || {
        let mut out = String::new();
        tandem_dataplane::metrics::render_prometheus(&daemon.dataplane.stats(), &mut out);
        out.push_str(&daemon.pair.render_prometheus());
        if let Some(sync) = &daemon.sync {
            // The cached status: /metrics must not wait on the link's task.
            tandem_sync::render_prometheus(&sync.status(), &mut out);
        }
        out
    })
}
