//! Source-address consistent hashing with Maglev (Eisenbud et al., NSDI 2016, §3.4).
//!
//! Each server gets a pseudo-random permutation of the `M` table slots from its stable id
//! (`offset = h1(id) mod M`, `skip = h2(id) mod (M − 1) + 1`); servers take turns claiming
//! their next free slot until the table is full. With weights, a server takes a turn in
//! iteration `k` only while it holds fewer than `k × weight / max_weight` slots, so shares
//! follow weights. Servers are ordered by id before filling, so the table depends on the server
//! set only: two builds from the same config (on either box, or on several boxes behind ECMP)
//! are identical, and the hash functions are fixed (FNV-1a with a splitmix64 finalizer), never
//! seeded per process.
//!
//! `M` is the smallest prime ≥ max(65537, 100 × servers): at least 100 slots per server keeps
//! each server's share within about 1 % of its weight. Adding or removing one of `n` servers
//! moves about `1/n` of the clients (those that must move) and very few others.
//!
//! A client hashes to slot `hash(address) mod M`. When that slot's server cannot take the
//! session (down, draining, disabled, full), the following slots are tried in order: only the
//! clients of that server move, spread over the others by the table's own randomness, and the
//! table needs no rebuild when health changes.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    /// Slot → index of the server in config order.
    slots: Vec<u32>,
}

/// The table size for `n` servers: the smallest prime ≥ max(65537, 100 n).
pub fn table_size(n: usize) -> usize {
    let mut m = (100 * n).max(65537);
    while !is_prime(m) {
        m += 1;
    }
    m
}

