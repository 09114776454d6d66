//! Receiver-driven credit for the bulk lane (protocol 7, [`CREDIT_VERSION`]).
//!
//! Why: a small message written after bulk waits behind every bulk byte the peer has not
//! read yet, and the kernel's socket buffers hold hundreds of KiB of them (measured: a
//! small request waited 329-356 µs behind 315-379 KiB of unread file data at p99; a
//! smaller receive buffer only moved the wait into the sender's socket). Only the sender
//! can bound it, and only if the receiver tells it what it has read.
//!
//! - The receiver counts the body bytes of the chunks it has handled and reports them in
//!   a [`Message::BulkRead`](crate::message::Message) on its control lane, every
//!   [`REPORT_EVERY`] bytes and at the end of each chunked message (each report carries
//!   what was read since the one before).
//! - The sender hands out bulk only while the bytes sent and not yet reported read stay
//!   under a window: [`WINDOW_BUSY`] while control traffic is about
//!   (for the next [`BUSY_FOR`] bulk bytes after any control message, which is when
//!   the next one is likely), [`WINDOW_QUIET`] otherwise, so a transfer alone keeps its
//!   speed. A chunk is at most half the window, so one is always on its way while the
//!   report of the one before comes back.
//!
//! Over a long path the window grows with the link's smoothed round trip (first from
//! the handshake's last exchange, then from its pings), so that it still holds what the path carries in one round trip at
//! [`RATE_BUSY`] or [`RATE_QUIET`]: a fixed window would cap a transfer at window / RTT
//! (64 KiB over a 50 ms path: 1.3 MB/s). Until a round trip is measured, and below 1 ms,
//! the fixed windows hold.
//!
//! [`BulkCredit`] keeps both ends' counts. With an older peer (no reports) the window is off and bulk is paced by the shell's
//! write queue alone, as before.

use crate::lanes::CHUNK;

/// First protocol version whose receivers report the bulk bytes they read.
pub const CREDIT_VERSION: u16 = 7;

/// Unreported bulk bytes allowed in flight while control traffic is about.
pub const WINDOW_BUSY: usize = 64 * 1024;

/// Unreported bulk bytes allowed in flight when the link carries bulk alone.
pub const WINDOW_QUIET: usize = 512 * 1024;

/// Bulk bytes after a control message that still go under [`WINDOW_BUSY`].
pub const BUSY_FOR: usize = 1024 * 1024;

/// The rate (bytes per millisecond of round trip) the busy window allows over a long
/// path: 100 MB/s.
pub const RATE_BUSY: usize = 100_000;

/// The rate (bytes per millisecond of round trip) the quiet window allows over a long
/// path: 1 GB/s.
pub const RATE_QUIET: usize = 1_000_000;

/// The largest window, whatever the round trip.
pub const WINDOW_MAX: usize = 64 << 20;

/// A receiver reports once it has read this many bulk bytes since its last report.
pub const REPORT_EVERY: usize = 16 * 1024;

/// The peer reported more bulk read than we sent and it had not reported yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditError {
    /// What the peer reported read since its last report.
    pub reported: u64,
    /// What we sent that it had not reported.
    pub unreported: u32,
}

impl std::fmt::Display for CreditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the peer reported {} bulk bytes read, only {} were sent and not reported",
            self.reported, self.unreported
        )
    }
}

/// The bulk window of one link, both ways: what our bulk lane may hand out now, and
/// when to report the bulk we read. See the module docs. Kept small (16 bytes): every
/// link's task holds one, and reports carry what was read since the one before, so
/// the counts stay bounded by a window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BulkCredit {
    /// The peer reports what it reads, and we report what we read.
    on: bool,
    /// Bulk body bytes we handed out that the peer has not reported read.
    unreported: u32,
    /// Bulk bytes still to go under [`WINDOW_BUSY`].
    busy_left: u32,
    /// Bulk body bytes we read and have not reported.
    read_unreported: u32,
    /// The link's smoothed round trip, whole milliseconds (0: under 1 ms or unknown).
    rtt_ms: u16,
}

