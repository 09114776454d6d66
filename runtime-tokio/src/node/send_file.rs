//! Sending a file to a node (the original's `send_file` and `send_bigfile`): the core's
//! decisions ([`nkcluster_core::file_send`]: big or not, which link,
//! where to resume, part sizes, when to try again) performed here: reading and hashing
//! the file (on a blocking thread, a part ahead of the sending), asking the receiver
//! where a big file's transfer is at, dialing the exclusive connection, and sending the
//! parts with a window.

use super::*;
use nkcluster_core::cluster::FileQuery;
use nkcluster_core::file_send::wire::PartBody;
use nkcluster_core::file_send::{self, Carrier, ContentHash, ContentHasher, Retry};

/// Parts in flight at once.
const WINDOW: usize = 2;

/// Options of [`Node::send_file_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFileOptions {
    /// How long each part (and the offset query) may take.
    pub timeout: Duration,
    /// When a transfer that failed for a reason of the link is tried again.
    pub retry: Retry,
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendReport {
    /// The file's size.
    pub total: u64,
    /// The bytes of file data this call sent (every attempt), confirmed or not.
    pub sent: u64,
    /// The bytes of file data the last attempt sent.
    pub last_sent: u64,
    /// The offset the last attempt started from (a resume when not 0).
    pub resumed_from: u64,
    /// The last attempt went over an exclusive connection.
    pub exclusive: bool,
    /// Attempts made (1: no retry).
    pub attempts: u32,
}

/// The connection an attempt sends its parts over.
enum Carried {
    Main,
    Exclusive(cmdq::Sender<Command>),
}

impl<N: Net> Node<N> {
    /// Sends the local file `local` to `node`, where it appears at `remote` once whole and
    /// checked (BLAKE3 when this node holds `node`'s link and it speaks protocol 6 or
    /// later, SHA-256 otherwise: [`file_send::content_hash`]). Up to 4 KiB goes in one
    /// message; bigger files in 1 MiB parts, each its own request, so small messages on the link pass between them; big files
    /// (over [`file_send::BIG_FILE`]) go over an exclusive connection when possible and
    /// resume where an interrupted transfer stopped (see
    /// [`send_file_with`](Self::send_file_with)). A failure is returned at once (no
    /// retry; sending again resumes a big file). `progress(sent, total)` is called after
    /// each part. Returns the size.
    pub async fn send_file(
        &self,
        node: &str,
        local: &std::path::Path,
        remote: &str,
        timeout: Duration,
        progress: impl FnMut(u64, u64),
    ) -> Result<u64, RequestError> {
        let opts = SendFileOptions {
            timeout,
            retry: Retry::NONE,
        };
        self.send_file_with(node, local, remote, opts, progress)
            .await
            .map(|r| r.total)
    }

