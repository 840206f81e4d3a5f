//! Weighted least connections: the eligible server with the fewest active connections relative
//! to its weight, `(active + 1) / weight`, wins (the `+ 1` lets weight decide among idle
//! servers). Ties go to the first in a rotating order, so idle servers share the first picks.

use super::Load;

pub fn pick(
    n: usize,
    start: usize,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> Load,
) -> Option<usize> {
    let mut best: Option<(usize, Load)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !eligible(i) {
            continue;
        }
        let l = load(i);
        match best {
            Some((_, b)) if !less_loaded(l, b) => {}
            _ => best = Some((i, l)),
        }
    }
    best.map(|(i, _)| i)
}

/// `(a.active + 1) / a.weight < (b.active + 1) / b.weight`, without division.
pub fn less_loaded(a: Load, b: Load) -> bool {
    u128::from(a.active + 1) * u128::from(b.weight.max(1))
        < u128::from(b.active + 1) * u128::from(a.weight.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_least_loaded_relative_to_weight() {
        let loads = [(10, 1), (10, 5), (3, 1)];
        let load = |i: usize| Load {
            active: loads[i].0,
            weight: loads[i].1,
        };
        // (11/1, 11/5 = 2.2, 4/1): the heavy server with many connections still wins.
        assert_eq!(pick(3, 0, |_| true, load), Some(1));
        assert_eq!(pick(3, 0, |i| i != 1, load), Some(2));
        assert_eq!(pick(3, 0, |_| false, load), None);
    }

    #[test]
    fn weights_spread_connections_that_stay_open() {
        let weights = [1u32, 3];
        let mut active = [0u64; 2];
        for k in 0..400 {
            let i = pick(
                2,
                k,
                |_| true,
                |i| Load {
                    active: active[i],
                    weight: weights[i],
                },
            )
            .unwrap();
            active[i] += 1;
        }
        assert_eq!(active, [100, 300]);
    }

    #[test]
    fn idle_servers_share_by_rotation() {
        let mut seen = [false; 3];
        for k in 0..3 {
            seen[pick(
                3,
                k,
                |_| true,
                |_| Load {
                    active: 0,
                    weight: 1,
                },
            )
            .unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