impl BulkCredit {
    /// Bulk is windowed and reported from now on (the peer speaks [`CREDIT_VERSION`]),
    /// or no longer (the link is closed: what is left goes out unwindowed).
    pub fn set_on(&mut self, on: bool) {
        self.on = on;
    }

    /// Whether bulk is windowed.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The link's smoothed round trip was measured (see the module docs).
    pub fn set_rtt(&mut self, srtt: std::time::Duration) {
        self.rtt_ms = u16::try_from(srtt.as_millis()).unwrap_or(u16::MAX);
    }

    /// The window now.
    #[must_use]
    pub fn window(&self) -> usize {
        let (fixed, rate) = if self.busy_left > 0 {
            (WINDOW_BUSY, RATE_BUSY)
        } else {
            (WINDOW_QUIET, RATE_QUIET)
        };
        fixed.max(usize::from(self.rtt_ms) * rate).min(WINDOW_MAX)
    }

    /// Whether the link's round trip is under a millisecond (or not measured yet): the
    /// fixed windows hold, and the bulk lane takes turns with small requests (see
    /// [`crate::lanes::turns`]).
    #[must_use]
    pub fn short_path(&self) -> bool {
        self.rtt_ms == 0
    }

    /// Bulk bytes sent and not reported read.
    #[must_use]
    pub fn unreported(&self) -> u64 {
        u64::from(self.unreported)
    }

    /// Most body bytes the next bulk frame may carry, `None` while the window is full.
    /// Unwindowed: [`CHUNK`].
    #[must_use]
    pub fn allowance(&self) -> Option<usize> {
        if !self.on {
            return Some(CHUNK);
        }
        let window = self.window();
        let room = window.saturating_sub(self.unreported as usize);
        (room > 0).then(|| room.min(window / 2).min(CHUNK))
    }

    /// A bulk frame with `n` body bytes (at most an [`allowance`](Self::allowance))
    /// was handed out.
    pub fn sent(&mut self, n: usize) {
        if self.on {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.unreported = self.unreported.saturating_add(n);
            self.busy_left = self.busy_left.saturating_sub(n);
        }
    }

    /// A control message was queued (not a keepalive or a report): more may follow.
    pub fn control_queued(&mut self) {
        self.busy_left = BUSY_FOR as u32;
    }

    /// The peer's report: it read `n` more bulk bytes since its last report.
    pub fn peer_read(&mut self, n: u64) -> Result<(), CreditError> {
        match u32::try_from(n) {
            Ok(n) if n <= self.unreported => {
                self.unreported -= n;
                Ok(())
            }
            _ => Err(CreditError {
                reported: n,
                unreported: self.unreported,
            }),
        }
    }

