//! What the state machine asks the I/O loop to do.

use std::net::IpAddr;

use crate::advert::Advert;
use crate::state::RoleChange;

/// One thing for the I/O loop to do, in the order [`poll_action`] returns them: on
/// becoming Master the addresses are added before the advert goes out, so that a Master
/// stepping down in the make-before-break way only lets go once they are in place.
///
/// [`poll_action`]: crate::VirtualRouter::poll_action
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send this advert from the primary address to each of
    /// [`Config::advert_destinations`](crate::Config::advert_destinations), TTL or hop
    /// limit 255 (RFC 5798 §5.1.1.3, §5.1.2.3, §7.2).
    SendAdvert(Advert),
    /// Add the virtual addresses (RFC 5798 §6.4.3); IPv6 ones without duplicate address
    /// detection (design.md). When `accept_traffic` is false, drop traffic addressed to
    /// them: RFC 5798 §6.4.3 lets only the owner or an Accept_Mode Master accept it.
    AddAddresses {
        addresses: Vec<IpAddr>,
        accept_traffic: bool,
    },
    /// Remove the virtual addresses.
    RemoveAddresses(Vec<IpAddr>),
    /// Announce the addresses: a burst of gratuitous ARPs for IPv4, unsolicited Neighbor
    /// Advertisements for IPv6 (RFC 5798 §6.4.1, §6.4.2; burst size and spacing are the
    /// I/O loop's configuration).
    SendGratuitous(Vec<IpAddr>),
    /// The state changed; log it and count it.
    StateChanged(RoleChange),
}
