//! Why a message is refused, and what to answer.
//!
//! Every refusal closes the connection it was read from: after a framing error nothing
//! that follows on that connection can be trusted to start a new message (RFC 9112 §6.3,
//! "the server MUST respond with a 400 (Bad Request) status code and then close the
//! connection"). A refused server response also means the server connection is closed,
//! never returned to the pool.

use http::StatusCode;

/// Which way the refused message was travelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// From a client: the answer is a 4xx/5xx to that client.
    Request,
    /// From a server: the client gets a 502, never the server's bytes.
    Response,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// What is wrong with a message. The `Display` text is short and fit for a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    // Line structure (RFC 9112 §2.2).
    BareLf,
    BareCr,
    HeadTooLarge,
    RequestLineTooLong,
    TooManyFields,

    // Start line (RFC 9112 §3, §4).
    MalformedRequestLine,
    InvalidMethod,
    InvalidTarget,
    FragmentInTarget,
    AsteriskNotOptions,
    AuthorityNotConnect,
    ConnectWithoutAuthority,
    ConnectNotAllowed,
    UnsupportedScheme,
    UserinfoInTarget,
    MalformedVersion,
    UnsupportedVersion,
    MalformedStatusLine,
    InvalidStatus,

    // Field lines (RFC 9112 §5, RFC 9110 §5).
    ObsFold,
    WhitespaceAfterStartLine,
    WhitespaceBeforeColon,
    EmptyFieldName,
    InvalidFieldName,
    MissingColon,
    InvalidFieldValue,

    // Host (RFC 9112 §3.2, RFC 9110 §7.2).
    MissingHost,
    DuplicateHost,
    InvalidHost,
    HostMismatch,

    // Framing (RFC 9112 §6).
    ContentLengthAndTransferEncoding,
    InvalidContentLength,
    DifferentContentLengths,
    FramingLookalike,
    ChunkedNotFinal,
    ChunkedTwice,
    InvalidTransferEncoding,
    UnsupportedTransferCoding,
    TransferEncodingInHttp10,
    InvalidConnection,
    BodyTooLarge,
    UnexpectedSwitchingProtocols,

    // Chunked coding (RFC 9112 §7.1).
    InvalidChunkSize,
    ChunkSizeTooLong,
    InvalidChunkExtension,
    ChunkExtensionTooLong,
    ChunkDataNotTerminated,
    TrailersTooLarge,
    ForbiddenTrailer,
    TruncatedBody,

    // Caller input to the rewriters and canned responses.
    InvalidExtraField,
}

