//! Telling the link that the VIPs moved: gratuitous ARP for IPv4, unsolicited neighbour
//! advertisements for IPv6 (RFC 5798 §6.4.1 (2), §6.4.2 (4): "broadcast a gratuitous ARP
//! request … / send an Unsolicited ND Neighbor Advertisement … for each IP address").
//!
//! The frame builders are pure; [`Announcer`] sends frames on an `AF_PACKET` socket bound
//! to one interface, in bursts ([`Burst`]). The second, delayed burst keepalived sends
//! (`garp_master_delay`) is a timer of the daemon loop, which calls
//! [`Announcer::send_burst`] again.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, send};
use pnet_packet::MutablePacket;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NdpOptionTypes, NeighborAdvertFlags};
use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tracing::{debug, trace};

use crate::MacAddr;
use crate::interface::InterfaceName;
use crate::sysctl::{ConfScope, Ipv6Conf, Setting, Sysctl, SysctlError};

const ETHERNET_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6 NA with one target link-layer address option (RFC 4861 §4.4, §4.6.1).
const NA_LEN: usize = 24 + 8;

/// Length of a gratuitous ARP frame: Ethernet header and ARP, no padding (the driver pads
/// to the 60-byte minimum, as for keepalived's frames).
pub const GARP_FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_LEN;
/// Length of an unsolicited neighbour advertisement frame.
pub const UNSOLICITED_NA_FRAME_LEN: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;

/// The all-nodes address an unsolicited NA goes to (RFC 4861 §7.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet mapping of ff02::1 (RFC 2464 §7: 33:33 and the low 32 bits).
pub const ALL_NODES_MAC: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);

/// A gratuitous ARP announcing that `vip` is at `sender`: an ARP *request* with sender and
/// target protocol address both the VIP, from `sender` to the Ethernet broadcast (RFC 5227
/// §3 "ARP Announcement"; RFC 5798 §6.4.1 asks for a gratuitous ARP *request*).
///
/// The target hardware address is the broadcast address, not zero as RFC 5227 §3 suggests
/// (receivers ignore the field): that is what keepalived sends (checked byte for byte
/// against its capture), so our bursts compare directly with its captures. Linux treats
/// sender IP = target IP as gratuitous, which overrides its ARP "locktime" and updates an
/// existing entry.
///
/// `sender` is the interface's MAC, or the virtual MAC 00:00:5e:00:01:VRID when a macvlan
/// carries it (RFC 5798 §7.3).
pub fn gratuitous_arp(sender: MacAddr, vip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut frame = [0u8; GARP_FRAME_LEN];
    {
        let mut ethernet =
            MutableEthernetPacket::new(&mut frame).expect("buffer fits an Ethernet header");
        ethernet.set_destination(MacAddr::BROADCAST.to_pnet());
        ethernet.set_source(sender.to_pnet());
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut frame[ETHERNET_HEADER_LEN..])
        .expect("buffer fits an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(sender.to_pnet());
    arp.set_sender_proto_addr(vip);
    arp.set_target_hw_addr(MacAddr::BROADCAST.to_pnet());
    arp.set_target_proto_addr(vip);
    frame
}

/// An unsolicited neighbour advertisement for `vip` at `sender` (RFC 4861 §7.2.6; RFC 5798
/// §6.4.1, §6.4.2): to all-nodes ff02::1, hop limit 255 (receivers drop ND with any other,
/// RFC 4861 §7.1.2), Override set so that caches holding the old box's MAC are updated
/// (§4.4, §7.2.5), Solicited clear (it answers nothing), with a target link-layer address
/// option carrying `sender`.
///
/// The source address is the VIP itself, as keepalived does; RFC 4861 §4.4 asks for "an
/// address assigned to the interface", which the VIP is once added (with NODAD, so never
/// tentative). `router` is the R flag. RFC 5798 asks for it *set* (a virtual router's
/// address is a router's); keepalived sets it only when the box forwards IPv6 on the
/// interface ([`router_flag`]). It matters to hosts that use the VIP as a router: an NA
/// with R clear makes them drop it from their default router list (RFC 4861 §7.2.5).
pub fn unsolicited_na(
    sender: MacAddr,
    vip: Ipv6Addr,
    router: bool,
) -> [u8; UNSOLICITED_NA_FRAME_LEN] {
    let mut frame = [0u8; UNSOLICITED_NA_FRAME_LEN];
    {
        let mut ethernet =
            MutableEthernetPacket::new(&mut frame).expect("buffer fits an Ethernet header");
        ethernet.set_destination(ALL_NODES_MAC.to_pnet());
        ethernet.set_source(sender.to_pnet());
        ethernet.set_ethertype(EtherTypes::Ipv6);
    }
    {
        let mut ip = MutableIpv6Packet::new(&mut frame[ETHERNET_HEADER_LEN..])
            .expect("buffer fits an IPv6 header");
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        ip.set_payload_length(NA_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(255);
        ip.set_source(vip);
        ip.set_destination(ALL_NODES);
    }
    let icmp = &mut frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..];
    {
        let mut na =
            MutableNeighborAdvertPacket::new(icmp).expect("buffer fits a neighbour advertisement");
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(pnet_packet::icmpv6::Icmpv6Code(0));
        let mut flags = NeighborAdvertFlags::Override;
        if router {
            flags |= NeighborAdvertFlags::Router;
        }
        na.set_flags(flags);
        na.set_reserved(0);
        na.set_target_addr(vip);
        // The target link-layer address option: type 2, length 1 (8 octets).
        let options = &mut na.packet_mut()[24..];
        options[0] = NdpOptionTypes::TargetLLAddr.0;
        options[1] = 1;
        options[2..8].copy_from_slice(&sender.0);
    }
    let checksum = {
        let packet = Icmpv6Packet::new(icmp).expect("buffer fits an ICMPv6 header");
        pnet_packet::icmpv6::checksum(&packet, &vip, &ALL_NODES)
    };
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// The announcement frames for a set of VIPs: a gratuitous ARP for each IPv4 one and an
/// unsolicited NA for each IPv6 one, all from `sender`.
pub fn announcement_frames(sender: MacAddr, vips: &[IpAddr], ipv6_router: bool) -> Vec<Vec<u8>> {
    vips.iter()
        .map(|vip| match vip {
            IpAddr::V4(v4) => gratuitous_arp(sender, *v4).to_vec(),
            IpAddr::V6(v6) => unsolicited_na(sender, *v6, ipv6_router).to_vec(),
        })
        .collect()
}

/// Whether NAs sent on `interface` carry the Router flag: whether the box forwards IPv6
/// there (keepalived reads the same sysctl).
pub fn router_flag(sysctl: &Sysctl, interface: &InterfaceName) -> Result<bool, SysctlError> {
    let setting = Setting::Ipv6(
        ConfScope::Interface(interface.clone()),
        Ipv6Conf::Forwarding,
    );
    Ok(sysctl.get(&setting)? != 0)
}

/// How many times to send each frame, and how long to wait between rounds. keepalived's
/// defaults (`garp_master_repeat 5`, `garp_interval 0`) are the default: five rounds back
/// to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    pub count: u32,
    pub spacing: Duration,
}

impl Default for Burst {
    fn default() -> Self {
        Burst {
            count: 5,
            spacing: Duration::ZERO,
        }
    }
}

/// Sending failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("no tokio runtime is current: the socket needs one to register with")]
    NoRuntime,
    #[error("{operation} on the announcement socket of interface {ifindex}: {source}")]
    Io {
        operation: &'static str,
        ifindex: u32,
        #[source]
        source: io::Error,
    },
}

