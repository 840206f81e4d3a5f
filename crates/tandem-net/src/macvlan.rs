//! The optional virtual MAC: a macvlan interface per virtual router carrying
//! 00:00:5e:00:01:VRID (IPv4) or 00:00:5e:00:02:VRID (IPv6) (RFC 5798 §7.3), so that a
//! failover moves the MAC with the VIPs and neighbours' caches stay valid without waiting
//! for the gratuitous ARP / NA.
//!
//! Decisions (docs/net.md "Virtual MAC"):
//! - **Mode private.** The macvlan never needs to talk to sibling macvlans on the same
//!   parent, and in `bridge` mode the multicast adverts one virtual router sends would be
//!   looped to the others locally. Private is also keepalived's choice.
//! - **IPv6 address generation off** (`addrgenmode none`). Both boxes hold the same virtual
//!   MAC; an automatic link-local derived from it would be the same on both (DAD failure),
//!   and its DAD probes and MLD reports from the *backup* would teach the switch that the
//!   virtual MAC lives on the backup's port, blackholing the master. An IPv6 router's loop
//!   adds the parent's link-local to the macvlan itself (with NODAD) to send adverts.
//! - **Sysctls** as keepalived sets them, see [`vmac_settings`].

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::LinkMacVlan;
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoMacVlan, LinkAttribute, LinkInfo,
    LinkMessage, MacVlanMode,
};
use tracing::{info, warn};

use crate::interface::{InterfaceInfo, InterfaceName};
use crate::netlink::{Netlink, NetlinkError};
use crate::sysctl::{ConfScope, Ipv4Conf, Ipv6Conf, Setting, Sysctl, SysctlError};
use crate::{Change, IpFamily, MacAddr};

/// The virtual router MAC address of RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4,
/// 00-00-5E-00-02-{VRID} for IPv6. (VRID 0 is not a valid VRID, §5.2.3; it is the
/// caller's config that rules it out.)
pub fn virtual_mac(family: IpFamily, vrid: u8) -> MacAddr {
    let kind = match family {
        IpFamily::V4 => 0x01,
        IpFamily::V6 => 0x02,
    };
    MacAddr([0x00, 0x00, 0x5e, 0x00, kind, vrid])
}

fn macvlan_mode(message: &LinkMessage) -> Option<MacVlanMode> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                LinkInfo::Data(InfoData::MacVlan(data)) => data.iter().find_map(|d| match d {
                    InfoMacVlan::Mode(mode) => Some(*mode),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        })
}

