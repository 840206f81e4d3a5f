//! Request-target forms (RFC 9112 §3.2) and authorities (`uri-host [":" port]`, RFC 3986
//! §3.2 as used by RFC 9110 §4.2 and §7.2).

use crate::error::Violation;
use crate::grammar::REG_NAME;

/// The four forms of request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`: the usual form.
    Origin,
    /// `http://host/path?query`: what clients send to proxies, and servers must accept.
    Absolute,
    /// `host:port`: CONNECT only.
    Authority,
    /// `*`: OPTIONS only.
    Asterisk,
}

/// `uri-host [":" port]` split, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Authority<'a> {
    /// Host as written (case preserved), brackets kept for an IPv6 literal.
    pub(crate) host: &'a [u8],
    /// Port digits; `None` when absent, `Some(None)`-like empty is folded into `None`
    /// (RFC 3986 §3.2.3: an empty port is the same as no port).
    pub(crate) port: Option<u16>,
}

impl Authority<'_> {
    /// Same host (case-insensitive, RFC 3986 §3.2.2) and same port, where an absent port
    /// means `default_port`.
    pub(crate) fn same_as(&self, other: &Authority<'_>, default_port: Option<u16>) -> bool {
        self.host.eq_ignore_ascii_case(other.host)
            && self.port.or(default_port) == other.port.or(default_port)
    }
}

/// Parses `uri-host [":" port]`. The host may be empty only when the whole input is
/// (RFC 9110 §7.2 allows an empty Host); userinfo is not part of this grammar.
pub(crate) fn parse_authority(s: &[u8]) -> Option<Authority<'_>> {
    let (host, rest) = if s.first() == Some(&b'[') {
        // IP-literal: IPv6 only (IPvFuture and zone identifiers are not HTTP).
        let close = s.iter().position(|&b| b == b']')?;
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner.contains(&b':')
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (&s[..=close], &s[close + 1..])
    } else {
        let end = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        let host = &s[..end];
        if !host.iter().all(|&b| REG_NAME[b as usize]) || !valid_pct(host) {
            return None;
        }
        (host, &s[end..])
    };
    let port = match rest {
        [] | [b':'] => None,
        [b':', digits @ ..] => {
            if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = digits
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(n).ok()?)
        }
        _ => return None,
    };
    if host.is_empty() && !s.is_empty() {
        return None;
    }
    Some(Authority { host, port })
}

