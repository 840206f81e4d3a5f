//! Receive validation (RFC 5798 §7.1): which received packets reach the state machine, and
//! why the others are dropped.
//!
//! Two steps, both pure:
//! - [`validate`] checks what needs no configuration: hop limit, version, type,
//!   completeness, checksum, a non-zero interval. The I/O loop runs it once per packet.
//! - the checks that need the virtual router's configuration (VRID, address owner, known
//!   peers, address list) run in [`VirtualRouter::handle_advert`](crate::VirtualRouter::handle_advert).
//!
//! Each failure is a [`DropReason`]; the caller counts them in [`DropCounters`].

use std::net::IpAddr;

use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;

use crate::advert::{Advert, DecodeError, HOP_LIMIT, IP_PROTOCOL};
use crate::config::Config;

/// A received VRRP packet: the IP header fields validation needs and the VRRP payload.
///
/// From an IPv4 raw socket, which hands over the IP header, build it with
/// [`Inbound::from_ipv4_packet`]. An IPv6 raw socket strips the header: take the source
/// from `recvmsg`, the destination from `IPV6_PKTINFO` and the hop limit from
/// `IPV6_HOPLIMIT` ancillary data, and fill the fields in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound<'a> {
    pub source: IpAddr,
    pub destination: IpAddr,
    /// IPv4 TTL or IPv6 Hop Limit.
    pub hop_limit: u8,
    /// The VRRP packet, from the version field to the last address.
    pub vrrp: &'a [u8],
}

/// An advert that passed every check of RFC 5798 §7.1 and was handed to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The advert's address list differs from ours. RFC 5798 §7.1 makes this check a MAY
    /// whose failure is logged, not a reason to drop: see docs/vrrp.md.
    pub address_list_mismatch: bool,
}

/// Why a received packet was dropped. Every variant is one counter in [`DropCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// RFC 5798 §5.1.1.3, §5.1.2.3, §7.1: TTL or Hop Limit is not 255, so the packet was
    /// routed from off the link.
    #[error("TTL or hop limit is not 255")]
    TtlNot255,
    /// RFC 5798 §7.1: the packet is shorter than its headers or its address count.
    #[error("truncated packet")]
    Truncated,
    /// Not one clean VRRP packet: bad IP header, other protocol, fragment, no address,
    /// trailing bytes, mixed address families.
    #[error("malformed packet")]
    Malformed,
    /// RFC 5798 §7.1: the version is not 3.
    #[error("VRRP version is not 3")]
    BadVersion,
    /// RFC 5798 §5.2.2: the type is not ADVERTISEMENT.
    #[error("VRRP type is not ADVERTISEMENT")]
    BadType,
    /// RFC 5798 §7.1: the checksum is wrong.
    #[error("bad checksum")]
    BadChecksum,
    /// Max Adver Int is zero: it would make Master_Down_Interval zero (RFC 9568 erratum
    /// 8301 adds this check).
    #[error("advert interval is zero")]
    IntervalZero,
    /// RFC 5798 §7.1: the VRID is not the one of this virtual router.
    #[error("VRID is not ours")]
    VridMismatch,
    /// An IPv6 advert reached an IPv4 virtual router or the reverse (RFC 5798 §1: the two
    /// families are separate virtual routers).
    #[error("advert of the other address family")]
    WrongFamily,
    /// RFC 5798 §7.1: the local router is the address owner (priority 255), which no
    /// advert can displace.
    #[error("we are the address owner")]
    AddressOwner,
    /// Peers are configured and the source is none of them (design.md: VRRPv3 has no
    /// authentication, RFC 5798 §9, so only the configured peer is listened to).
    #[error("source is not a configured peer")]
    UnknownSource,
    /// Our own advert, looped back by multicast.
    #[error("our own advert")]
    OwnAdvert,
}