impl Netlink {
    /// Create (or reuse) macvlan `name` on interface `parent` with address `mac`, in
    /// private mode, without automatic IPv6 addresses, and set it up.
    ///
    /// A macvlan of that name left by a previous run is reused when it already matches,
    /// and recreated when it does not; an interface of that name that is not a macvlan is
    /// never touched ([`NetlinkError::NotOurInterface`]).
    pub async fn create_macvlan(
        &self,
        name: &InterfaceName,
        parent: u32,
        mac: MacAddr,
    ) -> Result<InterfaceInfo, NetlinkError> {
        if let Some((existing, message)) = self.link_message(name).await? {
            if existing.kind.as_deref() != Some("macvlan") {
                return Err(NetlinkError::NotOurInterface {
                    name: name.to_string(),
                    expected: "macvlan",
                });
            }
            let matches = existing.link == Some(parent)
                && existing.mac == Some(mac)
                && macvlan_mode(&message) == Some(MacVlanMode::Private);
            if matches {
                info!(%name, parent, %mac, "reusing the existing macvlan");
                self.finish_macvlan(existing.index).await?;
                return self.interface_by_index(existing.index).await;
            }
            warn!(%name, "an existing macvlan differs (parent, MAC or mode); recreating it");
            self.delete_link(existing.index).await?;
        }
        let message = LinkMacVlan::new(name.as_str(), parent, MacVlanMode::Private)
            .address(mac.0.to_vec())
            .build();
        self.handle()
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("create macvlan", e))?;
        let created = self.interface_by_name(name.as_str()).await?;
        self.finish_macvlan(created.index).await?;
        info!(%name, parent, %mac, ifindex = created.index, "macvlan created");
        self.interface_by_index(created.index).await
    }

    /// Turn IPv6 address generation off, then bring the link up (in that order: no
    /// link-local is generated in between).
    async fn finish_macvlan(&self, index: u32) -> Result<(), NetlinkError> {
        let no_addrgen = LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]))
            .build();
        match self.handle().link().change(no_addrgen).execute().await {
            Ok(()) => {}
            // A kernel without IPv6 generates no IPv6 addresses anyway.
            Err(e) => match NetlinkError::from_rtnetlink("set addrgenmode", e) {
                NetlinkError::Kernel {
                    errno: Errno::EAFNOSUPPORT,
                    ..
                } => {}
                other => return Err(other),
            },
        }
        self.handle()
            .link()
            .change(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink("set link up", e))
    }

    /// Delete macvlan `name`; a missing one is [`Change::Unchanged`], and an interface of
    /// that name that is not a macvlan is refused.
    pub async fn delete_macvlan(&self, name: &InterfaceName) -> Result<Change, NetlinkError> {
        match self.link_message(name).await? {
            None => Ok(Change::Unchanged),
            Some((existing, _)) if existing.kind.as_deref() != Some("macvlan") => {
                Err(NetlinkError::NotOurInterface {
                    name: name.to_string(),
                    expected: "macvlan",
                })
            }
            Some((existing, _)) => {
                self.delete_link(existing.index).await?;
                info!(%name, "macvlan deleted");
                Ok(Change::Applied)
            }
        }
    }

    async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle().link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) => match NetlinkError::from_rtnetlink("delete link", e) {
                NetlinkError::Kernel {
                    errno: Errno::ENODEV,
                    ..
                } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn link_message(
        &self,
        name: &InterfaceName,
    ) -> Result<Option<(InterfaceInfo, LinkMessage)>, NetlinkError> {
        let mut links = self
            .handle()
            .link()
            .get()
            .match_name(name.as_str())
            .execute();
        match links.try_next().await {
            Ok(Some(message)) => Ok(Some((InterfaceInfo::from_message(&message), message))),
            Ok(None) => Ok(None),
            Err(e) => match NetlinkError::from_rtnetlink("get link", e) {
                NetlinkError::Kernel {
                    errno: Errno::ENODEV,
                    ..
                } => Ok(None),
                other => Err(other),
            },
        }
    }
}

