//! `shared.alerts`: where the pair reports what an operator must know — remote syslog
//! (RFC 5424 over UDP or TCP) and webhooks (a JSON POST) — and the bounds that raise an alert.
//! Shared, so both boxes report to the same places whichever is active.

use crate::SharedConfig;
use crate::diagnostic::Diagnostic;
use crate::load::at_path;
use crate::source_map::{DocPath, SourceMap};
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syslog: Vec<SyslogTarget>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// A sync lag above this raises `sync.lag`.
    #[serde(default = "default_lag")]
    pub sync_lag_max: Duration,
    /// A certificate that expires within this raises `certificate.expiring` (once a day).
    #[serde(default = "default_cert_warning")]
    pub certificate_warning: Duration,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            syslog: Vec::new(),
            webhooks: Vec::new(),
            sync_lag_max: default_lag(),
            certificate_warning: default_cert_warning(),
        }
    }
}

impl Alerts {
    pub fn is_default(&self) -> bool {
        *self == Alerts::default()
    }
}

pub(crate) fn alerts_is_default(a: &Alerts) -> bool {
    a.is_default()
}

fn default_lag() -> Duration {
    Duration::from_secs(5)
}

fn default_cert_warning() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// A remote syslog receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTarget {
    pub address: SocketAddr,
    #[serde(default)]
    pub transport: SyslogTransport,
    /// RFC 5424 facility number, 0 to 23; default 16 (local0).
    #[serde(default = "default_facility")]
    pub facility: u8,
}

fn default_facility() -> u8 {
    16
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// RFC 5426: one message per datagram.
    #[default]
    Udp,
    /// RFC 6587 octet counting over one kept connection.
    Tcp,
}

/// A webhook: each alert is POSTed as a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    /// `http://host:port/path`. (Plain HTTP on the management network; put a TLS-terminating
    /// relay in front of a receiver on another network.)
    pub url: String,
    /// Only these events; empty: every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

/// Every event an alert can report.
pub const ALERT_EVENTS: [&str; 8] = [
    "failover",
    "server.down",
    "server.up",
    "sync.down",
    "sync.up",
    "sync.lag",
    "certificate.expiring",
    "config.committed",
];

/// A webhook URL split into what a plain HTTP/1.1 client needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` as written (for the Host header).
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// From the first `/`; `/` when none.
    pub path: String,
}

/// Parses an `http://` URL (no user info, no fragment).
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` does not start with `http://`"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}` has no host, or has user info"));
    }
    if path.contains('#') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "`{url}` has a fragment, a space or a control character"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[`"))?;
        (h.to_owned(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (authority.to_owned(), ""),
        }
    };
    let port = if port.is_empty() {
        80
    } else {
        port.parse()
            .map_err(|_| format!("`{url}`: `{port}` is not a port"))?
    };
    if host.is_empty() || port == 0 {
        return Err(format!("`{url}` has no host or port 0"));
    }
    Ok(HttpUrl {
        authority: authority.to_owned(),
        host,
        port,
        path: path.to_owned(),
    })
}

pub(crate) fn validate_shared(shared: &SharedConfig, map: &SourceMap) -> Vec<Diagnostic> {
    let mut items = Vec::new();
    let mut add = |path: &DocPath, message: String, hint: &str| {
        items.push(at_path(map, path, message, hint));
    };
    let at = DocPath::root().key("shared").key("alerts");
    let a = &shared.alerts;
    for (i, s) in a.syslog.iter().enumerate() {
        if s.address.port() == 0 {
            add(
                &at.key("syslog").index(i).key("address"),
                "port 0 cannot be sent to".into(),
                "give the receiver's port, usually 514",
            );
        }
        if s.facility > 23 {
            add(
                &at.key("syslog").index(i).key("facility"),
                format!("facility {} is outside 0..23", s.facility),
                "16 to 23 are local0 to local7 (RFC 5424 §6.2.1)",
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, w) in a.webhooks.iter().enumerate() {
        let wat = at.key("webhooks").index(i);
        if !crate::validate::is_name(&w.name) {
            add(
                &wat.key("name"),
                format!("`{}` is not a valid webhook name", w.name),
                "use letters, digits, `-` and `_` (1 to 64 characters)",
            );
        } else if !names.insert(w.name.as_str()) {
            add(
                &wat.key("name"),
                format!("there is already a webhook named `{}`", w.name),
                "give each webhook its own name",
            );
        }
        if let Err(e) = parse_http_url(&w.url) {
            add(
                &wat.key("url"),
                e,
                "write it like `http://192.0.2.20:8080/hooks/tandem`",
            );
        }
        for (j, ev) in w.events.iter().enumerate() {
            if !ALERT_EVENTS.contains(&ev.as_str()) {
                add(
                    &wat.key("events").index(j),
                    format!("`{ev}` is not an alert event"),
                    &format!("use some of: {}", ALERT_EVENTS.join(", ")),
                );
            }
        }
    }
    if a.sync_lag_max.is_zero() {
        add(
            &at.key("sync_lag_max"),
            "the sync lag bound is zero".into(),
            "e.g. `5s`",
        );
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let u = parse_http_url("http://192.0.2.20:8080/hooks/x?a=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("192.0.2.20", 8080, "/hooks/x?a=1")
        );
        let u = parse_http_url("http://[2001:db8::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 80));
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://u@x/").is_err());
        assert!(parse_http_url("http://x/a b").is_err());
        assert!(parse_http_url("http://x:0/").is_err());
    }
}
