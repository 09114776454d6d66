//! What every node does as a worker: job calls (requests, tasks, commands, status,
//! metadata, data, files), its status changes and reports, its task bodies.

use super::*;
use nkcluster_core::cluster::FileQuery;
use nkcluster_core::transfers::{Part, PartOutcome, Received, TransferError};

/// What the file writer thread handles, in arrival order.
pub(super) enum FileWork {
    /// A part to write, of a file checked with that content hash.
    Part(FilePart, nkcluster_core::file_send::ContentHash),
    /// Where a transfer is at (answered after the parts that came before).
    Status(FileQuery),
}

/// What one step of a transfer decided for its sender.
type StepOutcome = Result<Received, TransferError>;

impl<N: Net> Inner<N> {
    pub(super) fn emit(&self, e: NodeEvent) {
        self.events.send(e);
    }

    pub(super) fn random_u64(&self) -> u64 {
        lock(&self.rng).random()
    }

    pub(super) fn nonce(&self) -> [u8; 32] {
        lock(&self.rng).random()
    }

    pub(super) fn key_for(&self, password: &str) -> Key {
        if let Some(k) = lock(&self.keys).get(password) {
            return k.clone();
        }
        let k = Key::derive(
            password,
            &self.config.cluster_name,
            self.config.key_iterations,
        );
        lock(&self.keys).insert(password.to_owned(), k.clone());
        k
    }

    /// The keys for a connection: the control key of `password` (the URL's, else ours)
    /// and the worker key of `worker_password` (the URL's, else ours; none: the control
    /// key serves workers too).
    pub(super) fn keys_for(&self, url: Option<&ClusterUrl>) -> Keys {
        let password = url
            .and_then(|u| u.password.as_deref())
            .unwrap_or(&self.config.password);
        let worker = url
            .and_then(|u| u.worker_password.as_deref())
            .or(self.config.worker_password.as_deref());
        Keys {
            control: self.key_for(password),
            worker: worker.map(|w| self.key_for(w)),
        }
    }