impl DropReason {
    /// Every reason, in the order of its counter.
    pub const ALL: [DropReason; 12] = [
        DropReason::TtlNot255,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadVersion,
        DropReason::BadType,
        DropReason::BadChecksum,
        DropReason::IntervalZero,
        DropReason::VridMismatch,
        DropReason::WrongFamily,
        DropReason::AddressOwner,
        DropReason::UnknownSource,
        DropReason::OwnAdvert,
    ];

    /// A stable snake_case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TtlNot255 => "ttl_not_255",
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadVersion => "bad_version",
            DropReason::BadType => "bad_type",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::IntervalZero => "interval_zero",
            DropReason::VridMismatch => "vrid_mismatch",
            DropReason::WrongFamily => "wrong_family",
            DropReason::AddressOwner => "address_owner",
            DropReason::UnknownSource => "unknown_source",
            DropReason::OwnAdvert => "own_advert",
        }
    }
}

impl From<DecodeError> for DropReason {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Truncated { .. } => DropReason::Truncated,
            DecodeError::BadVersion(_) => DropReason::BadVersion,
            DecodeError::BadType(_) => DropReason::BadType,
            DecodeError::BadChecksum { .. } => DropReason::BadChecksum,
            DecodeError::BadIpHeader(_)
            | DecodeError::NotVrrp(_)
            | DecodeError::NoAddresses
            | DecodeError::TrailingBytes(_)
            | DecodeError::MixedFamilies => DropReason::Malformed,
        }
    }
}

/// One counter per [`DropReason`], for the caller to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    pub fn record(&mut self, reason: DropReason) {
        let count = &mut self.counts[reason as usize];
        *count = count.saturating_add(1);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, c| sum.saturating_add(*c))
    }

    /// Every reason with its count, zeros included, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

impl<'a> Inbound<'a> {
    /// Splits a whole IPv4 packet (header included, as an IPv4 raw socket returns it).
    /// Refuses options-length nonsense, fragments, and protocols other than 112.
    pub fn from_ipv4_packet(packet: &'a [u8]) -> Result<Self, DecodeError> {
        let header = Ipv4Packet::new(packet).ok_or(DecodeError::Truncated {
            needed: Ipv4Packet::minimum_packet_size(),
            actual: packet.len(),
        })?;
        if header.get_version() != 4 {
            return Err(DecodeError::BadIpHeader("IP version is not 4"));
        }
        let header_len = usize::from(header.get_header_length()) * 4;
        let total_len = usize::from(header.get_total_length());
        if header_len < Ipv4Packet::minimum_packet_size() || total_len < header_len {
            return Err(DecodeError::BadIpHeader("inconsistent IPv4 lengths"));
        }
        // Link-layer padding may follow the packet; a packet longer than the buffer is cut.
        let vrrp = packet
            .get(header_len..total_len)
            .ok_or(DecodeError::Truncated {
                needed: total_len,
                actual: packet.len(),
            })?;
        // More Fragments (flag bit 0x1) or a non-zero offset: a piece, not a VRRP packet.
        if header.get_flags() & 0x1 != 0 || header.get_fragment_offset() != 0 {
            return Err(DecodeError::BadIpHeader("IPv4 fragment"));
        }
        let protocol = header.get_next_level_protocol().0;
        if protocol != IP_PROTOCOL {
            return Err(DecodeError::NotVrrp(protocol));
        }
        Ok(Inbound {
            source: header.get_source().into(),
            destination: header.get_destination().into(),
            hop_limit: header.get_ttl(),
            vrrp,
        })
    }

