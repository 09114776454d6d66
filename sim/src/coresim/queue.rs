//! The simulator's time-ordered event queue: the earliest event first, events at the
//! same instant in the order they were queued (so a run replays bit for bit).
//!
//! Events live in a slab whose freed slots are reused; the heap holds only their keys
//! (instant, sequence number, slot), 24 bytes each, so a pop moves small entries and no
//! event is hashed or moved more than once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use nkcluster_core::Instant;

/// See the module docs.
#[derive(Debug)]
pub(super) struct Queue<E> {
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> Queue<E> {
    pub(super) fn new() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Queues `ev` for `at`, after everything already queued for `at`.
    pub(super) fn push(&mut self, at: Instant, ev: E) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.heap.push(Reverse((at, self.next_seq, slot)));
        self.next_seq += 1;
    }

    /// The earliest event, if it is due at or before `until`.
    pub(super) fn pop_until(&mut self, until: Instant) -> Option<(Instant, E)> {
        let &Reverse((at, _, slot)) = self.heap.peek()?;
        if at > until {
            return None;
        }
        self.heap.pop();
        let ev = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((at, ev))
    }

    /// Events queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_instant_then_in_the_order_they_were_queued() {
        let t = Instant::from_millis;
        let mut q = Queue::new();
        q.push(t(5), "a");
        q.push(t(1), "b");
        q.push(t(5), "c");
        q.push(t(3), "d");
        assert_eq!(q.pop_until(t(0)), None);
        assert_eq!(q.pop_until(t(3)), Some((t(1), "b")));
        // A freed slot is reused; the order still holds.
        q.push(t(5), "e");
        q.push(t(2), "f");
        let rest: Vec<_> = std::iter::from_fn(|| q.pop_until(t(10))).collect();
        assert_eq!(
            rest,
            [
                (t(2), "f"),
                (t(3), "d"),
                (t(5), "a"),
                (t(5), "c"),
                (t(5), "e")
            ]
        );
        assert_eq!(q.len(), 0);
    }
}
