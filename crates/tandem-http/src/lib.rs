//! Strict HTTP/1.1 (RFC 9112) for a reverse proxy, sans-IO: no sockets, no runtime, no
//! clock. The engine reads bytes into a buffer, hands them here, and writes what this
//! crate says to write.
//!
//! - [`RequestReader`] / [`RequestHead::parse`]: request heads from clients, refused with
//!   a typed [`Error`] (400, 413, 414, 431, 501, 505) on anything two HTTP implementations
//!   could read differently.
//! - [`ResponseReader`] / [`ResponseHead::parse`]: response heads from servers, equally
//!   strict; every refusal is a 502 for the client.
//! - [`BodyDecoder`], [`ChunkedDecoder`]: body framing, incremental and zero-copy.
//! - [`write_request`], [`write_response`]: the heads to forward, with hop-by-hop fields
//!   dropped, framing regenerated, and `X-Forwarded-For`/`-Proto`/`Forwarded` set.
//! - [`canned`]: the proxy's own responses (errors, redirects, 503).
//!
//! The rules, with their RFC sections, are in `docs/http.md`.
//!
//! ```
//! use bytes::BytesMut;
//! use tandem_http::*;
//!
//! let limits = Limits::default();
//! let mut reader = RequestReader::new(limits.clone());
//! let mut client_buf = BytesMut::from(&b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"[..]);
//! let head = reader.read(&mut client_buf).unwrap().expect("complete head");
//!
//! let who = Forwarding::new("192.0.2.1".parse().unwrap(), Scheme::Http, false);
//! let mut to_server = BytesMut::new();
//! let rewrite = RequestRewrite {
//!     forwarding: &who, close: false, pass_upgrade: false, extra: &[], host_if_missing: None,
//! };
//! let exchange = write_request(&head, &rewrite, &mut to_server).unwrap();
//! assert!(to_server.starts_with(b"GET /a HTTP/1.1\r\nHost: example.com\r\n"));
//!
//! let mut server_buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"[..]);
//! let mut responses = ResponseReader::new(limits.clone());
//! let response = responses.read(&mut server_buf, &exchange).unwrap().unwrap();
//! let mut to_client = BytesMut::new();
//! let plan = write_response(
//!     &response,
//!     &exchange,
//!     &ResponseRewrite { keep_alive: head.keep_alive(), extra: &[] },
//!     &mut to_client,
//! ).unwrap();
//! assert_eq!(plan.body, BodyOut::Verbatim);
//! let mut body = BodyDecoder::new(response.body(), Side::Response, &limits);
//! let step = body.decode(&server_buf).unwrap();
//! assert!(step.done && &server_buf[step.data] == b"hi");
//! ```

#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod body;
pub mod canned;
mod chunked;
mod cookie;
mod error;
mod forwarded;
mod framing;
mod grammar;
mod head;
mod limits;
mod request_head;
mod response_head;
mod rewrite;
mod target;

pub use body::BodyDecoder;
pub use chunked::{CHUNK_END, ChunkHeader, ChunkedDecoder, Decoded, LAST_CHUNK, encode_chunk};
pub use error::{Error, Side, Violation};
pub use forwarded::{Forwarding, Scheme};
pub use framing::BodyKind;
pub use head::Version;
pub use limits::{Limits, MAX_HEAD_BYTES_CAP};
pub use request_head::{Exchange, Parsed, RequestHead, RequestReader};
pub use response_head::{ResponseHead, ResponseReader};
pub use rewrite::{
    BodyOut, RequestRewrite, ResponsePlan, ResponseRewrite, write_request, write_response,
};
pub use target::TargetForm;
