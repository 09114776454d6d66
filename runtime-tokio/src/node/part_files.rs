//! The receiver's `.part` files as the file writer thread holds them: each with its
//! running content hash (SHA-256 or BLAKE3, as its transfer's parts name), fed as the
//! bytes are written (here, on the writer thread, never in
//! the task that owns the node machine) and kept across a `Close` for a resume. It
//! performs the core receiver's [`FileOp`]s in order; what they mean, and every
//! decision (including whether a digest is the right one), is the core's
//! ([`nkcluster_core::transfers`]).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nkcluster_core::bulk_priority::{BulkPriority, ThreadStep};
use nkcluster_core::error::ErrorCode;
use nkcluster_core::file_send::{ContentHash, ContentHasher};
use nkcluster_core::message::RemoteError;
use nkcluster_core::transfers::FileOp;

/// One `.part` file.
struct PartFile {
    /// Open between parts; `None` while kept closed for a resume.
    file: Option<std::fs::File>,
    /// The content hash of the first `hashed` bytes.
    hash: ContentHasher,
    hashed: u64,
}

/// The `.part` files of the transfers open or kept, by path.
#[derive(Default)]
pub(super) struct PartFiles {
    by_tmp: HashMap<PathBuf, PartFile>,
}

fn io_error(p: &Path, e: std::io::Error) -> RemoteError {
    RemoteError::new(ErrorCode::FileError, format!("{}: {e}", p.display()))
}

impl PartFiles {
    /// Performs `ops` in order (`check_dir` vets a new file's directory); the digest a
    /// [`FileOp::Digest`] among them produced, for the core to judge.
    pub(super) fn perform(
        &mut self,
        ops: Vec<FileOp>,
        check_dir: impl Fn(&Path) -> Result<(), RemoteError>,
    ) -> Result<Option<[u8; 32]>, RemoteError> {
        let mut digest = None;
        for op in ops {
            match op {
                FileOp::Create { tmp, hash } => {
                    check_dir(&tmp)?;
                    let f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
                    self.by_tmp.insert(
                        tmp,
                        PartFile {
                            file: Some(f),
                            hash: ContentHasher::new(hash),
                            hashed: 0,
                        },
                    );
                }
                FileOp::Append { tmp, data } => {
                    let pf = self.open_mut(&tmp)?;
                    let Some(f) = pf.file.as_mut() else {
                        return Err(not_open(&tmp));
                    };
                    // In slices, each hashed right after it is written, while its
                    // bytes are still in the CPU's cache (see BULK_SYSCALL).
                    for slice in data.chunks(BULK_SYSCALL) {
                        f.write_all(slice).map_err(|e| io_error(&tmp, e))?;
                        pf.hash.update(slice);
                        between_slices();
                    }
                    pf.hashed += data.len() as u64;
                }
                FileOp::Digest { tmp } => {
                    let pf = self.open_mut(&tmp)?;
                    digest = Some(pf.hash.digest());
                }
                FileOp::Rename { tmp, to } => {
                    self.by_tmp.remove(&tmp);
                    std::fs::rename(&tmp, &to).map_err(|e| io_error(&to, e))?;
                }
                FileOp::Remove { tmp } => {
                    self.by_tmp.remove(&tmp);
                    let _ = std::fs::remove_file(&tmp);
                }
                FileOp::Close { tmp } => {
                    if let Some(pf) = self.by_tmp.get_mut(&tmp) {
                        pf.file = None;
                    }
                }
                FileOp::Reopen { tmp, len, hash } => {
                    let pf = reopen(&tmp, len, hash, self.by_tmp.remove(&tmp))?;
                    self.by_tmp.insert(tmp, pf);
                }
            }
        }
        Ok(digest)
    }

    fn open_mut(&mut self, tmp: &Path) -> Result<&mut PartFile, RemoteError> {
        self.by_tmp.get_mut(tmp).ok_or_else(|| not_open(tmp))
    }
}

fn not_open(tmp: &Path) -> RemoteError {
    io_error(tmp, std::io::Error::other("the part file is not open"))
}