    pub(super) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Starts a task of `class` (the machine gives its id and queues `task_started`,
    /// performed here before anything the task itself sends), then runs its body in a
    /// task of its own. Runs inside the owner's job.
    pub(super) fn start_task(
        self: &Arc<Self>,
        b: &mut NodeMachine<Pump>,
        class: &str,
        body: &[u8],
        id: Option<u64>,
    ) -> Result<Bytes, RemoteError> {
        let c = self.handlers.classes().get(class)?.clone();
        let id = b.start_task(id, class)?;
        self.perform_now(b);
        let ids = (
            Arc::from(self.config.node_id.as_str()),
            id,
            Arc::from(class),
        );
        let out = self.events_out.clone();
        let events: nkcluster_core::jobs::EventSender = Arc::new(move |ev| {
            out.send(ev);
        });
        match c.task(ids, events, body) {
            Ok((reply, run)) => {
                let inner = self.clone();
                // The body runs in its own task; a panic ends it with its message.
                let body = tokio::spawn(run);
                lock(&self.tasks).insert(id, body.abort_handle());
                tokio::spawn(async move {
                    let reason = match body.await {
                        Ok(Ok(())) => "normal".to_owned(),
                        Ok(Err(e)) => e,
                        Err(e) if e.is_panic() => {
                            format!("panic: {}", crate::jobs::panic_message(&*e.into_panic()))
                        }
                        Err(_) => "stopped".to_owned(),
                    };
                    inner.task_ended(id, &reason);
                });
                encode_answer(&TaskStarted { task: id, reply })
            }
            Err(e) => {
                b.handle_task_ended(id, &e.to_string());
                Err(e)
            }
        }
    }

    /// Stops running task `id`: its body is aborted and it ends `stopped`. Runs inside
    /// the owner's job.
    pub(super) fn stop_task(
        self: &Arc<Self>,
        b: &mut NodeMachine<Pump>,
        id: u64,
    ) -> Result<Bytes, RemoteError> {
        let Some(h) = lock(&self.tasks).remove(&id) else {
            return Err(RemoteError::new(
                ErrorCode::TaskNotFound,
                format!("no task {id} runs here"),
            ));
        };
        h.abort();
        b.handle_task_ended(id, "stopped");
        Ok(Bytes::new())
    }

    /// The file writer's queue (started on first use): it performs file work in the
    /// order queued.
    fn file_writer(self: &Arc<Self>) -> std::sync::mpsc::Sender<WriterJob> {
        let mut w = lock(&self.file_writer);
        w.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<WriterJob>();
            let weak = Arc::downgrade(self);
            let priority = self.config.bulk_priority;
            let writer = std::thread::Builder::new().name("nk-file-writer".into());
            let spawned = writer.spawn(move || {
                super::part_files::as_bulk_thread(priority);
                while let Ok(job) = rx.recv() {
                    let Some(inner) = weak.upgrade() else { return };
                    match job {
                        WriterJob::Part(from, work, responder) => {
                            responder.reply(match work {
                                FileWork::Part(part, hash) => inner.receive_file(&from, part, hash),
                                FileWork::Status(q) => inner.file_status(&from, q),
                            });
                        }
                        WriterJob::Perform => {
                            let _ = inner.perform_decided_file_ops(None);
                        }
                    }
                }
            });
            if let Err(e) = spawned {
                // Its queue's receiver is gone: every part is answered with an error.
                warn!(node = %self.config.node_id, error = %e, "no file writer thread");
            }
            tx
        })
        .clone()
    }

    /// Queues a file part (or a status query) for the writer thread, which handles them
    /// in arrival order.
    pub(super) fn write_file_part(
        self: &Arc<Self>,
        from: &str,
        part: FileWork,
        responder: Responder,
    ) {
        let job = WriterJob::Part(from.to_owned(), part, responder);
        if let Err(std::sync::mpsc::SendError(WriterJob::Part(_, _, responder))) =
            self.file_writer().send(job)
        {
            responder.reply(Err(RemoteError::new(
                ErrorCode::FileError,
                "the file writer stopped",
            )));
        }
    }

    /// Queues the machine's file operations for ended transfers (their `.part` files are
    /// closed and removed) behind the parts already queued.
    pub(super) fn queue_file_ops(self: &Arc<Self>, ops: Vec<nkcluster_core::transfers::FileOp>) {
        self.decide_file_ops(ops);
        let _ = self.file_writer().send(WriterJob::Perform);
    }

    /// Records file operations the machine has just decided, behind those decided before
    /// (call it inside the job that decided them, or right after it, before the next
    /// one); returns the batch's number.
    fn decide_file_ops(&self, ops: Vec<nkcluster_core::transfers::FileOp>) -> u64 {
        let mut decided = lock(&self.decided_file_ops);
        let batch = decided.next;
        decided.next += 1;
        decided.queue.push_back((batch, ops));
        batch
    }

    /// Performs, on the writer thread, every batch of file operations decided so far, in
    /// the order the machine decided them (a `.part` file closed when a link went down is
    /// never closed after a later part reopened it); the result of batch `mine` (with
    /// the digest it produced, if any). Other batches' failures are logged.
    fn perform_decided_file_ops(&self, mine: Option<u64>) -> Result<Option<[u8; 32]>, RemoteError> {
        let mut result = Ok(None);
        loop {
            let Some((batch, ops)) = lock(&self.decided_file_ops).queue.pop_front() else {
                return result;
            };
            let r = lock(&self.part_files).perform(ops, |f| self.check_file_dir(f));
            match r {
                Ok(d) if Some(batch) == mine => result = Ok(d),
                Err(e) if Some(batch) == mine => result = Err(e),
                Err(e) => warn!(node = %self.config.node_id, code = %e.code, error = %e.message,
                               "a file operation of an ended transfer failed"),
                Ok(_) => {}
            }
        }
    }

    /// One step of a transfer: `decide` runs inside the machine's owner and returns its
    /// outcome (its ops recorded there, in decision order); they are performed here. An
    /// I/O failure ends the transfer (its clean-up decided and performed) and is the
    /// answer; otherwise the outcome, with the digest a `Digest` op produced.
    fn transfer_step(
        self: &Arc<Self>,
        from: &str,
        path: &str,
        len: usize,
        decide: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> PartOutcome
        + Send
        + 'static,
    ) -> Result<(StepOutcome, Option<[u8; 32]>), RemoteError> {
        let me = Arc::clone(self);
        let (result, batch) = self
            .ask_blocking(move |b, now| {
                let mut out = decide(b, now);
                me.telemetry.file_part(&out, len);
                (out.result, me.decide_file_ops(std::mem::take(&mut out.ops)))
            })
            .ok_or_else(stopped)?;
        match self.perform_decided_file_ops(Some(batch)) {
            Ok(digest) => Ok((result, digest)),
            Err(e) => {
                self.telemetry.file_failed();
                let (p, me) = (path.to_owned(), Arc::clone(self));
                if let Some(cleanup) =
                    self.ask_blocking(move |b, _| me.decide_file_ops(b.handle_file_error(&p)))
                {
                    let _ = self.perform_decided_file_ops(Some(cleanup));
                }
                warn!(node = %self.config.node_id, from = %from, path = %path, code = %e.code, error = %e.message,
                      "a file transfer failed");
                Err(e)
            }
        }
    }

    /// One part of a file. The core receiver decides (where it lands, order, checksum,
    /// limits, expiry); this performs its file operations (hashing what it writes) and
    /// answers. After the last part the digest goes back to the machine, which decides
    /// whether the file goes into place.
    pub(super) fn receive_file(
        self: &Arc<Self>,
        from: &str,
        part: FilePart,
        hash: nkcluster_core::file_send::ContentHash,
    ) -> Result<Bytes, RemoteError> {
        let sender = from.to_owned();
        let path = part.path.clone();
        let len = part.data.len();
        let (mut result, digest) = self.transfer_step(from, &part.path, len, move |b, now| {
            let part_in = Part {
                path: &path,
                offset: part.offset,
                total: part.total,
                data: part.data,
                sha256: part.sha256,
                hash,
            };
            b.handle_file_part(now, &sender, part_in)
        })?;
        if let (Ok(Received::Checking), Some(digest)) = (&result, digest) {
            let path = part.path.clone();
            result = self
                .transfer_step(from, &part.path, 0, move |b, _| {
                    b.handle_file_digest(&path, digest)
                })?
                .0;
        }
        match result {
            Ok(Received::Part | Received::Checking) => Ok(Bytes::new()),
            Ok(Received::File { path, bytes }) => {
                info!(node = %self.config.node_id, from = %from, path = %path.display(), bytes, "received a file");
                Ok(Bytes::new())
            }
            Err(e) => {
                warn!(node = %self.config.node_id, from = %from, path = %part.path, code = e.code(), error = %e,
                      "refused a file");
                Err(RemoteError::new(e.code(), e.to_string()))
            }
        }
    }

    /// Where a big file's transfer is at, for a sender about to (re)send it.
    fn file_status(self: &Arc<Self>, from: &str, q: FileQuery) -> Result<Bytes, RemoteError> {
        let (path, me) = (q.path.clone(), Arc::clone(self));
        let r = self
            .ask_blocking(move |b, now| {
                b.handle_file_status(now, &path, q.total, &q.sha256)
                    .map(|(offset, ops)| (offset, me.decide_file_ops(ops)))
            })
            .ok_or_else(stopped)?;
        match r {
            Ok((offset, batch)) => {
                self.perform_decided_file_ops(Some(batch))?;
                if offset > 0 {
                    info!(node = %self.config.node_id, from = %from, path = %q.path, offset, total = q.total,
                          "a file transfer resumes");
                }
                encode_answer(&offset)
            }
            Err(e) => {
                warn!(node = %self.config.node_id, from = %from, path = %q.path, code = e.code(), error = %e,
                      "refused a file");
                Err(RemoteError::new(e.code(), e.to_string()))
            }
        }
    }

    /// Makes the directory of `file` and refuses it when a symbolic link leads it out of
    /// `files_dir` (the one check the core cannot make without the file system).
    pub(super) fn check_file_dir(&self, file: &std::path::Path) -> Result<(), RemoteError> {
        let root = &self.config.files_dir;
        let Some(dir) = file.parent() else {
            return Ok(());
        };
        let io = |e: std::io::Error| {
            RemoteError::new(ErrorCode::FileError, format!("{}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let real_dir = dir.canonicalize().map_err(io)?;
        let real_root = root.canonicalize().map_err(io)?;
        if real_dir.starts_with(&real_root) {
            return Ok(());
        }
        let e = nkcluster_core::files::ForbiddenPath {
            path: file.display().to_string(),
            why: "leads out of the files directory through a link",
            root: root.display().to_string(),
        };
        Err(RemoteError::new(e.code(), e.to_string()))
    }

    /// Fresh machine figures (blocking: disks are enumerated; reused for a second), or
    /// the fixed ones the node was started with.
    pub(super) fn measure(&self) -> Stats {
        if let Some(s) = self.figures_at_hand() {
            s
        } else {
            let now = self.clock.now();
            let mut sys = lock(&self.sys);
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            let load = sysinfo::System::load_average();
            let disks = sysinfo::Disks::new_with_refreshed_list()
                .list()
                .iter()
                .map(|d| {
                    (
                        d.mount_point().display().to_string(),
                        d.total_space(),
                        d.available_space(),
                    )
                })
                .collect();
            let stats = Stats {
                cpu_percent: sys.global_cpu_usage(),
                load_avg: [load.one, load.five, load.fifteen],
                mem_total: sys.total_memory(),
                mem_used: sys.used_memory(),
                disks,
                time_ms: self.clock.wall_now_ns() / 1_000_000,
                os: sysinfo::System::long_os_version().unwrap_or_default(),
                uptime_s: sysinfo::System::uptime(),
            };
            *lock(&self.stats_cache) = Some((now, stats.clone()));
            stats
        }
    }

    /// The machine figures when they cost nothing to give (no blocking work): the fixed
    /// ones the node was started with, or the last measured ones while fresh.
    pub(super) fn figures_at_hand(&self) -> Option<Stats> {
        if let Some(fixed) = &self.machine_figures {
            return Some(Stats {
                time_ms: self.clock.wall_now_ns() / 1_000_000,
                ..fixed.clone()
            });
        }
        let now = self.clock.now();
        lock(&self.stats_cache)
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < STATS_MAX_AGE)
            .map(|(_, s)| s.clone())
    }

    /// Reports our information to the control node holding our proxy (a link up, a
    /// status or metadata change). See [`Inner::send_info_with`].
    pub(super) fn send_info(self: &Arc<Self>) {
        self.send_info_with(|b, stats| Some(b.report_info(stats)));
    }

    /// Our periodic information report: left out when it says nothing new (the machine
    /// decides: [`nkcluster_core::info_report`]).
    pub(super) fn send_periodic_info(self: &Arc<Self>) {
        self.send_info_with(NodeMachine::periodic_info);
    }

    /// Describes a report with `describe` and queues it for the control node holding
    /// our proxy. The figures are measured on the blocking pool, unless they are at hand
    /// (fixed, or measured less than a second ago): then the report is queued at once,
    /// with no thread to wake (a worker's arrival at a control node, issue 15 point 7).
    /// The report is described and queued by the machine's owner, so it never overtakes
    /// a status change queued after it (the proxy's book keeps the last).
    fn send_info_with(
        self: &Arc<Self>,
        describe: fn(&mut NodeMachine<Pump>, Stats) -> Option<NodeInfo>,
    ) {
        let inner = self.clone();
        let report = move |stats: Option<Stats>| {
            let stats = stats.unwrap_or_else(|| inner.measure());
            let owner = inner.clone();
            inner.tell(move |b, _| {
                if let Some(info) = describe(b, stats) {
                    owner.node_event(WireEvent::Info(info));
                }
            });
        };
        match self.figures_at_hand() {
            Some(stats) => report(Some(stats)),
            None if self.net.real_threads() => {
                tokio::task::spawn_blocking(move || report(None));
            }
            None => report(None),
        }
    }

    /// Queues a node-level event (class `nkcluster`) of ours for our proxy.
    pub(super) fn node_event(&self, event: WireEvent) {
        self.events_out.send(self.own_event(event));
    }

    /// A node-level event (class `nkcluster`) of ours.
    pub(super) fn own_event(&self, event: WireEvent) -> EventMsg {
        EventMsg {
            node: self.config.node_id.clone(),
            class: "nkcluster".into(),
            task: None,
            event,
        }
    }

    /// A task's body ended by itself (not stopped: that path finished it already).
    pub(super) fn task_ended(self: &Arc<Self>, id: u64, reason: &str) {
        if lock(&self.tasks).remove(&id).is_none() {
            return;
        }
        self.finish_task(id, reason);
    }

    pub(super) fn finish_task(self: &Arc<Self>, id: u64, reason: &str) {
        let reason = reason.to_owned();
        self.tell(move |b, _| {
            b.handle_task_ended(id, &reason);
        });
    }
}
