//! Raw IP protocol 112 sockets for VRRPv3 adverts (RFC 5798 §5.1), IPv4 and IPv6.
//!
//! A [`VrrpSocket`] is bound to one interface (`SO_BINDTODEVICE`), so it only hears adverts
//! that arrived there, and in [`Delivery::Multicast`] mode it joins 224.0.0.18 or ff02::12
//! on that interface only. In [`Delivery::Unicast`] mode (for networks that block
//! multicast) it joins nothing and, with `IP(V6)_MULTICAST_ALL` off, hears no multicast
//! adverts at all, only those sent to one of its addresses.
//!
//! The bytes handed to [`VrrpSocket::send_to`] are a complete VRRP packet *including its
//! checksum*, and [`VrrpSocket::recv`] returns the VRRP packet exactly as received,
//! checksum unverified, for IPv4 and IPv6 alike: the codec in `tandem-vrrp` computes and
//! checks the checksum over the RFC 5798 §5.2.8 pseudo-header, using
//! [`VrrpSocket::local_address`] as the source and the [`Received`] source/destination.
//! The kernel's `IPV6_CHECKSUM` is deliberately left off: it would silently drop adverts
//! with a bad checksum, and the daemon must count those (docs/net.md).
//!
//! Every advert leaves with the source address the checksum was computed with:
//! `IP_PKTINFO`/`IPV6_PKTINFO` on each send pins it, whatever the routing table would pick.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
    recvmsg, sendmsg, setsockopt, sockopt,
};
use pnet_packet::ipv4::Ipv4Packet;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tracing::debug;

use crate::IpFamily;
use crate::interface::{InterfaceName, InvalidInterfaceName};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, §5.1.2.3).
pub const VRRP_PROTOCOL: u8 = 112;
/// The IPv4 multicast address of VRRP (RFC 5798 §5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast address of VRRP (RFC 5798 §5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit of every advert: a receiver drops anything else, which proves the
/// sender is on the link (RFC 5798 §5.1.1.3, §5.1.2.3, §7.1).
pub const VRRP_TTL: u8 = 255;
/// The fixed part of a VRRPv3 packet (RFC 5798 §5.1); anything shorter is not an advert.
pub const VRRP_HEADER_LEN: usize = 8;
/// DSCP CS6 ("internetwork control"), the class keepalived gives adverts, so that QoS on
/// the path prioritises heartbeats over the data they protect.
const TOS_INTERNETWORK_CONTROL: u32 = 0xc0;
/// The largest advert: the 8-byte header and 255 IPv6 addresses (4088 bytes), plus a
/// maximal IPv4 header. Anything longer is reported as truncated.
const RECV_BUFFER_LEN: usize = 8192;

/// How adverts reach the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Join 224.0.0.18 / ff02::12 on the interface (RFC 5798 §5.1.1.2, §5.1.2.2).
    #[default]
    Multicast,
    /// Join nothing; adverts are sent to each configured peer's unicast address.
    Unicast,
}

/// How to open a [`VrrpSocket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VrrpSocketOptions {
    pub delivery: Delivery,
    /// The source of sent adverts. `None` picks RFC 5798's: the interface's primary IPv4
    /// address (§5.1.1.1), or its IPv6 link-local address (§5.1.2.1). Set it to send from a
    /// macvlan with the parent's address, or to choose among several.
    pub source: Option<IpAddr>,
}

/// One advert as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The VRRP packet (the IP payload), checksum not verified.
    pub payload: Vec<u8>,
    pub src: IpAddr,
    /// The destination address: the VRRP group, or ours for a unicast advert.
    pub dst: IpAddr,
    /// The IPv4 TTL or IPv6 hop limit it arrived with.
    pub ttl: u8,
    /// The interface it arrived on.
    pub ifindex: u32,
}

