//! The sans-IO protocol core: one long-lived state machine per box, which outlives the
//! connections it is handed. It takes events — bytes received, a connection made or lost,
//! the pair's role, the dataplane's changes and snapshots, a config commit, the time — and
//! returns bytes to send, actions to carry out and the next deadline. It never touches a
//! socket or a clock: `now` is an argument, so tests run two engines over an in-memory pipe
//! on a simulated clock (as quinn-proto and rustls do).
//!
//! ```text
//! I/O task ──connected/handle_input/set_role/local_change/snapshot_taken/handle_timeout──► Engine
//!          ◄──poll_transmit (bytes) / poll_action (Action) / poll_timeout (Instant)───────
//! ```
//!
//! Who writes: the box whose role is Active, while the peer says it is Passive. Each side
//! decides from its own role and the role the peer announced (hello, then `Role` frames), so
//! after a role swap the direction turns by itself. While both claim Active (a split) or
//! both Passive, nothing is replicated.

use crate::history;
use crate::local::LocalStore;
use crate::records::{Names, TABLES, table_of, to_change, to_record};
use crate::wire::{
    self, AuditMark, DecodeError, Frame, Hello, Record, Speaks, VersionMismatch, WireRole,
    WireVersionId, WireVersionMeta,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tandem_config::store::{KeptBranch, VersionId, VersionMeta};
use tandem_dataplane::{StateChange, StateEvent};

/// The pair's role as this crate sees it (`tandem-ha`'s role maps onto it one to one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Active,
    Passive,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Passive => "passive",
        }
    }
}

impl From<Role> for WireRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Active => WireRole::Active,
            Role::Passive => WireRole::Passive,
        }
    }
}

impl From<WireRole> for Role {
    fn from(r: WireRole) -> Self {
        match r {
            WireRole::Active => Role::Active,
            WireRole::Passive => Role::Passive,
        }
    }
}

/// Which way state flows on the current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This box is Active and the peer Passive: this box sends.
    Writer,
    /// This box is Passive and the peer Active: this box receives.
    Reader,
    /// No connection, no hello yet, or both boxes claim the same role.
    Idle,
}

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This box's name and management address, told to the peer.
    pub node: String,
    pub management: String,
    /// Schema versions spoken (N and N-1).
    pub speaks: Speaks,
    /// A frame goes out at least this often.
    pub heartbeat: Duration,
    /// The connection is dropped after this long without a frame from the peer.
    pub peer_timeout: Duration,
    /// This box begins odd epochs (its certificate fingerprint is the smaller), else even.
    pub odd_epochs: bool,
    /// Random per daemon start (the peer sees restarts).
    pub instance: u64,
    /// Local changes waiting to be sent; beyond, the queue is dropped and a new snapshot sent
    /// (bounded memory when the link or the reader cannot keep up).
    pub max_queued: usize,
    /// Changes sent but not acknowledged; beyond, nothing more is sent until acks come.
    pub max_unacked: u64,
    /// Records per snapshot chunk or delta frame.
    pub records_per_frame: usize,
}

impl EngineConfig {
    pub fn new(node: &str, management: &str) -> Self {
        EngineConfig {
            node: node.to_owned(),
            management: management.to_owned(),
            speaks: Speaks::at(wire::SCHEMA),
            heartbeat: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            odd_epochs: true,
            instance: 0,
            max_queued: 1 << 18,
            max_unacked: 1 << 20,
            records_per_frame: 4096,
        }
    }
}

/// What the I/O task must do.
#[derive(Debug)]
pub enum Action {
    /// Writer: subscribe to the state stream, take a snapshot, and hand both over
    /// ([`Engine::snapshot_taken`], then [`Engine::local_change`] for each event). Any
    /// earlier subscription is replaced.
    TakeSnapshot,
    /// The subscription is no longer needed (this box stopped writing).
    StopChanges,
    /// Reader: install these changes in order (`StateTables::apply_remote`).
    Apply(Vec<StateChange>),
    /// Reader: the active box runs this version and it is stored here: run it
    /// (tandemd: apply it to the dataplane, `Store::set_current`, then
    /// [`Engine::config_running`]).
    RunVersion(VersionMeta),
    /// A branch of versions lost to the active's history and was kept, flagged.
    BranchKept(KeptBranch),
    /// The peer introduced itself (or changed its role).
    Peer(PeerInfo),
    /// Drop the connection (after writing what [`Engine::poll_transmit`] still returns).
    Disconnect(CloseReason),
    /// Active: the passive peer asks this box to hand the pair over to it. Carry it out as
    /// `tandemctl failover` would, then answer with [`Engine::answer_handover`].
    HandoverAsked { id: u64, reason: String },
    /// The peer's answer to [`Engine::ask_handover`]; `refused` says why it did not.
    HandoverAnswered { id: u64, refused: Option<String> },
}

/// What this box knows about the peer (kept after a disconnect: the last known values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    pub node: String,
    pub management: String,
    pub role: Role,
    pub instance: u64,
    /// The version it runs, as it last said.
    pub running: Option<VersionId>,
    /// The negotiated schema.
    pub schema: u16,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("malformed frame from the peer: {0}")]
    Malformed(String),
    #[error("{0}")]
    Version(VersionMismatch),
    #[error("no frame from the peer for {0:?}")]
    Silent(Duration),
    #[error("the peer closed the link: {0}")]
    PeerClosed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Local(String),
}

impl From<DecodeError> for CloseReason {
    fn from(e: DecodeError) -> Self {
        CloseReason::Malformed(e.to_string())
    }
}

/// The last snapshot sent or received.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotReport {
    /// True when this box sent it.
    pub sent: bool,
    pub entries: u64,
    pub bytes: u64,
    /// From its first frame until the reader acknowledged it (sender) / installed it (reader).
    pub duration: Duration,
    #[serde(skip)]
    pub finished: Instant,
}

