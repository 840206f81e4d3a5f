//! The state the pair shares, as one ordered change stream.
//!
//! Every persistence insert, refresh and expiry, every server health and admin-state change and
//! every ticket-key rotation is published as a [`StateEvent`] with a sequence number: `u64`,
//! strictly increasing, without gaps (the first event is 1). The sync link replicates it:
//!
//! 1. [`StateTables::subscribe`] first, then [`StateTables::snapshot`] → `(seq, changes)`;
//! 2. install the snapshot on the peer, then every event with a sequence number above `seq`, in
//!    order, skipping the ones at or below it;
//! 3. on [`StreamError::Lagged`] (the consumer fell more than the stream's capacity behind),
//!    start again at 1.
//!
//! Every change carries the full new value of its key (never a delta), so installing an event
//! twice, or on top of a snapshot that already reflects it, is harmless. That is what makes the
//! snapshot consistent with the stream without stopping the request path while it is taken:
//! the tables are read shard by shard after `seq` is fixed, so a shard may already show some
//! changes after `seq`; replaying those changes on top converges to the same state.
//!
//! Changes installed with [`StateTables::apply_remote`] are not published again (no loop), and
//! persistence entries installed that way do not publish their expiry either: the peer's own
//! table expires its original.

use crate::health::Health;
use crate::persistence::{PersistenceEntry, PersistenceKey, PersistenceTable};
use crate::pool::{ServerKey, ServerRegistry};
use crate::tls::ticket_keys::{TicketKeyRing, TicketKeysExport};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tandem_config::AdminState;
use tokio::sync::broadcast;

/// One change, with its place in the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEvent {
    pub seq: u64,
    pub change: StateChange,
}

/// A change of the replicated state. Names are `Arc<str>` so that publishing an event does not
/// allocate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateChange {
    /// A client was pinned to a server (new entry, or re-pinned to another server).
    PersistenceInsert(PersistenceEntry),
    /// A pinned client was seen again; `remaining` is its new lifetime (see the coalescing rule
    /// in `persistence.rs`).
    PersistenceRefresh(PersistenceEntry),
    /// The entry expired (idle for its timeout).
    PersistenceExpire(PersistenceKey),
    ServerHealth {
        pool: Arc<str>,
        server: Arc<str>,
        health: Health,
    },
    ServerAdmin {
        pool: Arc<str>,
        server: Arc<str>,
        state: AdminState,
    },
    /// The ticket key ring after a rotation (or as a whole, in a snapshot).
    TicketKeys(TicketKeysExport),
}

/// Why a subscription yields no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Events from `missed_from` on were dropped before this subscriber read them. The
    /// subscription stays in this state: subscribe again and take a new snapshot.
    #[error("the state stream subscriber fell behind; events from {missed_from} on were missed")]
    Lagged { missed_from: u64 },
    /// The dataplane is gone.
    #[error("the state stream is closed")]
    Closed,
}

/// The publishing side: assigns sequence numbers and hands events to subscribers in order.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The next sequence number. Held while sending, so that numbering and order agree.
    next: Mutex<u64>,
    tx: broadcast::Sender<StateEvent>,
}

impl Stream {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Stream {
            next: Mutex::new(1),
            tx,
        }
    }

    pub(crate) fn publish(&self, change: StateChange) -> u64 {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        *next += 1;
        // No subscriber is not an error: the event is simply not wanted yet.
        let _ = self.tx.send(StateEvent { seq, change });
        seq
    }

    /// The sequence number of the last event published (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) - 1
    }

    pub(crate) fn subscribe(&self) -> StateSubscription {
        let next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        StateSubscription {
            rx: self.tx.subscribe(),
            next: *next,
            lagged: None,
        }
    }
}

/// A subscriber's view of the stream: events in order, from the moment it subscribed.
#[derive(Debug)]
pub struct StateSubscription {
    rx: broadcast::Receiver<StateEvent>,
    next: u64,
    lagged: Option<u64>,
}

