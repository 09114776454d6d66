//! An ordered map for keys that mostly arrive in increasing order and mostly leave from
//! the front: request ids (ours are a counter, the peer's are its counter) and request
//! deadlines (a link's requests mostly share one timeout). It does what a `BTreeMap` does
//! for a link's request bookkeeping, touched several times per request, at the cost of
//! a ring buffer: an insert past the last key is a push, a removal is a binary search
//! (the front checked first) that leaves a hole, and holes at the ends go at once.
//!
//! Bounds: the ring holds at most twice the live entries plus [`SLACK`] (holes are
//! squeezed out past that). An emptied map keeps its storage: a pipelined link empties
//! its maps many times a second, and giving the ring back each time made it regrow
//! (five allocations to 64 slots) every few dozen requests. The owner gives it back with
//! [`shrink`](SeqMap::shrink) at its timer wake-ups, so an idle link keeps next to
//! nothing. A key out of order (a peer's
//! choice, or a request with a longer deadline than those before it) is inserted in
//! place: a shift of at most half the ring.
//!
//! ```
//! use nkcluster_core::seqmap::SeqMap;
//! let mut m = SeqMap::new();
//! m.insert(1u64, "a");
//! m.insert(2, "b");
//! m.insert(3, "c");
//! assert_eq!(m.remove(&2), Some("b"));
//! assert_eq!(m.first(), Some((&1, &"a")));
//! assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![(1, "a"), (3, "c")]);
//! ```

use std::collections::VecDeque;

/// Holes tolerated beyond the live entries before they are squeezed out.
pub const SLACK: usize = 32;
/// Slots a map may keep beyond what [`SeqMap::shrink`] leaves it.
const KEEP_EMPTY: usize = 16;

/// An ordered map. See the module docs.
#[derive(Debug, Clone)]
pub struct SeqMap<K, V> {
    /// Sorted by key, strictly; `None` is a hole. The first and last slots are never
    /// holes.
    slots: VecDeque<(K, Option<V>)>,
    live: usize,
}

impl<K, V> Default for SeqMap<K, V> {
    fn default() -> Self {
        SeqMap {
            slots: VecDeque::new(),
            live: 0,
        }
    }
}

