//! `node.sync`: the link to the other box of the pair, over which `tandem-sync` replicates the
//! shared config and the dataplane's state (see `docs/sync.md`).
//!
//! It belongs to the node part: each box names its own addresses and pins the *peer's*
//! certificate by its SHA-256 fingerprint. Each box generates its own key and self-signed
//! certificate at first start (under the state directory) unless `cert_file`/`key_file` name
//! them; `tandemctl status` and the serial console show the fingerprint to copy into the
//! peer's config.

use crate::Config;
use crate::diagnostic::Diagnostic;
use crate::load::at_path;
use crate::source_map::{DocPath, SourceMap};
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The sync link's TCP port when `port` is not given.
pub const DEFAULT_SYNC_PORT: u16 = 7420;

/// `node.sync`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncNode {
    /// This box's address on the sync link: where it accepts the peer's connection, and the
    /// source of its own. `0.0.0.0` or `::` accepts on every address.
    pub listen: IpAddr,
    /// The peer's address on the sync link.
    pub peer: IpAddr,
    /// The TCP port, the same on both boxes.
    #[serde(default = "default_port", skip_serializing_if = "is_default_port")]
    pub port: u16,
    /// SHA-256 of the peer's certificate (DER): `sha256:` and 64 hex digits, colons between
    /// bytes allowed (as `openssl x509 -fingerprint -sha256` prints them).
    pub peer_fingerprint: String,
    /// This box's certificate and key (PEM); default: generated at first start under
    /// `<state-dir>/sync/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A frame is sent at least this often, so the peer knows the link is alive.
    #[serde(
        default = "default_heartbeat",
        skip_serializing_if = "is_default_heartbeat"
    )]
    pub heartbeat: Duration,
    /// The link is dropped (and dialled again) after this long without a frame from the peer.
    #[serde(
        default = "default_peer_timeout",
        skip_serializing_if = "is_default_peer_timeout"
    )]
    pub peer_timeout: Duration,
}

impl SyncNode {
    /// Where this box accepts the peer.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen, self.port)
    }

    /// Where the peer accepts this box.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.peer, self.port)
    }

    /// The pinned fingerprint as bytes (None when invalid; validation reports it).
    pub fn peer_fingerprint_bytes(&self) -> Option<[u8; 32]> {
        parse_fingerprint(&self.peer_fingerprint)
    }
}

fn default_port() -> u16 {
    DEFAULT_SYNC_PORT
}

fn is_default_port(p: &u16) -> bool {
    *p == DEFAULT_SYNC_PORT
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(1)
}

fn is_default_heartbeat(d: &Duration) -> bool {
    *d == default_heartbeat()
}

fn default_peer_timeout() -> Duration {
    Duration::from_secs(5)
}

fn is_default_peer_timeout(d: &Duration) -> bool {
    *d == default_peer_timeout()
}

/// Parses `sha256:` followed by 64 hex digits (either case, optionally `:`-separated pairs).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let (scheme, digits) = text.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sha256") {
        return None;
    }
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).ok()?;
    Some(out)
}

/// The canonical text of a fingerprint: `sha256:` and 64 lowercase hex digits.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(fp))
}

/// The checks of `node.sync`, which refer to the management listener and the services.
pub(crate) fn validate_node(config: &Config, map: &SourceMap) -> Vec<Diagnostic> {
    let mut items = Vec::new();
    let Some(sync) = &config.node.sync else {
        return items;
    };
    let mut add = |path: &DocPath, message: String, hint: &str| {
        items.push(at_path(map, path, message, hint));
    };
    let at = DocPath::root().key("node").key("sync");

    if parse_fingerprint(&sync.peer_fingerprint).is_none() {
        add(
            &at.key("peer_fingerprint"),
            format!(
                "`{}` is not a certificate fingerprint",
                sync.peer_fingerprint
            ),
            "write `sha256:` and the 64 hex digits the peer's `tandemctl status` (or its serial console) shows",
        );
    }
    if sync.port == 0 {
        add(
            &at.key("port"),
            "the sync link cannot use port 0".to_owned(),
            "leave `port` out for the default 7420, or give the same port on both boxes",
        );
    }
    if unusable(&sync.peer) || sync.peer.is_unspecified() {
        add(
            &at.key("peer"),
            format!("{} cannot be the peer's address", sync.peer),
            "give the other box's unicast address on the HA or management network",
        );
    }
    if unusable(&sync.listen) {
        add(
            &at.key("listen"),
            format!("{} cannot be listened on", sync.listen),
            "give this box's unicast address on the HA network, or `0.0.0.0` / `::`",
        );
    }
    if sync.listen == sync.peer {
        add(
            &at.key("peer"),
            format!("the peer address {} is this box's own", sync.peer),
            "`listen` is this box, `peer` the other one",
        );
    } else if !sync.listen.is_unspecified() && sync.listen.is_ipv4() != sync.peer.is_ipv4() {
        add(
            &at.key("peer"),
            format!(
                "the link mixes IPv4 and IPv6 ({} to {})",
                sync.listen, sync.peer
            ),
            "give both addresses in the same family",
        );
    }
    if sync.cert_file.is_some() != sync.key_file.is_some() {
        add(
            &at,
            "only one of `cert_file` and `key_file` is given".to_owned(),
            "give both, or neither to use the certificate generated at first start",
        );
    }
    let heartbeat = sync.heartbeat.get();
    if heartbeat < std::time::Duration::from_millis(50)
        || heartbeat > std::time::Duration::from_secs(10)
    {
        add(
            &at.key("heartbeat"),
            format!("the heartbeat {} is outside 50ms..10s", sync.heartbeat),
            "the default `1s` suits most links",
        );
    }
    let timeout = sync.peer_timeout.get();
    if timeout < 3 * heartbeat || timeout > std::time::Duration::from_secs(300) {
        add(
            &at.key("peer_timeout"),
            format!(
                "`peer_timeout` {} must be at least three heartbeats ({}) and at most 5m",
                sync.peer_timeout,
                Duration(3 * heartbeat)
            ),
            "the default `5s` with a `1s` heartbeat rides out a lost packet or two",
        );
    }
    let listen = sync.listen_addr();
    if overlaps(listen, config.node.management.listen) {
        add(
            &at.key("port"),
            format!(
                "the sync link would listen on the management address {}",
                config.node.management.listen
            ),
            "give the sync link its own port",
        );
    }
    for svc in &config.shared.services {
        if svc.protocol.is_stream() && overlaps(listen, svc.listen) {
            add(
                &at.key("port"),
                format!(
                    "the sync link would listen on {}, like service `{}`",
                    listen, svc.name
                ),
                "the sync link never shares a listener with a VIP: choose another address or port",
            );
        }
    }
    items
}

