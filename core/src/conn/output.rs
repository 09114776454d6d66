//! The connection's output side: what the shell writes next, and what it needs to know
//! to pull the bulk lane at the pace its transport takes it (see [`crate::lanes`]).

use bytes::Bytes;

use super::Connection;
use crate::lanes::credit::BulkCredit;
use crate::lanes::turns::SmallTraffic;
use crate::time::Instant;

impl Connection {
    /// Like [`poll_transmit`](Self::poll_transmit), for a shell that holds `queued`
    /// bytes it has not written yet: the control lane goes at once, the next bulk frame
    /// only while `queued` is under [`crate::lanes::PACE`]. Call it again as the
    /// transport takes bytes while [`has_bulk`](Self::has_bulk).
    #[must_use]
    pub fn poll_transmit_paced(&mut self, queued: usize) -> Option<Bytes> {
        self.lanes.poll(queued)
    }

    /// Our small requests at `now` (the pump's count): the bulk lane takes turns with
    /// them (see [`crate::lanes::turns`]). Call it before polling for output; while it
    /// holds bulk back, [`turn_deadline`](Self::turn_deadline) says until when.
    #[inline]
    pub fn note_small(&mut self, now: Instant, t: SmallTraffic) {
        self.lanes.note_small(now, t);
    }

    /// When the bulk lane's turns let the bulk that waits go, as of `now`, if they hold
    /// it back (the shell wakes then, see
    /// [`Pump::poll_timeout`](crate::pump::Pump::poll_timeout)).
    #[must_use]
    pub fn turn_deadline(&self, now: Instant) -> Option<Instant> {
        if self.is_established() {
            self.lanes.turn_deadline(now)
        } else {
            None
        }
    }

    /// Bytes waiting in the bulk lane (not handed out yet).
    #[must_use]
    pub fn bulk_bytes(&self) -> usize {
        self.lanes.bulk_bytes()
    }

    /// Whether bulk waits to be pulled with
    /// [`poll_transmit_paced`](Self::poll_transmit_paced) and may go now (with a peer of
    /// protocol 7 its window may be full: the peer's next report, an input, opens it).
    #[must_use]
    pub fn has_bulk(&self) -> bool {
        self.lanes.bulk_ready()
    }

    /// The bulk lane's window and counts (see [`crate::lanes::credit`]).
    #[must_use]
    pub fn bulk_credit(&self) -> &BulkCredit {
        self.lanes.credit()
    }
}