/// Opening or sending failed.
#[derive(Debug, thiserror::Error)]
pub enum VrrpSocketError {
    #[error(transparent)]
    InvalidName(#[from] InvalidInterfaceName),
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    #[error(
        "interface {interface} has no {family} address to send adverts from (IPv6 needs a link-local one; is the link up?)"
    )]
    NoLocalAddress { interface: String, family: IpFamily },
    #[error("{address} is not an {family} address, but this is an {family} VRRP socket")]
    WrongFamily { address: IpAddr, family: IpFamily },
    #[error("no tokio runtime is current: the socket needs one to register with")]
    NoRuntime,
    #[error("{operation} on the {family} VRRP socket of {interface}: {source}")]
    Io {
        operation: &'static str,
        interface: String,
        family: IpFamily,
        #[source]
        source: io::Error,
    },
}

/// Receiving failed: the socket itself, or one packet that is not a well-formed advert.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("receive on a VRRP socket: {0}")]
    Io(#[from] io::Error),
    /// One bad packet; the socket is fine. The caller counts it and receives again.
    #[error("malformed packet: {0}")]
    Malformed(#[from] Malformed),
}

/// Why a received packet was rejected before it reached the VRRP codec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("longer than {limit} bytes (truncated)")]
    Truncated { limit: usize },
    #[error("shorter than an IPv4 header ({len} bytes)")]
    ShortIpHeader { len: usize },
    #[error("IP version {version}, expected 4")]
    NotIpv4 { version: u8 },
    #[error("IPv4 header length {header_len} does not fit the {len}-byte datagram")]
    BadHeaderLength { header_len: usize, len: usize },
    #[error("IPv4 total length {total_len} does not fit the {len}-byte datagram")]
    BadTotalLength { total_len: usize, len: usize },
    #[error("IP protocol {protocol}, expected 112 (VRRP)")]
    NotVrrp { protocol: u8 },
    #[error("VRRP payload of {len} bytes is shorter than the 8-byte header")]
    ShortPayload { len: usize },
    #[error("the kernel did not supply {0}")]
    MissingAncillary(&'static str),
}

/// A raw VRRP socket on one interface, for one address family.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    family: IpFamily,
    interface: InterfaceName,
    ifindex: u32,
    local: IpAddr,
    delivery: Delivery,
}