impl<K: Ord + Copy, V> SeqMap<K, V> {
    /// An empty map (no storage).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries in the map.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the map has no entries.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Slots held, holes included (for tests of the bounds).
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Inserts `value` at `key`; the value it replaces, if any.
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // The usual case, a key past the last, is a push (inlined in the caller); the
        // rest is out of line.
        if self.slots.back().is_none_or(|(last, _)| *last < key) {
            self.slots.push_back((key, Some(value)));
            self.live += 1;
            return None;
        }
        self.insert_in_place(key, value)
    }

    /// [`insert`](Self::insert) of a key at or before the last.
    fn insert_in_place(&mut self, key: K, value: V) -> Option<V> {
        match self.slots.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => {
                let old = self.slots[i].1.replace(value);
                if old.is_none() {
                    self.live += 1;
                }
                old
            }
            Err(i) => {
                self.slots.insert(i, (key, Some(value)));
                self.live += 1;
                None
            }
        }
    }

    /// Inserts `value` at `key` unless `key` has one already (then `value` is given
    /// back): a key past the last, the usual case, is a push with no lookup.
    ///
    /// # Errors
    /// `value`, when `key` has a value.
    #[inline]
    pub fn try_insert(&mut self, key: K, value: V) -> Result<(), V> {
        if self.slots.back().is_none_or(|(last, _)| *last < key) {
            self.slots.push_back((key, Some(value)));
            self.live += 1;
            return Ok(());
        }
        self.try_insert_in_place(key, value)
    }

    /// [`try_insert`](Self::try_insert) of a key at or before the last.
    fn try_insert_in_place(&mut self, key: K, value: V) -> Result<(), V> {
        match self.slots.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) if self.slots[i].1.is_some() => Err(value),
            Ok(i) => {
                self.slots[i].1 = Some(value);
                self.live += 1;
                Ok(())
            }
            Err(i) => {
                self.slots.insert(i, (key, Some(value)));
                self.live += 1;
                Ok(())
            }
        }
    }

    /// Where `key` is. The ends are looked at first: a key leaving from the front (the
    /// usual removal) or past the last (a new request id, looked up before its insert)
    /// costs no binary search.
    fn position(&self, key: &K) -> Option<usize> {
        let (first, _) = self.slots.front()?;
        match key.cmp(first) {
            std::cmp::Ordering::Less => return None,
            std::cmp::Ordering::Equal => return Some(0),
            std::cmp::Ordering::Greater => {}
        }
        let last = self.slots.len() - 1;
        match key.cmp(&self.slots[last].0) {
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Equal => Some(last),
            std::cmp::Ordering::Less => self.slots.binary_search_by(|(k, _)| k.cmp(key)).ok(),
        }
    }

    /// The value at `key`.
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.slots[self.position(key)?].1.as_ref()
    }

    /// Whether `key` has a value.
    #[must_use]
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Removes and returns the value at `key`.
    #[inline]
    pub fn remove(&mut self, key: &K) -> Option<V> {
        // The usual case, the first entry leaving, is inlined in the caller; the rest
        // is out of line.
        if self.slots.front().is_some_and(|(first, _)| first == key) {
            return self.pop_first().map(|(_, v)| v);
        }
        self.remove_inside(key)
    }

    /// [`remove`](Self::remove) of any entry but the first.
    fn remove_inside(&mut self, key: &K) -> Option<V> {
        let i = self.position(key)?;
        // An end slot goes at once with the holes behind it (the ends are never holes);
        // one inside leaves a hole.
        let v = if i == 0 {
            let v = self.slots.pop_front()?.1?;
            while matches!(self.slots.front(), Some((_, None))) {
                self.slots.pop_front();
            }
            v
        } else if i + 1 == self.slots.len() {
            let v = self.slots.pop_back()?.1?;
            while matches!(self.slots.back(), Some((_, None))) {
                self.slots.pop_back();
            }
            v
        } else {
            self.slots[i].1.take()?
        };
        self.live -= 1;
        self.squeeze();
        Some(v)
    }

    /// The entry with the smallest key.
    #[must_use]
    #[inline]
    pub fn first(&self) -> Option<(&K, &V)> {
        let (k, v) = self.slots.front()?;
        Some((k, v.as_ref()?))
    }

    /// The entry with the largest key.
    #[must_use]
    #[inline]
    pub fn last(&self) -> Option<(&K, &V)> {
        let (k, v) = self.slots.back()?;
        Some((k, v.as_ref()?))
    }

    /// Removes and returns the entry with the smallest key.
    #[inline]
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let (k, v) = self.slots.pop_front()?;
        self.live -= 1;
        while matches!(self.slots.front(), Some((_, None))) {
            self.slots.pop_front();
        }
        self.squeeze();
        // The first slot is never a hole.
        v.map(|v| (k, v))
    }

    /// Removes every entry (and gives the storage back).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// Values in key order, the map consumed.
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.into_iter().map(|(_, v)| v)
    }

    /// Slots of storage held (for tests of the bounds).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Bytes of storage held (for tests of what an idle link keeps).
    #[must_use]
    pub fn capacity_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<(K, Option<V>)>()
    }

    /// Gives storage back: all of it when the map is empty, else what is well beyond
    /// twice the slots in use. For the owner's timer wake-ups (see the module docs).
    pub fn shrink(&mut self) {
        if self.slots.is_empty() {
            if self.slots.capacity() > 0 {
                self.slots = VecDeque::new();
            }
        } else if self.slots.capacity() > 4 * self.slots.len() + KEEP_EMPTY {
            self.slots.shrink_to(2 * self.slots.len() + KEEP_EMPTY);
        }
    }

    /// Too many holes are squeezed out. The storage stays (see
    /// [`shrink`](Self::shrink)).
    #[inline]
    fn squeeze(&mut self) {
        if self.live > 0 && self.slots.len() > 2 * self.live + SLACK {
            self.slots.retain(|(_, v)| v.is_some());
        }
    }
}

