//! Session persistence: which server a returning client goes back to.
//!
//! **By source address**: a table `(service, client address masked to the configured prefix) →
//! (pool, server id)` with an idle timeout, refreshed on use. The table is sharded (one mutex
//! per shard, the shard chosen by a hash of the key), so the request path never takes a global
//! lock. Entries hold a monotonic deadline locally; exported (snapshot, stream) they carry the
//! *remaining* lifetime, never a wall-clock time, as the two boxes' clocks may differ.
//!
//! **Refresh coalescing**: a refresh is published only when the lifetime the peer last heard
//! of has fallen behind the real one by more than a quarter of the timeout (that is, at most
//! once per `timeout / 4` per client, however busy). The peer's copy therefore never expires
//! more than `timeout / 4` before ours.
//!
//! **By cookie** (HTTP): the cookie value is the server's stable `id` from the shared config,
//! as is: it means the same on both boxes, needs no table and no per-box secret. The HTTP
//! engine sets it with `Max-Age = timeout` and refreshes it on responses; it does not refresh a
//! cookie that names a draining server, so pinned clients leave a drained server when their
//! cookie expires.

use crate::state_stream::{StateChange, Stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const SHARDS: usize = 64;

/// A persistence key: the service and the client's masked address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersistenceKey {
    pub service: Arc<str>,
    pub client: IpAddr,
}

/// An entry as exported: its key, its server and how long it still lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistenceEntry {
    pub key: PersistenceKey,
    pub pool: Arc<str>,
    pub server: Arc<str>,
    pub remaining: Duration,
}

#[derive(Debug)]
struct Entry {
    pool: Arc<str>,
    server: Arc<str>,
    deadline: Instant,
    /// The deadline the peer knows of (last published).
    announced: Instant,
    /// Installed from the peer: its expiry is the peer's to publish.
    remote: bool,
}

/// The sharded source-persistence table.
#[derive(Debug)]
pub struct PersistenceTable {
    shards: Box<[Mutex<HashMap<PersistenceKey, Entry>>]>,
    hasher: RandomState,
    stream: Arc<Stream>,
}

