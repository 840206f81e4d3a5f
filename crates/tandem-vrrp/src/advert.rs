//! The VRRPv3 ADVERTISEMENT, VRRP's only packet (RFC 5798 §5.2), for IPv4 and IPv6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 IPvX Address(es), 4 or 16 bytes each          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The codec is pure: [`Advert::decode`] takes the VRRP payload with the IP source and
//! destination (the checksum covers a pseudo-header made of them), [`Advert::encode`] writes
//! into a caller's buffer. Neither panics on any input: every length is checked first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4, §5.1.2.4).
pub const IP_PROTOCOL: u8 = 112;
/// IPv4 multicast group of VRRP (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group of VRRP (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The IPv4 TTL or IPv6 Hop Limit of every VRRP packet, sent and received (RFC 5798
/// §5.1.1.3, §5.1.2.3): a router forwarding the packet would lower it, so 255 proves the
/// sender is on the link.
pub const HOP_LIMIT: u8 = 255;
/// Largest Max Adver Int: the field has 12 bits of centiseconds (RFC 5798 §5.2.7).
pub const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(4095 * 10);

const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
const CENTISECOND_MS: u64 = 10;

/// One VRRPv3 advertisement, independent of its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Rtr ID (RFC 5798 §5.2.3).
    pub vrid: u8,
    /// Priority (RFC 5798 §5.2.4): 255 for the address owner, 1..=254 for the others, 0 when
    /// the Master stops.
    pub priority: u8,
    /// Max Adver Int (RFC 5798 §5.2.7): whole centiseconds, 0 to 40.95 s on the wire.
    pub max_advert_interval: Duration,
    /// IPvX Address(es) (RFC 5798 §5.2.9): all of the family of the IP header.
    pub addresses: Vec<IpAddr>,
}

/// Why a byte string is not a well-formed VRRPv3 advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the headers or the address count call for (RFC 5798 §7.1: "contains
    /// the complete VRRP packet").
    #[error("packet has {actual} bytes where {needed} are needed")]
    Truncated { needed: usize, actual: usize },
    /// The IP header is not a plain IPv4/IPv6 header carrying one whole VRRP packet.
    #[error("IP header is malformed: {0}")]
    BadIpHeader(&'static str),
    /// The IP packet carries another protocol than VRRP (112).
    #[error("IP protocol {0} is not VRRP (112)")]
    NotVrrp(u8),
    /// RFC 5798 §7.1: "MUST verify that the VRRP version is 3".
    #[error("VRRP version {0}, expected 3")]
    BadVersion(u8),
    /// RFC 5798 §5.2.2: a packet of unknown type MUST be discarded.
    #[error("VRRP type {0}, expected 1 (ADVERTISEMENT)")]
    BadType(u8),
    /// Count IPvX Addr is 0; an advertisement names at least one address (RFC 5798 §5.2.5).
    #[error("advertisement lists no address")]
    NoAddresses,
    /// Bytes after the last address that the address count does not account for.
    #[error("{0} unexpected bytes after the address list")]
    TrailingBytes(usize),
    /// The IP source and destination are not of one address family.
    #[error("IP source and destination are of different address families")]
    MixedFamilies,
    /// RFC 5798 §5.2.8 / §7.1: the checksum over the pseudo-header and the packet is wrong.
    #[error("checksum {received:#06x} is wrong, expected {expected:#06x}")]
    BadChecksum { received: u16, expected: u16 },
}

/// Why an [`Advert`] cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("buffer has {available} bytes, the advertisement needs {needed}")]
    BufferTooSmall { needed: usize, available: usize },
    /// Max Adver Int is whole centiseconds up to 40.95 s (RFC 5798 §5.2.7).
    #[error("advert interval {0:?} is not a whole number of centiseconds up to 40.95 s")]
    BadInterval(Duration),
    /// Count IPvX Addr is one byte, and at least one address is sent (RFC 5798 §5.2.5).
    #[error("an advertisement carries 1 to 255 addresses, not {0}")]
    AddressCount(usize),
    /// IPv4 and IPv6 addresses never share an advertisement (RFC 5798 §5.2.9).
    #[error("source, destination and addresses are not all of one address family")]
    MixedFamilies,
}

impl Advert {
    /// Length of this advertisement on the wire (the IP payload).
    pub fn encoded_len(&self) -> usize {
        let address_len = match self.addresses.first() {
            Some(IpAddr::V6(_)) => 16,
            _ => 4,
        };
        HEADER_LEN + self.addresses.len() * address_len
    }

