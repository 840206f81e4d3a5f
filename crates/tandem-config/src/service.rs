//! Virtual services: what listens on a VIP, how, and which pool it sends to.

use crate::units::{ByteSize, Duration};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One virtual service: an `address:port` and a protocol, balanced over a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// The address and port to listen on, IPv4 (`10.0.0.10:443`) or IPv6 (`[2001:db8::10]:443`).
    pub listen: SocketAddr,
    pub protocol: Protocol,
    /// The pool used when no route matches. Optional only for a service that redirects
    /// every request to HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// HTTP routing rules, tried in order; the first match picks the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// HTTP only: answer every request with a redirect to the same URL over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_to_https: Option<RedirectToHttps>,
    /// HTTPS only: certificates and protocol settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServiceTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// Clients in these networks may send their own `X-Forwarded-For`, which is then kept and
    /// extended; everyone else's is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<IpNet>,
    /// TCP only: send a PROXY protocol header to the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// UDP only: flow-table settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpSettings>,
    /// Write one access-log line per request (HTTP) or connection (TCP). Default on.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub access_log: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Http,
    Https,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// Whether the service listens on a stream (TCP) socket.
    pub fn is_stream(self) -> bool {
        !matches!(self, Protocol::Udp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// An HTTP routing rule. Every condition given must hold; a rule with none matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact host (`app.example.org`) or a wildcard for one label (`*.example.org`);
    /// compared without the port, case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The request path must start with this (`/api/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// A request header that must be present with exactly this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    pub pool: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectToHttps {
    /// The HTTPS port to send clients to; 443 is left out of the URL.
    #[serde(default = "default_https_port")]
    pub port: u16,
    /// 301 (moved permanently) or 308 (permanent, keeps the method).
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTls {
    /// Names from `shared.certificates`. The client's SNI picks the certificate whose names
    /// match; the first one is served to clients that send no or an unknown name. Empty: a
    /// self-signed certificate is generated at first start (for trying the box out only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default, skip_serializing_if = "TlsVersion::is_default")]
    pub min_version: TlsVersion,
    /// Offer HTTP/2 by ALPN (default on).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub http2: bool,
}

// Written out so that the default agrees with the YAML's: HTTP/2 on.
impl Default for ServiceTls {
    fn default() -> Self {
        ServiceTls {
            certificates: Vec::new(),
            min_version: TlsVersion::default(),
            http2: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsVersion {
    fn is_default(&self) -> bool {
        *self == TlsVersion::default()
    }
}

/// Session persistence: which server a returning client goes back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Persistence {
    /// Keyed by the client's address, masked to a prefix so that clients behind a NAT pool
    /// stay together.
    Source(SourcePersistence),
    /// HTTP(S) only: a cookie inserted in the response names the server by its stable id.
    Cookie(CookiePersistence),
}

impl Persistence {
    pub fn timeout(&self) -> Duration {
        match self {
            Persistence::Source(s) => s.timeout,
            Persistence::Cookie(c) => c.timeout,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePersistence {
    /// IPv4 prefix length kept from the client address (32 = one entry per address).
    #[serde(default = "default_mask_v4")]
    pub mask_v4: u8,
    /// IPv6 prefix length kept from the client address.
    #[serde(default = "default_mask_v6")]
    pub mask_v6: u8,
    /// Idle time after which the entry expires; each new connection or request refreshes it.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookiePersistence {
    /// Cookie name (a token: letters, digits, `-`, `_`).
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// Idle time after which the pin expires; every request refreshes it.
    pub timeout: Duration,
}

/// Limits against floods, slow clients and oversized requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once on this service; more are refused (HTTP: 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source: Option<PerSourceLimits>,
    /// Time allowed for a client to send a complete request head (slow-loris guard).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Duration,
    /// Largest request head accepted (request line and headers); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Largest request body accepted; larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// How long a keep-alive client connection may sit idle between requests
    /// (TCP and UDP: between bytes/datagrams).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            per_source: None,
            header_timeout: default_header_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body_bytes(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl Limits {
    fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

/// Token-bucket rates per client address; the burst is one second's worth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSourceLimits {
    /// New connections per second from one client address; more are refused (HTTP: 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_second: Option<u32>,
    /// HTTP requests per second from one client address; more get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    V2,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpSettings {
    /// A flow (client address → server) is forgotten after this long without datagrams.
    #[serde(default = "default_udp_idle_timeout")]
    pub idle_timeout: Duration,
}

impl Default for UdpSettings {
    fn default() -> Self {
        UdpSettings {
            idle_timeout: default_udp_idle_timeout(),
        }
    }
}

pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn is_true(b: &bool) -> bool {
    *b
}
fn default_https_port() -> u16 {
    443
}
fn default_redirect_status() -> u16 {
    301
}
fn default_mask_v4() -> u8 {
    32
}
fn default_mask_v6() -> u8 {
    64
}
fn default_cookie_name() -> String {
    "TANDEM_SERVER".to_owned()
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_header_bytes() -> ByteSize {
    ByteSize::kib(32)
}
fn default_max_body_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_udp_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tls_block_means_the_same_as_an_empty_one() {
        let empty: ServiceTls = serde_saphyr::from_str("{}").unwrap();
        assert_eq!(empty, ServiceTls::default());
        assert!(empty.http2);
    }
}