impl StateSubscription {
    /// The next event, waiting for it.
    pub async fn recv(&mut self) -> Result<StateEvent, StreamError> {
        if let Some(missed_from) = self.lagged {
            return Err(StreamError::Lagged { missed_from });
        }
        let got = self.rx.recv().await;
        self.accept(got.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(_) => None,
            broadcast::error::RecvError::Closed => Some(StreamError::Closed),
        }))
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<StateEvent>, StreamError> {
        if let Some(missed_from) = self.lagged {
            return Err(StreamError::Lagged { missed_from });
        }
        match self.rx.try_recv() {
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(_)) => self.accept(Err(None)).map(Some),
            Err(broadcast::error::TryRecvError::Closed) => Err(StreamError::Closed),
            Ok(ev) => self.accept(Ok(ev)).map(Some),
        }
    }

    /// The sequence number the next event will carry.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    fn accept(
        &mut self,
        got: Result<StateEvent, Option<StreamError>>,
    ) -> Result<StateEvent, StreamError> {
        match got {
            Ok(ev) if ev.seq == self.next => {
                self.next += 1;
                Ok(ev)
            }
            // A gap can only follow an overflow; report it the same way.
            Ok(_) | Err(None) => {
                self.lagged = Some(self.next);
                Err(StreamError::Lagged {
                    missed_from: self.next,
                })
            }
            Err(Some(e)) => Err(e),
        }
    }
}

/// What the peer told us about a server (installed by [`StateTables::apply_remote`]). The
/// passive keeps its own health checks; this view is what it can seed from at takeover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerServerView {
    pub health: Option<Health>,
    pub admin: Option<AdminState>,
}

/// The replicated tables and their change stream. A cheap-clone handle.
#[derive(Clone, Debug)]
pub struct StateTables {
    inner: Arc<TablesInner>,
}

#[derive(Debug)]
struct TablesInner {
    stream: Arc<Stream>,
    persistence: PersistenceTable,
    servers: ServerRegistry,
    tickets: TicketKeyRing,
    peer: Mutex<HashMap<ServerKey, PeerServerView>>,
}

