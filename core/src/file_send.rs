//! The sending side of a file transfer (`send_file`, the original's `send_bigfile`):
//! which files are "big", which link carries them, where a transfer resumes and when a
//! failed one is tried again. The shell performs these decisions; the receiver is
//! [`transfers`](crate::transfers).
//!
//! - A file up to [`BIG_FILE`] bytes is sent as today: hashed as it goes, over the
//!   routed main links, in [`PART`]-sized parts interleaved with other messages; an
//!   interrupted one is sent again from the start.
//! - A bigger file is hashed first (its SHA-256 is the transfer's identity and travels
//!   on every part), then the sender asks the receiver where that transfer is at
//!   (`FileStatus`) and sends from there ([`resume_offset`]).
//! - It travels over an exclusive connection ([`Carrier::Exclusive`]): a second
//!   authenticated link dialed by the node that holds the file, to one of the target's
//!   listen URLs, used for this file only and closed after it. The sender must hold the
//!   target's link (it learns the listen URLs there); a sender that reaches the target
//!   through a control node, or a target that does not listen, or a dial that fails,
//!   uses the main links ([`Carrier::Main`]).
//! - A transfer that fails for a reason of the link (`connection_failed`,
//!   `not_connected`, `timeout`, `no_reply`) is tried again, asking the offset anew,
//!   up to [`Retry::attempts`] times in all with a doubling delay ([`Retry::after`]).
//!
//! ```
//! use nkcluster_core::file_send::{plan, Carrier, BIG_FILE};
//! assert_eq!(plan(BIG_FILE, true).carrier, Carrier::Main);
//! let p = plan(BIG_FILE + 1, true);
//! assert!(p.resumable && p.carrier == Carrier::Exclusive);
//! ```

use std::time::Duration;

/// The size of the parts files travel in.
pub const PART: usize = 1024 * 1024;

/// Files bigger than this are "big": hashed up front, resumable, exclusive link.
pub const BIG_FILE: u64 = 8 * 1024 * 1024;

/// Which link carries a file's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The routed main links, interleaved with everything else.
    Main,
    /// A dedicated connection to the target, for this file only.
    Exclusive,
}

/// How a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPlan {
    /// Hashed up front, the hash on every part, the receiver asked for its offset.
    pub resumable: bool,
    /// Which link to try first (an exclusive dial that fails falls back to the main).
    pub carrier: Carrier,
}

/// The plan for a file of `total` bytes; `direct_listening`: the sender holds the
/// target's link and the target listens.
#[must_use]
pub fn plan(total: u64, direct_listening: bool) -> SendPlan {
    let big = total > BIG_FILE;
    SendPlan {
        resumable: big,
        carrier: if big && direct_listening {
            Carrier::Exclusive
        } else {
            Carrier::Main
        },
    }
}

/// Where to resume, given the receiver's answer (peer input): the answered offset when
/// it is inside the file, else 0 (a complete or impossible answer starts again).
#[must_use]
pub fn resume_offset(total: u64, answered: u64) -> u64 {
    if answered < total { answered } else { 0 }
}

/// When a failed transfer is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (1: never again).
    pub attempts: u32,
    /// The delay before the second attempt; doubled for each next one.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Retry {
    /// Never again.
    pub const NONE: Retry = Retry {
        attempts: 1,
        first_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// Attempt `attempt` (1 = the first) failed with error `code`: the delay before the
    /// next, or `None` to give up (a refusal by the receiver, or the attempts spent).
    #[must_use]
    pub fn after(&self, attempt: u32, code: &str) -> Option<Duration> {
        let link_failure = matches!(
            code,
            "connection_failed" | "not_connected" | "timeout" | "no_reply"
        );
        if !link_failure || attempt >= self.attempts {
            return None;
        }
        let doubled = self
            .first_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        Some(doubled.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_files_are_resumable_and_go_exclusive_only_to_a_listening_direct_peer() {
        assert_eq!(
            plan(0, true),
            SendPlan {
                resumable: false,
                carrier: Carrier::Main
            }
        );
        assert_eq!(
            plan(BIG_FILE, true),
            SendPlan {
                resumable: false,
                carrier: Carrier::Main
            }
        );
        assert_eq!(
            plan(BIG_FILE + 1, true),
            SendPlan {
                resumable: true,
                carrier: Carrier::Exclusive
            }
        );
        assert_eq!(
            plan(1 << 30, false),
            SendPlan {
                resumable: true,
                carrier: Carrier::Main
            }
        );
    }

    #[test]
    fn the_resume_offset_is_the_answer_inside_the_file_else_zero() {
        assert_eq!(resume_offset(100, 0), 0);
        assert_eq!(resume_offset(100, 42), 42);
        assert_eq!(resume_offset(100, 99), 99);
        assert_eq!(resume_offset(100, 100), 0);
        assert_eq!(resume_offset(100, u64::MAX), 0);
        assert_eq!(resume_offset(0, 0), 0);
    }

    #[test]
    fn link_failures_are_tried_again_with_doubling_delays_refusals_never() {
        let r = Retry::default();
        let s = Duration::from_secs;
        assert_eq!(r.after(1, "connection_failed"), Some(s(1)));
        assert_eq!(r.after(2, "not_connected"), Some(s(2)));
        assert_eq!(r.after(3, "timeout"), Some(s(4)));
        assert_eq!(r.after(4, "no_reply"), Some(s(8)));
        assert_eq!(r.after(5, "connection_failed"), None);
        assert_eq!(r.after(1, "checksum_mismatch"), None);
        assert_eq!(r.after(1, "forbidden_path"), None);
        assert_eq!(r.after(1, "file_error"), None);
        assert_eq!(Retry::NONE.after(1, "connection_failed"), None);
        let long = Retry {
            attempts: 100,
            ..Retry::default()
        };
        assert_eq!(long.after(60, "timeout"), Some(s(8)));
    }
}