    /// Writes the advertisement, checksum included, to the start of `out` and returns its
    /// length. `source` and `destination` are the IP header's: RFC 5798 §5.2.8 puts them
    /// under the checksum.
    pub fn encode(
        &self,
        source: IpAddr,
        destination: IpAddr,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let is_v6 = same_family(source, destination).ok_or(EncodeError::MixedFamilies)?;
        if self.addresses.iter().any(|a| a.is_ipv6() != is_v6) {
            return Err(EncodeError::MixedFamilies);
        }
        let count = u8::try_from(self.addresses.len())
            .ok()
            .filter(|&c| c > 0)
            .ok_or(EncodeError::AddressCount(self.addresses.len()))?;
        let interval = interval_to_centiseconds(self.max_advert_interval)
            .ok_or(EncodeError::BadInterval(self.max_advert_interval))?;
        let needed = self.encoded_len();
        let available = out.len();
        let out = out
            .get_mut(..needed)
            .ok_or(EncodeError::BufferTooSmall { needed, available })?;

        out[0] = (VERSION << 4) | TYPE_ADVERTISEMENT;
        out[1] = self.vrid;
        out[2] = self.priority;
        out[3] = count;
        // RFC 5798 §5.2.6: the 4 reserved bits are sent as zero; the interval is < 2^12.
        out[4..6].copy_from_slice(&interval.to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
        let mut at = HEADER_LEN;
        for address in &self.addresses {
            match address {
                IpAddr::V4(a) => {
                    out[at..at + 4].copy_from_slice(&a.octets());
                    at += 4;
                }
                IpAddr::V6(a) => {
                    out[at..at + 16].copy_from_slice(&a.octets());
                    at += 16;
                }
            }
        }
        let checksum = checksum(source, destination, out);
        out[6..8].copy_from_slice(&checksum.to_be_bytes());
        Ok(needed)
    }

    /// Decodes the VRRP payload of an IP packet from `source` to `destination` and verifies
    /// its checksum (RFC 5798 §7.1). The checks run in the order of the packet: version and
    /// type, then lengths, then the checksum.
    pub fn decode(vrrp: &[u8], source: IpAddr, destination: IpAddr) -> Result<Advert, DecodeError> {
        let is_v6 = same_family(source, destination).ok_or(DecodeError::MixedFamilies)?;
        let first = *vrrp.first().ok_or(DecodeError::Truncated {
            needed: HEADER_LEN,
            actual: 0,
        })?;
        if first >> 4 != VERSION {
            return Err(DecodeError::BadVersion(first >> 4));
        }
        if first & 0x0f != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType(first & 0x0f));
        }
        let header: &[u8; HEADER_LEN] = vrrp
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::Truncated {
                needed: HEADER_LEN,
                actual: vrrp.len(),
            })?;
        let count = usize::from(header[3]);
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        let address_len = if is_v6 { 16 } else { 4 };
        let needed = HEADER_LEN + count * address_len;
        if vrrp.len() < needed {
            return Err(DecodeError::Truncated {
                needed,
                actual: vrrp.len(),
            });
        }
        if vrrp.len() > needed {
            return Err(DecodeError::TrailingBytes(vrrp.len() - needed));
        }
        // The sum over the packet with its checksum in place is zero when the checksum is
        // right; this accepts both encodings of one's-complement zero.
        if checksum(source, destination, vrrp) != 0 {
            let received = u16::from_be_bytes([header[6], header[7]]);
            let mut zeroed = vrrp.to_vec();
            zeroed[6..8].copy_from_slice(&[0, 0]);
            let expected = checksum(source, destination, &zeroed);
            return Err(DecodeError::BadChecksum { received, expected });
        }

        // RFC 5798 §5.2.6: the reserved bits are ignored on receipt.
        let interval_cs = u16::from_be_bytes([header[4], header[5]]) & 0x0fff;
        let addresses = vrrp[HEADER_LEN..]
            .chunks_exact(address_len)
            .map(|chunk| match <[u8; 16]>::try_from(chunk) {
                Ok(v6) => IpAddr::from(v6),
                Err(_) => IpAddr::from([chunk[0], chunk[1], chunk[2], chunk[3]]),
            })
            .collect();
        Ok(Advert {
            vrid: header[1],
            priority: header[2],
            max_advert_interval: Duration::from_millis(u64::from(interval_cs) * CENTISECOND_MS),
            addresses,
        })
    }
}

