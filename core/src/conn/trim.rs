//! When an idle link gives back the storage its traffic left behind (issue 15, point 6).
//!
//! Queues and maps keep their capacity after they empty, so that a busy link does not
//! allocate and free them on every request. An idle link should hold next to nothing,
//! though: with thousands of links, a few hundred bytes each of empty rings (the
//! handshake's events, the first requests' bookkeeping, the encoding buffer) add up.
//! The moment to give them back is a keepalive heard (a ping, or the answer to ours):
//! on an idle link that is its only traffic, once per ping interval; on a busy link it
//! is one release per interval, not one per request. (Timer wake-ups shrink the request
//! maps too, see [`crate::seqmap`]; the answering end of an idle link, protocol 3, has
//! one a minute.)

use bytes::BytesMut;

use super::Connection;

impl Connection {
    /// Gives back the storage of empty queues and maps if a keepalive was heard since
    /// the last release; returns whether it did. The shell calls it when it is about to
    /// wait (every transmit taken, every event drained) and, when it returns `true`,
    /// gives back its own (the [`Pump`](crate::pump::Pump)'s maps with
    /// [`Pump::release_idle_storage`](crate::pump::Pump::release_idle_storage), a queue
    /// of late answers). What is not empty is kept, to be looked at again after the next
    /// keepalive.
    pub fn release_idle_storage(&mut self) -> bool {
        if !std::mem::take(&mut self.trim_due) {
            return false;
        }
        if self.events.is_empty() {
            self.events = Default::default();
        }
        self.pending.shrink();
        self.deadlines.shrink();
        self.incoming.shrink();
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
        self.lanes.release_idle_storage();
        true
    }

    /// Bytes held by the queues and maps [`release_idle_storage`](Self::release_idle_storage)
    /// gives back (capacities, for tests).
    #[cfg(test)]
    pub(crate) fn idle_storage(&self) -> usize {
        self.events.capacity() * size_of::<super::Event>()
            + self.pending.capacity_bytes()
            + self.deadlines.capacity_bytes()
            + self.incoming.capacity_bytes()
            + self.inbuf.capacity()
            + self.lanes.capacity_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::tests::{linked, pump};
    use crate::conn::{Connection, Event, RequestId};
    use crate::time::Instant;

    fn drain(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn an_idle_link_gives_its_storage_back_at_the_next_keepalive_and_not_before() {
        let (mut d, mut l) = linked();
        let t = Instant::from_millis(10);
        let id = d
            .request(t, "echo", Bytes::from_static(b"hi"), Duration::from_secs(1))
            .expect("sent");
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut l).len(), 1);
        l.reply(id.0, Ok(Bytes::from_static(b"ok")));
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut d).len(), 1);
        // The traffic left storage behind on both ends; no keepalive yet: all kept.
        assert!(d.idle_storage() > 0 && l.idle_storage() > 0);
        assert!(!d.release_idle_storage());
        assert!(!l.release_idle_storage());
        assert!(d.idle_storage() > 0 && l.idle_storage() > 0);
        // The dialer pings at 1 s; the listener hears it, answers, and gives back.
        let t = Instant::from_millis(1000);
        d.handle_timeout(t);
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut l), []);
        assert!(l.release_idle_storage());
        assert_eq!(l.idle_storage(), 0);
        assert!(!l.release_idle_storage(), "once per keepalive");
        // The dialer hears the pong (an RTT event), then gives back once drained.
        assert_eq!(drain(&mut d), [Event::RttMeasured(Duration::ZERO)]);
        assert!(d.release_idle_storage());
        assert_eq!(d.idle_storage(), 0);
        // The link still works.
        let t = Instant::from_millis(1100);
        let id = d
            .request(t, "echo", Bytes::new(), Duration::from_secs(1))
            .expect("sent");
        assert_eq!(id, RequestId(2));
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut l).len(), 1);
    }

    #[test]
    fn what_is_in_use_at_a_keepalive_is_kept() {
        let (mut d, mut l) = linked();
        let t = Instant::from_millis(10);
        let id = d
            .request(t, "slow", Bytes::new(), Duration::from_secs(60))
            .expect("sent");
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut l).len(), 1);
        let t = Instant::from_millis(1000);
        d.handle_timeout(t);
        pump(&mut d, &mut l, t);
        let _ = drain(&mut d);
        assert!(d.release_idle_storage() && l.release_idle_storage());
        // Our request is still pending, the peer's still owed: their maps stay.
        assert_eq!(d.pending_requests(), 1);
        assert!(d.pending.capacity_bytes() + d.deadlines.capacity_bytes() > 0);
        assert!(l.incoming.capacity_bytes() > 0);
        l.reply(id.0, Ok(Bytes::from_static(b"done")));
        pump(&mut d, &mut l, t);
        assert_eq!(
            drain(&mut d),
            [Event::Reply {
                id,
                result: Ok(Bytes::from_static(b"done"))
            }]
        );
    }
}
