//! What crosses the sync link, byte for byte (`docs/sync.md`, "Frames").
//!
//! ```text
//! frame  = length:u32 big-endian (1 ..= MAX_FRAME)  body
//! body   = "TSYN" min:u16 max:u16 postcard(Hello)   the first frame each way
//!        | postcard(Frame)                           every later frame, in the negotiated schema
//! ```
//!
//! The types here are the wire format: postcard writes struct fields in order and enum
//! variants by index, with no names. So these types are our own (never another crate's serde
//! layout, which could change under us and be misread), fields are never reordered, and new
//! variants go at the end of an enum in a new schema version, sent only to a peer that
//! negotiated it. The hello's layout is frozen for good: it is read before the schema is known
//! (it grows only through `extensions`).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The sync schema this firmware writes (N). It also speaks N-1 (see [`Speaks`]).
///
/// 1. The first.
/// 2. Adds `HandoverAsk` and `HandoverAnswer`.
pub const SCHEMA: u16 = 2;

/// The first schema with `HandoverAsk` and `HandoverAnswer`.
pub const SCHEMA_HANDOVER: u16 = 2;

/// The first bytes of every hello: a peer that is not a Tandem sync link is refused at once.
pub const MAGIC: [u8; 4] = *b"TSYN";

/// The largest frame accepted or sent (a config version with many inline certificates fits).
pub const MAX_FRAME: usize = 32 << 20;

/// Bytes before a frame's body.
pub const HEADER_LEN: usize = 4;

/// The schema versions a box speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speaks {
    pub min: u16,
    pub max: u16,
}

impl Speaks {
    /// A box at schema `n` speaks `n` and `n - 1` (schema 0 never existed).
    pub fn at(n: u16) -> Speaks {
        Speaks {
            min: n.saturating_sub(1).max(1),
            max: n,
        }
    }

    /// The newest schema both speak, or why there is none.
    pub fn negotiate(self, peer: Speaks) -> Result<u16, VersionMismatch> {
        let v = self.max.min(peer.max);
        if peer.min > peer.max || v < self.min || v < peer.min {
            return Err(VersionMismatch { ours: self, peer });
        }
        Ok(v)
    }
}

impl std::fmt::Display for Speaks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.max)
        } else {
            write!(f, "{} and {}", self.min, self.max)
        }
    }
}

/// Two boxes without a common schema: neither reads the other's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the peer speaks sync schema {peer}, this box {ours}: no common version; {}",
    self.advice()
)]
pub struct VersionMismatch {
    pub ours: Speaks,
    pub peer: Speaks,
}

impl VersionMismatch {
    fn advice(&self) -> &'static str {
        if self.peer.min > self.ours.max {
            "the peer runs newer firmware: upgrade this box (boxes more than one release apart cannot sync)"
        } else {
            "the peer runs older firmware: upgrade the peer (boxes more than one release apart cannot sync)"
        }
    }
}

/// Why bytes from the peer are not a frame. The connection is dropped and the event counted.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("the peer's first frame is not a Tandem sync hello")]
    BadMagic,
    #[error("undecodable frame: {0}")]
    Body(#[from] postcard::Error),
    #[error("frame has {0} bytes after its end")]
    Trailing(usize),
}

/// A box's role, as the peer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRole {
    Active,
    Passive,
}

/// A config version's identity (mirrors `tandem_config::store::VersionId`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireVersionId {
    pub epoch: u64,
    pub n: u64,
    pub hash: String,
}

/// A config version's meta (mirrors `tandem_config::store::VersionMeta`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireVersionMeta {
    pub id: WireVersionId,
    pub parent: Option<WireVersionId>,
    /// By the committing box's clock: part of the record, never used for timing.
    pub committed_at: u64,
    pub author: String,
    pub reason: String,
    pub node: String,
}

/// How far a box has an origin's audit entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMark {
    pub origin: String,
    pub n: u64,
}

/// An optional hello field added after schema 1: skipped by a box that does not know `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub kind: u16,
    pub data: Vec<u8>,
}

/// The first frame each way (after the magic and the schema range). Frozen layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The box's name (`node.name`).
    pub node: String,
    /// Its management listener, so the passive can name the active box in a refusal.
    pub management: String,
    pub role: WireRole,
    /// Random per start of the daemon: a changed value means the peer restarted.
    pub instance: u64,
    /// The config version it runs.
    pub running: Option<WireVersionId>,
    /// Every version it stores (what a writer need not send).
    pub versions: Vec<WireVersionId>,
    /// The highest config epoch it has seen (a new writer starts above it).
    pub max_epoch: u64,
    /// How far it has each origin's audit entries.
    pub audit: Vec<AuditMark>,
    pub extensions: Vec<Extension>,
}

/// A server's health as the dataplane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireHealth {
    Unchecked,
    Up,
    Down,
}

