//! When an accepted TLS session's last handshake bytes leave (issue 15, point 7).
//!
//! A TLS 1.3 server writes twice in a full handshake: its flight up to `Finished`, then,
//! once it has read the client's `Finished`, its session tickets. A nkcluster dialer's
//! hello comes with its `Finished` (see [`crate::conn::opening`]), and the listener
//! answers it at once with its own hello: written on their own, the tickets cost the
//! listener one write (one system call, one segment) more than needed. [`TailHold`]
//! decides, from what the socket under the TLS session sees, that the writes made after
//! the client's last flight was read are held, and leave with the link's first write.
//!
//! Nothing waits on a held write: the held bytes leave before any read that would wait
//! for the peer (a server that asked the client to retry its hello has its next flight
//! held by this rule, and it must reach the client before the server waits for an
//! answer), on a flush after the handshake's own, and on a shutdown. The bytes on the
//! wire and their order are the same; only the number of writes changes.

/// What the socket does with bytes the TLS session writes. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailWrite {
    /// Write them now.
    Pass,
    /// Keep them for the next write.
    Hold,
    /// Write what is held, then them, in one write.
    Release,
}

/// What the socket does on a flush of the TLS session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFlush {
    /// Flush the socket.
    Pass,
    /// Nothing to do: what is held waits for the link's first write.
    Skip,
    /// Write what is held, then flush.
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written yet.
    Start,
    /// The server's first flight went out.
    Wrote,
    /// The client's answer was read: writes are held.
    Holding,
    /// The handshake flushed: the next write takes what is held with it.
    Armed,
    /// Every write passes.
    Off,
}

/// The decisions for one accepted TLS socket. See the module docs.
#[derive(Debug, Clone)]
pub struct TailHold {
    state: State,
}

impl Default for TailHold {
    fn default() -> Self {
        Self::new()
    }
}

impl TailHold {
    /// A socket nothing was written to or read from yet.
    pub fn new() -> Self {
        TailHold {
            state: State::Start,
        }
    }

    /// The session writes (bytes are held already when `held`).
    pub fn write(&mut self, held: bool) -> TailWrite {
        match self.state {
            State::Start | State::Wrote => {
                self.state = State::Wrote;
                TailWrite::Pass
            }
            State::Holding => TailWrite::Hold,
            // Held bytes that could not leave yet still go before anything else.
            State::Armed | State::Off => {
                self.state = State::Off;
                if held {
                    TailWrite::Release
                } else {
                    TailWrite::Pass
                }
            }
        }
    }

    /// The session flushes.
    pub fn flush(&mut self, held: bool) -> TailFlush {
        match self.state {
            State::Holding if held => TailFlush::Skip,
            State::Armed | State::Off if held => {
                self.state = State::Off;
                TailFlush::Release
            }
            _ => TailFlush::Pass,
        }
    }

    /// A read finds nothing to read: whether what is held goes now (it then never holds
    /// again). During the handshake it does, as the peer may be waiting for it (a retry
    /// request's answer); once the handshake is done it does not: a TLS 1.3 client never
    /// waits for tickets, what it waits for is our first write, which takes them along.
    pub fn read_would_wait(&mut self, held: bool) -> bool {
        if held && matches!(self.state, State::Holding | State::Off) {
            self.state = State::Off;
            return true;
        }
        false
    }

    /// The TLS handshake is done: what is held now waits for the link's first write (or
    /// a flush).
    pub fn handshake_done(&mut self) {
        self.state = match self.state {
            State::Holding | State::Armed => State::Armed,
            _ => State::Off,
        };
    }

    /// A read brought bytes from the peer.
    pub fn read_data(&mut self) {
        if self.state == State::Wrote {
            self.state = State::Holding;
        }
    }

    /// Whether what is held goes before a shutdown (always, when something is).
    pub fn shutdown(&mut self, held: bool) -> bool {
        self.state = State::Off;
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_handshake_tickets_leave_with_the_first_write() {
        let mut t = TailHold::new();
        // Client hello read, server flight written and flushed.
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Pass);
        assert_eq!(t.flush(false), TailFlush::Pass);
        assert!(!t.read_would_wait(false));
        // The client's Finished (and our peer's hello) read; nothing more to read yet.
        t.read_data();
        assert!(!t.read_would_wait(false));
        // The tickets are held through the handshake's flush.
        assert_eq!(t.write(false), TailWrite::Hold);
        assert_eq!(t.write(true), TailWrite::Hold);
        assert_eq!(t.flush(true), TailFlush::Skip);
        t.handshake_done();
        // Reading on (the hello, then waiting for more) keeps them.
        t.read_data();
        assert!(!t.read_would_wait(true));
        // The link's first write takes them along; then every write passes.
        assert_eq!(t.write(true), TailWrite::Release);
        assert_eq!(t.write(false), TailWrite::Pass);
        assert_eq!(t.flush(false), TailFlush::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Pass);
    }

    #[test]
    fn a_read_that_would_wait_during_the_handshake_sends_what_is_held() {
        // A retry request: the server's next flight is held by the rule, and leaves
        // before the server waits for the client's next flight.
        let mut t = TailHold::new();
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Hold);
        assert_eq!(t.flush(true), TailFlush::Skip);
        assert!(t.read_would_wait(true));
        // Off for good.
        assert_eq!(t.write(false), TailWrite::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.handshake_done();
        assert_eq!(t.write(false), TailWrite::Pass);
    }

    #[test]
    fn a_flush_after_the_handshake_or_a_shutdown_sends_what_is_held() {
        let mut t = TailHold::new();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Hold);
        assert_eq!(t.flush(true), TailFlush::Skip);
        t.handshake_done();
        assert_eq!(t.flush(true), TailFlush::Release);
        assert_eq!(t.write(false), TailWrite::Pass);
        let mut t = TailHold::new();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Hold);
        assert!(t.shutdown(true));
        assert_eq!(t.write(false), TailWrite::Pass);
        assert!(!TailHold::new().shutdown(false));
    }

    #[test]
    fn bytes_still_held_go_before_any_later_write() {
        // The socket was full when a read let them go: still first.
        let mut t = TailHold::new();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Hold);
        assert!(t.read_would_wait(true));
        assert_eq!(t.write(true), TailWrite::Release);
        assert_eq!(t.flush(true), TailFlush::Release);
        assert!(t.read_would_wait(true));
        assert_eq!(t.write(false), TailWrite::Pass);
    }

    #[test]
    fn a_handshake_done_before_any_hold_holds_nothing() {
        let mut t = TailHold::new();
        assert_eq!(t.write(false), TailWrite::Pass);
        t.handshake_done();
        t.read_data();
        assert_eq!(t.write(false), TailWrite::Pass);
        assert_eq!(t.flush(false), TailFlush::Pass);
    }
}
