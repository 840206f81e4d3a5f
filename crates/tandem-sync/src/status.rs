//! The sync link as `tandemctl status`, the console and `/metrics` show it.

use crate::engine::{Counters, Direction, PeerInfo, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tandem_config::store::VersionId;

/// The link's status (a JSON object in `tandemctl status`).
#[derive(Clone, Debug, Serialize)]
pub struct SyncStatus {
    pub node: String,
    /// This box's certificate fingerprint (to pin in the peer's `node.sync.peer_fingerprint`).
    pub fingerprint: String,
    /// The peer's pinned fingerprint.
    pub peer_fingerprint: String,
    pub peer_address: String,
    /// This box dials the peer (its fingerprint is the smaller); else it listens.
    pub dials: bool,
    pub role: Role,
    pub connected: bool,
    /// Seconds since the Unix epoch when the current connection came up.
    pub connected_since_unix: Option<u64>,
    pub schema: Option<u16>,
    pub direction: Direction,
    pub peer: Option<PeerInfo>,
    pub config: ConfigSync,
    pub last_snapshot: Option<SnapshotStatus>,
    pub lag: Lag,
    /// Entries per replicated table: persistence is live on this box; the others as of the
    /// last snapshot sent or received.
    pub tables: BTreeMap<String, u64>,
    pub counters: Counters,
    pub refused_peers: u64,
    pub reconnects: u64,
    /// The last reason a connection ended.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigSync {
    /// The version this box runs.
    pub local: Option<VersionId>,
    /// The version the peer runs, as it last said.
    pub peer: Option<VersionId>,
    pub same: bool,
    /// Branches kept after partitions (see `tandemctl versions`).
    pub branches_kept: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotStatus {
    pub sent: bool,
    pub entries: u64,
    pub bytes: u64,
    pub duration_ms: f64,
    /// Seconds since the Unix epoch when it completed.
    pub at_unix: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Lag {
    /// Age of the oldest change the passive has not acknowledged (0 when it has them all).
    pub ms: u64,
    /// Changes the passive has not acknowledged.
    pub entries: u64,
    /// 99th percentile of the recent acknowledgement delays.
    pub p99_ms: f64,
}

impl SyncStatus {
    /// The status of a box without a sync link.
    pub fn disabled(node: &str) -> SyncStatus {
        SyncStatus {
            node: node.to_owned(),
            fingerprint: String::new(),
            peer_fingerprint: String::new(),
            peer_address: String::new(),
            dials: false,
            role: Role::Active,
            connected: false,
            connected_since_unix: None,
            schema: None,
            direction: Direction::Idle,
            peer: None,
            config: ConfigSync {
                local: None,
                peer: None,
                same: false,
                branches_kept: 0,
            },
            last_snapshot: None,
            lag: Lag::default(),
            tables: BTreeMap::new(),
            counters: Counters::default(),
            refused_peers: 0,
            reconnects: 0,
            last_error: None,
        }
    }
}

/// Appends the link's metrics in the Prometheus text format.
pub fn render_prometheus(s: &SyncStatus, out: &mut String) {
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "tandem_sync_peer_connected",
        "1 while the sync link to the peer is up.",
        f64::from(u8::from(s.connected)),
    );
    gauge(
        "tandem_sync_role_active",
        "1 while this box is the pair's active box.",
        f64::from(u8::from(s.role == Role::Active)),
    );
    gauge(
        "tandem_sync_writing",
        "1 while this box replicates to the peer.",
        f64::from(u8::from(s.direction == Direction::Writer)),
    );
    gauge(
        "tandem_sync_lag_seconds",
        "Age of the oldest change the passive box has not acknowledged.",
        s.lag.ms as f64 / 1000.0,
    );
    gauge(
        "tandem_sync_lag_entries",
        "Changes the passive box has not acknowledged.",
        s.lag.entries as f64,
    );
    gauge(
        "tandem_sync_ack_delay_p99_seconds",
        "99th percentile of recent acknowledgement delays.",
        s.lag.p99_ms / 1000.0,
    );
    gauge(
        "tandem_sync_config_same",
        "1 when both boxes run the same config version.",
        f64::from(u8::from(s.config.same)),
    );
    if let Some(snap) = &s.last_snapshot {
        gauge(
            "tandem_sync_last_snapshot_entries",
            "Entries in the last snapshot sent or received.",
            snap.entries as f64,
        );
        gauge(
            "tandem_sync_last_snapshot_bytes",
            "Bytes of the last snapshot sent or received.",
            snap.bytes as f64,
        );
        gauge(
            "tandem_sync_last_snapshot_seconds",
            "Duration of the last snapshot, until installed on the passive.",
            snap.duration_ms / 1000.0,
        );
        gauge(
            "tandem_sync_last_snapshot_timestamp_seconds",
            "When the last snapshot completed.",
            snap.at_unix as f64,
        );
    }
    // Who this box is on the link, as labels (the value is 1): an operator pinning the peer
    // reads the fingerprint here as well as in `tandemctl status`.
    if !s.fingerprint.is_empty() {
        let _ = writeln!(
            out,
            "# HELP tandem_sync_info This box's sync certificate fingerprint (pinned in the peer's node.sync.peer_fingerprint), the pinned peer's, and the peer's address.\n# TYPE tandem_sync_info gauge\ntandem_sync_info{{fingerprint=\"{}\",peer_fingerprint=\"{}\",peer=\"{}\"}} 1",
            s.fingerprint, s.peer_fingerprint, s.peer_address
        );
    }
    // The version each box runs: the value is its commit number, the labels name it whole.
    let _ = writeln!(
        out,
        "# HELP tandem_sync_config_version The config version each box runs (value: its commit number n; labels: epoch and hash prefix).\n# TYPE tandem_sync_config_version gauge"
    );
    for (which, id) in [("this", &s.config.local), ("peer", &s.config.peer)] {
        if let Some(id) = id {
            let _ = writeln!(
                out,
                "tandem_sync_config_version{{box=\"{which}\",epoch=\"{}\",hash=\"{}\"}} {}",
                id.epoch,
                &id.hash[..id.hash.len().min(8)],
                id.n
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tandem_sync_table_entries Entries per replicated table.\n# TYPE tandem_sync_table_entries gauge"
    );
    for (table, n) in &s.tables {
        let _ = writeln!(out, "tandem_sync_table_entries{{table=\"{table}\"}} {n}");
    }
    let c = &s.counters;
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "tandem_sync_refused_peers_total",
        "Connections refused: the peer's certificate is not the pinned one.",
        s.refused_peers,
    );
    counter(
        "tandem_sync_malformed_frames_total",
        "Connections dropped for a malformed frame.",
        c.malformed_frames,
    );
    counter(
        "tandem_sync_version_refused_total",
        "Connections refused for want of a common schema version.",
        c.version_refused,
    );
    counter(
        "tandem_sync_reconnects_total",
        "Connections made after the first.",
        s.reconnects,
    );
    counter(
        "tandem_sync_snapshots_sent_total",
        "Snapshots sent.",
        c.snapshots_sent,
    );
    counter(
        "tandem_sync_snapshots_received_total",
        "Snapshots received.",
        c.snapshots_received,
    );
    counter(
        "tandem_sync_forced_snapshots_total",
        "Snapshots forced by a gap, a lagging stream or a full queue.",
        c.forced_snapshots,
    );
    counter(
        "tandem_sync_deltas_sent_total",
        "Changes sent after a snapshot.",
        c.deltas_sent,
    );
    counter(
        "tandem_sync_deltas_applied_total",
        "Changes received and installed.",
        c.deltas_applied,
    );
    counter(
        "tandem_sync_bytes_sent_total",
        "Bytes sent on the link (before TLS).",
        c.bytes_sent,
    );
    counter(
        "tandem_sync_bytes_received_total",
        "Bytes received on the link (after TLS).",
        c.bytes_received,
    );
    counter(
        "tandem_sync_config_versions_received_total",
        "Config versions received from the active box.",
        c.versions_received,
    );
    counter(
        "tandem_sync_branches_kept_total",
        "Config branches kept after a partition.",
        c.branches_kept,
    );
    counter(
        "tandem_sync_peer_restarts_total",
        "Times the peer was seen restarted.",
        c.peer_restarts,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_the_link_state_and_each_table() {
        let mut s = SyncStatus::disabled("lb-a");
        s.connected = true;
        s.lag.ms = 12;
        s.tables.insert("persistence".into(), 42);
        s.refused_peers = 3;
        s.fingerprint = "sha256:00aa".into();
        s.peer_fingerprint = "sha256:00bb".into();
        s.peer_address = "10.0.9.2:7420".into();
        s.config.local = Some(VersionId {
            epoch: 2,
            n: 5,
            hash: "0123456789abcdef".into(),
        });
        let mut out = String::new();
        render_prometheus(&s, &mut out);
        for line in [
            "tandem_sync_peer_connected 1",
            "tandem_sync_lag_seconds 0.012",
            "tandem_sync_table_entries{table=\"persistence\"} 42",
            "tandem_sync_refused_peers_total 3",
            "# TYPE tandem_sync_reconnects_total counter",
            "tandem_sync_info{fingerprint=\"sha256:00aa\",peer_fingerprint=\"sha256:00bb\",peer=\"10.0.9.2:7420\"} 1",
            "tandem_sync_config_version{box=\"this\",epoch=\"2\",hash=\"01234567\"} 5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
