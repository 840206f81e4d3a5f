//! The heads this proxy sends: a request towards a server, a response towards a client.
//!
//! Field lines that are kept are copied verbatim, in order, in runs (one copy per run of
//! kept lines, not per field). The framing fields (`Content-Length`,
//! `Transfer-Encoding`), the connection-scoped fields and the forwarding fields are never
//! copied: this proxy writes its own, canonical ones, so that whatever spelling a client
//! used (`Transfer-Encoding:\tChunked`, `Content-Length: 005`) the server reads exactly
//! what this proxy read.
//!
//! Hop-by-hop fields dropped in both directions (RFC 9110 §7.6.1): `Connection` and every
//! field it names (except `Host`), `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade`
//! (unless a WebSocket upgrade is passed through), `HTTP2-Settings`.

use bytes::BufMut;
use http::StatusCode;

use crate::error::{Error, Side, Violation};
use crate::forwarded::Forwarding;
use crate::framing::BodyKind;
use crate::grammar::{Decimal, is_field_value, is_token, list_elements};
use crate::head::{Field, Known, Version};
use crate::request_head::{Exchange, RequestHead};
use crate::response_head::ResponseHead;
use crate::target::parse_authority;

/// How to forward a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestRewrite<'a> {
    /// The client connection, for the forwarding fields.
    pub forwarding: &'a Forwarding,
    /// Send `Connection: close`: the server connection will not be reused.
    pub close: bool,
    /// Forward a WebSocket upgrade ([`RequestHead::is_websocket_upgrade`]) so that the
    /// connection can become a tunnel after a 101. When false, `Upgrade` is dropped and the
    /// server answers the plain request.
    pub pass_upgrade: bool,
    /// Fields to add, `(name, value)`. Names must be tokens and values valid field values.
    pub extra: &'a [(&'a str, &'a [u8])],
    /// `Host` to send for an HTTP/1.0 request that has none (HTTP/1.1 requires one, RFC
    /// 9112 §3.2), e.g. the server's `address:port`. `None`: an empty `Host`, which is what
    /// RFC 9112 §3.2 prescribes when the target has no authority.
    pub host_if_missing: Option<&'a str>,
}

