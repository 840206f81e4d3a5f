//! PROXY protocol version 2 header (HAProxy's "The PROXY protocol", section 2.2), sent to a
//! server before any client byte so it learns the client's address.
//!
//! Layout: the 12-byte signature, `0x21` (version 2, command PROXY), the family and transport
//! byte (`0x11` TCP over IPv4, `0x21` TCP over IPv6), the length of the address block (big
//! endian), then source address, destination address, source port, destination port.

use std::net::{IpAddr, SocketAddr};

pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Longest header this writes (IPv6).
pub const MAX_LEN: usize = 16 + 36;

/// The v2 header for a TCP connection from `client` to `local` (the VIP), written into `out`;
/// returns its length. When the families differ, IPv4 is written as IPv4-mapped IPv6.
pub fn encode_v2(client: SocketAddr, local: SocketAddr, out: &mut [u8; MAX_LEN]) -> usize {
    out[..12].copy_from_slice(&SIGNATURE);
    out[12] = 0x21;
    let (src, dst) = (unmap(client.ip()), unmap(local.ip()));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out[13] = 0x11;
            out[14..16].copy_from_slice(&12u16.to_be_bytes());
            out[16..20].copy_from_slice(&s.octets());
            out[20..24].copy_from_slice(&d.octets());
            out[24..26].copy_from_slice(&client.port().to_be_bytes());
            out[26..28].copy_from_slice(&local.port().to_be_bytes());
            28
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out[13] = 0x21;
            out[14..16].copy_from_slice(&36u16.to_be_bytes());
            out[16..32].copy_from_slice(&v6(s).octets());
            out[32..48].copy_from_slice(&v6(d).octets());
            out[48..50].copy_from_slice(&client.port().to_be_bytes());
            out[50..52].copy_from_slice(&local.port().to_be_bytes());
            52
        }
    }
}

/// An IPv4 client seen through an IPv4-mapped address is an IPv4 client.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses a v2 header (for tests and the lab backend): `(source, destination, header length)`.
pub fn decode_v2(buf: &[u8]) -> Option<(SocketAddr, SocketAddr, usize)> {
    if buf.len() < 16 || buf[..12] != SIGNATURE || buf[12] != 0x21 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let body = buf.get(16..16 + len)?;
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match buf[13] {
        0x11 if len >= 12 => {
            let s: [u8; 4] = body[0..4].try_into().ok()?;
            let d: [u8; 4] = body[4..8].try_into().ok()?;
            Some((
                SocketAddr::from((s, port(&body[8..10]))),
                SocketAddr::from((d, port(&body[10..12]))),
                16 + len,
            ))
        }
        0x21 if len >= 36 => {
            let s: [u8; 16] = body[0..16].try_into().ok()?;
            let d: [u8; 16] = body[16..32].try_into().ok()?;
            Some((
                SocketAddr::from((s, port(&body[32..34]))),
                SocketAddr::from((d, port(&body[34..36]))),
                16 + len,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_bytes_match_the_spec() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v2(
            "192.0.2.10:51234".parse().unwrap(),
            "198.51.100.1:443".parse().unwrap(),
            &mut out,
        );
        let expected: [u8; 28] = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
            0x0A, // signature
            0x21, // version 2, PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0C, // 12 bytes follow
            192, 0, 2, 10, // source
            198, 51, 100, 1, // destination
            0xC8, 0x22, // 51234
            0x01, 0xBB, // 443
        ];
        assert_eq!(&out[..n], &expected);
        assert_eq!(
            decode_v2(&out[..n]),
            Some((
                "192.0.2.10:51234".parse().unwrap(),
                "198.51.100.1:443".parse().unwrap(),
                28
            ))
        );
    }

    #[test]
    fn ipv6_bytes_match_the_spec() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v2(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2001:db8::ff]:8443".parse().unwrap(),
            &mut out,
        );
        assert_eq!(n, 52);
        assert_eq!(&out[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mut src = [0u8; 16];
        src[0..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[15] = 1;
        assert_eq!(&out[16..32], &src);
        assert_eq!(out[47], 0xff);
        assert_eq!(&out[48..52], &[0x9C, 0x40, 0x20, 0xFB]);
    }

    #[test]
    fn mapped_client_on_ipv4_vip_is_ipv4() {
        let mut out = [0u8; MAX_LEN];
        let n = encode_v2(
            "[::ffff:192.0.2.10]:1000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            &mut out,
        );
        assert_eq!(n, 28);
        assert_eq!(out[13], 0x11);
    }
}
