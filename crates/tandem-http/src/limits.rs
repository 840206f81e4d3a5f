//! Bounds on what is read: every buffer this crate asks the engine to hold is bounded here.

/// Size and count limits, and the few policy switches that change what is accepted.
///
/// The engine usually keeps two: one for requests from clients and one for responses from
/// servers (whose heads are often larger: `Set-Cookie`, `Content-Security-Policy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head, from the first byte (leading empty lines included) through the blank
    /// line. Larger: 431 for a request (414 when the request line alone does not fit), 502
    /// for a response. Capped at 1 MiB.
    pub max_head_bytes: usize,
    /// Most field lines in a head, and in a trailer section. More: 431 / 502.
    pub max_fields: usize,
    /// Largest body (Content-Length, sum of chunk sizes, or close-delimited bytes).
    /// Larger: 413 for a request, 502 for a response. `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// Longest chunk extension (everything between the chunk size and its CRLF).
    pub max_chunk_ext_bytes: usize,
    /// Largest trailer section (field lines and the final CRLF).
    pub max_trailer_bytes: usize,
    /// Accept `CONNECT host:port` (authority-form). Off by default: 501.
    pub allow_connect: bool,
}

/// The largest value accepted for [`Limits::max_head_bytes`]; field offsets are `u32`, and
/// no sane head is near this.
pub const MAX_HEAD_BYTES_CAP: usize = 1 << 20;

impl Default for Limits {
    /// 16 KiB heads (HAProxy's default buffer is 16 KiB; nginx's largest default header
    /// buffer 8 KiB), 100 fields (HAProxy: 101), no body limit, 1 KiB of chunk extensions,
    /// 16 KiB of trailers, CONNECT refused.
    fn default() -> Limits {
        Limits {
            max_head_bytes: 16 * 1024,
            max_fields: 100,
            max_body_bytes: None,
            max_chunk_ext_bytes: 1024,
            max_trailer_bytes: 16 * 1024,
            allow_connect: false,
        }
    }
}

impl Limits {
    pub(crate) fn head_bytes(&self) -> usize {
        self.max_head_bytes.min(MAX_HEAD_BYTES_CAP)
    }

    pub(crate) fn trailer_bytes(&self) -> usize {
        self.max_trailer_bytes.min(MAX_HEAD_BYTES_CAP)
    }
}
