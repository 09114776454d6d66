//! Our requests in flight on a link: by id (a reply finds its request) and by deadline
//! (the next one to time out), with one map for the usual case.
//!
//! A link's requests mostly share one timeout, so their deadlines rise with their ids:
//! the request with the smallest id is then also the one due first, and the map by id
//! answers both questions. Only a request whose deadline comes before that of a request
//! still in flight before it (a shorter timeout than theirs) is kept a second time, by
//! deadline, in `early`. Every request in flight and not in `early` is "in order".
//!
//! Invariant: while `early` holds requests, `bound` is at least the deadline of every
//! request in flight (while it is empty, the last request's deadline is: the requests
//! are all in order). A new request is in order when its deadline is at least that
//! bound. Hence (1) the in-order requests' deadlines rise with their ids, and (2) an
//! in-order request's deadline is at least that of every request sent before it. So the
//! earliest deadline is the smaller of the first request's (in order: the earliest of
//! those in order; early: at least `early`'s first, which is earlier than every
//! in-order request after it) and `early`'s first: requests time out in (deadline, id)
//! order, exactly as with a map by deadline of every request.
//!
//! Each request also keeps the tag its sender gave it (see
//! [`Connection::request_tagged`](super::Connection::request_tagged)), handed back with
//! its outcome.

use crate::seqmap::SeqMap;
use crate::time::Instant;

/// Our requests in flight, by id and by deadline. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Every request in flight: its deadline and tag, by id.
    by_id: SeqMap<u64, (Instant, u32)>,
    /// The requests not in order, by deadline (then id).
    early: SeqMap<(Instant, u64), ()>,
    /// While `early` holds requests: at least every deadline in flight.
    bound: Instant,
}

