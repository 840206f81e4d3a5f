//! The I/O task around the protocol core: one TCP+TLS connection to the peer, a thin tokio
//! loop that feeds the [`Engine`] bytes, role changes, the dataplane's change stream and the
//! time, and carries out its actions against `StateTables` and tandemd. This is the only part
//! of the crate that touches sockets and clocks.
//!
//! Who dials: the box whose certificate fingerprint is the smaller dials, the other listens,
//! so the pair never holds two connections. The dialer reconnects with exponential backoff
//! and jitter; the listener takes a newly authenticated connection in place of the old one
//! (the peer restarted before our dead-peer timeout noticed).

#![allow(clippy::disallowed_methods)] // the I/O task owns the clocks

use crate::backoff::{Backoff, random_unit};
use crate::engine::{Action, Engine, EngineConfig, PeerInfo, Role};
use crate::identity::{Fingerprint, Identity};
use crate::local::LocalStore;
use crate::pair::{PairView, PeerView};
use crate::pinning;
use crate::status::{ConfigSync, Lag, SnapshotStatus, SyncStatus};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_config::NodeConfig;
use tandem_config::store::{KeptBranch, VersionMeta};
use tandem_dataplane::{StateSubscription, StateTables, StreamError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsStream;

/// Everything the link needs, resolved from `node.sync` (or built by tests and benches).
#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub node: String,
    /// This box's management listener, told to the peer (named in edit refusals).
    pub management: String,
    /// Where this box listens (when it listens), and the source address it dials from.
    pub listen: SocketAddr,
    pub peer: SocketAddr,
    pub peer_fingerprint: Fingerprint,
    pub identity: Identity,
    pub heartbeat: Duration,
    pub peer_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Local changes queued for the peer before falling back to a snapshot.
    pub max_queued: usize,
}

impl SyncSettings {
    pub fn new(
        node: &str,
        management: &str,
        listen: SocketAddr,
        peer: SocketAddr,
        peer_fingerprint: Fingerprint,
        identity: Identity,
    ) -> Self {
        SyncSettings {
            node: node.to_owned(),
            management: management.to_owned(),
            listen,
            peer,
            peer_fingerprint,
            identity,
            heartbeat: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_queued: 1 << 18,
        }
    }

    /// The settings of `node.sync`, with this box's identity from its files or made at first
    /// start under `state_dir`. None for a box without a peer.
    pub fn from_node(node: &NodeConfig, state_dir: &Path) -> io::Result<Option<SyncSettings>> {
        let Some(sync) = &node.sync else {
            return Ok(None);
        };
        let identity = match (&sync.cert_file, &sync.key_file) {
            (Some(cert), Some(key)) => Identity::from_files(cert, key)?,
            _ => Identity::load_or_generate(state_dir, &node.name)?,
        };
        let peer_fingerprint = sync
            .peer_fingerprint_bytes()
            .map(Fingerprint)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "node.sync.peer_fingerprint is invalid",
                )
            })?;
        let mut s = SyncSettings::new(
            &node.name,
            &node.management.listen.to_string(),
            sync.listen_addr(),
            sync.peer_addr(),
            peer_fingerprint,
            identity,
        );
        s.heartbeat = sync.heartbeat.get();
        s.peer_timeout = sync.peer_timeout.get();
        Ok(Some(s))
    }

    /// Whether this box dials (its fingerprint is the smaller) or listens.
    pub fn dials(&self) -> bool {
        self.identity.fingerprint < self.peer_fingerprint
    }
}

/// What tandemd is told.
#[derive(Clone, Debug)]
pub enum SyncEvent {
    /// The active box runs `meta`, now stored here: apply it to the dataplane, make it
    /// current (`Store::set_current`), then call [`SyncHandle::config_running`].
    VersionReceived(VersionMeta),
    /// A branch of config versions lost to the active's history; kept and flagged.
    BranchKept(KeptBranch),
    PeerConnected(PeerInfo),
    PeerDisconnected {
        reason: String,
    },
    /// The passive peer asks this (active) box to hand the pair over to it: do it as
    /// `tandemctl failover` would, then call [`SyncHandle::answer_handover`] with `id`.
    HandoverAsked {
        id: u64,
        reason: String,
    },
}

