//! Power of two random choices: two random eligible servers, the less loaded one (relative to
//! its weight, as in least connections) wins. Nearly as good as least connections, without
//! scanning every server and without herding onto one newly idle server.

use super::Load;
use super::least_conn::less_loaded;
use std::cell::Cell;
use std::hash::BuildHasher;

/// Two distinct random eligible servers compared by load. `random` supplies the randomness
/// (any 64 random bits), so the choice is a pure function of its inputs.
pub fn pick(
    n: usize,
    random: u64,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> Load,
) -> Option<usize> {
    let count = (0..n).filter(|&i| eligible(i)).count();
    match count {
        0 => None,
        1 => (0..n).find(|&i| eligible(i)),
        _ => {
            let a = (random % count as u64) as usize;
            let mut b = ((random >> 32) % (count as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k).unwrap_or(0);
            let (a, b) = (nth(a), nth(b));
            Some(if less_loaded(load(b), load(a)) { b } else { a })
        }
    }
}

/// 64 random bits from a per-thread xorshift generator (not for cryptography).
pub fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_less_loaded_of_the_two() {
        let active = [50u64, 1];
        let load = |i: usize| Load {
            active: active[i],
            weight: 1,
        };
        for r in 0..100 {
            assert_eq!(pick(2, random() ^ r, |_| true, load), Some(1));
        }
    }

    #[test]
    fn the_most_loaded_never_wins_and_all_others_do() {
        let active = [5u64, 1, 2, 3, 100];
        let mut wins = [0; 5];
        for _ in 0..10_000 {
            let i = pick(
                5,
                random(),
                |_| true,
                |i| Load {
                    active: active[i],
                    weight: 1,
                },
            )
            .unwrap();
            wins[i] += 1;
        }
        assert_eq!(wins[4], 0, "{wins:?}");
        assert!(
            wins[1] > wins[2] && wins[2] > wins[3] && wins[3] > wins[0],
            "{wins:?}"
        );
    }

    #[test]
    fn skips_ineligible_servers() {
        for _ in 0..100 {
            let i = pick(
                4,
                random(),
                |i| i % 2 == 1,
                |_| Load {
                    active: 0,
                    weight: 1,
                },
            )
            .unwrap();
            assert!(i % 2 == 1);
        }
        assert_eq!(
            pick(
                4,
                random(),
                |_| false,
                |_| Load {
                    active: 0,
                    weight: 1
                }
            ),
            None
        );
        assert_eq!(
            pick(
                4,
                random(),
                |i| i == 2,
                |_| Load {
                    active: 0,
                    weight: 1
                }
            ),
            Some(2)
        );
    }
}