/// Max Adver Int in centiseconds, if `interval` is a whole number of them that fits the
/// 12-bit field (RFC 5798 §5.2.7).
pub(crate) fn interval_to_centiseconds(interval: Duration) -> Option<u16> {
    let centiseconds = interval.as_nanos() / u128::from(CENTISECOND_MS * 1_000_000);
    let whole = Duration::from_millis(u64::try_from(centiseconds).ok()? * CENTISECOND_MS);
    u16::try_from(centiseconds)
        .ok()
        .filter(|&cs| cs <= 0x0fff && whole == interval)
}

/// `Some(is_ipv6)` when both addresses are of one family.
fn same_family(a: IpAddr, b: IpAddr) -> Option<bool> {
    (a.is_ipv6() == b.is_ipv6()).then_some(a.is_ipv6())
}

/// RFC 5798 §5.2.8: the 16-bit one's complement of the one's complement sum of the VRRP
/// packet and a pseudo-header. For IPv6 that is the RFC 2460 §8.1 pseudo-header (source,
/// destination, 32-bit length, 24 zero bits, next header 112); for IPv4 it is the classic
/// pseudo-header of UDP and TCP (source, destination, zero byte, protocol 112, 16-bit
/// length). keepalived and Wireshark compute the IPv4 one so; the capture in
/// tests/vectors proves it byte for byte.
///
/// Over a packet whose checksum field is zero this is the checksum to send; over a
/// received packet it is zero when the packet is intact.
fn checksum(source: IpAddr, destination: IpAddr, vrrp: &[u8]) -> u16 {
    let mut sum = OnesComplementSum::default();
    match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum.add(&s.octets());
            sum.add(&d.octets());
            // A VRRP payload is at most 8 + 255 * 16 bytes, so its length fits 16 bits.
            sum.add(&[0, IP_PROTOCOL]);
            sum.add(&(vrrp.len() as u16).to_be_bytes());
        }
        _ => {
            sum.add(&ipv6_octets(source));
            sum.add(&ipv6_octets(destination));
            sum.add(&(vrrp.len() as u32).to_be_bytes());
            sum.add(&[0, 0, 0, IP_PROTOCOL]);
        }
    }
    sum.add(vrrp);
    !sum.fold()
}

