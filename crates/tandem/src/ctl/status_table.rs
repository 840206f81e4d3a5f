//! `tandemctl status` as tables, from the status document tandemd sends (`--json` shows it
//! raw). Fields a daemon does not send are shown as `-`, so an older daemon still prints.

use serde_json::Value;
use std::io::{self, Write};

pub fn print(status: &Value, out: &mut dyn Write) -> io::Result<()> {
    let version = &status["config"]["version"];
    writeln!(
        out,
        "box {}  role {}  up {}  config {}.{}-{}  ({} by {})",
        text(&status["node"]),
        text(&status["role"]),
        duration(status["uptime_seconds"].as_u64().unwrap_or(0)),
        text(&version["epoch"]),
        text(&version["n"]),
        version["hash"]
            .as_str()
            .map(|h| &h[..h.len().min(8)])
            .unwrap_or("-"),
        text(&status["config"]["reason"]),
        text(&status["config"]["author"]),
    )?;

    print_ha(&status["ha"], out)?;
    print_sync(&status["sync"], out)?;

    writeln!(out)?;
    let services = rows(&status["dataplane"]["services"], |s| {
        let t = &s["traffic"];
        vec![
            text(&s["name"]),
            text(&s["protocol"]),
            text(&s["listen"]),
            text(&t["active"]),
            text(&t["total"]),
            text(&t["requests"]),
            bytes(&t["bytes_in"]),
            bytes(&t["bytes_out"]),
            classes(&t["responses"]),
        ]
    });
    table(
        out,
        &[
            "SERVICE",
            "PROTO",
            "LISTEN",
            "ACTIVE",
            "CONNS",
            "REQUESTS",
            "IN",
            "OUT",
            "2xx/3xx/4xx/5xx",
        ],
        &services,
    )?;

    writeln!(out)?;
    let servers = rows(&status["dataplane"]["servers"], |s| {
        let t = &s["traffic"];
        vec![
            format!("{}/{}", text(&s["pool"]), text(&s["id"])),
            text(&s["address"]),
            text(&s["health"]),
            text(&s["admin"]),
            text(&s["weight"]),
            text(&t["active"]),
            text(&t["total"]),
            text(&t["requests"]),
            classes(&t["responses"]),
        ]
    });
    table(
        out,
        &[
            "SERVER",
            "ADDRESS",
            "HEALTH",
            "ADMIN",
            "WEIGHT",
            "ACTIVE",
            "CONNS",
            "REQUESTS",
            "2xx/3xx/4xx/5xx",
        ],
        &servers,
    )
}

/// The heartbeat: role, tracked objects, then per router its state, priorities, the current
/// Master, adverts, the last transition with its time and reason, and dropped adverts.
fn print_ha(ha: &Value, out: &mut dyn Write) -> io::Result<()> {
    if !ha.is_object() {
        return Ok(());
    }
    writeln!(out)?;
    let tracks: Vec<String> = ha["tracks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    let state = if t["up"] == Value::Bool(true) {
                        "up"
                    } else {
                        "DOWN"
                    };
                    format!("{} {state}", text(&t["name"]))
                })
                .collect()
        })
        .unwrap_or_default();
    writeln!(
        out,
        "ha  role {} ({} changes){}  realtime {}",
        text(&ha["role"]),
        text(&ha["role_changes"]),
        if ha["yielding"] == Value::Bool(true) {
            "  yielding after a handover"
        } else {
            ""
        },
        if ha["realtime"] == Value::Bool(true) {
            "yes"
        } else {
            "no"
        },
    )?;
    writeln!(
        out,
        "tracked: {}",
        if tracks.is_empty() {
            "-".to_owned()
        } else {
            tracks.join(", ")
        }
    )?;
    writeln!(out)?;
    let empty = Vec::new();
    let routers = ha["routers"].as_array().unwrap_or(&empty);
    let table_rows: Vec<Vec<String>> = routers
        .iter()
        .map(|r| {
            let vips: Vec<String> = r["vips"]
                .as_array()
                .map(|v| v.iter().map(text).collect())
                .unwrap_or_default();
            vec![
                text(&r["name"]),
                text(&r["interface"]),
                text(&r["vrid"]),
                text(&r["state"]),
                format!(
                    "{}/{}",
                    text(&r["priority"]),
                    text(&r["effective_priority"])
                ),
                text(&r["master"]),
                format!(
                    "{}/{}",
                    text(&r["adverts_sent"]),
                    text(&r["adverts_received"])
                ),
                drops_total(&r["drops"]).to_string(),
                vips.join(" "),
            ]
        })
        .collect();
    table(
        out,
        &[
            "ROUTER",
            "IFACE",
            "VRID",
            "STATE",
            "PRIO/EFF",
            "MASTER",
            "SENT/RECV",
            "DROPPED",
            "VIPS",
        ],
        &table_rows,
    )?;
    for r in routers {
        let name = text(&r["name"]);
        let t = &r["last_transition"];
        if t.is_object() {
            writeln!(
                out,
                "  {name}: {} -> {} at {}: {}",
                text(&t["from"]),
                text(&t["to"]),
                text(&t["at"]),
                text(&t["reason"])
            )?;
        }
        if let Some(why) = r["stepping_down"].as_str() {
            writeln!(out, "  {name}: stepping down ({why})")?;
        }
        if let Some(faults) = r["faults"].as_array().filter(|f| !f.is_empty()) {
            let faults: Vec<String> = faults.iter().map(text).collect();
            writeln!(out, "  {name}: held passive by {}", faults.join(", "))?;
        }
        if let Some(drops) = r["drops"].as_object() {
            let nonzero: Vec<String> = drops
                .iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(reason, n)| format!("{reason} {}", text(n)))
                .collect();
            if !nonzero.is_empty() {
                writeln!(out, "  {name}: dropped {}", nonzero.join(", "))?;
            }
        }
    }
    if let Some(drops) = ha["unattributed_drops"]
        .as_object()
        .filter(|d| !d.is_empty())
    {
        let all: Vec<String> = drops
            .iter()
            .map(|(reason, n)| format!("{reason} {}", text(n)))
            .collect();
        writeln!(out, "  dropped before any router: {}", all.join(", "))?;
    }
    Ok(())
}

