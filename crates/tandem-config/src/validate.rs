//! The semantic checks that types alone cannot express: names that must be unique, references
//! that must exist, settings that only make sense for some protocols, ranges. Every problem
//! found is reported, not just the first.

use crate::certificate::{parse_chain, parse_key};
use crate::diagnostic::Diagnostic;
use crate::load::at_path;
use crate::pool::{HealthCheck, Pool};
use crate::service::{Persistence, Protocol, Service};
use crate::source_map::{DocPath, SourceMap};
use crate::units::{ByteSize, Duration};
use crate::{Certificate, Config, SharedConfig};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) fn config(config: &Config, map: &SourceMap) -> Vec<Diagnostic> {
    let mut c = Checker {
        map,
        items: Vec::new(),
    };
    c.node(config);
    c.shared(&config.shared);
    c.items.extend(crate::vrrp::validate_node(config, c.map));
    c.items.extend(crate::sync::validate_node(config, c.map));
    c.items
}

pub(crate) fn shared(shared: &SharedConfig, map: &SourceMap) -> Vec<Diagnostic> {
    let mut c = Checker {
        map,
        items: Vec::new(),
    };
    c.shared(shared);
    c.items
}

struct Checker<'a> {
    map: &'a SourceMap,
    items: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn problem(&mut self, path: &DocPath, message: impl Into<String>, hint: impl AsRef<str>) {
        self.items
            .push(at_path(self.map, path, message.into(), hint.as_ref()));
    }

    fn node(&mut self, config: &Config) {
        let node = DocPath::root().key("node");
        let n = &config.node;
        if !is_hostname(&n.name) {
            self.problem(
                &node.key("name"),
                format!("`{}` is not a valid box name", n.name),
                "use letters, digits and `-`, 1 to 63 characters, e.g. `lb-a`",
            );
        }
        let mgmt = node.key("management");
        if n.management.listen.port() == 0 {
            self.problem(
                &mgmt.key("listen"),
                "the management listener has port 0",
                "give a real port, e.g. `127.0.0.1:9443`",
            );
        }
        if n.management.cert_file.is_some() != n.management.key_file.is_some() {
            self.problem(
                &mgmt,
                "only one of `cert_file` and `key_file` is given",
                "give both, or neither to use the generated self-signed certificate",
            );
        }
        if let Some(token) = &n.management.metrics.token_sha256
            && (token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            self.problem(
                &mgmt.key("metrics").key("token_sha256"),
                "`token_sha256` is not a hex SHA-256",
                "write the 64 hex digits printed by `printf %s TOKEN | sha256sum`",
            );
        }
        for (i, svc) in config.shared.services.iter().enumerate() {
            if svc.protocol.is_stream() && overlaps(svc.listen, n.management.listen) {
                self.problem(
                    &DocPath::root()
                        .key("shared")
                        .key("services")
                        .index(i)
                        .key("listen"),
                    format!(
                        "service `{}` listens on the management address {}",
                        svc.name, n.management.listen
                    ),
                    "the console never shares a listener with a VIP: choose another address or port",
                );
            }
        }
    }

    fn shared(&mut self, shared: &SharedConfig) {
        let root = DocPath::root().key("shared");
        let pools: HashMap<&str, &Pool> =
            shared.pools.iter().map(|p| (p.name.as_str(), p)).collect();
        let certs: HashMap<&str, &Certificate> = shared
            .certificates
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();

        self.unique_names(
            &root.key("services"),
            shared.services.iter().map(|s| s.name.as_str()),
            "service",
        );
        self.unique_names(
            &root.key("pools"),
            shared.pools.iter().map(|p| p.name.as_str()),
            "pool",
        );
        self.unique_names(
            &root.key("certificates"),
            shared.certificates.iter().map(|c| c.name.as_str()),
            "certificate",
        );

        let mut listeners: HashMap<(bool, SocketAddr), &str> = HashMap::new();
        for (i, svc) in shared.services.iter().enumerate() {
            let at = root.key("services").index(i);
            self.service(svc, &at, &pools, &certs);
            let key = (svc.protocol.is_stream(), svc.listen);
            if let Some(other) = listeners
                .iter()
                .find(|((stream, addr), _)| *stream == key.0 && overlaps(*addr, svc.listen))
                .map(|(_, name)| *name)
            {
                self.problem(
                    &at.key("listen"),
                    format!(
                        "service `{}` listens on {} like service `{other}`",
                        svc.name, svc.listen
                    ),
                    "give each service its own address and port",
                );
            } else {
                listeners.insert(key, &svc.name);
            }
        }
        for (i, pool) in shared.pools.iter().enumerate() {
            self.pool(pool, &root.key("pools").index(i), &certs);
        }
        for (i, cert) in shared.certificates.iter().enumerate() {
            self.certificate(cert, &root.key("certificates").index(i));
        }
        self.items
            .extend(crate::vrrp::validate_shared(shared, self.map));
        self.items
            .extend(crate::users::validate_shared(shared, self.map));
        self.items
            .extend(crate::alerts::validate_shared(shared, self.map));
    }

    fn unique_names<'n>(
        &mut self,
        list: &DocPath,
        names: impl Iterator<Item = &'n str>,
        what: &str,
    ) {
        let mut seen = HashSet::new();
        for (i, name) in names.enumerate() {
            let at = list.index(i).key("name");
            if !is_name(name) {
                self.problem(
                    &at,
                    format!("`{name}` is not a valid {what} name"),
                    "use letters, digits, `-` and `_` (1 to 64 characters)",
                );
            } else if !seen.insert(name) {
                self.problem(
                    &at,
                    format!("there is already a {what} named `{name}`"),
                    format!("give each {what} its own name"),
                );
            }
        }
    }

    fn service(
        &mut self,
        svc: &Service,
        at: &DocPath,
        pools: &HashMap<&str, &Pool>,
        certs: &HashMap<&str, &Certificate>,
    ) {
        let proto = svc.protocol;
        let only_for = |setting: &str, protos: &str| {
            (
                format!(
                    "`{setting}` does not apply to a `{}` service",
                    proto.as_str()
                ),
                format!("remove it, or set `protocol` to {protos}"),
            )
        };
        if svc.listen.port() == 0 {
            self.problem(
                &at.key("listen"),
                "port 0 cannot be listened on",
                "give the service's port, e.g. `10.0.0.10:443`",
            );
        }
        match &svc.pool {
            Some(pool) if !pools.contains_key(pool.as_str()) => self.problem(
                &at.key("pool"),
                format!("no pool named `{pool}`"),
                format!(
                    "define it under `shared.pools`, or use one of: {}",
                    list(pools.keys())
                ),
            ),
            None if svc.redirect_to_https.is_none() => self.problem(
                at,
                format!("service `{}` has no `pool`", svc.name),
                "add `pool: NAME` naming one of `shared.pools`",
            ),
            _ => {}
        }
        if !svc.routes.is_empty() && !proto.is_http() {
            let (m, h) = only_for("routes", "`http` or `https`");
            self.problem(&at.key("routes"), m, h);
        }
        for (i, route) in svc.routes.iter().enumerate() {
            let r = at.key("routes").index(i);
            if !pools.contains_key(route.pool.as_str()) {
                self.problem(
                    &r.key("pool"),
                    format!("no pool named `{}`", route.pool),
                    format!(
                        "define it under `shared.pools`, or use one of: {}",
                        list(pools.keys())
                    ),
                );
            }
            if let Some(host) = &route.host
                && !is_host_pattern(host)
            {
                self.problem(
                    &r.key("host"),
                    format!("`{host}` is not a host name or `*.domain` pattern"),
                    "write a host like `app.example.org` or `*.example.org`, without port or scheme",
                );
            }
            if let Some(prefix) = &route.path_prefix
                && !prefix.starts_with('/')
            {
                self.problem(
                    &r.key("path_prefix"),
                    format!("`{prefix}` does not start with `/`"),
                    "write the prefix like `/api/`",
                );
            }
            if let Some(h) = &route.header
                && !is_token(&h.name)
            {
                self.problem(
                    &r.key("header").key("name"),
                    format!("`{}` is not a valid header name", h.name),
                    "use letters, digits and `-`, e.g. `X-Tenant`",
                );
            }
        }
        if let Some(r) = &svc.redirect_to_https {
            if proto != Protocol::Http {
                let (m, h) = only_for("redirect_to_https", "`http`");
                self.problem(&at.key("redirect_to_https"), m, h);
            }
            if ![301, 302, 307, 308].contains(&r.status) {
                self.problem(
                    &at.key("redirect_to_https").key("status"),
                    format!("{} is not a redirect status", r.status),
                    "use 301, 302, 307 or 308",
                );
            }
        }
        match (&svc.tls, proto) {
            (Some(_), p) if p != Protocol::Https => {
                let (m, h) = only_for("tls", "`https`");
                self.problem(&at.key("tls"), m, h);
            }
            (Some(tls), _) => {
                for (i, name) in tls.certificates.iter().enumerate() {
                    let c = at.key("tls").key("certificates").index(i);
                    match certs.get(name.as_str()) {
                        None => self.problem(
                            &c,
                            format!("no certificate named `{name}`"),
                            format!(
                                "add it under `shared.certificates`, or use one of: {}",
                                list(certs.keys())
                            ),
                        ),
                        Some(cert) if cert.key_pem.is_none() => self.problem(
                            &c,
                            format!("certificate `{name}` has no private key"),
                            "give its `key_pem` or `key_file`; a service needs the key to serve it",
                        ),
                        Some(_) => {}
                    }
                }
            }
            _ => {}
        }
        if let Some(p) = &svc.persistence {
            let pat = at.key("persistence");
            match p {
                Persistence::Cookie(c) => {
                    if !proto.is_http() {
                        self.problem(
                            &pat.key("cookie"),
                            format!(
                                "cookie persistence needs HTTP, but this is a `{}` service",
                                proto.as_str()
                            ),
                            "use `source` persistence, or set `protocol` to `http` or `https`",
                        );
                    }
                    if !is_token(&c.name) {
                        self.problem(
                            &pat.key("cookie").key("name"),
                            format!("`{}` is not a valid cookie name", c.name),
                            "use letters, digits, `-` and `_`",
                        );
                    }
                }
                Persistence::Source(s) => {
                    if s.mask_v4 == 0 || s.mask_v4 > 32 {
                        self.problem(
                            &pat.key("source").key("mask_v4"),
                            format!("{} is not an IPv4 prefix length", s.mask_v4),
                            "use 1 to 32 (32 = per address)",
                        );
                    }
                    if s.mask_v6 == 0 || s.mask_v6 > 128 {
                        self.problem(
                            &pat.key("source").key("mask_v6"),
                            format!("{} is not an IPv6 prefix length", s.mask_v6),
                            "use 1 to 128 (64 = per subnet)",
                        );
                    }
                }
            }
            let kind = match p {
                Persistence::Source(_) => "source",
                Persistence::Cookie(_) => "cookie",
            };
            self.positive(
                &pat.key(kind).key("timeout"),
                p.timeout(),
                "persistence timeout",
                "e.g. `30m`",
            );
        }
        let lim = &svc.limits;
        let lat = at.key("limits");
        self.positive(
            &lat.key("header_timeout"),
            lim.header_timeout,
            "header timeout",
            "e.g. `10s`",
        );
        self.positive(
            &lat.key("idle_timeout"),
            lim.idle_timeout,
            "idle timeout",
            "e.g. `60s`",
        );
        if lim.max_header_bytes < ByteSize::kib(1) || lim.max_header_bytes > ByteSize::mib(1) {
            self.problem(
                &lat.key("max_header_bytes"),
                format!("{} is outside 1KiB..1MiB", lim.max_header_bytes),
                "typical values are `16KiB` to `64KiB`",
            );
        }
        if lim.max_connections == Some(0) {
            self.problem(
                &lat.key("max_connections"),
                "0 connections would refuse every client",
                "give a positive number, or leave it out for no limit",
            );
        }
        if let Some(ps) = &lim.per_source {
            if ps.requests_per_second.is_some() && !proto.is_http() {
                let (m, h) = only_for("requests_per_second", "`http` or `https`");
                self.problem(&lat.key("per_source").key("requests_per_second"), m, h);
            }
            for (name, v) in [
                ("connections_per_second", ps.connections_per_second),
                ("requests_per_second", ps.requests_per_second),
            ] {
                if v == Some(0) {
                    self.problem(
                        &lat.key("per_source").key(name),
                        "a rate of 0 would refuse every client",
                        "give a positive rate, or leave it out",
                    );
                }
            }
        }
        if !svc.trusted_proxies.is_empty() && !proto.is_http() {
            let (m, h) = only_for("trusted_proxies", "`http` or `https`");
            self.problem(&at.key("trusted_proxies"), m, h);
        }
        if svc.proxy_protocol.is_some() && proto != Protocol::Tcp {
            let (m, h) = only_for("proxy_protocol", "`tcp`");
            self.problem(&at.key("proxy_protocol"), m, h);
        }
        if let Some(udp) = &svc.udp {
            if proto != Protocol::Udp {
                let (m, h) = only_for("udp", "`udp`");
                self.problem(&at.key("udp"), m, h);
            }
            self.positive(
                &at.key("udp").key("idle_timeout"),
                udp.idle_timeout,
                "flow idle timeout",
                "e.g. `30s`",
            );
        }
    }

    fn pool(&mut self, pool: &Pool, at: &DocPath, certs: &HashMap<&str, &Certificate>) {
        let mut ids = HashSet::new();
        for (i, server) in pool.servers.iter().enumerate() {
            let s = at.key("servers").index(i);
            if !is_name(&server.id) {
                self.problem(
                    &s.key("id"),
                    format!("`{}` is not a valid server id", server.id),
                    "use letters, digits, `-` and `_` (1 to 64 characters)",
                );
            } else if !ids.insert(server.id.as_str()) {
                self.problem(
                    &s.key("id"),
                    format!("pool `{}` already has a server with id `{}`", pool.name, server.id),
                    "give each server of a pool its own id (persistence cookies name servers by it)",
                );
            }
            if server.address.port() == 0 {
                self.problem(
                    &s.key("address"),
                    "port 0 cannot be connected to",
                    "give the server's port, e.g. `10.0.1.11:8080`",
                );
            }
            if !(1..=1000).contains(&server.weight) {
                self.problem(
                    &s.key("weight"),
                    format!("weight {} is outside 1..1000", server.weight),
                    "use 1 to 1000; to stop new sessions set `state: drain` instead",
                );
            }
            if server.max_connections == Some(0) {
                self.problem(
                    &s.key("max_connections"),
                    "0 connections would never use this server",
                    "give a positive number, or set `state: disabled`",
                );
            }
        }
        self.positive(
            &at.key("connect_timeout"),
            pool.connect_timeout,
            "connect timeout",
            "e.g. `3s`",
        );
        self.positive(
            &at.key("response_timeout"),
            pool.response_timeout,
            "response timeout",
            "e.g. `60s`",
        );
        if let Some(hc) = &pool.health_check {
            self.health_check(hc, &at.key("health_check"));
        }
        if let Some(tls) = &pool.tls
            && let Some(ca) = &tls.ca
            && !certs.contains_key(ca.as_str())
        {
            self.problem(
                &at.key("tls").key("ca"),
                format!("no certificate named `{ca}`"),
                format!(
                    "add the CA under `shared.certificates`, or use one of: {}",
                    list(certs.keys())
                ),
            );
        }
    }

    fn health_check(&mut self, hc: &HealthCheck, at: &DocPath) {
        let kinds = [hc.tcp.is_some(), hc.http.is_some(), hc.tls.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.problem(
                at,
                "a health check needs exactly one of `tcp`, `http` or `tls`",
                "e.g. `http: { path: /health }` or `tcp: {}`",
            );
        }
        if hc.interval.get() < std::time::Duration::from_millis(100) {
            self.problem(
                &at.key("interval"),
                format!("interval {} is below 100ms", hc.interval),
                "checks that often load the servers; use e.g. `2s`",
            );
        }
        self.positive(&at.key("timeout"), hc.timeout, "check timeout", "e.g. `1s`");
        if hc.timeout > hc.interval {
            self.problem(
                &at.key("timeout"),
                format!(
                    "timeout {} is longer than the interval {}",
                    hc.timeout, hc.interval
                ),
                "make the timeout at most the interval",
            );
        }
        for (name, v) in [("rise", hc.rise), ("fall", hc.fall)] {
            if !(1..=100).contains(&v) {
                self.problem(
                    &at.key(name),
                    format!("{name} {v} is outside 1..100"),
                    "typical values are rise 2, fall 3",
                );
            }
        }
        if let Some(http) = &hc.http {
            let h = at.key("http");
            if !http.path.starts_with('/') || http.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                self.problem(
                    &h.key("path"),
                    format!("`{}` is not a request path", http.path),
                    "write it like `/health`, without spaces",
                );
            }
            if !is_token(&http.method) || http.method.bytes().any(|b| b.is_ascii_lowercase()) {
                self.problem(
                    &h.key("method"),
                    format!("`{}` is not an HTTP method", http.method),
                    "use e.g. `GET` or `HEAD`",
                );
            }
            let [low, high] = http.expect_status;
            if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
                self.problem(
                    &h.key("expect_status"),
                    format!("[{low}, {high}] is not a status range"),
                    "write `[low, high]` with 100 <= low <= high <= 599, e.g. `[200, 399]`",
                );
            }
            if let Some(host) = &http.host
                && !is_host_pattern(host)
            {
                self.problem(
                    &h.key("host"),
                    format!("`{host}` is not a host name"),
                    "write a host like `app.example.org`",
                );
            }
        }
    }

    fn certificate(&mut self, cert: &Certificate, at: &DocPath) {
        let Some(pem) = &cert.cert_pem else {
            self.problem(
                at,
                format!("certificate `{}` has no certificate", cert.name),
                "give `cert_pem` (inline PEM) or `cert_file`",
            );
            return;
        };
        let chain = match parse_chain(pem) {
            Ok(chain) => chain,
            Err(e) => {
                self.problem(
                    &at.key("cert_pem"),
                    e,
                    "paste the PEM including its BEGIN and END lines",
                );
                return;
            }
        };
        let Some(key_pem) = &cert.key_pem else { return };
        let key = match parse_key(key_pem) {
            Ok(key) => key,
            Err(e) => {
                self.problem(
                    &at.key("key_pem"),
                    e,
                    "paste the unencrypted key PEM including its BEGIN and END lines",
                );
                return;
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        if let Err(e) = rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
            self.problem(
                &at.key("key_pem"),
                format!("the key does not fit the certificate or is of an unsupported kind ({e})"),
                "give the key that belongs to this certificate (RSA, ECDSA P-256/P-384 or Ed25519)",
            );
        }
    }

    fn positive(&mut self, at: &DocPath, d: Duration, what: &str, example: &str) {
        if d.is_zero() {
            self.problem(
                at,
                format!("the {what} is zero"),
                format!("give a positive duration, {example}"),
            );
        }
    }
}

/// Whether two listen addresses would compete for the same socket.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn list<'a>(names: impl Iterator<Item = &'a &'a str>) -> String {
    let mut names: Vec<_> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        return "(none defined yet)".to_owned();
    }
    names.sort();
    names.join(", ")
}

pub(crate) fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An HTTP token (RFC 9110 §5.6.2), as used for header names, methods and cookie names.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_hostname(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_host_pattern(s: &str) -> bool {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
