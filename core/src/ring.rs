//! Ring placement: which control node owns each of `P` partitions (a power of two). A
//! worker's proxy lives at the owner of `partition_of(worker id)`.
//!
//! Ownership is a pure function of the live member set ([`place`]), so every control node
//! that sees the same members computes the same ring, with no ring state to replicate or
//! reconcile after a split. It is strictly balanced (no member owns more than
//! `ceil(P/n)`). Movement on a join or leave is close to the minimum on average (1.06x
//! the ideal over long seeded walks at P = 64, 1.03x at P = 256) but a single step can
//! move up to 2.4x its ideal at P = 64 with up to 8 members (more when there are few
//! partitions per member): a pure, strictly balanced function cannot
//! keep every step within 1.25x (the balance constraint forces displacement chains that
//! depend on the whole member set; see the issue 4 note).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Default partition count: 256, so that up to 256 control members each own a share (at
/// 128 members, 2 partitions each; a member beyond P would own none), with movement close
/// to the minimum (1.03x over seeded walks) and a placement that costs P x n cheap scores
/// plus their sort (about 3 ms at 128 members).
pub const PARTITIONS_DEFAULT: u32 = 256;

/// Ownership of every partition: `owners[p]` is the member owning partition `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    owners: Vec<String>,
}

/// A member's ring identity: the first 8 bytes of SHA-256 over its id, computed once per
/// member and placement.
fn member_hash(member: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"nkcluster/v1 ring\0");
    h.update(member.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The rendezvous score of a partition for a member: a 64-bit mix (splitmix64's
/// finalizer) of the member's hash and the partition, cheap enough for the P x n pairs of
/// a placement at 128 members (a SHA-256 per pair took 60 ms at P = 1024).
fn score(partition: u32, member_hash: u64) -> u64 {
    let mut z = member_hash ^ u64::from(partition).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The partition of a key (a worker id), for `partitions` a power of two.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(b"nkcluster/v1 key\0");
    h.update(key.as_bytes());
    let d = h.finalize();
    let v = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    v & partitions.saturating_sub(1)
}

impl Ring {
    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        u32::try_from(self.owners.len()).unwrap_or(u32::MAX)
    }

    /// The owner of partition `p`.
    pub fn owner(&self, p: u32) -> Option<&str> {
        self.owners.get(p as usize).map(String::as_str)
    }

    /// The owner of `key`'s partition.
    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.owner(partition_of(key, self.partitions()))
    }

    /// How many partitions `member` owns.
    pub fn load(&self, member: &str) -> usize {
        self.owners.iter().filter(|o| *o == member).count()
    }

    /// Partitions whose owner differs between two rings of the same size.
    pub fn moved(&self, other: &Ring) -> usize {
        self.owners
            .iter()
            .zip(&other.owners)
            .filter(|(a, b)| a != b)
            .count()
    }
}

fn sorted_unique(members: &[String]) -> Vec<String> {
    let mut m = members.to_vec();
    m.sort();
    m.dedup();
    m
}

