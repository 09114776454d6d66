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
//!   authenticated link to one of the target's listen URLs, used for this file only and
//!   closed after it, dialed by whichever node holds the target's link: the sender
//!   itself, or, for a sender that reaches the target through a control node (the CLI),
//!   that control node ([`SendPlan::ask_router`]: the parts are routed `exclusive`, and
//!   the control node sends every part of one file ([`routed_part`]) over one dedicated
//!   connection). A target that does not listen, or a dial that fails, leaves the parts
//!   on the main links ([`Carrier::Main`]).
//! - A transfer that fails for a reason of the link (`connection_failed`,
//!   `not_connected`, `timeout`, `no_reply`) is tried again, asking the offset anew,
//!   up to [`Retry::attempts`] times in all with a doubling delay ([`Retry::after`]).
//!
//! ```
//! use nkcluster_core::file_send::{plan, Carrier, BIG_FILE};
//! assert_eq!(plan(BIG_FILE, true, true).carrier, Carrier::Main);
//! let p = plan(BIG_FILE + 1, true, true);
//! assert!(p.resumable && p.carrier == Carrier::Exclusive);
//! ```

use std::time::Duration;

use crate::cluster::FilePart;

pub mod wire;

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
    /// Route the parts `exclusive`: the control node holding the target's link carries
    /// them over a dedicated connection (the sender does not hold that link).
    pub ask_router: bool,
}

/// The plan for a file of `total` bytes; `direct`: the sender holds the target's link;
/// `listens`: the target announced listen URLs there.
#[must_use]
pub fn plan(total: u64, direct: bool, listens: bool) -> SendPlan {
    let big = total > BIG_FILE;
    SendPlan {
        resumable: big,
        carrier: if big && direct && listens {
            Carrier::Exclusive
        } else {
            Carrier::Main
        },
        ask_router: big && !direct,
    }
}

/// How long a control node keeps a routed big file's dedicated connection open with no
/// part passing (a sender that vanished mid-file).
pub const ROUTED_IDLE: Duration = Duration::from_secs(60);

/// The transfer a part routed `exclusive` through a control node belongs to: one
/// dedicated connection carries all its parts, in order, and closes after the last.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutedPart {
    /// The destination path, as sent.
    pub path: String,
    /// The file's identity.
    pub sha256: [u8; 32],
    /// The last part: the connection closes once it is answered.
    pub last: bool,
}

/// The transfer of a part routed `exclusive`: a big file's part carrying its identity;
/// `None` for anything else (routed like any exclusive request).
#[must_use]
pub fn routed_part(part: &FilePart) -> Option<RoutedPart> {
    let sha256 = part.sha256?;
    if part.total <= BIG_FILE {
        return None;
    }
    let end = part.offset.saturating_add(part.data.len() as u64);
    Some(RoutedPart {
        path: part.path.clone(),
        sha256,
        last: end >= part.total,
    })
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
    fn big_files_are_resumable_and_go_exclusive_only_to_a_listening_peer() {
        let p = |resumable, carrier, ask_router| SendPlan {
            resumable,
            carrier,
            ask_router,
        };
        assert_eq!(plan(0, true, true), p(false, Carrier::Main, false));
        assert_eq!(plan(BIG_FILE, true, true), p(false, Carrier::Main, false));
        assert_eq!(plan(BIG_FILE, false, false), p(false, Carrier::Main, false));
        assert_eq!(
            plan(BIG_FILE + 1, true, true),
            p(true, Carrier::Exclusive, false)
        );
        assert_eq!(plan(1 << 30, true, false), p(true, Carrier::Main, false));
        // Through a control node: it decides (it knows whether the target listens).
        assert_eq!(plan(1 << 30, false, false), p(true, Carrier::Main, true));
    }

    #[test]
    fn routed_parts_of_a_big_file_share_its_connection_and_the_last_closes_it() {
        let part = |offset: u64, len: usize, total: u64, sha: Option<[u8; 32]>| FilePart {
            path: "p".into(),
            offset,
            total,
            data: bytes::Bytes::from(vec![0u8; len]),
            sha256: sha,
        };
        let big = BIG_FILE + 10;
        let r = |last| {
            Some(RoutedPart {
                path: "p".into(),
                sha256: [3; 32],
                last,
            })
        };
        assert_eq!(routed_part(&part(0, PART, big, Some([3; 32]))), r(false));
        assert_eq!(
            routed_part(&part(BIG_FILE, 10, big, Some([3; 32]))),
            r(true)
        );
        // No identity, or not big: no shared connection.
        assert_eq!(routed_part(&part(0, PART, big, None)), None);
        assert_eq!(routed_part(&part(0, 10, BIG_FILE, Some([3; 32]))), None);
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
