//! Response heads from servers (RFC 9112 §4), held to the same rules as requests. Any
//! violation is an [`Error`] whose status is 502: the client gets a clean error, and the
//! server connection is closed, so a misbehaving server can never desynchronise the two.

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use crate::error::{Error, Side, Violation};
use crate::framing::{self, BodyKind};
use crate::grammar::{is_token, list_elements};
use crate::head::{Field, HeadParser, Known, Progress, StartKind, StartLine, Version};
use crate::limits::Limits;
use crate::request_head::{Exchange, Parsed};

/// A validated response head; owns its bytes, everything else is offsets into them.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    bytes: Bytes,
    status: StatusCode,
    start: StartLine,
    pub(crate) fields: Vec<Field>,
    body: BodyKind,
    keep_alive: bool,
    pub(crate) connection_lists_fields: bool,
    pub(crate) content_length: Option<u64>,
}

fn response_error(v: Violation) -> Error {
    Error::new(Side::Response, v)
}

impl ResponseHead {
    /// One-shot parse of a response head at the start of `buf`, for the request described
    /// by `exchange`. Copies the head's bytes; [`ResponseReader`] does not.
    pub fn parse(
        buf: &[u8],
        exchange: &Exchange,
        limits: &Limits,
    ) -> Result<Parsed<ResponseHead>, Error> {
        let mut parser = HeadParser::new(StartKind::Response);
        match parser
            .parse(buf, limits.head_bytes(), limits.max_fields)
            .map_err(response_error)?
        {
            Progress::Incomplete => Ok(Parsed::Incomplete),
            Progress::Done(n) => {
                let head = ResponseHead::from_parser(
                    Bytes::copy_from_slice(&buf[..n]),
                    parser,
                    exchange,
                    limits,
                )
                .map_err(response_error)?;
                Ok(Parsed::Complete { head, consumed: n })
            }
        }
    }

    fn from_parser(
        bytes: Bytes,
        parser: HeadParser,
        exchange: &Exchange,
        limits: &Limits,
    ) -> Result<ResponseHead, Violation> {
        let HeadParser { start, fields, .. } = parser;
        let buf = &bytes[..];
        let version = start.version.ok_or(Violation::MalformedVersion)?;
        // RFC 9110 §15: values outside 100..=599 are invalid; a client SHOULD treat them as
        // a 5xx, which for a proxy means a 502.
        if !(100..=599).contains(&start.status) {
            return Err(Violation::InvalidStatus);
        }
        let status = StatusCode::from_u16(start.status).map_err(|_| Violation::InvalidStatus)?;

        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut connection_lists_fields = false;
        let mut has_upgrade = false;
        for f in &fields {
            match f.known {
                Known::Connection => {
                    for option in list_elements(f.value.get(buf)) {
                        if !is_token(option) {
                            return Err(Violation::InvalidConnection);
                        }
                        if option.eq_ignore_ascii_case(b"close") {
                            conn_close = true;
                        } else if option.eq_ignore_ascii_case(b"keep-alive") {
                            conn_keep_alive = true;
                        } else if !option.eq_ignore_ascii_case(b"upgrade") {
                            connection_lists_fields = true;
                        }
                    }
                }
                Known::Upgrade => has_upgrade = true,
                _ => {}
            }
        }

        // Framing fields are validated whatever the status: a server that sends
        // conflicting ones is not trusted with the rest of the connection either.
        let framing = framing::framing(buf, &fields, version)?;
        if let (Some(max), Some(n)) = (limits.max_body_bytes, framing.content_length)
            && n > max
        {
            return Err(Violation::BodyTooLarge);
        }

        // RFC 9110 §15.2.2: a server MUST NOT switch to a protocol the client did not ask
        // for, and MUST send Upgrade with a 101.
        if start.status == 101 && !(exchange.upgrade && has_upgrade) {
            return Err(Violation::UnexpectedSwitchingProtocols);
        }

        let body = framing::response_body(
            framing,
            start.status,
            exchange.head_request,
            exchange.connect,
        );
        // RFC 9112 §9.3 for the server connection, plus: a close-delimited or tunnelled
        // body ends the connection.
        let keep_alive = !conn_close
            && (version == Version::Http11 || conn_keep_alive)
            && !matches!(body, BodyKind::UntilClose | BodyKind::Tunnel);

        Ok(ResponseHead {
            status,
            start,
            fields,
            body,
            keep_alive,
            connection_lists_fields,
            content_length: framing.content_length,
            bytes,
        })
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn version(&self) -> Version {
        self.start.version.unwrap_or(Version::Http11)
    }

    /// The reason phrase as received (may be empty; may hold obs-text).
    pub fn reason(&self) -> &[u8] {
        self.start.reason.get(&self.bytes)
    }

    /// A 1xx other than 101: another head follows for the same request.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }

    /// How the body is delimited (RFC 9112 §6.3).
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether the server connection may be reused after this response's body.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
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
        self.fields.iter().map(|f| {
            (
                std::str::from_utf8(f.name.get(&self.bytes)).unwrap_or_default(),
                f.value.get(&self.bytes),
            )
        })
    }

