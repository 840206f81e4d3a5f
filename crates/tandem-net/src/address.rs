//! VIP management through rtnetlink: add, remove, list, and remove what a crashed
//! predecessor left behind.
//!
//! Both add and remove are idempotent, because the daemon loop must be able to repeat them
//! after a restart or a half-finished transition without special cases:
//! adding a present address and removing an absent one both succeed with
//! [`Change::Unchanged`].
//!
//! IPv6 VIPs are added with `IFA_F_NODAD`: duplicate address detection (RFC 4862 §5.4)
//! would keep a new VIP *tentative* — unusable — for about a second, which is longer than
//! the whole failover budget; the VRRP election already guarantees a single owner.
//! `IFA_F_NOPREFIXROUTE` is *not* set: the VIP's prefix route is what lets the active box
//! reach clients in a VIP subnet the box has no address of its own in, and the kernel
//! shares or keeps that route when another address of the subnet exists (docs/net.md).

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use tracing::{debug, info, warn};

use crate::Change;
use crate::netlink::{Netlink, NetlinkError};

/// One address configured on an interface, as `RTM_GETADDR` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub ifindex: u32,
    /// The address with its prefix length (host bits kept: `10.0.0.5/24`).
    pub net: IpNet,
    /// IPv6 DAD has not finished: the address cannot be used yet (RFC 4862 §5.4).
    pub tentative: bool,
    /// IPv6 DAD found a duplicate: the address will never become usable.
    pub dad_failed: bool,
    /// Added with `IFA_F_NODAD`.
    pub no_dad: bool,
    /// An IPv4 secondary: another address of the same subnet is the primary.
    pub secondary: bool,
}

impl InterfaceAddress {
    pub fn addr(&self) -> IpAddr {
        self.net.addr()
    }

    fn from_message(message: &AddressMessage) -> Option<Self> {
        // IFA_LOCAL is the local address; IFA_ADDRESS is the peer on point-to-point links
        // and equal to IFA_LOCAL otherwise. IPv6 usually sends only IFA_ADDRESS.
        let mut local = None;
        let mut address = None;
        let mut flags = AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()));
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                // IFA_FLAGS carries all 32 bits; the header only the low eight.
                AddressAttribute::Flags(full) => flags = *full,
                _ => {}
            }
        }
        let addr = local.or(address)?;
        let net = IpNet::new(addr, message.header.prefix_len).ok()?;
        Some(InterfaceAddress {
            ifindex: message.header.index,
            net,
            tentative: flags.contains(AddressFlags::Tentative),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
            no_dad: flags.contains(AddressFlags::Nodad),
            secondary: flags.contains(AddressFlags::Secondary),
        })
    }
}

fn address_message(ifindex: u32, net: IpNet) -> AddressMessage {
    match net {
        IpNet::V4(v4) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(ifindex)
            .address(v4.addr(), v4.prefix_len())
            .build(),
        IpNet::V6(v6) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(ifindex)
            .address(v6.addr(), v6.prefix_len())
            .build(),
    }
}

impl Netlink {
    /// Add `net` (address and prefix length) to interface `ifindex`.
    ///
    /// IPv6 addresses get `IFA_F_NODAD`, so they are usable (not tentative) at once.
    /// An address that is already there is [`Change::Unchanged`]; if it is there with
    /// another prefix length, that is logged and left as it is (the VIP is usable, and
    /// rewriting it would briefly remove it).
    pub async fn add_address(&self, ifindex: u32, net: IpNet) -> Result<Change, NetlinkError> {
        let mut request = self
            .handle()
            .address()
            .add(ifindex, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            let message = request.message_mut();
            message.header.flags = AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => {
                info!(ifindex, address = %net, "address added");
                Ok(Change::Applied)
            }
            Err(error) => match NetlinkError::from_rtnetlink("add address", error) {
                NetlinkError::Kernel {
                    errno: Errno::EEXIST,
                    ..
                } => {
                    let existing = self.addresses(ifindex).await?;
                    match existing.iter().find(|a| a.addr() == net.addr()) {
                        Some(present) if present.net.prefix_len() != net.prefix_len() => {
                            warn!(ifindex, wanted = %net, present = %present.net,
                                "address already present with another prefix length; left as is");
                        }
                        _ => debug!(ifindex, address = %net, "address already present"),
                    }
                    Ok(Change::Unchanged)
                }
                other => Err(other),
            },
        }
    }

    /// Remove `net` from interface `ifindex`. An absent address is [`Change::Unchanged`].
    ///
    /// The kernel matches a delete on the prefix length too; if the address is present with
    /// another prefix length, that one is removed: a VIP left behind would answer ARP on a
    /// box that is no longer master.
    pub async fn remove_address(&self, ifindex: u32, net: IpNet) -> Result<Change, NetlinkError> {
        match self.delete_exact(ifindex, net).await? {
            Change::Applied => Ok(Change::Applied),
            Change::Unchanged => {
                let present = self.addresses(ifindex).await?;
                let mut change = Change::Unchanged;
                for other in present.iter().filter(|a| a.addr() == net.addr()) {
                    warn!(ifindex, asked = %net, present = %other.net,
                        "address present with another prefix length; removing it");
                    change = self.delete_exact(ifindex, other.net).await?;
                }
                Ok(change)
            }
        }
    }

