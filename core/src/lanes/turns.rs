//! Turns of the bulk lane beside our small requests: a link that carries a transfer
//! and small requests of ours alternates them.
//!
//! Why: on a fast local link the cost of a transfer to a small request is not the wire
//! but the threads that run the links' tasks at both ends, busy moving bulk chunks (a
//! chunk's socket write, its read and assembly, each a system call or more): a small
//! request or its reply that arrives while they do waits for that work, at every hop.
//! Measured (jobs bench, quick, one build switching the rule): a chunk written on its
//! own between a reply and the caller's next request cost that request about 17 µs
//! whether it carried 4 or 16 KiB; the same chunk written behind the request, in the
//! request's write, cost it about 3 µs (8 KiB).
//!
//! The rule, while our small traffic is about (a small request of ours in flight, or
//! one sent or answered less than [`HOLD`] ago):
//! - the bulk lane hands out one frame of at most [`SMALL_CHUNK`] body bytes per write
//!   that sends small requests of ours (a turn), right after them: it leaves in their
//!   write, and the peer reads and answers them before it reads the chunk;
//! - and nothing else: no bulk frame goes on its own while an answer is awaited, nor in
//!   the gap between an answer and the caller's next request.
//!
//! Once [`HOLD`] has passed with no small request of ours in flight, the bulk lane goes
//! by its window alone ([`credit`](crate::lanes::credit)), in whole chunks; the shell
//! wakes for it ([`Turns::deadline`]). The turns apply only on a link whose round trip
//! is under a millisecond (see
//! [`BulkCredit::short_path`](crate::lanes::credit::BulkCredit::short_path)): over a
//! longer path the wire, not the threads, sets a small request's wait, and one chunk
//! per round trip would crawl.
//!
//! The trade-off: while small requests follow each other back to back, a transfer moves
//! [`SMALL_CHUNK`] per small round trip, and each of those requests carries one chunk's
//! copy. Jobs bench, quick, 6 pairs alternated with the build before: busy p99 154 ->
//! 97 µs (medians), the small requests' p50 20.7 -> 23.7 µs, the transfer beside them
//! 338 -> 231 MiB/s; a transfer alone is not affected (no small traffic, no turns).

use std::time::Duration;

use crate::lanes::CHUNK;
use crate::time::Instant;

/// Most body bytes of a bulk frame handed out while our small traffic is about.
pub const SMALL_CHUNK: usize = 8 * 1024;

/// How long after a small request of ours was sent or answered the bulk lane still
/// takes turns (a caller's next request usually follows within a round trip).
pub const HOLD: Duration = Duration::from_micros(100);

/// Our small requests since the last look (the pump's, see
/// [`Pump::small_traffic`](crate::pump::Pump::small_traffic)).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SmallTraffic {
    /// A small request of ours is in flight.
    pub in_flight: bool,
    /// One was sent since the last look.
    pub sent: bool,
    /// One was answered (any outcome) since the last look.
    pub answered: bool,
}

/// The hold's end, in microseconds of [`Instant`], wrapping: valid while it lies at
/// most [`HOLD`] ahead (see [`Turns::note`]).
fn micros(t: Instant) -> u32 {
    (t.as_nanos() / 1000) as u32
}

/// [`HOLD`] in microseconds.
const HOLD_US: u32 = HOLD.as_micros() as u32;

const TURN: u8 = 1;
const ABOUT: u8 = 2;
const IN_FLIGHT: u8 = 4;

/// The bulk lane's turns. See the module docs. Five bytes, kept in the lanes' spare
/// room: every link's task holds one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub struct Turns {
    /// When the hold ends (microseconds, wrapping; see [`micros`]).
    until: u32,
    /// [`TURN`]: a small request was sent since the last bulk frame; [`ABOUT`]: small
    /// traffic is about (as of the last note); [`IN_FLIGHT`]: a small request of ours
    /// is in flight.
    flags: u8,
}

impl Turns {
    /// What the pump saw since the last look, at `now`.
    pub fn note(&mut self, now: Instant, t: SmallTraffic) {
        let mut flags = self.flags & TURN;
        if t.sent || t.answered {
            self.until = micros(now).wrapping_add(HOLD_US);
        }
        if t.sent {
            flags |= TURN;
        }
        if t.in_flight {
            flags |= IN_FLIGHT;
        }
        // Held while the end lies ahead by at most HOLD: a stale end (not renewed for
        // over an hour, its microseconds wrapped) is outside it nearly always, and
        // holds at most HOLD if not.
        if t.in_flight || self.left(now) > 0 {
            flags |= ABOUT;
        }
        self.flags = flags;
    }

    /// Microseconds of the hold left at `now` (0: over).
    fn left(&self, now: Instant) -> u32 {
        let left = self.until.wrapping_sub(micros(now));
        if left <= HOLD_US { left } else { 0 }
    }

    /// Most body bytes the next bulk frame may carry now (`None`: none may go).
    #[must_use]
    pub fn limit(&self) -> Option<usize> {
        if self.flags & ABOUT == 0 {
            Some(CHUNK)
        } else if self.flags & TURN != 0 {
            Some(SMALL_CHUNK)
        } else {
            None
        }
    }

    /// A bulk frame was handed out: the turn is used.
    pub fn took(&mut self) {
        self.flags &= !TURN;
    }

    /// When the turns stop holding bulk back, as of `now`, if they do and no small
    /// request of ours is in flight (its outcome comes first, and is noted).
    #[must_use]
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        (self.flags & (ABOUT | TURN | IN_FLIGHT) == ABOUT)
            .then(|| now + Duration::from_micros(u64::from(self.left(now))))
    }
}

#[cfg(test)]
mod tests;
