//! Config histories of the two boxes: what the writer must send, what the reader lost in a
//! partition, and which epoch a new writer begins (`docs/sync.md`, "Epochs and partitions").
//!
//! A history is a chain of versions linked by `parent`. Identity is the whole
//! `(epoch, n, hash)`: two boxes may hold different versions under one `(epoch, n)` (both
//! imported a config file before they were paired), and the hash tells them apart.

use std::collections::{HashMap, HashSet};
use tandem_config::store::{VersionId, VersionMeta};

/// The epoch a box begins when it becomes the writer: the smallest above every epoch it has
/// seen with its own parity. The box whose certificate fingerprint is smaller takes odd
/// epochs, the other even ones, so two boxes that both became writer during a partition
/// never make versions with the same `(epoch, n)`.
pub fn next_epoch(max_seen: u64, odd: bool) -> u64 {
    let e = max_seen + 1;
    if (e % 2 == 1) == odd { e } else { e + 1 }
}

/// The chain ending at `head`, newest first, as far back as it is stored.
fn chain<'a>(
    by_id: &HashMap<&'a VersionId, &'a VersionMeta>,
    head: &VersionId,
) -> Vec<&'a VersionMeta> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut at = by_id.get(head).copied();
    while let Some(meta) = at {
        if !seen.insert(&meta.id) {
            break; // a loop would be corrupt data; never walk it twice
        }
        out.push(meta);
        at = meta.parent.as_ref().and_then(|p| by_id.get(p).copied());
    }
    out
}

/// The versions of `head`'s history the peer lacks, oldest first: walking back from `head`
/// until a version the peer has (or the stored history ends).
pub fn missing_for_peer(
    versions: &[VersionMeta],
    head: &VersionId,
    peer_has: &HashSet<VersionId>,
) -> Vec<VersionMeta> {
    let by_id: HashMap<&VersionId, &VersionMeta> = versions.iter().map(|m| (&m.id, m)).collect();
    let mut missing: Vec<VersionMeta> = chain(&by_id, head)
        .into_iter()
        .take_while(|m| !peer_has.contains(&m.id))
        .cloned()
        .collect();
    missing.reverse();
    missing
}

/// The reader's versions that lost to the writer's history, oldest first: walking back from
/// the version the reader runs while the writer does not know it. Versions older than the
/// writer's oldest stored one (`writer_oldest_n`) were pruned there, not lost: the walk stops.
pub fn losing_branch(
    versions: &[VersionMeta],
    running: &VersionId,
    writer_known: &HashSet<VersionId>,
    writer_oldest_n: u64,
) -> Vec<VersionMeta> {
    let by_id: HashMap<&VersionId, &VersionMeta> = versions.iter().map(|m| (&m.id, m)).collect();
    let mut branch: Vec<VersionMeta> = chain(&by_id, running)
        .into_iter()
        .take_while(|m| !writer_known.contains(&m.id) && m.id.n >= writer_oldest_n)
        .cloned()
        .collect();
    branch.reverse();
    branch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(epoch: u64, n: u64, tag: &str, parent: Option<&VersionMeta>) -> VersionMeta {
        VersionMeta {
            id: VersionId {
                epoch,
                n,
                hash: format!("{tag:0>64}"),
            },
            parent: parent.map(|p| p.id.clone()),
            committed_at: 0,
            author: "t".into(),
            reason: "r".into(),
            node: "n".into(),
        }
    }

    #[test]
    fn epochs_keep_their_box_parity_and_grow() {
        assert_eq!(next_epoch(0, true), 1);
        assert_eq!(next_epoch(1, true), 3);
        assert_eq!(next_epoch(1, false), 2);
        assert_eq!(next_epoch(2, false), 4);
        assert_eq!(next_epoch(4, true), 5);
        for max in 0..20 {
            assert_ne!(next_epoch(max, true), next_epoch(max, false));
            assert!(next_epoch(max, true) > max);
        }
    }

    #[test]
    fn the_writer_sends_what_the_peer_lacks_oldest_first() {
        let a = v(1, 1, "a", None);
        let b = v(1, 2, "b", Some(&a));
        let c = v(1, 3, "c", Some(&b));
        let d = v(1, 4, "d", Some(&c));
        let all = vec![a.clone(), b.clone(), c.clone(), d.clone()];
        let has: HashSet<_> = [a.id.clone()].into();
        let ids = |m: Vec<VersionMeta>| m.into_iter().map(|m| m.id.n).collect::<Vec<_>>();
        assert_eq!(ids(missing_for_peer(&all, &d.id, &has)), [2, 3, 4]);
        let has: HashSet<_> = [d.id.clone()].into();
        assert!(missing_for_peer(&all, &d.id, &has).is_empty());
        // A rollback: the head is old and the peer has it: nothing to send.
        let has: HashSet<_> = all.iter().map(|m| m.id.clone()).collect();
        assert!(missing_for_peer(&all, &b.id, &has).is_empty());
        assert_eq!(
            ids(missing_for_peer(&all, &d.id, &HashSet::new())),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_partition_branch_is_found_but_pruned_or_rolled_back_history_is_not() {
        let base = v(1, 1, "base", None);
        let w2 = v(1, 2, "w2", Some(&base));
        let l2 = v(2, 2, "l2", Some(&base));
        let l3 = v(2, 3, "l3", Some(&l2));
        let reader = vec![base.clone(), l2.clone(), l3.clone()];
        let writer: HashSet<_> = [base.id.clone(), w2.id.clone()].into();
        let branch = losing_branch(&reader, &l3.id, &writer, 1);
        assert_eq!(branch, vec![l2.clone(), l3.clone()]);

        // Same (epoch, n) as the writer's but another hash: still the reader's own.
        let l2_same_stem = v(1, 2, "other", Some(&base));
        let reader = vec![base.clone(), l2_same_stem.clone()];
        assert_eq!(
            losing_branch(&reader, &l2_same_stem.id, &writer, 1),
            vec![l2_same_stem]
        );

        // The writer knows what the reader runs (a rollback on the writer): no branch.
        let writer_all: HashSet<_> = [base.id.clone(), l2.id.clone(), l3.id.clone()].into();
        let reader = vec![base.clone(), l2.clone(), l3.clone()];
        assert!(losing_branch(&reader, &l3.id, &writer_all, 1).is_empty());

        // The reader was offline for long: its version was pruned on the writer, not lost.
        let old = v(1, 1, "base", None);
        let writer_new: HashSet<_> = [v(1, 50, "x", None).id].into();
        assert!(losing_branch(std::slice::from_ref(&old), &old.id, &writer_new, 50).is_empty());
    }
}