impl Violation {
    /// The status a client is answered when its request has this violation.
    fn request_status(self) -> StatusCode {
        use Violation::*;
        match self {
            HeadTooLarge | TooManyFields | TrailersTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            RequestLineTooLong => StatusCode::URI_TOO_LONG,
            UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            // RFC 9112 §6.1: "A server that receives a request message with a transfer
            // coding it does not understand SHOULD respond with 501 (Not Implemented)."
            UnsupportedTransferCoding | ConnectNotAllowed => StatusCode::NOT_IMPLEMENTED,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidExtraField => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A refused message: what is wrong, which way it was going, and the status to answer.
///
/// The connection the message came from must be closed after the answer is sent (see the
/// module documentation); [`Error::status`] is what to answer the *client* with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{}: {violation}", side.as_str())]
pub struct Error {
    side: Side,
    violation: Violation,
}

impl Error {
    pub(crate) fn new(side: Side, violation: Violation) -> Error {
        Error { side, violation }
    }

    /// What is wrong.
    pub fn violation(&self) -> Violation {
        self.violation
    }

    /// Which way the message was travelling.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The status to answer the client with: per rule for a request, 502 for anything a
    /// server sent (and 500 for bad input from the caller).
    pub fn status(&self) -> StatusCode {
        match (self.side, self.violation) {
            (_, Violation::InvalidExtraField) => StatusCode::INTERNAL_SERVER_ERROR,
            (Side::Request, v) => v.request_status(),
            (Side::Response, _) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Short reason for a log line, e.g. "both Content-Length and Transfer-Encoding".
    pub fn reason(&self) -> &'static str {
        self.violation.as_str()
    }
}

impl Violation {
    /// Short reason for a log line.
    pub fn as_str(self) -> &'static str {
        use Violation::*;
        match self {
            BareLf => "bare LF without CR",
            BareCr => "bare CR not followed by LF",
            HeadTooLarge => "head larger than the limit",
            RequestLineTooLong => "request line longer than the limit",
            TooManyFields => "too many header fields",
            MalformedRequestLine => "malformed request line",
            InvalidMethod => "method is not a token",
            InvalidTarget => "invalid byte in request target",
            FragmentInTarget => "fragment (#) in request target",
            AsteriskNotOptions => "asterisk-form target with a method other than OPTIONS",
            AuthorityNotConnect => "authority-form target without CONNECT",
            ConnectWithoutAuthority => "CONNECT without an authority-form target",
            ConnectNotAllowed => "CONNECT is not allowed",
            UnsupportedScheme => "absolute-form target with a scheme other than http or https",
            UserinfoInTarget => "userinfo in request target",
            MalformedVersion => "malformed HTTP version",
            UnsupportedVersion => "HTTP version not supported",
            MalformedStatusLine => "malformed status line",
            InvalidStatus => "status code outside 100..=599",
            ObsFold => "obsolete line folding",
            WhitespaceAfterStartLine => "whitespace between the start line and the first field",
            WhitespaceBeforeColon => "whitespace between field name and colon",
            EmptyFieldName => "empty field name",
            InvalidFieldName => "invalid byte in field name",
            MissingColon => "field line without a colon",
            InvalidFieldValue => "invalid byte in field value",
            MissingHost => "missing Host in an HTTP/1.1 request",
            DuplicateHost => "more than one Host field",
            InvalidHost => "malformed Host",
            HostMismatch => "Host disagrees with the absolute-form target",
            ContentLengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            InvalidContentLength => "malformed Content-Length",
            DifferentContentLengths => "differing Content-Length values",
            FramingLookalike => "field name like Content-Length or Transfer-Encoding with '_'",
            ChunkedNotFinal => "Transfer-Encoding does not end in chunked",
            ChunkedTwice => "chunked applied more than once",
            InvalidTransferEncoding => "malformed Transfer-Encoding",
            UnsupportedTransferCoding => "transfer coding other than chunked",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            InvalidConnection => "malformed Connection",
            BodyTooLarge => "body larger than the limit",
            UnexpectedSwitchingProtocols => "101 Switching Protocols without an upgrade request",
            InvalidChunkSize => "malformed chunk size",
            ChunkSizeTooLong => "chunk size too long",
            InvalidChunkExtension => "malformed chunk extension",
            ChunkExtensionTooLong => "chunk extension longer than the limit",
            ChunkDataNotTerminated => "chunk data not followed by CRLF",
            TrailersTooLarge => "trailer section larger than the limit",
            ForbiddenTrailer => "framing or routing field in trailers",
            TruncatedBody => "connection closed before the end of the body",
            InvalidExtraField => "invalid field supplied by the caller",
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_statuses() {
        let s = |v| Error::new(Side::Request, v).status().as_u16();
        assert_eq!(s(Violation::ContentLengthAndTransferEncoding), 400);
        assert_eq!(s(Violation::HeadTooLarge), 431);
        assert_eq!(s(Violation::TooManyFields), 431);
        assert_eq!(s(Violation::RequestLineTooLong), 414);
        assert_eq!(s(Violation::UnsupportedTransferCoding), 501);
        assert_eq!(s(Violation::ConnectNotAllowed), 501);
        assert_eq!(s(Violation::UnsupportedVersion), 505);
        assert_eq!(s(Violation::BodyTooLarge), 413);
    }

    #[test]
    fn every_response_violation_is_502() {
        for v in [
            Violation::ContentLengthAndTransferEncoding,
            Violation::HeadTooLarge,
            Violation::UnsupportedVersion,
            Violation::BodyTooLarge,
        ] {
            assert_eq!(Error::new(Side::Response, v).status().as_u16(), 502);
        }
    }

    #[test]
    fn log_line() {
        let e = Error::new(Side::Request, Violation::ContentLengthAndTransferEncoding);
        assert_eq!(
            e.to_string(),
            "request: both Content-Length and Transfer-Encoding"
        );
    }
}
