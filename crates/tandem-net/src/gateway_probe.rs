//! Is the gateway reachable? The split-brain guard: a box cut off from the network must
//! give its VIPs up rather than keep them, so the daemon probes a configured gateway and
//! lowers its priority (or forces Backup) while it cannot reach it.
//!
//! Two probes, one request each; retry and "N failures in a row" policy is the caller's:
//! - [`IcmpProbe`]: ICMP echo (RFC 792) / ICMPv6 echo (RFC 4443 §4.1) on a raw socket,
//!   optionally bound to the interface the gateway is on. A reply counts only if it comes
//!   from the target and carries our identifier, sequence number and a random token.
//! - [`ArpProbe`]: an ARP request for the gateway's address on an `AF_PACKET` socket. It
//!   answers "is the gateway alive on this link" even where ICMP is filtered, and needs no
//!   route.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage, recvfrom, send, sendto,
};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::ipv4::Ipv4Packet;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tracing::debug;

use crate::interface::{InterfaceName, InvalidInterfaceName};
use crate::{IpFamily, MacAddr};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACHABLE: u8 = 1;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ECHO_HEADER_LEN: usize = 8;
const TOKEN_LEN: usize = 8;

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The gateway answered; `mac` is its address for an ARP probe.
    Reachable {
        rtt: Duration,
        mac: Option<MacAddr>,
    },
    Unreachable(Unreachable),
}

impl ProbeOutcome {
    pub fn is_reachable(&self) -> bool {
        matches!(self, ProbeOutcome::Reachable { .. })
    }
}

/// Why the gateway counts as unreachable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An ICMP error about our request (destination unreachable, time exceeded).
    #[error("ICMP type {icmp_type} code {code} from {from}")]
    IcmpError {
        icmp_type: u8,
        code: u8,
        from: IpAddr,
    },
    /// The kernel refused to send: no route, interface down.
    #[error("cannot send: {0}")]
    SendFailed(Errno),
}

/// The probe could not run at all (as opposed to running and finding no gateway).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    InvalidName(#[from] InvalidInterfaceName),
    #[error("no tokio runtime is current: the socket needs one to register with")]
    NoRuntime,
    #[error("{target} is not an {family} address, but this is an {family} probe")]
    WrongFamily { target: IpAddr, family: IpFamily },
    #[error("{operation}: {source}")]
    Io {
        operation: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_error(operation: &'static str) -> impl FnOnce(io::Error) -> ProbeError {
    move |source| ProbeError::Io { operation, source }
}

/// Errors from `send` that mean "the gateway is unreachable", not "the probe is broken".
/// `ENOBUFS` is what a driver's drop looks like to a packet socket (a veth whose peer is
/// down, a full queue): this request did not leave, which is the same as no answer.
fn is_unreachable_errno(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENETUNREACH
            | Errno::EHOSTUNREACH
            | Errno::ENETDOWN
            | Errno::EHOSTDOWN
            | Errno::EADDRNOTAVAIL
            | Errno::ENOBUFS
    )
}

/// Split a send result for `AsyncFd::try_io`: `EAGAIN` becomes the `WouldBlock` that
/// clears readiness, any other errno stays a value to classify.
fn would_block(result: Result<usize, Errno>) -> io::Result<Result<usize, Errno>> {
    match result {
        Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
        other => Ok(other),
    }
}

fn random_u64() -> u64 {
    // RandomState is seeded from the OS per instance: enough to tell our replies from
    // another prober's, with no extra dependency.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

static SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// An ICMP echo request: type, code, checksum, identifier, sequence, then the token.
/// For IPv4 the checksum is filled in (RFC 792); for ICMPv6 it is left zero, because the
/// kernel always computes it on raw ICMPv6 sockets (RFC 3542 §3.1).
pub fn echo_request(family: IpFamily, identifier: u16, sequence: u16, token: u64) -> Vec<u8> {
    let mut packet = Vec::with_capacity(ECHO_HEADER_LEN + TOKEN_LEN);
    packet.push(match family {
        IpFamily::V4 => ICMP_ECHO_REQUEST,
        IpFamily::V6 => ICMPV6_ECHO_REQUEST,
    });
    packet.extend_from_slice(&[0, 0, 0]);
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&token.to_be_bytes());
    if family == IpFamily::V4 {
        let checksum = pnet_packet::util::checksum(&packet, 1);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
    }
    packet
}

