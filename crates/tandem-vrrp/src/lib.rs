//! VRRP version 3 (RFC 5798, restated by RFC 9568) for Tandem's pair of boxes: the
//! advertisement codec, receive validation, the virtual router state machine, tracking
//! and sync groups.
//!
//! Sans-IO, in the manner of quinn-proto and rustls: no sockets, no clock. The I/O loop
//! (`tandemd`'s heartbeat thread) does this:
//!
//! 1. builds a [`VirtualRouter`] (or a [`SyncGroup`] of them) from a [`Config`], sets the
//!    state of its tracked objects, and calls `startup(now)`;
//! 2. for each received packet: [`Inbound::from_ipv4_packet`] (or fills an [`Inbound`] from
//!    the IPv6 socket's ancillary data), [`validate`], then `handle_advert(now, ..)`;
//!    every `Err(DropReason)` goes to a [`DropCounters`];
//! 3. calls `handle_timeout(now)` when `poll_timeout()` is reached;
//! 4. after each call, carries out every [`Action`] from `poll_action()` in order.
//!
//! Deviations from RFC 5798 and Tandem's extensions are described in `docs/vrrp.md`.

#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod action;
mod advert;
mod config;
mod receive;
mod router;
mod state;
mod sync_group;
mod timers;
mod tracking;

#[cfg(test)]
mod sim;

pub use action::Action;
pub use advert::{
    Advert, DecodeError, EncodeError, HOP_LIMIT, IP_PROTOCOL, MAX_ADVERT_INTERVAL, MULTICAST_V4,
    MULTICAST_V6,
};
pub use config::{Config, ConfigError};
pub use receive::{Accepted, DropCounters, DropReason, Inbound, validate};
pub use router::VirtualRouter;
pub use state::{Reason, RoleChange, State, StepDownCause};
pub use sync_group::SyncGroup;
pub use timers::{master_down_interval, skew_time};
pub use tracking::{Track, TrackEffect, TrackState, UnknownTrack};