/// The sysctls a virtual-MAC setup needs, as `(setting, value)`: keepalived's set
/// (`vrrp_if_config.c`), plus the IPv6 ones our address-generation decision implies.
///
/// On the macvlan:
/// - `arp_ignore=1`: answer ARP only for addresses configured on the macvlan itself. By
///   default Linux answers for *any* local address on *any* interface, so the macvlan
///   would answer for the parent's own address with the virtual MAC.
/// - `accept_local=1`: accept packets whose source is a local address; the other virtual
///   routers of this box multicast their adverts from the parent's address.
/// - `rp_filter=0`: the macvlan has no route back to most sources (they are routed via the
///   parent), so a strict reverse-path check would drop traffic to the VIPs arriving on it.
///   The kernel uses the maximum of `all` and the interface's value: with
///   `net.ipv4.conf.all.rp_filter=1` this is not enough (see [`apply_vmac_settings`]).
/// - `promote_secondaries=1`: removing one VIP must not remove the other VIPs of its
///   subnet (without it, deleting an IPv4 primary deletes all its secondaries).
/// - IPv4 routers: `disable_ipv6=1`: nothing IPv6 may ever be sent from the shared MAC.
/// - IPv6 routers: `accept_ra=0`: no SLAAC addresses (and their DAD/MLD traffic from the
///   shared MAC on the backup) and no default route through the macvlan.
///
/// On the parent:
/// - `arp_ignore=1`: the parent must not answer ARP for the VIPs (which live on the
///   macvlan) with its own MAC.
/// - `arp_filter=1`: answer only where the reply would be routed, so the parent and the
///   macvlan never both answer.
/// - `arp_announce=2` (not in keepalived's set): replies sourced from a VIP leave through
///   the parent (that is where the route points), and with the default `arp_announce=0`
///   the parent's own ARP requests would carry the VIP as sender address, teaching every
///   neighbour that the VIP is at the *parent's* MAC. 2 makes the kernel put the parent's
///   own address there instead. (Found by this crate's macvlan lab test.)
pub fn vmac_settings(
    vmac: &InterfaceName,
    parent: &InterfaceName,
    family: IpFamily,
) -> Vec<(Setting, u32)> {
    let on_vmac = || ConfScope::Interface(vmac.clone());
    let on_parent = || ConfScope::Interface(parent.clone());
    let mut settings = vec![
        (Setting::Ipv4(on_vmac(), Ipv4Conf::ArpIgnore), 1),
        (Setting::Ipv4(on_vmac(), Ipv4Conf::AcceptLocal), 1),
        (Setting::Ipv4(on_vmac(), Ipv4Conf::RpFilter), 0),
        (Setting::Ipv4(on_vmac(), Ipv4Conf::PromoteSecondaries), 1),
    ];
    settings.push(match family {
        IpFamily::V4 => (Setting::Ipv6(on_vmac(), Ipv6Conf::DisableIpv6), 1),
        IpFamily::V6 => (Setting::Ipv6(on_vmac(), Ipv6Conf::AcceptRa), 0),
    });
    settings.push((Setting::Ipv4(on_parent(), Ipv4Conf::ArpIgnore), 1));
    settings.push((Setting::Ipv4(on_parent(), Ipv4Conf::ArpFilter), 1));
    settings.push((Setting::Ipv4(on_parent(), Ipv4Conf::ArpAnnounce), 2));
    settings
}

/// The parent interface's values before [`apply_vmac_settings`] changed them, to put back
/// when the last virtual MAC on that parent goes away. (The macvlan's own settings go
/// with it.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentRestore {
    previous: Vec<(Setting, u32)>,
}

impl ParentRestore {
    pub fn restore(&self, sysctl: &Sysctl) -> Result<(), SysctlError> {
        for (setting, value) in &self.previous {
            sysctl.set(setting, *value)?;
        }
        Ok(())
    }
}

