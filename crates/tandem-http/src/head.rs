//! The head of a message (RFC 9112 §2.1): start line, field lines, blank line.
//!
//! One pass over the bytes, no copy: the result is offsets into the caller's buffer. The
//! parser is resumable: when the bytes arrive in pieces it keeps its place, so a head fed
//! one byte at a time costs the same as a head fed at once (no rescans, no quadratic
//! slow-loris cost). Each byte is checked once against the grammar, and the first
//! violation is reported at the byte where it is seen, whether or not the line is complete.

use crate::error::Violation;
use crate::grammar::{TARGET, TCHAR, VALUE, is_ows};

/// A byte range of the head. `u32` keeps [`Field`] small; heads are capped at 1 MiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// HTTP version of a message. Only 1.0 and 1.1 exist on the wire here (RFC 9112 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// RFC 9112 §2.3: `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`, case-sensitive.
fn version(s: &[u8]) -> Result<Version, Violation> {
    match s {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Violation::UnsupportedVersion)
        }
        _ => Err(Violation::MalformedVersion),
    }
}

/// Field names this crate acts on, recognised once while parsing so that the checks and
/// the rewriters never compare names again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Http2Settings,
    XForwardedFor,
    XForwardedProto,
    Forwarded,
    Expect,
    Cookie,
    /// `Content_Length`, `Transfer_Encoding`: not the framing fields, but read as them by
    /// servers that map `_` to `-` (CGI-style environments). Refused.
    FramingLookalike,
}

pub(crate) fn classify(name: &[u8]) -> Known {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Known::Te,
        4 if is("host") => Known::Host,
        6 if is("cookie") => Known::Cookie,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::Trailer,
        9 if is("forwarded") => Known::Forwarded,
        10 if is("connection") => Known::Connection,
        10 if is("keep-alive") => Known::KeepAlive,
        14 if is("content-length") => Known::ContentLength,
        14 if is("http2-settings") => Known::Http2Settings,
        15 if is("x-forwarded-for") => Known::XForwardedFor,
        16 if is("proxy-connection") => Known::ProxyConnection,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        17 if is("x-forwarded-proto") => Known::XForwardedProto,
        14 | 17 if name.contains(&b'_') && lookalike(name) => Known::FramingLookalike,
        _ => Known::Other,
    }
}

/// Equal to `content-length` or `transfer-encoding` once `_` is read as `-`.
fn lookalike(name: &[u8]) -> bool {
    let dashed = |target: &[u8]| {
        name.len() == target.len()
            && name.iter().zip(target).all(|(&a, &b)| {
                (if a == b'_' {
                    b'-'
                } else {
                    a.to_ascii_lowercase()
                }) == b
            })
    };
    dashed(b"content-length") || dashed(b"transfer-encoding")
}

/// One field line: `field-name ":" OWS field-value OWS CRLF` (RFC 9112 §5).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) name: Span,
    /// Without the surrounding OWS.
    pub(crate) value: Span,
    /// Just past the line's LF: `name.start..line_end` is the whole line, verbatim.
    pub(crate) line_end: u32,
    pub(crate) known: Known,
}

/// Which start line precedes the fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartKind {
    Request,
    Response,
    /// A trailer section (RFC 9112 §7.1.2): field lines and a blank line, nothing before.
    Trailers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Leading,
    LeadingLf,
    Method,
    Target,
    RequestVersion,
    ResponseVersion,
    Status,
    Reason,
    StartLf,
    LineStart,
    Name,
    Ows,
    Value,
    FieldLf,
    FinalLf,
}

/// What the start line held (the parts that do not apply stay at their defaults).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StartLine {
    pub(crate) method: Span,
    pub(crate) target: Span,
    pub(crate) version: Option<Version>,
    pub(crate) status: u16,
    pub(crate) reason: Span,
}

pub(crate) enum Progress {
    Incomplete,
    /// The head is complete; it is this many bytes long.
    Done(usize),
}

/// Resumable head parser. Feed it the same buffer, grown, until it reports `Done`.
#[derive(Debug)]
pub(crate) struct HeadParser {
    kind: StartKind,
    state: State,
    pos: usize,
    mark: usize,
    name: Span,
    value: Span,
    pub(crate) start: StartLine,
    pub(crate) fields: Vec<Field>,
}