/// What a received ICMP message says about our request, if it is about it at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EchoAnswer {
    Reply,
    Error {
        icmp_type: u8,
        code: u8,
        from: IpAddr,
    },
}

struct Expected {
    target: IpAddr,
    identifier: u16,
    sequence: u16,
    token: u64,
}

impl Expected {
    fn matches_echo(&self, echo: &[u8], with_token: bool) -> bool {
        echo.len() >= ECHO_HEADER_LEN
            && u16::from_be_bytes([echo[4], echo[5]]) == self.identifier
            && u16::from_be_bytes([echo[6], echo[7]]) == self.sequence
            && (!with_token
                || echo.get(ECHO_HEADER_LEN..ECHO_HEADER_LEN + TOKEN_LEN)
                    == Some(&self.token.to_be_bytes()[..]))
    }
}

/// Classify an IPv4 datagram (header included, as a raw ICMP socket delivers it).
fn classify_v4(datagram: &[u8], expected: &Expected) -> Option<EchoAnswer> {
    let (src, icmp) = ipv4_payload(datagram, 1)?;
    match *icmp.first()? {
        ICMP_ECHO_REPLY
            if IpAddr::V4(src) == expected.target && expected.matches_echo(icmp, true) =>
        {
            Some(EchoAnswer::Reply)
        }
        icmp_type @ (ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED) => {
            // The error quotes our request's IP header and its first 8 bytes (RFC 792).
            let quoted = icmp.get(ECHO_HEADER_LEN..)?;
            let (_, inner) = ipv4_payload_lenient(quoted, 1)?;
            (inner.first() == Some(&ICMP_ECHO_REQUEST) && expected.matches_echo(inner, false)).then(
                || EchoAnswer::Error {
                    icmp_type,
                    code: icmp[1],
                    from: IpAddr::V4(src),
                },
            )
        }
        _ => None,
    }
}

fn ipv4_payload(datagram: &[u8], protocol: u8) -> Option<(Ipv4Addr, &[u8])> {
    let header = Ipv4Packet::new(datagram)?;
    let header_len = usize::from(header.get_header_length()) * 4;
    let total_len = usize::from(header.get_total_length());
    if header.get_version() != 4
        || header_len < 20
        || total_len < header_len
        || total_len > datagram.len()
    {
        return None;
    }
    (header.get_next_level_protocol().0 == protocol)
        .then(|| (header.get_source(), &datagram[header_len..total_len]))
}

/// Like [`ipv4_payload`] for a quoted header, whose total length covers more than the
/// quote that follows it.
fn ipv4_payload_lenient(quoted: &[u8], protocol: u8) -> Option<(Ipv4Addr, &[u8])> {
    let header = Ipv4Packet::new(quoted)?;
    let header_len = usize::from(header.get_header_length()) * 4;
    if header.get_version() != 4 || header_len < 20 || header_len > quoted.len() {
        return None;
    }
    (header.get_next_level_protocol().0 == protocol)
        .then(|| (header.get_source(), &quoted[header_len..]))
}

/// Classify an ICMPv6 message (no IP header: raw IPv6 sockets strip it) from `src`.
fn classify_v6(message: &[u8], src: Ipv6Addr, expected: &Expected) -> Option<EchoAnswer> {
    match *message.first()? {
        ICMPV6_ECHO_REPLY
            if IpAddr::V6(src) == expected.target && expected.matches_echo(message, true) =>
        {
            Some(EchoAnswer::Reply)
        }
        icmp_type @ (ICMPV6_DEST_UNREACHABLE | ICMPV6_TIME_EXCEEDED) => {
            // The error quotes as much of our packet as fits (RFC 4443 §3.1): an IPv6
            // header, then (no extension headers from us) the echo request.
            let quoted = message.get(ECHO_HEADER_LEN..)?;
            if quoted.len() < 40 || quoted[0] >> 4 != 6 || quoted[6] != 58 {
                return None;
            }
            let inner = &quoted[40..];
            (inner.first() == Some(&ICMPV6_ECHO_REQUEST) && expected.matches_echo(inner, false))
                .then(|| EchoAnswer::Error {
                    icmp_type,
                    code: message[1],
                    from: IpAddr::V6(src),
                })
        }
        _ => None,
    }
}

