//! One decoder for every way a body can be delimited, so the engine's body loop is the
//! same whatever the head said.

use crate::chunked::{ChunkedDecoder, Decoded};
use crate::error::{Error, Side, Violation};
use crate::framing::BodyKind;
use crate::limits::Limits;

#[derive(Debug)]
enum Inner {
    /// Nothing to read (or all of it read).
    Done,
    /// `Content-Length`: bytes left.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes; bytes seen so far, for the limit.
    UntilClose(u64),
    /// A tunnel: bytes are passed through, nothing is checked or counted.
    Tunnel,
}

/// Reads a body of any [`BodyKind`], sans-IO: give it what was received, it says what
/// was body and whether the body is complete. See [`ChunkedDecoder::decode`] for the
/// calling convention.
#[derive(Debug)]
pub struct BodyDecoder {
    side: Side,
    max_body: Option<u64>,
    inner: Inner,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind, side: Side, limits: &Limits) -> BodyDecoder {
        let inner = match kind {
            BodyKind::None | BodyKind::Length(0) => Inner::Done,
            BodyKind::Length(n) => Inner::Length(n),
            BodyKind::Chunked => Inner::Chunked(ChunkedDecoder::new(side, limits)),
            BodyKind::UntilClose => Inner::UntilClose(0),
            BodyKind::Tunnel => Inner::Tunnel,
        };
        BodyDecoder {
            side,
            max_body: limits.max_body_bytes,
            inner,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Done => true,
            Inner::Chunked(c) => c.is_done(),
            _ => false,
        }
    }

    /// Consumes the start of `input`; see [`Decoded`].
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, Error> {
        let all = |n: usize, done: bool| Decoded {
            consumed: n,
            data: 0..n,
            done,
        };
        match &mut self.inner {
            Inner::Done => Ok(all(0, true)),
            Inner::Length(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                *left -= n as u64;
                let done = *left == 0;
                if done {
                    self.inner = Inner::Done;
                }
                Ok(all(n, done))
            }
            Inner::Chunked(c) => c.decode(input),
            Inner::UntilClose(seen) => {
                *seen += input.len() as u64;
                if self.max_body.is_some_and(|max| *seen > max) {
                    return Err(Error::new(self.side, Violation::BodyTooLarge));
                }
                Ok(all(input.len(), false))
            }
            Inner::Tunnel => Ok(all(input.len(), false)),
        }
    }

    /// The peer closed its side. A close-delimited body (or tunnel) ends here; any other
    /// body that is not complete was truncated (RFC 9112 §8): the message is incomplete
    /// and must not be treated as whole (e.g. not cached, and a request not forwarded as
    /// complete).
    pub fn finish(&mut self) -> Result<(), Error> {
        match self.inner {
            Inner::Done | Inner::UntilClose(_) | Inner::Tunnel => {
                self.inner = Inner::Done;
                Ok(())
            }
            Inner::Chunked(ref c) if c.is_done() => Ok(()),
            _ => Err(Error::new(self.side, Violation::TruncatedBody)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn no_body_is_done_at_once() {
        let mut d = BodyDecoder::new(BodyKind::None, Side::Request, &limits());
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"GET / HTTP/1.1").unwrap(),
            Decoded {
                consumed: 0,
                data: 0..0,
                done: true
            }
        );
        let d = BodyDecoder::new(BodyKind::Length(0), Side::Request, &limits());
        assert!(d.is_done());
    }

    #[test]
    fn content_length_counts_down_and_stops_at_the_next_message() {
        let mut d = BodyDecoder::new(BodyKind::Length(5), Side::Request, &limits());
        assert_eq!(
            d.decode(b"abc").unwrap(),
            Decoded {
                consumed: 3,
                data: 0..3,
                done: false
            }
        );
        assert_eq!(
            d.decode(b"deGET").unwrap(),
            Decoded {
                consumed: 2,
                data: 0..2,
                done: true
            }
        );
        assert!(d.is_done());
        assert_eq!(d.decode(b"GET").unwrap().consumed, 0);
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let mut d = BodyDecoder::new(BodyKind::Length(5), Side::Response, &limits());
        d.decode(b"abc").unwrap();
        let e = d.finish().unwrap_err();
        assert_eq!(e.violation(), Violation::TruncatedBody);
        assert_eq!(e.status(), 502);
        let mut d = BodyDecoder::new(BodyKind::Chunked, Side::Response, &limits());
        d.decode(b"3\r\nabc").unwrap();
        assert!(d.finish().is_err());
        let mut d = BodyDecoder::new(BodyKind::Length(3), Side::Response, &limits());
        d.decode(b"abc").unwrap();
        assert!(d.finish().is_ok());
    }

    #[test]
    fn close_delimited_ends_at_close() {
        let mut d = BodyDecoder::new(BodyKind::UntilClose, Side::Response, &limits());
        assert_eq!(
            d.decode(b"abc").unwrap(),
            Decoded {
                consumed: 3,
                data: 0..3,
                done: false
            }
        );
        assert!(!d.is_done());
        d.finish().unwrap();
        assert!(d.is_done());
    }

    #[test]
    fn close_delimited_limit() {
        let l = Limits {
            max_body_bytes: Some(4),
            ..limits()
        };
        let mut d = BodyDecoder::new(BodyKind::UntilClose, Side::Response, &l);
        d.decode(b"abcd").unwrap();
        assert_eq!(
            d.decode(b"e").unwrap_err().violation(),
            Violation::BodyTooLarge
        );
    }
}
