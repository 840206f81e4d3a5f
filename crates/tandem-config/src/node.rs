//! The node part: settings that belong to one box and never cross the sync link.

use crate::sync::SyncNode;
use crate::vrrp::VrrpNode;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This box's name, shown in the console, logs and the peer's status.
    pub name: String,
    pub management: Management,
    /// Where and how this box runs the pair's virtual routers; none for a standalone box.
    /// (Boxed: it is large and most boxes' is empty.)
    #[serde(default, skip_serializing_if = "vrrp_is_empty")]
    pub vrrp: Box<VrrpNode>,
    /// The link to the other box of the pair (`docs/sync.md`); none for a standalone box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncNode>,
}

/// The management plane: one HTTPS listener for the console, the REST API and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Address and port on the management network, never a VIP.
    pub listen: SocketAddr,
    /// Certificate for the management listener; default: a self-signed one generated at
    /// first start and kept in the state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub metrics: MetricsAccess,
}

/// Who may scrape `/metrics`: a source in `allow`, or a request carrying the bearer token
/// whose SHA-256 is `token_sha256`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsAccess {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNet>,
    /// Hex SHA-256 of the scrape token (`printf %s TOKEN | sha256sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

fn vrrp_is_empty(vrrp: &VrrpNode) -> bool {
    vrrp.is_empty()
}