    /// The head exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn buf(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads response heads from a server connection's buffer; see
/// [`crate::RequestReader`] for the calling convention.
#[derive(Debug)]
pub struct ResponseReader {
    parser: HeadParser,
    limits: Limits,
}

impl ResponseReader {
    pub fn new(limits: Limits) -> ResponseReader {
        ResponseReader {
            parser: HeadParser::new(StartKind::Response),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// `Ok(None)`: need more bytes. `Ok(Some(head))`: split off `buf`; if
    /// [`ResponseHead::is_interim`], call again for the next head of the same exchange.
    /// `Err`: answer the client 502 and close both connections.
    pub fn read(
        &mut self,
        buf: &mut BytesMut,
        exchange: &Exchange,
    ) -> Result<Option<ResponseHead>, Error> {
        match self
            .parser
            .parse(buf, self.limits.head_bytes(), self.limits.max_fields)
            .map_err(response_error)?
        {
            Progress::Incomplete => Ok(None),
            Progress::Done(n) => {
                let parser =
                    std::mem::replace(&mut self.parser, HeadParser::new(StartKind::Response));
                let bytes = buf.split_to(n).freeze();
                ResponseHead::from_parser(bytes, parser, exchange, &self.limits)
                    .map(Some)
                    .map_err(response_error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_head::RequestHead;

    fn exchange(request: &str, upgrade: bool) -> Exchange {
        match RequestHead::parse(request.as_bytes(), &Limits::default()).unwrap() {
            Parsed::Complete { head, .. } => head.exchange(upgrade),
            Parsed::Incomplete => panic!("incomplete request"),
        }
    }

    fn get() -> Exchange {
        exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false)
    }

    fn parse(input: &str, ex: &Exchange) -> Result<ResponseHead, Error> {
        match ResponseHead::parse(input.as_bytes(), ex, &Limits::default())? {
            Parsed::Complete { head, consumed } => {
                assert_eq!(consumed, input.find("\r\n\r\n").unwrap() + 4);
                Ok(head)
            }
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    fn refused(input: &str) -> Violation {
        let e = parse(input, &get()).expect_err(input);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        e.violation()
    }

    #[test]
    fn content_length_response() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", &get()).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.reason(), b"OK");
        assert_eq!(r.body(), BodyKind::Length(12));
        assert!(r.keep_alive());
        assert!(!r.is_interim());
    }

    #[test]
    fn chunked_response() {
        let r = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &get(),
        )
        .unwrap();
        assert_eq!(r.body(), BodyKind::Chunked);
    }

    #[test]
    fn close_delimited_response() {
        let r = parse("HTTP/1.1 200 OK\r\n\r\n", &get()).unwrap();
        assert_eq!(r.body(), BodyKind::UntilClose);
        assert!(!r.keep_alive());
    }

    #[test]
    fn http10_server_closes_unless_keep_alive() {
        let r = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &get()).unwrap();
        assert!(!r.keep_alive());
        let r = parse(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
            &get(),
        )
        .unwrap();
        assert!(r.keep_alive());
        let r = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            &get(),
        )
        .unwrap();
        assert!(!r.keep_alive());
    }

    #[test]
    fn no_body_statuses() {
        for s in ["204 No Content", "304 Not Modified"] {
            let r = parse(
                &format!("HTTP/1.1 {s}\r\nContent-Length: 10\r\n\r\n"),
                &get(),
            )
            .unwrap();
            assert_eq!(r.body(), BodyKind::None, "{s}");
            assert!(r.keep_alive());
        }
    }

    #[test]
    fn head_response_has_no_body() {
        let ex = exchange("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", false);
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &ex).unwrap();
        assert_eq!(r.body(), BodyKind::None);
        let r = parse("HTTP/1.1 200 OK\r\n\r\n", &ex).unwrap();
        assert_eq!(r.body(), BodyKind::None);
        assert!(r.keep_alive());
    }

    #[test]
    fn interim_responses() {
        for s in ["100 Continue", "103 Early Hints", "102 Processing"] {
            let r = parse(&format!("HTTP/1.1 {s}\r\nLink: </a>\r\n\r\n"), &get()).unwrap();
            assert!(r.is_interim(), "{s}");
            assert_eq!(r.body(), BodyKind::None);
        }
    }

    #[test]
    fn pipelined_interim_then_final() {
        let input =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        let mut buf = BytesMut::from(&input[..]);
        let mut reader = ResponseReader::new(Limits::default());
        let first = reader.read(&mut buf, &get()).unwrap().unwrap();
        assert!(first.is_interim());
        let second = reader.read(&mut buf, &get()).unwrap().unwrap();
        assert_eq!(second.status(), 201);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn switching_protocols_needs_an_upgrade_request() {
        let ws =
            "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let resp =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let r = parse(resp, &exchange(ws, true)).unwrap();
        assert_eq!(r.body(), BodyKind::Tunnel);
        assert!(!r.is_interim());
        assert_eq!(
            parse(resp, &exchange(ws, false)).unwrap_err().violation(),
            Violation::UnexpectedSwitchingProtocols
        );
        assert_eq!(refused(resp), Violation::UnexpectedSwitchingProtocols);
        assert_eq!(
            parse(
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                &exchange(ws, true)
            )
            .unwrap_err()
            .violation(),
            Violation::UnexpectedSwitchingProtocols
        );
    }

    #[test]
    fn connect_success_is_a_tunnel() {
        let limits = Limits {
            allow_connect: true,
            ..Limits::default()
        };
        let Parsed::Complete { head, .. } = RequestHead::parse(
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            &limits,
        )
        .unwrap() else {
            panic!()
        };
        let ex = head.exchange(false);
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\n\r\n", &ex).unwrap().body(),
            BodyKind::Tunnel
        );
        assert_eq!(
            parse("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &ex)
                .unwrap()
                .body(),
            BodyKind::Length(0)
        );
    }

    #[test]
    fn content_length_and_transfer_encoding_refused() {
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Violation::ContentLengthAndTransferEncoding
        );
    }

    #[test]
    fn bad_content_length_refused() {
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nContent-Length: 3a\r\n\r\n"),
            Violation::InvalidContentLength
        );
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Violation::DifferentContentLengths
        );
    }

