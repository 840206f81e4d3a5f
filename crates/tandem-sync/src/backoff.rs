//! Reconnect delays: exponential with "equal jitter" (half the delay fixed, half random), so a
//! pair that lost its link does not dial in lockstep and a dead peer costs one attempt per
//! `max` at most.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next attempt; `random` is uniform in `[0, 1)`.
    pub fn delay(&mut self, random: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base / 2 + base.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }

    /// After a connection that worked: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A uniform random number in `[0, 1)` from the system's generator.
pub fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let lows: Vec<_> = (0..10).map(|_| b.delay(0.0).as_millis()).collect();
        assert_eq!(lows, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.delay(0.999_999).as_millis(), 99);
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }
}
