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
    }
}
