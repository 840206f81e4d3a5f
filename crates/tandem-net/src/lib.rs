//! Linux OS glue for Tandem's VRRP daemon loop.
//!
//! `tandem-vrrp` is sans-IO: it decides *what* to do (send this advert, add these VIPs,
//! announce them). This crate is *how* it is done on Linux, and nothing more:
//!
//! | module | holds |
//! | --- | --- |
//! | [`vrrp_socket`] | raw IP protocol 112 sockets, IPv4 and IPv6, multicast or unicast (RFC 5798 §5.1) |
//! | [`netlink`] | the rtnetlink connection every netlink operation goes through |
//! | [`interface`] | interface names, name/index/MAC/operstate lookups |
//! | [`address`] | VIP add/remove (idempotent, IPv6 with `IFA_F_NODAD`), listing, stale VIP removal |
//! | [`link_watch`] | a stream of link up/down changes (`RTNLGRP_LINK`) for interface tracking |
//! | [`announce`] | gratuitous ARP (RFC 5227) and unsolicited NA (RFC 4861 §7.2.6) frames and their sender |
//! | [`macvlan`] | the optional virtual MAC interface (RFC 5798 §7.3) and its sysctls |
//! | [`sysctl`] | validated writes to `/proc/sys/net/ipv{4,6}/conf/*` |
//! | [`gateway_probe`] | ICMP echo and ARP reachability checks for the split-brain guard |
//! | [`realtime`] | `SCHED_FIFO` and `mlockall` for the heartbeat thread |
//! | `netns` (feature `netns`) | test support: run code inside a named network namespace |
//!
//! Everything that owns a socket is opened by a synchronous `open` (so a caller can create it
//! in a chosen network namespace or with raised privileges) and then used asynchronously on
//! the caller's tokio runtime. Decisions and their reasons are in `docs/net.md`.
#![cfg(target_os = "linux")]

pub mod address;
pub mod announce;
pub mod gateway_probe;
pub mod interface;
pub mod link_watch;
pub mod macvlan;
pub mod netlink;
#[cfg(feature = "netns")]
pub mod netns;
pub mod realtime;
pub mod sysctl;
pub mod vrrp_socket;

mod mac;
mod packet_socket;
mod reactor;

pub use address::InterfaceAddress;
pub use announce::{Announcer, Burst};
pub use interface::{InterfaceInfo, InterfaceName, LinkStatus, OperState};
pub use link_watch::{LinkEvent, LinkWatch};
pub use mac::{InvalidMacAddr, MacAddr};
pub use netlink::{Netlink, NetlinkError};
pub use vrrp_socket::{Delivery, Received, VrrpSocket, VrrpSocketOptions};

/// The IP version a virtual router, socket or frame is for. VRRPv3 runs IPv4 and IPv6 as
/// separate virtual routers (RFC 5798 §5.1, §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(addr: &std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(_) => IpFamily::V4,
            std::net::IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// What an idempotent operation did: the kernel state was changed, or it already was as
/// asked (adding a present address, removing an absent one, deleting a missing link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Applied,
    Unchanged,
}
