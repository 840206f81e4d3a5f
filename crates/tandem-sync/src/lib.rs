//! Tandem's pair state sync (`docs/sync.md`): the active box streams the state the pair shares
//! — committed config versions, persistence entries, server health and admin state, TLS
//! session-ticket keys, the audit log — to the passive box over one TLS connection on which
//! both certificates are pinned.
//!
//! Two layers, as rustls and quinn-proto have them:
//! - [`engine`]: the **sans-IO protocol core**. Bytes, role changes, local changes and the
//!   time go in; bytes to send, actions and the next deadline come out. No socket, no clock.
//! - [`link`]: the **I/O task**, a thin tokio loop over one TLS stream ([`pinning`],
//!   [`identity`]), which feeds the core and carries out its actions against the dataplane's
//!   `StateTables` and the config store.
//!
//! ```text
//! SyncLink::start(settings, tables, store, audit, role) -> SyncHandle
//!   .status() / render_prometheus()      for tandemctl status and /metrics
//!   .events()                            VersionReceived (run it), BranchKept, PeerChanged
//!   .publish_version(&meta)              after a local commit or rollback
//!   .config_running(&id)                 after running a received version
//!   .pair()                              watch of role + peer: refuse edits on the passive
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod audit;
pub mod backoff;
pub mod engine;
pub mod history;
pub mod identity;
pub mod link;
pub mod local;
pub mod pair;
pub mod pinning;
pub mod records;
pub mod status;
pub mod wire;

pub use audit::{AuditEntry, AuditLog, NewAuditEntry};
pub use engine::{Action, CloseReason, Direction, Engine, EngineConfig, PeerInfo, Role};
pub use identity::{Fingerprint, Identity};
pub use link::{SyncEvent, SyncHandle, SyncLink, SyncSettings};

pub use local::{DiskStore, LocalStore, MemoryStore};
pub use pair::{EditRefused, PairView};
pub use status::{SyncStatus, render_prometheus};