/// ICMP echo probes of one address family.
#[derive(Debug)]
pub struct IcmpProbe {
    fd: AsyncFd<Socket>,
    family: IpFamily,
    ifindex: Option<u32>,
    identifier: u16,
}

impl IcmpProbe {
    /// Open a raw ICMP (or ICMPv6) socket, bound to `interface` when given (the gateway's
    /// interface: a reply must not count if it came over another path). Needs
    /// `CAP_NET_RAW`; the socket belongs to the calling thread's network namespace.
    pub fn open(family: IpFamily, interface: Option<&str>) -> Result<Self, ProbeError> {
        let (domain, protocol) = match family {
            IpFamily::V4 => (Domain::IPV4, Protocol::ICMPV4),
            IpFamily::V6 => (Domain::IPV6, Protocol::ICMPV6),
        };
        let socket =
            Socket::new(domain, Type::RAW, Some(protocol)).map_err(io_error("open ICMP socket"))?;
        let mut ifindex = None;
        if let Some(interface) = interface {
            let name = InterfaceName::new(interface)?;
            socket
                .bind_device(Some(name.as_str().as_bytes()))
                .map_err(io_error("SO_BINDTODEVICE"))?;
            ifindex = nix::net::if_::if_nametoindex(name.as_str())
                .map_err(|e| ProbeError::Io {
                    operation: "if_nametoindex",
                    source: e.into(),
                })
                .map(Some)?;
        }
        socket
            .set_nonblocking(true)
            .map_err(io_error("O_NONBLOCK"))?;
        let fd = crate::reactor::register(socket)
            .ok_or(ProbeError::NoRuntime)?
            .map_err(io_error("register with tokio"))?;
        Ok(IcmpProbe {
            fd,
            family,
            ifindex,
            identifier: random_u64() as u16,
        })
    }

    /// Send one echo request to `target` and wait up to `timeout` for its reply.
    pub async fn probe(
        &self,
        target: IpAddr,
        timeout: Duration,
    ) -> Result<ProbeOutcome, ProbeError> {
        if IpFamily::of(&target) != self.family {
            return Err(ProbeError::WrongFamily {
                target,
                family: self.family,
            });
        }
        let expected = Expected {
            target,
            identifier: self.identifier,
            sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed),
            token: random_u64(),
        };
        self.drain();
        let request = echo_request(
            self.family,
            expected.identifier,
            expected.sequence,
            expected.token,
        );
        let started = Instant::now();
        if let Err(errno) = self.send(&request, target).await? {
            debug!(%target, %errno, "echo request not sent");
            return Ok(ProbeOutcome::Unreachable(Unreachable::SendFailed(errno)));
        }
        let wait = async {
            let mut buffer = vec![0u8; 2048];
            loop {
                let (len, src) = self.recv(&mut buffer).await?;
                let answer = match (self.family, src) {
                    (IpFamily::V4, _) => classify_v4(&buffer[..len], &expected),
                    (IpFamily::V6, Some(IpAddr::V6(src))) => {
                        classify_v6(&buffer[..len], src, &expected)
                    }
                    _ => None,
                };
                match answer {
                    Some(EchoAnswer::Reply) => {
                        return Ok(ProbeOutcome::Reachable {
                            rtt: started.elapsed(),
                            mac: None,
                        });
                    }
                    Some(EchoAnswer::Error {
                        icmp_type,
                        code,
                        from,
                    }) => {
                        return Ok(ProbeOutcome::Unreachable(Unreachable::IcmpError {
                            icmp_type,
                            code,
                            from,
                        }));
                    }
                    None => continue,
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Ok(ProbeOutcome::Unreachable(Unreachable::Timeout(timeout))),
        }
    }

    /// Throw away whatever ICMP arrived since the last probe.
    fn drain(&self) {
        let mut buffer = [0u8; 256];
        let fd = self.fd.get_ref().as_raw_fd();
        while recvfrom::<SockaddrStorage>(fd, &mut buffer).is_ok() {}
    }

    async fn send(&self, request: &[u8], target: IpAddr) -> Result<Result<(), Errno>, ProbeError> {
        loop {
            let mut guard = self.fd.writable().await.map_err(io_error("poll"))?;
            match guard
                .try_io(|fd| would_block(self.send_once(fd.get_ref().as_raw_fd(), request, target)))
            {
                Ok(Ok(Ok(_))) => return Ok(Ok(())),
                Ok(Ok(Err(errno))) if is_unreachable_errno(errno) => return Ok(Err(errno)),
                Ok(Ok(Err(errno))) => {
                    return Err(ProbeError::Io {
                        operation: "send",
                        source: errno.into(),
                    });
                }
                Ok(Err(e)) => {
                    return Err(ProbeError::Io {
                        operation: "send",
                        source: e,
                    });
                }
                Err(_would_block) => continue,
            }
        }
    }

    fn send_once(&self, fd: RawFd, request: &[u8], target: IpAddr) -> Result<usize, Errno> {
        match target {
            IpAddr::V4(v4) => sendto(
                fd,
                request,
                &SockaddrIn::from(SocketAddrV4::new(v4, 0)),
                MsgFlags::empty(),
            ),
            IpAddr::V6(v6) => {
                let scope = if v6.is_unicast_link_local() {
                    self.ifindex.unwrap_or(0)
                } else {
                    0
                };
                sendto(
                    fd,
                    request,
                    &SockaddrIn6::from(SocketAddrV6::new(v6, 0, 0, scope)),
                    MsgFlags::empty(),
                )
            }
        }
    }

    async fn recv(&self, buffer: &mut [u8]) -> Result<(usize, Option<IpAddr>), ProbeError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(io_error("poll"))?;
            match guard.try_io(|fd| {
                let mut iov = [IoSliceMut::new(buffer)];
                let message = nix::sys::socket::recvmsg::<SockaddrStorage>(
                    fd.get_ref().as_raw_fd(),
                    &mut iov,
                    None,
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let src = message.address.as_ref().and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                });
                Ok((message.bytes, src))
            }) {
                Ok(result) => return result.map_err(io_error("receive")),
                Err(_would_block) => continue,
            }
        }
    }
}

