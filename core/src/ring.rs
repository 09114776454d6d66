//! Ring placement: which control node owns each of `P` partitions (a power of two). A
//! worker's proxy lives at the owner of `partition_of(worker id)`.
//!
//! Ownership is a pure function of the live member set ([`place`]), so every control node
//! that sees the same members computes the same ring, with no ring state to replicate or
//! reconcile after a split. It is strictly balanced: with `n` members, every member owns
//! `floor(P/n)` or `ceil(P/n)` partitions (never more).
//!
//! How ([`place`]): each member gets a *quota*, `floor(P/n)`, plus one for the `P mod n`
//! members ranked first by a per-member hash, so the quotas add up to exactly `P`. Then
//! every (partition, member) pair is ranked by a rendezvous score, and each pair in turn
//! gives its partition to its member while the partition is free and the member is under
//! its quota (the unique stable matching of partitions and members under one common
//! score).
//!
//! Why quotas and not one cap of `ceil(P/n)` for everybody (the previous placement):
//! with a common cap, a leave raises the cap of *every* member (at 128 members and P =
//! 256, from 2 to 3), so many members take back partitions they had lost to the cap and
//! a crash moved 30x the minimum. With quotas only `P mod n` members change their share,
//! and the chains of displaced partitions stay short. Movement stays above the minimum
//! (a pure, strictly balanced function cannot keep every step at the minimum: the
//! systems that do keep the previous assignment as state), measured over seeded
//! join/leave walks around 128 members: 2.8x the minimum at P = 4096, 3.5x at 1024, 4.3x
//! at 256 (the common cap: 5.0x, 12.5x, 30x); with a few members it is at the minimum
//! (0.95x-1.07x: the minimum assumed here is a departed member's whole share).
//!
//! Cost: P x n scores (a 64-bit mix each), then the pairs are taken in two bands: the
//! best few per partition, sorted; then, for the partitions still free, every member
//! still under quota (a pair outside that set can no longer assign anything), sorted.
//! About 1-2 ms at P = 4096 and 128 members (release build).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Default partition count: 4096. Every control member owns a share up to 4096 members;
/// at 128 members each owns 32, so a worker population is spread in steps of 1/4096 and
/// a crash moves 2.8x the minimum (quota placement; see the module docs); a placement
/// costs about 2 ms at 128 members and is computed once per membership change.
pub const PARTITIONS_DEFAULT: u32 = 4096;

/// Ownership of every partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// The members, sorted.
    members: Vec<String>,
    /// `owners[p]` is the index in `members` of the owner of partition `p`.
    owners: Vec<u32>,
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

/// splitmix64's finalizer: a cheap 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rendezvous score of a partition for a member, cheap enough for the P x n pairs of
/// a placement (a SHA-256 per pair took 60 ms at P = 1024 and 128 members).
fn score(partition: u32, member_hash: u64) -> u64 {
    mix(member_hash ^ u64::from(partition).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A member's rank for one of the `P mod n` extra partitions (higher first).
fn extra_rank(member_hash: u64) -> u64 {
    mix(member_hash ^ 0xD1B5_4A32_D192_ED03)
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

    /// The members, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The owner of partition `p`.
    pub fn owner(&self, p: u32) -> Option<&str> {
        let i = *self.owners.get(p as usize)?;
        self.members.get(i as usize).map(String::as_str)
    }

    /// The owner of `key`'s partition.
    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.owner(partition_of(key, self.partitions()))
    }

    /// How many partitions `member` owns.
    pub fn load(&self, member: &str) -> usize {
        let Ok(i) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return 0;
        };
        self.owners.iter().filter(|o| **o as usize == i).count()
    }

    /// Partitions whose owner differs between two rings of the same size.
    pub fn moved(&self, other: &Ring) -> usize {
        (0..self.partitions().min(other.partitions()))
            .filter(|p| self.owner(*p) != other.owner(*p))
            .count()
    }
}

fn sorted_unique(members: &[String]) -> Vec<String> {
    let mut m = members.to_vec();
    m.sort();
    m.dedup();
    m
}

/// Each member's quota (members by their hashes): floor(P/n), one more for the first
/// P mod n by extra rank.
fn quotas(partitions: usize, hashes: &[u64]) -> Vec<usize> {
    let n = hashes.len();
    let mut quota = vec![partitions / n; n];
    let mut by_extra: Vec<(u64, usize)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (extra_rank(*h), i))
        .collect();
    by_extra.sort_unstable_by(|a, b| b.cmp(a));
    for (_, i) in by_extra.iter().take(partitions % n) {
        quota[*i] += 1;
    }
    quota
}

/// How many candidates per partition the first band takes (see the module docs).
const FIRST_BAND_PER_PARTITION: u64 = 4;

