//! What the heartbeat shows: the pair's role, each router's state and counters, the tracked
//! objects. A snapshot is published after every event the loop handles; readers
//! (`tandemctl status`, the console, `/metrics`) never wait on the heartbeat thread.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The pair's role: Active when this box's sync group is Master (RFC 5798 §6.4.3 for each
/// member), Passive otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Active,
    Passive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 5798 §6.4's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterState {
    Initialize,
    Backup,
    Master,
}

impl RouterState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouterState::Initialize => "initialize",
            RouterState::Backup => "backup",
            RouterState::Master => "master",
        }
    }

    /// The value of `tandem_vrrp_state`.
    pub fn metric(self) -> u8 {
        match self {
            RouterState::Initialize => 0,
            RouterState::Backup => 1,
            RouterState::Master => 2,
        }
    }
}

impl From<tandem_vrrp::State> for RouterState {
    fn from(s: tandem_vrrp::State) -> Self {
        match s {
            tandem_vrrp::State::Initialize => RouterState::Initialize,
            tandem_vrrp::State::Backup => RouterState::Backup,
            tandem_vrrp::State::Master => RouterState::Master,
        }
    }
}

/// One state change, with its time and reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: RouterState,
    pub to: RouterState,
    /// RFC 5798's event, e.g. `master down timer fired`, `advert from 10.0.0.3 with
    /// priority 200`.
    pub reason: String,
    pub at: SystemTime,
}

/// Everything about one virtual router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub vips: Vec<IpNet>,
    pub state: RouterState,
    /// Why a Master is handing over (make before break), while it is.
    pub stepping_down: Option<String>,
    /// The configured priority.
    pub priority: u8,
    /// As lowered by tracking (RFC 5798 §6.1 Priority as advertised).
    pub effective_priority: u8,
    /// The fault objects that hold this router (none may be Master).
    pub faults: Vec<String>,
    /// This box's address on the link (the advert source).
    pub primary_address: Option<IpAddr>,
    /// The current Master: this box, or the source of the last advert heard.
    pub master: Option<IpAddr>,
    pub last_transition: Option<Transition>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub send_errors: u64,
    /// Adverts whose address list differs from ours (logged, processed: docs/vrrp.md).
    pub address_list_mismatches: u64,
    /// Dropped adverts by reason (`tandem_vrrp::DropReason::as_str`), zeros included.
    pub drops: Vec<(String, u64)>,
}

/// A tracked object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackStatus {
    pub name: String,
    pub up: bool,
}

/// The heartbeat at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaStatus {
    pub role: Role,
    pub role_changes: u64,
    /// A graceful handover (`failover_now`) is in progress, or this box yields the role
    /// after one.
    pub yielding: bool,
    /// The heartbeat thread runs `SCHED_FIFO` with memory locked.
    pub realtime: bool,
    pub routers: Vec<RouterStatus>,
    pub tracks: Vec<TrackStatus>,
    /// Packets dropped before they could be attributed to a router (unknown VRID, not a
    /// VRRP packet), by reason.
    pub unattributed_drops: Vec<(String, u64)>,
    /// The heartbeat has stopped (after `shutdown`).
    pub stopped: bool,
}

impl HaStatus {
    pub(crate) fn starting() -> Self {
        HaStatus {
            role: Role::Passive,
            role_changes: 0,
            yielding: false,
            realtime: false,
            routers: Vec::new(),
            tracks: Vec::new(),
            unattributed_drops: Vec::new(),
            stopped: false,
        }
    }