#[derive(Debug)]
enum Command {
    ConfigChanged,
    ConfigRunning,
    Status(oneshot::Sender<SyncStatus>),
    Shutdown(oneshot::Sender<()>),
    AskHandover(String, oneshot::Sender<Result<(), String>>),
    AnswerHandover(u64, Option<String>),
}

/// The running link. Dropping it does not stop the task; call [`SyncHandle::shutdown`].
#[derive(Debug)]
pub struct SyncHandle {
    cmds: mpsc::UnboundedSender<Command>,
    status: Arc<Mutex<SyncStatus>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<SyncEvent>>>,
    pair: watch::Receiver<PairView>,
    fingerprint: Fingerprint,
    local_addr: Option<SocketAddr>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SyncHandle {
    /// The status as of at most 200 ms ago (for `/metrics`, which cannot wait).
    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The status now.
    pub async fn status_now(&self) -> SyncStatus {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Command::Status(tx)).is_err() {
            return self.status();
        }
        rx.await.unwrap_or_else(|_| self.status())
    }

    /// The events for tandemd (once; later calls get None).
    pub fn events(&self) -> Option<mpsc::UnboundedReceiver<SyncEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// A config version was committed here (or the current one changed by a rollback): the
    /// link sends it to the passive if this box writes. The text is read from the store.
    pub fn publish_version(&self, _meta: &VersionMeta) {
        let _ = self.cmds.send(Command::ConfigChanged);
    }

    /// This box now runs the store's current version (after a `VersionReceived`).
    pub fn config_running(&self) {
        let _ = self.cmds.send(Command::ConfigRunning);
    }

    /// Passive: asks the active peer to hand the pair over to this box, and waits for its
    /// answer — `Ok` once it has handed over (this box is then becoming active), `Err` with
    /// the peer's reason, or why it could not be asked (link down, older peer firmware).
    pub async fn ask_handover(&self, reason: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::AskHandover(reason.to_owned(), tx))
            .map_err(|_| "the sync link has stopped".to_owned())?;
        rx.await
            .unwrap_or_else(|_| Err("the sync link has stopped".into()))
    }

    /// The answer to a [`SyncEvent::HandoverAsked`]: `None` when this box handed over.
    pub fn answer_handover(&self, id: u64, refused: Option<String>) {
        let _ = self.cmds.send(Command::AnswerHandover(id, refused));
    }

    /// Role and peer, for refusing config edits on the passive box ([`PairView::check_edit`]).
    pub fn pair(&self) -> watch::Receiver<PairView> {
        self.pair.clone()
    }

    /// This box's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Where this box listens, if it is the listening side.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Tells the peer, closes the link, stops the tasks.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Command::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The sync link.
pub struct SyncLink;

