//! The sending side of a file transfer (`send_file`, the original's `send_bigfile`):
//! which files are "big", which link carries them, where a transfer resumes and when a
//! failed one is tried again. The shell performs these decisions; the receiver is
//! [`transfers`](crate::transfers).
//!
//! - A file up to [`BIG_FILE`] bytes is sent as today: hashed as it goes, over the
//!   routed main links, in [`PART`]-sized parts interleaved with other messages; an
//!   interrupted one is sent again from the start.
//! - A bigger file has an identity that travels on every part but the last (which
//!   carries the whole file's SHA-256, as always): a digest of the local file's path,
//!   size, modification time and inode ([`file_identity`]), known at once, so the
//!   content is hashed as the parts are read, in the one pass that sends them (a
//!   resumed attempt hashes the bytes already sent first). The sender asks the
//!   receiver where the transfer with that identity is at (`FileStatus`) and sends
//!   from there ([`resume_offset`], [`part_len`]). Receivers need nothing new: the
//!   identity is whatever the first part carried, and the last part's SHA-256 is
//!   checked against the bytes (senders before this one sent the content SHA-256 as
//!   the identity, hashing the whole file up front). A file changed in place between
//!   attempts without a new modification time fails that check instead of resuming
//!   into a wrong file, and its next attempt starts over. The last part goes once
//!   every other is confirmed ([`SendPlan::last_alone`]): a control node that keys a
//!   routed file's connection by the SHA-256 field (before this version) sends it over
//!   another connection, where it must not overtake the one before.
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

pub mod digest;
pub mod wire;

pub use digest::{BLAKE3_VERSION, ContentHash, ContentHasher, content_hash};

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
    /// The receiver is asked for its offset, and every part but the last carries the
    /// file's identity ([`file_identity`]).
    pub resumable: bool,
    /// The last part is sent once every other is confirmed.
    pub last_alone: bool,
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
        last_alone: big,
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
    /// The file's size.
    pub total: u64,
    /// The last part: the connection closes once it is answered.
    pub last: bool,
}

/// The transfer of a part routed `exclusive` (a `SendFile` or `SendFileBlake3` part):
/// a big file's part carrying a SHA-256 field (its identity, or the content hash on
/// the last part); `None` for anything else
/// (routed like any exclusive request). A file's connection is found by target, path
/// and size: the last part's SHA-256 field differs from the others'.
#[must_use]
pub fn routed_part(part: &FilePart) -> Option<RoutedPart> {
    part.sha256?;
    if part.total <= BIG_FILE {
        return None;
    }
    let end = part.offset.saturating_add(part.data.len() as u64);
    Some(RoutedPart {
        path: part.path.clone(),
        total: part.total,
        last: end >= part.total,
    })
}

/// Where to resume, given the receiver's answer (peer input): the answered offset when
/// it is inside the file, else 0 (a complete or impossible answer starts again). The
/// part a resume starts with must carry the identity, so it cannot be the last: one
/// byte short of the end starts again too.
#[must_use]
pub fn resume_offset(total: u64, answered: u64) -> u64 {
    if total.saturating_sub(answered) >= 2 {
        answered
    } else {
        0
    }
}

/// The length of the part at `offset` of a file of `total` bytes, in an attempt that
/// started at `start`: [`PART`] or what is left, except that a resumed attempt's first
/// part stops one byte short of the end (it carries the identity the receiver resumes
/// by; that byte then goes alone, with the whole file's SHA-256).
#[must_use]
pub fn part_len(total: u64, offset: u64, start: u64) -> usize {
    let left = total.saturating_sub(offset);
    let len = left.min(PART as u64);
    let shorten = offset == start && start > 0 && len == left;
    usize::try_from(if shorten { len - 1 } else { len }).unwrap_or(PART)
}

/// The SHA-256 field of a part: the file's identity (`id`, resumable files) on every
/// part but the last, nothing on them otherwise; the whole file's SHA-256 (`content`,
/// known once the last part is read) on the last.
#[must_use]
pub fn part_sha256(
    id: Option<[u8; 32]>,
    last: bool,
    content: impl FnOnce() -> [u8; 32],
) -> Option<[u8; 32]> {
    if last { Some(content()) } else { id }
}

/// The identity of a local file: a SHA-256 of what names this version of it (its path as the sender opened it, size, modification time in
/// nanoseconds, device and inode), the same for every attempt while the file is left
/// alone.
#[must_use]
pub fn file_identity(path: &str, total: u64, modified_ns: u128, dev: u64, ino: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"nkcluster file identity 1\0");
    h.update((path.len() as u64).to_le_bytes());
    h.update(path.as_bytes());
    h.update(total.to_le_bytes());
    h.update(modified_ns.to_le_bytes());
    h.update(dev.to_le_bytes());
    h.update(ino.to_le_bytes());
    h.finalize().into()
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
        let p = |big, carrier, ask_router| SendPlan {
            resumable: big,
            last_alone: big,
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
    fn a_resumed_attempt_never_starts_with_the_last_part() {
        let total = 3 * PART as u64 + 10;
        // From 0: whole parts, then the rest.
        assert_eq!(part_len(total, 0, 0), PART);
        assert_eq!(part_len(total, 3 * PART as u64, 0), 10);
        assert_eq!(part_len(5, 0, 0), 5);
        assert_eq!(part_len(0, 0, 0), 0);
        // Resumed in the middle: the same parts.
        let mid = PART as u64;
        assert_eq!(part_len(total, mid, mid), PART);
        assert_eq!(part_len(total, 3 * PART as u64, mid), 10);
        // Resumed inside the last part: it goes as two, the first with the identity.
        let late = 3 * PART as u64 + 4;
        assert_eq!(part_len(total, late, late), 5);
        assert_eq!(part_len(total, late + 5, late), 1);
        let short = 2 * PART as u64;
        assert_eq!(part_len(short + 5, short - 3, short - 3), 7);
        // Which hash each part carries.
        let content = || [2; 32];
        assert_eq!(part_sha256(Some([1; 32]), false, content), Some([1; 32]));
        assert_eq!(part_sha256(Some([1; 32]), true, content), Some([2; 32]));
        assert_eq!(part_sha256(None, false, content), None);
        assert_eq!(part_sha256(None, true, content), Some([2; 32]));
    }

    #[test]
    fn a_file_identity_changes_with_anything_that_names_the_version() {
        let base = file_identity("/a/b", 10, 5, 1, 2);
        assert_eq!(base, file_identity("/a/b", 10, 5, 1, 2));
        for other in [
            file_identity("/a/c", 10, 5, 1, 2),
            file_identity("/a/b", 11, 5, 1, 2),
            file_identity("/a/b", 10, 6, 1, 2),
            file_identity("/a/b", 10, 5, 3, 2),
            file_identity("/a/b", 10, 5, 1, 3),
        ] {
            assert_ne!(base, other);
        }
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
                total: big,
                last,
            })
        };
        assert_eq!(routed_part(&part(0, PART, big, Some([3; 32]))), r(false));
        // The last part carries the content hash: the same connection.
        assert_eq!(
            routed_part(&part(BIG_FILE, 10, big, Some([4; 32]))),
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
        assert_eq!(resume_offset(100, 98), 98);
        // Two bytes left at least: one part with the identity, the last with the hash.
        assert_eq!(resume_offset(100, 99), 0);
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
