//! Failed logins slow down, so that guessing is slow and the real admin is never locked out.
//!
//! Failures are counted **per source address** and **per (account, source)**. After
//! [`FREE_FAILURES`] failures, each further one makes that key wait `base × 2^(k-1)` (capped)
//! before its next attempt is even checked; attempts during the wait are answered 429 with
//! `Retry-After`. A success clears the source's counts. An account is never blocked as such:
//! an attacker hammering `admin` from one address slows only that address, and the admin
//! logs in from another. Guesses at one account spread over many addresses are slowed by a
//! short per-account pause before each check (at most [`ACCOUNT_PAUSE_MAX`]), which delays but
//! never refuses. Counts fade: a key quiet for its wait plus [`FORGET_AFTER`] starts over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before any wait.
pub const FREE_FAILURES: u32 = 3;
/// The longest pause per account.
pub const ACCOUNT_PAUSE_MAX: Duration = Duration::from_secs(1);
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Source(IpAddr),
    AccountSource(String, IpAddr),
    Account(String),
}

#[derive(Clone, Debug)]
struct Count {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

pub struct LoginThrottle {
    counts: Mutex<HashMap<Key, Count>>,
}

/// What to do with a login attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Check the password after pausing this long (per-account slowdown; often zero).
    Check(Duration),
    /// Refuse without checking; try again after this long.
    Wait(Duration),
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            counts: Mutex::new(HashMap::new()),
        }
    }
}

impl LoginThrottle {
    pub fn admit(&self, account: &str, source: IpAddr, now: Instant) -> Admit {
        let map = self.lock();
        let mut wait = Duration::ZERO;
        for key in [
            Key::Source(source),
            Key::AccountSource(account.to_owned(), source),
        ] {
            if let Some(c) = map.get(&key)
                && c.blocked_until > now
            {
                wait = wait.max(c.blocked_until - now);
            }
        }
        if !wait.is_zero() {
            return Admit::Wait(wait);
        }
        let pause = map
            .get(&Key::Account(account.to_owned()))
            .filter(|c| now.duration_since(c.last) < FORGET_AFTER)
            .map(|c| (Duration::from_millis(100) * c.failures.min(10)).min(ACCOUNT_PAUSE_MAX))
            .unwrap_or_default();
        Admit::Check(pause)
    }

    pub fn failed(
        &self,
        account: &str,
        source: IpAddr,
        base: Duration,
        max: Duration,
        now: Instant,
    ) {
        let mut map = self.lock();
        if map.len() >= MAX_KEYS {
            map.retain(|_, c| now.duration_since(c.last) < FORGET_AFTER);
        }
        for key in [
            Key::Source(source),
            Key::AccountSource(account.to_owned(), source),
            Key::Account(account.to_owned()),
        ] {
            let c = map.entry(key).or_insert(Count {
                failures: 0,
                blocked_until: now,
                last: now,
            });
            let quiet = now.saturating_duration_since(c.blocked_until.max(c.last));
            if quiet > FORGET_AFTER {
                c.failures = 0;
            }
            c.failures += 1;
            c.last = now;
            if c.failures > FREE_FAILURES {
                let k = (c.failures - FREE_FAILURES - 1).min(30);
                let wait = base.saturating_mul(1u32 << k.min(31)).min(max);
                c.blocked_until = now + wait;
            }
        }
    }

    /// A successful login from `source`: its counts start over (the account's stay, so a
    /// distributed guess keeps its pause).
    pub fn succeeded(&self, account: &str, source: IpAddr) {
        let mut map = self.lock();
        map.remove(&Key::Source(source));
        map.remove(&Key::AccountSource(account.to_owned(), source));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Count>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guessing_source_slows_down_more_each_time_but_others_still_log_in() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let bad: IpAddr = "192.0.2.66".parse().unwrap();
        let good: IpAddr = "192.0.2.10".parse().unwrap();
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        let mut waits = Vec::new();
        let mut at = now;
        for _ in 0..10 {
            if let Admit::Wait(w) = t.admit("admin", bad, at) {
                at += w;
            }
            t.failed("admin", bad, base, max, at);
            if let Admit::Wait(w) = t.admit("admin", bad, at) {
                waits.push(w);
            }
        }
        assert_eq!(waits.len(), 10 - FREE_FAILURES as usize);
        assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
        assert_eq!(waits[0], base);
        // Another source is not refused; it may pause a little before the check.
        match t.admit("admin", good, at) {
            Admit::Check(p) => assert!(p <= ACCOUNT_PAUSE_MAX),
            other => panic!("{other:?}"),
        }
        // The same source on another account is still refused: it is the source that guesses.
        assert!(matches!(t.admit("bob", bad, at), Admit::Wait(_)));
    }

    #[test]
    fn the_wait_is_capped() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let src: IpAddr = "192.0.2.66".parse().unwrap();
        for _ in 0..50 {
            t.failed(
                "x",
                src,
                Duration::from_secs(1),
                Duration::from_secs(60),
                now,
            );
        }
        assert_eq!(t.admit("x", src, now), Admit::Wait(Duration::from_secs(60)));
    }
}