impl SyncLink {
    /// Starts the link on the current tokio runtime: binds the listener (on the listening
    /// side) or starts dialing, and runs the protocol core against `tables` and `store`,
    /// following `role`.
    pub async fn start<S: LocalStore + 'static>(
        settings: SyncSettings,
        tables: StateTables,
        store: S,
        role: watch::Receiver<Role>,
    ) -> io::Result<SyncHandle> {
        if settings.identity.fingerprint == settings.peer_fingerprint {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "node.sync.peer_fingerprint is this box's own certificate: pin the peer's",
            ));
        }
        let refused = Arc::new(AtomicU64::new(0));
        let tls_err = |e: rustls::Error| io::Error::other(format!("sync TLS setup: {e}"));
        let (incoming_tx, incoming_rx) = mpsc::channel::<Established>(4);
        let mut tasks = Vec::new();
        let mut local_addr = None;
        let dials = settings.dials();
        if dials {
            let config =
                pinning::client_config(&settings.identity, settings.peer_fingerprint, &refused)
                    .map_err(tls_err)?;
            tasks.push(tokio::spawn(dial_loop(
                settings.clone(),
                tokio_rustls::TlsConnector::from(config),
                incoming_tx,
            )));
        } else {
            let config =
                pinning::server_config(&settings.identity, settings.peer_fingerprint, &refused)
                    .map_err(tls_err)?;
            let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("sync link cannot listen on {}: {e}", settings.listen),
                )
            })?;
            local_addr = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                tokio_rustls::TlsAcceptor::from(config),
                incoming_tx,
            )));
        }
        tracing::info!(
            fingerprint = %settings.identity.fingerprint,
            peer = %settings.peer,
            peer_fingerprint = %settings.peer_fingerprint,
            side = if dials { "dials" } else { "listens" },
            "sync link started"
        );

        let initial_role = *role.borrow();
        let mut cfg = EngineConfig::new(&settings.node, &settings.management);
        cfg.heartbeat = settings.heartbeat;
        cfg.peer_timeout = settings.peer_timeout;
        cfg.odd_epochs = dials;
        cfg.instance = (random_unit() * (1u64 << 52) as f64) as u64;
        cfg.max_queued = settings.max_queued;
        let engine = Engine::new(cfg, store, initial_role);
        let (pair_tx, pair_rx) = watch::channel(PairView {
            node: settings.node.clone(),
            role: initial_role,
            peer: None,
        });
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(SyncStatus::disabled(&settings.node)));
        let fingerprint = settings.identity.fingerprint;
        let task = Task {
            settings,
            engine,
            tables,
            role,
            pair: pair_tx,
            events: events_tx,
            status: status.clone(),
            refused,
            reconnects: 0,
            connections: 0,
            connected_since: None,
            last_error: None,
            sub: None,
            read: None,
            out: None,
            done: None,
            pending: None,
            handovers: HashMap::new(),
            next_handover: 1,
        };
        tasks.push(tokio::spawn(task.run(cmd_rx, incoming_rx)));
        Ok(SyncHandle {
            cmds: cmd_tx,
            status,
            events: Mutex::new(Some(events_rx)),
            pair: pair_rx,
            fingerprint,
            local_addr,
            tasks: Mutex::new(tasks),
        })
    }
}

/// An authenticated connection handed to the main task.
struct Established {
    stream: TlsStream<TcpStream>,
    addr: SocketAddr,
    /// Dropped when the connection ends (the dialer then dials again).
    done: Option<oneshot::Sender<()>>,
}

/// At most one line per period per kind of problem, with a count of those left out.
struct LogLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimit {
    const PERIOD: Duration = Duration::from_secs(10);

    fn new() -> Self {
        LogLimit {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Some(number left out since the last line) when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Self::PERIOD) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<Established>,
) {
    let refused_log = Arc::new(LogLimit::new());
    let failed_log = Arc::new(LogLimit::new());
    // A flood of handshakes must not eat the box: a few at a time.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(8));
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "sync: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        let (refused_log, failed_log) = (refused_log.clone(), failed_log.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx
                        .send(Established {
                            stream: TlsStream::Server(tls),
                            addr,
                            done: None,
                        })
                        .await;
                }
                Ok(Err(e)) => match pinning::pin_mismatch(&e) {
                    Some(m) => {
                        if let Some(left_out) = refused_log.allow() {
                            tracing::error!(from = %addr, got = %m.got, pinned = %m.want, left_out, "sync: refused a connection: {m}");
                        }
                    }
                    None => {
                        if let Some(left_out) = failed_log.allow() {
                            tracing::warn!(from = %addr, error = %e, left_out, "sync: TLS handshake with a connecting box failed");
                        }
                    }
                },
                Err(_) => {
                    if let Some(left_out) = failed_log.allow() {
                        tracing::warn!(from = %addr, left_out, "sync: TLS handshake timed out");
                    }
                }
            }
        });
    }
}

