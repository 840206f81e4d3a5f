//! The protocol core between two simulated boxes: an in-memory pipe, a simulated clock per
//! box, a toy state table per box. No socket, no real time; every test runs in milliseconds.

use super::*;
use crate::audit::NewAuditEntry;
use crate::local::MemoryStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use tandem_dataplane::persistence::{PersistenceEntry, PersistenceKey};

type Key = (String, std::net::IpAddr);

/// One simulated box: the core, its clock, its tables and what it was asked to do.
struct Sim {
    e: Engine<MemoryStore>,
    now: Instant,
    /// The local tables (persistence only, plus the last ticket-key record) by key.
    state: BTreeMap<Key, StateChange>,
    seq: u64,
    subscribed: bool,
    events: VecDeque<StateEvent>,
    /// What the peer replicated here, in order.
    applied: Vec<StateChange>,
    run: Vec<VersionMeta>,
    kept: Vec<KeptBranch>,
    closed: Vec<CloseReason>,
    snapshots_taken: usize,
    /// Handover requests from the peer, and the peer's answers to ours.
    handovers_asked: Vec<(u64, String)>,
    handover_answers: Vec<(u64, Option<String>)>,
    /// Bytes sent and not yet delivered (held back when the link "stalls").
    wire: Vec<u8>,
}

fn entry(i: u32, server: &str, remaining: Duration) -> StateChange {
    StateChange::PersistenceInsert(PersistenceEntry {
        key: PersistenceKey {
            service: Arc::from("web"),
            client: std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
        },
        pool: Arc::from("p"),
        server: Arc::from(server),
        remaining,
    })
}

fn key_of(c: &StateChange) -> Option<Key> {
    match c {
        StateChange::PersistenceInsert(e) | StateChange::PersistenceRefresh(e) => {
            Some((e.key.service.to_string(), e.key.client))
        }
        StateChange::PersistenceExpire(k) => Some((k.service.to_string(), k.client)),
        _ => None,
    }
}

#[allow(clippy::disallowed_methods)] // the simulated clocks' origin
fn origin() -> Instant {
    Instant::now()
}

impl Sim {
    fn new(node: &str, role: Role, odd: bool, now: Instant) -> Sim {
        let mut cfg = EngineConfig::new(node, &format!("192.0.2.{}:443", if odd { 1 } else { 2 }));
        cfg.odd_epochs = odd;
        cfg.instance = u64::from(odd) + 1;
        Sim::with_config(cfg, role, now)
    }