/// The sync link: this box's fingerprint (to pin on the peer), the peer and whether it is
/// connected, the config version on each box, lag, the last snapshot, entries per table and
/// the refusals. Nothing on a box without a link.
fn print_sync(sync: &Value, out: &mut dyn Write) -> io::Result<()> {
    if !sync.is_object() {
        return Ok(());
    }
    let peer = &sync["peer"];
    writeln!(out)?;
    writeln!(
        out,
        "sync  peer {} {}  {}  {}  direction {}",
        if peer.is_object() {
            text(&peer["node"])
        } else {
            "?".to_owned()
        },
        text(&sync["peer_address"]),
        if sync["connected"] == Value::Bool(true) {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        if sync["dials"] == Value::Bool(true) {
            "dials"
        } else {
            "listens"
        },
        text(&sync["direction"]),
    )?;
    writeln!(out, "fingerprint {}", text(&sync["fingerprint"]))?;
    let config = &sync["config"];
    writeln!(
        out,
        "config  this box {}  peer {}  {}",
        version_id(&config["local"]),
        version_id(&config["peer"]),
        if config["same"] == Value::Bool(true) {
            "same"
        } else {
            "DIFFERENT"
        },
    )?;
    let lag = &sync["lag"];
    writeln!(
        out,
        "lag {} ms  {} entries  p99 {} ms",
        text(&lag["ms"]),
        text(&lag["entries"]),
        lag["p99_ms"]
            .as_f64()
            .map_or("-".to_owned(), |v| format!("{v:.1}")),
    )?;
    let snap = &sync["last_snapshot"];
    if snap.is_object() {
        writeln!(
            out,
            "last snapshot {}  {} entries  {}  {:.1} ms  at {}",
            if snap["sent"] == Value::Bool(true) {
                "sent"
            } else {
                "received"
            },
            text(&snap["entries"]),
            bytes(&snap["bytes"]),
            snap["duration_ms"].as_f64().unwrap_or(0.0),
            text(&snap["at_unix"]),
        )?;
    } else {
        writeln!(out, "last snapshot -")?;
    }
    let tables: Vec<String> = sync["tables"]
        .as_object()
        .map(|t| t.iter().map(|(k, v)| format!("{k} {}", text(v))).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "entries: {}",
        if tables.is_empty() {
            "-".to_owned()
        } else {
            tables.join(", ")
        }
    )?;
    let c = &sync["counters"];
    writeln!(
        out,
        "refused peers {}  malformed frames {}  reconnects {}  branches kept {}",
        text(&sync["refused_peers"]),
        text(&c["malformed_frames"]),
        text(&sync["reconnects"]),
        text(&config["branches_kept"]),
    )?;
    if let Some(e) = sync["last_error"].as_str() {
        writeln!(out, "last error: {e}")?;
    }
    Ok(())
}

/// `epoch.n-hash8`, as the header line shows a version.
fn version_id(v: &Value) -> String {
    if !v.is_object() {
        return "-".to_owned();
    }
    format!(
        "{}.{}-{}",
        text(&v["epoch"]),
        text(&v["n"]),
        v["hash"]
            .as_str()
            .map(|h| &h[..h.len().min(8)])
            .unwrap_or("-")
    )
}

fn drops_total(drops: &Value) -> u64 {
    drops
        .as_object()
        .map(|d| d.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn rows(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| items.iter().map(row).collect())
        .unwrap_or_default()
}

fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn classes(v: &Value) -> String {
    match v.as_array() {
        // [1xx, 2xx, 3xx, 4xx, 5xx]; 1xx is rarely of interest.
        Some(c) if c.len() == 5 => c[1..].iter().map(text).collect::<Vec<_>>().join("/"),
        _ => "-".to_owned(),
    }
}

fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return "-".to_owned();
    };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_services_and_servers_as_aligned_tables() {
        let status = serde_json::json!({
            "node": "lb-a", "role": "standalone", "uptime_seconds": 3725,
            "config": {"version": {"epoch": 1, "n": 4, "hash": "f415d9cad856"}, "author": "root", "reason": "apply"},
            "dataplane": {
                "services": [{"name": "web", "protocol": "http", "listen": "10.0.0.1:80",
                    "traffic": {"active": 3, "total": 10, "requests": 42, "bytes_in": 2048, "bytes_out": 5,
                                "responses": [0, 40, 0, 1, 1]}}],
                "servers": [{"pool": "web", "id": "web1", "address": "10.0.1.1:80", "health": "up",
                    "admin": "drain", "weight": 2,
                    "traffic": {"active": 1, "total": 5, "requests": 20, "responses": [0, 20, 0, 0, 0]}}]
            }
        });
        let mut out = Vec::new();
        print(&status, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("box lb-a  role standalone  up 1h2m  config 1.4-f415d9ca"),
            "{out}"
        );
        assert!(
            out.contains(
                "web      http   10.0.0.1:80  3       10     42        2.0KiB  5B   40/0/1/1"
            ),
            "{out}"
        );
        assert!(
            out.contains("web/web1  10.0.1.1:80  up      drain  2"),
            "{out}"
        );
        assert!(
            !out.contains("ROUTER"),
            "a standalone box has no HA table: {out}"
        );
    }

    #[test]
    fn prints_the_role_and_each_router_with_its_last_transition_and_drops() {
        let status = serde_json::json!({
            "node": "lb-a", "role": "active", "uptime_seconds": 5,
            "config": {"version": {"epoch": 1, "n": 1, "hash": "ab"}, "author": "a", "reason": "r"},
            "ha": {
                "role": "active", "role_changes": 1, "yielding": false, "realtime": true,
                "tracks": [{"name": "dataplane", "up": true}, {"name": "pool:web", "up": false}],
                "routers": [{
                    "name": "front", "interface": "eth0", "vrid": 51, "vips": ["10.0.0.100/24"],
                    "state": "master", "stepping_down": null, "priority": 200, "effective_priority": 200,
                    "faults": [], "master": "10.0.0.2", "adverts_sent": 120, "adverts_received": 3,
                    "last_transition": {"from": "backup", "to": "master", "at": "2025-01-01T00:00:00.000Z",
                        "reason": "master down timer fired"},
                    "drops": {"ttl_not_255": 2, "bad_checksum": 0}
                }],
                "unattributed_drops": {}
            },
            "dataplane": {"services": [], "servers": []}
        });
        let mut out = Vec::new();
        print(&status, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("box lb-a  role active"), "{out}");
        assert!(
            out.contains("ha  role active (1 changes)  realtime yes"),
            "{out}"
        );
        assert!(
            out.contains("tracked: dataplane up, pool:web DOWN"),
            "{out}"
        );
        assert!(
            out.contains(
                "front   eth0   51    master  200/200   10.0.0.2  120/3      2        10.0.0.100/24"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "  front: backup -> master at 2025-01-01T00:00:00.000Z: master down timer fired"
            ),
            "{out}"
        );
        assert!(out.contains("  front: dropped ttl_not_255 2"), "{out}");
    }

    #[test]
    fn prints_the_sync_link_with_both_versions_and_the_fingerprint() {
        let status = serde_json::json!({
            "node": "lb-b", "role": "passive", "uptime_seconds": 5,
            "config": {"version": {"epoch": 2, "n": 3, "hash": "abcdef0123"}, "author": "a", "reason": "r"},
            "sync": {
                "fingerprint": "sha256:00ff", "peer_address": "10.0.0.2:7420", "dials": false,
                "connected": true, "direction": "reader",
                "peer": {"node": "lb-a", "management": "127.0.0.1:9443", "role": "active"},
                "config": {"local": {"epoch": 2, "n": 3, "hash": "abcdef0123"},
                           "peer": {"epoch": 2, "n": 3, "hash": "abcdef0123"}, "same": true, "branches_kept": 1},
                "lag": {"ms": 0, "entries": 0, "p99_ms": 1.5},
                "last_snapshot": {"sent": false, "entries": 12, "bytes": 2048, "duration_ms": 3.0, "at_unix": 100},
                "tables": {"persistence": 2, "servers": 4},
                "counters": {"malformed_frames": 0},
                "refused_peers": 3, "reconnects": 1, "last_error": null
            },
            "dataplane": {"services": [], "servers": []}
        });
        let mut out = Vec::new();
        print(&status, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("sync  peer lb-a 10.0.0.2:7420  connected  listens  direction reader"),
            "{out}"
        );
        assert!(out.contains("fingerprint sha256:00ff"), "{out}");
        assert!(
            out.contains("config  this box 2.3-abcdef01  peer 2.3-abcdef01  same"),
            "{out}"
        );
        assert!(out.contains("lag 0 ms  0 entries  p99 1.5 ms"), "{out}");
        assert!(
            out.contains("last snapshot received  12 entries  2.0KiB  3.0 ms  at 100"),
            "{out}"
        );
        assert!(out.contains("entries: persistence 2, servers 4"), "{out}");
        assert!(
            out.contains("refused peers 3  malformed frames 0  reconnects 1  branches kept 1"),
            "{out}"
        );
    }
}
