//! Session-ticket keys: a key ring of our own behind rustls's `ProducesTickets`, because the
//! built-in ticketer cannot export its keys and the pair must share them (a client resumes its
//! session on whichever box holds the VIP).
//!
//! The ring has a *current* key, which encrypts new tickets, and *previous* keys, which still
//! decrypt. Every `rotation` a new current key is made; a key is dropped `lifetime` after it
//! stopped being current, so every ticket stays usable for the lifetime announced to clients
//! and no longer. Tickets are `key id (16) ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag)`, the
//! key id and the service's name as associated data (a ticket of one service does not resume a
//! session on another). Nonces are random: two boxes encrypting under the same imported key
//! must not share a nonce sequence.
//!
//! `export()` / `import()` carry the keys with their *remaining* times (until rotation, until
//! expiry), never wall-clock times. Each rotation is published on the state stream as a
//! `TicketKeys` change; installing the peer's ring (`import`) is not published again.

use crate::state_stream::{StateChange, Stream};
use arc_swap::ArcSwap;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const ID_LEN: usize = 16;
const TAG_LEN: usize = 16;

struct TicketKey {
    id: [u8; ID_LEN],
    secret: [u8; 32],
    aead: LessSafeKey,
    /// When it stops encrypting (for the current key).
    rotate_at: Instant,
    /// When it stops decrypting.
    expires_at: Instant,
}

impl TicketKey {
    fn new(id: [u8; ID_LEN], secret: [u8; 32], rotate_at: Instant, expires_at: Instant) -> Self {
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).expect("32-byte key"));
        TicketKey {
            id,
            secret,
            aead,
            rotate_at,
            expires_at,
        }
    }
}

struct KeySet {
    current: Arc<TicketKey>,
    /// Newest first.
    previous: Vec<Arc<TicketKey>>,
}

/// The ring of ticket keys. A cheap-clone handle, shared by every HTTPS service.
#[derive(Clone)]
pub struct TicketKeyRing {
    inner: Arc<RingInner>,
}

struct RingInner {
    keys: ArcSwap<KeySet>,
    rotation: Duration,
    lifetime: Duration,
    /// Serializes rotations and imports.
    write: Mutex<()>,
    rng: SystemRandom,
    stream: Mutex<Option<Arc<Stream>>>,
}

impl std::fmt::Debug for TicketKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.inner.keys.load();
        f.debug_struct("TicketKeyRing")
            .field("current", &hex(&keys.current.id))
            .field("previous", &keys.previous.len())
            .field("rotation", &self.inner.rotation)
            .field("lifetime", &self.inner.lifetime)
            .finish()
    }
}

/// The ring's keys as they cross the sync link. Secrets never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeysExport {
    /// The current key first, then the previous ones, newest first.
    pub keys: Vec<ExportedTicketKey>,
    pub rotation: Duration,
    pub lifetime: Duration,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedTicketKey {
    pub id: [u8; ID_LEN],
    pub secret: [u8; 32],
    /// Time left before the key stops encrypting (zero for a previous key).
    pub current_for: Duration,
    /// Time left before the key stops decrypting.
    pub accepted_for: Duration,
}

