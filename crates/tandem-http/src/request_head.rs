//! Request heads from clients (RFC 9112 §3), with every check that decides whether the
//! request may be forwarded at all.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use http::Method;

use crate::cookie;
use crate::error::{Error, Side, Violation};
use crate::framing::{self, BodyKind};
use crate::grammar::{is_token, list_elements};
use crate::head::{Field, HeadParser, Known, Progress, StartKind, StartLine, Version};
use crate::limits::Limits;
use crate::target::{Target, TargetForm, parse_authority, parse_target};

/// The outcome of a one-shot parse.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A whole head: `consumed` bytes of the input; what follows is the body or the next
    /// pipelined message.
    Complete { head: T, consumed: usize },
    /// No blank line yet: call again with more bytes.
    Incomplete,
}

/// A validated request head. Owns its bytes (a zero-copy slice of the connection buffer
/// when read with [`RequestReader`]); everything else is offsets into them.
#[derive(Clone, Debug)]
pub struct RequestHead {
    bytes: Bytes,
    method: Method,
    start: StartLine,
    pub(crate) fields: Vec<Field>,
    target: Target,
    /// Host without port, as written: from the target in absolute-form, else from Host.
    host: Option<(u32, u32)>,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    websocket: bool,
    te_trailers: bool,
    /// Connection names fields other than close/keep-alive/upgrade: those must go too.
    pub(crate) connection_lists_fields: bool,
}

/// What the response to a request needs to know about it (RFC 9112 §6.3 depends on the
/// request method; 1xx forwarding on the client's version). Small and `Copy`: keep it
/// beside the server connection while the response is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub(crate) head_request: bool,
    pub(crate) connect: bool,
    pub(crate) upgrade: bool,
    pub(crate) client_version: Version,
    pub(crate) expect_continue: bool,
}

impl Exchange {
    /// The client's HTTP version.
    pub fn client_version(&self) -> Version {
        self.client_version
    }

    /// Whether an upgrade (WebSocket) was forwarded, so that a 101 is acceptable.
    pub fn upgrade(&self) -> bool {
        self.upgrade
    }
}

impl RequestHead {
    /// One-shot parse of a request head at the start of `buf`. Copies the head's bytes
    /// (a few hundred bytes, one allocation); [`RequestReader`] does not.
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed<RequestHead>, Error> {
        let mut parser = HeadParser::new(StartKind::Request);
        match parser
            .parse(buf, limits.head_bytes(), limits.max_fields)
            .map_err(request_error)?
        {
            Progress::Incomplete => Ok(Parsed::Incomplete),
            Progress::Done(n) => {
                let head =
                    RequestHead::from_parser(Bytes::copy_from_slice(&buf[..n]), parser, limits)
                        .map_err(request_error)?;
                Ok(Parsed::Complete { head, consumed: n })
            }
        }
    }

