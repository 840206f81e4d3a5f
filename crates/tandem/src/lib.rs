//! Tandem's binaries: `tandemd` (the daemon), `tandemctl` (the operator's command line) and
//! `tandem-setup` (the appliance's boot steps, console and supervisor).
//! Their logic lives here so it can be tested; `src/bin/` only parses arguments.

#![forbid(unsafe_code)]

pub mod control;
pub mod ctl;
pub mod daemon;
pub mod firewall;
pub mod firmware;
pub mod logging;
pub mod setup;
pub mod support_bundle;