impl StateTables {
    pub(crate) fn new(
        stream: Arc<Stream>,
        persistence: PersistenceTable,
        servers: ServerRegistry,
        tickets: TicketKeyRing,
    ) -> Self {
        StateTables {
            inner: Arc::new(TablesInner {
                stream,
                persistence,
                servers,
                tickets,
                peer: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Events published from now on, in order.
    pub fn subscribe(&self) -> StateSubscription {
        self.inner.stream.subscribe()
    }

    /// The sequence number of the last event published.
    pub fn last_seq(&self) -> u64 {
        self.inner.stream.last_seq()
    }

    /// The whole state as changes that rebuild it, and the sequence number it is consistent
    /// with: replaying the events after `seq` on top of it gives the current state (see the
    /// module documentation). Order: ticket keys, servers (admin, health), persistence.
    pub fn snapshot(&self) -> (u64, Vec<StateChange>) {
        let seq = self.inner.stream.last_seq();
        let servers = self.inner.servers.all();
        let mut out = Vec::with_capacity(1 + 2 * servers.len() + self.inner.persistence.len());
        out.push(StateChange::TicketKeys(self.inner.tickets.export()));
        for s in servers {
            out.push(StateChange::ServerAdmin {
                pool: s.pool.clone(),
                server: s.id.clone(),
                state: s.admin(),
            });
            out.push(StateChange::ServerHealth {
                pool: s.pool.clone(),
                server: s.id.clone(),
                health: s.health(),
            });
        }
        self.inner.persistence.export_into(&mut out);
        (seq, out)
    }

    /// Installs a change received from the peer, without publishing it again.
    pub fn apply_remote(&self, change: StateChange) {
        match change {
            StateChange::PersistenceInsert(e) | StateChange::PersistenceRefresh(e) => {
                self.inner.persistence.install_remote(e)
            }
            StateChange::PersistenceExpire(key) => self.inner.persistence.remove_remote(&key),
            StateChange::ServerHealth {
                pool,
                server,
                health,
            } => {
                let mut peer = self.inner.peer.lock().unwrap_or_else(|e| e.into_inner());
                peer.entry((pool, server)).or_default().health = Some(health);
            }
            StateChange::ServerAdmin {
                pool,
                server,
                state,
            } => {
                let mut peer = self.inner.peer.lock().unwrap_or_else(|e| e.into_inner());
                peer.entry((pool, server)).or_default().admin = Some(state);
            }
            StateChange::TicketKeys(keys) => self.inner.tickets.import(&keys),
        }
    }

    /// The peer's view of a server, as last replicated.
    pub fn peer_server(&self, pool: &str, server: &str) -> Option<PeerServerView> {
        let peer = self.inner.peer.lock().unwrap_or_else(|e| e.into_inner());
        peer.get(&(Arc::from(pool), Arc::from(server))).copied()
    }

    /// Number of persistence entries held (local and replicated).
    pub fn persistence_len(&self) -> usize {
        self.inner.persistence.len()
    }

    pub(crate) fn persistence(&self) -> &PersistenceTable {
        &self.inner.persistence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::PersistenceKey;
    use std::collections::HashMap;
    use std::time::Duration;
    use tokio::time::Instant;

    fn tables(capacity: usize) -> StateTables {
        let stream = Arc::new(Stream::new(capacity));
        let tickets = TicketKeyRing::new(Duration::from_secs(3600), Duration::from_secs(3600));
        tickets.publish_to(stream.clone());
        StateTables::new(
            stream.clone(),
            PersistenceTable::new(stream),
            ServerRegistry::default(),
            tickets,
        )
    }

    fn key(i: u32) -> PersistenceKey {
        PersistenceKey {
            service: Arc::from("svc"),
            client: IpAddrV4(i),
        }
    }

    #[allow(non_snake_case)]
    fn IpAddrV4(i: u32) -> std::net::IpAddr {
        std::net::IpAddr::V4(i.into())
    }

    #[test]
    fn events_are_numbered_in_order_without_gaps() {
        let t = tables(1 << 16);
        let mut sub = t.subscribe();
        assert_eq!(sub.next_seq(), 1);
        std::thread::scope(|s| {
            for th in 0..4u32 {
                let t = &t;
                s.spawn(move || {
                    for i in 0..1000 {
                        t.persistence().insert(
                            key(th * 10_000 + i),
                            "p".into(),
                            "a".into(),
                            Instant::now(),
                            Duration::from_secs(60),
                        );
                    }
                });
            }
        });
        let mut expected = 1;
        while let Some(ev) = sub.try_recv().unwrap() {
            assert_eq!(ev.seq, expected);
            expected += 1;
        }
        assert_eq!(expected, 4001);
        assert_eq!(t.last_seq(), 4000);
    }

    #[test]
    fn a_slow_subscriber_is_told_where_it_lost_track() {
        let t = tables(16);
        let mut sub = t.subscribe();
        for i in 0..3 {
            t.persistence().insert(
                key(i),
                "p".into(),
                "a".into(),
                Instant::now(),
                Duration::from_secs(60),
            );
        }
        assert_eq!(sub.try_recv().unwrap().unwrap().seq, 1);
        for i in 0..40 {
            t.persistence().insert(
                key(i),
                "p".into(),
                "a".into(),
                Instant::now(),
                Duration::from_secs(60),
            );
        }
        assert_eq!(sub.try_recv(), Err(StreamError::Lagged { missed_from: 2 }));
        // It stays lagged: the consumer must take a new snapshot.
        assert_eq!(sub.try_recv(), Err(StreamError::Lagged { missed_from: 2 }));
        let mut fresh = t.subscribe();
        assert_eq!(fresh.next_seq(), 44);
        assert_eq!(fresh.try_recv(), Ok(None));
    }

    /// The state a replica builds from a snapshot and the events after it.
    fn replica(
        changes: impl IntoIterator<Item = StateChange>,
    ) -> HashMap<PersistenceKey, Arc<str>> {
        let mut m = HashMap::new();
        for c in changes {
            match c {
                StateChange::PersistenceInsert(e) | StateChange::PersistenceRefresh(e) => {
                    m.insert(e.key, e.server);
                }
                StateChange::PersistenceExpire(k) => {
                    m.remove(&k);
                }
                _ => {}
            }
        }
        m
    }

    #[test]
    fn snapshot_plus_later_events_equals_the_live_state() {
        let t = tables(1 << 20);
        for i in 0..5000 {
            t.persistence().insert(
                key(i),
                "p".into(),
                "a".into(),
                Instant::now(),
                Duration::from_secs(60),
            );
        }
        let mut sub = t.subscribe();
        let (seq, snapshot) = std::thread::scope(|s| {
            for th in 0..3u32 {
                let t = &t;
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        let k = key((i * 7 + th) % 8000);
                        let server: Arc<str> = if i % 2 == 0 { "b".into() } else { "c".into() };
                        if i % 5 == 0 {
                            // An entry that is already expired: the touch removes it.
                            t.persistence().insert(
                                k.clone(),
                                "p".into(),
                                server,
                                Instant::now(),
                                Duration::ZERO,
                            );
                            t.persistence().touch(
                                &k,
                                Instant::now(),
                                Duration::from_secs(60),
                                |_, _| Some(()),
                            );
                        } else {
                            t.persistence().insert(
                                k,
                                "p".into(),
                                server,
                                Instant::now(),
                                Duration::from_secs(60),
                            );
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(2));
            t.snapshot()
        });
        let mut later = Vec::new();
        while let Some(ev) = sub.try_recv().unwrap() {
            if ev.seq > seq {
                later.push(ev.change);
            }
        }
        assert!(
            !later.is_empty(),
            "the snapshot was taken while changes went on"
        );
        let rebuilt = replica(snapshot.into_iter().chain(later));
        let mut live = Vec::new();
        t.persistence().export_into(&mut live);
        assert_eq!(rebuilt, replica(live));
    }

    #[test]
    fn snapshot_holds_servers_tickets_and_entries_and_serializes() {
        let t = tables(64);
        t.persistence().insert(
            key(1),
            "p".into(),
            "a".into(),
            Instant::now(),
            Duration::from_secs(60),
        );
        let (seq, snap) = t.snapshot();
        assert_eq!(seq, 1);
        assert!(matches!(snap[0], StateChange::TicketKeys(_)));
        match &snap[1] {
            StateChange::PersistenceInsert(e) => {
                assert_eq!(&*e.server, "a");
                assert!(
                    e.remaining <= Duration::from_secs(60) && e.remaining > Duration::from_secs(59)
                );
            }
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_string(&StateEvent {
            seq,
            change: snap[1].clone(),
        })
        .unwrap();
        let back: StateEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.change, snap[1]);
    }

    #[test]
    fn remote_changes_are_installed_without_being_published() {
        let active = tables(64);
        let passive = tables(64);
        let mut passive_sub = passive.subscribe();
        let mut active_sub = active.subscribe();
        active.persistence().insert(
            key(9),
            "p".into(),
            "a".into(),
            Instant::now(),
            Duration::from_secs(60),
        );
        active.apply_remote(StateChange::ServerHealth {
            pool: "p".into(),
            server: "a".into(),
            health: Health::Down,
        });
        while let Some(ev) = active_sub.try_recv().unwrap() {
            passive.apply_remote(ev.change);
        }
        let (_, snap) = active.snapshot();
        for c in snap {
            passive.apply_remote(c);
        }
        assert_eq!(passive.persistence_len(), 1);
        assert_eq!(
            passive.inner.tickets.current_id(),
            active.inner.tickets.current_id()
        );
        assert_eq!(passive_sub.try_recv(), Ok(None), "nothing re-published");
        assert_eq!(
            active.peer_server("p", "a").unwrap().health,
            Some(Health::Down)
        );
    }
}