impl VrrpSocket {
    /// Open a VRRP socket of `family` on `interface`, in the calling thread's network
    /// namespace, registered with the current tokio runtime.
    ///
    /// Needs `CAP_NET_RAW`. Fails with [`VrrpSocketError::NoLocalAddress`] while the
    /// interface has no address to send from (an IPv6 link-local appears only once the
    /// link is up): the caller retries.
    pub fn open(
        interface: &str,
        family: IpFamily,
        options: VrrpSocketOptions,
    ) -> Result<Self, VrrpSocketError> {
        let interface = InterfaceName::new(interface)?;
        let ifindex = nix::net::if_::if_nametoindex(interface.as_str())
            .map_err(|_| VrrpSocketError::NoSuchInterface(interface.to_string()))?;
        let local = match options.source {
            Some(source) if IpFamily::of(&source) != family => {
                return Err(VrrpSocketError::WrongFamily {
                    address: source,
                    family,
                });
            }
            Some(source) => source,
            None => discover_local_address(&interface, family)?,
        };
        let io = |operation: &'static str| {
            let interface = interface.to_string();
            move |source: io::Error| VrrpSocketError::Io {
                operation,
                interface,
                family,
                source,
            }
        };
        let errno = |operation: &'static str| {
            let to_io = io(operation);
            move |e: Errno| to_io(io::Error::from(e))
        };

        let domain = match family {
            IpFamily::V4 => Domain::IPV4,
            IpFamily::V6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(VRRP_PROTOCOL))),
        )
        .map_err(io("socket"))?;
        socket
            .bind_device(Some(interface.as_str().as_bytes()))
            .map_err(io("SO_BINDTODEVICE"))?;
        socket.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
        match family {
            IpFamily::V4 => {
                socket
                    .set_ttl_v4(u32::from(VRRP_TTL))
                    .map_err(io("IP_TTL"))?;
                socket
                    .set_multicast_ttl_v4(u32::from(VRRP_TTL))
                    .map_err(io("IP_MULTICAST_TTL"))?;
                // Our own adverts are not news to us.
                socket
                    .set_multicast_loop_v4(false)
                    .map_err(io("IP_MULTICAST_LOOP"))?;
                // Only groups this socket joined, not every group joined on the host.
                socket
                    .set_multicast_all_v4(false)
                    .map_err(io("IP_MULTICAST_ALL"))?;
                socket
                    .set_tos_v4(TOS_INTERNETWORK_CONTROL)
                    .map_err(io("IP_TOS"))?;
                setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(errno("IP_PKTINFO"))?;
                if options.delivery == Delivery::Multicast {
                    socket
                        .join_multicast_v4_n(
                            &VRRP_GROUP_V4,
                            &InterfaceIndexOrAddress::Index(ifindex),
                        )
                        .map_err(io("IP_ADD_MEMBERSHIP"))?;
                }
            }
            IpFamily::V6 => {
                socket
                    .set_unicast_hops_v6(u32::from(VRRP_TTL))
                    .map_err(io("IPV6_UNICAST_HOPS"))?;
                socket
                    .set_multicast_hops_v6(u32::from(VRRP_TTL))
                    .map_err(io("IPV6_MULTICAST_HOPS"))?;
                socket
                    .set_multicast_loop_v6(false)
                    .map_err(io("IPV6_MULTICAST_LOOP"))?;
                socket
                    .set_multicast_all_v6(false)
                    .map_err(io("IPV6_MULTICAST_ALL"))?;
                socket
                    .set_multicast_if_v6(ifindex)
                    .map_err(io("IPV6_MULTICAST_IF"))?;
                socket
                    .set_tclass_v6(TOS_INTERNETWORK_CONTROL)
                    .map_err(io("IPV6_TCLASS"))?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                    .map_err(errno("IPV6_RECVPKTINFO"))?;
                setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)
                    .map_err(errno("IPV6_RECVHOPLIMIT"))?;
                if options.delivery == Delivery::Multicast {
                    socket
                        .join_multicast_v6(&VRRP_GROUP_V6, ifindex)
                        .map_err(io("IPV6_JOIN_GROUP"))?;
                }
            }
        }
        let fd = crate::reactor::register(socket)
            .ok_or(VrrpSocketError::NoRuntime)?
            .map_err(io("register with tokio"))?;
        debug!(%interface, ifindex, %family, %local, delivery = ?options.delivery, "VRRP socket open");
        Ok(VrrpSocket {
            fd,
            family,
            interface,
            ifindex,
            local,
            delivery: options.delivery,
        })
    }

    /// The source address of every advert this socket sends; the codec uses it for the
    /// checksum pseudo-header, and the state machine to break priority ties (RFC 5798
    /// §6.4.3: the higher primary address wins).
    pub fn local_address(&self) -> IpAddr {
        self.local
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    pub fn interface(&self) -> &InterfaceName {
        &self.interface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The multicast group adverts of this family go to.
    pub fn group(&self) -> IpAddr {
        match self.family {
            IpFamily::V4 => IpAddr::V4(VRRP_GROUP_V4),
            IpFamily::V6 => IpAddr::V6(VRRP_GROUP_V6),
        }
    }

    /// Send one complete VRRP packet (checksum included) to `dst`: the group
    /// ([`Self::group`]) or a unicast peer. It leaves this socket's interface with TTL/hop
    /// limit 255 and source [`Self::local_address`].
    pub async fn send_to(&self, payload: &[u8], dst: IpAddr) -> Result<(), VrrpSocketError> {
        if IpFamily::of(&dst) != self.family {
            return Err(VrrpSocketError::WrongFamily {
                address: dst,
                family: self.family,
            });
        }
        let sent = loop {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|e| self.io_error("poll", e))?;
            match guard.try_io(|fd| self.send_once(fd.get_ref().as_raw_fd(), payload, dst)) {
                Ok(result) => break result.map_err(|e| self.io_error("send", e))?,
                Err(_would_block) => continue,
            }
        };
        if sent != payload.len() {
            return Err(self.io_error(
                "send",
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("sent {sent} of {} bytes", payload.len()),
                ),
            ));
        }
        Ok(())
    }

    fn send_once(&self, fd: RawFd, payload: &[u8], dst: IpAddr) -> io::Result<usize> {
        let iov = [IoSlice::new(payload)];
        let sent = match (dst, self.local) {
            (IpAddr::V4(dst), IpAddr::V4(local)) => {
                // ipi_spec_dst is the source address of the datagram (ip(7)).
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(local).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            (IpAddr::V6(dst), IpAddr::V6(local)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: local.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let scope = if needs_scope(&dst) { self.ifindex } else { 0 };
                let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        sent.map_err(io::Error::from)
    }

    /// Receive the next packet. A packet that is not a well-formed VRRP datagram is
    /// [`RecvError::Malformed`] (count it and call again); only
    /// [`RecvError::Io`] means the socket is in trouble.
    pub async fn recv(&self) -> Result<Received, RecvError> {
        let mut buffer = vec![0u8; RECV_BUFFER_LEN];
        let raw = loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| self.recv_once(fd.get_ref().as_raw_fd(), &mut buffer)) {
                Ok(result) => break result?,
                Err(_would_block) => continue,
            }
        };
        if raw.truncated {
            return Err(Malformed::Truncated {
                limit: RECV_BUFFER_LEN,
            }
            .into());
        }
        let datagram = &buffer[..raw.len];
        let received = match self.family {
            IpFamily::V4 => {
                let parsed = parse_ipv4(datagram)?;
                Received {
                    payload: datagram[parsed.payload].to_vec(),
                    src: IpAddr::V4(parsed.src),
                    dst: IpAddr::V4(parsed.dst),
                    ttl: parsed.ttl,
                    ifindex: raw.ifindex.unwrap_or(self.ifindex),
                }
            }
            IpFamily::V6 => Received {
                payload: datagram.to_vec(),
                src: raw
                    .src
                    .ok_or(Malformed::MissingAncillary("the source address"))?,
                dst: raw.dst.ok_or(Malformed::MissingAncillary("IPV6_PKTINFO"))?,
                ttl: raw
                    .hop_limit
                    .ok_or(Malformed::MissingAncillary("IPV6_HOPLIMIT"))?,
                ifindex: raw.ifindex.unwrap_or(self.ifindex),
            },
        };
        if received.payload.len() < VRRP_HEADER_LEN {
            return Err(Malformed::ShortPayload {
                len: received.payload.len(),
            }
            .into());
        }
        Ok(received)
    }

    fn recv_once(&self, fd: RawFd, buffer: &mut [u8]) -> io::Result<RawReceived> {
        let mut iov = [IoSliceMut::new(buffer)];
        let mut control = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int, libc::in_pktinfo);
        let message =
            recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), MsgFlags::empty())
                .map_err(io::Error::from)?;
        let mut raw = RawReceived {
            len: message.bytes,
            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
            src: message.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            }),
            dst: None,
            hop_limit: None,
            ifindex: None,
        };
        // A control buffer too small to iterate is reported as an error by nix; treat it as
        // "no ancillary data" so the packet is counted as malformed rather than failing.
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                match cmsg {
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        raw.ifindex = u32::try_from(info.ipi_ifindex).ok();
                        raw.dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            info.ipi_addr.s_addr,
                        ))));
                    }
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        raw.ifindex = Some(info.ipi6_ifindex);
                        raw.dst = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    ControlMessageOwned::Ipv6HopLimit(hops) => {
                        raw.hop_limit = u8::try_from(hops).ok()
                    }
                    _ => {}
                }
            }
        }
        Ok(raw)
    }

    fn io_error(&self, operation: &'static str, source: io::Error) -> VrrpSocketError {
        VrrpSocketError::Io {
            operation,
            interface: self.interface.to_string(),
            family: self.family,
            source,
        }
    }
}

