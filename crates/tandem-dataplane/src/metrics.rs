//! The Prometheus text exposition format (version 0.0.4) of a [`StatsSnapshot`].

use crate::health::Health;
use crate::stats::{LATENCY_BUCKETS, StatsSnapshot, TrafficSnapshot};
use std::fmt::Write;
use tandem_config::AdminState;

/// Appends every metric of `stats` to `out`, each family with its `# HELP` and `# TYPE`.
pub fn render_prometheus(stats: &StatsSnapshot, out: &mut String) {
    let svc_labels: Vec<String> = stats
        .services
        .iter()
        .map(|s| format!("service=\"{}\"", escape(&s.name)))
        .collect();
    let srv_labels: Vec<String> = stats
        .servers
        .iter()
        .map(|s| format!("pool=\"{}\",server=\"{}\"", escape(&s.pool), escape(&s.id)))
        .collect();

    let svc = stats.services.iter().zip(&svc_labels);
    traffic_families(
        out,
        "service",
        svc.clone().map(|(s, l)| (&s.traffic, l.as_str())),
    );
    for (name, help, get) in [
        (
            "refused_max_connections",
            "Connections refused because the service's max_connections was reached.",
            (|s| s.refused_max_connections) as fn(&crate::stats::ServiceStats) -> u64,
        ),
        (
            "refused_connection_rate",
            "Connections refused by the per-source connection rate.",
            |s| s.refused_connection_rate,
        ),
        (
            "refused_request_rate",
            "Requests refused (429) by the per-source request rate.",
            |s| s.refused_request_rate,
        ),
        (
            "no_server",
            "Sessions refused because no server was available.",
            |s| s.no_server,
        ),
        (
            "udp_flows_evicted",
            "UDP flows evicted because the flow table was full.",
            |s| s.udp_flows_evicted,
        ),
        (
            "http_malformed",
            "HTTP requests refused for their framing or syntax (400, 501, 505).",
            |s| s.http_malformed,
        ),
        (
            "http_header_timeouts",
            "HTTP requests cut off by the header read timeout (408).",
            |s| s.http_header_timeouts,
        ),
        (
            "http_too_large",
            "HTTP requests refused for their head (431, 414) or body (413) size.",
            |s| s.http_too_large,
        ),
    ] {
        family(
            out,
            &format!("tandem_service_{name}_total"),
            help,
            "counter",
        );
        for (s, l) in svc.clone() {
            sample(out, &format!("tandem_service_{name}_total"), l, get(s));
        }
    }

    let srv = stats.servers.iter().zip(&srv_labels);
    traffic_families(
        out,
        "server",
        srv.clone().map(|(s, l)| (&s.traffic, l.as_str())),
    );
    family(
        out,
        "tandem_server_up",
        "1 when the server's health checks pass (or it has none), 0 when down or not checked yet.",
        "gauge",
    );
    for (s, l) in srv.clone() {
        sample(
            out,
            "tandem_server_up",
            l,
            u64::from(s.health == Health::Up),
        );
    }
    family(
        out,
        "tandem_server_health",
        "The server's health state (1 for the current one).",
        "gauge",
    );
    for (s, l) in srv.clone() {
        for h in [Health::Unchecked, Health::Up, Health::Down] {
            sample(
                out,
                "tandem_server_health",
                &format!("{l},state=\"{}\"", h.as_str()),
                u64::from(s.health == h),
            );
        }
    }
    family(
        out,
        "tandem_server_admin_state",
        "The server's admin state (1 for the current one).",
        "gauge",
    );
    for (s, l) in srv.clone() {
        for a in [AdminState::Enabled, AdminState::Drain, AdminState::Disabled] {
            sample(
                out,
                "tandem_server_admin_state",
                &format!("{l},state=\"{}\"", a.as_str()),
                u64::from(s.admin == a),
            );
        }
    }
    family(
        out,
        "tandem_server_weight",
        "The server's configured weight.",
        "gauge",
    );
    for (s, l) in srv.clone() {
        sample(out, "tandem_server_weight", l, u64::from(s.weight));
    }
    family(
        out,
        "tandem_health_transitions_total",
        "Health state changes of the server.",
        "counter",
    );
    for (s, l) in srv.clone() {
        sample(
            out,
            "tandem_health_transitions_total",
            l,
            s.health_transitions,
        );
    }
    family(
        out,
        "tandem_health_checks_failed_total",
        "Failed health checks of the server.",
        "counter",
    );
    for (s, l) in srv.clone() {
        sample(out, "tandem_health_checks_failed_total", l, s.checks_failed);
    }
    family(
        out,
        "tandem_server_connect_failures_total",
        "Connections to the server that failed to open.",
        "counter",
    );
    for (s, l) in srv {
        sample(
            out,
            "tandem_server_connect_failures_total",
            l,
            s.connect_failures,
        );
    }
}

