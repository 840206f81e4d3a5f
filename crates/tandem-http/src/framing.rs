//! Message body length (RFC 9112 §6): which of `Content-Length` and `Transfer-Encoding`
//! is accepted, and how long a body is.
//!
//! The rules are the same for requests and responses, and stricter than the RFC's
//! "process according to Transfer-Encoding alone": anything two implementations could
//! read differently is refused, because a proxy that reads a body differently from its
//! server is how requests are smuggled.

use crate::error::Violation;
use crate::grammar::{is_token, list_elements, parse_decimal, trim_ows};
use crate::head::{Field, Known, Version};

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body at all (RFC 9112 §6.3 rules 1 and 7).
    None,
    /// Exactly this many bytes (`Content-Length`), possibly zero.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response read until the server closes (RFC 9112 §6.3 rule 8).
    UntilClose,
    /// After a 101 or a 2xx to CONNECT the connection is a byte tunnel.
    Tunnel,
}

/// What `Content-Length` and `Transfer-Encoding` say, once validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    pub(crate) content_length: Option<u64>,
    pub(crate) chunked: bool,
}

/// Validates the framing fields of a head.
///
/// - `Content-Length` (RFC 9110 §8.6) is `1*DIGIT`: no sign, no space inside, no hex, no
///   empty value, no value above `u64::MAX`. Identical values — repeated fields or a list
///   such as `42, 42` — are merged into one, as §8.6 allows; the forwarded head carries a
///   single regenerated `Content-Length`. Differing values are refused.
/// - `Transfer-Encoding` (RFC 9112 §6.1, §7) must be exactly one `chunked`, case
///   insensitive, possibly surrounded by OWS and empty list elements, over all its fields.
///   `chunked` not last is refused (400 for a request, as §6.1 requires); `chunked` twice is
///   refused (§7.1: "MUST NOT apply chunked more than once"); any other coding before it
///   (`gzip, chunked`) is not implemented (501). In HTTP/1.0 any Transfer-Encoding is
///   faulty framing (§6.1) and refused.
/// - Both present: refused (§6.1 allows it; §6.3 rule 3 notes it is the signature of a
///   smuggling attempt).
pub(crate) fn framing(
    buf: &[u8],
    fields: &[Field],
    version: Version,
) -> Result<Framing, Violation> {
    let mut content_length: Option<u64> = None;
    let mut cl_error: Option<Violation> = None;
    let mut te_present = false;
    let mut te_error: Option<Violation> = None;
    let mut chunked_count = 0u32;
    let mut last_is_chunked = false;
    let mut other_coding = false;

    for f in fields {
        match f.known {
            Known::FramingLookalike => return Err(Violation::FramingLookalike),
            Known::ContentLength => {
                let value = f.value.get(buf);
                // A list such as "42, 42" is split; empty elements are not tolerated here.
                for element in value.split(|&b| b == b',').map(trim_ows) {
                    match parse_decimal(element) {
                        None => {
                            cl_error.get_or_insert(Violation::InvalidContentLength);
                        }
                        Some(n) => match content_length {
                            Some(m) if m != n => {
                                cl_error.get_or_insert(Violation::DifferentContentLengths);
                            }
                            _ => content_length = Some(n),
                        },
                    }
                }
                if content_length.is_none() {
                    cl_error.get_or_insert(Violation::InvalidContentLength);
                }
            }
            Known::TransferEncoding => {
                te_present = true;
                for element in list_elements(f.value.get(buf)) {
                    // transfer-coding = token *( OWS ";" OWS transfer-parameter )
                    let (name, params) = match element.iter().position(|&b| b == b';') {
                        Some(i) => (trim_ows(&element[..i]), true),
                        None => (element, false),
                    };
                    if !is_token(name) {
                        te_error.get_or_insert(Violation::InvalidTransferEncoding);
                    }
                    if name.eq_ignore_ascii_case(b"chunked") {
                        // chunked takes no parameters (RFC 9112 §7.1).
                        if params {
                            te_error.get_or_insert(Violation::InvalidTransferEncoding);
                        }
                        chunked_count += 1;
                        last_is_chunked = true;
                    } else {
                        other_coding = true;
                        last_is_chunked = false;
                    }
                }
            }
            _ => {}
        }
    }

    if !te_present {
        if let Some(e) = cl_error {
            return Err(e);
        }
        return Ok(Framing {
            content_length,
            chunked: false,
        });
    }
    if content_length.is_some() || cl_error.is_some() {
        return Err(Violation::ContentLengthAndTransferEncoding);
    }
    if version == Version::Http10 {
        return Err(Violation::TransferEncodingInHttp10);
    }
    if let Some(e) = te_error {
        return Err(e);
    }
    if chunked_count > 1 {
        return Err(Violation::ChunkedTwice);
    }
    if !last_is_chunked {
        return Err(Violation::ChunkedNotFinal);
    }
    if other_coding {
        return Err(Violation::UnsupportedTransferCoding);
    }
    Ok(Framing {
        content_length: None,
        chunked: true,
    })
}