/// Pure, strictly balanced placement (see the module docs). `None` when there are no
/// members or `partitions` is not a power of two.
pub fn place(partitions: u32, members: &[String]) -> Option<Ring> {
    let members = sorted_unique(members);
    if members.is_empty() || !partitions.is_power_of_two() {
        return None;
    }
    let n = members.len();
    let p_count = partitions as usize;
    let hashes: Vec<u64> = members.iter().map(|m| member_hash(m)).collect();
    let quota = quotas(p_count, &hashes);
    let mut owner: Vec<Option<u32>> = vec![None; p_count];
    let mut load = vec![0usize; n];
    let assign =
        |pairs: &mut Vec<(u64, u32, u32)>, owner: &mut Vec<Option<u32>>, load: &mut Vec<usize>| {
            pairs.sort_unstable_by(|a, b| b.cmp(a));
            for &(_, p, i) in pairs.iter() {
                if owner[p as usize].is_none() && load[i as usize] < quota[i as usize] {
                    owner[p as usize] = Some(i);
                    load[i as usize] += 1;
                }
            }
        };
    // First band: the pairs scoring in the top FIRST_BAND_PER_PARTITION / n.
    let threshold = if n as u64 <= FIRST_BAND_PER_PARTITION {
        0
    } else {
        u64::MAX - (u64::MAX / n as u64) * FIRST_BAND_PER_PARTITION
    };
    let mut pairs: Vec<(u64, u32, u32)> =
        Vec::with_capacity(p_count * FIRST_BAND_PER_PARTITION.min(n as u64) as usize * 5 / 4);
    for p in 0..partitions {
        for (i, h) in hashes.iter().enumerate() {
            let s = score(p, *h);
            if s >= threshold {
                pairs.push((s, p, i as u32));
            }
        }
    }
    assign(&mut pairs, &mut owner, &mut load);
    // Second band: every pair below the threshold that can still assign (a free
    // partition, a member under quota); pairs above it never could (both conditions only
    // get harder as the first band goes on).
    let free: Vec<u32> = (0..partitions)
        .filter(|p| owner[*p as usize].is_none())
        .collect();
    if !free.is_empty() {
        let open: Vec<usize> = (0..n).filter(|i| load[*i] < quota[*i]).collect();
        pairs.clear();
        for &p in &free {
            for &i in &open {
                let s = score(p, hashes[i]);
                if s < threshold {
                    pairs.push((s, p, i as u32));
                }
            }
        }
        assign(&mut pairs, &mut owner, &mut load);
    }
    let owners = owner.into_iter().map(|o| o.unwrap_or(0)).collect();
    Some(Ring { members, owners })
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
    fn with_the_default_partitions_128_control_members_each_own_32() {
        let members: Vec<String> = (0..128).map(|i| format!("control-{i:03}")).collect();
        let r = place(PARTITIONS_DEFAULT, &members).expect("ring");
        assert!(members.iter().all(|m| r.load(m) == 32));
        // One fewer: 4096 = 127 x 32 + 32, so 32 members own 33 and the rest 32.
        let fewer = &members[1..];
        let r2 = place(PARTITIONS_DEFAULT, fewer).expect("ring");
        let loads: Vec<usize> = fewer.iter().map(|m| r2.load(m)).collect();
        assert_eq!(loads.iter().filter(|l| **l == 33).count(), 32);
        assert_eq!(loads.iter().filter(|l| **l == 32).count(), 95);
        // The departed member's 32 partitions move, and some chains of displacement.
        let moved = r.moved(&r2);
        assert!((32..=4 * 32).contains(&moved), "moved {moved}");
    }

    /// The reference the two-band placement must equal: every pair sorted at once.
    fn place_by_full_sort(partitions: u32, members: &[String]) -> Ring {
        let members = sorted_unique(members);
        let n = members.len();
        let p_count = partitions as usize;
        let hashes: Vec<u64> = members.iter().map(|m| member_hash(m)).collect();
        let quota = quotas(p_count, &hashes);
        let mut pairs = Vec::new();
        for p in 0..partitions {
            for (i, h) in hashes.iter().enumerate() {
                pairs.push((score(p, *h), p, i));
            }
        }
        pairs.sort_unstable_by(|a, b| b.cmp(a));
        let mut owner = vec![u32::MAX; p_count];
        let mut load = vec![0; n];
        for (_, p, i) in pairs {
            if owner[p as usize] == u32::MAX && load[i] < quota[i] {
                owner[p as usize] = i as u32;
                load[i] += 1;
            }
        }
        Ring {
            members,
            owners: owner,
        }
    }

    #[test]
    fn the_two_bands_give_the_full_sort_placement_at_scale() {
        for n in [1usize, 7, 9, 64, 127, 128, 300] {
            let m: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            for p in [64u32, 4096] {
                assert_eq!(place(p, &m), Some(place_by_full_sort(p, &m)), "n {n} P {p}");
            }
        }
    }

    #[test]
    fn more_members_than_partitions_own_one_or_none() {
        let m: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let r = place(16, &m).expect("ring");
        assert_eq!(m.iter().map(|x| r.load(x)).sum::<usize>(), 16);
        assert!(m.iter().all(|x| r.load(x) <= 1));
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
            prop_assert_eq!(Some(r.clone()), place(p, &rev));
            prop_assert_eq!(r, place_by_full_sort(p, &m));
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
    /// within 1.10x of the ideal (measured 1.07x at P = 64, 1.03x at P = 256) and no
    /// single step moves more than 2.5x / 2.0x its ideal (measured 2.00x and 1.53x).
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

    /// The figures the module docs quote for a large control cluster: leaves and joins
    /// alternating around 128 members at the default partition count move within 3.2x
    /// the minimum in total (measured 2.8x), and every step is balanced.
    #[test]
    fn movement_around_128_members_at_the_default_partitions() {
        let p = PARTITIONS_DEFAULT;
        let mut m: Vec<String> = (0..128).map(|i| format!("c{i:03}")).collect();
        let mut ring = place(p, &m).expect("ring");
        let (mut moved, mut minimum) = (0, 0);
        for step in 0..16usize {
            if step % 2 == 0 {
                m.remove((step * 37) % m.len());
            } else {
                m.push(format!("n{step}"));
            }
            let next = place(p, &m).expect("ring");
            assert!(balanced(&next, &m), "step {step}");
            moved += ring.moved(&next);
            minimum += p as usize / m.len();
            ring = next;
        }
        let ratio = moved as f64 / minimum as f64;
        eprintln!("P={p}, about 128 members: moved {ratio:.2}x the minimum");
        assert!(ratio <= 3.2, "moved {ratio:.2}x the minimum");
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