/// Pure placement (rendezvous scores, greedy stable matching): every (partition, member) pair ranked by score; each pair in turn
/// assigns its partition when the partition is free and the member is under
/// `ceil(P/n)`. `None` when there are no members or `partitions` is not a power of two.
pub fn place(partitions: u32, members: &[String]) -> Option<Ring> {
    let members = sorted_unique(members);
    if members.is_empty() || !partitions.is_power_of_two() {
        return None;
    }
    let n = members.len();
    let cap = (partitions as usize).div_ceil(n);
    let hashes: Vec<u64> = members.iter().map(|m| member_hash(m)).collect();
    let mut pairs: Vec<(u64, u32, usize)> = Vec::with_capacity(partitions as usize * n);
    for p in 0..partitions {
        for (i, h) in hashes.iter().enumerate() {
            pairs.push((score(p, *h), p, i));
        }
    }
    pairs.sort_unstable_by(|a, b| b.cmp(a));
    let mut owner: Vec<Option<usize>> = vec![None; partitions as usize];
    let mut load = vec![0usize; n];
    for (_, p, i) in pairs {
        if owner[p as usize].is_none() && load[i] < cap {
            owner[p as usize] = Some(i);
            load[i] += 1;
        }
    }
    let owners = owner
        .into_iter()
        .map(|o| members[o.unwrap_or(0)].clone())
        .collect();
    Some(Ring { owners })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(v: &[u16]) -> Vec<String> {
        v.iter().map(|i| format!("c{i}")).collect()
    }

    fn balanced(r: &Ring, members: &[String]) -> bool {
        let cap = (r.partitions() as usize).div_ceil(sorted_unique(members).len());
        members.iter().all(|m| r.load(m) <= cap)
            && (0..r.partitions())
                .all(|p| r.owner(p).is_some_and(|o| members.iter().any(|m| m == o)))
    }

    #[test]
    fn with_the_default_partitions_128_control_members_each_own_two() {
        let members: Vec<String> = (0..128).map(|i| format!("control-{i:03}")).collect();
        let r = place(PARTITIONS_DEFAULT, &members).expect("ring");
        assert!(members.iter().all(|m| r.load(m) == 2));
        // One more member: still nobody above the cap of ceil(256 / 129) = 2.
        let mut more = members.clone();
        more.push("control-128".into());
        let r2 = place(PARTITIONS_DEFAULT, &more).expect("ring");
        assert!(more.iter().all(|m| r2.load(m) <= 2));
        assert!(r.moved(&r2) >= 1);
    }

    #[test]
    fn placement_needs_members_and_a_power_of_two() {
        assert_eq!(place(64, &[]), None);
        assert_eq!(place(63, &names(&[1])), None);
        let r = place(64, &names(&[1])).expect("ring");
        assert_eq!(r.load("c1"), 64);
        assert_eq!(partition_of("w1", 64), partition_of("w1", 64));
        assert!(partition_of("anything", 64) < 64);
    }

    proptest! {
        #[test]
        fn pure_placement_is_balanced_and_order_independent(
            ids in proptest::collection::btree_set(0u16..500, 1..40),
            pexp in 4u32..9,
        ) {
            let p = 1 << pexp;
            let m: Vec<String> = names(&ids.iter().copied().collect::<Vec<_>>());
            let mut rev = m.clone();
            rev.reverse();
            let r = place(p, &m).expect("ring");
            prop_assert!(balanced(&r, &m));
            prop_assert_eq!(Some(r), place(p, &rev));
        }

    }

    /// The fewest partitions a change from `before` (members `from`) to a balanced ring
    /// over `to` must move: every partition of a departed member, every partition above
    /// the new cap, and at least a newcomer's fair share `floor(P/n)`.
    fn ideal(before: &Ring, from: &[String], to: &[String]) -> usize {
        let p = before.partitions() as usize;
        let cap = p.div_ceil(to.len());
        let gone: usize = from
            .iter()
            .filter(|m| !to.contains(m))
            .map(|m| before.load(m))
            .sum();
        let excess: usize = to.iter().map(|m| before.load(m).saturating_sub(cap)).sum();
        let newcomers = to.iter().filter(|m| !from.contains(m)).count();
        (gone + excess).max(newcomers * (p / to.len()))
    }

    /// Movement of the pure placement over seeded join/leave walks: every step, its
    /// ratio to the ideal. Deterministic (a fixed xorshift seed).
    fn walks(p: u32, walks: usize, steps: usize, max_members: usize) -> Vec<(usize, usize)> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for _ in 0..walks {
            let mut m: Vec<String> = vec![format!("c{}", next() % 100_000)];
            let mut ring = place(p, &m).expect("ring");
            for _ in 0..steps {
                let before = m.clone();
                let join = m.len() == 1 || (m.len() < max_members && next() % 2 == 0);
                if join {
                    m.push(format!("c{}", next() % 100_000));
                    m.sort();
                    m.dedup();
                } else {
                    let k = (next() % m.len() as u64) as usize;
                    m.remove(k);
                }
                let r = place(p, &m).expect("ring");
                out.push((ring.moved(&r), ideal(&ring, &before, &m)));
                ring = r;
            }
        }
        out
    }

    /// The movement figures the README and the design note quote, as a regression
    /// guard: over 18,000 seeded join/leave steps (up to 8 members), the total moved is
    /// within 1.10x of the ideal (measured 1.06x at P = 64, 1.03x at P = 256) and no
    /// single step moves more than 2.5x / 2.0x its ideal (measured 2.38x and 1.59x).
    #[test]
    fn movement_stays_close_to_the_minimum() {
        for (p, worst_allowed) in [(64u32, 2.5), (256, 2.0)] {
            let w = walks(p, 1500, 12, 8);
            let moved: usize = w.iter().map(|x| x.0).sum();
            let ideal: usize = w.iter().map(|x| x.1).sum();
            let total = moved as f64 / ideal as f64;
            let worst = w
                .iter()
                .map(|&(a, b)| a as f64 / b.max(1) as f64)
                .fold(0.0, f64::max);
            eprintln!("P={p}: total {total:.3}x, worst step {worst:.2}x");
            assert!(total <= 1.10, "P={p}: total {total:.3}x the ideal");
            assert!(
                worst <= worst_allowed,
                "P={p}: a step moved {worst:.2}x its ideal"
            );
        }
    }

    proptest! {
        #[test]
        fn every_step_of_a_walk_is_balanced_and_bounded(
            ids in proptest::collection::btree_set(0u16..500, 1..24),
            steps in proptest::collection::vec((any::<bool>(), 500u16..1000, any::<proptest::sample::Index>()), 1..12),
            pexp in 4u32..9,
        ) {
            let p = 1u32 << pexp;
            let mut m: Vec<String> = names(&ids.iter().copied().collect::<Vec<_>>());
            // The regime the guard is for: a few control nodes (up to 8).
            m.truncate(8);
            let mut ring = place(p, &m).expect("ring");
            for (join, new, pick) in steps {
                let before = m.clone();
                if m.len() == 1 || (join && m.len() < 8) {
                    m.push(format!("c{new}"));
                    m.sort();
                    m.dedup();
                } else {
                    m.remove(pick.index(m.len()));
                }
                let next = place(p, &m).expect("ring");
                prop_assert!(balanced(&next, &m));
                // Loose per-step guard, for the default partition count and up. With
                // few partitions per member a step can move far more than it must
                // (at P = 64, 16 members down to 15 moved 14 partitions where 4 must).
                let ideal = ideal(&ring, &before, &m);
                let cap = (p as usize).div_ceil(m.len());
                prop_assert!(p < 64 || ring.moved(&next) <= 2 * ideal + cap,
                    "moved {} with ideal {ideal}", ring.moved(&next));
                ring = next;
            }
        }
    }
}
