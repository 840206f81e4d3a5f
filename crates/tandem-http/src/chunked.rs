//! The chunked transfer coding (RFC 9112 §7.1): a strict, incremental, zero-copy decoder,
//! and the pieces of an encoder.
//!
//! The decoder never copies: each call says how many input bytes it has validated
//! (`consumed`) and which of them are chunk data (`data`). An engine that forwards chunked
//! to chunked sends `input[..consumed]` verbatim (size lines, extensions and trailers
//! included, all validated); one that removes the coding sends only `input[data]`.

use std::ops::Range;

use bytes::BufMut;

use crate::error::{Error, Side, Violation};
use crate::grammar::{QDTEXT, TCHAR, VALUE, is_ows};
use crate::head::{HeadParser, Known, Progress, StartKind};
use crate::limits::Limits;

/// What one decoding step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes validated and done with. Drop them before the next call: the next
    /// call's input must start at `input[consumed..]`.
    pub consumed: usize,
    /// The part of `input[..consumed]` that is body data (empty when there is none).
    pub data: Range<usize>,
    /// The body is complete; `input[consumed..]` belongs to the next message.
    pub done: bool,
}

impl Decoded {
    /// Nothing could be done with the input: read more.
    pub fn needs_input(&self) -> bool {
        self.consumed == 0 && !self.done
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting `chunk-size [chunk-ext] CRLF`.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: `*( field-line CRLF ) CRLF`.
    Trailers,
    Done,
}

/// Chunk sizes are at most 16 hex digits (a `u64`), leading zeros included.
const MAX_SIZE_DIGITS: usize = 16;

/// Incremental validator and decoder of a chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    side: Side,
    state: State,
    total: u64,
    max_body: Option<u64>,
    max_ext: usize,
    max_trailer: usize,
    max_fields: usize,
    trailers: Option<HeadParser>,
}

impl ChunkedDecoder {
    /// `side` decides the status of errors (400/413 for requests, 502 for responses).
    pub fn new(side: Side, limits: &Limits) -> ChunkedDecoder {
        ChunkedDecoder {
            side,
            state: State::Size,
            total: 0,
            max_body: limits.max_body_bytes,
            max_ext: limits.max_chunk_ext_bytes,
            max_trailer: limits.trailer_bytes(),
            max_fields: limits.max_fields,
            trailers: None,
        }
    }

    /// Body data bytes seen so far (the sum of chunk sizes read).
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Validates the start of `input` and reports at most one stretch of data. Call in a
    /// loop, dropping `consumed` bytes each time, until `done`, or until
    /// [`Decoded::needs_input`] says to read more.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, Error> {
        self.step(input).map_err(|v| Error::new(self.side, v))
    }

    fn step(&mut self, input: &[u8]) -> Result<Decoded, Violation> {
        let mut pos = 0;
        let wait = |pos: usize| Decoded {
            consumed: pos,
            data: pos..pos,
            done: false,
        };
        loop {
            match self.state {
                State::Size => match size_line(&input[pos..], self.max_ext)? {
                    None => return Ok(wait(pos)),
                    Some((size, len)) => {
                        pos += len;
                        self.total = self
                            .total
                            .checked_add(size)
                            .ok_or(Violation::BodyTooLarge)?;
                        if self.max_body.is_some_and(|max| self.total > max) {
                            return Err(Violation::BodyTooLarge);
                        }
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::Data(size)
                        };
                    }
                },
                State::Data(left) => {
                    let avail = input.len() - pos;
                    if avail == 0 {
                        return Ok(wait(pos));
                    }
                    let n = left.min(avail as u64) as usize;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded {
                        consumed: pos + n,
                        data: pos..pos + n,
                        done: false,
                    });
                }
                // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF.
                State::DataEnd => match &input[pos..] {
                    [] | [b'\r'] => return Ok(wait(pos)),
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    _ => return Err(Violation::ChunkDataNotTerminated),
                },
                // RFC 9112 §7.1.2: trailer-section = *( field-line CRLF ), then CRLF. The
                // same parser as heads, so the same rules (no obs-fold, no bare CR/LF...).
                State::Trailers => {
                    let parser = self
                        .trailers
                        .get_or_insert_with(|| HeadParser::new(StartKind::Trailers));
                    let progress = parser
                        .parse(&input[pos..], self.max_trailer, self.max_fields)
                        .map_err(|v| match v {
                            Violation::HeadTooLarge => Violation::TrailersTooLarge,
                            v => v,
                        })?;
                    match progress {
                        Progress::Incomplete => return Ok(wait(pos)),
                        Progress::Done(n) => {
                            // RFC 9110 §6.5.1: framing and routing fields are not allowed
                            // in trailers; one that a server merged into the head would
                            // reframe the message after the fact.
                            if parser.fields.iter().any(|f| {
                                matches!(
                                    f.known,
                                    Known::ContentLength | Known::TransferEncoding | Known::Host
                                )
                            }) {
                                return Err(Violation::ForbiddenTrailer);
                            }
                            self.trailers = None;
                            self.state = State::Done;
                            pos += n;
                        }
                    }
                }
                State::Done => {
                    return Ok(Decoded {
                        consumed: pos,
                        data: pos..pos,
                        done: true,
                    });
                }
            }
        }
    }
}

fn hex_value(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'a'..=b'f' => u64::from(b - b'a' + 10),
        _ => u64::from(b - b'A' + 10),
    }
}