/// The core's counters (the I/O task adds refused peers and reconnects).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub malformed_frames: u64,
    pub version_refused: u64,
    pub snapshots_sent: u64,
    pub snapshots_received: u64,
    /// Snapshots forced by a gap, a lagged subscription, a full queue or the peer's request.
    pub forced_snapshots: u64,
    pub deltas_sent: u64,
    pub deltas_applied: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub peer_restarts: u64,
    pub branches_kept: u64,
    pub versions_received: u64,
    pub audit_received: u64,
}

/// The core's view for status and metrics.
#[derive(Clone, Debug, Serialize)]
pub struct EngineStatus {
    pub role: Role,
    pub connected: bool,
    #[serde(skip)]
    pub connected_since: Option<Instant>,
    pub schema: Option<u16>,
    pub direction: Direction,
    pub peer: Option<PeerInfo>,
    pub running: Option<VersionId>,
    pub last_snapshot: Option<SnapshotReport>,
    /// Writer: age of the oldest change not yet acknowledged (0 when all are).
    pub lag_ms: u64,
    /// Writer: changes not yet acknowledged.
    pub lag_entries: u64,
    /// Writer: 99th percentile of the last acknowledgement delays.
    pub lag_p99_ms: f64,
    /// Entries per table in the last snapshot sent or received.
    pub tables: BTreeMap<&'static str, u64>,
    pub counters: Counters,
}

#[derive(Debug)]
enum WriterState {
    /// A `TakeSnapshot` is out; local changes are ignored until `snapshot_taken`.
    WaitingSnapshot,
    Sending {
        changes: std::vec::IntoIter<StateChange>,
        begun: bool,
        entries: u64,
    },
    Live,
}

#[derive(Debug)]
struct Writer {
    state: WriterState,
    snapshot: u64,
    base_seq: u64,
    started: Instant,
    bytes: u64,
    /// Set while the snapshot's acknowledgement is awaited: its entry count.
    awaiting_ack: Option<u64>,
    /// The next local sequence number expected.
    next_seq: u64,
    queue: VecDeque<(StateEvent, Instant)>,
    sent_seq: u64,
    acked_seq: u64,
    /// Delta frames sent and not yet acknowledged: last seq, when its oldest change came in.
    inflight: VecDeque<(u64, Instant)>,
}

#[derive(Debug)]
enum ReaderState {
    AwaitSnapshot {
        resync_sent: bool,
    },
    InSnapshot {
        snapshot: u64,
        base_seq: u64,
        received: u64,
        bytes: u64,
        started: Instant,
    },
    Live {
        snapshot: u64,
        next_seq: u64,
    },
}

#[derive(Debug)]
struct Reader {
    state: ReaderState,
    ack: Option<(u64, u64)>,
    pending_head: Option<VersionId>,
}

#[derive(Debug)]
struct Conn {
    since: Instant,
    last_recv: Instant,
    last_sent: Instant,
    rx: wire::FrameReader,
    out: Vec<u8>,
    schema: Option<u16>,
    peer_role: Option<Role>,
    /// The role this box's hello announced. A role change before the peer's hello arrives
    /// cannot be sent yet (no schema is agreed): it is sent right after.
    hello_role: Role,
    /// Versions the peer holds, as far as this box knows: the confirmed ones, and those sent
    /// to it while this box wrote (assumed stored).
    peer_versions: HashSet<VersionId>,
    /// Only what the peer itself said it holds: its hello and its `ConfigRunning` frames. A
    /// version sent while the peer was not reading (it had become active and not told us yet)
    /// was dropped there, so each writing period starts again from this.
    peer_confirmed: HashSet<VersionId>,
    peer_audit: BTreeMap<String, u64>,
    dir: Direction,
    writer: Option<Writer>,
    reader: Option<Reader>,
    closing: Option<CloseReason>,
}

/// A version id from the peer must be a real one (64 lowercase hex digits): it names files and
/// is shown to people, so anything else is a malformed frame.
fn check_ids<'a>(ids: impl IntoIterator<Item = &'a WireVersionId>) -> Result<(), CloseReason> {
    for id in ids {
        if id.hash.len() != 64
            || !id
                .hash
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(CloseReason::Malformed(format!(
                "config version {}.{} has an invalid hash",
                id.epoch, id.n
            )));
        }
    }
    Ok(())
}

fn meta_ids(m: &WireVersionMeta) -> impl Iterator<Item = &WireVersionId> {
    std::iter::once(&m.id).chain(m.parent.as_ref())
}

/// Bytes of queued output above which no bulk frame (snapshot chunk, deltas) is added.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Acknowledgement delays kept for the percentile.
const LAG_SAMPLES: usize = 4096;

/// The protocol core. `S` is this box's store of config versions and audit entries.
pub struct Engine<S: LocalStore> {
    cfg: EngineConfig,
    store: S,
    role: Role,
    conn: Option<Conn>,
    actions: VecDeque<Action>,
    names: Names,
    counters: Counters,
    next_snapshot: u64,
    last_snapshot: Option<SnapshotReport>,
    peer: Option<PeerInfo>,
    peer_max_epoch: u64,
    lag_samples: VecDeque<Duration>,
    tables: [u64; TABLES.len()],
    /// Versions already found on a losing branch (not flagged twice while tandemd has not
    /// run the winner yet).
    kept: HashSet<VersionId>,
}

