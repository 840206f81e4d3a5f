//! Limits against floods: connections per service, connection and request rates per source,
//! and a log throttle so that a flood does not become a flood of log lines.
//!
//! Rates are token buckets per client address (IPv4 /32, IPv6 /64: one host usually holds a
//! whole /64), with a burst of one second's worth. Buckets live in a sharded table (one mutex
//! per shard); a bucket idle for more than a second is full again, which is the same as no
//! bucket, so the sweeper drops it.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

const SHARDS: usize = 32;

/// The accept-time decision, handed to the protocol handler (TCP closes; HTTP answers 503 for
/// `ServiceFull` and 429 for `SourceRateExceeded`, then closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// `limits.max_connections` is reached.
    ServiceFull,
    /// The client opened more connections per second than `connections_per_second`.
    SourceRateExceeded,
}

/// A token bucket: `rate` tokens per second, at most `rate` held.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(rate: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn idle_since(&self) -> Instant {
        self.last
    }
}

/// The key limits use for a client: IPv4 per address, IPv6 per /64.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    crate::persistence::mask_address(ip, 32, 64)
}

/// Per-source token buckets for one rate. The rate can change at config apply without losing
/// the buckets.
#[derive(Debug)]
pub struct SourceRateLimiter {
    rate: AtomicU32,
    shards: Box<[Mutex<HashMap<IpAddr, TokenBucket>>]>,
    hasher: RandomState,
}

impl SourceRateLimiter {
    /// `rate` 0 means no limit.
    pub fn new(rate: u32) -> Self {
        SourceRateLimiter {
            rate: AtomicU32::new(rate),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    pub fn set_rate(&self, rate: u32) {
        self.rate.store(rate, Relaxed);
    }

    pub fn rate(&self) -> u32 {
        self.rate.load(Relaxed)
    }

    /// Whether `source` may do one more thing now.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let rate = self.rate.load(Relaxed);
        if rate == 0 {
            return true;
        }
        let key = rate_key(source);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard
            .entry(key)
            .or_insert_with(|| TokenBucket::full(rate, now))
            .take(rate, now)
    }

    /// Drops buckets idle for more than a second (they are full again). Returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, b| {
                now.saturating_duration_since(b.idle_since()) <= Duration::from_secs(1)
            });
            removed += before - shard.len();
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
}

/// Says yes at most once per `period` per source: for logging an over-limit or misbehaving
/// client once a minute rather than once per connection or request.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    shards: Box<[Mutex<HashMap<IpAddr, Instant>>]>,
    hasher: RandomState,
}

impl LogThrottle {
    pub fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// One log line per minute per source.
    pub fn per_minute() -> Self {
        Self::new(Duration::from_secs(60))
    }

    /// Whether to log an event from `source` now.
    pub fn should_log(&self, source: IpAddr, now: Instant) -> bool {
        let shard = &self.shards[(self.hasher.hash_one(source) as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        match shard.get_mut(&source) {
            Some(last) if now.saturating_duration_since(*last) < self.period => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                shard.insert(source, now);
                true
            }
        }
    }

    /// Forgets sources not logged for a period.
    pub fn sweep(&self, now: Instant) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, last| now.saturating_duration_since(*last) < self.period);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test(start_paused = true)]
    async fn bucket_bursts_one_second_then_refills_at_rate() {
        let l = SourceRateLimiter::new(10);
        let now = Instant::now();
        assert_eq!((0..20).filter(|_| l.allow(A, now)).count(), 10);
        // Another source has its own bucket.
        assert!(l.allow(B, now));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| l.allow(A, Instant::now())).count(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Never more than the burst, however long the pause.
        assert_eq!((0..20).filter(|_| l.allow(A, Instant::now())).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_expire_and_ipv6_is_per_64() {
        let l = SourceRateLimiter::new(1);
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(l.allow(v6a, Instant::now()));
        assert!(!l.allow(v6b, Instant::now()), "same /64, same bucket");
        assert!(l.allow(A, Instant::now()));
        assert_eq!(l.len(), 2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(l.sweep(Instant::now()), 2);
        assert!(l.is_empty());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = SourceRateLimiter::new(0);
        assert!((0..1000).all(|_| l.allow(A, Instant::now())));
        assert!(l.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn log_throttle_says_yes_once_per_period_per_source() {
        let t = LogThrottle::per_minute();
        assert!(t.should_log(A, Instant::now()));
        assert!(!t.should_log(A, Instant::now()));
        assert!(t.should_log(B, Instant::now()));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!t.should_log(A, Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.should_log(A, Instant::now()));
    }
}
