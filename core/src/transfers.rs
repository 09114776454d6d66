//! The file-transfer receiver: a file arrives as parts (offset, whole size, bytes; the
//! SHA-256 of the whole file with the last part) and is written to `<path>.part`, checked,
//! then renamed into place. This machine decides everything (where the file may land,
//! whether a part is the expected one, when the file is complete and intact, how many
//! transfers may be open, when an abandoned one expires) and emits [`FileOp`]s; the shell
//! performs them in order and reports an I/O failure back with
//! [`Transfers::handle_io_error`].
//!
//! Hashing is the shell's work, done as it writes (on its file writer thread, never
//! inside the task that owns this machine: a 1 MiB part costs about 0.5 ms of SHA-256).
//! The shell keeps a running SHA-256 per `.part` file: [`FileOp::Create`] starts it,
//! [`FileOp::Append`] feeds it, [`FileOp::Close`] keeps it for a resume,
//! [`FileOp::Reopen`] takes it up again at the confirmed length, [`FileOp::Remove`] and
//! [`FileOp::Rename`] drop it. When the last byte is written the part's outcome is
//! [`Received::Checking`] and its ops end with [`FileOp::Digest`]: the shell reports the
//! digest with [`Transfers::handle_digest`], and this machine compares it with the one
//! the sender sent and decides (rename into place, or remove and refuse).
//!
//! A transfer belongs to the peer whose link sent its first part: a part of it from
//! anyone else is refused ([`TransferError::Busy`]), and when that peer's last link
//! closes ([`Transfers::handle_link_closed`]) its transfers end (`.part` files removed,
//! slots freed). A transfer that receives nothing for `idle_expiry` ends too (a routed
//! transfer, whose link here is the routing control node's, ends this way when its
//! sender stops).
//!
//! ```
//! use std::path::Path;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use nkcluster_core::Instant;
//! use nkcluster_core::file_send::ContentHash;
//! use nkcluster_core::transfers::{FileOp, Part, Received, Transfers, TransfersConfig};
//! use sha2::Digest;
//! let mut t = Transfers::new(Path::new("/srv/files"), TransfersConfig::default());
//! let data = Bytes::from_static(b"hello");
//! let part = Part { path: "a.txt", offset: 0, total: 5, data: data.clone(),
//!                   sha256: Some(sha2::Sha256::digest(&data).into()),
//!                   hash: ContentHash::Sha256 };
//! let out = t.handle_part(Instant::ZERO, "c1", part);
//! assert_eq!(out.result, Ok(Received::Checking));
//! assert_eq!(out.ops.len(), 3); // create a.txt.part, append, digest
//! // The shell reports the digest of what it wrote; the machine decides.
//! let out = t.handle_digest("a.txt", sha2::Sha256::digest(&data).into());
//! assert_eq!(out.result, Ok(Received::File { path: "/srv/files/a.txt".into(), bytes: 5 }));
//! assert_eq!(out.ops.len(), 1); // rename
//! ```
//!
//! Resuming (big files, see [`kept`]): a sender that knows the whole file's SHA-256 up
//! front puts it on EVERY part (a receiver that predates this ignores it before the last
//! part). That hash, with the path and the size, identifies the transfer: when it is
//! abandoned (idle expiry here, or [`Transfers::release`] when its link closes) its
//! `.part` file is kept instead of deleted (the shell keeps its running hash), [`Transfers::status`] answers
//! the confirmed offset to a sender asking with the same identity, and the part at that
//! offset reopens it, whichever link it comes over (the resuming link takes it over).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::file_send::ContentHash;
use crate::files::{ForbiddenPath, resolve_under};
use crate::time::Instant;

pub mod kept;
pub use kept::ResumeConfig;
use kept::{Kept, Parked};

