//! The heartbeat's sockets and interfaces: one VRRP socket per interface and address family
//! (shared by the routers there, packets dispatched by VRID), one announcer per interface
//! that carries VIPs, the optional virtual-MAC macvlan (RFC 5798 §7.3).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tandem_net::interface::InterfaceInfo;
use tandem_net::macvlan::{ParentRestore, apply_vmac_settings, virtual_mac};
use tandem_net::sysctl::Sysctl;
use tandem_net::vrrp_socket::VrrpSocketError;
use tandem_net::{
    Announcer, Delivery, InterfaceName, IpFamily, MacAddr, Netlink, VrrpSocket, VrrpSocketOptions,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::RouterConfig;
use crate::handle::HaError;
use crate::tasks::{Input, spawn_receiver};

/// A VRRP socket's identity: the interface it is bound to and its family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SocketKey {
    pub interface: String,
    pub family: IpFamily,
}

impl fmt::Display for SocketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.interface, self.family)
    }
}

/// An open VRRP socket and its receiving task.
#[derive(Debug)]
pub(crate) struct SocketRt {
    pub socket: Arc<VrrpSocket>,
    receiver: JoinHandle<()>,
}

impl Drop for SocketRt {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl SocketRt {
    /// Opens the socket of `key` and starts receiving. Multicast joins the group; a socket
    /// whose routers all send unicast joins nothing (tandem-net: unicast adverts to our
    /// address reach every VRRP socket of the interface anyway).
    pub(crate) fn open(
        key: &SocketKey,
        delivery: Delivery,
        source: Option<IpAddr>,
        inputs: UnboundedSender<Input>,
    ) -> Result<SocketRt, HaError> {
        let socket = VrrpSocket::open(
            &key.interface,
            key.family,
            VrrpSocketOptions { delivery, source },
        )
        .map_err(|e| match e {
            VrrpSocketError::NoLocalAddress { .. } => HaError::NotReady {
                interface: key.interface.clone(),
                message: e.to_string(),
            },
            e => HaError::Interface {
                interface: key.interface.clone(),
                message: e.to_string(),
            },
        })?;
        let socket = Arc::new(socket);
        info!(socket = %key, source = %socket.local_address(), ?delivery, "VRRP socket open");
        let receiver = spawn_receiver(key.clone(), socket.clone(), inputs);
        Ok(SocketRt { socket, receiver })
    }

    pub(crate) fn delivery(&self) -> Delivery {
        self.socket.delivery()
    }
}

/// Where a router's VIPs live and what announces them.
#[derive(Debug)]
pub(crate) struct VipLink {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub announcer: Arc<Announcer>,
    /// The macvlan of a virtual-MAC router, with the parent's sysctls to restore.
    pub vmac: Option<(InterfaceName, ParentRestore)>,
}

pub(crate) fn interface_error(interface: &str) -> impl Fn(String) -> HaError + Copy + '_ {
    move |message| HaError::Interface {
        interface: interface.to_owned(),
        message,
    }
}

/// The macvlan name of a virtual-MAC router: `vrrp4.51.3` (family, VRID, parent index),
/// unique per box, at most 15 bytes.
pub(crate) fn vmac_name(family: IpFamily, vrid: u8, parent: u32) -> InterfaceName {
    let digit = if family == IpFamily::V4 { 4 } else { 6 };
    InterfaceName::new(format!("vrrp{digit}.{vrid}.{}", parent % 100_000))
        .expect("at most 4+1+1+3+1+5 bytes of digits and dots")
}

/// Prepares the link a router's VIPs go on: the interface itself, or a fresh macvlan with
/// the virtual MAC (an old one of the same name, left by a crash, is replaced).
pub(crate) async fn prepare_vip_link(
    netlink: &Netlink,
    router: &RouterConfig,
    parent: &InterfaceInfo,
) -> Result<VipLink, HaError> {
    let err = interface_error(&router.interface);
    if !router.virtual_mac {
        let mac = parent.mac.unwrap_or(MacAddr::ZERO);
        let announcer = Announcer::open(parent.index).map_err(|e| err(e.to_string()))?;
        return Ok(VipLink {
            ifindex: parent.index,
            mac,
            announcer: Arc::new(announcer),
            vmac: None,
        });
    }
    let family = router.family();
    let name = vmac_name(family, router.vrid, parent.index);
    let mac = virtual_mac(family, router.vrid);
    let _ = netlink.delete_macvlan(&name).await;
    let info = netlink
        .create_macvlan(&name, parent.index, mac)
        .await
        .map_err(|e| err(format!("create the virtual MAC interface {name}: {e}")))?;
    let parent_name = InterfaceName::new(parent.name.clone()).map_err(|e| err(e.to_string()))?;
    let restore = apply_vmac_settings(&Sysctl::new(), &name, &parent_name, family)
        .map_err(|e| err(format!("sysctls of {name}: {e}")))?;
    let announcer = Announcer::open(info.index).map_err(|e| err(e.to_string()))?;
    Ok(VipLink {
        ifindex: info.index,
        mac,
        announcer: Arc::new(announcer),
        vmac: Some((name, restore)),
    })
}

/// The address a virtual-MAC router advertises from: the parent's primary IPv4 address or
/// its IPv6 link-local, which is then added to the macvlan (NODAD) so that the socket
/// bound there can send from it (docs/net.md).
pub(crate) async fn vmac_source(
    netlink: &Netlink,
    router: &RouterConfig,
    parent: u32,
    vmac: u32,
) -> Result<IpAddr, HaError> {
    let err = interface_error(&router.interface);
    let vips = router.vip_addresses();
    let addresses = netlink
        .addresses(parent)
        .await
        .map_err(|e| err(e.to_string()))?;
    let family = router.family();
    let source = addresses
        .iter()
        .map(|a| a.net)
        .find(|n| {
            IpFamily::of(&n.addr()) == family
                && !vips.contains(&n.addr())
                && match n.addr() {
                    IpAddr::V4(_) => true,
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
                }
        })
        .ok_or_else(|| err(format!("no {family} address to advertise from")))?;
    if let IpNet::V6(ll) = source {
        let net = IpNet::V6(ipnet::Ipv6Net::new(ll.addr(), 64).expect("64 is a valid prefix"));
        netlink
            .add_address(vmac, net)
            .await
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(source.addr())
}
