//! The pump's record of our requests in flight: who waits for each, its class and when
//! it was taken. The connection keeps them by id and by deadline (its
//! [`InFlight`](crate::conn::Connection::request_tagged) table, which times them out);
//! this table is found by the tag the connection hands back with each outcome, a slot
//! index: no second table by id, no search, one slot written and one taken per request.
//!
//! Slots freed are reused before new ones are added, so the table holds at most as many
//! slots as requests were once in flight together (the connection caps them). It keeps
//! them while requests are in flight and gives them all back once empty
//! ([`shrink`](Table::shrink)).

use smol_str::SmolStr;

use crate::time::Instant;

/// One of our requests on the wire.
#[derive(Debug)]
pub(super) struct Pending<R> {
    /// Its id on the connection (a tag is only ever handed back for its own request;
    /// checked anyway).
    pub(super) id: u64,
    pub(super) reply: R,
    /// Its class's name: counted by name when the outcome is known (no counted
    /// reference taken and dropped per request).
    pub(super) class: SmolStr,
    pub(super) since: Instant,
    /// It went on the bulk lane (a file part, [`crate::lanes::is_bulk_request`]).
    pub(super) bulk: bool,
}

/// Our requests in flight, by tag. See the module docs.
#[derive(Debug)]
pub(super) struct Table<R> {
    slots: Vec<Option<Pending<R>>>,
    /// Free slots, the last freed last.
    free: Vec<u32>,
    /// Requests in flight (the connection caps them far below `u32::MAX`).
    live: u32,
    /// Of them, on the bulk lane.
    bulk: u32,
    /// A small request (not on the bulk lane) was inserted since the last
    /// [`small_seen`](Self::small_seen).
    small_sent: bool,
    /// A small request was taken (answered) since then.
    small_done: bool,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            bulk: 0,
            small_sent: false,
            small_done: false,
        }
    }
}