async fn dial_loop(
    settings: SyncSettings,
    connector: tokio_rustls::TlsConnector,
    tx: mpsc::Sender<Established>,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let refused_log = LogLimit::new();
    let failed_log = LogLimit::new();
    let name = rustls::pki_types::ServerName::try_from(pinning::SERVER_NAME).expect("a valid name");
    loop {
        let attempt = async {
            let socket = if settings.peer.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if !settings.listen.ip().is_unspecified() {
                socket.bind(SocketAddr::new(settings.listen.ip(), 0))?;
            }
            let tcp = socket.connect(settings.peer).await?;
            tcp.set_nodelay(true)?;
            connector.connect(name.clone(), tcp).await
        };
        match tokio::time::timeout(settings.connect_timeout, attempt).await {
            Ok(Ok(tls)) => {
                let (done_tx, done_rx) = oneshot::channel();
                let up = Instant::now();
                let est = Established {
                    stream: TlsStream::Client(tls),
                    addr: settings.peer,
                    done: Some(done_tx),
                };
                if tx.send(est).await.is_err() {
                    return;
                }
                let _ = done_rx.await;
                if up.elapsed() > Duration::from_secs(10) {
                    backoff.reset();
                }
            }
            Ok(Err(e)) => match pinning::pin_mismatch(&e) {
                Some(m) => {
                    if let Some(left_out) = refused_log.allow() {
                        tracing::error!(peer = %settings.peer, got = %m.got, pinned = %m.want, left_out, "sync: the box at the peer address is not the pinned peer: {m}");
                    }
                }
                None => {
                    if let Some(left_out) = failed_log.allow() {
                        tracing::warn!(peer = %settings.peer, error = %e, left_out, "sync: cannot reach the peer");
                    }
                }
            },
            Err(_) => {
                if let Some(left_out) = failed_log.allow() {
                    tracing::warn!(peer = %settings.peer, left_out, "sync: connecting to the peer timed out");
                }
            }
        }
        tokio::time::sleep(backoff.delay(random_unit())).await;
    }
}

struct Task<S: LocalStore> {
    settings: SyncSettings,
    engine: Engine<S>,
    tables: StateTables,
    role: watch::Receiver<Role>,
    pair: watch::Sender<PairView>,
    events: mpsc::UnboundedSender<SyncEvent>,
    status: Arc<Mutex<SyncStatus>>,
    refused: Arc<AtomicU64>,
    reconnects: u64,
    connections: u64,
    connected_since: Option<SystemTime>,
    last_error: Option<String>,
    sub: Option<StateSubscription>,
    read: Option<ReadHalf<TlsStream<TcpStream>>>,
    out: Option<mpsc::Sender<Vec<u8>>>,
    done: Option<oneshot::Sender<()>>,
    pending: Option<Vec<u8>>,
    /// Handover requests sent to the peer, waiting for its answer (failed if the link drops).
    handovers: HashMap<u64, oneshot::Sender<Result<(), String>>>,
    next_handover: u64,
}

/// Buffers between the loop and a connection's writer task (each one or more frames).
const WRITE_QUEUE: usize = 8;

