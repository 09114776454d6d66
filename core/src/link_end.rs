//! A link's last phase, once its connection closed: what the shell's driver still does
//! (write what is queued, shut the transport down, read and discard the peer's last
//! bytes) and how long each step may take, so that a peer that stops reading, or never
//! closes its side, cannot hold a link's task and its memory.

use core::time::Duration;

use crate::time::Instant;

/// How long a closed connection may take to write its last bytes.
pub const LINGER: Duration = Duration::from_secs(5);
/// How long the transport's orderly shutdown (TLS `close_notify`, WebSocket close) may
/// take.
pub const SHUTDOWN_TIME: Duration = Duration::from_secs(5);
/// After our orderly close: how long we read and discard the peer's input while waiting
/// for it to close its side.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);
/// After our orderly close: how many of the peer's bytes we read and discard at most.
pub const DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// When a connection that closed at `closed_at` stops waiting to write its last bytes.
#[must_use]
pub fn linger_until(closed_at: Instant) -> Instant {
    closed_at + LINGER
}

/// The steps after a link's loop ended, each bounded by its time above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSteps {
    /// Shut the transport down in order (within [`SHUTDOWN_TIME`]).
    pub shutdown: bool,
    /// Then read and discard the peer's input until it closes (within [`DRAIN_TIME`]
    /// and [`DRAIN_BYTES`]).
    pub drain: bool,
}

impl LastSteps {
    /// After a failed write the transport is broken: nothing more is tried. After our
    /// orderly close: the shutdown, then the drain, so that closing the socket with the
    /// peer's input unread does not reset the connection under our last messages. After
    /// a close for an error: the shutdown only (a hung peer would hold us for nothing).
    #[must_use]
    pub fn after(write_failed: bool, orderly: bool) -> Self {
        LastSteps {
            shutdown: !write_failed,
            drain: !write_failed && orderly,
        }
    }
}

/// The bytes read and discarded so far while draining.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    read: usize,
}

impl Drain {
    /// `n` more bytes were read and discarded: whether to go on waiting for the peer's
    /// close (`false` once more than [`DRAIN_BYTES`] came: a peer that keeps sending).
    #[must_use]
    pub fn go_on_after(&mut self, n: usize) -> bool {
        self.read = self.read.saturating_add(n);
        self.read <= DRAIN_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_connection_writes_its_last_bytes_for_five_seconds() {
        assert_eq!(
            linger_until(Instant::from_millis(1_000)),
            Instant::from_millis(6_000)
        );
    }

    #[test]
    fn only_an_orderly_close_without_a_failed_write_drains() {
        let cases = [
            // (write failed, orderly) -> (shutdown, drain)
            ((false, true), (true, true)),
            ((false, false), (true, false)),
            ((true, true), (false, false)),
            ((true, false), (false, false)),
        ];
        for ((write_failed, orderly), (shutdown, drain)) in cases {
            assert_eq!(
                LastSteps::after(write_failed, orderly),
                LastSteps { shutdown, drain },
                "write failed {write_failed}, orderly {orderly}"
            );
        }
    }

    #[test]
    fn the_drain_stops_once_more_than_four_mebibytes_came() {
        let mut d = Drain::default();
        assert!(d.go_on_after(DRAIN_BYTES - 1));
        assert!(d.go_on_after(1), "exactly DRAIN_BYTES still goes on");
        assert!(!d.go_on_after(1));
        let mut d = Drain::default();
        assert!(!d.go_on_after(usize::MAX), "no overflow");
        assert!(!d.go_on_after(usize::MAX));
    }
}