fn is_prime(m: usize) -> bool {
    if m < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= m {
        if m.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl MaglevTable {
    /// `servers`: `(stable id, weight)` in config order; `m` must be prime.
    pub fn build(servers: &[(&str, u32)], m: usize) -> Self {
        let n = servers.len();
        if n == 0 {
            return MaglevTable { slots: Vec::new() };
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| servers[*a].0.cmp(servers[*b].0));
        let perm: Vec<(u64, u64)> = servers
            .iter()
            .map(|(id, _)| {
                let offset = stable_hash(id.as_bytes(), 0x6d61676c65763031) % m as u64;
                let skip = stable_hash(id.as_bytes(), 0x6d61676c65763032) % (m as u64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let max_weight = u64::from(servers.iter().map(|s| s.1.max(1)).max().unwrap_or(1));
        let mut next = vec![0u64; n];
        let mut held = vec![0u64; n];
        let mut slots = vec![u32::MAX; m];
        let mut filled = 0;
        let mut iteration = 0u64;
        while filled < m {
            iteration += 1;
            for &i in &order {
                let weight = u64::from(servers[i].1.max(1));
                if held[i] * max_weight >= iteration * weight {
                    continue;
                }
                let (offset, skip) = perm[i];
                let mut c = ((offset + next[i] * skip) % m as u64) as usize;
                while slots[c] != u32::MAX {
                    next[i] += 1;
                    c = ((offset + next[i] * skip) % m as u64) as usize;
                }
                slots[c] = i as u32;
                next[i] += 1;
                held[i] += 1;
                filled += 1;
                if filled == m {
                    break;
                }
            }
        }
        MaglevTable { slots }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The server of the slot `hash` falls in, ignoring eligibility.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let m = self.slots.len();
        (m > 0).then(|| self.slots[(hash % m as u64) as usize] as usize)
    }

    /// The first eligible server from `hash`'s slot on.
    pub fn pick(&self, hash: u64, n: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let m = self.slots.len();
        if m == 0 || !(0..n).any(&eligible) {
            return None;
        }
        let start = (hash % m as u64) as usize;
        (0..m)
            .map(|k| self.slots[(start + k) % m] as usize)
            .find(|&i| eligible(i))
    }
}

/// The flow hash of a client address (the port is left out: a client keeps its server across
/// connections).
pub fn flow_hash(client: IpAddr) -> u64 {
    match client {
        IpAddr::V4(v4) => stable_hash(&v4.octets(), 0x666c6f77),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => stable_hash(&v4.octets(), 0x666c6f77),
            None => stable_hash(&v6.octets(), 0x666c6f77),
        },
    }
}

/// FNV-1a over `bytes` and `seed`, finished with splitmix64. Fixed forever: changing it moves
/// every client.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("srv-{i}")).collect()
    }

    fn table(ids: &[String], weights: Option<&[u32]>) -> MaglevTable {
        let servers: Vec<(&str, u32)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), weights.map_or(1, |w| w[i])))
            .collect();
        MaglevTable::build(&servers, table_size(servers.len()))
    }

    fn clients() -> impl Iterator<Item = IpAddr> {
        (0..100_000u32).map(|i| IpAddr::V4((0x0a00_0000 + i * 7).into()))
    }

    #[test]
    fn table_size_is_prime_and_large_enough() {
        assert_eq!(table_size(1), 65537);
        assert_eq!(table_size(655), 65537);
        let m = table_size(1000);
        assert!(m >= 100_000 && is_prime(m));
    }

    #[test]
    fn same_config_same_table_whatever_the_order() {
        let a = ids(7);
        let mut b = a.clone();
        b.reverse();
        let ta = table(&a, None);
        let tb = table(&b, None);
        // Indices differ with the order; the server *ids* per slot must not.
        for s in (0..ta.len()).step_by(97) {
            assert_eq!(a[ta.slots[s] as usize], b[tb.slots[s] as usize]);
        }
        assert_eq!(table(&a, None), ta);
    }

    #[test]
    fn shares_follow_weights() {
        let a = ids(3);
        let t = table(&a, Some(&[1, 2, 5]));
        let mut count = [0usize; 3];
        for s in &t.slots {
            count[*s as usize] += 1;
        }
        let m = t.len() as f64;
        for (i, w) in [1.0, 2.0, 5.0].iter().enumerate() {
            let share = count[i] as f64 / m;
            assert!((share - w / 8.0).abs() < 0.01, "{count:?}");
        }
    }

    #[test]
    fn adding_or_removing_a_server_moves_few_clients() {
        let ten = ids(10);
        let eleven = ids(11);
        let t10 = table(&ten, None);
        let t11 = table(&eleven, None);
        let mut moved = 0;
        let mut moved_elsewhere = 0;
        for c in clients() {
            let a = &ten[t10.lookup(flow_hash(c)).unwrap()];
            let b = &eleven[t11.lookup(flow_hash(c)).unwrap()];
            if a != b {
                moved += 1;
                if b != "srv-10" {
                    moved_elsewhere += 1;
                }
            }
        }
        // About 1/11 must move to the new server; Maglev moves a few percent more.
        assert!((8_000..=12_500).contains(&moved), "{moved} moved");
        assert!(
            moved_elsewhere < 3_500,
            "{moved_elsewhere} moved between old servers"
        );

        // Removing srv-3 from the table moves its clients and few others.
        let nine: Vec<String> = ten.iter().filter(|s| *s != "srv-3").cloned().collect();
        let t9 = table(&nine, None);
        let mut moved = 0;
        for c in clients() {
            let a = &ten[t10.lookup(flow_hash(c)).unwrap()];
            let b = &nine[t9.lookup(flow_hash(c)).unwrap()];
            if a != b && a != "srv-3" {
                moved += 1;
            }
        }
        assert!(moved < 3_500, "{moved} clients of other servers moved");
    }

    #[test]
    fn an_ineligible_server_moves_only_its_own_clients() {
        let a = ids(5);
        let t = table(&a, None);
        let mut moved_others = 0;
        let mut spread = [0usize; 5];
        for c in clients() {
            let h = flow_hash(c);
            let before = t.pick(h, 5, |_| true).unwrap();
            let after = t.pick(h, 5, |i| i != 2).unwrap();
            assert_ne!(after, 2);
            if before != 2 && before != after {
                moved_others += 1;
            }
            if before == 2 {
                spread[after] += 1;
            }
        }
        assert_eq!(moved_others, 0);
        // The down server's clients are spread over all the others.
        for (i, n) in spread.iter().enumerate() {
            if i != 2 {
                assert!(*n > 2_000, "{spread:?}");
            }
        }
        assert_eq!(t.pick(1, 5, |_| false), None);
    }

    #[test]
    fn hash_is_fixed() {
        // Pinned values (computed independently): a change here breaks ECMP peers and moves
        // every client.
        assert_eq!(
            stable_hash(b"web1", 0x6d61676c65763031),
            0x0214_a28c_2f39_3b37
        );
        assert_eq!(
            flow_hash("192.0.2.1".parse().unwrap()),
            0x7c24_de4b_5d28_955a
        );
        assert_ne!(stable_hash(b"a", 0), stable_hash(b"a", 1));
        assert_eq!(
            flow_hash("192.0.2.1".parse().unwrap()),
            flow_hash("::ffff:192.0.2.1".parse().unwrap())
        );
    }
}
