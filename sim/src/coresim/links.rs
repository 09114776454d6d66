//! The link model under faults, as a TCP connection's two applications would see it.
//!
//! Each direction of a link is an in-order byte stream: a write arrives after a latency
//! drawn from the seed, never before the previous write of that direction. Faults never
//! drop bytes from the middle of a stream (TCP retransmits them); they show up as:
//!
//! - **held** directions ([`Block`]: a partition between node groups, one-way or both
//!   ways, or a single node's links held): writes, and the end of file that follows a
//!   close, wait in order until the block ends, then arrive; a dial across a block
//!   (either way: a SYN or its answer lost) fails after the connect timeout. The
//!   applications find out by their own idle timeouts, as over a real partition.
//! - **slow and lossy** links ([`Slow`]): extra latency, and each lost segment costs a
//!   retransmission timeout (200 ms, doubling while losses repeat), still in order.
//! - **reset** links ([`World::reset_links`]): both ends read a transport error at once
//!   (a middlebox or a flapping interface), and what either end still held is gone.
//!
//! A crashed host's links go silent and what it held is lost; a killed process's host
//! still sends what was written and an end of file.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::Instant;
use rand::Rng;

use super::world::{ConnId, Ev, NodeIdx, SimConn, World};

/// Writes from `from` to `to` are held while the block lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Writers.
    pub from: BTreeSet<NodeIdx>,
    /// Readers.
    pub to: BTreeSet<NodeIdx>,
}

impl Block {
    /// Both directions between `a` and `b` (a full partition).
    pub fn between(a: &BTreeSet<NodeIdx>, b: &BTreeSet<NodeIdx>) -> [Block; 2] {
        [
            Block {
                from: a.clone(),
                to: b.clone(),
            },
            Block {
                from: b.clone(),
                to: a.clone(),
            },
        ]
    }

    fn holds(&self, from: NodeIdx, to: NodeIdx) -> bool {
        self.from.contains(&from) && self.to.contains(&to)
    }
}

/// Links touching `nodes` are slow and lossy while this lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slow {
    /// The nodes.
    pub nodes: BTreeSet<NodeIdx>,
    /// Extra one-way latency, drawn uniformly up to this for every write.
    pub extra: Duration,
    /// Segments lost, per mille (each costs a retransmission timeout).
    pub loss_per_mille: u32,
}

/// A retransmission timeout (Linux's minimum RTO).
const RTO: Duration = Duration::from_millis(200);
/// Consecutive losses of one write at most (then it gets through).
const LOSSES_MAX: u32 = 4;

/// What a held direction holds, in order.
#[derive(Debug)]
enum Item {
    Bytes(Bytes),
    Eof,
}

/// One direction's held writes.
#[derive(Debug)]
struct Held {
    /// The reading end.
    to: ConnId,
    from_node: NodeIdx,
    to_node: NodeIdx,
    items: VecDeque<Item>,
}

/// The faults in force on the links, and what they hold.
#[derive(Debug, Default)]
pub struct LinkFaults {
    next_id: u64,
    blocks: BTreeMap<u64, Block>,
    slow: BTreeMap<u64, Slow>,
    /// By writing end.
    held: BTreeMap<ConnId, Held>,
}

impl LinkFaults {
    fn blocked(&self, from: NodeIdx, to: NodeIdx) -> bool {
        self.blocks.values().any(|b| b.holds(from, to))
    }

    /// The writing end `id`'s host is gone: what it held is lost.
    pub(super) fn drop_held(&mut self, id: ConnId) {
        self.held.remove(&id);
    }

    /// Writes held now (all directions).
    pub fn held_writes(&self) -> usize {
        self.held.values().map(|h| h.items.len()).sum()
    }
}

impl World {
    /// Holds writes from `block.from` to `block.to` until [`unblock`](Self::unblock).
    pub fn block(&mut self, block: Block) -> u64 {
        self.faults.next_id += 1;
        let id = self.faults.next_id;
        self.faults.blocks.insert(id, block);
        id
    }

    /// Ends block `id`: the directions it no longer holds deliver what they held, in
    /// order.
    pub fn unblock(&mut self, id: u64) {
        self.faults.blocks.remove(&id);
        let free: Vec<ConnId> = self
            .faults
            .held
            .iter()
            .filter(|(_, h)| !self.faults.blocked(h.from_node, h.to_node))
            .map(|(id, _)| *id)
            .collect();
        for from in free {
            let Some(h) = self.faults.held.remove(&from) else {
                continue;
            };
            let mut last = self.conns.get(&from).map_or(self.now, |c| c.last_arrival);
            for item in h.items {
                let at = (self.now + self.latency(h.from_node, h.to_node)).max(last);
                last = at;
                match item {
                    Item::Bytes(bytes) => self.schedule(at, Ev::Deliver { to: h.to, bytes }),
                    Item::Eof => self.schedule(
                        at,
                        Ev::Eof {
                            to: h.to,
                            detail: "eof",
                        },
                    ),
                }
            }
            if let Some(c) = self.conns.get_mut(&from) {
                c.last_arrival = last;
            }
        }
    }