/// Parses `chunk-size [ chunk-ext ] CRLF` at the start of `b`: `Some((size, line length))`,
/// or `None` when the line is not complete yet (what is there is valid so far).
///
/// `chunk-size = 1*HEXDIG`, at most 16 digits. `chunk-ext = *( BWS ";" BWS chunk-ext-name
/// [ BWS "=" BWS chunk-ext-val ] )` with names tokens and values tokens or quoted
/// strings: whitespace is allowed only where that BWS is, so `5 \r\n` (trailing
/// whitespace) and ` 5` (leading) are refused.
fn size_line(input: &[u8], max_ext: usize) -> Result<Option<(u64, usize)>, Violation> {
    use Violation::*;
    let mut b = input;
    let mut i = 0;
    let mut size: u64 = 0;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_hexdigit() {
            break;
        }
        if i == MAX_SIZE_DIGITS {
            return Err(ChunkSizeTooLong);
        }
        size = (size << 4) | hex_value(c);
        i += 1;
    }
    let ext_start = i;
    // Only the bytes a line within the limit can have are looked at: running out of them
    // with more input there means the extension is too long. (Checking the length at a
    // few points instead would make the error depend on where the input was split.)
    let view_end = ext_start.saturating_add(max_ext).saturating_add(2);
    if b.len() > view_end {
        b = &b[..view_end];
    }
    let incomplete = |_: usize| {
        if input.len() > view_end {
            Err(ChunkExtensionTooLong)
        } else {
            Ok(None)
        }
    };
    if i == b.len() {
        return incomplete(i);
    }
    if i == 0 {
        return Err(if b[0] == b'\n' {
            BareLf
        } else {
            InvalidChunkSize
        });
    }
    // Skip BWS; return on running out of input.
    macro_rules! bws {
        () => {{
            let start = i;
            while b.get(i).is_some_and(|&c| is_ows(c)) {
                i += 1;
            }
            if i == b.len() {
                return incomplete(i);
            }
            i > start
        }};
    }
    // A run of bytes of `class`, at least one; return on running out of input.
    macro_rules! run {
        ($class:expr) => {{
            let start = i;
            while b.get(i).is_some_and(|&c| $class[c as usize]) {
                i += 1;
            }
            if i == b.len() {
                return incomplete(i);
            }
            if i == start {
                return Err(InvalidChunkExtension);
            }
        }};
    }
    let mut ws = bws!();
    let mut extensions = false;
    loop {
        match b[i] {
            b'\r' => {
                if ws {
                    return Err(InvalidChunkExtension);
                }
                return match b.get(i + 1) {
                    None => incomplete(i + 1),
                    // The view allows `max_ext + 1` bytes before CR LF: one too many.
                    Some(b'\n') if i - ext_start > max_ext => Err(ChunkExtensionTooLong),
                    Some(b'\n') => Ok(Some((size, i + 2))),
                    Some(_) => Err(BareCr),
                };
            }
            b'\n' => return Err(BareLf),
            b';' => {
                extensions = true;
                i += 1;
                let _ = bws!();
                run!(TCHAR);
                ws = bws!();
                if b[i] == b'=' {
                    i += 1;
                    let _ = bws!();
                    if b[i] == b'"' {
                        i += 1;
                        loop {
                            match b.get(i) {
                                None => return incomplete(i),
                                Some(b'"') => {
                                    i += 1;
                                    break;
                                }
                                Some(b'\\') => match b.get(i + 1) {
                                    None => return incomplete(i + 1),
                                    Some(&c) if VALUE[c as usize] => i += 2,
                                    Some(_) => return Err(InvalidChunkExtension),
                                },
                                Some(&c) if QDTEXT[c as usize] => i += 1,
                                Some(_) => return Err(InvalidChunkExtension),
                            }
                        }
                        if i == b.len() {
                            return incomplete(i);
                        }
                    } else {
                        run!(TCHAR);
                    }
                    ws = bws!();
                }
            }
            // "5x", "5 5": the size itself is malformed.
            _ if !extensions => return Err(InvalidChunkSize),
            _ => return Err(InvalidChunkExtension),
        }
    }
}

/// The `chunk-size CRLF` line for a chunk of `len` bytes, on the stack: write it, the
/// data, then [`CHUNK_END`] (three slices for one vectored write, no copy of the data).
#[derive(Clone, Copy, Debug)]
pub struct ChunkHeader {
    buf: [u8; MAX_SIZE_DIGITS + 2],
    start: u8,
}

impl ChunkHeader {
    /// `len` must not be 0: a zero-size chunk is the last chunk ([`LAST_CHUNK`]).
    pub fn new(len: u64) -> ChunkHeader {
        debug_assert!(len > 0, "a zero-size chunk ends the body");
        let mut buf = [0u8; MAX_SIZE_DIGITS + 2];
        let mut i = MAX_SIZE_DIGITS;
        buf[MAX_SIZE_DIGITS] = b'\r';
        buf[MAX_SIZE_DIGITS + 1] = b'\n';
        let mut n = len;
        loop {
            i -= 1;
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        ChunkHeader {
            buf,
            start: i as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start as usize..]
    }
}

/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends `data` as one chunk. Empty data writes nothing (it would end the body).
pub fn encode_chunk(data: &[u8], out: &mut impl BufMut) {
    if data.is_empty() {
        return;
    }
    out.put_slice(ChunkHeader::new(data.len() as u64).as_bytes());
    out.put_slice(data);
    out.put_slice(CHUNK_END);
}

#[cfg(test)]
mod tests;