    /// Splits a whole IPv6 packet whose next header is VRRP (no extension headers), as an
    /// `AF_PACKET` capture sees it.
    pub fn from_ipv6_packet(packet: &'a [u8]) -> Result<Self, DecodeError> {
        let header = Ipv6Packet::new(packet).ok_or(DecodeError::Truncated {
            needed: Ipv6Packet::minimum_packet_size(),
            actual: packet.len(),
        })?;
        if header.get_version() != 6 {
            return Err(DecodeError::BadIpHeader("IP version is not 6"));
        }
        let next_header = header.get_next_header().0;
        if next_header != IP_PROTOCOL {
            return Err(DecodeError::NotVrrp(next_header));
        }
        let header_len = Ipv6Packet::minimum_packet_size();
        let total_len = header_len + usize::from(header.get_payload_length());
        let vrrp = packet
            .get(header_len..total_len)
            .ok_or(DecodeError::Truncated {
                needed: total_len,
                actual: packet.len(),
            })?;
        Ok(Inbound {
            source: header.get_source().into(),
            destination: header.get_destination().into(),
            hop_limit: header.get_hop_limit(),
            vrrp,
        })
    }
}

/// The checks of RFC 5798 §7.1 that need no configuration, in its order: hop limit,
/// version, complete packet, checksum; then a non-zero interval.
pub fn validate(inbound: &Inbound<'_>) -> Result<Advert, DropReason> {
    if inbound.hop_limit != HOP_LIMIT {
        return Err(DropReason::TtlNot255);
    }
    let advert = Advert::decode(inbound.vrrp, inbound.source, inbound.destination)?;
    if advert.max_advert_interval.is_zero() {
        return Err(DropReason::IntervalZero);
    }
    Ok(advert)
}