    fn from_parser(
        bytes: Bytes,
        parser: HeadParser,
        limits: &Limits,
    ) -> Result<RequestHead, Violation> {
        let HeadParser { start, fields, .. } = parser;
        let buf = &bytes[..];
        let method =
            Method::from_bytes(start.method.get(buf)).map_err(|_| Violation::InvalidMethod)?;
        let version = start.version.ok_or(Violation::MalformedVersion)?;
        let target_bytes = start.target.get(buf);
        let target = parse_target(
            target_bytes,
            method == Method::CONNECT,
            method == Method::OPTIONS,
            limits.allow_connect,
        )?;

        let mut host_field: Option<&Field> = None;
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut conn_upgrade = false;
        let mut connection_lists_fields = false;
        let mut expect_continue = false;
        let mut upgrade_websocket = false;
        let mut upgrade_fields = 0;
        let mut te_trailers = false;
        for f in &fields {
            match f.known {
                // RFC 9112 §3.2: more than one Host is a 400.
                Known::Host if host_field.is_some() => return Err(Violation::DuplicateHost),
                Known::Host => host_field = Some(f),
                Known::Connection => {
                    for option in list_elements(f.value.get(buf)) {
                        if !is_token(option) {
                            return Err(Violation::InvalidConnection);
                        }
                        if option.eq_ignore_ascii_case(b"close") {
                            conn_close = true;
                        } else if option.eq_ignore_ascii_case(b"keep-alive") {
                            conn_keep_alive = true;
                        } else if option.eq_ignore_ascii_case(b"upgrade") {
                            conn_upgrade = true;
                        } else {
                            connection_lists_fields = true;
                        }
                    }
                }
                // RFC 9110 §10.1.1: the only expectation is 100-continue; an HTTP/1.0
                // request's expectation MUST be ignored.
                Known::Expect => {
                    expect_continue |= version == Version::Http11
                        && f.value.get(buf).eq_ignore_ascii_case(b"100-continue");
                }
                Known::Upgrade => {
                    upgrade_fields += 1;
                    let mut protocols = list_elements(f.value.get(buf));
                    upgrade_websocket = protocols
                        .next()
                        .is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"))
                        && protocols.next().is_none();
                }
                Known::Te => {
                    te_trailers |= list_elements(f.value.get(buf))
                        .any(|e| e.eq_ignore_ascii_case(b"trailers"));
                }
                _ => {}
            }
        }

        // Host (RFC 9112 §3.2, RFC 9110 §7.2).
        let host_authority = match host_field {
            Some(f) => Some(parse_authority(f.value.get(buf)).ok_or(Violation::InvalidHost)?),
            None if version == Version::Http11 => return Err(Violation::MissingHost),
            None => None,
        };
        let mut host = host_authority.filter(|a| !a.host.is_empty()).map(|a| {
            let start = a.host.as_ptr() as usize - buf.as_ptr() as usize;
            (start as u32, (start + a.host.len()) as u32)
        });
        if target.form == TargetForm::Absolute || target.form == TargetForm::Authority {
            let t0 = start.target.start as usize;
            let authority_bytes = &target_bytes[target.authority.0..target.authority.1];
            let authority = parse_authority(authority_bytes).ok_or(Violation::InvalidTarget)?;
            if let Some(h) = host_authority {
                let same = match target.form {
                    TargetForm::Absolute => {
                        h.same_as(&authority, Some(if target.https { 443 } else { 80 }))
                    }
                    // CONNECT: the Host port, when given, must be the target's.
                    _ => {
                        h.host.eq_ignore_ascii_case(authority.host)
                            && h.port.is_none_or(|p| Some(p) == authority.port)
                    }
                };
                if !same {
                    return Err(Violation::HostMismatch);
                }
            }
            // RFC 9112 §3.2.2: the target's authority is the one that counts.
            let s = t0 + target.authority.0;
            host = Some((s as u32, (s + authority.host.len()) as u32));
        }

        let framing = framing::framing(buf, &fields, version)?;
        let body = framing::request_body(framing);
        if let (Some(max), Some(n)) = (limits.max_body_bytes, framing.content_length)
            && n > max
        {
            return Err(Violation::BodyTooLarge);
        }

        // RFC 9112 §9.3: close wins; 1.1 persists by default; 1.0 only with keep-alive.
        let keep_alive = !conn_close && (version == Version::Http11 || conn_keep_alive);
        // RFC 6455 §4.1: a WebSocket opening handshake is an HTTP/1.1 GET with
        // `Connection: upgrade` and `Upgrade: websocket`, and no body.
        let websocket = version == Version::Http11
            && conn_upgrade
            && upgrade_fields == 1
            && upgrade_websocket
            && method == Method::GET
            && body == BodyKind::None;

        Ok(RequestHead {
            method,
            start,
            target,
            host,
            body,
            keep_alive,
            expect_continue,
            websocket,
            te_trailers: te_trailers && version == Version::Http11,
            connection_lists_fields,
            fields,
            bytes,
        })
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's HTTP version.
    pub fn version(&self) -> Version {
        self.start.version.unwrap_or(Version::Http11)
    }

    /// The request-target as received.
    pub fn target(&self) -> &str {
        ascii(self.start.target.get(&self.bytes))
    }

    /// Which form the request-target has.
    pub fn target_form(&self) -> TargetForm {
        self.target.form
    }

    /// The request-target to send to a server: origin-form (path and query; `/` when an
    /// absolute-form target has neither), `*` for asterisk-form, the authority for CONNECT.
    pub fn forward_target(&self) -> Cow<'_, str> {
        let t = self.target();
        match self.target.form {
            TargetForm::Authority => Cow::Borrowed(t),
            _ => {
                let o = &t[self.target.origin.0..self.target.origin.1];
                if o.starts_with('/') || o == "*" {
                    Cow::Borrowed(o)
                } else {
                    Cow::Owned(format!("/{o}"))
                }
            }
        }
    }

    /// The path without the query: `/a/b` for `/a/b?c`. `/` for an absolute-form target
    /// without a path, `*` for asterisk-form, empty for CONNECT.
    pub fn path(&self) -> &str {
        let t = self.target();
        match self.target.form {
            TargetForm::Authority => "",
            _ => {
                let o = &t[self.target.origin.0..self.target.origin.1];
                let p = o.split_once('?').map_or(o, |(p, _)| p);
                if p.is_empty() { "/" } else { p }
            }
        }
    }

    /// The query, without the `?`.
    pub fn query(&self) -> Option<&str> {
        let t = self.target();
        match self.target.form {
            TargetForm::Origin | TargetForm::Absolute => t
                [self.target.origin.0..self.target.origin.1]
                .split_once('?')
                .map(|(_, q)| q),
            _ => None,
        }
    }