    fn with_config(cfg: EngineConfig, role: Role, now: Instant) -> Sim {
        let store = MemoryStore::new(&cfg.node);
        Sim {
            e: Engine::new(cfg, store, role),
            now,
            state: BTreeMap::new(),
            seq: 0,
            subscribed: false,
            events: VecDeque::new(),
            applied: Vec::new(),
            run: Vec::new(),
            kept: Vec::new(),
            closed: Vec::new(),
            snapshots_taken: 0,
            handovers_asked: Vec::new(),
            handover_answers: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// A change made by this box's dataplane.
    fn publish(&mut self, change: StateChange) {
        self.seq += 1;
        if let Some(k) = key_of(&change) {
            if matches!(change, StateChange::PersistenceExpire(_)) {
                self.state.remove(&k);
            } else {
                self.state.insert(k, change.clone());
            }
        }
        if self.subscribed {
            self.events.push_back(StateEvent {
                seq: self.seq,
                change,
            });
        }
    }

    /// The persistence state the peer's changes built here.
    fn replica(&self) -> BTreeMap<Key, Arc<str>> {
        let mut m = BTreeMap::new();
        for c in &self.applied {
            match c {
                StateChange::PersistenceInsert(e) | StateChange::PersistenceRefresh(e) => {
                    m.insert((e.key.service.to_string(), e.key.client), e.server.clone());
                }
                StateChange::PersistenceExpire(k) => {
                    m.remove(&(k.service.to_string(), k.client));
                }
                _ => {}
            }
        }
        m
    }

    fn live(&self) -> BTreeMap<Key, Arc<str>> {
        self.state
            .iter()
            .filter_map(|(k, c)| match c {
                StateChange::PersistenceInsert(e) | StateChange::PersistenceRefresh(e) => {
                    Some((k.clone(), e.server.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Carries out the core's actions as the I/O task would.
    fn act(&mut self) {
        while let Some(a) = self.e.poll_action() {
            match a {
                Action::TakeSnapshot => {
                    self.snapshots_taken += 1;
                    self.subscribed = true;
                    self.events.clear();
                    let changes = self.state.values().cloned().collect();
                    self.e.snapshot_taken(self.seq, changes, self.now);
                }
                Action::StopChanges => {
                    self.subscribed = false;
                    self.events.clear();
                }
                Action::Apply(changes) => self.applied.extend(changes),
                Action::RunVersion(meta) => {
                    assert!(self.e.store_mut().set_current(&meta.id));
                    self.run.push(meta);
                    self.e.config_running(self.now);
                }
                Action::BranchKept(b) => self.kept.push(b),
                Action::Peer(_) => {}
                Action::Disconnect(r) => self.closed.push(r),
                Action::HandoverAsked { id, reason } => self.handovers_asked.push((id, reason)),
                Action::HandoverAnswered { id, refused } => {
                    self.handover_answers.push((id, refused))
                }
            }
        }
        if self.e.wants_changes() {
            while let Some(ev) = self.events.pop_front() {
                self.e.local_change(ev, self.now);
            }
        }
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.e.poll_transmit(self.now) {
            self.wire.extend_from_slice(&bytes);
        }
    }
}

/// Runs both boxes until nothing moves. Returns whether each side's input was accepted.
fn pump(a: &mut Sim, b: &mut Sim) {
    for _ in 0..10_000 {
        a.act();
        b.act();
        a.flush();
        b.flush();
        if a.wire.is_empty() && b.wire.is_empty() {
            a.act();
            b.act();
            a.flush();
            b.flush();
            if a.wire.is_empty() && b.wire.is_empty() {
                return;
            }
        }
        let to_b = std::mem::take(&mut a.wire);
        let to_a = std::mem::take(&mut b.wire);
        if !to_b.is_empty() {
            let _ = b.e.handle_input(&to_b, b.now);
        }
        if !to_a.is_empty() {
            let _ = a.e.handle_input(&to_a, a.now);
        }
    }
    panic!("the pair never went quiet");
}

fn connect(a: &mut Sim, b: &mut Sim) {
    a.e.connected(a.now);
    b.e.connected(b.now);
    pump(a, b);
}

fn disconnect(a: &mut Sim, b: &mut Sim) {
    a.e.disconnected(a.now);
    b.e.disconnected(b.now);
    a.act();
    b.act();
    a.wire.clear();
    b.wire.clear();
}

fn advance(s: &mut Sim, d: Duration) {
    s.now += d;
    s.e.handle_timeout(s.now);
}

fn pair() -> (Sim, Sim) {
    let t = origin();
    (
        Sim::new("lb-a", Role::Active, true, t),
        Sim::new("lb-b", Role::Passive, false, t),
    )
}

#[test]
fn a_snapshot_then_ordered_deltas_rebuild_the_active_state() {
    let (mut a, mut b) = pair();
    for i in 0..10_000 {
        a.publish(entry(i, "s1", Duration::from_secs(600)));
    }
    connect(&mut a, &mut b);
    assert_eq!(a.e.direction(), Direction::Writer);
    assert_eq!(b.e.direction(), Direction::Reader);
    assert_eq!(b.replica().len(), 10_000);
    assert_eq!(b.replica(), a.live());
    let st = a.e.status(a.now);
    let snap = st.last_snapshot.expect("the snapshot was acknowledged");
    assert!(snap.sent);
    assert_eq!(snap.entries, 10_000);
    assert!(
        snap.bytes > 10_000 * 10 && snap.bytes < 10_000 * 40,
        "{} bytes",
        snap.bytes
    );
    assert_eq!(st.tables["persistence"], 10_000);

    // Deltas: re-pins, expiries, new entries, in order.
    for i in 0..100 {
        a.publish(entry(i, "s2", Duration::from_secs(600)));
    }
    for i in 100..150 {
        let k = key_of(&entry(i, "x", Duration::ZERO)).unwrap();
        a.publish(StateChange::PersistenceExpire(PersistenceKey {
            service: Arc::from(k.0.as_str()),
            client: k.1,
        }));
    }
    pump(&mut a, &mut b);
    assert_eq!(b.replica(), a.live());
    assert_eq!(b.replica().len(), 9_950);
    let st = a.e.status(a.now);
    assert_eq!(
        (st.lag_entries, st.lag_ms),
        (0, 0),
        "everything acknowledged"
    );
    assert_eq!(st.counters.deltas_sent, 150);
    assert_eq!(b.e.status(b.now).counters.deltas_applied, 150);
    assert_eq!(a.snapshots_taken, 1, "no second snapshot");
}

#[test]
fn a_gap_in_the_stream_forces_a_new_snapshot() {
    let (mut a, mut b) = pair();
    for i in 0..100 {
        a.publish(entry(i, "s1", Duration::from_secs(600)));
    }
    connect(&mut a, &mut b);
    assert_eq!(a.snapshots_taken, 1);

    // A frame from the writer that skips sequence numbers (as if one had been lost).
    let mut bogus = Vec::new();
    wire::encode_frame(
        &Frame::Deltas {
            first_seq: 1_000,
            records: vec![to_record(&entry(7, "bogus", Duration::from_secs(1)))],
        },
        &mut bogus,
    )
    .unwrap();
    b.e.handle_input(&bogus, b.now).unwrap();
    a.publish(entry(500, "s1", Duration::from_secs(600)));
    pump(&mut a, &mut b);
    assert_eq!(a.snapshots_taken, 2, "the reader asked for a new snapshot");
    assert_eq!(b.e.status(b.now).counters.snapshots_received, 2);
    assert_eq!(a.e.status(a.now).counters.forced_snapshots, 1);
    // The bogus delta was never applied; the new snapshot restored the truth.
    assert!(
        !b.applied
            .iter()
            .any(|c| matches!(c, StateChange::PersistenceInsert(e) if &*e.server == "bogus"))
    );
    assert_eq!(b.replica(), a.live());

    // A lagged local subscription: the same.
    a.e.local_lagged(a.now);
    pump(&mut a, &mut b);
    assert_eq!(a.snapshots_taken, 3);
    assert_eq!(b.replica(), a.live());

    // A local gap (an event missing from the subscription).
    a.publish(entry(600, "s1", Duration::from_secs(600)));
    a.events.clear();
    a.publish(entry(601, "s1", Duration::from_secs(600)));
    pump(&mut a, &mut b);
    assert_eq!(a.snapshots_taken, 4);
    assert_eq!(b.replica(), a.live());
}

#[test]
fn acknowledgements_give_the_lag_in_entries_and_milliseconds() {
    let (mut a, mut b) = pair();
    connect(&mut a, &mut b);
    for i in 0..50 {
        a.publish(entry(i, "s1", Duration::from_secs(600)));
    }
    a.act();
    a.flush();
    // The reader is slow: 30 ms pass before its ack comes back.
    a.now += Duration::from_millis(30);
    b.now += Duration::from_millis(30);
    let st = a.e.status(a.now);
    assert_eq!(st.lag_entries, 50);
    assert_eq!(st.lag_ms, 30);
    let bytes = std::mem::take(&mut a.wire);
    b.e.handle_input(&bytes, b.now).unwrap();
    b.act();
    b.flush();
    let ack = std::mem::take(&mut b.wire);
    a.e.handle_input(&ack, a.now).unwrap();
    let st = a.e.status(a.now);
    assert_eq!((st.lag_entries, st.lag_ms), (0, 0));
    assert!((st.lag_p99_ms - 30.0).abs() < 0.01, "{}", st.lag_p99_ms);
}

#[test]
fn schema_versions_n_and_n_minus_1_are_accepted_and_others_refused() {
    let n = 2;
    let t = origin();
    let mk = |node: &str, role, speaks| {
        let mut cfg = EngineConfig::new(node, "192.0.2.1:443");
        cfg.speaks = speaks;
        Sim::with_config(cfg, role, t)
    };
    for (peer, want) in [
        (Speaks::at(n), Some(n)),
        (Speaks::at(n - 1), Some(n - 1)),
        (Speaks::at(n + 1), Some(n)),
        (
            Speaks {
                min: n + 1,
                max: n + 1,
            },
            None,
        ),
        (
            Speaks {
                min: n - 1,
                max: n - 1,
            },
            Some(n - 1),
        ),
        (Speaks::at(n + 2), None),
        (Speaks { min: 0, max: 0 }, None),
    ] {
        let mut a = mk("lb-a", Role::Active, Speaks::at(n));
        let mut b = mk("lb-b", Role::Passive, peer);
        a.publish(entry(1, "s1", Duration::from_secs(60)));
        connect(&mut a, &mut b);
        match want {
            Some(v) => {
                assert_eq!(a.e.peer().unwrap().schema, v, "peer {peer:?}");
                assert_eq!(b.e.peer().unwrap().schema, v, "peer {peer:?}");
                assert_eq!(b.replica().len(), 1);
            }
            None => {
                assert!(
                    matches!(a.closed.as_slice(), [CloseReason::Version(_)]),
                    "peer {peer:?}: {:?}",
                    a.closed
                );
                assert!(
                    matches!(b.closed.as_slice(), [CloseReason::Version(_)]),
                    "peer {peer:?}: {:?}",
                    b.closed
                );
                assert_eq!(a.e.status(a.now).counters.version_refused, 1);
                assert!(
                    b.applied.is_empty(),
                    "nothing was read from a peer we cannot speak to"
                );
                let msg = a.closed[0].to_string();
                assert!(
                    msg.contains("no common version") && msg.contains("upgrade"),
                    "{msg}"
                );
            }
        }
    }
}

#[test]
fn a_malformed_frame_drops_the_connection_and_is_counted() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 0],
        {
            let mut v = Vec::new();
            wire::encode_frame(&Frame::Heartbeat, &mut v).unwrap();
            v[3] += 1; // the length claims a byte the body does not use
            v.push(0);
            v
        },
    ];
    for garbage in cases {
        let (mut a, mut b) = pair();
        connect(&mut a, &mut b);
        let r = b.e.handle_input(&garbage, b.now);
        assert!(
            matches!(r, Err(CloseReason::Malformed(_))),
            "{garbage:?}: {r:?}"
        );
        b.act();
        assert!(matches!(b.closed.as_slice(), [CloseReason::Malformed(_)]));
        assert_eq!(b.e.status(b.now).counters.malformed_frames, 1);
        // The peer is told why before the link goes.
        b.flush();
        let bye = std::mem::take(&mut b.wire);
        assert!(matches!(
            a.e.handle_input(&bye, a.now),
            Err(CloseReason::PeerClosed(_))
        ));
        // Nothing more is read on the dropped connection.
        assert!(b.e.handle_input(b"more", b.now).is_ok());
    }
    // A peer that is not a sync link at all.
    let (mut a, mut b) = pair();
    a.e.connected(a.now);
    b.e.connected(b.now);
    let r = b.e.handle_input(b"\0\0\0\x10GET / HTTP/1.1\r\n\r\n", b.now);
    assert!(matches!(r, Err(CloseReason::Malformed(m)) if m.contains("hello")));
}

#[test]
fn a_role_swap_reverses_the_direction_and_starts_a_new_epoch() {
    let (mut a, mut b) = pair();
    assert_eq!(a.e.store().epoch, 1, "the active box began an odd epoch");
    for i in 0..10 {
        a.publish(entry(i, "from-a", Duration::from_secs(600)));
    }
    connect(&mut a, &mut b);
    assert_eq!(b.replica(), a.live());

    // The passive box's own state (its health checks, its pins after it takes over).
    for i in 100..120 {
        b.publish(entry(i, "from-b", Duration::from_secs(600)));
    }
    // A hands over: first A passive (both passive: nothing flows), then B active.
    a.e.set_role(Role::Passive, a.now);
    pump(&mut a, &mut b);
    assert_eq!(a.e.direction(), Direction::Idle);
    b.e.set_role(Role::Active, b.now);
    pump(&mut a, &mut b);
    assert_eq!(b.e.direction(), Direction::Writer);
    assert_eq!(a.e.direction(), Direction::Reader);
    assert_eq!(b.snapshots_taken, 1);
    assert_eq!(a.replica(), b.live());
    assert_eq!(
        b.e.store().epoch,
        2,
        "the new writer began an even epoch above 1"
    );
    b.publish(entry(200, "from-b", Duration::from_secs(600)));
    pump(&mut a, &mut b);
    assert_eq!(a.replica(), b.live());
    assert!(!a.subscribed && b.subscribed);
}

#[test]
fn a_passive_offline_during_three_commits_catches_up_on_reconnect() {
    let (mut a, mut b) = pair();
    a.e.store_mut().commit("v1", "lb-a");
    connect(&mut a, &mut b);
    assert_eq!(b.e.store().current, a.e.store().current);
    disconnect(&mut a, &mut b);
    let mut last = None;
    for i in 2..=4 {
        last = Some(a.e.store_mut().commit(&format!("v{i}"), "lb-a"));
        a.e.config_changed(a.now);
    }
    connect(&mut a, &mut b);
    let last = last.unwrap();
    assert_eq!(b.e.store().current.as_ref(), Some(&last.id));
    assert_eq!(
        b.e.store().versions.len(),
        4,
        "the three versions are all stored"
    );
    assert_eq!(b.run.last().map(|m| &m.id), Some(&last.id));
    assert_eq!(
        a.e.peer().unwrap().running.as_ref(),
        Some(&last.id),
        "the active box sees the passive on its version"
    );
    // A live commit reaches the passive at once.
    let v5 = a.e.store_mut().commit("v5", "lb-a");
    a.e.config_changed(a.now);
    pump(&mut a, &mut b);
    assert_eq!(b.e.store().current.as_ref(), Some(&v5.id));
    assert_eq!(b.e.store().current_text(), Some("v5"));
    assert_eq!(
        b.e.peer().unwrap().running.as_ref(),
        Some(&v5.id),
        "the passive sees the active on its new version"
    );
    // A rollback on the active (an old version becomes current): followed, nothing resent.
    let v2 = a.e.store().versions.get(&(1, 2)).unwrap().0.clone();
    a.e.store_mut().set_current(&v2.id);
    let before = b.e.status(b.now).counters.versions_received;
    a.e.config_changed(a.now);
    pump(&mut a, &mut b);
    assert_eq!(b.e.store().current.as_ref(), Some(&v2.id));
    assert_eq!(b.e.status(b.now).counters.versions_received, before);
    assert!(b.kept.is_empty(), "a rollback is not a partition");
}

#[test]
fn after_a_partition_the_active_history_wins_and_the_other_branch_is_kept() {
    let (mut a, mut b) = pair();
    let base = a.e.store_mut().commit("base", "lb-a");
    connect(&mut a, &mut b);
    assert_eq!(b.e.store().current.as_ref(), Some(&base.id));

    // Partition: B takes over too; both commit.
    disconnect(&mut a, &mut b);
    b.e.set_role(Role::Active, b.now);
    let a1 = a.e.store_mut().commit("a1", "lb-a");
    let a2 = a.e.store_mut().commit("a2", "lb-a");
    let b1 = b.e.store_mut().commit("b1", "lb-b");
    let b2 = b.e.store_mut().commit("b2", "lb-b");
    assert_eq!(
        (a1.id.epoch, b1.id.epoch),
        (1, 2),
        "two writers never share an epoch"
    );
    assert_eq!(a1.id.n, b1.id.n);

    // The link heals; VRRP makes B passive again.
    b.e.set_role(Role::Passive, b.now);
    connect(&mut a, &mut b);
    assert_eq!(
        b.e.store().current.as_ref(),
        Some(&a2.id),
        "the active's history wins"
    );
    assert!(b.e.store().versions.contains_key(&(1, 3)));
    // B kept its branch, flagged, with the content.
    assert_eq!(b.kept.len(), 1);
    let ids: Vec<_> = b.kept[0].versions.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, vec![b1.id.clone(), b2.id.clone()]);
    assert_eq!(b.kept[0].superseded_by, a2.id);
    assert_eq!(b.kept[0].winner, "lb-a");
    assert!(
        !b.e.store().versions.contains_key(&(2, 2)),
        "the branch left the history"
    );
    // A holds a copy of it too (the console of the active shows it).
    assert_eq!(a.kept.len(), 1);
    assert_eq!(a.e.store().branches[0].versions.len(), 2);
    assert!(a.e.store().branch_texts.iter().any(|(_, t)| t == "b2"));
    assert_eq!(a.e.status(a.now).counters.branches_kept, 1);
    // A reconnect does not flag it again.
    disconnect(&mut a, &mut b);
    connect(&mut a, &mut b);
    assert_eq!(b.kept.len(), 1);
}

/// The role changes after this box sent its hello but before the peer's arrived (the
/// heartbeat elected it while the link was connecting): the peer is told once a schema is
/// agreed, so the two boxes do not each take the other for passive.
#[test]
fn a_role_change_during_the_hellos_reaches_the_peer() {
    let t = origin();
    let mut a = Sim::new("lb-a", Role::Passive, true, t);
    let mut b = Sim::new("lb-b", Role::Passive, false, t);
    a.e.connected(a.now);
    b.e.connected(b.now);
    a.e.set_role(Role::Active, a.now);
    pump(&mut a, &mut b);
    assert_eq!(a.e.direction(), Direction::Writer);
    assert_eq!(b.e.direction(), Direction::Reader);
    assert_eq!(b.e.peer().unwrap().role, Role::Active);
    a.publish(entry(1, "web1", Duration::from_secs(60)));
    pump(&mut a, &mut b);
    assert_eq!(b.replica(), a.live(), "the state flows");
}

/// A partition short enough that the TCP connection survives: the active's commit reaches
/// the other box while that one is active too, and is dropped there. When the other box is
/// passive again, the commit is sent again and runs; the other box's own commit is kept.
#[test]
fn a_commit_dropped_by_a_peer_that_was_active_is_sent_again_when_it_reads() {
    let (mut a, mut b) = pair();
    let base = a.e.store_mut().commit("base", "lb-a");
    connect(&mut a, &mut b);
    assert_eq!(b.e.store().current.as_ref(), Some(&base.id));

    // B becomes active before A hears of it; A, still writing, sends its commit.
    b.e.set_role(Role::Active, b.now);
    let a1 = a.e.store_mut().commit("a1", "lb-a");
    a.e.config_changed(a.now);
    let b1 = b.e.store_mut().commit("b1", "lb-b");
    pump(&mut a, &mut b);
    assert!(
        !b.e.store().versions.contains_key(&(a1.id.epoch, a1.id.n)),
        "an active box stores nothing the other active sends"
    );

    // VRRP makes B passive again, on the same connection.
    b.e.set_role(Role::Passive, b.now);
    pump(&mut a, &mut b);
    assert_eq!(
        b.e.store().current.as_ref(),
        Some(&a1.id),
        "the active's commit runs"
    );
    assert_eq!(b.kept.len(), 1);
    assert_eq!(b.kept[0].versions[0].id, b1.id);
    assert_eq!(b.e.peer().unwrap().running.as_ref(), Some(&a1.id));
    assert_eq!(a.e.peer().unwrap().running.as_ref(), Some(&a1.id));
}

#[test]
fn persistence_lifetimes_cross_as_remaining_time_whatever_the_clocks_say() {
    let t = origin();
    let hour = Duration::from_secs(3600);
    // B's clock is an hour ahead of A's (its Instants are an hour later for the same moment).
    let mut a = Sim::new("lb-a", Role::Active, true, t);
    let mut b = Sim::new("lb-b", Role::Passive, false, t + hour);
    a.publish(entry(1, "s1", Duration::from_secs(600)));
    connect(&mut a, &mut b);
    a.publish(entry(2, "s1", Duration::from_secs(1800)));
    pump(&mut a, &mut b);
    let remaining: Vec<Duration> = b
        .applied
        .iter()
        .filter_map(|c| match c {
            StateChange::PersistenceInsert(e) => Some(e.remaining),
            _ => None,
        })
        .collect();
    assert_eq!(
        remaining,
        [Duration::from_secs(600), Duration::from_secs(1800)]
    );

    // What A sends does not depend on A's clock at all: two runs an hour apart, same bytes.
    let run = |start: Instant| {
        let mut a = Sim::new("lb-a", Role::Active, true, start);
        let mut b = Sim::new("lb-b", Role::Passive, false, start);
        a.publish(entry(1, "s1", Duration::from_secs(600)));
        a.e.connected(a.now);
        b.e.connected(b.now);
        b.flush();
        let hello = std::mem::take(&mut b.wire);
        a.e.handle_input(&hello, a.now).unwrap();
        a.act();
        a.publish(entry(2, "s1", Duration::from_secs(60)));
        a.act();
        a.flush();
        a.wire
    };
    assert_eq!(run(t), run(t + hour));
}

#[test]
fn a_reader_that_cannot_keep_up_gets_a_snapshot_not_unbounded_memory() {
    let t = origin();
    let mut cfg = EngineConfig::new("lb-a", "192.0.2.1:443");
    cfg.max_queued = 100;
    cfg.records_per_frame = 10;
    let mut a = Sim::with_config(cfg, Role::Active, t);
    let mut b = Sim::new("lb-b", Role::Passive, false, t);
    connect(&mut a, &mut b);
    // The socket is full: nothing is transmitted while 1,000 changes come in.
    for i in 0..1_000 {
        a.publish(entry(i, "s1", Duration::from_secs(600)));
        a.act();
        assert!(a.e.status(a.now).lag_entries <= 100 + 1_000, "bounded");
    }
    assert!(a.e.status(a.now).counters.forced_snapshots >= 1);
    pump(&mut a, &mut b);
    assert_eq!(b.replica(), a.live());
    assert_eq!(b.replica().len(), 1_000);
}

#[test]
fn a_silent_peer_is_dropped_and_heartbeats_keep_a_quiet_link_up() {
    let (mut a, mut b) = pair();
    connect(&mut a, &mut b);
    // Quiet for 20 s, with heartbeats exchanged every second: the link stays.
    for _ in 0..40 {
        advance(&mut a, Duration::from_millis(500));
        advance(&mut b, Duration::from_millis(500));
        pump(&mut a, &mut b);
    }
    assert!(a.closed.is_empty() && b.closed.is_empty());
    assert!(a.e.status(a.now).connected);
    // B goes silent (its frames stop arriving): after peer_timeout A drops the link.
    for _ in 0..11 {
        advance(&mut a, Duration::from_millis(500));
        a.act();
        a.flush();
        a.wire.clear();
    }
    assert!(
        matches!(a.closed.as_slice(), [CloseReason::Silent(_)]),
        "{:?}",
        a.closed
    );
    assert!(a.e.poll_timeout().is_none());
}

#[test]
fn audit_entries_flow_both_ways_without_duplicates() {
    let (mut a, mut b) = pair();
    let new = |what: &str| NewAuditEntry {
        at_unix_ms: 1,
        who: "admin".into(),
        from: "192.0.2.50".into(),
        action: what.into(),
        detail: String::new(),
        config_version: None,
    };
    a.e.store().audit.record(new("config.apply")).unwrap();
    b.e.store().audit.record(new("login")).unwrap();
    connect(&mut a, &mut b);
    assert_eq!(a.e.store().audit.len(), 2);
    assert_eq!(b.e.store().audit.len(), 2);
    a.e.store().audit.record(new("server.drain")).unwrap();
    a.e.audit_changed(a.now);
    pump(&mut a, &mut b);
    b.e.audit_changed(b.now);
    pump(&mut a, &mut b);
    assert_eq!(b.e.store().audit.len(), 3);
    assert_eq!(a.e.store().audit.len(), 3, "no echo");
    assert_eq!(b.e.store().audit.since("lb-a", 0).len(), 2);
}

#[test]
fn ticket_keys_and_server_states_are_replicated() {
    use tandem_dataplane::tls::ticket_keys::TicketKeyRing;
    let (mut a, mut b) = pair();
    let ring = TicketKeyRing::new(Duration::from_secs(3600), Duration::from_secs(7200));
    a.state.insert(
        ("~tickets".into(), std::net::Ipv4Addr::UNSPECIFIED.into()),
        StateChange::TicketKeys(ring.export()),
    );
    connect(&mut a, &mut b);
    let got = b.applied.iter().find_map(|c| match c {
        StateChange::TicketKeys(k) => Some(k.clone()),
        _ => None,
    });
    let got = got.expect("the ring crossed");
    assert_eq!(got.keys[0].id, ring.current_id());
    let passive = TicketKeyRing::new(Duration::from_secs(3600), Duration::from_secs(7200));
    passive.import(&got);
    let ticket = ring.encrypt(b"svc", b"session").unwrap();
    assert_eq!(passive.decrypt(b"svc", &ticket).unwrap(), b"session");

    a.publish(StateChange::ServerAdmin {
        pool: "p".into(),
        server: "s1".into(),
        state: tandem_config::AdminState::Drain,
    });
    a.publish(StateChange::ServerHealth {
        pool: "p".into(),
        server: "s2".into(),
        health: tandem_dataplane::Health::Down,
    });
    pump(&mut a, &mut b);
    assert!(b.applied.iter().any(|c| matches!(
        c,
        StateChange::ServerAdmin {
            state: tandem_config::AdminState::Drain,
            ..
        }
    )));
    assert!(b.applied.iter().any(|c| matches!(
        c,
        StateChange::ServerHealth {
            health: tandem_dataplane::Health::Down,
            ..
        }
    )));
}

/// Found by the fuzz target: a version id whose "hash" is not hex (here with a multi-byte
/// character where a prefix of it is cut for display) must be refused as malformed.
#[test]
fn a_version_id_that_is_not_a_hash_is_malformed_not_a_panic() {
    let bad = WireVersionId {
        epoch: 1,
        n: 1,
        hash: "abcdefgé".repeat(8),
    };
    let meta = WireVersionMeta {
        id: bad.clone(),
        parent: None,
        committed_at: 0,
        author: String::new(),
        reason: String::new(),
        node: String::new(),
    };
    for frame in [
        Frame::ConfigRunning {
            id: Some(bad.clone()),
        },
        Frame::ConfigVersion {
            meta: meta.clone(),
            text: "x",
        },
        Frame::BranchKept {
            superseded_by: bad.clone(),
            versions: vec![(meta.clone(), "x")],
        },
    ] {
        let (mut a, mut b) = pair();
        connect(&mut a, &mut b);
        let mut bytes = Vec::new();
        wire::encode_frame(&frame, &mut bytes).unwrap();
        assert!(matches!(
            a.e.handle_input(&bytes, a.now),
            Err(CloseReason::Malformed(_))
        ));
    }
}

// Handover requests ---------------------------------------------------------------------------

#[test]
fn the_passive_asks_the_active_to_hand_over_and_gets_its_answer() {
    let (mut a, mut b) = pair();
    connect(&mut a, &mut b);
    b.e.ask_handover(7, "failover drill started on lb-b")
        .unwrap();
    pump(&mut a, &mut b);
    assert_eq!(
        a.handovers_asked,
        vec![(7, "failover drill started on lb-b".to_owned())]
    );
    assert!(
        b.handover_answers.is_empty(),
        "no answer before the handover"
    );
    // tandemd hands over, then answers.
    a.e.answer_handover(7, None);
    pump(&mut a, &mut b);
    assert_eq!(b.handover_answers, vec![(7, None)]);
    // A refusal carries its reason.
    b.e.ask_handover(8, "again").unwrap();
    pump(&mut a, &mut b);
    a.e.answer_handover(8, Some("this box is standalone".into()));
    pump(&mut a, &mut b);
    assert_eq!(
        b.handover_answers[1],
        (8, Some("this box is standalone".to_owned()))
    );
    assert!(a.closed.is_empty() && b.closed.is_empty());
}

#[test]
fn only_a_connected_passive_box_may_ask_for_a_handover() {
    let (mut a, mut b) = pair();
    let down = b.e.ask_handover(1, "drill").unwrap_err();
    assert!(down.contains("down"), "{down}");
    connect(&mut a, &mut b);
    let active = a.e.ask_handover(2, "drill").unwrap_err();
    assert!(active.contains("only the passive box"), "{active}");
    pump(&mut a, &mut b);
    assert!(b.handovers_asked.is_empty(), "nothing was sent");
}

#[test]
fn an_ask_reaching_a_box_that_is_not_active_is_refused_with_the_reason() {
    let (mut a, mut b) = pair();
    connect(&mut a, &mut b);
    // lb-a has become passive and lb-b does not know yet: lb-b's ask crosses lb-a's news.
    b.e.ask_handover(3, "drill").unwrap();
    a.e.set_role(Role::Passive, a.now);
    pump(&mut a, &mut b);
    assert!(
        a.handovers_asked.is_empty(),
        "a passive box does not hand over"
    );
    let (id, refused) = &b.handover_answers[0];
    assert_eq!(*id, 3);
    let why = refused.as_deref().expect("refused");
    assert!(why.contains("lb-a is passive"), "{why}");
}

#[test]
fn a_handover_frame_on_a_schema_1_link_is_a_protocol_error_and_an_old_peer_is_not_asked() {
    let t = origin();
    let mk = |node: &str, role| {
        let mut cfg = EngineConfig::new(node, "192.0.2.1:443");
        cfg.speaks = Speaks::at(1);
        Sim::with_config(cfg, role, t)
    };
    let (mut a, mut b) = (mk("lb-a", Role::Active), mk("lb-b", Role::Passive));
    connect(&mut a, &mut b);
    assert_eq!(b.e.peer().unwrap().schema, 1);
    let old = b.e.ask_handover(1, "drill").unwrap_err();
    assert!(old.contains("schema 1") && old.contains("upgrade"), "{old}");
    // A peer that sends one anyway broke the agreement: the link drops, counted.
    let mut bytes = Vec::new();
    crate::wire::encode_frame(
        &crate::wire::Frame::HandoverAsk {
            id: 1,
            reason: "drill".into(),
        },
        &mut bytes,
    )
    .unwrap();
    let err = a.e.handle_input(&bytes, a.now).unwrap_err();
    assert!(matches!(err, CloseReason::Protocol(_)), "{err:?}");
    assert!(a.handovers_asked.is_empty());
    assert_eq!(a.e.status(a.now).counters.malformed_frames, 1);
}