impl<R> Table<R> {
    /// Requests in flight.
    pub(super) fn len(&self) -> usize {
        self.live as usize
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Requests in flight that are not on the bulk lane.
    pub(super) fn small(&self) -> usize {
        (self.live - self.bulk) as usize
    }

    /// Whether a small request was inserted, and whether one was taken, since the
    /// last call.
    pub(super) fn small_seen(&mut self) -> (bool, bool) {
        let seen = (self.small_sent, self.small_done);
        (self.small_sent, self.small_done) = (false, false);
        seen
    }

    /// The tag the next [`insert`](Self::insert) gives.
    pub(super) fn next_tag(&self) -> u32 {
        match self.free.last() {
            Some(&t) => t,
            None => u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
        }
    }

    /// Keeps `p`; its tag ([`next_tag`](Self::next_tag)).
    #[inline]
    pub(super) fn insert(&mut self, p: Pending<R>) -> u32 {
        self.live += 1;
        self.bulk += u32::from(p.bulk);
        self.small_sent |= !p.bulk;
        match self.free.pop() {
            Some(t) => {
                self.slots[t as usize] = Some(p);
                t
            }
            None => {
                self.slots.push(Some(p));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    /// Takes request `id` kept under `tag`; `None` when no such request is kept there
    /// (a request sent without a tag, such as a notice to an older peer).
    #[inline]
    pub(super) fn take(&mut self, tag: u32, id: u64) -> Option<Pending<R>> {
        let slot = self.slots.get_mut(tag as usize)?;
        if slot.as_ref()?.id != id {
            return None;
        }
        let p = slot.take()?;
        self.free.push(tag);
        self.live -= 1;
        self.bulk -= u32::from(p.bulk);
        self.small_done |= !p.bulk;
        Some(p)
    }

    /// Takes every request; in id order (the order they were sent).
    pub(super) fn take_all(&mut self) -> Vec<Pending<R>> {
        let mut all: Vec<Pending<R>> = std::mem::take(self).slots.into_iter().flatten().collect();
        all.sort_by_key(|p| p.id);
        all
    }

    /// Gives the storage back once no request is in flight (kept while one is: its slot
    /// is its tag).
    pub(super) fn shrink(&mut self) {
        if self.live == 0 && (self.slots.capacity() > 0 || self.free.capacity() > 0) {
            *self = Table {
                small_sent: self.small_sent,
                small_done: self.small_done,
                ..Self::default()
            };
        }
    }

    /// Bytes of storage held (for tests of what an idle link keeps).
    pub(super) fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Pending<R>>>()
            + self.free.capacity() * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: u64) -> Pending<u64> {
        Pending {
            id,
            reply: id * 10,
            class: "c".into(),
            since: Instant::ZERO,
            bulk: false,
        }
    }

    #[test]
    fn requests_on_the_bulk_lane_are_told_apart_from_small_ones() {
        let mut t = Table::default();
        let bulk = |id| Pending {
            bulk: true,
            ..pending(id)
        };
        assert_eq!((t.insert(bulk(1)), t.insert(pending(2))), (0, 1));
        assert_eq!(t.insert(bulk(3)), 2);
        assert_eq!((t.len(), t.small()), (3, 1));
        assert!(t.take(1, 2).is_some());
        assert_eq!((t.len(), t.small()), (2, 0));
        assert!(t.take(0, 1).is_some());
        assert!(t.take(0, 1).is_none(), "taken once: counted once");
        assert_eq!((t.len(), t.small()), (1, 0));
        assert_eq!(t.insert(pending(4)), 0);
        assert_eq!((t.len(), t.small()), (2, 1));
        // Small ones seen sent and answered (taken), once; file parts not.
        assert_eq!(t.small_seen(), (true, true));
        assert_eq!(t.small_seen(), (false, false));
        assert!(t.take(2, 3).is_some());
        t.insert(bulk(5));
        assert_eq!(t.small_seen(), (false, false));
        assert!(t.take(0, 4).is_some() && t.take(2, 5).is_some());
        t.insert(pending(6));
        // Kept when the storage goes.
        assert!(t.take(2, 6).is_some());
        t.shrink();
        assert_eq!((t.small_seen(), t.capacity_bytes()), ((true, true), 0));
        t.insert(bulk(7));
        t.insert(pending(8));
        assert_eq!(t.take_all().len(), 2);
        assert_eq!((t.len(), t.small()), (0, 0));
    }

    fn replies(v: Vec<Pending<u64>>) -> Vec<u64> {
        v.into_iter().map(|p| p.reply).collect()
    }

    #[test]
    fn freed_slots_are_reused_last_freed_first_and_a_wrong_id_takes_nothing() {
        let mut t = Table::default();
        assert_eq!(t.next_tag(), 0);
        assert_eq!((t.insert(pending(1)), t.insert(pending(2))), (0, 1));
        assert_eq!(t.insert(pending(3)), 2);
        // Not the request kept there, or no slot at all: nothing taken.
        assert!(t.take(0, 2).is_none());
        assert!(t.take(7, 1).is_none());
        assert!(t.take(u32::MAX, 1).is_none());
        assert_eq!(t.take(0, 1).map(|p| p.reply), Some(10));
        assert!(t.take(0, 1).is_none(), "taken once");
        assert_eq!(t.take(2, 3).map(|p| p.reply), Some(30));
        assert_eq!(t.len(), 1);
        // Slot 2 was freed last: it goes first, then 0, then a new one.
        assert_eq!(t.next_tag(), 2);
        assert_eq!(
            (
                t.insert(pending(4)),
                t.insert(pending(5)),
                t.insert(pending(6))
            ),
            (2, 0, 3)
        );
        assert_eq!(replies(t.take_all()), vec![20, 40, 50, 60]);
        assert!(t.is_empty());
    }

    #[test]
    fn the_storage_stays_while_a_request_is_in_flight_and_goes_once_empty() {
        let mut t = Table::default();
        assert_eq!(t.capacity_bytes(), 0);
        for id in 1..=8 {
            t.insert(pending(id));
        }
        for id in 1..=7 {
            assert!(t.take(id as u32 - 1, id).is_some());
        }
        t.shrink();
        assert!(t.capacity_bytes() >= 8 * size_of::<Option<Pending<u64>>>());
        assert!(t.take(7, 8).is_some());
        t.shrink();
        assert_eq!((t.capacity_bytes(), t.len()), (0, 0));
    }
}