/// The kept `tmp` opened again at `len` bytes (anything past them cut), with the hash
/// kept at its close when it is of kind `kind` and covers exactly those bytes, else one
/// of that kind computed from them.
fn reopen(
    tmp: &Path,
    len: u64,
    kind: ContentHash,
    kept: Option<PartFile>,
) -> Result<PartFile, RemoteError> {
    let io = |e| io_error(tmp, e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp)
        .map_err(io)?;
    let on_disk = f.metadata().map_err(io)?.len();
    if on_disk < len {
        return Err(io(std::io::Error::other(format!(
            "the kept part file has {on_disk} bytes, {len} expected"
        ))));
    }
    f.set_len(len).map_err(io)?;
    let hash = match kept {
        Some(k) if k.hashed == len && k.hash.kind() == kind => k.hash,
        _ => {
            let mut hash = ContentHasher::new(kind);
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut left = len;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
                let n = f.read(&mut buf[..want]).map_err(io)?;
                if n == 0 {
                    return Err(io(std::io::Error::other("the kept part file shrank")));
                }
                hash.update(&buf[..n]);
                left -= n as u64;
            }
            hash
        }
    };
    f.seek(SeekFrom::End(0)).map_err(io)?;
    Ok(PartFile {
        file: Some(f),
        hash,
        hashed: len,
    })
}

/// Most bytes a bulk thread reads or writes (and then hashes) at a time. A 1 MiB part
/// does not fit this CPU's L2 cache: written (or read) whole and then hashed, its bytes
/// came back from memory for the hash, and the kernel copied the whole megabyte in one
/// system call without giving the CPU up (a request-path thread woken on this CPU waited
/// ~0.3 ms behind a 1 MiB write into the page cache).
pub(super) const BULK_SYSCALL: usize = 128 * 1024;

/// What a bulk thread does after each slice of [`BULK_SYSCALL`] bytes it read or wrote
/// and hashed: it offers its CPU to any other thread that is ready to run there
/// (`sched_yield`; with none, the call returns at once).
///
/// Why: SCHED_IDLE (see [`as_bulk_thread`]) keeps a bulk thread off a CPU that a
/// request-path thread wants only when that thread *wakes*: the scheduler then preempts
/// the bulk thread at once. A runtime thread can also be woken while it is still going
/// to sleep (woken in `epoll_wait` before it blocked): it then stays queued, never
/// wakes, and Linux's EEVDF scheduler may pick the bulk thread before it and let it run
/// to the end of its slice or its next block. Seen with `perf sched` timelines of the
/// jobs bench's slowest small requests during a transfer: the worker thread switched
/// out still runnable, the file reader (or writer) running on for 650-800 µs (a whole
/// 1 MiB part, read or written and hashed) while the other CPU sat idle, then the
/// request answered within microseconds of the bulk thread's block. A yield after each
/// slice bounds that wait by one slice's work (~60-130 µs here); EEVDF's yield moves
/// the yielding thread's deadline a slice later, so a queued runtime thread goes first.
pub(super) fn between_slices() {
    std::thread::yield_now();
}

/// Puts the calling thread below the request path's CPU priority as the node's
/// `bulk_priority` setting says: for threads that do a file's bulk work (reading and
/// hashing a file being sent, writing and hashing one received). It performs the
/// setting's [`steps`](BulkPriority::steps), the first the system accepts.
///
/// Under `idle` (the default) the thread runs under Linux's SCHED_IDLE: it gets a CPU
/// that nothing else wants, and a request-path thread (the link drivers, the node
/// machine's task) that wakes up takes a CPU from it at once. That is what keeps a small
/// message from waiting behind a file: the scheduler counts a CPU running only
/// SCHED_IDLE threads as free when it places a waking thread, and such a thread is
/// preempted by any other at its wake-up. Under `low` (nice 10, the only behaviour
/// before 2026-12-04), a waking runtime thread found both CPUs of a 2-core machine busy
/// (one with a bulk thread) and queued behind the other runtime thread for up to a
/// scheduler tick: small-request p99 during a quick `send_file` in the jobs bench 12-20x
/// its idle p99, 1.4-3.1x under SCHED_IDLE (README, Benchmarks). The price of `idle`: on
/// a CPU that other threads keep busy, a file's bulk work gets only SCHED_IDLE's minimum
/// share (about 0.3% of that CPU beside one busy default thread), so a transfer to or
/// from a node whose CPUs are saturated slows down to what is left; `low` keeps it about
/// a tenth of a busy CPU. An idle CPU runs the bulk work at full speed under either.
/// Elsewhere than Linux nothing changes.
pub(super) fn as_bulk_thread(priority: BulkPriority) {
    for step in priority.steps() {
        if apply(*step) {
            return;
        }
    }
}

/// Performs `step` on the calling thread; whether the system accepted it.
#[cfg(target_os = "linux")]
fn apply(step: ThreadStep) -> bool {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    match step {
        ThreadStep::SchedIdle => set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .is_ok(),
        // `None`: the calling thread (Linux's PRIO_PROCESS with 0 names the caller's
        // thread, not the whole process).
        ThreadStep::Nice(n) => rustix::process::setpriority_process(None, n).is_ok(),
    }
}