/// Writes the head to send to the server for `head`, and returns what the response parser
/// will need to know about it.
///
/// Always `HTTP/1.1`; an absolute-form target becomes origin-form (a `Host` from the
/// target is added when the client, HTTP/1.0, sent none).
pub fn write_request(
    head: &RequestHead,
    rw: &RequestRewrite<'_>,
    out: &mut impl BufMut,
) -> Result<Exchange, Error> {
    check_extra(rw.extra, Side::Request)?;
    if rw
        .host_if_missing
        .is_some_and(|h| parse_authority(h.as_bytes()).is_none())
    {
        return Err(Error::new(Side::Request, Violation::InvalidExtraField));
    }
    let buf = head.buf();
    let upgrade = rw.pass_upgrade && head.is_websocket_upgrade();

    out.put_slice(head.method_bytes());
    out.put_u8(b' ');
    out.put_slice(head.forward_target().as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if head.host_field().is_none() {
        let host = head
            .authority()
            .or(rw.host_if_missing.map(str::as_bytes))
            .unwrap_or_default();
        put_field(out, b"Host", host);
    }

    let connection = head.connection_lists_fields.then_some(&head.fields[..]);
    copy_fields(buf, &head.fields, connection, out, |known| match known {
        Known::Host | Known::Other | Known::Cookie | Known::Expect | Known::Trailer => true,
        Known::Upgrade => upgrade,
        _ => false,
    });

    match head.body() {
        BodyKind::Length(n) => put_field(out, b"Content-Length", Decimal::new(n).as_bytes()),
        BodyKind::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    let values = |known| {
        head.fields
            .iter()
            .filter(move |f| f.known == known)
            .map(|f| f.value.get(buf))
    };
    let f = rw.forwarding;
    f.write_xff(values(Known::XForwardedFor), out);
    f.write_xfp(values(Known::XForwardedProto).next(), out);
    f.write_forwarded(values(Known::Forwarded), head.authority(), out);
    if upgrade {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if rw.close {
        out.put_slice(b"Connection: close\r\n");
    }
    // The proxy relays trailers when both sides speak chunked; say so if the client did.
    if head.accepts_trailers() {
        out.put_slice(b"TE: trailers\r\n");
    }
    put_extra(rw.extra, out);
    out.put_slice(b"\r\n");
    Ok(head.exchange(upgrade))
}

/// How to send a response on to the client.
#[derive(Clone, Copy, Debug)]
pub struct ResponseRewrite<'a> {
    /// The engine means to keep the client connection open: normally
    /// [`RequestHead::keep_alive`] and its own policy (not draining, under the request
    /// limit). The rewrite may still decide to close (see [`ResponsePlan::close`]).
    pub keep_alive: bool,
    /// Fields to add to a final response, e.g. `("Set-Cookie", b"SRV=web2; Path=/")`.
    pub extra: &'a [(&'a str, &'a [u8])],
}

/// How the engine sends the body after the head [`write_response`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyOut {
    /// No body.
    None,
    /// Send what the body decoder consumed, verbatim (`input[..consumed]`): the framing
    /// is unchanged (`Content-Length` to `Content-Length`, chunked to chunked, or
    /// close-delimited to close-delimited).
    Verbatim,
    /// Send only the data ranges (`input[data]`): chunked from the server, close-delimited
    /// to an HTTP/1.0 client, which cannot read chunked (RFC 9112 §7: no chunked to 1.0).
    Dechunk,
    /// Send each data range as a chunk ([`crate::encode_chunk`]), then
    /// [`crate::LAST_CHUNK`] when the server closes: a close-delimited response re-framed
    /// so the client connection can stay open.
    Chunk,
    /// The connection is a tunnel from now on: copy bytes both ways.
    Tunnel,
}

/// What [`write_response`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponsePlan {
    /// Whether a head was written: false for a 1xx not to be passed on (to an HTTP/1.0
    /// client, RFC 9110 §15.2).
    pub send: bool,
    pub body: BodyOut,
    /// Close the client connection after this response.
    pub close: bool,
}

/// Writes the head to send to the client for the server's `head`.
///
/// Always `HTTP/1.1` (RFC 9110 §2.5: a server sends its own version; the framing is what
/// the client's version allows). The server's reason phrase is kept, or the canonical one
/// when it is empty.
pub fn write_response(
    head: &ResponseHead,
    exchange: &Exchange,
    rw: &ResponseRewrite<'_>,
    out: &mut impl BufMut,
) -> Result<ResponsePlan, Error> {
    check_extra(rw.extra, Side::Response)?;
    let buf = head.buf();
    let client11 = exchange.client_version == Version::Http11;
    let status = head.status();
    let connection = head.connection_lists_fields.then_some(&head.fields[..]);

    if head.is_interim() {
        // RFC 9110 §15.2: a proxy MUST forward 1xx responses, but MUST NOT send one to an
        // HTTP/1.0 client.
        if !client11 {
            return Ok(ResponsePlan {
                send: false,
                body: BodyOut::None,
                close: false,
            });
        }
        put_status_line(head, out);
        copy_fields(buf, &head.fields, connection, out, |k| {
            matches!(k, Known::Other | Known::Cookie | Known::Trailer)
        });
        out.put_slice(b"\r\n");
        return Ok(ResponsePlan {
            send: true,
            body: BodyOut::None,
            close: false,
        });
    }

    let mut close = !rw.keep_alive;
    let (framing, body): (Option<&[u8]>, BodyOut) = match head.body() {
        BodyKind::None => (None, BodyOut::None),
        BodyKind::Length(_) => (None, BodyOut::Verbatim),
        BodyKind::Chunked if client11 => {
            (Some(b"Transfer-Encoding: chunked\r\n"), BodyOut::Verbatim)
        }
        BodyKind::Chunked => {
            close = true;
            (None, BodyOut::Dechunk)
        }
        BodyKind::UntilClose if client11 && !close => {
            (Some(b"Transfer-Encoding: chunked\r\n"), BodyOut::Chunk)
        }
        BodyKind::UntilClose => {
            close = true;
            (None, BodyOut::Verbatim)
        }
        BodyKind::Tunnel => (None, BodyOut::Tunnel),
    };
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;

    put_status_line(head, out);
    copy_fields(buf, &head.fields, connection, out, |k| match k {
        Known::Other | Known::Cookie | Known::Host | Known::Expect | Known::Forwarded => true,
        Known::XForwardedFor | Known::XForwardedProto => true,
        // Trailers are lost when the coding is removed; do not announce them.
        Known::Trailer => body != BodyOut::Dechunk,
        Known::Upgrade => switching,
        _ => false,
    });
    // Content-Length is kept when it describes the body, and as metadata on a HEAD or
    // 304 response (RFC 9110 §8.6); never on 1xx/204 or a 2xx to CONNECT.
    if let Some(n) = head.content_length
        && (body == BodyOut::Verbatim
            || (body == BodyOut::None && status != StatusCode::NO_CONTENT))
    {
        put_field(out, b"Content-Length", Decimal::new(n).as_bytes());
    }
    if let Some(line) = framing {
        out.put_slice(line);
    }
    if switching {
        out.put_slice(b"Connection: upgrade\r\n");
    } else if body != BodyOut::Tunnel {
        if close {
            out.put_slice(b"Connection: close\r\n");
        } else if !client11 {
            // RFC 9112 §9.3: an HTTP/1.0 client closes unless told keep-alive.
            out.put_slice(b"Connection: keep-alive\r\n");
        }
    }
    put_extra(rw.extra, out);
    out.put_slice(b"\r\n");
    Ok(ResponsePlan {
        send: true,
        body,
        close,
    })
}