fn unusable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use std::path::Path;

    const FP: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn doc(sync: &str) -> String {
        format!(
            "schema: 1\nnode:\n  name: lb-a\n  management:\n    listen: 192.0.2.10:443\n  sync:\n{sync}shared: {{}}\n"
        )
    }

    fn problems(sync: &str) -> Vec<String> {
        match parse(&doc(sync), Some(Path::new("t.yaml"))) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .items
                .iter()
                .map(|i| format!("{}:{}: {}", i.path, i.line, i.message))
                .collect(),
        }
    }

    #[test]
    fn a_minimal_section_takes_the_defaults() {
        let text = doc(&format!(
            "    listen: 10.0.9.1\n    peer: 10.0.9.2\n    peer_fingerprint: {FP}\n"
        ));
        let config = parse(&text, Some(Path::new("t.yaml"))).unwrap();
        let sync = config.node.sync.unwrap();
        assert_eq!(sync.port, DEFAULT_SYNC_PORT);
        assert_eq!(sync.peer_addr().to_string(), "10.0.9.2:7420");
        assert_eq!(sync.heartbeat, Duration::from_secs(1));
        assert_eq!(sync.peer_timeout, Duration::from_secs(5));
        assert_eq!(
            format_fingerprint(&sync.peer_fingerprint_bytes().unwrap()),
            FP
        );
    }

    #[test]
    fn fingerprints_are_read_in_the_forms_operators_copy() {
        let colons = "SHA256:9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08";
        assert_eq!(parse_fingerprint(colons), parse_fingerprint(FP));
        assert!(parse_fingerprint(FP).is_some());
        assert_eq!(
            parse_fingerprint("md5:9f86d081884c7d659a2feaa0c55ad015"),
            None
        );
        assert_eq!(parse_fingerprint(&FP[..70]), None);
        assert_eq!(
            parse_fingerprint("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            None
        );
        assert_eq!(parse_fingerprint(&FP.replace('9', "g")), None);
    }

    #[test]
    fn every_problem_is_reported_at_its_line() {
        let found = problems(
            "    listen: 192.0.2.10\n    peer: 192.0.2.10\n    port: 443\n    peer_fingerprint: sha256:abc\n    cert_file: /x.crt\n    heartbeat: 10ms\n    peer_timeout: 20ms\n",
        );
        let expect = [
            "node.sync.peer_fingerprint:10: `sha256:abc` is not a certificate fingerprint",
            "node.sync.peer:8: the peer address 192.0.2.10 is this box's own",
            "node.sync:7: only one of `cert_file` and `key_file` is given",
            "node.sync.heartbeat:12: the heartbeat 10ms is outside 50ms..10s",
            "node.sync.peer_timeout:13: `peer_timeout` 20ms must be at least three heartbeats (30ms) and at most 5m",
            "node.sync.port:9: the sync link would listen on the management address 192.0.2.10:443",
        ];
        for e in expect {
            assert!(found.iter().any(|f| f == e), "missing {e:?} in {found:#?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
    }

    #[test]
    fn addresses_must_be_usable_and_of_one_family() {
        let found = problems(&format!(
            "    listen: 10.0.9.1\n    peer: \"2001:db8::2\"\n    peer_fingerprint: {FP}\n"
        ));
        assert_eq!(
            found,
            ["node.sync.peer:8: the link mixes IPv4 and IPv6 (10.0.9.1 to 2001:db8::2)"]
        );
        let found = problems(&format!(
            "    listen: 224.0.0.1\n    peer: 0.0.0.0\n    peer_fingerprint: {FP}\n"
        ));
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            problems(&format!(
                "    listen: \"::\"\n    peer: \"2001:db8::2\"\n    peer_fingerprint: {FP}\n"
            ))
            .is_empty()
        );
    }
}