fn traffic_families<'a>(
    out: &mut String,
    kind: &str,
    rows: impl Iterator<Item = (&'a TrafficSnapshot, &'a str)> + Clone,
) {
    let p = format!("tandem_{kind}");
    family(
        out,
        &format!("{p}_connections_active"),
        "Connections (UDP: flows) open now.",
        "gauge",
    );
    for (t, l) in rows.clone() {
        sample(out, &format!("{p}_connections_active"), l, t.active);
    }
    for (name, help, get) in [
        (
            "connections_total",
            "Connections (UDP: flows) opened.",
            (|t| t.total) as fn(&TrafficSnapshot) -> u64,
        ),
        (
            "requests_total",
            "Requests (HTTP) or datagrams from clients (UDP).",
            |t| t.requests,
        ),
        (
            "bytes_in_total",
            "Bytes in the request direction (client to server).",
            |t| t.bytes_in,
        ),
        (
            "bytes_out_total",
            "Bytes in the response direction (server to client).",
            |t| t.bytes_out,
        ),
    ] {
        family(out, &format!("{p}_{name}"), help, "counter");
        for (t, l) in rows.clone() {
            sample(out, &format!("{p}_{name}"), l, get(t));
        }
    }
    family(
        out,
        &format!("{p}_responses_total"),
        "HTTP responses by status class.",
        "counter",
    );
    for (t, l) in rows.clone() {
        for (i, n) in t.responses.iter().enumerate() {
            sample(
                out,
                &format!("{p}_responses_total"),
                &format!("{l},code=\"{}xx\"", i + 1),
                *n,
            );
        }
    }
    let h = format!("{p}_response_duration_seconds");
    family(out, &h, "Time from request to response head.", "histogram");
    for (t, l) in rows {
        for (i, c) in t.latency.cumulative.iter().enumerate() {
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            sample(out, &format!("{h}_bucket"), &format!("{l},le=\"{le}\""), *c);
        }
        let _ = writeln!(out, "{h}_sum{{{l}}} {}", t.latency.sum_seconds);
        sample(out, &format!("{h}_count"), l, t.latency.count);
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ServerStats, ServiceStats, TrafficCounters};
    use std::time::Duration;

    fn stats() -> StatsSnapshot {
        let t = TrafficCounters::default();
        t.connection_opened();
        t.add_bytes_in(100);
        t.observe_response(200, Duration::from_millis(20));
        t.observe_response(502, Duration::from_millis(700));
        StatsSnapshot {
            services: vec![ServiceStats {
                name: "we\"b\\x\n".into(),
                protocol: tandem_config::Protocol::Http,
                listen: "127.0.0.1:80".parse().unwrap(),
                traffic: t.snapshot(),
                refused_max_connections: 2,
                refused_connection_rate: 0,
                refused_request_rate: 0,
                no_server: 0,
                udp_flows_evicted: 0,
                http_malformed: 0,
                http_header_timeouts: 0,
                http_too_large: 0,
            }],
            servers: vec![ServerStats {
                pool: "web".into(),
                id: "web1".into(),
                address: "127.0.0.1:8080".parse().unwrap(),
                weight: 3,
                admin: AdminState::Drain,
                health: Health::Up,
                traffic: t.snapshot(),
                connect_failures: 1,
                health_transitions: 4,
                checks_failed: 5,
            }],
        }
    }

    #[test]
    fn renders_valid_exposition_text() {
        let mut out = String::new();
        render_prometheus(&stats(), &mut out);
        let svc = r#"service="we\"b\\x\n""#;
        assert!(
            out.contains(&format!("tandem_service_connections_active{{{svc}}} 1\n")),
            "{out}"
        );
        assert!(out.contains(&format!("tandem_service_bytes_in_total{{{svc}}} 100\n")));
        assert!(out.contains(&format!(
            "tandem_service_refused_max_connections_total{{{svc}}} 2\n"
        )));
        assert!(out.contains("tandem_server_up{pool=\"web\",server=\"web1\"} 1\n"));
        assert!(out.contains(
            "tandem_server_admin_state{pool=\"web\",server=\"web1\",state=\"drain\"} 1\n"
        ));
        assert!(out.contains("tandem_health_transitions_total{pool=\"web\",server=\"web1\"} 4\n"));
        assert!(out.contains(
            "tandem_server_responses_total{pool=\"web\",server=\"web1\",code=\"5xx\"} 1\n"
        ));
        assert!(out.contains("tandem_server_response_duration_seconds_bucket{pool=\"web\",server=\"web1\",le=\"0.025\"} 1\n"));
        assert!(out.contains("tandem_server_response_duration_seconds_bucket{pool=\"web\",server=\"web1\",le=\"1\"} 2\n"));
        assert!(out.contains("tandem_server_response_duration_seconds_bucket{pool=\"web\",server=\"web1\",le=\"+Inf\"} 2\n"));
        assert!(out.contains(
            "tandem_server_response_duration_seconds_count{pool=\"web\",server=\"web1\"} 2\n"
        ));
        assert!(out.contains("# TYPE tandem_server_response_duration_seconds histogram\n"));

        // Every sample line belongs to a family announced before it, announced once.
        let mut families = std::collections::HashSet::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(
                    families.insert(rest.split(' ').next().unwrap().to_owned()),
                    "twice: {line}"
                );
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| families.contains(*b)))
                    .unwrap_or(name);
                assert!(families.contains(base), "no TYPE before {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }
}