/// A server's admin state from the config or the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireAdmin {
    Enabled,
    Drain,
    Disabled,
}

/// One session-ticket key with its remaining times.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTicketKey {
    pub id: [u8; 16],
    pub secret: [u8; 32],
    /// Milliseconds before it stops encrypting (0 for a previous key).
    pub current_for_ms: u64,
    /// Milliseconds before it stops decrypting.
    pub accepted_for_ms: u64,
}

impl std::fmt::Debug for WireTicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireTicketKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

/// One row of a replicated table: the full new value of its key (never a difference), so
/// installing it twice, or over a snapshot that already has it, is harmless. Times are
/// *remaining* lifetimes in milliseconds, never a clock reading: the boxes' clocks may differ.
///
/// New tables (the L4 fast path's connection entries) are new variants at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<'a> {
    PersistenceInsert {
        service: &'a str,
        client: IpAddr,
        pool: &'a str,
        server: &'a str,
        remaining_ms: u64,
    },
    PersistenceRefresh {
        service: &'a str,
        client: IpAddr,
        pool: &'a str,
        server: &'a str,
        remaining_ms: u64,
    },
    PersistenceExpire {
        service: &'a str,
        client: IpAddr,
    },
    ServerHealth {
        pool: &'a str,
        server: &'a str,
        health: WireHealth,
    },
    ServerAdmin {
        pool: &'a str,
        server: &'a str,
        state: WireAdmin,
    },
    TicketKeys {
        keys: Vec<WireTicketKey>,
        rotation_ms: u64,
        lifetime_ms: u64,
    },
}

/// An entry of the audit log (see [`crate::audit`]). Its layout is part of the wire format.
pub use crate::audit::AuditEntry;

/// Every frame after the hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame<'a> {
    /// Nothing else to say: the link is alive.
    Heartbeat,
    /// The sender's role changed.
    Role(WireRole),
    /// Writer: a snapshot of the tables follows, consistent with the writer's stream at
    /// `base_seq`; deltas after it start at `base_seq + 1`.
    SnapshotBegin {
        snapshot: u64,
        base_seq: u64,
        entries: u64,
    },
    SnapshotChunk {
        snapshot: u64,
        #[serde(borrow)]
        records: Vec<Record<'a>>,
    },
    SnapshotEnd {
        snapshot: u64,
    },
    /// Writer: changes `first_seq`, `first_seq + 1`, … in order.
    Deltas {
        first_seq: u64,
        #[serde(borrow)]
        records: Vec<Record<'a>>,
    },
    /// Reader: everything up to `seq` of `snapshot`'s stream is installed.
    Ack {
        snapshot: u64,
        seq: u64,
    },
    /// Reader: a delta is missing (`expected` was due): send a new snapshot.
    Resync {
        expected: u64,
    },
    /// Writer: the version it runs, and every version it stores (`oldest_n`: the lowest `n`
    /// among them; older history was pruned, not lost to a partition).
    ConfigHead {
        head: WireVersionId,
        known: Vec<WireVersionId>,
        oldest_n: u64,
    },
    /// Writer: a version the reader lacks, with its canonical text.
    ConfigVersion {
        meta: WireVersionMeta,
        text: &'a str,
    },
    /// Reader: the version it runs now.
    ConfigRunning {
        id: Option<WireVersionId>,
    },
    /// Reader: versions it committed that lost to the writer's history (kept, flagged).
    BranchKept {
        superseded_by: WireVersionId,
        #[serde(borrow)]
        versions: Vec<(WireVersionMeta, &'a str)>,
    },
    /// Either side: audit entries the other lacks.
    Audit {
        entries: Vec<AuditEntry>,
    },
    /// The sender closes the link, with why.
    Close {
        reason: String,
    },
    /// Schema 2. The passive box asks the active one to hand the pair over to it, as
    /// `tandemctl failover` on the active box would (the console's failover drill hands back
    /// this way). Answered by `HandoverAnswer` with the same `id`.
    HandoverAsk {
        id: u64,
        /// Why, for the active box's log and audit trail.
        reason: String,
    },
    /// Schema 2. The active box's answer: `refused` says why it did not hand over.
    HandoverAnswer {
        id: u64,
        refused: Option<String>,
    },
}

impl Frame<'_> {
    /// The frame's name, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Heartbeat => "heartbeat",
            Frame::Role(_) => "role",
            Frame::SnapshotBegin { .. } => "snapshot_begin",
            Frame::SnapshotChunk { .. } => "snapshot_chunk",
            Frame::SnapshotEnd { .. } => "snapshot_end",
            Frame::Deltas { .. } => "deltas",
            Frame::Ack { .. } => "ack",
            Frame::Resync { .. } => "resync",
            Frame::ConfigHead { .. } => "config_head",
            Frame::ConfigVersion { .. } => "config_version",
            Frame::ConfigRunning { .. } => "config_running",
            Frame::BranchKept { .. } => "branch_kept",
            Frame::Audit { .. } => "audit",
            Frame::Close { .. } => "close",
            Frame::HandoverAsk { .. } => "handover_ask",
            Frame::HandoverAnswer { .. } => "handover_answer",
        }
    }
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("cannot encode frame: {0}")]
    Body(#[from] postcard::Error),
}

