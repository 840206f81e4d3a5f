//! Character classes and small syntax helpers from RFC 9110 §5.6 and RFC 3986.

/// A 256-entry lookup table from a `const fn(u8) -> bool`, built at compile time.
macro_rules! table {
    ($f:ident) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $f(i as u8);
            i += 1;
        }
        t
    }};
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
const fn tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' |
        b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// RFC 9110 §5.5: `field-value = *field-content`, built of `field-vchar = VCHAR / obs-text`
/// with SP and HTAB inside. No CR, LF, NUL, DEL or other control.
const fn value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=0x7e | 0x80..=0xff)
}

/// Request-target bytes: VCHAR except `#`. RFC 3986 is narrower, but browsers send raw
/// `|`, `{`, `^` and the like in queries, and every deployed server accepts them. `#` is
/// refused: a fragment is never sent (RFC 9112 §3.2.1), and servers disagree on it
/// (HAProxy CVE-2023-45539).
const fn target_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && b != b'#'
}

/// RFC 3986 `reg-name` and IPv4address bytes: unreserved / pct-encoded / sub-delims.
const fn reg_name_byte(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'%' |
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// RFC 9110 §5.6.4 `qdtext` (inside a quoted-string, other than `\`).
const fn qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

pub(crate) static TCHAR: [bool; 256] = table!(tchar);
pub(crate) static VALUE: [bool; 256] = table!(value_byte);
pub(crate) static TARGET: [bool; 256] = table!(target_byte);
pub(crate) static REG_NAME: [bool; 256] = table!(reg_name_byte);
pub(crate) static QDTEXT: [bool; 256] = table!(qdtext);

#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

pub(crate) fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|&b| VALUE[b as usize])
        && !s.first().is_some_and(|&b| is_ows(b))
        && !s.last().is_some_and(|&b| is_ows(b))
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1), trimmed of OWS.
/// Empty elements are skipped as the RFC requires of recipients.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// `1*DIGIT` as a u64; `None` when empty, not all digits, or too large.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Decimal digits of `n` in a stack buffer (no allocation).
pub(crate) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { buf, start: i }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token(b"chunked"));
        assert!(is_token(b"X-Forwarded-For"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"a\"b"));
        assert!(!is_token("é".as_bytes()));
    }

    #[test]
    fn field_values() {
        assert!(is_field_value(b"text/html; q=0.9"));
        assert!(is_field_value(b"a\tb"));
        assert!(is_field_value(b""));
        assert!(is_field_value("caf\u{e9}".as_bytes()));
        assert!(!is_field_value(b"a\rb"));
        assert!(!is_field_value(b"a\nb"));
        assert!(!is_field_value(b"a\0b"));
        assert!(!is_field_value(b"a\x7fb"));
        assert!(!is_field_value(b"a\x0bb"));
        assert!(!is_field_value(b" a"));
    }

    #[test]
    fn lists() {
        let v: Vec<&[u8]> = list_elements(b" gzip ,, chunked\t,").collect();
        assert_eq!(v, [&b"gzip"[..], b"chunked"]);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0042"), Some(42));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+5"), None);
        assert_eq!(parse_decimal(b"-5"), None);
        assert_eq!(parse_decimal(b"5 "), None);
        assert_eq!(parse_decimal(b"0x5"), None);
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }
}