/// An ARP request from `sender_mac`/`sender_ip` for `target`, to the broadcast address.
/// With `sender_ip` 0.0.0.0 it is an RFC 5227 §2.1.1 "ARP Probe", which the gateway
/// answers without caching anything about us.
pub fn arp_request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    {
        let mut ethernet =
            MutableEthernetPacket::new(&mut frame).expect("buffer fits an Ethernet header");
        ethernet.set_destination(MacAddr::BROADCAST.to_pnet());
        ethernet.set_source(sender_mac.to_pnet());
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut frame[14..]).expect("buffer fits an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(sender_mac.to_pnet());
    arp.set_sender_proto_addr(sender_ip);
    arp.set_target_hw_addr(MacAddr::ZERO.to_pnet());
    arp.set_target_proto_addr(target);
    frame
}

/// The MAC address in an Ethernet frame that is an ARP reply from `target`.
pub fn arp_reply_from(frame: &[u8], target: Ipv4Addr) -> Option<MacAddr> {
    let ethernet = EthernetPacket::new(frame)?;
    if ethernet.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(frame.get(14..)?)?;
    let is_reply = arp.get_operation() == ArpOperations::Reply
        && arp.get_hardware_type() == ArpHardwareTypes::Ethernet
        && arp.get_protocol_type() == EtherTypes::Ipv4
        && arp.get_hw_addr_len() == 6
        && arp.get_proto_addr_len() == 4
        && arp.get_sender_proto_addr() == target;
    is_reply.then(|| MacAddr(arp.get_sender_hw_addr().octets()))
}

/// ARP probes on one interface.
#[derive(Debug)]
pub struct ArpProbe {
    fd: AsyncFd<Socket>,
    mac: MacAddr,
}

impl ArpProbe {
    /// Open an `AF_PACKET` socket for ARP on `ifindex`, sending from `mac` (the
    /// interface's own address). Needs `CAP_NET_RAW`.
    pub fn open(ifindex: u32, mac: MacAddr) -> Result<Self, ProbeError> {
        let socket = crate::packet_socket::open(ifindex, crate::packet_socket::ETH_P_ARP)
            .map_err(io_error("open AF_PACKET socket"))?;
        let fd = crate::reactor::register(socket)
            .ok_or(ProbeError::NoRuntime)?
            .map_err(io_error("register with tokio"))?;
        Ok(ArpProbe { fd, mac })
    }