/// First index at or after `p` whose byte is not in `class`, or `b.len()`.
#[inline]
fn scan(b: &[u8], p: usize, class: &[bool; 256]) -> usize {
    match b[p..].iter().position(|&c| !class[c as usize]) {
        Some(i) => p + i,
        None => b.len(),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `x` is below `n` (n ≤ 0x80). Exact as an "any" test; which bytes
/// are flagged may be off because of borrows, so callers only use it to leave a fast path.
#[inline]
fn any_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0
}

#[inline]
fn any_equal(x: u64, b: u8) -> bool {
    any_below(x ^ (ONES * u64::from(b)), 1)
}

/// [`scan`] for field values, eight bytes at a time while none of them can end the value
/// (a control, which includes CR and HTAB, or DEL): values are most of a head's bytes.
#[inline]
fn scan_value(b: &[u8], mut p: usize) -> usize {
    while let Some(word) = b.get(p..p + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if any_below(x, 0x20) || any_equal(x, 0x7f) {
            break;
        }
        p += 8;
    }
    scan(b, p, &VALUE)
}

/// [`scan`] for request targets: eight bytes at a time while all are `!`..`~` and not `#`.
#[inline]
fn scan_target(b: &[u8], mut p: usize) -> usize {
    while let Some(word) = b.get(p..p + 8) {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // A byte of 0x7f or more has its high bit set, or gets it when one is added.
        if any_below(x, 0x21) || (x | x.wrapping_add(ONES)) & HIGHS != 0 || any_equal(x, b'#') {
            break;
        }
        p += 8;
    }
    scan(b, p, &TARGET)
}

impl HeadParser {
    pub(crate) fn new(kind: StartKind) -> HeadParser {
        HeadParser {
            kind,
            state: match kind {
                StartKind::Request => State::Leading,
                StartKind::Response => State::ResponseVersion,
                StartKind::Trailers => State::LineStart,
            },
            pos: 0,
            mark: 0,
            name: Span::default(),
            value: Span::default(),
            start: StartLine::default(),
            fields: Vec::new(),
        }
    }

    /// Parse `buf`, which must start with the bytes given to earlier calls (grown, never
    /// changed). At most `max_bytes` bytes may make up the head.
    pub(crate) fn parse(
        &mut self,
        buf: &[u8],
        max_bytes: usize,
        max_fields: usize,
    ) -> Result<Progress, Violation> {
        let b = &buf[..buf.len().min(max_bytes)];
        match self.run(b, max_fields)? {
            Some(len) => Ok(Progress::Done(len)),
            None if buf.len() > max_bytes => Err(match self.state {
                State::Method | State::Target | State::RequestVersion => {
                    Violation::RequestLineTooLong
                }
                _ => Violation::HeadTooLarge,
            }),
            None => Ok(Progress::Incomplete),
        }
    }

    /// Runs the state machine until the head is complete (`Some(length)`), the input runs
    /// out (`None`), or a violation.
    fn run(&mut self, b: &[u8], max_fields: usize) -> Result<Option<usize>, Violation> {
        use Violation::*;
        let mut pos = self.pos;
        // On running out of input, remember where we are and ask for more.
        macro_rules! next {
            () => {
                match b.get(pos) {
                    Some(&c) => c,
                    None => {
                        self.pos = pos;
                        return Ok(None);
                    }
                }
            };
        }
        loop {
            match self.state {
                // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
                // received prior to the request-line. Bare LF is refused here as
                // everywhere.
                State::Leading => match next!() {
                    b'\r' => {
                        pos += 1;
                        self.state = State::LeadingLf;
                    }
                    b'\n' => return Err(BareLf),
                    _ => {
                        self.mark = pos;
                        self.state = State::Method;
                    }
                },
                State::LeadingLf => {
                    if next!() != b'\n' {
                        return Err(BareCr);
                    }
                    pos += 1;
                    self.state = State::Leading;
                }
                // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
                // Exactly one SP between parts: the "MAY parse on whitespace-delimited
                // word boundaries" leniency is not taken.
                State::Method => {
                    pos = scan(b, pos, &TCHAR);
                    match next!() {
                        b' ' if pos > self.mark => {
                            self.start.method = Span::new(self.mark, pos);
                            pos += 1;
                            self.mark = pos;
                            self.state = State::Target;
                        }
                        b' ' | b'\r' | b'\n' => return Err(MalformedRequestLine),
                        _ => return Err(InvalidMethod),
                    }
                }
                State::Target => {
                    pos = scan_target(b, pos);
                    match next!() {
                        b' ' if pos > self.mark => {
                            self.start.target = Span::new(self.mark, pos);
                            pos += 1;
                            self.mark = pos;
                            self.state = State::RequestVersion;
                        }
                        b'#' => return Err(FragmentInTarget),
                        // A missing version (HTTP/0.9) or a doubled SP.
                        b' ' | b'\r' | b'\n' => return Err(MalformedRequestLine),
                        _ => return Err(InvalidTarget),
                    }
                }
                State::RequestVersion => {
                    loop {
                        match next!() {
                            b'\r' => break,
                            b'\n' => return Err(BareLf),
                            _ if pos - self.mark >= 8 => return Err(MalformedVersion),
                            _ => pos += 1,
                        }
                    }
                    self.start.version = Some(version(&b[self.mark..pos])?);
                    pos += 1;
                    self.state = State::StartLf;
                }
                // RFC 9112 §4: status-line = HTTP-version SP status-code SP [reason-phrase].
                State::ResponseVersion => {
                    loop {
                        match next!() {
                            b' ' => break,
                            b'\n' => return Err(BareLf),
                            b'\r' => return Err(MalformedStatusLine),
                            _ if pos - self.mark >= 8 => return Err(MalformedVersion),
                            _ => pos += 1,
                        }
                    }
                    self.start.version = Some(version(&b[self.mark..pos])?);
                    pos += 1;
                    self.mark = pos;
                    self.state = State::Status;
                }
                State::Status => {
                    while pos - self.mark < 3 {
                        if !next!().is_ascii_digit() {
                            return Err(MalformedStatusLine);
                        }
                        pos += 1;
                    }
                    let c = next!();
                    if c != b' ' && c != b'\r' {
                        return Err(MalformedStatusLine);
                    }
                    let d = &b[self.mark..pos];
                    self.start.status = d.iter().fold(0u16, |n, &c| n * 10 + u16::from(c - b'0'));
                    // "HTTP/1.1 200\r\n" lacks the SP the grammar requires before an
                    // empty reason; it is harmless for framing and common, so accepted.
                    if c == b' ' {
                        pos += 1;
                    }
                    self.mark = pos;
                    self.state = State::Reason;
                }
                State::Reason => {
                    pos = scan(b, pos, &VALUE);
                    match next!() {
                        b'\r' => {
                            self.start.reason = Span::new(self.mark, pos);
                            pos += 1;
                            self.state = State::StartLf;
                        }
                        b'\n' => return Err(BareLf),
                        _ => return Err(MalformedStatusLine),
                    }
                }
                State::StartLf => {
                    if next!() != b'\n' {
                        return Err(BareCr);
                    }
                    pos += 1;
                    self.state = State::LineStart;
                }
                State::LineStart => match next!() {
                    b'\r' => {
                        pos += 1;
                        self.state = State::FinalLf;
                    }
                    b'\n' => return Err(BareLf),
                    // RFC 9112 §5.2: obs-fold is refused with 400 (a server MUST either
                    // reject or replace it; rejecting leaves nothing to disagree on).
                    // RFC 9112 §2.2: whitespace before the first field is refused too.
                    b' ' | b'\t' => {
                        return Err(
                            if self.fields.is_empty() && self.kind != StartKind::Trailers {
                                WhitespaceAfterStartLine
                            } else {
                                ObsFold
                            },
                        );
                    }
                    b':' => return Err(EmptyFieldName),
                    _ => {
                        self.mark = pos;
                        self.state = State::Name;
                    }
                },
                State::Name => {
                    pos = scan(b, pos, &TCHAR);
                    match next!() {
                        b':' => {
                            self.name = Span::new(self.mark, pos);
                            pos += 1;
                            self.state = State::Ows;
                        }
                        // RFC 9112 §5.1: "A server MUST reject, with a response status
                        // code of 400 (Bad Request), any received request message that
                        // contains whitespace between a header field name and colon."
                        b' ' | b'\t' => return Err(WhitespaceBeforeColon),
                        b'\r' => return Err(MissingColon),
                        b'\n' => return Err(BareLf),
                        _ => return Err(InvalidFieldName),
                    }
                }
                State::Ows => {
                    while is_ows(next!()) {
                        pos += 1;
                    }
                    self.mark = pos;
                    self.state = State::Value;
                }
                State::Value => {
                    pos = scan_value(b, pos);
                    match next!() {
                        b'\r' => {
                            let mut end = pos;
                            while end > self.mark && is_ows(b[end - 1]) {
                                end -= 1;
                            }
                            self.value = Span::new(self.mark, end);
                            pos += 1;
                            self.state = State::FieldLf;
                        }
                        b'\n' => return Err(BareLf),
                        // NUL, DEL and controls other than HTAB (RFC 9110 §5.5).
                        _ => return Err(InvalidFieldValue),
                    }
                }
                State::FieldLf => {
                    if next!() != b'\n' {
                        return Err(BareCr);
                    }
                    pos += 1;
                    if self.fields.len() >= max_fields {
                        return Err(TooManyFields);
                    }
                    if self.fields.capacity() == 0 {
                        // One allocation per head: browsers send 10–20 fields.
                        self.fields.reserve(max_fields.min(24));
                    }
                    self.fields.push(Field {
                        name: self.name,
                        value: self.value,
                        line_end: pos as u32,
                        known: classify(self.name.get(b)),
                    });
                    self.state = State::LineStart;
                }
                State::FinalLf => {
                    if next!() != b'\n' {
                        return Err(BareCr);
                    }
                    pos += 1;
                    self.pos = pos;
                    return Ok(Some(pos));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: StartKind, input: &[u8]) -> Result<Option<(HeadParser, usize)>, Violation> {
        let mut p = HeadParser::new(kind);
        match p.parse(input, 1 << 16, 100)? {
            Progress::Done(n) => Ok(Some((p, n))),
            Progress::Incomplete => Ok(None),
        }
    }

    #[test]
    fn fields_are_offsets_without_ows() {
        let input = b"GET / HTTP/1.1\r\nHost:  a.example \t\r\nX-Empty:\r\n\r\nrest";
        let (p, n) = parse(StartKind::Request, input).unwrap().unwrap();
        assert_eq!(n, input.len() - 4);
        assert_eq!(p.start.method.get(input), b"GET");
        assert_eq!(p.start.target.get(input), b"/");
        assert_eq!(p.start.version, Some(Version::Http11));
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[0].name.get(input), b"Host");
        assert_eq!(p.fields[0].value.get(input), b"a.example");
        assert_eq!(p.fields[0].known, Known::Host);
        assert_eq!(
            &input[p.fields[0].name.start as usize..p.fields[0].line_end as usize],
            b"Host:  a.example \t\r\n"
        );
        assert_eq!(p.fields[1].value.get(input), b"");
    }

    #[test]
    fn resumes_at_every_split() {
        let input = b"\r\nPOST /a?b HTTP/1.0\r\nA: 1\r\nBb:  2 2 \r\n\r\n";
        let (whole, n) = parse(StartKind::Request, input).unwrap().unwrap();
        for split in 0..input.len() {
            let mut p = HeadParser::new(StartKind::Request);
            assert!(matches!(
                p.parse(&input[..split], 1 << 16, 100),
                Ok(Progress::Incomplete)
            ));
            let Ok(Progress::Done(m)) = p.parse(input, 1 << 16, 100) else {
                panic!("split {split}")
            };
            assert_eq!(m, n);
            assert_eq!(p.fields.len(), whole.fields.len());
            for (a, b) in p.fields.iter().zip(&whole.fields) {
                assert_eq!((a.name, a.value, a.line_end), (b.name, b.value, b.line_end));
            }
        }
    }

    #[test]
    fn status_line() {
        let input = b"HTTP/1.1 404 Not Found\r\n\r\n";
        let (p, _) = parse(StartKind::Response, input).unwrap().unwrap();
        assert_eq!(p.start.status, 404);
        assert_eq!(p.start.reason.get(input), b"Not Found");
        let input = b"HTTP/1.0 200\r\n\r\n";
        let (p, _) = parse(StartKind::Response, input).unwrap().unwrap();
        assert_eq!((p.start.status, p.start.reason.get(input).len()), (200, 0));
        assert_eq!(p.start.version, Some(Version::Http10));
    }

    #[test]
    fn bad_status_lines() {
        for input in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 O\x00K\r\n\r\n",
        ] {
            assert_eq!(
                parse(StartKind::Response, input).err(),
                Some(Violation::MalformedStatusLine),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse(StartKind::Response, b"HTTP/2.0 200 OK\r\n\r\n").err(),
            Some(Violation::UnsupportedVersion)
        );
        assert_eq!(
            parse(StartKind::Response, b"ICY 200 OK\r\n\r\n").err(),
            Some(Violation::MalformedVersion)
        );
    }

    #[test]
    fn trailers_start_with_fields() {
        let input = b"Checksum: abc\r\n\r\n";
        let (p, n) = parse(StartKind::Trailers, input).unwrap().unwrap();
        assert_eq!(n, input.len());
        assert_eq!(p.fields[0].value.get(input), b"abc");
        assert_eq!(parse(StartKind::Trailers, b"\r\n").unwrap().unwrap().1, 2);
        assert_eq!(
            parse(StartKind::Trailers, b" a: b\r\n\r\n").err(),
            Some(Violation::ObsFold)
        );
    }

    #[test]
    fn limit_counts_from_the_first_byte() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut p = HeadParser::new(StartKind::Request);
        assert!(matches!(
            p.parse(input, input.len(), 100),
            Ok(Progress::Done(_))
        ));
        let mut p = HeadParser::new(StartKind::Request);
        assert_eq!(
            p.parse(input, input.len() - 1, 100).err(),
            Some(Violation::HeadTooLarge)
        );
        let mut p = HeadParser::new(StartKind::Request);
        assert_eq!(
            p.parse(input, 5, 100).err(),
            Some(Violation::RequestLineTooLong)
        );
        // Exactly at the limit and incomplete: wait for more, it may be the last byte.
        let mut p = HeadParser::new(StartKind::Request);
        assert!(matches!(
            p.parse(&input[..10], 10, 100),
            Ok(Progress::Incomplete)
        ));
    }

    #[test]
    fn field_count_limit() {
        let input = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        let mut p = HeadParser::new(StartKind::Request);
        assert!(matches!(p.parse(input, 1000, 2), Ok(Progress::Done(_))));
        let mut p = HeadParser::new(StartKind::Request);
        assert_eq!(
            p.parse(input, 1000, 1).err(),
            Some(Violation::TooManyFields)
        );
    }

    #[test]
    fn word_scans_agree_with_byte_scans() {
        // Every byte value at every position of a 24-byte run, against the plain table scan.
        for bad in 0..=255u8 {
            for at in 0..24 {
                let mut v = vec![b'a'; 24];
                v[at] = bad;
                assert_eq!(
                    scan_value(&v, 0),
                    scan(&v, 0, &VALUE),
                    "value {bad:#x} at {at}"
                );
                assert_eq!(
                    scan_target(&v, 0),
                    scan(&v, 0, &TARGET),
                    "target {bad:#x} at {at}"
                );
                let mut w = vec![0x80u8; 24];
                w[at] = bad;
                assert_eq!(
                    scan_value(&w, 0),
                    scan(&w, 0, &VALUE),
                    "value {bad:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn classifies_names_case_insensitively() {
        assert_eq!(classify(b"TRANSFER-ENCODING"), Known::TransferEncoding);
        assert_eq!(classify(b"content-length"), Known::ContentLength);
        assert_eq!(classify(b"Te"), Known::Te);
        assert_eq!(classify(b"X-Forwarded-Proto"), Known::XForwardedProto);
        assert_eq!(classify(b"Transfer-Encodinh"), Known::Other);
        assert_eq!(classify(b"Content-Lengths"), Known::Other);
        assert_eq!(classify(b"Content_Length"), Known::FramingLookalike);
        assert_eq!(classify(b"transfer_encoding"), Known::FramingLookalike);
        assert_eq!(classify(b"Transfer_Encodinh"), Known::Other);
        assert_eq!(classify(b"X_Forwarded_For"), Known::Other);
    }
}
