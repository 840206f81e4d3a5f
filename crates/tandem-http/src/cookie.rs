//! The `Cookie` request field (RFC 6265 §4.2 and §5.4).

/// The value of the first cookie called `name` in one `Cookie` field value.
///
/// `cookie-string = cookie-pair *( ";" SP cookie-pair )`. Parsing is tolerant as servers
/// are (RFC 6265 §5.4 is written for user agents; there is no server-side algorithm):
/// any amount of SP/HTAB around pairs and around `=`, empty pairs skipped, pairs without
/// `=` skipped. Names compare case-sensitively. A value wrapped in DQUOTEs is returned
/// without them.
pub(crate) fn find<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for pair in value.split(|&b| b == b';') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if crate::grammar::trim_ows(&pair[..eq]) != name {
            continue;
        }
        let v = crate::grammar::trim_ows(&pair[eq + 1..]);
        return Some(match v {
            [b'"', inner @ .., b'"'] => inner,
            _ => v,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn finds_the_first_match() {
        let v = b"a=1; SRV=web2; b=2; SRV=web3";
        assert_eq!(find(v, b"SRV"), Some(&b"web2"[..]));
        assert_eq!(find(v, b"a"), Some(&b"1"[..]));
        assert_eq!(find(v, b"srv"), None);
        assert_eq!(find(v, b"c"), None);
    }

    #[test]
    fn tolerates_spacing_and_junk() {
        let v = b" ;a = 1 ;;\tb=\"x y\";noval; c= ;d=e=f";
        assert_eq!(find(v, b"a"), Some(&b"1"[..]));
        assert_eq!(find(v, b"b"), Some(&b"x y"[..]));
        assert_eq!(find(v, b"c"), Some(&b""[..]));
        assert_eq!(find(v, b"d"), Some(&b"e=f"[..]));
        assert_eq!(find(v, b"noval"), None);
        assert_eq!(find(b"", b"a"), None);
    }
}