    /// [`send_file`](Self::send_file) with options, reporting what it did. A big file has
    /// an identity (a digest of the local file's path, size, modification time and
    /// inode, see [`file_send::file_identity`]); the receiver is asked how much of that
    /// file (path, size, identity) it holds from an interrupted transfer and the parts
    /// start there. The file is read once, hashed as it is read. It travels over
    /// an exclusive connection dialed by this node when this node holds `node`'s link
    /// and `node` listens (a failed dial falls back to the main link). A transfer that
    /// fails for a reason of the link is tried again as `opts.retry` says.
    /// `progress(confirmed, total)` is called after each part.
    pub async fn send_file_with(
        &self,
        node: &str,
        local: &std::path::Path,
        remote: &str,
        opts: SendFileOptions,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<SendReport, RequestError> {
        let io = |e: std::io::Error| {
            RequestError::Remote(RemoteError::new(
                ErrorCode::FileError,
                format!("{}: {e}", local.display()),
            ))
        };
        let total = tokio::fs::metadata(local).await.map_err(io)?.len();
        let listens = self
            .inner
            .view()
            .links()
            .first(node)
            .is_some_and(|l| !l.summary.listen.is_empty());
        let direct = self.inner.view().is_linked(node);
        let plan = file_send::plan(total, direct, listens);
        let identity = if plan.resumable {
            Some(file_identity(local, total).await.map_err(io)?)
        } else {
            None
        };
        let mut report = SendReport {
            total,
            ..SendReport::default()
        };
        loop {
            report.attempts += 1;
            let r = self
                .send_attempt(
                    node,
                    local,
                    remote,
                    opts.timeout,
                    plan,
                    identity,
                    &mut report,
                    &mut progress,
                )
                .await;
            let Err(e) = r else {
                return Ok(report);
            };
            let Some(delay) = opts.retry.after(report.attempts, e.code()) else {
                return Err(e);
            };
            warn!(node = %self.inner.config.node_id, to = %node, path = %remote, code = e.code(), attempt = report.attempts,
                  "a file transfer failed; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: the offset to start from, the carrier, then the parts.
    #[allow(clippy::too_many_arguments)]
    async fn send_attempt(
        &self,
        node: &str,
        local: &std::path::Path,
        remote: &str,
        timeout: Duration,
        plan: file_send::SendPlan,
        identity: Option<[u8; 32]>,
        report: &mut SendReport,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), RequestError> {
        let io = |e: std::io::Error| {
            RequestError::Remote(RemoteError::new(
                ErrorCode::FileError,
                format!("{}: {e}", local.display()),
            ))
        };
        let total = report.total;
        let mut offset = 0;
        if let Some(sha256) = identity {
            let q = JobCall::FileStatus(FileQuery {
                path: remote.to_owned(),
                total,
                sha256,
            });
            let answered: u64 = decode_reply(&self.job(node, &q, timeout).await?)?;
            offset = file_send::resume_offset(total, answered);
        }
        report.resumed_from = offset;
        report.last_sent = 0;
        let carried = match plan.carrier {
            Carrier::Exclusive => match self.open_exclusive(node, timeout).await {
                Some(tx) => Carried::Exclusive(tx),
                None => Carried::Main,
            },
            Carrier::Main => Carried::Main,
        };
        report.exclusive = matches!(carried, Carried::Exclusive(_));
        // The exclusive connection goes to the same node process as the main link: its
        // version is the main link's.
        let target_version = if plan.ask_router {
            None
        } else {
            self.inner
                .view()
                .links()
                .first(node)
                .map(|l| l.summary.version)
        };
        let hash = file_send::content_hash(target_version);
        if identity.is_some() {
            info!(node = %self.inner.config.node_id, to = %node, path = %remote, total, offset,
                  exclusive = report.exclusive, "sending a big file");
        }
        let mut parts = read_parts(
            local.to_path_buf(),
            remote.to_owned(),
            total,
            offset,
            identity,
            hash,
            self.inner.config.bulk_priority,
        );
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            let Some(part) = parts.recv().await else {
                return Err(io(std::io::Error::other("the file reader stopped")));
            };
            let ReadPart { body, len, last } = part.map_err(io)?;
            if last && plan.last_alone {
                while let Some((routed, upto)) = in_flight.pop_front() {
                    self.route_finish(node, routed, timeout).await?;
                    progress(upto, total);
                }
            }
            let routed = match &carried {
                Carried::Main => {
                    self.route_enqueue(node, CLASS_JOB, body, timeout, 0, plan.ask_router)
                }
                Carried::Exclusive(tx) => {
                    let (reply, rx) = crate::reply::channel();
                    let asked = self.inner.clock.now();
                    let cmd = Command::Request {
                        class: CLASS_JOB.into(),
                        body,
                        asked,
                        deadline: asked + timeout,
                        reply,
                    };
                    match tx.send(cmd).await {
                        Ok(()) => Routed::Direct(Ok(rx)),
                        Err(_) => Routed::Done(Err(RequestError::ConnectionFailed)),
                    }
                }
            };
            offset += len as u64;
            report.sent += len as u64;
            report.last_sent += len as u64;
            in_flight.push_back((routed, offset));
            while in_flight.len() >= WINDOW || (last && !in_flight.is_empty()) {
                let Some((routed, upto)) = in_flight.pop_front() else {
                    break;
                };
                self.route_finish(node, routed, timeout).await?;
                progress(upto, total);
            }
            if last {
                return Ok(());
            }
        }
    }

    /// A dedicated connection to `peer` for a file ([`Node::dial_exclusive`], room for
    /// the part window): its command channel, which closes the connection when dropped.
    /// `None` when none could be opened (logged).
    pub(super) async fn open_exclusive(
        &self,
        peer: &str,
        timeout: Duration,
    ) -> Option<cmdq::Sender<Command>> {
        let deadline = tokio::time::Instant::now() + timeout;
        match self.dial_exclusive(peer, deadline, WINDOW).await {
            super::routing::Exclusive::Open(tx) => Some(tx),
            _ => {
                warn!(node = %self.inner.config.node_id, to = %peer, "no exclusive connection: the main link carries the file");
                None
            }
        }
    }
}

/// A routed big file's dedicated connection is found by target, path and size.
pub(super) type FileLinkKey = (String, String, u64);

/// A routed big file's dedicated connection, as the control node routing it holds it.
pub(super) struct FileLink {
    /// Its parts go here, in arrival order (to the exclusive connection once dialed, or
    /// to the main link when none could be).
    tx: mpsc::Sender<Command>,
}

impl<N: Net> Inner<N> {
    /// A part routed `exclusive` through us to a node we hold: when it is a big file's
    /// ([`file_send::routed_part`]), it joins that file's dedicated connection (opened
    /// by its first part, closed after its last or an error, or dropped after
    /// [`file_send::ROUTED_IDLE`] without parts); anything else is given back.
    #[allow(clippy::result_large_err)]
    pub(super) fn route_file_part(
        self: &Arc<Self>,
        req: RouteRequest,
        responder: Responder,
    ) -> Result<(), (RouteRequest, Responder)> {
        let routed = match decode_reply::<JobCall>(&req.body) {
            Ok(JobCall::SendFile(part) | JobCall::SendFileBlake3(part)) => {
                file_send::routed_part(&part)
            }
            _ => None,
        };
        let Some(rp) = routed else {
            return Err((req, responder));
        };
        let timeout = Duration::from_millis(req.timeout_ms);
        let key: FileLinkKey = (req.node.clone(), rp.path, rp.total);
        let (reply, rx) = crate::reply::channel();
        let asked = self.clock.now();
        let cmd = Command::Request {
            class: req.class.into(),
            body: req.body,
            asked,
            deadline: asked + timeout,
            reply,
        };
        let tx = {
            let mut links = lock(&self.file_links);
            let l = links.entry(key.clone()).or_insert_with(|| FileLink {
                tx: self.open_file_link(&key, timeout),
            });
            let tx = l.tx.clone();
            if rp.last {
                links.remove(&key);
            }
            tx
        };
        // Queued now, synchronously: the parts keep their arrival order.
        let rx = tx.try_send(cmd).map(|()| rx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RequestError::TooManyPending,
            mpsc::error::TrySendError::Closed(_) => RequestError::ConnectionFailed,
        });
        let inner = self.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::spawn(async move {
            let r = wait_reply(rx, deadline).await;
            if r.is_err() {
                // The file's connection failed (or the part was refused): the sender's
                // next try starts a new one.
                let mut links = lock(&inner.file_links);
                if links.get(&key).is_some_and(|l| l.tx.same_channel(&tx)) {
                    links.remove(&key);
                }
            }
            drop(tx);
            responder.reply(r.map_err(|e| match e {
                RequestError::Remote(r) => r,
                e => RemoteError::new(e.code(), e.to_string()),
            }));
        });
        Ok(())
    }

    /// The channel of a routed big file's parts: a task dials the exclusive connection
    /// to `node` and forwards the parts to it in order, or to `node`'s main link when
    /// no exclusive connection could be made; it ends (closing the connection) once
    /// every sender of the channel is gone, or after [`file_send::ROUTED_IDLE`] without
    /// a part (the sender vanished mid-file: the file's entry is forgotten).
    fn open_file_link(
        self: &Arc<Self>,
        key: &FileLinkKey,
        timeout: Duration,
    ) -> mpsc::Sender<Command> {
        let (tx, mut rx) = mpsc::channel::<Command>(16);
        let own = tx.downgrade();
        let inner = self.clone();
        let key = key.clone();
        let node = key.0.clone();
        tokio::spawn(async move {
            let exclusive = Node::from_inner(inner.clone())
                .open_exclusive(&node, timeout)
                .await;
            if exclusive.is_some() {
                info!(node = %inner.config.node_id, to = %node, "a routed big file goes over an exclusive connection");
            }
            loop {
                let cmd = match tokio::time::timeout(file_send::ROUTED_IDLE, rx.recv()).await {
                    Ok(Some(cmd)) => cmd,
                    Ok(None) => break,
                    Err(_) => {
                        warn!(node = %inner.config.node_id, to = %node, path = %key.1,
                              "a routed big file sent nothing for a while: its connection closes");
                        let mut links = lock(&inner.file_links);
                        let ours = own.upgrade();
                        if links
                            .get(&key)
                            .is_some_and(|l| ours.is_some_and(|o| l.tx.same_channel(&o)))
                        {
                            links.remove(&key);
                        }
                        break;
                    }
                };
                let dest = match &exclusive {
                    Some(x) => Some(x.clone()),
                    None => inner.view().link_of(&node).cloned(),
                };
                // A part that cannot be passed on is dropped: its waiter sees
                // connection_failed.
                if let Some(dest) = dest {
                    let _ = dest.send(cmd).await;
                }
            }
        });
        tx
    }
}

/// A part read by [`read_parts`]: its request body, ready.
struct ReadPart {
    body: Bytes,
    /// Its bytes of file data.
    len: usize,
    last: bool,
}

/// Reads the parts of `local` (`total` bytes) from `start` on a thread of its own (below
/// the request path's CPU priority as `priority` says, see
/// [`as_bulk_thread`](super::part_files::as_bulk_thread)),
/// one ahead of the sender: each read straight into its request body (no copy), in
/// slices of [`BULK_SYSCALL`](super::part_files::BULK_SYSCALL) each hashed with `hash` as
/// read (a resumed attempt hashes the bytes before `start` first), sized and given its
/// digest field as [`file_send`] decides (`id`: the file's identity, resumable files).
/// The reading stops when the receiver is dropped.
fn read_parts(
    local: std::path::PathBuf,
    remote: String,
    total: u64,
    start: u64,
    id: Option<[u8; 32]>,
    hash: ContentHash,
    priority: nkcluster_core::bulk_priority::BulkPriority,
) -> mpsc::Receiver<std::io::Result<ReadPart>> {
    let (tx, rx) = mpsc::channel(1);
    let reader = std::thread::Builder::new().name("nk-file-reader".into());
    // A thread that fails to start drops `tx`: the sender sees the reader stop.
    let _ = reader.spawn(move || {
        super::part_files::as_bulk_thread(priority);
        use std::io::{Read, Seek};
        let run = || -> std::io::Result<()> {
            let mut f = std::fs::File::open(&local)?;
            let mut hasher = ContentHasher::new(hash);
            let slice = super::part_files::BULK_SYSCALL;
            let mut buf = vec![0u8; if start > 0 { slice } else { 0 }];
            let mut left = start;
            while left > 0 {
                let want = slice.min(usize::try_from(left).unwrap_or(slice));
                f.read_exact(&mut buf[..want])?;
                hasher.update(&buf[..want]);
                left -= want as u64;
                super::part_files::between_slices();
            }
            f.seek(std::io::SeekFrom::Start(start))?;
            let mut offset = start;
            loop {
                let len = file_send::part_len(total, offset, start);
                let mut part = PartBody::new(hash, &remote, offset, total, len);
                for slice in part.data_mut().chunks_mut(super::part_files::BULK_SYSCALL) {
                    f.read_exact(slice).map_err(|e| match e.kind() {
                        std::io::ErrorKind::UnexpectedEof => {
                            std::io::Error::other("the file shrank while it was being sent")
                        }
                        _ => e,
                    })?;
                    hasher.update(slice);
                    super::part_files::between_slices();
                }
                offset += len as u64;
                let last = offset >= total;
                let sha = file_send::part_sha256(id, last, || hasher.digest());
                let body = part.finish(sha);
                if tx.blocking_send(Ok(ReadPart { body, len, last })).is_err() || last {
                    return Ok(());
                }
            }
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// A file's identity ([`file_send::file_identity`] of its canonical path, size,
/// modification time, device and inode).
async fn file_identity(path: &std::path::Path, total: u64) -> std::io::Result<[u8; 32]> {
    let meta = tokio::fs::metadata(path).await?;
    let canonical = tokio::fs::canonicalize(path)
        .await
        .unwrap_or_else(|_| path.to_path_buf());
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Ok(file_send::file_identity(
        &canonical.display().to_string(),
        total,
        modified_ns,
        dev,
        ino,
    ))
}
