//! The local control socket between `tandemctl` and `tandemd`.

pub mod client;
pub mod protocol;
pub mod server;

/// Where tandemd listens and tandemctl connects unless told otherwise (`--socket`, or the
/// `TANDEM_SOCKET` environment variable).
pub const DEFAULT_SOCKET: &str = "/run/tandem/tandemd.sock";