impl<K, V> IntoIterator for SeqMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::iter::FilterMap<
        std::collections::vec_deque::IntoIter<(K, Option<V>)>,
        fn((K, Option<V>)) -> Option<(K, V)>,
    >;

    /// Entries in key order.
    fn into_iter(self) -> Self::IntoIter {
        fn live<K, V>((k, v): (K, Option<V>)) -> Option<(K, V)> {
            v.map(|v| (k, v))
        }
        self.slots.into_iter().filter_map(live as fn(_) -> _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(m: &SeqMap<u64, u64>) -> Vec<u64> {
        m.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn try_insert_keeps_the_value_in_place_and_fills_holes() {
        let mut m = SeqMap::new();
        assert_eq!(m.last(), None);
        assert_eq!(m.try_insert(1u64, 10u64), Ok(()));
        assert_eq!(m.try_insert(3, 30), Ok(()));
        assert_eq!(m.try_insert(5, 50), Ok(()));
        assert_eq!(m.try_insert(3, 31), Err(31));
        assert_eq!(m.get(&3), Some(&30));
        // Out of order, into a gap and into a hole.
        assert_eq!(m.try_insert(2, 20), Ok(()));
        assert_eq!(m.remove(&3), Some(30));
        assert_eq!(m.slots(), 4);
        assert_eq!(m.try_insert(3, 32), Ok(()));
        assert_eq!((m.len(), m.slots()), (4, 4));
        assert_eq!(keys(&m), vec![1, 2, 3, 5]);
        assert_eq!(m.last(), Some((&5, &50)));
        assert_eq!(m.get(&3), Some(&32));
    }

    #[test]
    fn increasing_keys_leave_in_order_from_any_position() {
        let mut m = SeqMap::new();
        for k in 1..=5u64 {
            assert_eq!(m.insert(k, k * 10), None);
        }
        assert_eq!(m.remove(&3), Some(30));
        assert_eq!(m.remove(&3), None);
        assert_eq!(m.remove(&1), Some(10));
        assert_eq!(keys(&m), vec![2, 4, 5]);
        // The hole left by 3 went with 2's removal (holes at the front go at once).
        assert_eq!(m.remove(&2), Some(20));
        assert_eq!((m.len(), m.slots()), (2, 2));
        assert_eq!(m.first(), Some((&4, &40)));
        assert_eq!(m.remove(&5), Some(50));
        assert_eq!((m.len(), m.slots()), (1, 1));
        assert_eq!(m.pop_first(), Some((4, 40)));
        assert_eq!(m.pop_first(), None);
        assert!(m.is_empty());
    }

    #[test]
    fn keys_before_the_first_or_past_the_last_are_absent_and_either_end_leaves() {
        let mut m = SeqMap::new();
        assert_eq!(m.get(&1), None);
        for k in [10u64, 20, 30, 40] {
            m.insert(k, k);
        }
        for absent in [0u64, 9, 15, 35, 41, u64::MAX] {
            assert!(!m.contains_key(&absent), "{absent}");
            assert_eq!(m.remove(&absent), None);
        }
        assert_eq!(
            (m.get(&10), m.get(&40), m.get(&30)),
            (Some(&10), Some(&40), Some(&30))
        );
        // The last leaves, then the first (popped at once), then one in the middle.
        assert_eq!(m.remove(&40), Some(40));
        assert_eq!(m.remove(&10), Some(10));
        assert_eq!((m.len(), m.slots()), (2, 2));
        assert_eq!(m.remove(&30), Some(30));
        assert_eq!(m.remove(&30), None);
        assert_eq!((m.len(), m.slots()), (1, 1));
        assert_eq!(m.remove(&20), Some(20));
        assert!(m.is_empty() && m.slots() == 0);
    }

    #[test]
    fn keys_out_of_order_are_inserted_in_place_and_replace_equal_keys() {
        let mut m = SeqMap::new();
        m.insert(10u64, 1);
        m.insert(30, 3);
        m.insert(20, 2);
        m.insert(5, 0);
        assert_eq!(m.insert(20, 22), Some(2));
        assert_eq!(keys(&m), vec![5, 10, 20, 30]);
        assert_eq!(m.get(&20), Some(&22));
        assert!(m.contains_key(&5));
        assert!(!m.contains_key(&15));
        // A hole refilled counts as an entry again.
        m.remove(&20);
        assert_eq!(m.len(), 3);
        assert_eq!(m.insert(20, 2), None);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            vec![(5, 0), (10, 1), (20, 2), (30, 3)]
        );
    }

    #[test]
    fn a_long_lived_first_entry_does_not_let_holes_grow_past_the_bound() {
        let mut m = SeqMap::new();
        m.insert(0u64, 0u64);
        for k in 1..10_000u64 {
            m.insert(k, k);
            m.remove(&k);
            assert!(
                m.slots() <= 2 * m.len() + SLACK + 1,
                "at {k}: {}",
                m.slots()
            );
        }
        assert_eq!(m.len(), 1);
        // Pipelined: 64 in flight behind the long-lived one.
        for k in 10_000..10_064u64 {
            m.insert(k, k);
        }
        for k in 10_064..20_000u64 {
            m.insert(k, k);
            m.remove(&(k - 64));
            assert!(m.slots() <= 2 * m.len() + SLACK + 1);
        }
        assert_eq!(m.len(), 65);
        assert_eq!(m.first(), Some((&0, &0)));
    }

    #[test]
    fn an_emptied_map_keeps_its_storage_until_shrunk() {
        let mut m = SeqMap::new();
        for k in 0..100u64 {
            m.insert(k, k);
        }
        for k in 0..100u64 {
            m.remove(&k);
        }
        // Kept while the link is busy: refilling it allocates nothing.
        let cap = m.capacity();
        assert!(m.is_empty() && cap >= 100);
        for k in 100..200u64 {
            m.insert(k, k);
        }
        assert_eq!(m.capacity(), cap);
        // A few live entries: the storage shrinks to about twice what they use.
        for k in 100..196u64 {
            m.remove(&k);
        }
        m.shrink();
        assert_eq!((m.len(), m.slots()), (4, 4));
        assert!(m.capacity() >= 4 && m.capacity() <= 2 * 4 + KEEP_EMPTY);
        assert_eq!(keys(&m), vec![196, 197, 198, 199]);
        // Empty: all of it goes.
        for k in 196..200u64 {
            m.remove(&k);
        }
        m.shrink();
        assert_eq!((m.len(), m.capacity()), (0, 0));
        m.insert(200, 0);
        m.clear();
        assert_eq!((m.len(), m.capacity()), (0, 0));
    }

    #[test]
    fn composite_keys_order_by_their_first_part_then_the_second() {
        let mut m: SeqMap<(u64, u64), ()> = SeqMap::new();
        m.insert((300, 1), ());
        m.insert((300, 2), ());
        m.insert((100, 3), ());
        assert_eq!(m.first(), Some((&(100, 3), &())));
        assert_eq!(m.remove(&(300, 1)), Some(()));
        assert_eq!(m.pop_first(), Some(((100, 3), ())));
        assert_eq!(m.pop_first(), Some(((300, 2), ())));
        assert!(m.is_empty());
    }
}
