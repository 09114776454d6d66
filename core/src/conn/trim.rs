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
//!
//! A light link gives back at every wait instead: one that has carried at most
//! [`LIGHT_FRAMES`] frames (in and out) since its last keepalive release, such as a link
//! coming up (hello, proof, its first requests and replies). Its storage then goes as
//! soon as the exchange is over, while other links are still coming up and reuse it:
//! given back only at the first keepalive, after every link of a burst is up, the freed
//! chunks stayed resident in the allocator's free lists, about 1.5 KiB per link (a
//! thousand workers connecting at once). A busy link passes the bound within its first
//! few requests and keeps its storage until its next keepalive, as before.

use bytes::BytesMut;

use super::Connection;

/// Frames since the last keepalive release up to which a link counts as light (see the
/// module docs). A worker's link-up exchange is about a dozen frames, both ways.
pub const LIGHT_FRAMES: u64 = 24;

impl Connection {
    /// Gives back the storage of empty queues and maps if a keepalive was heard since
    /// the last release, or if the link is light (see the module docs); returns whether
    /// it did. The shell calls it when it is about to
    /// wait (every transmit taken, every event drained) and, when it returns `true`,
    /// gives back its own (the [`Pump`](crate::pump::Pump)'s maps with
    /// [`Pump::release_idle_storage`](crate::pump::Pump::release_idle_storage), a queue
    /// of late answers). What is not empty is kept, to be looked at again after the next
    /// keepalive.
    pub fn release_idle_storage(&mut self) -> bool {
        let frames = self.stats.frames_in + self.stats.frames_out;
        if std::mem::take(&mut self.trim_due) {
            self.frames_at_trim = frames;
        } else if frames - self.frames_at_trim > LIGHT_FRAMES {
            return false;
        }
        if self.events.is_empty() {
            self.events = Default::default();
        }
        self.pending.shrink();
        self.incoming.shrink();
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
        self.lanes.release_idle_storage();
        self.assembly.release_idle_storage();
        self.last_class.release();
        true
    }

    /// Bytes held by the queues and maps [`release_idle_storage`](Self::release_idle_storage)
    /// gives back (capacities, for tests).
    #[cfg(test)]
    pub(crate) fn idle_storage(&self) -> usize {
        self.events.capacity() * size_of::<super::Event>()
            + self.pending.capacity_bytes()
            + self.incoming.capacity_bytes()
            + self.inbuf.capacity()
            + self.lanes.capacity_bytes()
            + self.last_class.storage_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::tests::{linked, pump};
    use super::LIGHT_FRAMES;
    use crate::conn::{Connection, Event, RequestId};
    use crate::time::Instant;

    fn drain(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// One request from `d` answered by `l` at `t` (two frames), events drained.
    fn round_trip(d: &mut Connection, l: &mut Connection, t: Instant) {
        let id = d
            .request(t, "echo", Bytes::from_static(b"hi"), Duration::from_secs(1))
            .expect("sent");
        pump(d, l, t);
        assert_eq!(drain(l).len(), 1);
        l.reply(id.0, Ok(Bytes::from_static(b"ok")));
        pump(d, l, t);
        assert_eq!(drain(d).len(), 1);
    }

    fn frames(c: &Connection) -> u64 {
        c.stats().frames_in + c.stats().frames_out
    }

    #[test]
    fn a_light_link_gives_its_storage_back_as_soon_as_its_exchange_is_over() {
        let (mut d, mut l) = linked();
        let t = Instant::from_millis(10);
        // A request in flight: what it uses is kept.
        let id = d
            .request(t, "echo", Bytes::from_static(b"hi"), Duration::from_secs(1))
            .expect("sent");
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut l).len(), 1);
        assert!(d.release_idle_storage() && l.release_idle_storage());
        assert!(d.pending.capacity_bytes() > 0 && l.incoming.capacity_bytes() > 0);
        // Answered: both ends are light (a handshake and one round trip) and give
        // everything back at once, no keepalive needed.
        l.reply(id.0, Ok(Bytes::from_static(b"ok")));
        pump(&mut d, &mut l, t);
        assert_eq!(drain(&mut d).len(), 1);
        assert!(frames(&d) <= LIGHT_FRAMES && frames(&l) <= LIGHT_FRAMES);
        assert!(d.release_idle_storage() && l.release_idle_storage());
        assert_eq!((d.idle_storage(), l.idle_storage()), (0, 0));
    }

    #[test]
    fn a_busy_link_gives_its_storage_back_at_the_next_keepalive_and_not_before() {
        let (mut d, mut l) = linked();
        let t = Instant::from_millis(10);
        // Past the light bound: busy.
        while frames(&d) <= LIGHT_FRAMES {
            round_trip(&mut d, &mut l, t);
        }
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
        // The dialer hears the pong (an RTT event), then gives back once drained.
        assert_eq!(drain(&mut d), [Event::RttMeasured(Duration::ZERO)]);
        assert!(d.release_idle_storage());
        assert_eq!(d.idle_storage(), 0);
        // Light again since that keepalive: a release at every wait, until the link
        // is past the bound once more.
        let t = Instant::from_millis(1100);
        round_trip(&mut d, &mut l, t);
        assert!(d.release_idle_storage());
        assert_eq!(d.idle_storage(), 0);
        while frames(&d) - d.frames_at_trim <= LIGHT_FRAMES {
            round_trip(&mut d, &mut l, t);
        }
        assert!(!d.release_idle_storage());
        assert!(d.idle_storage() > 0);
        // The link still works.
        let id = d
            .request(t, "echo", Bytes::new(), Duration::from_secs(1))
            .expect("sent");
        assert!(id > RequestId(LIGHT_FRAMES / 4));
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
        assert!(d.pending.capacity_bytes() > 0);
        assert!(l.incoming.capacity_bytes() > 0);
        l.reply(id.0, Ok(Bytes::from_static(b"done")));
        pump(&mut d, &mut l, t);
        assert_eq!(
            drain(&mut d),
            [Event::Reply {
                id,
                tag: crate::conn::NO_TAG,
                result: Ok(Bytes::from_static(b"done"))
            }]
        );
    }
}
