//! Responses the proxy writes itself: errors, redirects, "no server is available".
//!
//! Each is complete and self-delimited: `HTTP/1.1`, `Content-Type: text/plain;
//! charset=utf-8`, `Content-Length`, a one-line body (none to a HEAD request), and
//! `Connection: close` when the engine will close. There is no clock here: a `Date` is
//! written only when the caller passes one, pre-formatted (an IMF-fixdate, RFC 9110
//! §5.6.7; cache it once a second).

use bytes::BufMut;
use http::StatusCode;

use crate::error::{Error, Side, Violation};
use crate::grammar::{Decimal, is_field_value};
use crate::head::Version;
use crate::request_head::RequestHead;

/// How a canned response is framed for the connection it goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The engine closes the connection after this response (always so after an
    /// [`Error`]).
    pub close: bool,
    /// The client's version: an HTTP/1.0 client kept open is told `keep-alive`.
    pub client_version: Version,
    /// The request was HEAD: same head, no body (RFC 9110 §9.3.2).
    pub head_request: bool,
    /// A pre-formatted `Date` value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub date: Option<&'a str>,
}

impl Default for Reply<'_> {
    /// Close, HTTP/1.1, with a body, no Date.
    fn default() -> Self {
        Reply {
            close: true,
            client_version: Version::Http11,
            head_request: false,
            date: None,
        }
    }
}

impl<'a> Reply<'a> {
    /// For a request that was read: its version and method, kept open when the client
    /// wants it.
    pub fn for_request(head: &RequestHead, date: Option<&'a str>) -> Reply<'a> {
        Reply {
            close: !head.keep_alive(),
            client_version: head.version(),
            head_request: head.method() == http::Method::HEAD,
            date,
        }
    }
}

/// An error response: `status` with the body `"<code> <reason>\n"`, e.g. 400, 403, 404,
/// 408, 413, 414, 431, 501, 502, 504, 505.
pub fn error(status: StatusCode, reply: &Reply<'_>, out: &mut impl BufMut) {
    let reason = status.canonical_reason().unwrap_or("");
    let mut body = [0u8; 64];
    let n = join(&mut body, &[status.as_str(), " ", reason, "\n"]);
    write(status, &[], &body[..n], reply, out);
}

/// The answer to a refused message: its status, and always `Connection: close`.
pub fn for_error(err: &Error, reply: &Reply<'_>, out: &mut impl BufMut) {
    let reply = Reply {
        close: true,
        ..*reply
    };
    error(err.status(), &reply, out);
}

/// 429 Too Many Requests with `Retry-After: <seconds>` (RFC 6585 §4).
pub fn too_many_requests(retry_after_secs: u32, reply: &Reply<'_>, out: &mut impl BufMut) {
    let secs = Decimal::new(u64::from(retry_after_secs));
    write(
        StatusCode::TOO_MANY_REQUESTS,
        &[(b"Retry-After", secs.as_bytes())],
        b"429 Too Many Requests\n",
        reply,
        out,
    );
}

/// 503 when no server of the pool is up, optionally with `Retry-After`.
pub fn service_unavailable(
    retry_after_secs: Option<u32>,
    reply: &Reply<'_>,
    out: &mut impl BufMut,
) {
    let secs = retry_after_secs.map(|s| Decimal::new(u64::from(s)));
    let retry: &[(&[u8], &[u8])] = match &secs {
        Some(s) => &[(b"Retry-After", s.as_bytes())],
        None => &[],
    };
    write(
        StatusCode::SERVICE_UNAVAILABLE,
        retry,
        b"no server is available\n",
        reply,
        out,
    );
}

/// A redirect (301, 302, 307 or 308) to `location`, which must be a valid field value
/// (no CR, LF or controls).
pub fn redirect(
    status: StatusCode,
    location: &[u8],
    reply: &Reply<'_>,
    out: &mut impl BufMut,
) -> Result<(), Error> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
        || location.is_empty()
        || !is_field_value(location)
    {
        return Err(Error::new(Side::Request, Violation::InvalidExtraField));
    }
    write(status, &[(b"Location", location)], b"", reply, out);
    Ok(())
}