/// RFC 9112 §6.3 rules 6 and 7 for a request: chunked, or Content-Length, or no body.
pub(crate) fn request_body(f: Framing) -> BodyKind {
    match (f.chunked, f.content_length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::None,
    }
}

/// RFC 9112 §6.3 for a response, given what the request was.
pub(crate) fn response_body(
    f: Framing,
    status: u16,
    head_request: bool,
    connect: bool,
) -> BodyKind {
    // Rule 2: a 2xx to CONNECT turns the connection into a tunnel.
    if connect && (200..300).contains(&status) {
        return BodyKind::Tunnel;
    }
    if status == 101 {
        return BodyKind::Tunnel;
    }
    // Rule 1: HEAD, 1xx, 204 and 304 have no body, whatever the fields say.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return BodyKind::None;
    }
    match (f.chunked, f.content_length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(n)) => BodyKind::Length(n),
        // Rule 8: read until the server closes.
        (false, None) => BodyKind::UntilClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{HeadParser, Progress, StartKind};

    fn framing_of(fields: &str, version: Version) -> Result<Framing, Violation> {
        let input = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        let mut p = HeadParser::new(StartKind::Response);
        assert!(matches!(
            p.parse(input.as_bytes(), 1 << 16, 100),
            Ok(Progress::Done(_))
        ));
        framing(input.as_bytes(), &p.fields, version)
    }

    fn f11(fields: &str) -> Result<Framing, Violation> {
        framing_of(fields, Version::Http11)
    }

    const CHUNKED: Framing = Framing {
        content_length: None,
        chunked: true,
    };

    fn length(n: u64) -> Framing {
        Framing {
            content_length: Some(n),
            chunked: false,
        }
    }

    #[test]
    fn content_length_accepted() {
        assert_eq!(f11("Content-Length: 5\r\n"), Ok(length(5)));
        assert_eq!(f11("Content-Length: 0\r\n"), Ok(length(0)));
        assert_eq!(f11("content-length:\t007 \r\n"), Ok(length(7)));
        assert_eq!(f11(""), Ok(Framing::default()));
    }

    #[test]
    fn identical_content_lengths_are_merged() {
        assert_eq!(
            f11("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(length(5))
        );
        assert_eq!(f11("Content-Length: 5, 5\r\n"), Ok(length(5)));
    }

    #[test]
    fn differing_content_lengths_refused() {
        assert_eq!(
            f11("Content-Length: 5\r\nContent-Length: 6\r\n"),
            Err(Violation::DifferentContentLengths)
        );
        assert_eq!(
            f11("Content-Length: 5, 6\r\n"),
            Err(Violation::DifferentContentLengths)
        );
    }

    #[test]
    fn malformed_content_length_refused() {
        for v in [
            "+5",
            "-5",
            "0x5",
            "5 5",
            "",
            "5,",
            ",5",
            "5;",
            "abc",
            "1e3",
            "5.0",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(
                f11(&format!("Content-Length: {v}\r\n")),
                Err(Violation::InvalidContentLength),
                "{v:?}"
            );
        }
    }

    #[test]
    fn chunked_accepted() {
        assert_eq!(f11("Transfer-Encoding: chunked\r\n"), Ok(CHUNKED));
        assert_eq!(f11("Transfer-Encoding: CHUNKED\r\n"), Ok(CHUNKED));
        assert_eq!(f11("Transfer-Encoding:\tchunked\r\n"), Ok(CHUNKED));
        assert_eq!(f11("Transfer-Encoding: , chunked ,\r\n"), Ok(CHUNKED));
    }

    #[test]
    fn content_length_and_transfer_encoding_refused() {
        assert_eq!(
            f11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            Err(Violation::ContentLengthAndTransferEncoding)
        );
        assert_eq!(
            f11("Transfer-Encoding: chunked\r\nContent-Length: x\r\n"),
            Err(Violation::ContentLengthAndTransferEncoding)
        );
    }

    #[test]
    fn transfer_encoding_not_ending_in_chunked_refused() {
        for v in [
            "chunked, identity",
            "identity",
            "xchunked",
            "chunked, gzip",
            "x",
            "",
        ] {
            assert_eq!(
                f11(&format!("Transfer-Encoding: {v}\r\n")),
                Err(Violation::ChunkedNotFinal),
                "{v:?}"
            );
        }
    }

    #[test]
    fn chunked_twice_refused() {
        assert_eq!(
            f11("Transfer-Encoding: chunked, chunked\r\n"),
            Err(Violation::ChunkedTwice)
        );
        assert_eq!(
            f11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            Err(Violation::ChunkedTwice)
        );
    }

    #[test]
    fn other_codings_not_implemented() {
        assert_eq!(
            f11("Transfer-Encoding: gzip, chunked\r\n"),
            Err(Violation::UnsupportedTransferCoding)
        );
        assert_eq!(
            f11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Err(Violation::UnsupportedTransferCoding)
        );
    }

    #[test]
    fn malformed_transfer_encoding_refused() {
        assert_eq!(
            f11("Transfer-Encoding: chunked;q=1\r\n"),
            Err(Violation::InvalidTransferEncoding)
        );
        assert_eq!(
            f11("Transfer-Encoding: \"chunked\"\r\n"),
            Err(Violation::InvalidTransferEncoding)
        );
        assert_eq!(
            f11("Transfer-Encoding: chun ked\r\n"),
            Err(Violation::InvalidTransferEncoding)
        );
    }

    #[test]
    fn underscore_lookalikes_refused() {
        assert_eq!(
            f11("Transfer_Encoding: chunked\r\n"),
            Err(Violation::FramingLookalike)
        );
        assert_eq!(
            f11("Content-Length: 1\r\ncontent_length: 2\r\n"),
            Err(Violation::FramingLookalike)
        );
    }

    #[test]
    fn transfer_encoding_in_http10_refused() {
        assert_eq!(
            framing_of("Transfer-Encoding: chunked\r\n", Version::Http10),
            Err(Violation::TransferEncodingInHttp10)
        );
    }

    #[test]
    fn response_body_rules() {
        let none = Framing::default();
        assert_eq!(response_body(none, 200, false, false), BodyKind::UntilClose);
        assert_eq!(
            response_body(length(3), 200, false, false),
            BodyKind::Length(3)
        );
        assert_eq!(response_body(CHUNKED, 200, false, false), BodyKind::Chunked);
        assert_eq!(response_body(length(3), 200, true, false), BodyKind::None);
        for s in [100, 103, 204, 304] {
            assert_eq!(
                response_body(CHUNKED, s, false, false),
                BodyKind::None,
                "{s}"
            );
        }
        assert_eq!(response_body(length(3), 200, false, true), BodyKind::Tunnel);
        assert_eq!(
            response_body(length(3), 407, false, true),
            BodyKind::Length(3)
        );
        assert_eq!(response_body(none, 101, false, false), BodyKind::Tunnel);
    }
}