/// Link-local unicast and link-scope multicast destinations need the interface as scope.
fn needs_scope(dst: &Ipv6Addr) -> bool {
    dst.is_unicast_link_local() || (dst.is_multicast() && dst.segments()[0] & 0x000f <= 2)
}

struct RawReceived {
    len: usize,
    truncated: bool,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    hop_limit: Option<u8>,
    ifindex: Option<u32>,
}

/// What an IPv4 raw socket delivered, split: the kernel hands the whole datagram, header
/// (with any options) included.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ipv4Parts {
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) ttl: u8,
    pub(crate) payload: std::ops::Range<usize>,
}

/// Split an IPv4 datagram carrying VRRP into header fields and payload range, checking
/// every length so that no byte string can make it panic.
pub(crate) fn parse_ipv4(datagram: &[u8]) -> Result<Ipv4Parts, Malformed> {
    let header = Ipv4Packet::new(datagram).ok_or(Malformed::ShortIpHeader {
        len: datagram.len(),
    })?;
    if header.get_version() != 4 {
        return Err(Malformed::NotIpv4 {
            version: header.get_version(),
        });
    }
    let header_len = usize::from(header.get_header_length()) * 4;
    if header_len < 20 || header_len > datagram.len() {
        return Err(Malformed::BadHeaderLength {
            header_len,
            len: datagram.len(),
        });
    }
    let total_len = usize::from(header.get_total_length());
    if total_len < header_len || total_len > datagram.len() {
        return Err(Malformed::BadTotalLength {
            total_len,
            len: datagram.len(),
        });
    }
    let protocol = header.get_next_level_protocol().0;
    if protocol != VRRP_PROTOCOL {
        return Err(Malformed::NotVrrp { protocol });
    }
    Ok(Ipv4Parts {
        src: header.get_source(),
        dst: header.get_destination(),
        ttl: header.get_ttl(),
        payload: header_len..total_len,
    })
}