/// The checks of RFC 5798 §7.1 that need the virtual router's configuration.
/// `owner_drops` is true while we are the address owner and so deaf to adverts.
pub(crate) fn check_for_router(
    config: &Config,
    owner_drops: bool,
    source: IpAddr,
    advert: &Advert,
) -> Result<Accepted, DropReason> {
    if advert.max_advert_interval.is_zero() {
        return Err(DropReason::IntervalZero);
    }
    if source.is_ipv6() != config.primary_address.is_ipv6() {
        return Err(DropReason::WrongFamily);
    }
    // RFC 5798 §7.1: "MUST verify that the VRID is configured on the receiving interface
    // and the local router is not the IPvX address owner".
    if advert.vrid != config.vrid {
        return Err(DropReason::VridMismatch);
    }
    if source == config.primary_address {
        return Err(DropReason::OwnAdvert);
    }
    if !config.peers.is_empty() && !config.peers.contains(&source) {
        return Err(DropReason::UnknownSource);
    }
    if owner_drops {
        return Err(DropReason::AddressOwner);
    }
    // RFC 5798 §7.1: "MAY verify that the IPvX address(es) associated with the VRID are
    // valid"; a failure SHOULD be logged, and the advert is processed. The order of the
    // list does not matter (§5.2.9 only recommends one order).
    let mut theirs = advert.addresses.clone();
    let mut ours = config.virtual_addresses.clone();
    theirs.sort_unstable();
    ours.sort_unstable();
    Ok(Accepted {
        address_list_mismatch: theirs != ours,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Frame 1 of the keepalived capture, IPv4 header included (TTL 255).
    const KEEPALIVED_FRAME_IP: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0xd0, 0x2c, 0x0a, 0x63, 0x00,
        0x0b, 0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0xc8, 0x01, 0x00, 0x64, 0x10, 0x09, 0x0a, 0x63,
        0x00, 0xfe,
    ];

    fn config() -> Config {
        Config::new(51, ip("10.99.0.12"), vec![ip("10.99.0.254")])
    }

    fn advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 200,
            max_advert_interval: Duration::from_secs(1),
            addresses: vec![ip("10.99.0.254")],
        }
    }

    #[test]
    fn ipv4_packet_splits_into_header_fields_and_vrrp() {
        let inbound = Inbound::from_ipv4_packet(&KEEPALIVED_FRAME_IP).unwrap();
        assert_eq!(inbound.source, ip("10.99.0.11"));
        assert_eq!(inbound.destination, ip("224.0.0.18"));
        assert_eq!(inbound.hop_limit, 255);
        assert_eq!(inbound.vrrp, &KEEPALIVED_FRAME_IP[20..]);
        assert_eq!(validate(&inbound), Ok(advert()));
        // Ethernet pads short frames; the padding is not part of the packet.
        let mut padded = KEEPALIVED_FRAME_IP.to_vec();
        padded.extend([0; 14]);
        assert_eq!(
            Inbound::from_ipv4_packet(&padded).unwrap().vrrp,
            &KEEPALIVED_FRAME_IP[20..]
        );
    }

    #[test]
    fn rfc5798_5_1_1_3_ttl_below_255_is_dropped() {
        let mut packet = KEEPALIVED_FRAME_IP;
        packet[8] = 254;
        let inbound = Inbound::from_ipv4_packet(&packet).unwrap();
        assert_eq!(validate(&inbound), Err(DropReason::TtlNot255));
    }

    #[test]
    fn rfc5798_5_1_2_3_hop_limit_below_255_is_dropped() {
        let src = ip("fe80::1");
        let dst = IpAddr::V6(crate::advert::MULTICAST_V6);
        let advert = Advert {
            vrid: 9,
            priority: 100,
            max_advert_interval: Duration::from_millis(10),
            addresses: vec![ip("fe80::9")],
        };
        let mut vrrp = [0; 24];
        advert.encode(src, dst, &mut vrrp).unwrap();
        let mut inbound = Inbound {
            source: src,
            destination: dst,
            hop_limit: 64,
            vrrp: &vrrp,
        };
        assert_eq!(validate(&inbound), Err(DropReason::TtlNot255));
        inbound.hop_limit = 255;
        assert_eq!(validate(&inbound), Ok(advert));
    }

    #[test]
    fn ipv6_packet_splits_into_header_fields_and_vrrp() {
        let src = ip("fe80::1");
        let dst = IpAddr::V6(crate::advert::MULTICAST_V6);
        let advert = Advert {
            vrid: 9,
            priority: 100,
            max_advert_interval: Duration::from_millis(10),
            addresses: vec![ip("fe80::9")],
        };
        let mut packet = vec![0u8; 40 + advert.encoded_len()];
        packet[0] = 0x60;
        packet[4..6].copy_from_slice(&(advert.encoded_len() as u16).to_be_bytes());
        packet[6] = IP_PROTOCOL;
        packet[7] = 255;
        packet[8..24].copy_from_slice(&"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        packet[24..40].copy_from_slice(&crate::advert::MULTICAST_V6.octets());
        advert.encode(src, dst, &mut packet[40..]).unwrap();
        let inbound = Inbound::from_ipv6_packet(&packet).unwrap();
        assert_eq!((inbound.source, inbound.destination), (src, dst));
        assert_eq!(validate(&inbound), Ok(advert));
        packet[6] = 17;
        assert_eq!(
            Inbound::from_ipv6_packet(&packet),
            Err(DecodeError::NotVrrp(17))
        );
    }

    #[test]
    fn ip_headers_that_do_not_carry_one_whole_vrrp_packet_are_refused() {
        let mut packet = KEEPALIVED_FRAME_IP;
        packet[9] = 17;
        assert_eq!(
            Inbound::from_ipv4_packet(&packet),
            Err(DecodeError::NotVrrp(17))
        );
        let mut packet = KEEPALIVED_FRAME_IP;
        packet[6] = 0x20; // More Fragments
        assert!(matches!(
            Inbound::from_ipv4_packet(&packet),
            Err(DecodeError::BadIpHeader(_))
        ));
        let mut packet = KEEPALIVED_FRAME_IP;
        packet[0] = 0x44; // IHL 4 words < 20 bytes
        assert!(matches!(
            Inbound::from_ipv4_packet(&packet),
            Err(DecodeError::BadIpHeader(_))
        ));
        let mut packet = KEEPALIVED_FRAME_IP;
        packet[3] = 0x40; // total length 64 > 32 bytes received
        assert_eq!(
            Inbound::from_ipv4_packet(&packet),
            Err(DecodeError::Truncated {
                needed: 64,
                actual: 32
            })
        );
        assert!(matches!(
            Inbound::from_ipv4_packet(&KEEPALIVED_FRAME_IP[..19]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn rfc9568_erratum_8301_zero_interval_is_dropped() {
        let mut vrrp = [0; 12];
        let mut zero = advert();
        zero.max_advert_interval = Duration::ZERO;
        zero.encode(ip("10.99.0.11"), ip("224.0.0.18"), &mut vrrp)
            .unwrap();
        let inbound = Inbound {
            source: ip("10.99.0.11"),
            destination: ip("224.0.0.18"),
            hop_limit: 255,
            vrrp: &vrrp,
        };
        assert_eq!(validate(&inbound), Err(DropReason::IntervalZero));
        assert_eq!(
            check_for_router(&config(), false, ip("10.99.0.11"), &zero),
            Err(DropReason::IntervalZero)
        );
    }

    #[test]
    fn decode_errors_map_to_their_drop_reasons() {
        let src = ip("10.99.0.11");
        let dst = ip("224.0.0.18");
        let cases: [(usize, u8, DropReason); 4] = [
            (0, 0x21, DropReason::BadVersion),
            (0, 0x33, DropReason::BadType),
            (7, 0x00, DropReason::BadChecksum),
            (3, 0x00, DropReason::Malformed), // no address
        ];
        for (offset, value, reason) in cases {
            let mut vrrp = KEEPALIVED_FRAME_IP[20..].to_vec();
            vrrp[offset] = value;
            if reason == DropReason::Malformed {
                vrrp.truncate(8);
            }
            let inbound = Inbound {
                source: src,
                destination: dst,
                hop_limit: 255,
                vrrp: &vrrp,
            };
            assert_eq!(
                validate(&inbound),
                Err(reason),
                "byte {offset} = {value:#x}"
            );
        }
        let inbound = Inbound {
            source: src,
            destination: dst,
            hop_limit: 255,
            vrrp: &KEEPALIVED_FRAME_IP[20..30],
        };
        assert_eq!(validate(&inbound), Err(DropReason::Truncated));
    }

    #[test]
    fn rfc5798_7_1_vrid_must_be_ours() {
        let mut other = advert();
        other.vrid = 52;
        assert_eq!(
            check_for_router(&config(), false, ip("10.99.0.11"), &other),
            Err(DropReason::VridMismatch)
        );
        assert_eq!(
            check_for_router(&config(), false, ip("10.99.0.11"), &advert()),
            Ok(Accepted {
                address_list_mismatch: false
            })
        );
    }

    #[test]
    fn rfc5798_7_1_address_owner_drops_adverts() {
        assert_eq!(
            check_for_router(&config(), true, ip("10.99.0.11"), &advert()),
            Err(DropReason::AddressOwner)
        );
    }

    #[test]
    fn rfc5798_7_1_address_list_mismatch_is_reported_not_dropped() {
        let mut other = advert();
        other.addresses.push(ip("10.99.0.253"));
        assert_eq!(
            check_for_router(&config(), false, ip("10.99.0.11"), &other),
            Ok(Accepted {
                address_list_mismatch: true
            })
        );
        // Same set in another order is not a mismatch.
        let mut config = config();
        config.virtual_addresses = vec![ip("10.99.0.253"), ip("10.99.0.254")];
        other.addresses.reverse();
        assert_eq!(
            check_for_router(&config, false, ip("10.99.0.11"), &other),
            Ok(Accepted {
                address_list_mismatch: false
            })
        );
    }

    #[test]
    fn unknown_source_is_dropped_only_when_peers_are_configured() {
        let mut config = config();
        let stranger = ip("10.99.0.66");
        assert!(check_for_router(&config, false, stranger, &advert()).is_ok());
        config.peers = vec![ip("10.99.0.11")];
        assert_eq!(
            check_for_router(&config, false, stranger, &advert()),
            Err(DropReason::UnknownSource)
        );
        assert!(check_for_router(&config, false, ip("10.99.0.11"), &advert()).is_ok());
    }

    #[test]
    fn own_and_other_family_adverts_are_dropped() {
        assert_eq!(
            check_for_router(&config(), false, ip("10.99.0.12"), &advert()),
            Err(DropReason::OwnAdvert)
        );
        assert_eq!(
            check_for_router(&config(), false, ip("fe80::1"), &advert()),
            Err(DropReason::WrongFamily)
        );
    }

    #[test]
    fn drop_counters_count_each_reason_on_its_own() {
        assert!(
            DropReason::ALL
                .iter()
                .enumerate()
                .all(|(i, &r)| r as usize == i),
            "ALL must list the reasons in discriminant order"
        );
        let mut counters = DropCounters::default();
        for (n, &reason) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=n {
                counters.record(reason);
            }
        }
        for (n, (reason, count)) in counters.iter().enumerate() {
            assert_eq!(count, n as u64 + 1, "{}", reason.as_str());
        }
        assert_eq!(counters.total(), (1..=12).sum::<u64>());
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            DropReason::ALL.len(),
            "metric labels are unique"
        );
    }

    /// xorshift64*: enough randomness to drive the no-panic test without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Stable CI's stand-in for the cargo-fuzz target: every decoder and the validation
    /// run over 300 000 inputs, random and mutated from valid packets, without a panic.
    /// Also checks that whatever decodes re-encodes to the same bytes.
    #[test]
    fn decoders_never_panic_on_pseudo_random_input() {
        let mut rng = XorShift(0x5eed_0f7a_4de3);
        let seeds: Vec<Vec<u8>> = vec![KEEPALIVED_FRAME_IP.to_vec(), {
            let mut p = vec![0x60, 0, 0, 0, 0, 24, IP_PROTOCOL, 255];
            p.extend(ip_octets("fe80::1"));
            p.extend(crate::advert::MULTICAST_V6.octets());
            let advert = Advert {
                vrid: 1,
                priority: 1,
                max_advert_interval: Duration::from_millis(10),
                addresses: vec![ip("fe80::2")],
            };
            let mut vrrp = [0; 24];
            advert
                .encode(
                    ip("fe80::1"),
                    IpAddr::V6(crate::advert::MULTICAST_V6),
                    &mut vrrp,
                )
                .unwrap();
            p.extend(vrrp);
            p
        }];
        let mut decoded = 0usize;
        for round in 0..300_000 {
            let mut bytes = if round % 4 == 0 {
                (0..rng.below(96)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[round % 2].clone()
            };
            for _ in 0..rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes.truncate(at),
                    2 => bytes.insert(at, rng.next() as u8),
                    _ => bytes[at] ^= 1 << rng.below(8),
                }
            }
            for inbound in [
                Inbound::from_ipv4_packet(&bytes),
                Inbound::from_ipv6_packet(&bytes),
            ]
            .into_iter()
            .flatten()
            {
                if let Ok(advert) = validate(&inbound) {
                    decoded += 1;
                    let mut out = vec![0; advert.encoded_len()];
                    let len = advert
                        .encode(inbound.source, inbound.destination, &mut out)
                        .expect("a decoded advert re-encodes");
                    // Only the reserved bits may differ (ignored on receipt, §5.2.6).
                    let mut received = inbound.vrrp.to_vec();
                    received[4] &= 0x0f;
                    if received != out[..len] {
                        // A set reserved bit changed the checksum too.
                        assert_eq!(received[..6], out[..6]);
                        assert_eq!(received[8..], out[8..len]);
                    }
                }
                let _ = check_for_router(&config(), false, inbound.source, &advert());
            }
            let _ = Advert::decode(&bytes, ip("10.0.0.1"), ip("224.0.0.18"));
            let _ = Advert::decode(&bytes, ip("fe80::1"), ip("ff02::12"));
        }
        assert!(
            decoded > 1000,
            "mutations should keep some packets valid: {decoded}"
        );
    }

    fn ip_octets(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }
}