/// Every `%` starts a `pct-encoded` triplet.
fn valid_pct(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !(s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// A parsed request-target: its form and, for the forms that have them, where the
/// authority and the origin-form part (path and query) are, as offsets into the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) form: TargetForm,
    pub(crate) https: bool,
    /// Authority within the target (absolute- and authority-form), else empty.
    pub(crate) authority: (usize, usize),
    /// Path and query within the target (origin- and absolute-form; may be empty for
    /// absolute-form, meaning "/").
    pub(crate) origin: (usize, usize),
}

/// Classifies the target and checks it against the method (RFC 9112 §3.2.3, §3.2.4).
pub(crate) fn parse_target(
    target: &[u8],
    is_connect: bool,
    is_options: bool,
    allow_connect: bool,
) -> Result<Target, Violation> {
    let whole = (0, target.len());
    if is_connect {
        if !allow_connect {
            return Err(Violation::ConnectNotAllowed);
        }
        // RFC 9112 §3.2.3: authority-form = uri-host ":" port, port required.
        return match parse_authority(target) {
            Some(a) if a.port.is_some() && !a.host.is_empty() => Ok(Target {
                form: TargetForm::Authority,
                https: false,
                authority: whole,
                origin: (0, 0),
            }),
            _ => Err(Violation::ConnectWithoutAuthority),
        };
    }
    if target == b"*" {
        if !is_options {
            return Err(Violation::AsteriskNotOptions);
        }
        return Ok(Target {
            form: TargetForm::Asterisk,
            https: false,
            authority: (0, 0),
            origin: whole,
        });
    }
    if target.first() == Some(&b'/') {
        return Ok(Target {
            form: TargetForm::Origin,
            https: false,
            authority: (0, 0),
            origin: whole,
        });
    }
    if let Some(colon) = target.windows(3).position(|w| w == b"://") {
        let scheme = &target[..colon];
        let https = if scheme.eq_ignore_ascii_case(b"http") {
            false
        } else if scheme.eq_ignore_ascii_case(b"https") {
            true
        } else {
            return Err(Violation::UnsupportedScheme);
        };
        let start = colon + 3;
        let end = target[start..]
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .map_or(target.len(), |i| start + i);
        let authority = &target[start..end];
        // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error.
        if authority.contains(&b'@') {
            return Err(Violation::UserinfoInTarget);
        }
        // RFC 9110 §4.2.1: an http URI with an empty host is invalid.
        match parse_authority(authority) {
            Some(a) if !a.host.is_empty() => {}
            _ => return Err(Violation::InvalidTarget),
        }
        return Ok(Target {
            form: TargetForm::Absolute,
            https,
            authority: (start, end),
            origin: (end, target.len()),
        });
    }
    if parse_authority(target).is_some_and(|a| a.port.is_some()) {
        return Err(Violation::AuthorityNotConnect);
    }
    Err(Violation::InvalidTarget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Option<(String, Option<u16>)> {
        parse_authority(s.as_bytes()).map(|a| (String::from_utf8(a.host.to_vec()).unwrap(), a.port))
    }

    #[test]
    fn authorities() {
        assert_eq!(auth("example.com"), Some(("example.com".into(), None)));
        assert_eq!(
            auth("Example.COM:8080"),
            Some(("Example.COM".into(), Some(8080)))
        );
        assert_eq!(auth("a:"), Some(("a".into(), None)));
        assert_eq!(
            auth("[2001:db8::1]:443"),
            Some(("[2001:db8::1]".into(), Some(443)))
        );
        assert_eq!(auth("192.0.2.1"), Some(("192.0.2.1".into(), None)));
        assert_eq!(auth(""), Some(("".into(), None)));
        assert_eq!(
            auth("xn--bcher-kva.example"),
            Some(("xn--bcher-kva.example".into(), None))
        );
        assert_eq!(auth("a%2Db"), Some(("a%2Db".into(), None)));
        for bad in [
            ":80",
            "a:b",
            "a:65536",
            "a:123456",
            "a b",
            "a/b",
            "a@b",
            "[::1",
            "[]",
            "[zz::1]",
            "[::1]x",
            "a:80:80",
            "a%2",
            "a%zz",
            "a\"b",
            "2001:db8::1",
        ] {
            assert_eq!(auth(bad), None, "{bad}");
        }
    }

    #[test]
    fn same_authority() {
        let a = parse_authority(b"Example.com").unwrap();
        let b = parse_authority(b"example.COM:80").unwrap();
        assert!(a.same_as(&b, Some(80)));
        assert!(!a.same_as(&b, Some(443)));
        let c = parse_authority(b"example.com:8080").unwrap();
        assert!(!a.same_as(&c, Some(80)));
    }

    fn form(t: &str, method: &str) -> Result<TargetForm, Violation> {
        parse_target(t.as_bytes(), method == "CONNECT", method == "OPTIONS", true).map(|t| t.form)
    }

    #[test]
    fn forms() {
        assert_eq!(form("/a?b", "GET"), Ok(TargetForm::Origin));
        assert_eq!(form("http://a.example/x", "GET"), Ok(TargetForm::Absolute));
        assert_eq!(form("HTTPS://a.example", "GET"), Ok(TargetForm::Absolute));
        assert_eq!(form("a.example:443", "CONNECT"), Ok(TargetForm::Authority));
        assert_eq!(form("*", "OPTIONS"), Ok(TargetForm::Asterisk));
        assert_eq!(
            form("http://a.example", "OPTIONS"),
            Ok(TargetForm::Absolute)
        );
    }

    #[test]
    fn forms_refused() {
        assert_eq!(form("*", "GET"), Err(Violation::AsteriskNotOptions));
        assert_eq!(
            form("a.example:443", "GET"),
            Err(Violation::AuthorityNotConnect)
        );
        assert_eq!(
            form("/", "CONNECT"),
            Err(Violation::ConnectWithoutAuthority)
        );
        assert_eq!(
            form("a.example", "CONNECT"),
            Err(Violation::ConnectWithoutAuthority)
        );
        assert_eq!(
            form("ftp://a.example/", "GET"),
            Err(Violation::UnsupportedScheme)
        );
        assert_eq!(
            form("http://u:p@a.example/", "GET"),
            Err(Violation::UserinfoInTarget)
        );
        assert_eq!(form("http:///x", "GET"), Err(Violation::InvalidTarget));
        assert_eq!(form("index.html", "GET"), Err(Violation::InvalidTarget));
        assert_eq!(
            parse_target(b"a:443", true, false, false).err(),
            Some(Violation::ConnectNotAllowed)
        );
    }

    #[test]
    fn absolute_form_parts() {
        let t = b"http://a.example:8080/p?q";
        let p = parse_target(t, false, false, false).unwrap();
        assert_eq!(&t[p.authority.0..p.authority.1], b"a.example:8080");
        assert_eq!(&t[p.origin.0..p.origin.1], b"/p?q");
        let t = b"https://a.example?q";
        let p = parse_target(t, false, false, false).unwrap();
        assert!(p.https);
        assert_eq!(&t[p.origin.0..p.origin.1], b"?q");
    }
}