/// Redirects `head` to the same host and target over HTTPS on `port` (omitted when 443):
/// `https://host[:port]/path?query`. Use 301/308 for a permanent move, 302/307 otherwise
/// (307/308 keep the method and body). A request without a host (HTTP/1.0 without Host)
/// cannot be redirected: 400.
pub fn redirect_to_https(
    head: &RequestHead,
    port: u16,
    status: StatusCode,
    reply: &Reply<'_>,
    out: &mut impl BufMut,
) -> Result<(), Error> {
    let host = head
        .host()
        .ok_or(Error::new(Side::Request, Violation::MissingHost))?;
    let target = match head.target_form() {
        crate::TargetForm::Authority => "/".into(),
        _ => head.forward_target(),
    };
    let mut location = Vec::with_capacity(16 + host.len() + target.len());
    location.extend_from_slice(b"https://");
    location.extend_from_slice(host.as_bytes());
    if port != 443 {
        location.push(b':');
        location.extend_from_slice(Decimal::new(u64::from(port)).as_bytes());
    }
    location.extend_from_slice(target.as_bytes());
    redirect(status, &location, reply, out)
}

fn join(buf: &mut [u8], parts: &[&str]) -> usize {
    let mut n = 0;
    for p in parts {
        let p = &p.as_bytes()[..p.len().min(buf.len() - n)];
        buf[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    n
}

fn write(
    status: StatusCode,
    fields: &[(&[u8], &[u8])],
    body: &[u8],
    reply: &Reply<'_>,
    out: &mut impl BufMut,
) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    if let Some(date) = reply.date.filter(|d| is_field_value(d.as_bytes())) {
        out.put_slice(b"Date: ");
        out.put_slice(date.as_bytes());
        out.put_slice(b"\r\n");
    }
    for (name, value) in fields {
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.put_slice(Decimal::new(body.len() as u64).as_bytes());
    out.put_slice(b"\r\n");
    if reply.close {
        out.put_slice(b"Connection: close\r\n");
    } else if reply.client_version == Version::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    if !reply.head_request {
        out.put_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::request_head::Parsed;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn request(s: &str) -> RequestHead {
        match RequestHead::parse(s.as_bytes(), &Limits::default()).unwrap() {
            Parsed::Complete { head, .. } => head,
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    /// Parses a canned response back with the strict response parser: every canned
    /// response must pass our own rules, with a body exactly Content-Length long.
    fn check_parses(s: &str) -> (u16, String) {
        let ex = request("GET / HTTP/1.1\r\nHost: a\r\n\r\n").exchange(false);
        match crate::ResponseHead::parse(s.as_bytes(), &ex, &Limits::default()).unwrap() {
            Parsed::Complete { head, consumed } => {
                let body = &s[consumed..];
                assert_eq!(head.body(), crate::BodyKind::Length(body.len() as u64));
                (head.status().as_u16(), body.to_string())
            }
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn errors_are_complete_and_closed() {
        for code in [400, 403, 404, 408, 413, 414, 431, 501, 502, 504, 505] {
            let status = StatusCode::from_u16(code).unwrap();
            let s = text(|o| error(status, &Reply::default(), o));
            assert!(s.contains("Connection: close\r\n"), "{s}");
            assert!(s.contains("Content-Type: text/plain"), "{s}");
            let (got, body) = check_parses(&s);
            assert_eq!(got, code);
            assert!(body.starts_with(&code.to_string()), "{body}");
        }
    }

    #[test]
    fn exact_bytes_of_a_404() {
        assert_eq!(
            text(|o| error(
                StatusCode::NOT_FOUND,
                &Reply {
                    close: false,
                    date: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                    ..Reply::default()
                },
                o
            )),
            "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n\
             404 Not Found\n"
        );
    }

    #[test]
    fn service_unavailable_says_why() {
        let s = text(|o| service_unavailable(Some(5), &Reply::default(), o));
        assert!(s.contains("Retry-After: 5\r\n"));
        assert_eq!(check_parses(&s), (503, "no server is available\n".into()));
    }

    #[test]
    fn too_many_requests_has_retry_after() {
        let s = text(|o| too_many_requests(30, &Reply::default(), o));
        assert!(s.contains("Retry-After: 30\r\n"));
        assert_eq!(check_parses(&s).0, 429);
    }

    #[test]
    fn head_request_gets_no_body() {
        let r = request("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let s = text(|o| error(StatusCode::NOT_FOUND, &Reply::for_request(&r, None), o));
        assert!(s.ends_with("Content-Length: 14\r\n\r\n"), "{s}");
    }

    #[test]
    fn http10_keep_alive() {
        let r = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let s = text(|o| error(StatusCode::NOT_FOUND, &Reply::for_request(&r, None), o));
        assert!(s.contains("Connection: keep-alive\r\n"), "{s}");
        let r = request("GET / HTTP/1.0\r\n\r\n");
        let s = text(|o| error(StatusCode::NOT_FOUND, &Reply::for_request(&r, None), o));
        assert!(s.contains("Connection: close\r\n"), "{s}");
    }

    #[test]
    fn for_error_always_closes() {
        let e = Error::new(Side::Request, Violation::ContentLengthAndTransferEncoding);
        let s = text(|o| {
            for_error(
                &e,
                &Reply {
                    close: false,
                    ..Reply::default()
                },
                o,
            )
        });
        assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(s.contains("Connection: close\r\n"));
    }

    #[test]
    fn https_redirect_omits_443() {
        let r = request("GET /a/b?c=d HTTP/1.1\r\nHost: Shop.Example:8080\r\n\r\n");
        let s = text(|o| {
            redirect_to_https(&r, 443, StatusCode::MOVED_PERMANENTLY, &Reply::default(), o).unwrap()
        });
        assert!(s.starts_with("HTTP/1.1 301 Moved Permanently\r\n"));
        assert!(
            s.contains("Location: https://shop.example/a/b?c=d\r\n"),
            "{s}"
        );
        assert_eq!(check_parses(&s), (301, String::new()));
        let s = text(|o| {
            redirect_to_https(
                &r,
                8443,
                StatusCode::PERMANENT_REDIRECT,
                &Reply::default(),
                o,
            )
            .unwrap()
        });
        assert!(
            s.contains("Location: https://shop.example:8443/a/b?c=d\r\n"),
            "{s}"
        );
    }

    #[test]
    fn https_redirect_of_ipv6_and_absolute_form() {
        let r = request("GET http://[2001:db8::1]:80 HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n");
        let s =
            text(|o| redirect_to_https(&r, 443, StatusCode::FOUND, &Reply::default(), o).unwrap());
        assert!(s.contains("Location: https://[2001:db8::1]/\r\n"), "{s}");
    }

    #[test]
    fn redirect_needs_a_host() {
        let r = request("GET / HTTP/1.0\r\n\r\n");
        let e = redirect_to_https(
            &r,
            443,
            StatusCode::FOUND,
            &Reply::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn redirect_refuses_injection() {
        let mut out = Vec::new();
        for (status, location) in [
            (StatusCode::FOUND, &b"/a\r\nSet-Cookie: x=y"[..]),
            (StatusCode::OK, b"/a"),
            (StatusCode::FOUND, b""),
        ] {
            assert!(redirect(status, location, &Reply::default(), &mut out).is_err());
        }
        assert!(out.is_empty());
        redirect(
            StatusCode::TEMPORARY_REDIRECT,
            b"/elsewhere",
            &Reply::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(check_parses(std::str::from_utf8(&out).unwrap()).0, 307);
    }
}
