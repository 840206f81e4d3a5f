//! Pools of real servers, how traffic is spread over them and how their health is checked.

use crate::service::{default_true, is_true};
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Unique name: letters, digits, `-` and `_`.
    pub name: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Without a health check every enabled server is taken to be up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Encrypt the connections to the servers again (TLS re-encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// Time allowed to open a connection to a server before another one is tried.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed for a server to start answering an HTTP request (504 after it).
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Duration,
}

/// How a new session picks its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Smooth weighted round robin: weights respected, picks interleaved.
    #[default]
    RoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Consistent hash of the client address (Maglev): a server change moves few clients,
    /// and every box of the pair picks the same server.
    SourceHash,
    /// Two random servers, the less loaded one wins.
    PowerOfTwo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Stable identity, unique in its pool: persistence cookies name the server by it, so it
    /// must not change when the address does.
    pub id: String,
    pub address: SocketAddr,
    /// Relative share of new sessions, 1 to 1000.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Connections open at once to this server; when reached it takes no new sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "AdminState::is_enabled")]
    pub state: AdminState,
}

/// The operator's wish for a server, independent of its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    #[default]
    Enabled,
    /// No new sessions; running ones finish and pinned clients keep it until their
    /// persistence entry expires.
    Drain,
    /// Out of rotation: no new sessions, and persistence no longer points at it.
    Disabled,
}

impl AdminState {
    fn is_enabled(&self) -> bool {
        *self == AdminState::Enabled
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }
}

/// A health check. Exactly one of `tcp`, `http` or `tls` is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default = "default_interval")]
    pub interval: Duration,
    #[serde(default = "default_check_timeout")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take an up server down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Check another port than the server's (e.g. a status port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsCheck>,
}

impl HealthCheck {
    pub fn kind(&self) -> Option<CheckKind<'_>> {
        match (&self.tcp, &self.http, &self.tls) {
            (Some(_), None, None) => Some(CheckKind::Tcp),
            (None, Some(h), None) => Some(CheckKind::Http(h)),
            (None, None, Some(t)) => Some(CheckKind::Tls(t)),
            _ => None,
        }
    }
}

pub enum CheckKind<'a> {
    Tcp,
    Http(&'a HttpCheck),
    Tls(&'a TlsCheck),
}

/// A TCP connect check: the server is up when it accepts the connection.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    /// Host header to send; default the server's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Status codes that count as healthy, as `[low, high]` inclusive.
    #[serde(default = "default_expect_status")]
    pub expect_status: [u16; 2],
    /// The response body must contain this text (the first 64 KiB are searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Check over TLS (for servers that only speak HTTPS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

/// A TLS handshake check.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

/// TLS from the box to the servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Verify the server's certificate. Turn off only for servers with self-signed
    /// certificates on a trusted network.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub verify: bool,
    /// Name in `shared.certificates` whose certificate is the CA to trust (its key may be
    /// left out). Default: the Mozilla root set built into the firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Server name sent by SNI and verified; default the server's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

fn default_weight() -> u32 {
    1
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_method() -> String {
    "GET".to_owned()
}
fn default_path() -> String {
    "/".to_owned()
}
fn default_expect_status() -> [u16; 2] {
    [200, 399]
}