/// Limits of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransfersConfig {
    /// Transfers open at once (each holds an open `.part` file in the shell).
    pub max_open: usize,
    /// A transfer that received nothing for this long is abandoned: its `.part` file is
    /// removed and its slot freed.
    pub idle_expiry: Duration,
}

impl Default for TransfersConfig {
    fn default() -> Self {
        TransfersConfig {
            max_open: 64,
            idle_expiry: Duration::from_secs(60),
        }
    }
}

/// One part as a peer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Destination, as the peer wrote it (resolved below the files directory).
    pub path: &'a str,
    /// Offset of `data` in the file.
    pub offset: u64,
    /// Whole file size.
    pub total: u64,
    /// The bytes.
    pub data: Bytes,
    /// The whole file's digest (of `hash`), on the last part; a big file's identity on
    /// the others (for resuming).
    pub sha256: Option<[u8; 32]>,
    /// The content hash the sender's request named.
    pub hash: ContentHash,
}

/// A file-system operation for the shell, performed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create (or truncate) `tmp`, making its directories, and start its running
    /// hash of kind `hash` afresh; refuse it (report an I/O error) when its directory
    /// leads out of the files directory through a link.
    Create {
        /// The `.part` file.
        tmp: PathBuf,
        /// The content hash of its transfer.
        hash: ContentHash,
    },
    /// Append `data` to `tmp` (and feed it to `tmp`'s running hash).
    Append {
        /// The `.part` file.
        tmp: PathBuf,
        /// The bytes.
        data: Bytes,
    },
    /// Close `tmp` and rename it to `to`.
    Rename {
        /// The `.part` file.
        tmp: PathBuf,
        /// The final path.
        to: PathBuf,
    },
    /// Close and delete `tmp` (a failed or abandoned transfer).
    Remove {
        /// The `.part` file.
        tmp: PathBuf,
    },
    /// Close `tmp` and keep it on disk with its running hash (an interrupted transfer
    /// kept for resuming).
    Close {
        /// The `.part` file.
        tmp: PathBuf,
    },
    /// Open the kept (or open) `tmp` again for appending at `len` (truncating anything
    /// past it), its running hash of kind `hash` that of its first `len` bytes (the one
    /// kept, when of that kind and length, else computed from the file); an I/O error
    /// when it is gone or shorter. Also sent for an open transfer whose next part names
    /// another hash than the ones before (a new attempt by another sender version).
    Reopen {
        /// The `.part` file.
        tmp: PathBuf,
        /// Its confirmed length.
        len: u64,
        /// The content hash from here on.
        hash: ContentHash,
    },
    /// Finish `tmp`'s running hash (every byte is written) and report it with
    /// [`Transfers::handle_digest`]; `tmp` stays open until that decides.
    Digest {
        /// The `.part` file.
        tmp: PathBuf,
    },
}

/// What a part achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The part was taken; more are expected.
    Part,
    /// The part was taken and was the last: the ops end with a [`FileOp::Digest`]
    /// whose result goes to [`Transfers::handle_digest`], which decides.
    Checking,
    /// The file is whole, intact and in place (once the ops are performed).
    File {
        /// Where it landed.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
}

/// Why a part was refused. After `BadOffset` and `ChecksumMismatch` the transfer is over
/// (its `.part` file is removed); after the others no transfer state changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// The path is outside the files directory.
    #[error(transparent)]
    Forbidden(#[from] ForbiddenPath),
    /// Another peer is sending that file.
    #[error("transfer_busy: {path} is being received from another peer")]
    Busy {
        /// The path as sent.
        path: String,
    },
    /// Too many transfers are open.
    #[error("too_many_transfers: at most {max} files are received at once")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The part is not the one expected (or runs past the announced size).
    #[error("bad_offset: {path}: part at {got} (expected {expected})")]
    BadOffset {
        /// The path as sent.
        path: String,
        /// The part's offset.
        got: u64,
        /// The offset expected (0 when no transfer is open).
        expected: u64,
    },
    /// The whole file's SHA-256 differs from the one sent.
    #[error("checksum_mismatch: {path}: SHA-256 of the received bytes differs")]
    ChecksumMismatch {
        /// The path as sent.
        path: String,
    },
    /// A digest came for a transfer that is not waiting for one (it ended in between:
    /// its link closed, it was restarted or it failed).
    #[error("transfer_ended: {path}: the transfer ended before its check")]
    Ended {
        /// The path as sent.
        path: String,
    },
}