fn put_status_line(head: &ResponseHead, out: &mut impl BufMut) {
    let status = head.status();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    let reason = head.reason();
    if reason.is_empty() {
        out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    } else {
        out.put_slice(reason);
    }
    out.put_slice(b"\r\n");
}

fn put_field(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Whether a `Connection` field of `fields` names `name`.
fn listed_in_connection(buf: &[u8], fields: &[Field], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| f.known == Known::Connection)
        .any(|f| list_elements(f.value.get(buf)).any(|e| e.eq_ignore_ascii_case(name)))
}

/// Copies the lines of the fields that `keep` keeps, verbatim, coalescing runs of
/// adjacent kept lines into one copy. `connection`: the fields to look for `Connection`
/// options in, when those name fields to drop (RFC 9110 §7.6.1); `Host` is never dropped
/// that way.
fn copy_fields(
    buf: &[u8],
    fields: &[Field],
    connection: Option<&[Field]>,
    out: &mut impl BufMut,
    keep: impl Fn(Known) -> bool,
) {
    let mut run: Option<(usize, usize)> = None;
    for f in fields {
        // `Connection: upgrade` names Upgrade, whose fate `keep` decides.
        let kept = keep(f.known)
            && (matches!(f.known, Known::Host | Known::Upgrade)
                || !connection.is_some_and(|c| listed_in_connection(buf, c, f.name.get(buf))));
        let (start, end) = (f.name.start as usize, f.line_end as usize);
        run = match (kept, run) {
            (true, Some((s, e))) if e == start => Some((s, end)),
            (true, prev) => {
                if let Some((s, e)) = prev {
                    out.put_slice(&buf[s..e]);
                }
                Some((start, end))
            }
            (false, prev) => {
                if let Some((s, e)) = prev {
                    out.put_slice(&buf[s..e]);
                }
                None
            }
        };
    }
    if let Some((s, e)) = run {
        out.put_slice(&buf[s..e]);
    }
}

fn check_extra(extra: &[(&str, &[u8])], side: Side) -> Result<(), Error> {
    for (name, value) in extra {
        if !is_token(name.as_bytes()) || !is_field_value(value) {
            return Err(Error::new(side, Violation::InvalidExtraField));
        }
    }
    Ok(())
}

fn put_extra(extra: &[(&str, &[u8])], out: &mut impl BufMut) {
    for (name, value) in extra {
        put_field(out, name.as_bytes(), value);
    }
}

#[cfg(test)]
mod tests;