impl<S: LocalStore + 'static> Task<S> {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Command>,
        mut incoming: mpsc::Receiver<Established>,
    ) {
        let mut audit = self.engine.store().audit_watch();
        let mut buf = vec![0u8; 64 * 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop: Option<oneshot::Sender<()>> = None;
        let mut role_open = true;
        loop {
            self.act();
            if self.pending.is_none() && self.out.is_some() {
                self.pending = self.engine.poll_transmit(Instant::now());
            }
            if let Some(done) = stop.take() {
                if self.pending.is_none() {
                    self.drop_connection(None);
                    self.publish_status();
                    let _ = done.send(());
                    return;
                }
                stop = Some(done);
            }
            let deadline = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let wants = self.engine.wants_changes() && self.sub.is_some();
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Command::ConfigChanged) => self.engine.config_changed(Instant::now()),
                    Some(Command::ConfigRunning) => self.engine.config_running(Instant::now()),
                    Some(Command::Status(tx)) => { let _ = tx.send(self.build_status()); }
                    Some(Command::AskHandover(reason, tx)) => self.ask_handover(&reason, tx),
                    Some(Command::AnswerHandover(id, refused)) => {
                        self.engine.answer_handover(id, refused)
                    }
                    Some(Command::Shutdown(done)) => {
                        self.engine.shutdown("the peer is shutting down");
                        stop = Some(done);
                        if self.out.is_none() {
                            let _ = stop.take().map(|d| d.send(()));
                            return;
                        }
                    }
                    None => return,
                },
                Some(est) = incoming.recv() => self.install(est),
                changed = self.role.changed(), if role_open => {
                    if changed.is_ok() {
                        let role = *self.role.borrow_and_update();
                        self.engine.set_role(role, Instant::now());
                        self.pair.send_modify(|p| p.role = role);
                    } else {
                        // The role's sender is gone (tandemd stopping): keep the last role.
                        role_open = false;
                    }
                }
                n = read_some(&mut self.read, &mut buf) => match n {
                    Ok(0) => self.lost("the peer closed the connection".into()),
                    Ok(n) => { let _ = self.engine.handle_input(&buf[..n], Instant::now()); }
                    Err(e) => self.lost(format!("connection lost: {e}")),
                },
                permit = reserve(self.out.clone()), if self.pending.is_some() => match permit {
                    Some(permit) => { permit.send(self.pending.take().expect("pending output")); }
                    None => self.lost("the connection's writer stopped".into()),
                },
                ev = next_event(&mut self.sub), if wants => self.local_events(ev),
                _ = audit_changed(&mut audit) => self.engine.audit_changed(Instant::now()),
                _ = sleep_until(deadline) => self.engine.handle_timeout(Instant::now()),
                _ = tick.tick() => self.publish_status(),
            }
        }
    }

    /// Carries out the core's actions.
    fn act(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::TakeSnapshot => {
                    // Subscribe first: every change after the snapshot's sequence number is
                    // then in the subscription (state_stream.rs).
                    let sub = self.tables.subscribe();
                    let (seq, changes) = self.tables.snapshot();
                    self.sub = Some(sub);
                    self.engine.snapshot_taken(seq, changes, Instant::now());
                }
                Action::StopChanges => self.sub = None,
                Action::Apply(changes) => {
                    for c in changes {
                        self.tables.apply_remote(c);
                    }
                }
                Action::RunVersion(meta) => {
                    let _ = self.events.send(SyncEvent::VersionReceived(meta));
                }
                Action::BranchKept(b) => {
                    let _ = self.events.send(SyncEvent::BranchKept(b));
                }
                Action::Peer(info) => {
                    self.pair.send_modify(|p| {
                        p.peer = Some(PeerView {
                            node: info.node.clone(),
                            management: info.management.clone(),
                            role: info.role,
                            connected: true,
                        })
                    });
                    let _ = self.events.send(SyncEvent::PeerConnected(info));
                    self.publish_status();
                }
                Action::HandoverAsked { id, reason } => {
                    let _ = self.events.send(SyncEvent::HandoverAsked { id, reason });
                }
                Action::HandoverAnswered { id, refused } => {
                    if let Some(tx) = self.handovers.remove(&id) {
                        let _ = tx.send(refused.map_or(Ok(()), Err));
                    }
                }
                Action::Disconnect(reason) => {
                    let text = reason.to_string();
                    match reason {
                        crate::engine::CloseReason::Local(_) => {}
                        crate::engine::CloseReason::PeerClosed(_)
                        | crate::engine::CloseReason::Silent(_) => {
                            tracing::warn!(reason = %text, "sync: link closed")
                        }
                        _ => tracing::error!(reason = %text, "sync: link dropped"),
                    }
                    // Let the goodbye frame go out, then drop the connection.
                    if let (Some(out), Some(bytes)) =
                        (&self.out, self.engine.poll_transmit(Instant::now()))
                    {
                        let _ = out.try_send(bytes);
                    }
                    self.pending = None;
                    self.drop_connection(Some(text));
                }
            }
        }
    }

    fn local_events(&mut self, first: Result<tandem_dataplane::StateEvent, StreamError>) {
        let now = Instant::now();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(ev) = next.take() {
            match ev {
                Ok(ev) => self.engine.local_change(ev, now),
                Err(StreamError::Lagged { .. }) => {
                    self.sub = None;
                    self.engine.local_lagged(now);
                    return;
                }
                Err(StreamError::Closed) => {
                    self.sub = None;
                    return;
                }
            }
            n += 1;
            if n >= 4096 || !self.engine.wants_changes() {
                return;
            }
            next = match self.sub.as_mut().map(|s| s.try_recv()) {
                Some(Ok(Some(ev))) => Some(Ok(ev)),
                Some(Err(e)) => Some(Err(e)),
                _ => None,
            };
        }
    }

    fn install(&mut self, est: Established) {
        if self.read.is_some() {
            tracing::info!(from = %est.addr, "sync: the peer connected again; replacing the old connection");
            self.drop_connection(Some("replaced by a new connection".into()));
        }
        let (read, mut write) = tokio::io::split(est.stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        });
        self.connections += 1;
        if self.connections > 1 {
            self.reconnects += 1;
        }
        self.read = Some(read);
        self.out = Some(tx);
        self.done = est.done;
        self.connected_since = Some(SystemTime::now());
        tracing::info!(peer = %est.addr, "sync: TLS connection to the pinned peer established");
        self.engine.connected(Instant::now());
    }

    fn ask_handover(&mut self, reason: &str, tx: oneshot::Sender<Result<(), String>>) {
        let id = self.next_handover;
        self.next_handover += 1;
        match self.engine.ask_handover(id, reason) {
            Ok(()) => {
                self.handovers.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    fn lost(&mut self, reason: String) {
        tracing::warn!(%reason, "sync: link down");
        self.pending = None;
        self.drop_connection(Some(reason));
    }

    fn drop_connection(&mut self, reason: Option<String>) {
        let had = self.read.take().is_some();
        self.out = None;
        self.done = None;
        self.connected_since = None;
        if !had {
            return;
        }
        self.engine.disconnected(Instant::now());
        self.sub = None;
        for (_, tx) in self.handovers.drain() {
            let _ = tx.send(Err(format!(
                "the sync link went down before the peer answered{}",
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )));
        }
        if let Some(r) = &reason {
            self.last_error = Some(r.clone());
        }
        self.pair.send_modify(|p| {
            if let Some(peer) = p.peer.as_mut() {
                peer.connected = false;
            }
        });
        let _ = self.events.send(SyncEvent::PeerDisconnected {
            reason: reason.unwrap_or_default(),
        });
        self.act();
        self.publish_status();
    }

    fn build_status(&self) -> SyncStatus {
        let now = Instant::now();
        let st = self.engine.status(now);
        let unix = |at: Instant| {
            let ago = now.saturating_duration_since(at);
            SystemTime::now()
                .checked_sub(ago)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        };
        let mut tables: std::collections::BTreeMap<String, u64> = st
            .tables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        tables.insert("persistence".into(), self.tables.persistence_len() as u64);
        let peer_running = st.peer.as_ref().and_then(|p| p.running.clone());
        SyncStatus {
            node: self.settings.node.clone(),
            fingerprint: self.settings.identity.fingerprint.to_string(),
            peer_fingerprint: self.settings.peer_fingerprint.to_string(),
            peer_address: self.settings.peer.to_string(),
            dials: self.settings.dials(),
            role: st.role,
            connected: st.connected,
            connected_since_unix: self
                .connected_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            schema: st.schema,
            direction: st.direction,
            config: ConfigSync {
                same: st.running.is_some() && st.running == peer_running,
                local: st.running.clone(),
                peer: peer_running,
                branches_kept: st.counters.branches_kept,
            },
            peer: st.peer.clone(),
            last_snapshot: st.last_snapshot.as_ref().map(|s| SnapshotStatus {
                sent: s.sent,
                entries: s.entries,
                bytes: s.bytes,
                duration_ms: s.duration.as_secs_f64() * 1000.0,
                at_unix: unix(s.finished),
            }),
            lag: Lag {
                ms: st.lag_ms,
                entries: st.lag_entries,
                p99_ms: st.lag_p99_ms,
            },
            tables,
            counters: st.counters.clone(),
            refused_peers: self.refused.load(Ordering::Relaxed),
            reconnects: self.reconnects,
            last_error: self.last_error.clone(),
        }
    }

    fn publish_status(&self) {
        let s = self.build_status();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

async fn read_some(
    read: &mut Option<ReadHalf<TlsStream<TcpStream>>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match read.as_mut() {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn reserve(out: Option<mpsc::Sender<Vec<u8>>>) -> Option<mpsc::OwnedPermit<Vec<u8>>> {
    match out {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_event(
    sub: &mut Option<StateSubscription>,
) -> Result<tandem_dataplane::StateEvent, StreamError> {
    match sub.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn audit_changed(audit: &mut Option<watch::Receiver<u64>>) {
    match audit.as_mut() {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *audit = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