    /// We handled a chunk with `n` body bytes (`last`: it ended its message); what to
    /// report now, if a report is due (only while on).
    pub fn chunk_read(&mut self, n: usize, last: bool) -> Option<u64> {
        if !self.on {
            return None;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.read_unreported = self.read_unreported.saturating_add(n);
        let due =
            self.read_unreported as usize >= REPORT_EVERY || (last && self.read_unreported > 0);
        due.then(|| u64::from(std::mem::take(&mut self.read_unreported)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> BulkCredit {
        let mut c = BulkCredit::default();
        c.set_on(true);
        c
    }

    #[test]
    fn it_fits_in_16_bytes() {
        assert_eq!(size_of::<BulkCredit>(), 16);
    }

    #[test]
    fn unwindowed_bulk_goes_in_whole_chunks_without_counting_or_reports() {
        let mut c = BulkCredit::default();
        assert_eq!(c.allowance(), Some(CHUNK));
        c.sent(10 * CHUNK);
        assert_eq!(c.allowance(), Some(CHUNK));
        assert_eq!(c.unreported(), 0);
        assert_eq!(c.chunk_read(CHUNK, true), None);
    }

    #[test]
    fn alone_a_transfer_keeps_whole_chunks_until_the_quiet_window_is_full() {
        let mut c = on();
        assert_eq!(c.window(), WINDOW_QUIET);
        assert_eq!(c.allowance(), Some(CHUNK));
        for _ in 0..WINDOW_QUIET / CHUNK - 1 {
            c.sent(CHUNK);
        }
        assert_eq!(c.allowance(), Some(CHUNK));
        c.sent(CHUNK);
        assert_eq!(c.unreported(), WINDOW_QUIET as u64);
        assert_eq!(c.allowance(), None);
        assert_eq!(c.peer_read(20_000), Ok(()));
        assert_eq!(c.allowance(), Some(20_000));
        assert_eq!(c.peer_read(WINDOW_QUIET as u64 - 20_000), Ok(()));
        assert_eq!(c.allowance(), Some(CHUNK));
    }

    #[test]
    fn after_a_control_message_the_busy_window_holds_for_busy_for_bytes() {
        let mut c = on();
        c.control_queued();
        assert_eq!(c.window(), WINDOW_BUSY);
        assert_eq!(c.allowance(), Some(WINDOW_BUSY / 2));
        c.sent(WINDOW_BUSY / 2);
        assert_eq!(c.allowance(), Some(WINDOW_BUSY / 2));
        c.sent(WINDOW_BUSY / 2);
        assert_eq!(c.allowance(), None);
        // Reports free the window chunk by chunk; after BUSY_FOR bytes it widens.
        let mut went = WINDOW_BUSY;
        while c.window() == WINDOW_BUSY {
            c.peer_read((WINDOW_BUSY / 2) as u64).expect("sent");
            let n = c.allowance().expect("room");
            assert_eq!(n, WINDOW_BUSY / 2);
            c.sent(n);
            went += n;
        }
        assert_eq!(went, BUSY_FOR);
        assert_eq!(c.window(), WINDOW_QUIET);
        assert_eq!(c.allowance(), Some(CHUNK));
        // Another control message narrows it again: nothing more goes while over it.
        c.control_queued();
        assert_eq!(c.allowance(), None);
    }

    #[test]
    fn over_a_long_path_the_window_holds_a_round_trip_at_the_rate() {
        use std::time::Duration;
        let mut c = on();
        c.set_rtt(Duration::from_micros(900));
        assert_eq!(c.window(), WINDOW_QUIET);
        c.set_rtt(Duration::from_millis(50));
        assert_eq!(c.window(), 50_000_000);
        c.control_queued();
        assert_eq!(c.window(), 5_000_000);
        assert_eq!(c.allowance(), Some(CHUNK));
        c.set_rtt(Duration::from_millis(3));
        assert_eq!(c.window(), WINDOW_BUSY.max(300_000));
        c.set_rtt(Duration::from_secs(100_000));
        assert_eq!(c.window(), WINDOW_MAX);
        c.busy_left = 0;
        assert_eq!(c.window(), WINDOW_MAX);
    }

    #[test]
    fn a_report_of_more_than_was_sent_and_not_reported_is_an_error() {
        let mut c = on();
        c.sent(1000);
        assert_eq!(
            c.peer_read(1001),
            Err(CreditError {
                reported: 1001,
                unreported: 1000
            })
        );
        assert_eq!(c.peer_read(600), Ok(()));
        assert_eq!(
            c.peer_read(401).map_err(|e| e.to_string()),
            Err(
                "the peer reported 401 bulk bytes read, only 400 were sent and not reported".into()
            )
        );
        assert_eq!(
            c.peer_read(u64::MAX),
            Err(CreditError {
                reported: u64::MAX,
                unreported: 400
            })
        );
        assert_eq!(c.peer_read(400), Ok(()));
        assert_eq!(c.unreported(), 0);
    }

    #[test]
    fn the_reader_reports_every_report_every_bytes_and_at_each_messages_end() {
        let mut r = on();
        assert_eq!(r.chunk_read(REPORT_EVERY - 1, false), None);
        assert_eq!(r.chunk_read(1, false), Some(REPORT_EVERY as u64));
        assert_eq!(r.chunk_read(10, false), None);
        assert_eq!(r.chunk_read(5, true), Some(15));
        assert_eq!(r.chunk_read(0, true), None);
        assert_eq!(
            r.chunk_read(3 * REPORT_EVERY, false),
            Some(3 * REPORT_EVERY as u64)
        );
    }
}