/// Sends whole Ethernet frames on one interface.
#[derive(Debug)]
pub struct Announcer {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl Announcer {
    /// Open an `AF_PACKET` socket bound to `ifindex` that sends and never receives. Needs
    /// `CAP_NET_RAW`; the socket belongs to the calling thread's network namespace.
    pub fn open(ifindex: u32) -> Result<Self, AnnounceError> {
        let io = |operation| {
            move |source| AnnounceError::Io {
                operation,
                ifindex,
                source,
            }
        };
        let socket = crate::packet_socket::open(ifindex, 0).map_err(io("open AF_PACKET socket"))?;
        let fd = crate::reactor::register(socket)
            .ok_or(AnnounceError::NoRuntime)?
            .map_err(io("register with tokio"))?;
        Ok(Announcer { fd, ifindex })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Send one complete Ethernet frame.
    pub async fn send_frame(&self, frame: &[u8]) -> Result<(), AnnounceError> {
        let io = |operation| {
            move |source| AnnounceError::Io {
                operation,
                ifindex: self.ifindex,
                source,
            }
        };
        loop {
            let mut guard = self.fd.writable().await.map_err(io("poll"))?;
            match guard.try_io(|fd| {
                send(fd.get_ref().as_raw_fd(), frame, MsgFlags::empty()).map_err(io::Error::from)
            }) {
                Ok(result) => {
                    let sent = result.map_err(io("send"))?;
                    if sent != frame.len() {
                        return Err(io("send")(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("sent {sent} of {} bytes", frame.len()),
                        )));
                    }
                    trace!(ifindex = self.ifindex, len = frame.len(), "frame sent");
                    return Ok(());
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// Send every frame `burst.count` times: one round sends each frame once, and rounds
    /// are `burst.spacing` apart (no wait after the last). Stops at the first error: every
    /// frame leaves the same interface, so an error is the interface's, not the frame's.
    pub async fn send_burst<F: AsRef<[u8]>>(
        &self,
        frames: &[F],
        burst: Burst,
    ) -> Result<(), AnnounceError> {
        for round in 0..burst.count {
            for frame in frames {
                self.send_frame(frame.as_ref()).await?;
            }
            if round + 1 < burst.count && !burst.spacing.is_zero() {
                tokio::time::sleep(burst.spacing).await;
            }
        }
        debug!(
            ifindex = self.ifindex,
            frames = frames.len(),
            rounds = burst.count,
            "announcement burst sent"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame 2 of the shared keepalived capture: its gratuitous ARP for 10.99.0.254.
    const KEEPALIVED_GARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x92, 0x81, 0xce, 0x5d, 0xfa, 0xba, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x92, 0x81, 0xce, 0x5d, 0xfa, 0xba, 0x0a, 0x63,
        0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x63, 0x00, 0xfe,
    ];

    #[test]
    fn garp_matches_keepalived_byte_for_byte() {
        let frame = gratuitous_arp(
            MacAddr([0x92, 0x81, 0xce, 0x5d, 0xfa, 0xba]),
            Ipv4Addr::new(10, 99, 0, 254),
        );
        assert_eq!(frame, KEEPALIVED_GARP);
    }

    #[test]
    fn garp_with_the_virtual_mac() {
        let vmac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, 51]);
        let frame = gratuitous_arp(vmac, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(&frame[6..12], &vmac.0); // Ethernet source
        assert_eq!(&frame[22..28], &vmac.0); // ARP sender hardware address
        assert_eq!(&frame[28..32], &[192, 0, 2, 1]); // sender IP …
        assert_eq!(&frame[38..42], &[192, 0, 2, 1]); // … equals target IP
    }

    /// The RFC 1071 one's-complement sum, written out independently of pnet.
    fn icmpv6_checksum_ok(frame: &[u8]) -> bool {
        let ip = &frame[14..54];
        let icmp = &frame[54..];
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
                sum += u32::from(word);
            }
        };
        add(&ip[8..40]); // source and destination
        add(&(icmp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn unsolicited_na_layout() {
        let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let vip: Ipv6Addr = "2001:db8::254".parse().unwrap();
        let frame = unsolicited_na(mac, vip, false);
        assert_eq!(frame.len(), 86);
        // Ethernet: all-nodes multicast MAC, our MAC, IPv6.
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&frame[6..12], &mac.0);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        // IPv6: version 6, payload 32, next header 58, hop limit 255, VIP → ff02::1.
        assert_eq!(frame[14] >> 4, 6);
        assert_eq!(&frame[18..20], &[0, 32]);
        assert_eq!(frame[20], 58);
        assert_eq!(frame[21], 255);
        assert_eq!(&frame[22..38], &vip.octets());
        assert_eq!(&frame[38..54], &ALL_NODES.octets());
        // ICMPv6 NA: type 136, code 0, flags O only, target VIP, TLLA option with our MAC.
        assert_eq!(frame[54], 136);
        assert_eq!(frame[55], 0);
        assert_eq!(frame[58], 0b0010_0000);
        assert_eq!(&frame[59..62], &[0, 0, 0]);
        assert_eq!(&frame[62..78], &vip.octets());
        assert_eq!(&frame[78..80], &[2, 1]);
        assert_eq!(&frame[80..86], &mac.0);
        assert!(icmpv6_checksum_ok(&frame));
    }

    #[test]
    fn unsolicited_na_router_flag_and_checksum() {
        let mac = MacAddr([0x00, 0x00, 0x5e, 0x00, 0x02, 51]);
        let vip: Ipv6Addr = "fe80::1".parse().unwrap();
        let frame = unsolicited_na(mac, vip, true);
        assert_eq!(frame[58], 0b1010_0000);
        assert!(icmpv6_checksum_ok(&frame));
        let mut corrupted = frame;
        corrupted[70] ^= 1;
        assert!(!icmpv6_checksum_ok(&corrupted));
    }

    #[test]
    fn frames_for_a_mixed_vip_set() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let vips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let frames = announcement_frames(mac, &vips, false);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), GARP_FRAME_LEN);
        assert_eq!(frames[1].len(), UNSOLICITED_NA_FRAME_LEN);
    }

    #[test]
    fn default_burst_is_keepalived_s() {
        assert_eq!(
            Burst::default(),
            Burst {
                count: 5,
                spacing: Duration::ZERO
            }
        );
    }
}