impl TransferError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::Forbidden(e) => e.code(),
            TransferError::TooMany { .. } => "too_many_transfers",
            TransferError::Busy { .. } => "transfer_busy",
            TransferError::BadOffset { .. } => "bad_offset",
            TransferError::ChecksumMismatch { .. } => "checksum_mismatch",
            TransferError::Ended { .. } => "transfer_ended",
        }
    }
}

/// The ops to perform (even when the part was refused: cleanup) and the part's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PartOutcome {
    /// Performed in order before answering.
    pub ops: Vec<FileOp>,
    /// The answer to the sender.
    pub result: Result<Received, TransferError>,
}

#[derive(Debug)]
struct Open {
    /// The peer whose link sent the first part.
    owner: String,
    next: u64,
    total: u64,
    last_activity: Instant,
    /// The whole file's SHA-256 sent with the first part (resumable when set).
    id: Option<[u8; 32]>,
    /// The content hash the `.part` file is being hashed with (that of the parts).
    hash: ContentHash,
    /// Every byte is written: the digest the last part carried, which the shell's
    /// digest must equal.
    checking: Option<[u8; 32]>,
}

/// The transfers being received by one node.
#[derive(Debug)]
pub struct Transfers {
    root: PathBuf,
    config: TransfersConfig,
    /// By final path.
    open: BTreeMap<PathBuf, Open>,
    /// Interrupted transfers kept for resuming.
    kept: Kept,
}