    /// Ask who has `target` (from `sender_ip`, or as an ARP probe from 0.0.0.0 when
    /// `None`) and wait up to `timeout` for its reply.
    pub async fn probe(
        &self,
        sender_ip: Option<Ipv4Addr>,
        target: Ipv4Addr,
        timeout: Duration,
    ) -> Result<ProbeOutcome, ProbeError> {
        let request = arp_request(self.mac, sender_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), target);
        let fd = self.fd.get_ref().as_raw_fd();
        while recvfrom::<SockaddrStorage>(fd, &mut [0u8; 64]).is_ok() {}
        let started = Instant::now();
        loop {
            let mut guard = self.fd.writable().await.map_err(io_error("poll"))?;
            match guard.try_io(|fd| {
                would_block(send(fd.get_ref().as_raw_fd(), &request, MsgFlags::empty()))
            }) {
                Ok(Ok(Ok(_))) => break,
                Ok(Ok(Err(errno))) if is_unreachable_errno(errno) => {
                    return Ok(ProbeOutcome::Unreachable(Unreachable::SendFailed(errno)));
                }
                Ok(Ok(Err(errno))) => {
                    return Err(ProbeError::Io {
                        operation: "send",
                        source: errno.into(),
                    });
                }
                Ok(Err(e)) => {
                    return Err(ProbeError::Io {
                        operation: "send",
                        source: e,
                    });
                }
                Err(_would_block) => continue,
            }
        }
        let wait = async {
            let mut buffer = [0u8; 128];
            loop {
                let mut guard = self.fd.readable().await.map_err(io_error("poll"))?;
                let len = match guard.try_io(|fd| {
                    nix::sys::socket::recv(fd.get_ref().as_raw_fd(), &mut buffer, MsgFlags::empty())
                        .map_err(io::Error::from)
                }) {
                    Ok(result) => result.map_err(io_error("receive"))?,
                    Err(_would_block) => continue,
                };
                if let Some(mac) = arp_reply_from(&buffer[..len], target) {
                    return Ok(ProbeOutcome::Reachable {
                        rtt: started.elapsed(),
                        mac: Some(mac),
                    });
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Ok(ProbeOutcome::Unreachable(Unreachable::Timeout(timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(target: &str) -> Expected {
        Expected {
            target: target.parse().unwrap(),
            identifier: 0x1234,
            sequence: 7,
            token: 0xfeed_face_cafe_beef,
        }
    }

    fn ipv4_datagram(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut d = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        d[2..4].copy_from_slice(&total.to_be_bytes());
        d.extend_from_slice(&src);
        d.extend_from_slice(&dst);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn ipv4_echo_request_has_a_valid_checksum() {
        let request = echo_request(IpFamily::V4, 0x1234, 7, 0xfeed_face_cafe_beef);
        assert_eq!(request.len(), 16);
        assert_eq!(request[0], 8);
        assert_eq!(&request[4..8], &[0x12, 0x34, 0, 7]);
        // Summing a packet that includes its checksum gives 0xffff, i.e. checksum() of it is 0.
        assert_eq!(pnet_packet::util::checksum(&request, 99), 0);
    }

    #[test]
    fn ipv6_echo_request_leaves_the_checksum_to_the_kernel() {
        let request = echo_request(IpFamily::V6, 1, 2, 3);
        assert_eq!(request[0], 128);
        assert_eq!(&request[2..4], &[0, 0]);
    }

    fn reply_to(request: &[u8], reply_type: u8) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = reply_type;
        reply
    }

    #[test]
    fn ipv4_reply_must_match_source_identifier_sequence_and_token() {
        let e = expected("192.0.2.1");
        let request = echo_request(IpFamily::V4, e.identifier, e.sequence, e.token);
        let good = ipv4_datagram([192, 0, 2, 1], [192, 0, 2, 9], &reply_to(&request, 0));
        assert_eq!(classify_v4(&good, &e), Some(EchoAnswer::Reply));

        let other_source = ipv4_datagram([192, 0, 2, 2], [192, 0, 2, 9], &reply_to(&request, 0));
        assert_eq!(classify_v4(&other_source, &e), None);

        let mut wrong_id = reply_to(&request, 0);
        wrong_id[5] ^= 1;
        assert_eq!(
            classify_v4(&ipv4_datagram([192, 0, 2, 1], [0; 4], &wrong_id), &e),
            None
        );

        let mut wrong_token = reply_to(&request, 0);
        wrong_token[15] ^= 1;
        assert_eq!(
            classify_v4(&ipv4_datagram([192, 0, 2, 1], [0; 4], &wrong_token), &e),
            None
        );

        // Our own request seen on the socket is not a reply.
        assert_eq!(
            classify_v4(&ipv4_datagram([192, 0, 2, 1], [0; 4], &request), &e),
            None
        );
    }

    #[test]
    fn ipv4_destination_unreachable_about_our_request() {
        let e = expected("192.0.2.1");
        let request = echo_request(IpFamily::V4, e.identifier, e.sequence, e.token);
        let quoted = ipv4_datagram([192, 0, 2, 9], [192, 0, 2, 1], &request[..8]);
        let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&quoted);
        let from_router = ipv4_datagram([192, 0, 2, 254], [192, 0, 2, 9], &error);
        assert_eq!(
            classify_v4(&from_router, &e),
            Some(EchoAnswer::Error {
                icmp_type: 3,
                code: 1,
                from: "192.0.2.254".parse().unwrap()
            })
        );
        // About someone else's request: ignored.
        let mut other = error.clone();
        other[8 + 20 + 7] ^= 1;
        assert_eq!(
            classify_v4(&ipv4_datagram([192, 0, 2, 254], [0; 4], &other), &e),
            None
        );
    }

    #[test]
    fn ipv6_reply_and_error() {
        let e = expected("2001:db8::1");
        let request = echo_request(IpFamily::V6, e.identifier, e.sequence, e.token);
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            classify_v6(&reply_to(&request, 129), src, &e),
            Some(EchoAnswer::Reply)
        );
        assert_eq!(
            classify_v6(&reply_to(&request, 129), "2001:db8::2".parse().unwrap(), &e),
            None
        );
        assert_eq!(classify_v6(&request, src, &e), None);

        let mut quoted = vec![0x60, 0, 0, 0, 0, 16, 58, 64];
        quoted.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        quoted.extend_from_slice(&src.octets());
        quoted.extend_from_slice(&request);
        let mut error = vec![1, 3, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&quoted);
        let router: Ipv6Addr = "2001:db8::fe".parse().unwrap();
        assert_eq!(
            classify_v6(&error, router, &e),
            Some(EchoAnswer::Error {
                icmp_type: 1,
                code: 3,
                from: IpAddr::V6(router)
            })
        );
    }

    #[test]
    fn classifiers_survive_garbage() {
        let e = expected("192.0.2.1");
        let e6 = expected("2001:db8::1");
        let request = echo_request(IpFamily::V4, e.identifier, e.sequence, e.token);
        let good = ipv4_datagram([192, 0, 2, 1], [0; 4], &reply_to(&request, 0));
        for len in 0..=good.len() {
            let _ = classify_v4(&good[..len], &e);
            let _ = classify_v6(&good[..len], Ipv6Addr::UNSPECIFIED, &e6);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] = 0xff;
            let _ = classify_v4(&bad, &e);
            let _ = classify_v6(&bad[20..], Ipv6Addr::UNSPECIFIED, &e6);
        }
    }

    #[test]
    fn arp_request_and_reply() {
        let ours = MacAddr([2, 0, 0, 0, 0, 1]);
        let theirs = MacAddr([2, 0, 0, 0, 0, 2]);
        let gateway = Ipv4Addr::new(192, 0, 2, 1);
        let request = arp_request(ours, Ipv4Addr::UNSPECIFIED, gateway);
        assert_eq!(&request[0..6], &[0xff; 6]);
        assert_eq!(&request[20..22], &[0, 1]); // request
        assert_eq!(&request[28..32], &[0, 0, 0, 0]); // ARP probe: sender IP 0
        assert_eq!(&request[38..42], &gateway.octets());
        assert_eq!(arp_reply_from(&request, gateway), None);

        let mut reply = [0u8; 42];
        reply[0..6].copy_from_slice(&ours.0);
        reply[6..12].copy_from_slice(&theirs.0);
        reply[12..14].copy_from_slice(&[0x08, 0x06]);
        reply[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        reply[22..28].copy_from_slice(&theirs.0);
        reply[28..32].copy_from_slice(&gateway.octets());
        reply[32..38].copy_from_slice(&ours.0);
        assert_eq!(arp_reply_from(&reply, gateway), Some(theirs));
        assert_eq!(arp_reply_from(&reply, Ipv4Addr::new(192, 0, 2, 2)), None);
        for len in 0..42 {
            let _ = arp_reply_from(&reply[..len], gateway);
        }
    }
}