impl InFlight {
    /// Requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Request `id` (above every id in flight: ids rise) with `deadline` and `tag`.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64, deadline: Instant, tag: u32) {
        let bound = if self.early.is_empty() {
            self.by_id.last().map(|(_, (d, _))| *d)
        } else {
            Some(self.bound)
        };
        match bound {
            Some(b) if deadline < b => {
                self.early.insert((deadline, id), ());
                self.bound = b;
            }
            _ => self.bound = deadline,
        }
        self.by_id.insert(id, (deadline, tag));
    }

    /// Takes request `id` off (its reply came); its deadline and tag, `None` if not in
    /// flight.
    #[inline]
    pub(crate) fn remove(&mut self, id: u64) -> Option<(Instant, u32)> {
        let (deadline, tag) = self.by_id.remove(&id)?;
        if !self.early.is_empty() {
            self.early.remove(&(deadline, id));
        }
        Some((deadline, tag))
    }

    /// The earliest deadline and its request (the smallest id among equal deadlines).
    fn next(&self) -> Option<(Instant, u64)> {
        let first = self.by_id.first().map(|(&id, &(d, _))| (d, id));
        let early = self.early.first().map(|(&k, _)| k);
        match (first, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the next request times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next().map(|(d, _)| d)
    }

    /// Takes off the request whose deadline is earliest if it is due at `now`: its id
    /// and tag.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u64, u32)> {
        let (deadline, id) = self.next()?;
        if deadline > now {
            return None;
        }
        let (_, tag) = self.remove(id)?;
        Some((id, tag))
    }

    /// Takes every request off; their ids and tags in id order.
    pub(crate) fn take_ids(&mut self) -> impl Iterator<Item = (u64, u32)> + use<> {
        let taken = std::mem::take(self);
        taken.by_id.into_iter().map(|(id, (_, tag))| (id, tag))
    }

    /// Gives back storage the maps no longer need (see [`SeqMap::shrink`]).
    pub(crate) fn shrink(&mut self) {
        self.by_id.shrink();
        self.early.shrink();
    }

    /// Bytes of storage held (for tests).
    #[cfg(test)]
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.by_id.capacity_bytes() + self.early.capacity_bytes()
    }

    /// Requests kept a second time, by deadline (for tests).
    #[cfg(test)]
    fn early_len(&self) -> usize {
        self.early.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Every request due at `now`, in the order they time out.
    fn due(f: &mut InFlight, now: u64) -> Vec<u64> {
        std::iter::from_fn(|| f.pop_due(at(now)).map(|(id, _)| id)).collect()
    }

    #[test]
    fn requests_with_rising_deadlines_are_kept_once_and_time_out_in_order() {
        let mut f = InFlight::default();
        for id in 1..=4 {
            f.insert(id, at(1000 + id), 0);
        }
        // Equal deadlines are in order too.
        f.insert(5, at(1004), 0);
        assert_eq!((f.len(), f.early_len()), (5, 0));
        assert_eq!(f.next_deadline(), Some(at(1001)));
        assert_eq!(f.remove(2), Some((at(1002), 0)));
        assert_eq!(f.remove(2), None);
        assert_eq!(due(&mut f, 1000), Vec::<u64>::new());
        assert_eq!(due(&mut f, 1004), vec![1, 3, 4, 5]);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn each_request_gives_back_its_tag_however_it_ends() {
        let mut f = InFlight::default();
        f.insert(1, at(100), 7);
        f.insert(2, at(50), 8);
        f.insert(3, at(200), 9);
        assert_eq!(f.pop_due(at(60)), Some((2, 8)));
        assert_eq!(f.remove(1), Some((at(100), 7)));
        assert_eq!(f.take_ids().collect::<Vec<_>>(), vec![(3, 9)]);
    }

    #[test]
    fn a_shorter_timeout_is_kept_by_deadline_and_times_out_first() {
        let mut f = InFlight::default();
        f.insert(1, at(30_000), 0);
        f.insert(2, at(5_000), 0);
        f.insert(3, at(30_001), 0);
        // 4 is early against 1 and 3, though later than 2.
        f.insert(4, at(6_000), 0);
        assert_eq!(f.early_len(), 2);
        assert_eq!(f.next_deadline(), Some(at(5_000)));
        assert_eq!(due(&mut f, 5_999), vec![2]);
        assert_eq!(f.next_deadline(), Some(at(6_000)));
        assert_eq!(due(&mut f, 30_000), vec![4, 1]);
        assert_eq!(f.early_len(), 0);
        assert_eq!(f.next_deadline(), Some(at(30_001)));
        assert_eq!(f.take_ids().collect::<Vec<_>>(), vec![(3, 0)]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn the_bound_stays_while_early_requests_wait() {
        let mut f = InFlight::default();
        f.insert(1, at(30_000), 0);
        f.insert(2, at(10_000), 0);
        // 1 is answered: the bound stays at its deadline while 2 waits, so 3 and 4 are
        // kept by deadline too, and time out in deadline order.
        assert_eq!(f.remove(1), Some((at(30_000), 0)));
        f.insert(3, at(12_000), 0);
        f.insert(4, at(11_000), 0);
        assert_eq!(f.early_len(), 3);
        assert_eq!(f.next_deadline(), Some(at(10_000)));
        assert_eq!(due(&mut f, 20_000), vec![2, 4, 3]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn the_first_request_early_hides_no_later_in_order_deadline() {
        let mut f = InFlight::default();
        f.insert(1, at(30_000), 0);
        f.insert(2, at(10_000), 0);
        f.insert(3, at(31_000), 0);
        // 1 answered: 2 (early) is first; 3 is due after it.
        f.remove(1);
        assert_eq!(f.next_deadline(), Some(at(10_000)));
        f.remove(2);
        assert_eq!(f.early_len(), 0);
        assert_eq!(f.next_deadline(), Some(at(31_000)));
        // Early emptied: the bound is the last deadline again, so 4 is early (before
        // 3's) and 5 in order.
        f.insert(4, at(20_000), 0);
        f.insert(5, at(31_000), 0);
        assert_eq!(f.early_len(), 1);
        assert_eq!(due(&mut f, 40_000), vec![4, 3, 5]);
    }

    #[test]
    fn requests_time_out_in_deadline_then_id_order_whatever_the_timeouts() {
        // Against the plain rule (one map by deadline of every request) on a
        // pseudo-random mix of timeouts, replies and time steps.
        let mut f = InFlight::default();
        let mut plain: SeqMap<(Instant, u64), ()> = SeqMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = 0u64;
        let mut next_id = 1;
        for _ in 0..5_000 {
            match rand(10) {
                0..=5 => {
                    let timeouts = [100, 100, 100, 30, 500];
                    let d = at(now + timeouts[rand(5) as usize]);
                    f.insert(next_id, d, 0);
                    plain.insert((d, next_id), ());
                    next_id += 1;
                }
                6 | 7 => {
                    if next_id > 1 {
                        let id = 1 + rand(next_id - 1);
                        let d = f.remove(id).map(|(d, _)| d);
                        assert_eq!(
                            d.is_some(),
                            d.is_some_and(|d| plain.remove(&(d, id)).is_some())
                        );
                    }
                }
                _ => {
                    now += rand(60);
                    let mut want = Vec::new();
                    while let Some((&(d, id), _)) = plain.first() {
                        if d > at(now) {
                            break;
                        }
                        plain.pop_first();
                        want.push(id);
                    }
                    assert_eq!(due(&mut f, now), want);
                }
            }
            assert_eq!(f.len(), plain.len());
            assert_eq!(f.next_deadline(), plain.first().map(|(&(d, _), _)| d));
        }
    }
}