    async fn delete_exact(&self, ifindex: u32, net: IpNet) -> Result<Change, NetlinkError> {
        let message = address_message(ifindex, net);
        match self.handle().address().del(message).execute().await {
            Ok(()) => {
                info!(ifindex, address = %net, "address removed");
                Ok(Change::Applied)
            }
            Err(error) => match NetlinkError::from_rtnetlink("remove address", error) {
                NetlinkError::Kernel {
                    errno: Errno::EADDRNOTAVAIL,
                    ..
                } => Ok(Change::Unchanged),
                other => Err(other),
            },
        }
    }

    /// The addresses of interface `ifindex`, IPv4 and IPv6, in the kernel's order (for
    /// IPv4 the primary of each subnet comes before its secondaries).
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        let messages: Vec<AddressMessage> = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("dump addresses", e))?;
        Ok(messages
            .iter()
            .filter_map(InterfaceAddress::from_message)
            .collect())
    }

    /// Remove from interface `ifindex` every address whose IP is in `vips`, whatever its
    /// prefix length, and return what was removed.
    ///
    /// A restarted daemon calls this before anything else: a predecessor killed while
    /// master leaves its VIPs configured, and a backup holding them would answer for them
    /// (split brain). Never pass the interface's own addresses (an address owner's, RFC
    /// 5798 §3 "IP Address Owner"): they would be removed too.
    pub async fn remove_stale(
        &self,
        ifindex: u32,
        vips: &[IpAddr],
    ) -> Result<Vec<IpNet>, NetlinkError> {
        let present = self.addresses(ifindex).await?;
        let mut removed = Vec::new();
        for stale in present.iter().filter(|a| vips.contains(&a.addr())) {
            if self.delete_exact(ifindex, stale.net).await? == Change::Applied {
                warn!(ifindex, address = %stale.net, "removed a VIP left by a previous run");
                removed.push(stale.net);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::AddressFamily;

    fn message(
        family: AddressFamily,
        prefix: u8,
        attributes: Vec<AddressAttribute>,
    ) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.family = family;
        message.header.prefix_len = prefix;
        message.header.index = 4;
        message.attributes = attributes;
        message
    }

    #[test]
    fn reads_an_ipv4_address_from_ifa_local() {
        let m = message(
            AddressFamily::Inet,
            24,
            vec![
                AddressAttribute::Address("10.0.0.9".parse().unwrap()),
                AddressAttribute::Local("10.0.0.5".parse().unwrap()),
                AddressAttribute::Flags(AddressFlags::Secondary | AddressFlags::Permanent),
            ],
        );
        let a = InterfaceAddress::from_message(&m).unwrap();
        assert_eq!(a.net, "10.0.0.5/24".parse::<IpNet>().unwrap());
        assert_eq!(a.ifindex, 4);
        assert!(a.secondary);
        assert!(!a.tentative);
    }

    #[test]
    fn reads_ipv6_flags_from_ifa_flags_beyond_the_header_byte() {
        let mut m = message(
            AddressFamily::Inet6,
            64,
            vec![
                AddressAttribute::Address("2001:db8::10".parse().unwrap()),
                AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Noprefixroute),
            ],
        );
        m.header.flags = AddressHeaderFlags::Tentative; // the header is overridden by IFA_FLAGS
        let a = InterfaceAddress::from_message(&m).unwrap();
        assert_eq!(a.net, "2001:db8::10/64".parse::<IpNet>().unwrap());
        assert!(a.no_dad);
        assert!(!a.tentative);

        let m = message(
            AddressFamily::Inet6,
            64,
            vec![AddressAttribute::Address("2001:db8::11".parse().unwrap())],
        );
        let mut m = m;
        m.header.flags = AddressHeaderFlags::Tentative;
        assert!(InterfaceAddress::from_message(&m).unwrap().tentative);
    }

    #[test]
    fn ignores_messages_without_an_address_or_with_a_bad_prefix() {
        assert!(
            InterfaceAddress::from_message(&message(AddressFamily::Inet, 24, vec![])).is_none()
        );
        let m = message(
            AddressFamily::Inet,
            40,
            vec![AddressAttribute::Local("10.0.0.5".parse().unwrap())],
        );
        assert!(InterfaceAddress::from_message(&m).is_none());
    }

    #[test]
    fn delete_message_names_the_exact_address() {
        let m = address_message(9, "2001:db8::10/64".parse().unwrap());
        assert_eq!(m.header.index, 9);
        assert_eq!(m.header.prefix_len, 64);
        assert!(
            m.attributes
                .contains(&AddressAttribute::Address("2001:db8::10".parse().unwrap()))
        );
    }
}