    #[test]
    fn transfer_encoding_not_chunked_refused() {
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Violation::ChunkedNotFinal
        );
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Violation::UnsupportedTransferCoding
        );
        assert_eq!(
            refused("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Violation::TransferEncodingInHttp10
        );
    }

    #[test]
    fn obs_fold_refused() {
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n"),
            Violation::ObsFold
        );
    }

    #[test]
    fn whitespace_before_colon_refused() {
        assert_eq!(
            refused("HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
            Violation::WhitespaceBeforeColon
        );
    }

    #[test]
    fn bad_status_lines_refused() {
        assert_eq!(refused("HTTP/1.1 099 X\r\n\r\n"), Violation::InvalidStatus);
        assert_eq!(refused("HTTP/1.1 600 X\r\n\r\n"), Violation::InvalidStatus);
        assert_eq!(
            refused("HTTP/1.1 2OO OK\r\n\r\n"),
            Violation::MalformedStatusLine
        );
        assert_eq!(refused("HTTP/1.1 200 OK\n\n"), Violation::BareLf);
        assert_eq!(
            refused("\r\nHTTP/1.1 200 OK\r\n\r\n"),
            Violation::MalformedStatusLine
        );
        assert_eq!(
            refused("HTTP/1.2 200 OK\r\n\r\n"),
            Violation::UnsupportedVersion
        );
    }

    #[test]
    fn response_body_limit() {
        let limits = Limits {
            max_body_bytes: Some(10),
            ..Limits::default()
        };
        let e = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            &get(),
            &limits,
        )
        .unwrap_err();
        assert_eq!(e.violation(), Violation::BodyTooLarge);
        assert_eq!(e.status(), 502);
    }
}
