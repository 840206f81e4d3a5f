//! Smooth weighted round robin (nginx's): weights are respected over every cycle and picks are
//! interleaved (weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`).
//!
//! The whole cycle is computed once per config as a sequence of server indices; picking is one
//! atomic increment of a cursor into it. Entries of servers that cannot take a session are
//! skipped and the cursor moved past them, so the remaining servers keep their proportions.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Longest cycle kept. Weights whose cycle would be longer are scaled down (keeping each ≥ 1).
pub const MAX_CYCLE: u64 = 1 << 16;

#[derive(Debug)]
pub struct RoundRobin {
    sequence: Vec<u32>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        RoundRobin {
            sequence: smooth_sequence(weights),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn pick(
        &self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        weight: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Relaxed);
        // Walk the cycle a little; when most servers are out, fall back to a weighted choice
        // among the eligible ones so a pick stays O(servers).
        let walk = len.min(2 * n + 8);
        for k in 0..walk {
            let i = self.sequence[(start + k) % len] as usize;
            if eligible(i) {
                if k > 0 {
                    self.cursor.fetch_add(k, Relaxed);
                }
                return Some(i);
            }
        }
        let total: u64 = (0..n)
            .filter(|&i| eligible(i))
            .map(|i| u64::from(weight(i)))
            .sum();
        if total == 0 {
            return None;
        }
        let mut target = start as u64 % total;
        (0..n).filter(|&i| eligible(i)).find(|&i| {
            let w = u64::from(weight(i));
            if target < w {
                true
            } else {
                target -= w;
                false
            }
        })
    }
}

/// One full cycle of nginx's smooth weighted round robin: at each step every server's current
/// weight grows by its weight, the largest wins and loses the total.
pub fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let weights = scaled(weights);
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::from(*w);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// Weights divided by their greatest common divisor, and scaled down when the cycle would be
/// longer than [`MAX_CYCLE`].
fn scaled(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0, |g, w| gcd(g, *w)).max(1);
    let mut w: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let total: u64 = w.iter().map(|w| u64::from(*w)).sum();
    if total > MAX_CYCLE {
        w = w
            .iter()
            .map(|x| ((u64::from(*x) * MAX_CYCLE / total) as u32).max(1))
            .collect();
    }
    w
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_interleaving_like_nginx() {
        assert_eq!(smooth_sequence(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_sequence(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(smooth_sequence(&[2, 4]), [1, 0, 1]);
    }

    #[test]
    fn distribution_follows_weights() {
        let rr = RoundRobin::new(&[3, 2, 5]);
        let mut count = [0; 3];
        for _ in 0..1000 {
            count[rr.pick(3, |_| true, |_| 1).unwrap()] += 1;
        }
        assert_eq!(count, [300, 200, 500]);
    }

    #[test]
    fn skipped_server_share_goes_to_the_others_in_proportion() {
        let weights = [1, 1, 1, 1];
        let rr = RoundRobin::new(&weights);
        let mut count = [0; 4];
        for _ in 0..3000 {
            count[rr.pick(4, |i| i != 1, |i| weights[i]).unwrap()] += 1;
        }
        assert_eq!(count[1], 0);
        for c in [count[0], count[2], count[3]] {
            assert!((900..=1100).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn none_when_nothing_is_eligible_and_fallback_is_weighted() {
        let weights = [1000, 1, 1000];
        let rr = RoundRobin::new(&weights);
        assert_eq!(rr.pick(3, |_| false, |i| weights[i]), None);
        // Only the light server left: found even though its entries are rare in the cycle.
        for _ in 0..10 {
            assert_eq!(rr.pick(3, |i| i == 1, |i| weights[i]), Some(1));
        }
    }

    #[test]
    fn long_cycles_are_scaled() {
        let weights = vec![997; 200];
        assert!(smooth_sequence(&weights).len() as u64 <= MAX_CYCLE);
        let w = [1000, 999, 1];
        let seq = smooth_sequence(&w);
        assert_eq!(seq.len(), 2000);
    }
}