/// Apply [`vmac_settings`]; call it after the macvlan exists (its `conf/` directory does
/// not before) and before any VIP is added to it. Warns when `all.rp_filter` is strict,
/// which overrides the macvlan's 0: the appliance image must ship it at 0 or 2.
pub fn apply_vmac_settings(
    sysctl: &Sysctl,
    vmac: &InterfaceName,
    parent: &InterfaceName,
    family: IpFamily,
) -> Result<ParentRestore, SysctlError> {
    let mut previous = Vec::new();
    for (setting, value) in vmac_settings(vmac, parent, family) {
        let was = sysctl.set(&setting, value)?;
        if matches!(&setting, Setting::Ipv4(ConfScope::Interface(name), _) if name == parent) {
            previous.push((setting, was));
        }
    }
    match sysctl.get(&Setting::Ipv4(ConfScope::All, Ipv4Conf::RpFilter)) {
        Ok(1) => warn!(
            %vmac,
            "net.ipv4.conf.all.rp_filter is 1 (strict): it overrides the macvlan's 0 and traffic to its VIPs may be dropped"
        ),
        Ok(_) => {}
        Err(error) => warn!(%error, "cannot read net.ipv4.conf.all.rp_filter"),
    }
    Ok(ParentRestore { previous })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_follow_rfc_5798_section_7_3() {
        assert_eq!(
            virtual_mac(IpFamily::V4, 51).to_string(),
            "00:00:5e:00:01:33"
        );
        assert_eq!(
            virtual_mac(IpFamily::V6, 51).to_string(),
            "00:00:5e:00:02:33"
        );
        assert_eq!(
            virtual_mac(IpFamily::V4, 255).to_string(),
            "00:00:5e:00:01:ff"
        );
        assert_eq!(
            virtual_mac(IpFamily::V6, 1).to_string(),
            "00:00:5e:00:02:01"
        );
    }

    fn names() -> (InterfaceName, InterfaceName) {
        (
            InterfaceName::new("vr4-51").unwrap(),
            InterfaceName::new("eth0").unwrap(),
        )
    }

    #[test]
    fn vmac_settings_for_ipv4() {
        let (vmac, parent) = names();
        let rendered: Vec<String> = vmac_settings(&vmac, &parent, IpFamily::V4)
            .iter()
            .map(|(s, v)| format!("{s}={v}"))
            .collect();
        assert_eq!(
            rendered,
            [
                "net.ipv4.conf.vr4-51.arp_ignore=1",
                "net.ipv4.conf.vr4-51.accept_local=1",
                "net.ipv4.conf.vr4-51.rp_filter=0",
                "net.ipv4.conf.vr4-51.promote_secondaries=1",
                "net.ipv6.conf.vr4-51.disable_ipv6=1",
                "net.ipv4.conf.eth0.arp_ignore=1",
                "net.ipv4.conf.eth0.arp_filter=1",
                "net.ipv4.conf.eth0.arp_announce=2",
            ]
        );
    }

    #[test]
    fn vmac_settings_for_ipv6_keep_ipv6_but_refuse_router_advertisements() {
        let (vmac, parent) = names();
        let settings = vmac_settings(&vmac, &parent, IpFamily::V6);
        assert!(
            settings
                .iter()
                .any(|(s, v)| s.to_string() == "net.ipv6.conf.vr4-51.accept_ra" && *v == 0)
        );
        assert!(
            !settings
                .iter()
                .any(|(s, _)| s.to_string().ends_with("disable_ipv6"))
        );
        assert!(settings.iter().all(|(s, v)| s.allows(*v)));
    }

    #[test]
    fn apply_records_only_the_parent_for_restore() {
        let root = std::env::temp_dir().join(format!("tandem-net-vmac-{}", std::process::id()));
        let (vmac, parent) = names();
        for (setting, _) in vmac_settings(&vmac, &parent, IpFamily::V4) {
            let path = root.join(setting.relative_path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "0\n").unwrap();
        }
        let all_rp = root.join("net/ipv4/conf/all/rp_filter");
        std::fs::create_dir_all(all_rp.parent().unwrap()).unwrap();
        std::fs::write(all_rp, "2\n").unwrap();

        let sysctl = Sysctl::with_root(&root);
        let restore = apply_vmac_settings(&sysctl, &vmac, &parent, IpFamily::V4).unwrap();
        let parent_ignore =
            Setting::Ipv4(ConfScope::Interface(parent.clone()), Ipv4Conf::ArpIgnore);
        assert_eq!(sysctl.get(&parent_ignore).unwrap(), 1);
        assert_eq!(restore.previous.len(), 3);
        restore.restore(&sysctl).unwrap();
        assert_eq!(sysctl.get(&parent_ignore).unwrap(), 0);
        // The macvlan's own settings stay (they go away with the macvlan).
        let vmac_ignore = Setting::Ipv4(ConfScope::Interface(vmac), Ipv4Conf::ArpIgnore);
        assert_eq!(sysctl.get(&vmac_ignore).unwrap(), 1);
        std::fs::remove_dir_all(root).unwrap();
    }
}
