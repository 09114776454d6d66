//! Interrupted transfers kept for resuming (issue 13, big files): a transfer whose parts
//! carry the whole file's SHA-256 from the first part on (its identity, known to the
//! sender up front) is not deleted when it is abandoned (idle past the receiver's
//! `idle_expiry`, or released when its link closes, see [`Transfers::release`]). Its
//! `.part` file is closed and kept (the shell keeps its running hash, see
//! [`FileOp::Close`]) with the confirmed offset, keyed by its final path; a sender that asks
//! [`Transfers::status`] with the same path, size and SHA-256 learns that offset, and a
//! part at exactly that offset reopens it ([`FileOp::Reopen`]). A transfer without an
//! identity (small files, older senders) is removed as before.
//!
//! Bounded: at most [`ResumeConfig::keep_max`] files and [`ResumeConfig::keep_bytes`]
//! bytes are kept (the oldest go first), each for [`ResumeConfig::keep_for`]. The state
//! lives in memory: a receiver that restarts forgets it (the sender then starts again
//! from 0, and the fresh `Create` truncates the stale `.part` file).
//!
//! [`Transfers::release`]: super::Transfers::release
//! [`Transfers::status`]: super::Transfers::status
//! [`FileOp::Reopen`]: super::FileOp::Reopen
//! [`FileOp::Close`]: super::FileOp::Close

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FileOp, part_file};
use crate::time::Instant;

/// Limits of the interrupted transfers kept for resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeConfig {
    /// Interrupted transfers kept at once.
    pub keep_max: usize,
    /// Bytes of kept `.part` files at most.
    pub keep_bytes: u64,
    /// How long one is kept.
    pub keep_for: Duration,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig {
            keep_max: 8,
            keep_bytes: 8 * 1024 * 1024 * 1024,
            keep_for: Duration::from_secs(3600),
        }
    }
}

/// One interrupted transfer: what resuming it needs.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) next: u64,
    pub(super) total: u64,
    pub(super) id: [u8; 32],
    pub(super) since: Instant,
}

/// The interrupted transfers kept, by final path.
#[derive(Debug, Default)]
pub(super) struct Kept {
    pub(super) config: ResumeConfig,
    by_path: BTreeMap<PathBuf, Parked>,
}

impl Kept {
    /// Keeps `p` for `target` (its `.part` file is closed), evicting the oldest beyond
    /// the bounds.
    pub(super) fn park(&mut self, target: PathBuf, p: Parked) -> Vec<FileOp> {
        let mut ops = vec![FileOp::Close {
            tmp: part_file(&target),
        }];
        self.by_path.insert(target, p);
        loop {
            let bytes: u64 = self.by_path.values().map(|p| p.next).sum();
            if self.by_path.len() <= self.config.keep_max && bytes <= self.config.keep_bytes {
                return ops;
            }
            let Some(oldest) = self
                .by_path
                .iter()
                .min_by_key(|(path, p)| (p.since, (*path).clone()))
                .map(|(path, _)| path.clone())
            else {
                return ops;
            };
            self.by_path.remove(&oldest);
            ops.push(FileOp::Remove {
                tmp: part_file(&oldest),
            });
        }
    }

    /// The confirmed offset of the kept transfer to `target` with this size and identity.
    pub(super) fn offset(&self, target: &Path, total: u64, id: &[u8; 32]) -> Option<u64> {
        self.by_path
            .get(target)
            .filter(|p| p.total == total && &p.id == id)
            .map(|p| p.next)
    }

    /// Takes the kept transfer a part at `offset` resumes (same size, same identity,
    /// exactly at the confirmed offset).
    pub(super) fn take(
        &mut self,
        target: &Path,
        offset: u64,
        total: u64,
        id: Option<[u8; 32]>,
    ) -> Option<Parked> {
        let id = id?;
        let p = self.by_path.get(target)?;
        if p.total != total || p.id != id || p.next != offset {
            return None;
        }
        self.by_path.remove(target)
    }

    /// Forgets the kept transfer to `target` (a fresh start or an I/O failure replaces
    /// it); true when there was one.
    pub(super) fn forget(&mut self, target: &Path) -> bool {
        self.by_path.remove(target).is_some()
    }

    /// Removes those kept past `keep_for`.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<FileOp> {
        let limit = self.config.keep_for;
        let stale: Vec<PathBuf> = self
            .by_path
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= limit)
            .map(|(path, _)| path.clone())
            .collect();
        stale
            .into_iter()
            .map(|path| {
                self.by_path.remove(&path);
                FileOp::Remove {
                    tmp: part_file(&path),
                }
            })
            .collect()
    }

    /// When the next one expires.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.by_path
            .values()
            .map(|p| p.since + self.config.keep_for)
            .min()
    }

    /// How many are kept.
    pub(super) fn len(&self) -> usize {
        self.by_path.len()
    }
}