fn ipv6_octets(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// RFC 1071 one's complement sum over 16-bit big-endian words.
#[derive(Default)]
struct OnesComplementSum(u64);

impl OnesComplementSum {
    /// Adds `bytes`; every piece but the last has an even length, so words never straddle
    /// two calls. An odd final byte is padded with zero (RFC 1071).
    fn add(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.0 += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            self.0 += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }

    fn fold(&self) -> u16 {
        let mut sum = self.0;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Frame 1 of tests/vectors/keepalived-2.2.7-vrrpv3-failover.pcap, which Wireshark
    /// 4.0.17 shows as "Checksum: 0x1009 [correct]": 10.99.0.11 → 224.0.0.18, VRID 51,
    /// priority 200, 1 s, 10.99.0.254.
    const KEEPALIVED_ADVERT: [u8; 12] = [
        0x31, 0x33, 0xc8, 0x01, 0x00, 0x64, 0x10, 0x09, 0x0a, 0x63, 0x00, 0xfe,
    ];

    /// An IPv6 advert from this encoder, which Wireshark 4.0.17 (tshark -V on a pcap of
    /// it) decodes as "VRRP protocol version: 3 ... Checksum: 0x0e7d [correct]":
    /// fe80::1 → ff02::12, VRID 7, priority 150, 20 ms, fe80::7 and 2001:db8::7.
    const WIRESHARK_CHECKED_V6_ADVERT: [u8; 40] = [
        0x31, 0x07, 0x96, 0x02, 0x00, 0x02, 0x0e, 0x7d, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x07, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
    ];

    fn v6_advert() -> Advert {
        Advert {
            vrid: 7,
            priority: 150,
            max_advert_interval: Duration::from_millis(20),
            addresses: vec![v4("fe80::7"), v4("2001:db8::7")],
        }
    }

    #[test]
    fn rfc5798_5_2_8_ipv4_checksum_matches_keepalived_capture() {
        let advert = Advert::decode(&KEEPALIVED_ADVERT, v4("10.99.0.11"), v4("224.0.0.18"))
            .expect("a packet Wireshark checks as correct decodes");
        assert_eq!(
            advert,
            Advert {
                vrid: 51,
                priority: 200,
                max_advert_interval: Duration::from_secs(1),
                addresses: vec![v4("10.99.0.254")],
            }
        );
        let mut out = [0xa5; 64];
        let len = advert
            .encode(v4("10.99.0.11"), v4("224.0.0.18"), &mut out)
            .unwrap();
        assert_eq!(&out[..len], &KEEPALIVED_ADVERT);
    }

    #[test]
    fn rfc5798_5_2_8_ipv6_checksum_matches_wireshark() {
        let (src, dst) = (v4("fe80::1"), v4("ff02::12"));
        let mut out = [0; 64];
        let len = v6_advert().encode(src, dst, &mut out).unwrap();
        assert_eq!(&out[..len], &WIRESHARK_CHECKED_V6_ADVERT);
        assert_eq!(
            Advert::decode(&WIRESHARK_CHECKED_V6_ADVERT, src, dst).unwrap(),
            v6_advert()
        );
    }

    #[test]
    fn rfc5798_5_2_8_checksum_covers_the_pseudo_header() {
        // The same bytes from another source fail: the addresses are under the checksum.
        let error =
            Advert::decode(&KEEPALIVED_ADVERT, v4("10.99.0.12"), v4("224.0.0.18")).unwrap_err();
        assert!(matches!(
            error,
            DecodeError::BadChecksum {
                received: 0x1009,
                ..
            }
        ));
        let error = Advert::decode(&WIRESHARK_CHECKED_V6_ADVERT, v4("fe80::1"), v4("ff02::13"))
            .unwrap_err();
        assert!(matches!(error, DecodeError::BadChecksum { .. }));
    }

    #[test]
    fn bad_checksum_error_names_the_right_checksum() {
        let mut packet = KEEPALIVED_ADVERT;
        packet[7] ^= 0xff;
        let error = Advert::decode(&packet, v4("10.99.0.11"), v4("224.0.0.18")).unwrap_err();
        assert_eq!(
            error,
            DecodeError::BadChecksum {
                received: 0x10f6,
                expected: 0x1009
            }
        );
    }

    #[test]
    fn rfc5798_5_2_8_every_single_bit_flip_is_caught() {
        let (src, dst) = (v4("fe80::1"), v4("ff02::12"));
        for byte in 0..WIRESHARK_CHECKED_V6_ADVERT.len() {
            for bit in 0..8 {
                let mut packet = WIRESHARK_CHECKED_V6_ADVERT;
                packet[byte] ^= 1 << bit;
                assert!(
                    Advert::decode(&packet, src, dst).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn rfc5798_7_1_version_must_be_3() {
        let mut packet = KEEPALIVED_ADVERT;
        packet[0] = 0x21; // VRRPv2 advertisement
        assert_eq!(
            Advert::decode(&packet, v4("10.99.0.11"), v4("224.0.0.18")),
            Err(DecodeError::BadVersion(2))
        );
    }

    #[test]
    fn rfc5798_5_2_2_unknown_type_is_discarded() {
        let mut packet = KEEPALIVED_ADVERT;
        packet[0] = 0x32;
        assert_eq!(
            Advert::decode(&packet, v4("10.99.0.11"), v4("224.0.0.18")),
            Err(DecodeError::BadType(2))
        );
    }

    #[test]
    fn rfc5798_7_1_incomplete_packet_is_discarded() {
        let (src, dst) = (v4("10.99.0.11"), v4("224.0.0.18"));
        for len in 0..KEEPALIVED_ADVERT.len() {
            let error = Advert::decode(&KEEPALIVED_ADVERT[..len], src, dst).unwrap_err();
            assert!(
                matches!(error, DecodeError::Truncated { .. }),
                "{len} bytes: {error:?}"
            );
        }
        // Count 2 with one address.
        let mut packet = KEEPALIVED_ADVERT;
        packet[3] = 2;
        assert_eq!(
            Advert::decode(&packet, src, dst),
            Err(DecodeError::Truncated {
                needed: 16,
                actual: 12
            })
        );
    }

    #[test]
    fn trailing_bytes_and_empty_address_list_are_malformed() {
        let (src, dst) = (v4("10.99.0.11"), v4("224.0.0.18"));
        let mut longer = KEEPALIVED_ADVERT.to_vec();
        longer.extend([0, 0, 0, 0]);
        assert_eq!(
            Advert::decode(&longer, src, dst),
            Err(DecodeError::TrailingBytes(4))
        );
        let mut empty = KEEPALIVED_ADVERT;
        empty[3] = 0;
        assert_eq!(
            Advert::decode(&empty[..8], src, dst),
            Err(DecodeError::NoAddresses)
        );
        assert_eq!(
            Advert::decode(&KEEPALIVED_ADVERT, src, v4("ff02::12")),
            Err(DecodeError::MixedFamilies)
        );
    }

    #[test]
    fn rfc5798_5_2_6_reserved_bits_are_ignored_on_receipt_and_sent_as_zero() {
        let (src, dst) = (v4("10.99.0.11"), v4("224.0.0.18"));
        let mut packet = KEEPALIVED_ADVERT;
        packet[4] |= 0xf0;
        // Fix the checksum up for the changed word so only the reserved bits differ.
        packet[6..8].copy_from_slice(&[0, 0]);
        let fixed = checksum(src, dst, &packet);
        packet[6..8].copy_from_slice(&fixed.to_be_bytes());
        let advert = Advert::decode(&packet, src, dst).unwrap();
        assert_eq!(advert.max_advert_interval, Duration::from_secs(1));
        let mut out = [0xff; 12];
        advert.encode(src, dst, &mut out).unwrap();
        assert_eq!(out[4] & 0xf0, 0);
    }

    #[test]
    fn rfc5798_5_2_7_interval_is_twelve_bits_of_centiseconds() {
        let (src, dst) = (v4("192.0.2.1"), v4("224.0.0.18"));
        let mut advert = Advert {
            vrid: 1,
            priority: 100,
            max_advert_interval: Duration::from_millis(10),
            addresses: vec![v4("192.0.2.100")],
        };
        let mut out = [0; 16];
        for (interval, centiseconds) in [
            (Duration::from_millis(10), 1u16),
            (Duration::from_millis(100), 10),
            (Duration::from_secs(1), 100),
            (Duration::from_millis(40_950), 4095),
        ] {
            advert.max_advert_interval = interval;
            advert.encode(src, dst, &mut out).unwrap();
            assert_eq!(u16::from_be_bytes([out[4], out[5]]), centiseconds);
            assert_eq!(Advert::decode(&out[..12], src, dst).unwrap(), advert);
        }
        for bad in [
            Duration::from_millis(40_960),
            Duration::from_millis(15),
            Duration::from_micros(10_001),
        ] {
            advert.max_advert_interval = bad;
            assert_eq!(
                advert.encode(src, dst, &mut out),
                Err(EncodeError::BadInterval(bad))
            );
        }
    }

    #[test]
    fn encode_refuses_what_the_wire_cannot_carry() {
        let (src, dst) = (v4("192.0.2.1"), v4("224.0.0.18"));
        let mut advert = Advert {
            vrid: 1,
            priority: 100,
            max_advert_interval: Duration::from_secs(1),
            addresses: vec![],
        };
        let mut out = [0; 2048];
        assert_eq!(
            advert.encode(src, dst, &mut out),
            Err(EncodeError::AddressCount(0))
        );
        advert.addresses = (0..=255u8).map(|i| v4(&format!("10.0.0.{i}"))).collect();
        assert_eq!(
            advert.encode(src, dst, &mut out),
            Err(EncodeError::AddressCount(256))
        );
        advert.addresses = vec![v4("2001:db8::1")];
        assert_eq!(
            advert.encode(src, dst, &mut out),
            Err(EncodeError::MixedFamilies)
        );
        advert.addresses = vec![v4("192.0.2.100"), v4("192.0.2.101")];
        assert_eq!(
            advert.encode(src, dst, &mut out[..15]),
            Err(EncodeError::BufferTooSmall {
                needed: 16,
                available: 15
            })
        );
    }

    #[test]
    fn many_addresses_round_trip_in_order() {
        let (src, dst) = (v4("fe80::1"), v4("fe80::2"));
        let advert = Advert {
            vrid: 255,
            priority: 0,
            max_advert_interval: Duration::from_millis(40_950),
            addresses: (1..=90u16)
                .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
                .collect(),
        };
        let mut out = vec![0; advert.encoded_len()];
        assert_eq!(advert.encode(src, dst, &mut out), Ok(8 + 90 * 16));
        assert_eq!(Advert::decode(&out, src, dst), Ok(advert));
    }
}