impl<S: LocalStore> Engine<S> {
    /// A core for a box whose role is `role` now. An Active box begins a new epoch.
    pub fn new(cfg: EngineConfig, store: S, role: Role) -> Self {
        let mut e = Engine {
            cfg,
            store,
            role,
            conn: None,
            actions: VecDeque::new(),
            names: Names::default(),
            counters: Counters::default(),
            next_snapshot: 1,
            last_snapshot: None,
            peer: None,
            peer_max_epoch: 0,
            lag_samples: VecDeque::new(),
            tables: [0; TABLES.len()],
            kept: HashSet::new(),
        };
        if role == Role::Active {
            e.begin_epoch();
        }
        e
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer as last known.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    pub fn direction(&self) -> Direction {
        self.conn.as_ref().map_or(Direction::Idle, |c| c.dir)
    }

    /// Whether local changes are wanted now (the I/O may stop reading the stream otherwise).
    pub fn wants_changes(&self) -> bool {
        self.conn
            .as_ref()
            .and_then(|c| c.writer.as_ref())
            .is_some_and(|w| !matches!(w.state, WriterState::WaitingSnapshot))
    }

    fn begin_epoch(&mut self) {
        let max = self.store.max_epoch().max(self.peer_max_epoch);
        let epoch = history::next_epoch(max, self.cfg.odd_epochs);
        match self.store.begin_epoch(epoch) {
            Ok(()) => tracing::info!(
                epoch,
                "sync: this box is the writer; config versions it commits are in epoch {epoch}"
            ),
            Err(e) => {
                tracing::error!(error = %e, epoch, "sync: cannot record the new writer epoch")
            }
        }
    }

    // ---- connection events -------------------------------------------------------------

    /// A connection to the peer is up (TLS done, peer pinned): the hello goes out first.
    pub fn connected(&mut self, now: Instant) {
        let hello = Hello {
            node: self.cfg.node.clone(),
            management: self.cfg.management.clone(),
            role: self.role.into(),
            instance: self.cfg.instance,
            running: self.store.running().as_ref().map(Into::into),
            versions: self
                .store
                .versions()
                .iter()
                .map(|m| (&m.id).into())
                .collect(),
            max_epoch: self.store.max_epoch(),
            audit: self.store.audit_marks(),
            extensions: Vec::new(),
        };
        let mut out = Vec::new();
        if let Err(e) = wire::encode_hello(self.cfg.speaks, &hello, &mut out) {
            tracing::error!(error = %e, "sync: cannot encode the hello");
        }
        self.conn = Some(Conn {
            since: now,
            last_recv: now,
            last_sent: now,
            rx: wire::FrameReader::new(),
            out,
            schema: None,
            peer_role: None,
            hello_role: self.role,
            peer_versions: HashSet::new(),
            peer_confirmed: HashSet::new(),
            peer_audit: BTreeMap::new(),
            dir: Direction::Idle,
            writer: None,
            reader: None,
            closing: None,
        });
    }

    /// The connection is gone (closed by either side or lost).
    pub fn disconnected(&mut self, _now: Instant) {
        if let Some(conn) = self.conn.take()
            && conn.writer.is_some()
        {
            self.actions.push_back(Action::StopChanges);
        }
    }

    /// Bytes received from the peer. On error the connection must be dropped (a
    /// [`Action::Disconnect`] is queued as well) and the reason logged.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), CloseReason> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        if conn.closing.is_some() {
            return Ok(());
        }
        conn.last_recv = now;
        self.counters.bytes_received += data.len() as u64;
        conn.rx.push(data);
        let mut rx = std::mem::take(&mut conn.rx);
        let result = loop {
            match rx.next_body() {
                Ok(None) => break Ok(()),
                Ok(Some(body)) => {
                    if let Err(reason) = self.handle_body(body, now) {
                        break Err(reason);
                    }
                }
                Err(e) => break Err(CloseReason::from(e)),
            }
        };
        if let Some(conn) = self.conn.as_mut() {
            conn.rx = rx;
        }
        if let Err(reason) = &result {
            self.close(reason.clone());
        }
        result
    }

    /// This box stops the link (daemon shutdown): the peer is told why.
    pub fn shutdown(&mut self, reason: &str) {
        self.close(CloseReason::Local(reason.to_owned()));
    }

    fn close(&mut self, reason: CloseReason) {
        match &reason {
            CloseReason::Malformed(_) | CloseReason::Protocol(_) => {
                self.counters.malformed_frames += 1
            }
            CloseReason::Version(_) => self.counters.version_refused += 1,
            _ => {}
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if conn.schema.is_some() && !matches!(reason, CloseReason::PeerClosed(_)) {
            let _ = wire::encode_frame(
                &Frame::Close {
                    reason: reason.to_string(),
                },
                &mut conn.out,
            );
        }
        conn.closing = Some(reason.clone());
        self.actions.push_back(Action::Disconnect(reason));
    }

    fn handle_body(&mut self, body: &[u8], now: Instant) -> Result<(), CloseReason> {
        let negotiated = self.conn.as_ref().and_then(|c| c.schema);
        if negotiated.is_none() {
            return self.handle_hello(body, now);
        }
        let frame = wire::decode_frame(body)?;
        self.handle_frame(frame, body.len(), now)
    }

    fn handle_hello(&mut self, body: &[u8], now: Instant) -> Result<(), CloseReason> {
        let peer_speaks = wire::hello_speaks(body)?;
        let schema = self
            .cfg
            .speaks
            .negotiate(peer_speaks)
            .map_err(CloseReason::Version)?;
        let (_, hello) = wire::decode_hello(body)?;
        check_ids(hello.running.iter().chain(&hello.versions))?;
        let role = Role::from(hello.role);
        if let Some(prev) = &self.peer
            && prev.instance != hello.instance
        {
            self.counters.peer_restarts += 1;
            tracing::info!(peer = %hello.node, "sync: the peer restarted since the last connection");
        }
        let info = PeerInfo {
            node: hello.node.clone(),
            management: hello.management.clone(),
            role,
            instance: hello.instance,
            running: hello.running.as_ref().map(Into::into),
            schema,
        };
        self.peer = Some(info.clone());
        self.peer_max_epoch = self.peer_max_epoch.max(hello.max_epoch);
        self.actions.push_back(Action::Peer(info));
        let conn = self.conn.as_mut().expect("a connection is up");
        conn.schema = Some(schema);
        conn.peer_role = Some(role);
        conn.peer_versions = hello.versions.iter().map(Into::into).collect();
        conn.peer_confirmed = conn.peer_versions.clone();
        conn.peer_audit = hello
            .audit
            .iter()
            .map(|m| (m.origin.clone(), m.n))
            .collect();
        // Became active (or passive) between sending the hello and reading the peer's: tell
        // it now, or it would go on taking this box for what the hello said and neither side
        // would replicate.
        if conn.hello_role != self.role {
            let _ = wire::encode_frame(&Frame::Role(self.role.into()), &mut conn.out);
        }
        tracing::info!(peer = %hello.node, peer_role = role.as_str(), schema, "sync: peer connected");
        self.update_direction(now);
        self.send_audit();
        Ok(())
    }

    fn handle_frame(
        &mut self,
        frame: Frame<'_>,
        len: usize,
        now: Instant,
    ) -> Result<(), CloseReason> {
        match frame {
            Frame::Heartbeat => {}
            Frame::Role(role) => {
                let role = Role::from(role);
                if let Some(conn) = self.conn.as_mut() {
                    conn.peer_role = Some(role);
                }
                if let Some(peer) = self.peer.as_mut() {
                    peer.role = role;
                    let info = peer.clone();
                    self.actions.push_back(Action::Peer(info));
                }
                tracing::info!(peer_role = role.as_str(), "sync: the peer's role changed");
                self.update_direction(now);
            }
            Frame::SnapshotBegin {
                snapshot,
                base_seq,
                entries: _,
            } => {
                if let Some(r) = self.reader_mut() {
                    r.state = ReaderState::InSnapshot {
                        snapshot,
                        base_seq,
                        received: 0,
                        bytes: len as u64,
                        started: now,
                    };
                    self.tables = [0; TABLES.len()];
                }
            }
            Frame::SnapshotChunk { snapshot, records } => {
                let Some(r) = self.reader_mut() else {
                    return Ok(());
                };
                match &mut r.state {
                    ReaderState::InSnapshot {
                        snapshot: id,
                        received,
                        bytes,
                        ..
                    } if *id == snapshot => {
                        *received += records.len() as u64;
                        *bytes += len as u64;
                    }
                    _ => {
                        self.reader_resync(0);
                        return Ok(());
                    }
                }
                self.apply_records(&records);
            }
            Frame::SnapshotEnd { snapshot } => {
                let Some(r) = self.reader_mut() else {
                    return Ok(());
                };
                match r.state {
                    ReaderState::InSnapshot {
                        snapshot: id,
                        base_seq,
                        received,
                        bytes,
                        started,
                    } if id == snapshot => {
                        r.state = ReaderState::Live {
                            snapshot,
                            next_seq: base_seq + 1,
                        };
                        r.ack = Some((snapshot, base_seq));
                        self.counters.snapshots_received += 1;
                        self.last_snapshot = Some(SnapshotReport {
                            sent: false,
                            entries: received,
                            bytes: bytes + len as u64,
                            duration: now.saturating_duration_since(started),
                            finished: now,
                        });
                        tracing::info!(
                            entries = received,
                            bytes,
                            "sync: snapshot from the active box installed"
                        );
                    }
                    _ => self.reader_resync(0),
                }
            }
            Frame::Deltas { first_seq, records } => {
                let Some(r) = self.reader_mut() else {
                    return Ok(());
                };
                match &mut r.state {
                    ReaderState::Live { snapshot, next_seq } if *next_seq == first_seq => {
                        *next_seq += records.len() as u64;
                        r.ack = Some((*snapshot, *next_seq - 1));
                    }
                    ReaderState::Live { next_seq, .. } => {
                        let expected = *next_seq;
                        tracing::warn!(
                            expected,
                            got = first_seq,
                            "sync: gap in the change stream; asking for a new snapshot"
                        );
                        self.reader_resync(expected);
                        return Ok(());
                    }
                    _ => {
                        self.reader_resync(0);
                        return Ok(());
                    }
                }
                self.counters.deltas_applied += records.len() as u64;
                self.apply_records(&records);
            }
            Frame::Ack { snapshot, seq } => self.handle_ack(snapshot, seq, now),
            Frame::Resync { expected } => {
                if self.direction() == Direction::Writer {
                    tracing::info!(expected, "sync: the peer asked for a new snapshot");
                    self.request_snapshot();
                }
            }
            Frame::ConfigHead {
                head,
                known,
                oldest_n,
            } => {
                check_ids(std::iter::once(&head).chain(&known))?;
                // The head is what the writer runs: without this the reader would show the
                // peer on the version of its hello until the next connect.
                if let Some(peer) = self.peer.as_mut() {
                    peer.running = Some((&head).into());
                }
                self.handle_config_head(&head, &known, oldest_n)
            }
            Frame::ConfigVersion { meta, text } => {
                check_ids(meta_ids(&meta))?;
                self.handle_config_version(&meta, text)?
            }
            Frame::ConfigRunning { id } => {
                check_ids(&id)?;
                if let Some(peer) = self.peer.as_mut() {
                    peer.running = id.as_ref().map(Into::into);
                }
                if let (Some(conn), Some(id)) = (self.conn.as_mut(), id.as_ref()) {
                    conn.peer_versions.insert(id.into());
                    conn.peer_confirmed.insert(id.into());
                }
            }
            Frame::BranchKept {
                superseded_by,
                versions,
            } => {
                check_ids(
                    std::iter::once(&superseded_by)
                        .chain(versions.iter().flat_map(|(m, _)| meta_ids(m))),
                )?;
                if self.direction() != Direction::Writer || versions.is_empty() {
                    return Ok(());
                }
                let versions: Vec<(VersionMeta, String)> = versions
                    .iter()
                    .map(|(m, t)| (VersionMeta::from(m), (*t).to_owned()))
                    .collect();
                let winner = self.cfg.node.clone();
                match self
                    .store
                    .keep_branch(&versions, &(&superseded_by).into(), &winner)
                {
                    Ok(kept) => {
                        tracing::warn!(branch = %kept.name, versions = kept.versions.len(), "sync: the peer's versions from a partition lost to this box's history; kept and flagged");
                        self.counters.branches_kept += 1;
                        self.actions.push_back(Action::BranchKept(kept));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sync: cannot keep the peer's superseded branch")
                    }
                }
            }
            Frame::Audit { entries } => {
                if let Some(conn) = self.conn.as_mut() {
                    for e in &entries {
                        let mark = conn.peer_audit.entry(e.origin.clone()).or_insert(0);
                        *mark = (*mark).max(e.n);
                    }
                }
                match self.store.audit_append(&entries) {
                    Ok(n) => self.counters.audit_received += n as u64,
                    Err(e) => tracing::error!(error = %e, "sync: cannot store audit entries"),
                }
            }
            Frame::Close { reason } => return Err(CloseReason::PeerClosed(reason)),
            Frame::HandoverAsk { id, reason } => {
                self.require_schema(wire::SCHEMA_HANDOVER, "handover_ask")?;
                let peer_role = self.conn.as_ref().and_then(|c| c.peer_role);
                // Only the active box hands over, and only to a peer that is passive: the
                // peer's view of the roles may be a moment old.
                if self.role == Role::Active && peer_role == Some(Role::Passive) {
                    tracing::info!(%reason, "sync: the peer asks this box to hand over");
                    self.actions.push_back(Action::HandoverAsked { id, reason });
                } else {
                    let why = format!(
                        "{} is {}, {}: only an active box hands over to a passive peer",
                        self.cfg.node,
                        self.role.as_str(),
                        match peer_role {
                            Some(r) => format!("and sees the asker as {}", r.as_str()),
                            None => "and does not know the asker's role".into(),
                        }
                    );
                    self.answer_handover(id, Some(why));
                }
            }
            Frame::HandoverAnswer { id, refused } => {
                self.require_schema(wire::SCHEMA_HANDOVER, "handover_answer")?;
                self.actions
                    .push_back(Action::HandoverAnswered { id, refused });
            }
        }
        Ok(())
    }

    /// A frame added in schema `since` on a link that negotiated an older one is a protocol
    /// error: the peer sent what it agreed not to.
    fn require_schema(&self, since: u16, kind: &str) -> Result<(), CloseReason> {
        match self.conn.as_ref().and_then(|c| c.schema) {
            Some(s) if s >= since => Ok(()),
            s => Err(CloseReason::Protocol(format!(
                "{kind} frame on a link of sync schema {}, it needs {since}",
                s.unwrap_or(0)
            ))),
        }
    }

    // ---- handover requests -------------------------------------------------------------

    /// Passive: asks the active peer to hand the pair over to this box; the answer comes as
    /// [`Action::HandoverAnswered`] with this `id`. `Err` says why it cannot be asked now.
    pub fn ask_handover(&mut self, id: u64, reason: &str) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut().filter(|c| c.closing.is_none()) else {
            return Err("the sync link to the peer is down".into());
        };
        let Some(schema) = conn.schema else {
            return Err("the sync link to the peer is still starting".into());
        };
        if schema < wire::SCHEMA_HANDOVER {
            return Err(format!(
                "the peer's firmware speaks sync schema {schema} and cannot be asked to hand over: upgrade it"
            ));
        }
        if self.role != Role::Passive || conn.peer_role != Some(Role::Active) {
            return Err(format!(
                "only the passive box asks the active one to hand over; this box is {}",
                self.role.as_str()
            ));
        }
        let frame = Frame::HandoverAsk {
            id,
            reason: reason.to_owned(),
        };
        wire::encode_frame(&frame, &mut conn.out).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Active: the answer to [`Action::HandoverAsked`] (`refused`: why not). Dropped when
    /// the link went down meanwhile: the asker learns that from the link.
    pub fn answer_handover(&mut self, id: u64, refused: Option<String>) {
        if let Some(conn) = self.conn.as_mut()
            && conn.closing.is_none()
            && conn.schema >= Some(wire::SCHEMA_HANDOVER)
        {
            let _ = wire::encode_frame(&Frame::HandoverAnswer { id, refused }, &mut conn.out);
        }
    }

    fn reader_mut(&mut self) -> Option<&mut Reader> {
        self.conn.as_mut().and_then(|c| c.reader.as_mut())
    }

    fn apply_records(&mut self, records: &[Record<'_>]) {
        let mut changes = Vec::with_capacity(records.len());
        for r in records {
            self.tables[table_of(r)] += 1;
            changes.push(to_change(r, &mut self.names));
        }
        self.actions.push_back(Action::Apply(changes));
    }

    /// Asks the writer for a new snapshot, once per wait.
    fn reader_resync(&mut self, expected: u64) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(r) = conn.reader.as_mut() else {
            return;
        };
        if matches!(r.state, ReaderState::AwaitSnapshot { resync_sent: true }) {
            return;
        }
        r.state = ReaderState::AwaitSnapshot { resync_sent: true };
        r.ack = None;
        let _ = wire::encode_frame(&Frame::Resync { expected }, &mut conn.out);
    }

    fn handle_ack(&mut self, snapshot: u64, seq: u64, now: Instant) {
        let Some(w) = self.conn.as_mut().and_then(|c| c.writer.as_mut()) else {
            return;
        };
        if snapshot != w.snapshot {
            return;
        }
        if let Some(entries) = w.awaiting_ack
            && seq >= w.base_seq
            && matches!(w.state, WriterState::Live)
        {
            w.awaiting_ack = None;
            let duration = now.saturating_duration_since(w.started);
            tracing::info!(
                entries,
                bytes = w.bytes,
                ?duration,
                "sync: snapshot installed on the peer"
            );
            self.last_snapshot = Some(SnapshotReport {
                sent: true,
                entries,
                bytes: w.bytes,
                duration,
                finished: now,
            });
        }
        w.acked_seq = w.acked_seq.max(seq);
        while let Some(&(last, first_at)) = w.inflight.front() {
            if last > seq {
                break;
            }
            w.inflight.pop_front();
            if self.lag_samples.len() == LAG_SAMPLES {
                self.lag_samples.pop_front();
            }
            self.lag_samples
                .push_back(now.saturating_duration_since(first_at));
        }
    }

    // ---- direction ---------------------------------------------------------------------

    fn update_direction(&mut self, now: Instant) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.schema.is_none() || conn.closing.is_some() {
            return;
        }
        let want = match (self.role, conn.peer_role) {
            (Role::Active, Some(Role::Passive)) => Direction::Writer,
            (Role::Passive, Some(Role::Active)) => Direction::Reader,
            _ => Direction::Idle,
        };
        if want == conn.dir {
            return;
        }
        if conn.writer.take().is_some() {
            self.actions.push_back(Action::StopChanges);
        }
        conn.reader = None;
        conn.dir = want;
        match want {
            Direction::Writer => {
                conn.writer = Some(Writer {
                    state: WriterState::WaitingSnapshot,
                    snapshot: 0,
                    base_seq: 0,
                    started: now,
                    bytes: 0,
                    awaiting_ack: None,
                    next_seq: 0,
                    queue: VecDeque::new(),
                    sent_seq: 0,
                    acked_seq: 0,
                    inflight: VecDeque::new(),
                });
                tracing::info!(
                    "sync: this box is active and the peer passive: replicating to the peer"
                );
                // Versions sent in an earlier writing period on this connection may have
                // reached the peer while it was active (a short partition that kept the TCP
                // connection) and been dropped: send again what it has not confirmed.
                conn.peer_versions = conn.peer_confirmed.clone();
                self.send_config_head();
                self.actions.push_back(Action::TakeSnapshot);
            }
            Direction::Reader => {
                conn.reader = Some(Reader {
                    state: ReaderState::AwaitSnapshot { resync_sent: false },
                    ack: None,
                    pending_head: None,
                });
                tracing::info!("sync: this box is passive and the peer active: receiving");
            }
            Direction::Idle => {
                if self.role == Role::Active {
                    tracing::warn!(
                        "sync: both boxes claim to be active; nothing is replicated until one is passive"
                    );
                }
            }
        }
    }

    /// The pair's role of this box changed (from `tandem-ha`).
    pub fn set_role(&mut self, role: Role, now: Instant) {
        if role == self.role {
            return;
        }
        self.role = role;
        if role == Role::Active {
            self.begin_epoch();
        }
        if let Some(conn) = self.conn.as_mut()
            && conn.schema.is_some()
            && conn.closing.is_none()
        {
            let _ = wire::encode_frame(&Frame::Role(role.into()), &mut conn.out);
        }
        self.update_direction(now);
    }

    // ---- writer inputs -----------------------------------------------------------------

    fn request_snapshot(&mut self) {
        let Some(w) = self.conn.as_mut().and_then(|c| c.writer.as_mut()) else {
            return;
        };
        if matches!(w.state, WriterState::WaitingSnapshot) {
            return;
        }
        self.counters.forced_snapshots += 1;
        w.state = WriterState::WaitingSnapshot;
        w.queue.clear();
        w.inflight.clear();
        self.actions.push_back(Action::TakeSnapshot);
    }

    /// The snapshot asked for by [`Action::TakeSnapshot`]: the tables as changes, consistent
    /// with the stream at `seq`.
    pub fn snapshot_taken(&mut self, seq: u64, changes: Vec<StateChange>, now: Instant) {
        let Some(w) = self.conn.as_mut().and_then(|c| c.writer.as_mut()) else {
            return;
        };
        if !matches!(w.state, WriterState::WaitingSnapshot) {
            return;
        }
        let mut tables = [0u64; TABLES.len()];
        for c in &changes {
            tables[table_of(&to_record(c))] += 1;
        }
        self.tables = tables;
        w.snapshot = self.next_snapshot;
        self.next_snapshot += 1;
        w.base_seq = seq;
        w.next_seq = seq + 1;
        w.sent_seq = seq;
        w.acked_seq = 0;
        w.started = now;
        w.bytes = 0;
        w.awaiting_ack = None;
        w.queue.clear();
        w.inflight.clear();
        w.state = WriterState::Sending {
            entries: changes.len() as u64,
            changes: changes.into_iter(),
            begun: false,
        };
    }

    /// A change from the local state stream.
    pub fn local_change(&mut self, event: StateEvent, now: Instant) {
        let max_queued = self.cfg.max_queued;
        let Some(w) = self.conn.as_mut().and_then(|c| c.writer.as_mut()) else {
            return;
        };
        if matches!(w.state, WriterState::WaitingSnapshot) || event.seq < w.next_seq {
            return;
        }
        if event.seq != w.next_seq {
            tracing::warn!(
                expected = w.next_seq,
                got = event.seq,
                "sync: gap in the local change stream; sending a new snapshot"
            );
            self.request_snapshot();
            return;
        }
        if w.queue.len() >= max_queued {
            tracing::warn!(
                queued = max_queued,
                "sync: the peer cannot keep up with the changes; dropping them and sending a new snapshot"
            );
            self.request_snapshot();
            return;
        }
        w.next_seq += 1;
        w.queue.push_back((event, now));
    }

    /// The local subscription lost events (`StreamError::Lagged`): only a snapshot helps.
    pub fn local_lagged(&mut self, _now: Instant) {
        if self.direction() == Direction::Writer {
            tracing::warn!("sync: the local change stream overflowed; sending a new snapshot");
            self.request_snapshot();
        }
    }

    /// A config version was committed here, or the running version changed (rollback).
    pub fn config_changed(&mut self, _now: Instant) {
        if self.direction() == Direction::Writer {
            self.send_config_head();
        }
    }

    fn send_config_head(&mut self) {
        let Some(head) = self.store.running() else {
            return;
        };
        let versions = self.store.versions();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let known: Vec<WireVersionId> = versions.iter().map(|m| (&m.id).into()).collect();
        let oldest_n = versions.iter().map(|m| m.id.n).min().unwrap_or(head.n);
        let _ = wire::encode_frame(
            &Frame::ConfigHead {
                head: (&head).into(),
                known,
                oldest_n,
            },
            &mut conn.out,
        );
        for meta in history::missing_for_peer(&versions, &head, &conn.peer_versions) {
            let Some(text) = self.store.text(&meta.id) else {
                continue;
            };
            let frame = Frame::ConfigVersion {
                meta: (&meta).into(),
                text: &text,
            };
            match wire::encode_frame(&frame, &mut conn.out) {
                Ok(_) => {
                    conn.peer_versions.insert(meta.id.clone());
                }
                Err(e) => {
                    tracing::error!(version = %meta.id, error = %e, "sync: cannot send a config version")
                }
            }
        }
    }

    // ---- reader inputs -----------------------------------------------------------------

    fn handle_config_head(&mut self, head: &WireVersionId, known: &[WireVersionId], oldest_n: u64) {
        if self.direction() != Direction::Reader {
            return;
        }
        let head: VersionId = head.into();
        let known: HashSet<VersionId> = known.iter().map(Into::into).collect();
        let winner = self
            .peer
            .as_ref()
            .map_or_else(String::new, |p| p.node.clone());
        if let Some(running) = self.store.running()
            && running != head
            && !self.kept.contains(&running)
        {
            let versions = self.store.versions();
            let branch = history::losing_branch(&versions, &running, &known, oldest_n);
            if !branch.is_empty() {
                let with_text: Vec<(VersionMeta, String)> = branch
                    .iter()
                    .filter_map(|m| self.store.text(&m.id).map(|t| (m.clone(), t)))
                    .collect();
                match self.store.keep_branch(&with_text, &head, &winner) {
                    Ok(kept) => {
                        self.kept.insert(running.clone());
                        tracing::warn!(branch = %kept.name, versions = kept.versions.len(), winner = %winner, "sync: versions committed here during a partition lost to the active box's history; kept and flagged");
                        self.counters.branches_kept += 1;
                        self.actions.push_back(Action::BranchKept(kept));
                        if let Some(conn) = self.conn.as_mut() {
                            let frame = Frame::BranchKept {
                                superseded_by: (&head).into(),
                                versions: with_text
                                    .iter()
                                    .map(|(m, t)| (WireVersionMeta::from(m), t.as_str()))
                                    .collect(),
                            };
                            let _ = wire::encode_frame(&frame, &mut conn.out);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sync: cannot keep the superseded branch")
                    }
                }
            }
        }
        let stored = self.store.versions().into_iter().find(|m| m.id == head);
        let running = self.store.running();
        let r = self.reader_mut().expect("reader direction");
        match stored {
            Some(meta) => {
                r.pending_head = None;
                if running.as_ref() != Some(&head) {
                    self.actions.push_back(Action::RunVersion(meta));
                }
            }
            None => r.pending_head = Some(head),
        }
    }

    fn handle_config_version(
        &mut self,
        meta: &WireVersionMeta,
        text: &str,
    ) -> Result<(), CloseReason> {
        if self.direction() != Direction::Reader {
            return Ok(());
        }
        let meta = VersionMeta::from(meta);
        self.store
            .put_replicated(&meta, text)
            .map_err(|e| CloseReason::Protocol(format!("config version {}: {e}", meta.id)))?;
        self.counters.versions_received += 1;
        tracing::info!(version = %meta.id, author = %meta.author, "sync: config version received from the active box");
        let r = self.reader_mut().expect("reader direction");
        if r.pending_head.as_ref() == Some(&meta.id) {
            r.pending_head = None;
            self.actions.push_back(Action::RunVersion(meta));
        }
        Ok(())
    }

    /// This box now runs the store's current version (tandemd ran a `RunVersion`, or
    /// started): the peer is told.
    pub fn config_running(&mut self, _now: Instant) {
        let id = self.store.running();
        if let Some(conn) = self.conn.as_mut()
            && conn.schema.is_some()
            && conn.closing.is_none()
        {
            let _ = wire::encode_frame(
                &Frame::ConfigRunning {
                    id: id.as_ref().map(Into::into),
                },
                &mut conn.out,
            );
        }
    }

    // ---- audit -------------------------------------------------------------------------

    /// The audit log changed: send the peer what it lacks.
    pub fn audit_changed(&mut self, _now: Instant) {
        self.send_audit();
    }

    fn send_audit(&mut self) {
        let marks: Vec<AuditMark> = self.store.audit_marks();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.schema.is_none() || conn.closing.is_some() {
            return;
        }
        for mark in marks {
            let peer_has = conn.peer_audit.get(&mark.origin).copied().unwrap_or(0);
            if mark.n <= peer_has {
                continue;
            }
            let entries = self.store.audit_since(&mark.origin, peer_has);
            for chunk in entries.chunks(1000) {
                let _ = wire::encode_frame(
                    &Frame::Audit {
                        entries: chunk.to_vec(),
                    },
                    &mut conn.out,
                );
            }
            conn.peer_audit.insert(mark.origin, mark.n);
        }
    }

    // ---- time and output ---------------------------------------------------------------

    /// Checks the deadlines: the peer's silence, our heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if now.saturating_duration_since(conn.last_recv) >= self.cfg.peer_timeout {
            let reason = CloseReason::Silent(self.cfg.peer_timeout);
            tracing::warn!(%reason, "sync: dropping the link");
            self.close(reason);
            return;
        }
        if conn.schema.is_some()
            && conn.out.is_empty()
            && now.saturating_duration_since(conn.last_sent) >= self.cfg.heartbeat
        {
            let _ = wire::encode_frame(&Frame::Heartbeat, &mut conn.out);
        }
    }

    /// The next deadline to call [`Engine::handle_timeout`] at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.conn.as_ref()?;
        if conn.closing.is_some() {
            return None;
        }
        let silent = conn.last_recv + self.cfg.peer_timeout;
        if conn.schema.is_some() {
            Some(silent.min(conn.last_sent + self.cfg.heartbeat))
        } else {
            Some(silent)
        }
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Bytes to send now (one or more whole frames), or None. Bulk frames (snapshot chunks,
    /// deltas) are made here, lazily, so output never runs far ahead of the socket.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let records_per_frame = self.cfg.records_per_frame;
        let max_unacked = self.cfg.max_unacked;
        let conn = self.conn.as_mut()?;
        if let Some(r) = conn.reader.as_mut()
            && let Some((snapshot, seq)) = r.ack.take()
        {
            let _ = wire::encode_frame(&Frame::Ack { snapshot, seq }, &mut conn.out);
        }
        if conn.closing.is_none()
            && conn.out.len() < OUT_HIGH_WATER
            && let Some(w) = conn.writer.as_mut()
        {
            fill_writer(
                w,
                &mut conn.out,
                &mut self.counters,
                records_per_frame,
                max_unacked,
                now,
            );
        }
        if conn.out.is_empty() {
            return None;
        }
        conn.last_sent = now;
        self.counters.bytes_sent += conn.out.len() as u64;
        Some(std::mem::take(&mut conn.out))
    }

    pub fn status(&self, now: Instant) -> EngineStatus {
        let conn = self.conn.as_ref();
        let writer = conn.and_then(|c| c.writer.as_ref());
        let (lag_ms, lag_entries) = writer.map_or((0, 0), |w| {
            let oldest = w
                .inflight
                .front()
                .map(|(_, t)| *t)
                .or_else(|| w.queue.front().map(|(_, t)| *t));
            let remaining_snapshot = match &w.state {
                WriterState::Sending { changes, .. } => changes.len() as u64,
                _ => 0,
            };
            (
                oldest.map_or(0, |t| {
                    u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
                }),
                w.queue.len() as u64
                    + w.sent_seq.saturating_sub(w.acked_seq.max(w.base_seq))
                    + remaining_snapshot,
            )
        });
        let mut samples: Vec<Duration> = self.lag_samples.iter().copied().collect();
        samples.sort_unstable();
        let lag_p99_ms = samples
            .get((samples.len() * 99).div_ceil(100).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        EngineStatus {
            role: self.role,
            connected: conn.is_some_and(|c| c.schema.is_some() && c.closing.is_none()),
            connected_since: conn.map(|c| c.since),
            schema: conn.and_then(|c| c.schema),
            direction: self.direction(),
            peer: self.peer.clone(),
            running: self.store.running(),
            last_snapshot: self.last_snapshot.clone(),
            lag_ms,
            lag_entries,
            lag_p99_ms,
            tables: TABLES.iter().copied().zip(self.tables).collect(),
            counters: self.counters.clone(),
        }
    }

    /// Forgets the acknowledgement delays measured so far (the bench measures phases apart).
    pub fn reset_lag_samples(&mut self) {
        self.lag_samples.clear();
    }
}