fn part_file(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

impl Transfers {
    /// A receiver writing below `root` (absolute, normalised).
    pub fn new(root: &Path, config: TransfersConfig) -> Self {
        Transfers {
            root: root.to_path_buf(),
            config,
            open: BTreeMap::new(),
            kept: Kept::default(),
        }
    }

    /// Sets the limits of the interrupted transfers kept for resuming (default
    /// [`ResumeConfig::default`]).
    pub fn set_resume(&mut self, config: ResumeConfig) {
        self.kept.config = config;
    }

    /// Interrupted transfers kept for resuming now.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// Where the transfer to `path` of `total` bytes with the whole-file SHA-256
    /// `sha256` is at: the bytes confirmed (written) so far, in an open transfer or a
    /// kept one, 0 when there is none (the sender starts from the beginning).
    pub fn status(
        &mut self,
        now: Instant,
        path: &str,
        total: u64,
        sha256: &[u8; 32],
    ) -> Result<(u64, Vec<FileOp>), TransferError> {
        let ops = self.expire(now);
        let target = resolve_under(&self.root, path)?;
        let offset = match self.open.get(&target) {
            Some(t) if t.total == total && t.id.as_ref() == Some(sha256) => t.next,
            Some(_) => 0,
            None => self.kept.offset(&target, total, sha256).unwrap_or(0),
        };
        Ok((offset, ops))
    }

    /// Ends the open transfer to `target` (its link closed, or it was abandoned): kept
    /// for resuming when it has an identity (its `.part` file closed), otherwise its
    /// `.part` file is removed. The link-ownership code calls this for each transfer of
    /// a closed link.
    pub fn release(&mut self, now: Instant, target: &Path) -> Vec<FileOp> {
        let Some(t) = self.open.remove(target) else {
            return Vec::new();
        };
        match t.id {
            // A complete one waiting for its check is not worth keeping.
            Some(id) if t.next > 0 && t.checking.is_none() => self.kept.park(
                target.to_path_buf(),
                Parked {
                    next: t.next,
                    total: t.total,
                    id,
                    since: now,
                },
            ),
            _ => vec![FileOp::Remove {
                tmp: part_file(target),
            }],
        }
    }

    /// Transfers open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// One part from peer `from`. Abandoned transfers (idle past `idle_expiry`) expire
    /// first.
    pub fn handle_part(&mut self, now: Instant, from: &str, part: Part<'_>) -> PartOutcome {
        let mut ops = self.expire(now);
        let result = self.take(now, from, &part, &mut ops);
        PartOutcome { ops, result }
    }

    /// Every link with `peer` closed: its transfers end ([`release`](Self::release)d:
    /// a big file's is kept for resuming, its `.part` file closed; the others' `.part`
    /// files are removed).
    pub fn handle_link_closed(&mut self, now: Instant, peer: &str) -> Vec<FileOp> {
        let theirs: Vec<PathBuf> = self
            .open
            .iter()
            .filter(|(_, t)| t.owner == peer)
            .map(|(p, _)| p.clone())
            .collect();
        theirs
            .into_iter()
            .flat_map(|p| self.release(now, &p))
            .collect()
    }

    fn take(
        &mut self,
        now: Instant,
        from: &str,
        part: &Part<'_>,
        ops: &mut Vec<FileOp>,
    ) -> Result<Received, TransferError> {
        let target = resolve_under(&self.root, part.path)?;
        let tmp = part_file(&target);
        if self.open.get(&target).is_some_and(|t| t.owner != from) {
            return Err(TransferError::Busy {
                path: part.path.to_owned(),
            });
        }
        if part.offset == 0 {
            if !self.open.contains_key(&target) && self.open.len() >= self.config.max_open {
                return Err(TransferError::TooMany {
                    max: self.config.max_open,
                });
            }
            // A restart of the same file replaces the one in progress (or kept).
            self.kept.forget(&target);
            ops.push(FileOp::Create {
                tmp: tmp.clone(),
                hash: part.hash,
            });
            self.open.insert(
                target.clone(),
                Open {
                    owner: from.to_owned(),
                    next: 0,
                    total: part.total,
                    last_activity: now,
                    id: part.sha256,
                    hash: part.hash,
                    checking: None,
                },
            );
        } else if !self.open.contains_key(&target) {
            self.resume(now, from, &target, part, ops)?;
        }
        let Some(t) = self.open.get_mut(&target) else {
            return Err(TransferError::BadOffset {
                path: part.path.to_owned(),
                got: part.offset,
                expected: 0,
            });
        };
        let end = part.offset.saturating_add(part.data.len() as u64);
        if part.offset != t.next || end > t.total || part.total != t.total || t.checking.is_some() {
            let expected = t.next;
            self.open.remove(&target);
            ops.push(FileOp::Remove { tmp });
            return Err(TransferError::BadOffset {
                path: part.path.to_owned(),
                got: part.offset,
                expected,
            });
        }
        if t.hash != part.hash {
            // A new attempt that hashes otherwise: the bytes so far are hashed again.
            t.hash = part.hash;
            ops.push(FileOp::Reopen {
                tmp: tmp.clone(),
                len: t.next,
                hash: part.hash,
            });
        }
        t.next = end;
        t.last_activity = now;
        if !part.data.is_empty() {
            ops.push(FileOp::Append {
                tmp: tmp.clone(),
                data: part.data.clone(),
            });
        }
        if t.next < t.total {
            return Ok(Received::Part);
        }
        let Some(expected) = part.sha256 else {
            // Nothing to compare with: no digest can pass.
            self.open.remove(&target);
            ops.push(FileOp::Remove { tmp });
            return Err(TransferError::ChecksumMismatch {
                path: part.path.to_owned(),
            });
        };
        t.checking = Some(expected);
        ops.push(FileOp::Digest { tmp });
        Ok(Received::Checking)
    }

    /// The shell's SHA-256 of everything written for the transfer to `path` (as sent),
    /// after a [`FileOp::Digest`]: equal to the one the sender sent, the `.part` file is
    /// renamed into place; otherwise it is removed and the transfer refused. Either way
    /// the transfer is over. A transfer not waiting for a digest is left alone
    /// ([`TransferError::Ended`], no ops).
    pub fn handle_digest(&mut self, path: &str, digest: [u8; 32]) -> PartOutcome {
        let ended = || PartOutcome {
            ops: Vec::new(),
            result: Err(TransferError::Ended {
                path: path.to_owned(),
            }),
        };
        let Ok(target) = resolve_under(&self.root, path) else {
            return ended();
        };
        let Some(expected) = self.open.get(&target).and_then(|t| t.checking) else {
            return ended();
        };
        let Some(t) = self.open.remove(&target) else {
            return ended();
        };
        let tmp = part_file(&target);
        if digest != expected {
            return PartOutcome {
                ops: vec![FileOp::Remove { tmp }],
                result: Err(TransferError::ChecksumMismatch {
                    path: path.to_owned(),
                }),
            };
        }
        PartOutcome {
            ops: vec![FileOp::Rename {
                tmp,
                to: target.clone(),
            }],
            result: Ok(Received::File {
                path: target,
                bytes: t.total,
            }),
        }
    }

    /// A part past 0 for a file with no open transfer: reopens the kept one it
    /// continues, if any (otherwise the caller refuses it as out of order).
    fn resume(
        &mut self,
        now: Instant,
        from: &str,
        target: &Path,
        part: &Part<'_>,
        ops: &mut Vec<FileOp>,
    ) -> Result<(), TransferError> {
        if self
            .kept
            .offset(target, part.total, &part.sha256.unwrap_or_default())
            != Some(part.offset)
        {
            return Ok(());
        }
        if self.open.len() >= self.config.max_open {
            return Err(TransferError::TooMany {
                max: self.config.max_open,
            });
        }
        let Some(p) = self.kept.take(target, part.offset, part.total, part.sha256) else {
            return Ok(());
        };
        ops.push(FileOp::Reopen {
            tmp: part_file(target),
            len: p.next,
            hash: part.hash,
        });
        self.open.insert(
            target.to_path_buf(),
            Open {
                owner: from.to_owned(),
                next: p.next,
                total: p.total,
                last_activity: now,
                id: Some(p.id),
                hash: part.hash,
                checking: None,
            },
        );
        Ok(())
    }

    /// Performing an op for the transfer to `path` (as sent) failed: the transfer is
    /// over; remove its `.part` file.
    pub fn handle_io_error(&mut self, path: &str) -> Vec<FileOp> {
        let Ok(target) = resolve_under(&self.root, path) else {
            return Vec::new();
        };
        if self.kept.forget(&target) {
            return vec![FileOp::Remove {
                tmp: part_file(&target),
            }];
        }
        match self.open.remove(&target) {
            Some(_) => vec![FileOp::Remove {
                tmp: part_file(&target),
            }],
            None => Vec::new(),
        }
    }

    /// Expires abandoned transfers: the ops removing their `.part` files.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<FileOp> {
        self.expire(now)
    }

    /// When the next transfer would expire.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|t| t.last_activity + self.config.idle_expiry)
            .chain(self.kept.next_expiry())
            .min()
    }

    fn expire(&mut self, now: Instant) -> Vec<FileOp> {
        let limit = self.config.idle_expiry;
        let stale: Vec<PathBuf> = self
            .open
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_activity) >= limit)
            .map(|(p, _)| p.clone())
            .collect();
        let mut ops = self.kept.expire(now);
        for p in stale {
            ops.extend(self.release(now, &p));
        }
        ops
    }
}

#[cfg(test)]
mod resume_tests;

#[cfg(test)]
mod tests;