impl PersistenceTable {
    pub(crate) fn new(stream: Arc<Stream>) -> Self {
        PersistenceTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            stream,
        }
    }

    fn shard(
        &self,
        key: &PersistenceKey,
    ) -> std::sync::MutexGuard<'_, HashMap<PersistenceKey, Entry>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `key` up; when it is alive and `accept(pool, server)` accepts its server, refreshes
    /// it and returns what `accept` returned. An expired entry is removed (and its expiry
    /// published); a rejected one is left for the caller to overwrite with [`Self::insert`].
    pub fn touch<R>(
        &self,
        key: &PersistenceKey,
        now: Instant,
        timeout: Duration,
        accept: impl FnOnce(&str, &str) -> Option<R>,
    ) -> Option<R> {
        let mut shard = self.shard(key);
        let entry = shard.get_mut(key)?;
        if entry.deadline <= now {
            let remote = entry.remote;
            shard.remove(key);
            if !remote {
                self.stream
                    .publish(StateChange::PersistenceExpire(key.clone()));
            }
            return None;
        }
        let found = accept(&entry.pool, &entry.server)?;
        let deadline = now + timeout;
        entry.deadline = deadline;
        if entry.remote || deadline.saturating_duration_since(entry.announced) > timeout / 4 {
            entry.remote = false;
            entry.announced = deadline;
            self.stream
                .publish(StateChange::PersistenceRefresh(PersistenceEntry {
                    key: key.clone(),
                    pool: entry.pool.clone(),
                    server: entry.server.clone(),
                    remaining: timeout,
                }));
        }
        Some(found)
    }

    /// Pins `key` to `server` for `timeout` (new entry, or a new server for an existing one).
    pub fn insert(
        &self,
        key: PersistenceKey,
        pool: Arc<str>,
        server: Arc<str>,
        now: Instant,
        timeout: Duration,
    ) {
        let mut shard = self.shard(&key);
        let deadline = now + timeout;
        let event = PersistenceEntry {
            key: key.clone(),
            pool: pool.clone(),
            server: server.clone(),
            remaining: timeout,
        };
        shard.insert(
            key,
            Entry {
                pool,
                server,
                deadline,
                announced: deadline,
                remote: false,
            },
        );
        // Published under the shard lock, so events of one key are in the order of its changes.
        self.stream.publish(StateChange::PersistenceInsert(event));
    }

    /// Removes expired entries, publishing each local expiry. Returns how many were removed.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|key, e| {
                if e.deadline > now {
                    return true;
                }
                removed += 1;
                if !e.remote {
                    self.stream
                        .publish(StateChange::PersistenceExpire(key.clone()));
                }
                false
            });
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entries as `PersistenceInsert` changes with their remaining lifetime.
    pub(crate) fn export_into(&self, out: &mut Vec<StateChange>) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(
                shard
                    .iter()
                    .filter(|(_, e)| e.deadline > now)
                    .map(|(k, e)| {
                        StateChange::PersistenceInsert(PersistenceEntry {
                            key: k.clone(),
                            pool: e.pool.clone(),
                            server: e.server.clone(),
                            remaining: e.deadline - now,
                        })
                    }),
            );
        }
    }

    pub(crate) fn install_remote(&self, e: PersistenceEntry) {
        let deadline = Instant::now() + e.remaining;
        let mut shard = self.shard(&e.key);
        match shard.entry(e.key) {
            MapEntry::Occupied(mut o) => {
                let entry = o.get_mut();
                entry.pool = e.pool;
                entry.server = e.server;
                entry.deadline = deadline;
                entry.announced = deadline;
                entry.remote = true;
            }
            MapEntry::Vacant(v) => {
                v.insert(Entry {
                    pool: e.pool,
                    server: e.server,
                    deadline,
                    announced: deadline,
                    remote: true,
                });
            }
        }
    }

    pub(crate) fn remove_remote(&self, key: &PersistenceKey) {
        self.shard(key).remove(key);
    }

    /// The server an entry points at, without refreshing it (for tests and the console).
    pub fn peek(
        &self,
        key: &PersistenceKey,
        now: Instant,
    ) -> Option<(Arc<str>, Arc<str>, Duration)> {
        let shard = self.shard(key);
        let e = shard.get(key)?;
        (e.deadline > now).then(|| (e.pool.clone(), e.server.clone(), e.deadline - now))
    }
}

