//! Who the client is, as told to servers: `X-Forwarded-For`, `X-Forwarded-Proto` and
//! RFC 7239 `Forwarded`.
//!
//! Trust rule (the same for the three fields): a client's own values are dropped and
//! replaced by what this proxy saw, unless the client connection comes from a trusted
//! proxy (a configured network), in which case its values are kept: our entry is appended
//! to `X-Forwarded-For` and `Forwarded`, and its `X-Forwarded-Proto` is kept as is.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::BufMut;

use crate::grammar::is_tchar;

/// The scheme the client used to reach the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A short string on the stack (an IP address in text, with room for brackets and quotes).
#[derive(Clone, Copy)]
struct Text {
    buf: [u8; 48],
    len: u8,
}

impl Text {
    fn new() -> Text {
        Text {
            buf: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = self.len as usize;
        let end = start + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[start..end].copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or_default())
    }
}

/// The client connection as the forwarded fields describe it. Build it once per client
/// connection (the address is formatted here, not per request).
#[derive(Clone, Copy, Debug)]
pub struct Forwarding {
    /// `192.0.2.1` or `2001:db8::1`: the X-Forwarded-For element.
    xff: Text,
    /// `192.0.2.1` or `"[2001:db8::1]"`: the Forwarded `for=` value (RFC 7239 §6).
    node: Text,
    scheme: Scheme,
    trusted: bool,
}

impl Forwarding {
    /// `client` is the peer address of the client connection (an IPv4-mapped IPv6
    /// address, as a dual-stack socket reports it, is written as IPv4); `trusted` is
    /// whether that address is in the configured trusted-proxy networks.
    pub fn new(client: IpAddr, scheme: Scheme, trusted: bool) -> Forwarding {
        let client = client.to_canonical();
        let mut xff = Text::new();
        let mut node = Text::new();
        // An IP address is at most 39 characters (45 for the IPv4-suffixed IPv6 text
        // form, which std does not produce for non-mapped addresses); both fit.
        let _ = write!(xff, "{client}");
        let _ = match client {
            IpAddr::V4(a) => write!(node, "{a}"),
            // RFC 7239 §6: an IPv6 node is bracketed, and so must be quoted.
            IpAddr::V6(a) => write!(node, "\"[{a}]\""),
        };
        Forwarding {
            xff,
            node,
            scheme,
            trusted,
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// `X-Forwarded-For: [previous, ]client`. `previous` are the client's own values, used
    /// only when it is trusted.
    pub(crate) fn write_xff<'a>(
        &self,
        previous: impl Iterator<Item = &'a [u8]>,
        out: &mut impl BufMut,
    ) {
        out.put_slice(b"X-Forwarded-For: ");
        if self.trusted {
            for v in previous {
                out.put_slice(v);
                out.put_slice(b", ");
            }
        }
        out.put_slice(self.xff.as_bytes());
        out.put_slice(b"\r\n");
    }

    /// `X-Forwarded-Proto`: the trusted client's first value, or ours.
    pub(crate) fn write_xfp(&self, previous: Option<&[u8]>, out: &mut impl BufMut) {
        out.put_slice(b"X-Forwarded-Proto: ");
        match previous {
            Some(v) if self.trusted && !v.is_empty() => out.put_slice(v),
            _ => out.put_slice(self.scheme.as_str().as_bytes()),
        }
        out.put_slice(b"\r\n");
    }

    /// `Forwarded: [previous, ]for=...;proto=...[;host=...]` (RFC 7239 §4, §5).
    pub(crate) fn write_forwarded<'a>(
        &self,
        previous: impl Iterator<Item = &'a [u8]>,
        host: Option<&[u8]>,
        out: &mut impl BufMut,
    ) {
        out.put_slice(b"Forwarded: ");
        if self.trusted {
            for v in previous {
                out.put_slice(v);
                out.put_slice(b", ");
            }
        }
        out.put_slice(b"for=");
        out.put_slice(self.node.as_bytes());
        out.put_slice(b";proto=");
        out.put_slice(self.scheme.as_str().as_bytes());
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            out.put_slice(b";host=");
            write_value(host, out);
        }
        out.put_slice(b"\r\n");
    }
}