#[cfg(not(target_os = "linux"))]
fn apply(_: ThreadStep) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sha(b: &[u8]) -> [u8; 32] {
        ContentHasher::digest_of(ContentHash::Sha256, b)
    }

    fn blake3(b: &[u8]) -> [u8; 32] {
        ContentHasher::digest_of(ContentHash::Blake3, b)
    }

    /// A thread started under `priority`: its scheduling policy and nice level.
    #[cfg(target_os = "linux")]
    fn bulk_thread_under(priority: BulkPriority) -> (thread_priority::ThreadSchedulePolicy, i32) {
        std::thread::spawn(move || {
            as_bulk_thread(priority);
            scheduling_of_this_thread()
        })
        .join()
        .expect("bulk thread")
    }

    #[cfg(target_os = "linux")]
    fn scheduling_of_this_thread() -> (thread_priority::ThreadSchedulePolicy, i32) {
        let policy = thread_priority::thread_schedule_policy().expect("policy");
        let nice = rustix::process::getpriority_process(None).expect("nice");
        (policy, nice)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bulk_thread_runs_under_its_setting_s_policy_and_others_are_untouched() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let other = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        let before = scheduling_of_this_thread();
        assert_eq!(before.0, other, "the test runs under the default policy");
        assert!(before.1 < 10, "the test runs below nice 10: {}", before.1);
        assert_eq!(bulk_thread_under(BulkPriority::Idle).0, idle);
        assert_eq!(bulk_thread_under(BulkPriority::Low), (other, 10));
        assert_eq!(bulk_thread_under(BulkPriority::Normal), before);
        // The spawning thread keeps its own (both are per thread).
        assert_eq!(scheduling_of_this_thread(), before);
    }

    #[test]
    fn appends_are_hashed_as_written_and_a_reopen_takes_the_hash_up_at_its_length() {
        let dir = std::env::temp_dir().join(format!("nk-part-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tmp = dir.join("x.part");
        let ok = |_: &Path| Ok(());
        let append = |d: &'static [u8]| FileOp::Append {
            tmp: tmp.clone(),
            data: Bytes::from_static(d),
        };
        let digest = FileOp::Digest { tmp: tmp.clone() };
        let mut p = PartFiles::default();
        let ops = vec![
            FileOp::Create {
                tmp: tmp.clone(),
                hash: ContentHash::Sha256,
            },
            append(b"abc"),
        ];
        assert_eq!(p.perform(ops, ok), Ok(None));
        // Kept closed, reopened at its length: the kept hash goes on.
        let close = FileOp::Close { tmp: tmp.clone() };
        let reopen_as = |len, hash| FileOp::Reopen {
            tmp: tmp.clone(),
            len,
            hash,
        };
        let reopen = |len| reopen_as(len, ContentHash::Sha256);
        assert_eq!(p.perform(vec![close.clone(), reopen(3)], ok), Ok(None));
        let ops = vec![append(b"def"), digest.clone()];
        assert_eq!(p.perform(ops, ok), Ok(Some(sha(b"abcdef"))));
        // Reopened shorter than what was hashed: the hash is computed from the file.
        let ops = vec![close.clone(), reopen(2), append(b"Z"), digest.clone()];
        assert_eq!(p.perform(ops, ok), Ok(Some(sha(b"abZ"))));
        assert_eq!(std::fs::read(&tmp).expect("read"), b"abZ");
        // Reopened at its length with the other hash (a resume by another sender
        // version, kept closed or still open): hashed again from the file in that one.
        let ops = vec![
            close,
            reopen_as(3, ContentHash::Blake3),
            append(b"!"),
            digest.clone(),
        ];
        assert_eq!(p.perform(ops, ok), Ok(Some(blake3(b"abZ!"))));
        let ops = vec![reopen(4), append(b"?"), digest.clone()];
        assert_eq!(p.perform(ops, ok), Ok(Some(sha(b"abZ!?"))));
        // Renamed: forgotten; a digest of it now is an error.
        let to = dir.join("x");
        let ops = vec![FileOp::Rename {
            tmp: tmp.clone(),
            to: to.clone(),
        }];
        assert_eq!(p.perform(ops, ok), Ok(None));
        assert!(p.perform(vec![digest], ok).is_err());
        assert!(p.perform(vec![reopen(1)], ok).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