    /// The host the request is for, lowercased, without port (an IPv6 literal keeps its
    /// brackets). From the target in absolute-form (RFC 9112 §3.2.2), else from `Host`.
    /// `None` for an HTTP/1.0 request without Host, or an empty Host. Borrowed unless the
    /// client sent upper case.
    pub fn host(&self) -> Option<Cow<'_, str>> {
        let (s, e) = self.host?;
        let h = ascii(&self.bytes[s as usize..e as usize]);
        Some(if h.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(h.to_ascii_lowercase())
        } else {
            Cow::Borrowed(h)
        })
    }

    /// The `Host` field value as received (with port), if any.
    pub fn host_field(&self) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.known == Known::Host)
            .map(|f| f.value.get(&self.bytes))
    }

    /// The authority to name in `Host`/`Forwarded: host=`: the Host field, or for an
    /// absolute- or authority-form target without one (HTTP/1.0), the target's authority.
    pub(crate) fn authority(&self) -> Option<&[u8]> {
        self.host_field().filter(|h| !h.is_empty()).or_else(|| {
            matches!(
                self.target.form,
                TargetForm::Absolute | TargetForm::Authority
            )
            .then(|| {
                &self.start.target.get(&self.bytes)
                    [self.target.authority.0..self.target.authority.1]
            })
        })
    }

    /// The first field called `name` (ASCII case-insensitive), value without OWS.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| {
                f.name
                    .get(&self.bytes)
                    .eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|f| f.value.get(&self.bytes))
    }

    /// Every field called `name`, in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |f| {
                f.name
                    .get(&self.bytes)
                    .eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|f| f.value.get(&self.bytes))
    }

    /// Every field as `(name, value)`, in order, names as received.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields
            .iter()
            .map(|f| (ascii(f.name.get(&self.bytes)), f.value.get(&self.bytes)))
    }

    /// The value of the first cookie called `name` over all `Cookie` fields (RFC 6265).
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .filter(|f| f.known == Known::Cookie)
            .find_map(|f| cookie::find(f.value.get(&self.bytes), name.as_bytes()))
    }

    /// `Expect: 100-continue` in an HTTP/1.1 request (RFC 9110 §10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

    /// Whether the client wants the connection kept open after this exchange
    /// (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// How the body is delimited: [`BodyKind::None`], [`BodyKind::Length`] or
    /// [`BodyKind::Chunked`].
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// A WebSocket opening handshake that may be forwarded and tunnelled after a 101.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.websocket
    }

    /// `TE: trailers` from an HTTP/1.1 client.
    pub fn accepts_trailers(&self) -> bool {
        self.te_trailers
    }

    /// The head exactly as received (leading empty lines included).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What the response parser needs to know. `upgrade_forwarded` is whether the engine
    /// forwarded the WebSocket upgrade (see [`crate::RequestRewrite::pass_upgrade`]).
    pub fn exchange(&self, upgrade_forwarded: bool) -> Exchange {
        Exchange {
            head_request: self.method == Method::HEAD,
            connect: self.method == Method::CONNECT,
            upgrade: upgrade_forwarded && self.websocket,
            client_version: self.version(),
            expect_continue: self.expect_continue,
        }
    }

    pub(crate) fn buf(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn method_bytes(&self) -> &[u8] {
        self.start.method.get(&self.bytes)
    }
}

/// Bytes this crate has already checked to be ASCII (tokens, targets, hosts).
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

fn request_error(v: Violation) -> Error {
    Error::new(Side::Request, v)
}

/// Reads request heads from a connection's buffer, one after another.
///
/// Keeps its place between calls, so a head that arrives a byte at a time is scanned
/// once. On success the head's bytes are split off the front of the buffer without a copy;
/// the buffer then starts with the body (or the next pipelined request).
#[derive(Debug)]
pub struct RequestReader {
    parser: HeadParser,
    limits: Limits,
}

impl RequestReader {
    pub fn new(limits: Limits) -> RequestReader {
        RequestReader {
            parser: HeadParser::new(StartKind::Request),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `Ok(None)`: need more bytes (read, then call again with the same buffer, grown).
    /// `Ok(Some(head))`: the head was split off `buf`. `Err`: answer
    /// [`Error::status`] and close; the reader must not be used again.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Option<RequestHead>, Error> {
        match self
            .parser
            .parse(buf, self.limits.head_bytes(), self.limits.max_fields)
            .map_err(request_error)?
        {
            Progress::Incomplete => Ok(None),
            Progress::Done(n) => {
                let parser =
                    std::mem::replace(&mut self.parser, HeadParser::new(StartKind::Request));
                let bytes = buf.split_to(n).freeze();
                RequestHead::from_parser(bytes, parser, &self.limits)
                    .map(Some)
                    .map_err(request_error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