/// The address RFC 5798 sends from, among those of one interface in kernel order: the
/// first IPv4 address (the primary, §5.1.1.1) or the first IPv6 link-local (§5.1.2.1).
pub(crate) fn pick_local_address(
    family: IpFamily,
    addresses: impl IntoIterator<Item = IpAddr>,
) -> Option<IpAddr> {
    addresses.into_iter().find(|addr| match (family, addr) {
        (IpFamily::V4, IpAddr::V4(v4)) => !v4.is_unspecified(),
        (IpFamily::V6, IpAddr::V6(v6)) => v6.is_unicast_link_local(),
        _ => false,
    })
}

fn discover_local_address(
    interface: &InterfaceName,
    family: IpFamily,
) -> Result<IpAddr, VrrpSocketError> {
    let no_address = || VrrpSocketError::NoLocalAddress {
        interface: interface.to_string(),
        family,
    };
    let addresses = nix::ifaddrs::getifaddrs().map_err(|_| no_address())?;
    let of_interface = addresses
        .filter(|a| a.interface_name == interface.as_str())
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        });
    pick_local_address(family, of_interface).ok_or_else(no_address)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VRRPv3 advert for VRID 51, priority 200, one address, as keepalived sent it
    /// (frame 1 of the shared capture), with the IPv4 header in front.
    fn keepalived_datagram() -> Vec<u8> {
        vec![
            0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xd0,
            0x2c, // IPv4 header …
            0x0a, 0x63, 0x00, 0x0b, 0xe0, 0x00, 0x00, 0x12, // … 10.99.0.11 → 224.0.0.18
            0x31, 0x33, 0xc8, 0x01, 0x00, 0x64, 0x10, 0x09, 0x0a, 0x63, 0x00, 0xfe, // VRRPv3
        ]
    }

    #[test]
    fn parses_an_ipv4_vrrp_datagram() {
        let d = keepalived_datagram();
        let parts = parse_ipv4(&d).unwrap();
        assert_eq!(parts.src, Ipv4Addr::new(10, 99, 0, 11));
        assert_eq!(parts.dst, VRRP_GROUP_V4);
        assert_eq!(parts.ttl, 255);
        assert_eq!(&d[parts.payload], &d[20..]);
    }

    #[test]
    fn honours_ipv4_options_and_total_length() {
        // IHL 6: one 4-byte option (router alert), and two bytes of trailing junk that the
        // total length excludes.
        let mut d = keepalived_datagram();
        d[0] = 0x46;
        d.splice(20..20, [0x94, 0x04, 0x00, 0x00]);
        let total = d.len() as u16;
        d[2..4].copy_from_slice(&total.to_be_bytes());
        d.extend_from_slice(&[0xde, 0xad]);
        let parts = parse_ipv4(&d).unwrap();
        assert_eq!(parts.payload, 24..(total as usize));
        assert_eq!(d[parts.payload.start], 0x31);
    }

    #[test]
    fn rejects_malformed_ipv4_without_panicking() {
        let good = keepalived_datagram();
        assert_eq!(
            parse_ipv4(&good[..10]),
            Err(Malformed::ShortIpHeader { len: 10 })
        );

        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(parse_ipv4(&v6), Err(Malformed::NotIpv4 { version: 6 }));

        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert!(matches!(
            parse_ipv4(&short_ihl),
            Err(Malformed::BadHeaderLength { .. })
        ));

        let mut long_ihl = good.clone();
        long_ihl[0] = 0x4f;
        assert!(matches!(
            parse_ipv4(&long_ihl),
            Err(Malformed::BadHeaderLength { .. })
        ));

        let mut long_total = good.clone();
        long_total[2..4].copy_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            parse_ipv4(&long_total),
            Err(Malformed::BadTotalLength { .. })
        ));

        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert!(matches!(
            parse_ipv4(&short_total),
            Err(Malformed::BadTotalLength { .. })
        ));

        let mut udp = good.clone();
        udp[9] = 17;
        assert_eq!(parse_ipv4(&udp), Err(Malformed::NotVrrp { protocol: 17 }));
    }

    #[test]
    fn no_byte_string_panics_the_ipv4_parser() {
        // Every prefix of a real datagram and a spread of corrupted headers.
        let good = keepalived_datagram();
        for len in 0..=good.len() {
            let _ = parse_ipv4(&good[..len]);
        }
        for byte in 0..20 {
            for value in [0u8, 1, 0x0f, 0x40, 0x4f, 0x7f, 0xff] {
                let mut d = good.clone();
                d[byte] = value;
                let _ = parse_ipv4(&d);
            }
        }
    }

    #[test]
    fn picks_the_rfc_source_address() {
        let addrs: Vec<IpAddr> = ["2001:db8::5", "10.0.0.5", "fe80::1", "10.0.0.6", "fe80::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            pick_local_address(IpFamily::V4, addrs.clone()),
            Some("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            pick_local_address(IpFamily::V6, addrs),
            Some("fe80::1".parse().unwrap())
        );
        let global_only: Vec<IpAddr> = vec!["2001:db8::5".parse().unwrap()];
        assert_eq!(pick_local_address(IpFamily::V6, global_only), None);
    }

    #[test]
    fn link_scoped_destinations_get_the_interface_as_scope() {
        assert!(needs_scope(&VRRP_GROUP_V6));
        assert!(needs_scope(&"fe80::1".parse().unwrap()));
        assert!(!needs_scope(&"2001:db8::1".parse().unwrap()));
        assert!(!needs_scope(&"ff05::12".parse().unwrap()));
    }
}
