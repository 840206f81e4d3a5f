//! Tandem's configuration.
//!
//! A config document has two parts (see `docs/config.md`):
//! - `node`: belongs to one box and never crosses the sync link (name, management address);
//! - `shared`: the same on both boxes and replicated (services, pools, certificates, …).
//!
//! Text is parsed with serde-saphyr, then validated as a whole; every problem is reported with
//! its file, line, column, path in the document and a hint ([`Diagnostics`]). Committed
//! versions of the shared part live in the [`store::Store`].

#![forbid(unsafe_code)]

mod alerts;
mod certificate;
mod diagnostic;
mod load;
mod node;
mod pool;
mod service;
mod source_map;
pub mod store;
mod sync;
mod units;
mod users;
mod validate;
mod vrrp;

pub use alerts::{
    ALERT_EVENTS, Alerts, HttpUrl, SyslogTarget, SyslogTransport, Webhook, parse_http_url,
};
pub use certificate::Certificate;
pub use diagnostic::{Diagnostic, Diagnostics, LoadError};
pub use load::{Document, load_file, parse, parse_document, parse_shared_document};
pub use node::{Management, MetricsAccess, NodeConfig};
pub use pool::{
    AdminState, Algorithm, CheckKind, HealthCheck, HttpCheck, Pool, Server, TcpCheck, TlsCheck,
    UpstreamTls,
};
pub use service::{
    CookiePersistence, HeaderMatch, Limits, PerSourceLimits, Persistence, Protocol, ProxyProtocol,
    RedirectToHttps, Route, Service, ServiceTls, SourcePersistence, TlsVersion, UdpSettings,
};
pub use sync::{DEFAULT_SYNC_PORT, SyncNode, format_fingerprint, parse_fingerprint};
pub use units::{ByteSize, Duration};
pub use users::{ApiToken, ConsoleSettings, Role, User, is_argon2id_phc};
pub use vrrp::{
    Announce, GatewayCheck, InterfaceTrack, Notify, OnDown, PoolTrack, ProbeMethod,
    RouterPlacement, VirtualRouter, VrrpNode, VrrpShared,
};

use serde::{Deserialize, Serialize};

/// The schema this firmware writes. It reads this one and the one before (N and N-1), so a
/// pair can be upgraded one box at a time.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole config file: both parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub schema: u32,
    pub node: NodeConfig,
    pub shared: SharedConfig,
}

/// The part of the config both boxes share and sync replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub pools: Vec<Pool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
    /// The pair's virtual routers (VRRPv3).
    #[serde(default, skip_serializing_if = "VrrpShared::is_empty")]
    pub vrrp: VrrpShared,
    /// Console and API users (`users.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_tokens: Vec<ApiToken>,
    /// Sessions and login backoff of the console. (Boxed, like `alerts`: most configs leave
    /// them at their defaults, and the shared config stays small to move.)
    #[serde(default, skip_serializing_if = "users::console_is_default")]
    pub console: Box<ConsoleSettings>,
    /// Remote syslog and webhooks (`alerts.rs`).
    #[serde(default, skip_serializing_if = "alerts::alerts_is_default")]
    pub alerts: Box<Alerts>,
}

impl SharedConfig {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn certificate(&self, name: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.name == name)
    }

    /// Checks the shared part on its own (as the console does for an edit). Paths in the
    /// diagnostics start with `shared.`; positions are unknown (0) as there is no text.
    pub fn validate(&self) -> Result<(), Diagnostics> {
        let items = validate::shared(self, &source_map::SourceMap::empty());
        if items.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics { file: None, items })
        }
    }

    /// The canonical text of this shared config (as stored and hashed).
    pub fn to_canonical_yaml(&self) -> String {
        let doc = SharedDocument {
            schema: SCHEMA_VERSION,
            shared: self.clone(),
        };
        // Serializing plain data structures into a String cannot fail.
        serde_saphyr::to_string(&doc).expect("shared config serializes")
    }
}

impl Config {
    /// Checks a whole config built in memory (as the console does before committing an
    /// edit): the same checks as `tandemctl check`, positions unknown (0).
    pub fn validate(&self) -> Result<(), Diagnostics> {
        let items = validate::config(self, &source_map::SourceMap::empty());
        if items.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics { file: None, items })
        }
    }
}

/// The shared part on its own, as the store keeps it and sync sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedDocument {
    pub schema: u32,
    pub shared: SharedConfig,
}