/// RFC 7239 §4: `value = token / quoted-string`. A Host value is a token unless it has a
/// port (`:`), brackets or sub-delims; it never holds `"` or `\` (checked when parsed), so
/// quoting needs no escapes.
fn write_value(v: &[u8], out: &mut impl BufMut) {
    if v.iter().all(|&b| is_tchar(b)) {
        out.put_slice(v);
    } else {
        out.put_u8(b'"');
        out.put_slice(v);
        out.put_u8(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ipv4() {
        let f = Forwarding::new("192.0.2.60".parse().unwrap(), Scheme::Http, false);
        assert_eq!(
            text(|o| f.write_xff(std::iter::empty(), o)),
            "X-Forwarded-For: 192.0.2.60\r\n"
        );
        assert_eq!(
            text(|o| f.write_forwarded(std::iter::empty(), Some(b"example.com"), o)),
            "Forwarded: for=192.0.2.60;proto=http;host=example.com\r\n"
        );
    }

    #[test]
    fn ipv6_is_quoted_and_bracketed() {
        let f = Forwarding::new("2001:db8:cafe::17".parse().unwrap(), Scheme::Https, false);
        assert_eq!(
            text(|o| f.write_xff(std::iter::empty(), o)),
            "X-Forwarded-For: 2001:db8:cafe::17\r\n"
        );
        assert_eq!(
            text(|o| f.write_forwarded(std::iter::empty(), Some(b"example.com:8443"), o)),
            "Forwarded: for=\"[2001:db8:cafe::17]\";proto=https;host=\"example.com:8443\"\r\n"
        );
    }

    #[test]
    fn longest_ipv6_fits() {
        let a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
        let f = Forwarding::new(a.parse().unwrap(), Scheme::Http, false);
        assert_eq!(f.xff.as_bytes(), a.as_bytes());
        assert_eq!(f.node.as_bytes(), format!("\"[{a}]\"").as_bytes());
    }

    #[test]
    fn mapped_ipv4_is_written_as_ipv4() {
        let f = Forwarding::new("::ffff:192.0.2.1".parse().unwrap(), Scheme::Http, false);
        assert_eq!(f.xff.as_bytes(), b"192.0.2.1");
        assert_eq!(f.node.as_bytes(), b"192.0.2.1");
    }

    #[test]
    fn untrusted_previous_values_are_replaced() {
        let f = Forwarding::new("192.0.2.1".parse().unwrap(), Scheme::Http, false);
        let prev: [&[u8]; 1] = [b"203.0.113.9"];
        assert_eq!(
            text(|o| f.write_xff(prev.into_iter(), o)),
            "X-Forwarded-For: 192.0.2.1\r\n"
        );
        assert_eq!(
            text(|o| f.write_xfp(Some(b"https"), o)),
            "X-Forwarded-Proto: http\r\n"
        );
    }

    #[test]
    fn trusted_previous_values_are_kept() {
        let f = Forwarding::new("10.0.0.2".parse().unwrap(), Scheme::Http, true);
        let prev: [&[u8]; 2] = [b"203.0.113.9", b"198.51.100.1"];
        assert_eq!(
            text(|o| f.write_xff(prev.into_iter(), o)),
            "X-Forwarded-For: 203.0.113.9, 198.51.100.1, 10.0.0.2\r\n"
        );
        assert_eq!(
            text(|o| f.write_xfp(Some(b"https"), o)),
            "X-Forwarded-Proto: https\r\n"
        );
        assert_eq!(
            text(|o| f.write_xfp(None, o)),
            "X-Forwarded-Proto: http\r\n"
        );
        let prev: [&[u8]; 1] = [b"for=203.0.113.9;proto=https"];
        assert_eq!(
            text(|o| f.write_forwarded(prev.into_iter(), None, o)),
            "Forwarded: for=203.0.113.9;proto=https, for=10.0.0.2;proto=http\r\n"
        );
    }
}
