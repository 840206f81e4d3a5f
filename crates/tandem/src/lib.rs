//! Tandem's binaries: `tandemd` (the daemon) and `tandemctl` (the operator's command line).
//! Their logic lives here so it can be tested; `src/bin/` only parses arguments.

#![forbid(unsafe_code)]

pub mod control;
pub mod ctl;
pub mod daemon;
pub mod logging;