/// Appends `frame` (header and body) to `out`. On error `out` is left as it was.
pub fn encode_frame(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    encode_body(out, |buf| postcard::to_extend(frame, Sink(buf)).map(drop))
}

/// Appends the hello frame (magic, schema range, body) to `out`.
pub fn encode_hello(
    speaks: Speaks,
    hello: &Hello,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    encode_body(out, |buf| {
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&speaks.min.to_be_bytes());
        buf.extend_from_slice(&speaks.max.to_be_bytes());
        postcard::to_extend(hello, Sink(buf)).map(drop)
    })
}

/// Lets postcard append to a borrowed buffer.
struct Sink<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Sink<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

fn encode_body(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(EncodeError::TooLarge(len));
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(HEADER_LEN + len)
}

/// Decodes a hello body: the peer's schema range and, if `ours` shares one with it, its hello.
pub fn decode_hello(body: &[u8]) -> Result<(Speaks, Hello), DecodeError> {
    if body.len() < 8 || body[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let speaks = Speaks {
        min: u16::from_be_bytes([body[4], body[5]]),
        max: u16::from_be_bytes([body[6], body[7]]),
    };
    let (hello, rest) = postcard::take_from_bytes::<Hello>(&body[8..])?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok((speaks, hello))
}

/// The schema range of a hello body, without decoding the rest (a peer we cannot speak to
/// may use a hello we cannot read, though its prefix is fixed).
pub fn hello_speaks(body: &[u8]) -> Result<Speaks, DecodeError> {
    if body.len() < 8 || body[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    Ok(Speaks {
        min: u16::from_be_bytes([body[4], body[5]]),
        max: u16::from_be_bytes([body[6], body[7]]),
    })
}

/// Decodes a frame body. Each schema adds variants at the end of [`Frame`] and changes no
/// older one, so one decoder reads them all; the engine refuses a variant newer than the
/// negotiated schema.
pub fn decode_frame(body: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (frame, rest) = postcard::take_from_bytes::<Frame<'_>>(body)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(frame)
}

/// Splits a byte stream into frame bodies. Never holds more than one frame plus one read.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Where the unread bytes start.
    start: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 16) && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's body, if one is buffered. A length over [`MAX_FRAME`] is an
    /// error as soon as the header is in (nothing waits for 4 GiB that will never be read).
    pub fn next_body(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len == 0 {
            return Err(DecodeError::Empty);
        }
        if len > MAX_FRAME {
            return Err(DecodeError::TooLarge(len));
        }
        if avail.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + HEADER_LEN + len;
        self.start += HEADER_LEN + len;
        Ok(Some(&self.buf[body]))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            node: "lb-a".into(),
            management: "192.0.2.10:443".into(),
            role: WireRole::Active,
            instance: 7,
            running: Some(WireVersionId {
                epoch: 1,
                n: 2,
                hash: "ab".repeat(32),
            }),
            versions: vec![],
            max_epoch: 3,
            audit: vec![AuditMark {
                origin: "lb-a".into(),
                n: 9,
            }],
            extensions: vec![],
        }
    }

    fn sample_frames() -> Vec<Frame<'static>> {
        vec![
            Frame::Heartbeat,
            Frame::Role(WireRole::Passive),
            Frame::SnapshotBegin {
                snapshot: 1,
                base_seq: 10,
                entries: 2,
            },
            Frame::SnapshotChunk {
                snapshot: 1,
                records: vec![
                    Record::PersistenceInsert {
                        service: "web",
                        client: "192.0.2.1".parse().unwrap(),
                        pool: "p",
                        server: "a",
                        remaining_ms: 600_000,
                    },
                    Record::ServerAdmin {
                        pool: "p",
                        server: "a",
                        state: WireAdmin::Drain,
                    },
                    Record::TicketKeys {
                        keys: vec![WireTicketKey {
                            id: [1; 16],
                            secret: [2; 32],
                            current_for_ms: 5,
                            accepted_for_ms: 6,
                        }],
                        rotation_ms: 1,
                        lifetime_ms: 2,
                    },
                ],
            },
            Frame::SnapshotEnd { snapshot: 1 },
            Frame::Deltas {
                first_seq: 11,
                records: vec![Record::PersistenceExpire {
                    service: "web",
                    client: "2001:db8::1".parse().unwrap(),
                }],
            },
            Frame::Ack {
                snapshot: 1,
                seq: 11,
            },
            Frame::Resync { expected: 12 },
            Frame::ConfigVersion {
                meta: WireVersionMeta {
                    id: WireVersionId {
                        epoch: 1,
                        n: 1,
                        hash: "00".repeat(32),
                    },
                    parent: None,
                    committed_at: 1,
                    author: "root".into(),
                    reason: "apply".into(),
                    node: "lb-a".into(),
                },
                text: "schema: 1\nshared: {}\n",
            },
            Frame::Close {
                reason: "bye".into(),
            },
        ]
    }

    #[test]
    fn frames_round_trip_through_the_reader_in_any_split() {
        let mut bytes = Vec::new();
        encode_hello(Speaks::at(SCHEMA), &hello(), &mut bytes).unwrap();
        let frames = sample_frames();
        for f in &frames {
            encode_frame(f, &mut bytes).unwrap();
        }
        for step in [1, 3, 7, 64, bytes.len()] {
            let mut r = FrameReader::new();
            let mut got_hello = None;
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                r.push(chunk);
                while let Some(body) = r.next_body().unwrap() {
                    if got_hello.is_none() {
                        got_hello = Some(decode_hello(body).unwrap());
                    } else {
                        // Owned copies: the reader's buffer moves on.
                        got.push(format!("{:?}", decode_frame(body).unwrap()));
                    }
                }
            }
            assert_eq!(got_hello.unwrap(), (Speaks::at(SCHEMA), hello()));
            let want: Vec<_> = frames.iter().map(|f| format!("{f:?}")).collect();
            assert_eq!(got, want, "split every {step} bytes");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn oversized_empty_and_trailing_frames_are_errors() {
        let mut r = FrameReader::new();
        r.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(r.next_body(), Err(DecodeError::TooLarge(_))));
        let mut r = FrameReader::new();
        r.push(&[0, 0, 0, 0]);
        assert!(matches!(r.next_body(), Err(DecodeError::Empty)));
        let mut body = Vec::new();
        encode_frame(&Frame::Heartbeat, &mut body).unwrap();
        body.push(0);
        assert!(matches!(
            decode_frame(&body[HEADER_LEN..]),
            Err(DecodeError::Trailing(1))
        ));
        assert!(matches!(
            decode_hello(b"HTTP/1.1 200"),
            Err(DecodeError::BadMagic)
        ));
        // An unknown variant index (a frame kind from a newer schema) is an error, not a guess.
        assert!(decode_frame(&[200]).is_err());
    }

    #[test]
    fn negotiation_takes_the_newest_common_schema() {
        let n = 5;
        let ours = Speaks::at(n);
        assert_eq!(ours.negotiate(Speaks::at(n)), Ok(n));
        assert_eq!(
            ours.negotiate(Speaks::at(n - 1)),
            Ok(n - 1),
            "peer one behind"
        );
        assert_eq!(ours.negotiate(Speaks::at(n + 1)), Ok(n), "peer one ahead");
        for peer in [
            Speaks::at(n - 2),
            Speaks::at(n + 2),
            Speaks {
                min: n + 1,
                max: n + 1,
            },
            Speaks {
                min: n - 2,
                max: n - 2,
            },
            Speaks { min: n, max: n - 1 },
        ] {
            let e = ours.negotiate(peer).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("no common version"), "{text}");
        }
        let newer = ours.negotiate(Speaks::at(n + 2)).unwrap_err().to_string();
        assert!(newer.contains("upgrade this box"), "{newer}");
        let older = ours.negotiate(Speaks::at(n - 2)).unwrap_err().to_string();
        assert!(older.contains("upgrade the peer"), "{older}");
        assert_eq!(Speaks::at(1), Speaks { min: 1, max: 1 });
    }

    /// A stable-Rust stand-in for the fuzz target: random and mutated bytes never panic the
    /// reader or the decoders (the fuzz target `sync_frame` goes further).
    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut valid = Vec::new();
        for f in sample_frames() {
            encode_frame(&f, &mut valid).unwrap();
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<_>>()
            } else {
                let mut b = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % b.len();
                    b[i] = next() as u8;
                }
                b
            };
            if round % 3 == 0 {
                // A plausible length in front of random content.
                let len = bytes.len() as u32;
                let mut framed = len.to_be_bytes().to_vec();
                framed.append(&mut bytes);
                bytes = framed;
            }
            let mut r = FrameReader::new();
            r.push(&bytes);
            while let Ok(Some(body)) = r.next_body() {
                let _ = decode_hello(body);
                let _ = hello_speaks(body);
                if decode_frame(body).is_ok() {
                    decoded += 1;
                }
            }
        }
        assert!(decoded > 0, "some mutated frames still decode");
    }
}