/// The client address masked to the prefix that groups clients (e.g. a NAT pool).
pub fn mask_address(ip: IpAddr, mask_v4: u8, mask_v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(mask_v4.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            // An IPv4 client reaching an IPv6 listener through a mapped address is still an
            // IPv4 client.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return mask_address(IpAddr::V4(v4), mask_v4, mask_v6);
            }
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(mask_v6.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// The persistence cookie's value for a server: its stable id from the shared config.
pub fn cookie_value_for_server(server_id: &str) -> &str {
    server_id
}

/// The server a persistence cookie names, by its id in `pool`'s servers (in config order).
pub fn server_for_cookie<'a>(
    server_ids: impl IntoIterator<Item = &'a str>,
    value: &str,
) -> Option<usize> {
    let value = value.trim_matches('"');
    server_ids.into_iter().position(|id| id == value)
}

/// The `Set-Cookie` value that pins a client to a server for `max_age`.
pub fn set_cookie_value(name: &str, server_id: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{}",
        cookie_value_for_server(server_id),
        max_age.as_secs().max(1),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_stream::StateChange;

    fn key(ip: &str) -> PersistenceKey {
        PersistenceKey {
            service: Arc::from("svc"),
            client: ip.parse().unwrap(),
        }
    }

    fn table() -> (PersistenceTable, Arc<Stream>) {
        let stream = Arc::new(Stream::new(1024));
        (PersistenceTable::new(stream.clone()), stream)
    }

    fn accept_any(_: &str, server: &str) -> Option<String> {
        Some(server.to_owned())
    }

    #[test]
    fn masks_v4_and_v6_prefixes() {
        let m = |ip: &str, v4, v6| mask_address(ip.parse().unwrap(), v4, v6).to_string();
        assert_eq!(m("192.0.2.77", 24, 64), "192.0.2.0");
        assert_eq!(m("192.0.2.77", 32, 64), "192.0.2.77");
        assert_eq!(m("2001:db8:1:2:3:4:5:6", 24, 64), "2001:db8:1:2::");
        assert_eq!(m("2001:db8:1:2:3:4:5:6", 24, 128), "2001:db8:1:2:3:4:5:6");
        assert_eq!(m("::ffff:192.0.2.77", 16, 64), "192.0.0.0");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_idle_timeout_and_refresh_on_use() {
        let (t, stream) = table();
        let mut sub = stream.subscribe();
        let timeout = Duration::from_secs(60);
        t.insert(
            key("192.0.2.1"),
            "web".into(),
            "a".into(),
            Instant::now(),
            timeout,
        );

        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            t.touch(&key("192.0.2.1"), Instant::now(), timeout, accept_any)
                .as_deref(),
            Some("a")
        );
        // 50 s after the insert the lifetime moved by 50 s > 60 s / 4: a refresh is published.
        tokio::time::advance(Duration::from_secs(50)).await;
        // Still alive: the touch at 50 s pushed the deadline to 110 s.
        assert!(t.peek(&key("192.0.2.1"), Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            t.touch(&key("192.0.2.1"), Instant::now(), timeout, accept_any),
            None
        );
        assert!(t.is_empty());

        let kinds: Vec<_> = std::iter::from_fn(|| sub.try_recv().unwrap())
            .map(|e| match e.change {
                StateChange::PersistenceInsert(_) => "insert",
                StateChange::PersistenceRefresh(_) => "refresh",
                StateChange::PersistenceExpire(_) => "expire",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["insert", "refresh", "expire"]);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_are_coalesced() {
        let (t, stream) = table();
        let mut sub = stream.subscribe();
        let timeout = Duration::from_secs(100);
        t.insert(
            key("192.0.2.1"),
            "web".into(),
            "a".into(),
            Instant::now(),
            timeout,
        );
        // A busy client: one request per second for 100 s.
        for _ in 0..100 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(
                t.touch(&key("192.0.2.1"), Instant::now(), timeout, accept_any)
                    .is_some()
            );
        }
        let refreshes = std::iter::from_fn(|| sub.try_recv().unwrap())
            .filter(|e| matches!(e.change, StateChange::PersistenceRefresh(_)))
            .count();
        // One refresh per 25 s of drift (the quarter-timeout rule), not one per request.
        assert!((3..=4).contains(&refreshes), "{refreshes} refreshes");
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_removes_and_publishes_only_local_expiries() {
        let (t, stream) = table();
        let mut sub = stream.subscribe();
        t.insert(
            key("192.0.2.1"),
            "web".into(),
            "a".into(),
            Instant::now(),
            Duration::from_secs(10),
        );
        t.install_remote(PersistenceEntry {
            key: key("192.0.2.2"),
            pool: "web".into(),
            server: "b".into(),
            remaining: Duration::from_secs(5),
        });
        assert_eq!(t.len(), 2);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(t.sweep(Instant::now()), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(t.sweep(Instant::now()), 1);
        let events: Vec<_> = std::iter::from_fn(|| sub.try_recv().unwrap()).collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(
            events[0].change,
            StateChange::PersistenceInsert(_)
        ));
        assert!(
            matches!(&events[1].change, StateChange::PersistenceExpire(k) if *k == key("192.0.2.1"))
        );
    }

    #[test]
    fn rejected_server_is_left_for_the_caller() {
        let (t, _) = table();
        let now = Instant::now();
        let timeout = Duration::from_secs(10);
        t.insert(key("192.0.2.1"), "web".into(), "a".into(), now, timeout);
        assert_eq!(
            t.touch(&key("192.0.2.1"), now, timeout, |_, _| None::<()>),
            None
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cookies_name_servers_by_stable_id() {
        let ids = ["web1", "web2", "web3"];
        assert_eq!(cookie_value_for_server("web2"), "web2");
        assert_eq!(server_for_cookie(ids, "web2"), Some(1));
        assert_eq!(server_for_cookie(ids, "\"web3\""), Some(2));
        assert_eq!(server_for_cookie(ids, "web9"), None);
        assert_eq!(server_for_cookie(ids, "1"), None);
        assert_eq!(
            set_cookie_value("TANDEM_SERVER", "web1", Duration::from_secs(1800), true),
            "TANDEM_SERVER=web1; Max-Age=1800; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
