//! Sending a file to a node (the original's `send_file` and `send_bigfile`): the core's
//! decisions ([`nkcluster_core::file_send`]: big or not, which link, where to resume,
//! when to try again) performed here: reading and hashing the file, asking the
//! receiver where a big file's transfer is at, dialing the exclusive connection, and
//! sending the parts with a window.

use super::*;
use nkcluster_core::cluster::FileQuery;
use nkcluster_core::file_send::wire::PartBody;
use nkcluster_core::file_send::{self, Carrier, PART, Retry};

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
    /// checked (SHA-256). Up to 4 KiB goes in one message; bigger files in 1 MiB parts,
    /// each its own request, so small messages on the link pass between them; big files
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

    /// [`send_file`](Self::send_file) with options, reporting what it did. A big file is
    /// hashed first; the receiver is asked how much of that file (path, size, SHA-256)
    /// it holds from an interrupted transfer and the parts start there. It travels over
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
            Some(hash_file(local).await.map_err(io)?)
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
        use sha2::Digest;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
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
        if identity.is_some() {
            info!(node = %self.inner.config.node_id, to = %node, path = %remote, total, offset,
                  exclusive = report.exclusive, "sending a big file");
        }
        let mut f = tokio::fs::File::open(local).await.map_err(io)?;
        f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
        // Without an identity the hash is computed as the parts go (from 0) and travels
        // with the last one; with it, it travels on every part.
        let mut hash = sha2::Sha256::new();
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            // The part's bytes are read straight into its request body (no copy).
            let want = PART.min(usize::try_from(total - offset).unwrap_or(PART));
            let mut part = PartBody::new(remote, offset, total, want);
            let mut filled = 0;
            while filled < want {
                let n = f.read(&mut part.data_mut()[filled..]).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled < want {
                return Err(io(std::io::Error::other(
                    "the file shrank while it was being sent",
                )));
            }
            let last = offset + filled as u64 >= total;
            if identity.is_none() {
                hash.update(part.data());
            }
            let body =
                part.finish(identity.or_else(|| last.then(|| hash.clone().finalize().into())));
            let routed = match &carried {
                Carried::Main => {
                    self.route_enqueue(node, CLASS_JOB, body, timeout, 0, plan.ask_router)
                }
                Carried::Exclusive(tx) => {
                    let (reply, rx) = oneshot::channel();
                    let cmd = Command::Request {
                        class: CLASS_JOB.to_owned(),
                        body,
                        deadline: self.inner.clock.now() + timeout,
                        reply,
                    };
                    match tx.send(cmd).await {
                        Ok(()) => Routed::Direct(Ok(rx)),
                        Err(_) => Routed::Done(Err(RequestError::ConnectionFailed)),
                    }
                }
            };
            offset += filled as u64;
            report.sent += filled as u64;
            report.last_sent += filled as u64;
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

/// A routed big file's dedicated connection is found by target, path and SHA-256.
pub(super) type FileLinkKey = (String, String, [u8; 32]);

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
            Ok(JobCall::SendFile(part)) => file_send::routed_part(&part),
            _ => None,
        };
        let Some(rp) = routed else {
            return Err((req, responder));
        };
        let timeout = Duration::from_millis(req.timeout_ms);
        let key: FileLinkKey = (req.node.clone(), rp.path, rp.sha256);
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Request {
            class: req.class,
            body: req.body,
            deadline: self.clock.now() + timeout,
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

/// The SHA-256 of a whole file (on the blocking pool).
async fn hash_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut hash = sha2::Sha256::new();
        let mut buf = vec![0u8; PART];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(hash.finalize().into());
            }
            hash.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}