fn fill_writer(
    w: &mut Writer,
    out: &mut Vec<u8>,
    counters: &mut Counters,
    records_per_frame: usize,
    max_unacked: u64,
    now: Instant,
) {
    loop {
        if out.len() >= OUT_HIGH_WATER {
            return;
        }
        match &mut w.state {
            WriterState::WaitingSnapshot => return,
            WriterState::Sending {
                changes,
                begun,
                entries,
            } => {
                let entries = *entries;
                let before = out.len();
                if !*begun {
                    *begun = true;
                    let _ = wire::encode_frame(
                        &Frame::SnapshotBegin {
                            snapshot: w.snapshot,
                            base_seq: w.base_seq,
                            entries,
                        },
                        out,
                    );
                }
                let chunk: Vec<StateChange> = changes.by_ref().take(records_per_frame).collect();
                if chunk.is_empty() {
                    let _ = wire::encode_frame(
                        &Frame::SnapshotEnd {
                            snapshot: w.snapshot,
                        },
                        out,
                    );
                    w.bytes += (out.len() - before) as u64;
                    w.awaiting_ack = Some(entries);
                    w.state = WriterState::Live;
                    counters.snapshots_sent += 1;
                    continue;
                }
                let records: Vec<Record<'_>> = chunk.iter().map(to_record).collect();
                let frame = Frame::SnapshotChunk {
                    snapshot: w.snapshot,
                    records,
                };
                if let Err(e) = wire::encode_frame(&frame, out) {
                    tracing::error!(error = %e, "sync: cannot encode a snapshot chunk");
                }
                w.bytes += (out.len() - before) as u64;
            }
            WriterState::Live => {
                if w.queue.is_empty()
                    || w.sent_seq.saturating_sub(w.acked_seq.max(w.base_seq)) >= max_unacked
                {
                    return;
                }
                let n = w.queue.len().min(records_per_frame);
                let first_seq = w.queue[0].0.seq;
                let first_at = w.queue[0].1;
                let batch: Vec<(StateEvent, Instant)> = w.queue.drain(..n).collect();
                let records: Vec<Record<'_>> =
                    batch.iter().map(|(e, _)| to_record(&e.change)).collect();
                if let Err(e) = wire::encode_frame(&Frame::Deltas { first_seq, records }, out) {
                    tracing::error!(error = %e, "sync: cannot encode deltas");
                }
                w.sent_seq = first_seq + n as u64 - 1;
                w.inflight.push_back((w.sent_seq, first_at));
                counters.deltas_sent += n as u64;
                let _ = now;
            }
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