    pub fn router(&self, name: &str) -> Option<&RouterStatus> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The Prometheus text exposition of this status, to append to `/metrics`:
    /// `tandem_ha_role`, `tandem_ha_role_changes_total`, `tandem_vrrp_state{router}`,
    /// `tandem_vrrp_priority{router}`, `tandem_vrrp_effective_priority{router}`,
    /// `tandem_vrrp_transitions_total{router}`, `tandem_vrrp_adverts_sent_total{router}`,
    /// `tandem_vrrp_adverts_received_total{router}`,
    /// `tandem_vrrp_adverts_dropped_total{router,reason}`,
    /// `tandem_vrrp_send_errors_total{router}`,
    /// `tandem_vrrp_address_list_mismatches_total{router}`, `tandem_ha_track_up{track}`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let pair: [(&str, &str, &str, u64); 3] = [
            (
                "tandem_ha_role",
                "gauge",
                "1 while this box is the active one of the pair.",
                u64::from(self.role == Role::Active),
            ),
            (
                "tandem_ha_role_changes_total",
                "counter",
                "Changes of the pair's role on this box.",
                self.role_changes,
            ),
            (
                "tandem_ha_realtime",
                "gauge",
                "1 when the heartbeat thread runs SCHED_FIFO with memory locked.",
                u64::from(self.realtime),
            ),
        ];
        for (name, kind, help, value) in pair {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let per_router: [Family<RouterStatus>; 8] = [
            (
                "tandem_vrrp_state",
                "gauge",
                "RFC 5798 state: 0 initialize, 1 backup, 2 master.",
                |r| u64::from(r.state.metric()),
            ),
            (
                "tandem_vrrp_priority",
                "gauge",
                "Configured priority.",
                |r| u64::from(r.priority),
            ),
            (
                "tandem_vrrp_effective_priority",
                "gauge",
                "Priority as lowered by tracking.",
                |r| u64::from(r.effective_priority),
            ),
            (
                "tandem_vrrp_transitions_total",
                "counter",
                "State changes.",
                |r| r.transitions,
            ),
            (
                "tandem_vrrp_adverts_sent_total",
                "counter",
                "Adverts sent.",
                |r| r.adverts_sent,
            ),
            (
                "tandem_vrrp_adverts_received_total",
                "counter",
                "Adverts received and accepted.",
                |r| r.adverts_received,
            ),
            (
                "tandem_vrrp_send_errors_total",
                "counter",
                "Adverts the kernel refused to send.",
                |r| r.send_errors,
            ),
            (
                "tandem_vrrp_address_list_mismatches_total",
                "counter",
                "Adverts whose address list differs from ours.",
                |r| r.address_list_mismatches,
            ),
        ];
        for (name, kind, help, value) in per_router {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &self.routers {
                let _ = writeln!(out, "{name}{{router=\"{}\"}} {}", escape(&r.name), value(r));
            }
        }
        let name = "tandem_vrrp_adverts_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Received packets dropped, by reason (RFC 5798 §7.1).\n# TYPE {name} counter"
        );
        for r in &self.routers {
            for (reason, count) in &r.drops {
                let _ = writeln!(
                    out,
                    "{name}{{router=\"{}\",reason=\"{reason}\"}} {count}",
                    escape(&r.name)
                );
            }
        }
        for (reason, count) in &self.unattributed_drops {
            let _ = writeln!(out, "{name}{{router=\"\",reason=\"{reason}\"}} {count}");
        }
        let name = "tandem_ha_track_up";
        let _ = writeln!(
            out,
            "# HELP {name} 1 while a tracked object is up.\n# TYPE {name} gauge"
        );
        for t in &self.tracks {
            let _ = writeln!(
                out,
                "{name}{{track=\"{}\"}} {}",
                escape(&t.name),
                u8::from(t.up)
            );
        }
        out
    }
}

/// A metric family: name, type, help, and how to read its value.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> RouterStatus {
        RouterStatus {
            name: "front".into(),
            interface: "eth1".into(),
            vrid: 51,
            vips: vec!["10.0.0.100/24".parse().unwrap()],
            state: RouterState::Master,
            stepping_down: None,
            priority: 150,
            effective_priority: 100,
            faults: vec![],
            primary_address: Some("10.0.0.2".parse().unwrap()),
            master: Some("10.0.0.2".parse().unwrap()),
            last_transition: None,
            transitions: 3,
            adverts_sent: 42,
            adverts_received: 7,
            send_errors: 0,
            address_list_mismatches: 1,
            drops: vec![("ttl_not_255".into(), 2), ("bad_checksum".into(), 0)],
        }
    }

    #[test]
    fn prometheus_text_has_one_family_per_metric_and_labels_per_router_and_reason() {
        let status = HaStatus {
            role: Role::Active,
            role_changes: 2,
            routers: vec![router()],
            tracks: vec![TrackStatus {
                name: "link:eth1".into(),
                up: true,
            }],
            unattributed_drops: vec![("vrid_mismatch".into(), 5)],
            ..HaStatus::starting()
        };
        let text = status.render_prometheus();
        for line in [
            "tandem_ha_role 1",
            "tandem_ha_role_changes_total 2",
            "tandem_vrrp_state{router=\"front\"} 2",
            "tandem_vrrp_priority{router=\"front\"} 150",
            "tandem_vrrp_effective_priority{router=\"front\"} 100",
            "tandem_vrrp_transitions_total{router=\"front\"} 3",
            "tandem_vrrp_adverts_sent_total{router=\"front\"} 42",
            "tandem_vrrp_adverts_received_total{router=\"front\"} 7",
            "tandem_vrrp_adverts_dropped_total{router=\"front\",reason=\"ttl_not_255\"} 2",
            "tandem_vrrp_adverts_dropped_total{router=\"\",reason=\"vrid_mismatch\"} 5",
            "tandem_ha_track_up{track=\"link:eth1\"} 1",
            "# TYPE tandem_vrrp_transitions_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