    /// Makes links touching `slow.nodes` slow and lossy until [`unslow`](Self::unslow).
    pub fn slow(&mut self, slow: Slow) -> u64 {
        self.faults.next_id += 1;
        let id = self.faults.next_id;
        self.faults.slow.insert(id, slow);
        id
    }

    /// Ends slow rule `id`.
    pub fn unslow(&mut self, id: u64) {
        self.faults.slow.remove(&id);
    }

    /// Resets every link touching `nodes`: both ends read a transport error now, and
    /// what was held for them is gone.
    pub fn reset_links(&mut self, nodes: &BTreeSet<NodeIdx>) {
        let mut ends: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| nodes.contains(&c.node) || nodes.contains(&c.peer_node))
            .map(|(id, _)| *id)
            .collect();
        ends.sort_unstable();
        for id in ends {
            self.faults.held.remove(&id);
            let now = self.now;
            self.schedule(
                now,
                Ev::Eof {
                    to: id,
                    detail: "connection reset",
                },
            );
        }
    }

    /// Whether node `a` can open a link to node `b` now (neither direction held).
    pub(super) fn can_dial(&self, a: NodeIdx, b: NodeIdx) -> bool {
        !self.faults.blocked(a, b) && !self.faults.blocked(b, a)
    }

    /// One write of end `id` goes on the wire (or waits, behind what is held).
    pub(super) fn transmit(&mut self, id: ConnId, bytes: Bytes) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let (from, to, peer) = (c.node, c.peer_node, c.peer);
        if let Some(h) = self.hold_for(id, from, to, peer) {
            h.items.push_back(Item::Bytes(bytes));
            return;
        }
        let latency = self.latency(from, to);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let at = (self.now + latency).max(c.last_arrival);
        c.last_arrival = at;
        self.schedule(at, Ev::Deliver { to: peer, bytes });
    }

    /// End `id` (already out of the world) closed: its peer reads an end of file after
    /// the last bytes it was sent.
    pub(super) fn transmit_eof(&mut self, id: ConnId, c: &SimConn) {
        if let Some(h) = self.hold_for(id, c.node, c.peer_node, c.peer) {
            h.items.push_back(Item::Eof);
            return;
        }
        let at = c.last_arrival.max(self.now);
        self.schedule(
            at,
            Ev::Eof {
                to: c.peer,
                detail: "eof",
            },
        );
    }

    /// The held queue of end `id`'s direction, when it must wait: it is blocked, or
    /// it already holds writes that must go first.
    fn hold_for(
        &mut self,
        id: ConnId,
        from: NodeIdx,
        to: NodeIdx,
        peer: ConnId,
    ) -> Option<&mut Held> {
        if !self.faults.held.contains_key(&id) && !self.faults.blocked(from, to) {
            return None;
        }
        Some(self.faults.held.entry(id).or_insert_with(|| Held {
            to: peer,
            from_node: from,
            to_node: to,
            items: VecDeque::new(),
        }))
    }

    /// A write's one-way latency from `from` to `to`: the base, plus what slow links
    /// add (their extra latency, a retransmission timeout per loss).
    fn latency(&mut self, from: NodeIdx, to: NodeIdx) -> Duration {
        let (lo, hi) = self.link.latency;
        let mut d = lo + self.uniform(hi.saturating_sub(lo));
        let rules: Vec<(Duration, u32)> = self
            .faults
            .slow
            .values()
            .filter(|s| s.nodes.contains(&from) || s.nodes.contains(&to))
            .map(|s| (s.extra, s.loss_per_mille))
            .collect();
        for (extra, loss) in rules {
            d += self.uniform(extra);
            let mut rto = RTO;
            for _ in 0..LOSSES_MAX {
                if self.rng.random_range(0..1000) >= loss {
                    break;
                }
                d += rto;
                rto *= 2;
            }
        }
        d
    }

    fn uniform(&mut self, span: Duration) -> Duration {
        let us = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.random_range(0..=us))
        }
    }
}

/// Simulated time as a duration since the world's start (for reports).
pub fn since_start(t: Instant) -> Duration {
    t.since_origin()
}