impl std::fmt::Debug for TicketKeysExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeysExport")
            .field(
                "ids",
                &self.keys.iter().map(|k| hex(&k.id)).collect::<Vec<_>>(),
            )
            .field("rotation", &self.rotation)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TicketKeyRing {
    /// A ring with a fresh current key.
    pub fn new(rotation: Duration, lifetime: Duration) -> Self {
        let rng = SystemRandom::new();
        let now = Instant::now();
        let current = Arc::new(random_key(&rng, now + rotation, now + rotation + lifetime));
        TicketKeyRing {
            inner: Arc::new(RingInner {
                keys: ArcSwap::from_pointee(KeySet {
                    current,
                    previous: Vec::new(),
                }),
                rotation,
                lifetime,
                write: Mutex::new(()),
                rng,
                stream: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn publish_to(&self, stream: Arc<Stream>) {
        *self.inner.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
    }

    pub fn rotation(&self) -> Duration {
        self.inner.rotation
    }

    pub fn lifetime(&self) -> Duration {
        self.inner.lifetime
    }

    /// The id of the key encrypting new tickets.
    pub fn current_id(&self) -> [u8; ID_LEN] {
        self.inner.keys.load().current.id
    }

    /// How many keys still decrypt (current included).
    pub fn len(&self) -> usize {
        1 + self.inner.keys.load().previous.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// When the current key is due to be replaced.
    pub fn next_rotation(&self) -> Instant {
        self.inner.keys.load().current.rotate_at
    }

    /// Rotates when the current key is due; returns whether it did.
    pub fn rotate_if_due(&self, now: Instant) -> bool {
        if self.inner.keys.load().current.rotate_at > now {
            return false;
        }
        self.rotate(now);
        true
    }

    /// Makes a new current key now, keeps the old one for decryption, drops expired keys, and
    /// publishes the ring.
    pub fn rotate(&self, now: Instant) {
        {
            let _w = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
            let old = self.inner.keys.load_full();
            let rotation = self.inner.rotation;
            let current = Arc::new(random_key(
                &self.inner.rng,
                now + rotation,
                now + rotation + self.inner.lifetime,
            ));
            let mut previous = Vec::with_capacity(old.previous.len() + 1);
            // The old current key decrypts for `lifetime` from now, when it stops encrypting.
            let retired = &old.current;
            previous.push(Arc::new(TicketKey::new(
                retired.id,
                retired.secret,
                now,
                now + self.inner.lifetime,
            )));
            previous.extend(old.previous.iter().filter(|k| k.expires_at > now).cloned());
            self.inner
                .keys
                .store(Arc::new(KeySet { current, previous }));
        }
        tracing::info!(current = %hex(&self.current_id()), keys = self.len(), "session ticket keys rotated");
        let stream = self
            .inner
            .stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(stream) = stream {
            stream.publish(StateChange::TicketKeys(self.export()));
        }
    }

    /// The keys with their remaining times.
    pub fn export(&self) -> TicketKeysExport {
        let now = Instant::now();
        let keys = self.inner.keys.load();
        let export = |k: &TicketKey, current: bool| ExportedTicketKey {
            id: k.id,
            secret: k.secret,
            current_for: if current {
                k.rotate_at.saturating_duration_since(now)
            } else {
                Duration::ZERO
            },
            accepted_for: k.expires_at.saturating_duration_since(now),
        };
        TicketKeysExport {
            keys: std::iter::once(export(&keys.current, true))
                .chain(
                    keys.previous
                        .iter()
                        .filter(|k| k.expires_at > now)
                        .map(|k| export(k, false)),
                )
                .collect(),
            rotation: self.inner.rotation,
            lifetime: self.inner.lifetime,
        }
    }

    /// Installs the peer's ring in place of ours: its current key becomes ours, its previous
    /// keys ours. An export without a key changes nothing.
    pub fn import(&self, export: &TicketKeysExport) {
        let now = Instant::now();
        let mut keys = export.keys.iter().filter(|k| !k.accepted_for.is_zero());
        let Some(first) = keys.next() else { return };
        let _w = self.inner.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = Arc::new(TicketKey::new(
            first.id,
            first.secret,
            now + first.current_for,
            now + first.accepted_for,
        ));
        let previous = keys
            .map(|k| Arc::new(TicketKey::new(k.id, k.secret, now, now + k.accepted_for)))
            .collect();
        self.inner
            .keys
            .store(Arc::new(KeySet { current, previous }));
    }

    /// Encrypts a ticket under the current key, bound to `context` (the service name).
    pub fn encrypt(&self, context: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.inner.keys.load();
        let key = &keys.current;
        let mut nonce = [0u8; NONCE_LEN];
        self.inner.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let aad = aad(&key.id, context);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut out[ID_LEN + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Decrypts a ticket made by any key still in the ring for the same `context`.
    pub fn decrypt(&self, context: &[u8], ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = ticket.split_at(ID_LEN);
        let now = Instant::now();
        let keys = self.inner.keys.load();
        let key = std::iter::once(&keys.current)
            .chain(keys.previous.iter())
            .find(|k| k.id == id && k.expires_at > now)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let aad = aad(&key.id, context);
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&aad[..]), &mut buf)
            .ok()?;
        let len = plain.len();
        buf.truncate(len);
        Some(buf)
    }

    /// The `ProducesTickets` rustls calls for one service.
    pub fn ticketer(&self, service: &str) -> Arc<dyn rustls::server::ProducesTickets> {
        Arc::new(ServiceTicketer {
            ring: self.clone(),
            context: service.as_bytes().into(),
        })
    }
}

fn aad(id: &[u8; ID_LEN], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(ID_LEN + context.len());
    aad.extend_from_slice(id);
    aad.extend_from_slice(context);
    aad
}

fn random_key(rng: &SystemRandom, rotate_at: Instant, expires_at: Instant) -> TicketKey {
    let mut id = [0u8; ID_LEN];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).expect("system randomness");
    rng.fill(&mut secret).expect("system randomness");
    TicketKey::new(id, secret, rotate_at, expires_at)
}

/// The ring seen by one service's TLS config.
#[derive(Debug)]
struct ServiceTicketer {
    ring: TicketKeyRing,
    context: Box<[u8]>,
}

impl rustls::server::ProducesTickets for ServiceTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.ring.lifetime().as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.ring.encrypt(&self.context, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.ring.decrypt(&self.context, cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn rotation_keeps_old_keys_for_their_lifetime() {
        let ring = TicketKeyRing::new(H, 2 * H);
        let t0 = ring.encrypt(b"svc", b"session zero").unwrap();
        tokio::time::advance(H).await;
        assert!(ring.rotate_if_due(Instant::now()));
        assert!(!ring.rotate_if_due(Instant::now()));
        let t1 = ring.encrypt(b"svc", b"session one").unwrap();
        assert_ne!(&t0[..16], &t1[..16], "a new key encrypts");
        assert_eq!(ring.decrypt(b"svc", &t0).unwrap(), b"session zero");
        tokio::time::advance(H).await;
        ring.rotate_if_due(Instant::now());
        assert_eq!(ring.len(), 3);
        // The first key retired 1 h ago with a 2 h lifetime: still accepted.
        assert_eq!(ring.decrypt(b"svc", &t0).unwrap(), b"session zero");
        tokio::time::advance(H + Duration::from_secs(1)).await;
        assert_eq!(ring.decrypt(b"svc", &t0), None, "expired key");
        assert_eq!(ring.decrypt(b"svc", &t1).unwrap(), b"session one");
        ring.rotate_if_due(Instant::now());
        assert_eq!(ring.len(), 3, "the expired key is dropped at rotation");
    }

    #[test]
    fn unknown_key_tampering_and_other_service_are_rejected() {
        let ring = TicketKeyRing::new(H, H);
        let other = TicketKeyRing::new(H, H);
        let t = ring.encrypt(b"svc", b"secret state").unwrap();
        assert_eq!(other.decrypt(b"svc", &t), None);
        assert_eq!(ring.decrypt(b"other-svc", &t), None);
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(ring.decrypt(b"svc", &bad), None);
        assert_eq!(ring.decrypt(b"svc", &t[..20]), None);
        assert_eq!(ring.decrypt(b"svc", b""), None);
        assert_eq!(ring.decrypt(b"svc", &t).unwrap(), b"secret state");
    }

    #[tokio::test(start_paused = true)]
    async fn export_import_round_trip_lets_the_peer_decrypt_and_encrypt() {
        let active = TicketKeyRing::new(H, 2 * H);
        let before = active.encrypt(b"svc", b"old").unwrap();
        tokio::time::advance(H).await;
        active.rotate_if_due(Instant::now());
        let current = active.encrypt(b"svc", b"new").unwrap();

        let export = active.export();
        let json = serde_json::to_string(&export).unwrap();
        let back: TicketKeysExport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, export);
        assert!(!format!("{export:?}").contains("secret"));

        let passive = TicketKeyRing::new(H, 2 * H);
        passive.import(&back);
        assert_eq!(passive.current_id(), active.current_id());
        assert_eq!(passive.decrypt(b"svc", &before).unwrap(), b"old");
        assert_eq!(passive.decrypt(b"svc", &current).unwrap(), b"new");
        let from_passive = passive.encrypt(b"svc", b"after failover").unwrap();
        assert_eq!(
            active.decrypt(b"svc", &from_passive).unwrap(),
            b"after failover"
        );
        // Remaining times survive the trip: the old key still expires 2 h after it retired.
        tokio::time::advance(2 * H + Duration::from_secs(1)).await;
        assert_eq!(passive.decrypt(b"svc", &before), None);
    }

    #[tokio::test(start_paused = true)]
    async fn rotations_are_published() {
        let stream = Arc::new(Stream::new(16));
        let mut sub = stream.subscribe();
        let ring = TicketKeyRing::new(H, H);
        ring.publish_to(stream.clone());
        ring.rotate(Instant::now());
        let ev = sub.try_recv().unwrap().unwrap();
        match ev.change {
            StateChange::TicketKeys(k) => assert_eq!(k.keys[0].id, ring.current_id()),
            other => panic!("{other:?}"),
        }
        // Importing the peer's ring is not published again.
        ring.import(&TicketKeyRing::new(H, H).export());
        assert_eq!(sub.try_recv().unwrap(), None);
    }
}
