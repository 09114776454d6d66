//! The owner of the core node machine: one task feeds it every input (jobs queued by the
//! connections, the API and the shell's tasks), drains its outputs and performs them
//! (sending on links and hand-off requests, spawning dials, running job class callbacks,
//! reporting), drives its timer and publishes its [`Snapshot`] for the request path.
//! Nothing is decided here, and nothing else touches the machine.

use super::*;
use arc_swap::ArcSwap;
use nkcluster_core::node::{Snapshot, SnapshotStamp};
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

/// What runs once an input's outputs are performed and the snapshot is published (an
/// answer to whoever queued the input).
pub(super) type Then = Box<dyn FnOnce() + Send>;

/// An input (or a read) of the machine, run by its owner.
pub(super) type Job =
    Box<dyn FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> Option<Then> + Send>;

/// Inputs the owner handles before it lets other tasks run.
const JOBS_PER_TURN: usize = 256;

/// The way to the machine's owner, and what it last published.
pub(super) struct Brain {
    jobs: mpsc::UnboundedSender<Job>,
    view: ArcSwap<Snapshot<Pump>>,
}

impl Brain {
    /// The way to a machine, and where its owner's receiving end is.
    pub(super) fn new(machine: &NodeMachine<Pump>) -> (Brain, mpsc::UnboundedReceiver<Job>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let view = ArcSwap::from_pointee(machine.snapshot());
        (Brain { jobs, view }, rx)
    }
}

impl<N: Net> Inner<N> {
    /// Whether this node is a control member.
    pub(super) fn is_control(&self) -> bool {
        self.config.control && !self.config.admin
    }

    /// What the machine said as of its last input that changed it (routing, links,
    /// members, status): for reads that must not wait for the owner.
    pub(super) fn view(&self) -> arc_swap::Guard<Arc<Snapshot<Pump>>> {
        self.brain.view.load()
    }

    /// Queues a job for the owner (dropped, with whatever it holds, when the node is
    /// gone: a responder it holds then answers `no_reply`).
    pub(super) fn submit(&self, job: Job) {
        let _ = self.brain.jobs.send(job);
    }

    /// Queues an input whose result nobody waits for.
    pub(super) fn tell(
        &self,
        f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) + Send + 'static,
    ) {
        self.submit(Box::new(move |b, now| {
            f(b, now);
            None
        }));
    }

    /// Runs `f` on the machine and waits for its result, which comes once the outputs of
    /// `f` are performed and the snapshot is published. `None`: the node is gone.
    pub(super) async fn ask<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.submit(ask_job(f, tx));
        rx.await.ok()
    }

    /// [`ask`](Self::ask) from a thread outside the runtime (the file writer).
    pub(super) fn ask_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.submit(ask_job(f, tx));
        rx.blocking_recv().ok()
    }

    /// Performs at once what the machine has decided so far (inside a job, when what
    /// comes next depends on it having happened).
    ///
    /// Our own events in a row are forwarded together, so that the events of one input
    /// (a worker's link up: its status, then its info report, described here at once
    /// when the figures are at hand) leave in one batch, one write on the link (issue 15
    /// point 7). They go before any other output is performed: a class callback run by
    /// one may send events of its own, which must come after them.
    pub(super) fn perform_now(self: &Arc<Self>, b: &mut NodeMachine<Pump>) {
        let mut own: Vec<EventMsg> = Vec::new();
        // Outputs taken from the machine ahead of our events' own (see `forward_own`).
        let mut queue: VecDeque<Output<Pump>> = VecDeque::new();
        loop {
            let Some(o) = queue.pop_front().or_else(|| b.poll_output()) else {
                if own.is_empty() {
                    break;
                }
                self.forward_own(b, &mut own, &mut queue);
                continue;
            };
            match o {
                Output::OwnEvent(ev) => own.push(ev),
                Output::ReportInfo => match self.figures_at_hand() {
                    Some(stats) => own.push(self.own_event(WireEvent::Info(b.report_info(stats)))),
                    None => {
                        self.forward_own(b, &mut own, &mut queue);
                        self.send_info();
                    }
                },
                o => {
                    self.forward_own(b, &mut own, &mut queue);
                    self.perform(o);
                }
            }
        }
    }

    /// Sends our events `own` on their way (emptying it). When nothing of ours is on
    /// the way already (the forwarder is idle), the machine takes them here, and what
    /// they send goes on the links at once: no hops through the forwarder and back, and
    /// a worker's first status and info reach its link in the job of its link up (then
    /// they leave with the answers that link's first read asked for, see
    /// [`LinkSink::take_hold`]). A send that finds a link's queue full waits in the
    /// forwarder, with every send after it, so nothing is reordered. Outputs the
    /// machine held before ours are moved to `queue`, to be performed in order.
    fn forward_own(
        self: &Arc<Self>,
        b: &mut NodeMachine<Pump>,
        own: &mut Vec<EventMsg>,
        queue: &mut VecDeque<Output<Pump>>,
    ) {
        if own.is_empty() {
            return;
        }
        if !self.events_out.idle() {
            for ev in own.drain(..) {
                self.events_out.send(ev);
            }
            return;
        }
        queue.extend(std::iter::from_fn(|| b.poll_output()));
        let now = self.clock.now();
        for ev in own.drain(..) {
            b.handle_own_event(now, ev);
        }
        let mut waiting: Vec<(Pump, Command)> = Vec::new();
        while let Some(o) = b.poll_output() {
            match o {
                Output::Notify { link, request } => {
                    let Some(cmd) = self.notify_command(&request) else {
                        continue;
                    };
                    if !waiting.is_empty() {
                        waiting.push((link, cmd));
                        continue;
                    }
                    if let Err(cmdq::TrySendError::Full(cmd)) = link.try_send(cmd) {
                        waiting.push((link, cmd));
                    }
                }
                o => self.perform(o),
            }
        }
        if !waiting.is_empty() {
            self.events_out.push(Forward::Send(waiting));
        }
    }

    /// Performs one output of the machine.
    pub(super) fn perform(self: &Arc<Self>, o: Output<Pump>) {
        let me = &self.config.node_id;
        match o {
            Output::Gossip { link, view } => {
                let _ = link.try_send(Command::Gossip(view));
            }
            Output::Notify { link, request } => {
                if let Some(cmd) = self.notify_command(&request) {
                    let _ = link.try_send(cmd);
                }
            }
            Output::DialMember { id, urls } => {
                debug!(node = %me, member = %id, "dialing control member (mesh)");
                tokio::spawn(mesh_dial(self.clone(), id, urls));
            }
            Output::Ask {
                id,
                link,
                class,
                body,
                timeout,
            } => {
                let inner = self.clone();
                let (reply, rx) = crate::reply::channel();
                let asked = self.clock.now();
                let cmd = Command::Request {
                    class: class.into(),
                    body,
                    asked,
                    deadline: asked + timeout,
                    reply,
                };
                tokio::spawn(async move {
                    let sent = link.send(cmd).await.is_ok();
                    let r = match rx.await {
                        Ok(r) if sent => r.map(|_| ()),
                        _ => Err(RequestError::ConnectionFailed),
                    };
                    let r = r.map_err(|e| ErrorCode::parse(e.code()));
                    inner.tell(move |b, now| b.handle_answer(now, id, r));
                });
            }
            Output::Release { worker, to, links } => {
                info!(node = %me, worker = %worker, to = %to, "proxy moved");
                for l in links {
                    let _ = l.try_send(Command::Handoff { to: to.clone() });
                }
            }
            Output::Redial { worker, urls } => {
                debug!(node = %me, worker = %worker, reason = "its link failed and it listens",
                       "redialing the worker");
                tokio::spawn(redial(self.clone(), worker, urls));
            }
            Output::Close { link, reason } => {
                let _ = link.try_send(Command::Close { reason });
            }
            // Dropping our sender: the link closes once its requests are done.
            Output::Unlisted { link } => {
                debug!(node = %me, "two links with one control member: keeping the one the smaller id dialed");
                drop(link);
            }
            Output::ClassEvent { class, event } => {
                if let Ok(c) = self.handlers.classes().get(&class) {
                    c.event(&event.node, event.task, &event.event);
                }
            }
            Output::TaskStatus {
                class,
                task,
                status,
            } => {
                if let Ok(c) = self.handlers.classes().get(&class) {
                    c.status(task, status);
                }
            }
            Output::JobEvent(ev) => {
                self.job_events.send(NodeJobEvent {
                    node: ev.node,
                    class: ev.class,
                    task: ev.task,
                    event: ev.event,
                });
            }
            Output::OwnEvent(ev) => self.events_out.send(ev),
            Output::ReportInfo => self.send_info(),
            Output::ClusterEvent(item) => self.record_cluster_event(item),
            // Ended transfers: their `.part` files are closed and removed by the file
            // writer, in order with the parts.
            Output::FileOps(ops) => self.queue_file_ops(ops),
            Output::InterruptConnector => {
                debug!(node = %me, "a control node adopted us: the connector's round ends");
                self.connector_interrupt
                    .send_modify(|n| *n = n.wrapping_add(1));
            }
            Output::RunConnector => {
                if !self.connector_running.swap(true, Ordering::SeqCst) {
                    debug!(node = %me, "following a redirect without cluster_addr");
                    tokio::spawn(connector(self.clone()));
                }
            }
            Output::Event(e) => {
                match &e {
                    NodeEvent::Member { id, change } => {
                        info!(node = %me, member = %id, change, "membership")
                    }
                    NodeEvent::StatusChanged { status } => {
                        info!(node = %me, status = %status, "node status")
                    }
                    NodeEvent::DuplicateRefused {
                        peer,
                        remote,
                        linked,
                    } => {
                        warn!(node = %me, peer = %peer, remote = %remote, transport = transport_field(remote), linked = %linked,
                              code = nkcluster_core::mesh::DUPLICATE_NODE_ID,
                              "refused a link: node id {peer} is already linked from another process (its link answers)")
                    }
                    NodeEvent::Replaced { peer, remote } => {
                        info!(node = %me, peer = %peer, remote = %remote, transport = transport_field(remote),
                              "a new run of the node replaces its old link (silent or gone)")
                    }
                    NodeEvent::Refused { peer, role, kind } => {
                        if let Some(line) = self.log_line(peer) {
                            warn!(node = %me, peer = %peer, role = ?role, kind = %kind,
                                  "refused: forbidden for the peer's role{}", line.suffix(peer))
                        }
                    }
                    NodeEvent::Handoff {
                        worker,
                        owner,
                        step,
                        code,
                    } => {
                        let code = code.as_deref().unwrap_or("-");
                        if step.is_trouble() {
                            warn!(node = %me, worker = %worker, owner = %owner, code, "{}", step.describe())
                        } else {
                            info!(node = %me, worker = %worker, to = %owner, "{}", step.describe())
                        }
                    }
                    _ => {}
                }
                self.emit(e);
            }
        }
    }

    /// A notice to a peer (nobody waits for an answer), as a link command.
    pub(super) fn notify_command(&self, request: &ClusterRequest) -> Option<Command> {
        let (class, body) = request.encode().ok()?;
        Some(Command::Notice {
            class: class.into(),
            body,
            deadline: self.clock.now() + GATHER_TIMEOUT,
        })
    }
}

fn ask_job<R: Send + 'static>(
    f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> R + Send + 'static,
    tx: oneshot::Sender<R>,
) -> Job {
    Box::new(move |b, now| {
        let r = f(b, now);
        Some(Box::new(move || {
            let _ = tx.send(r);
        }))
    })
}

/// The owner: runs the jobs in the order they were queued (a batch at a time), and the
/// machine's `handle_timeout` when it is due (membership removals and redial rounds,
/// hand-off retries, forgetting gone workers). After each input: the snapshot when its
/// stamp moved, then the outputs in order, then the job's answer. Ends when the node is
/// gone.
pub(super) async fn own_brain<N: Net>(
    inner: std::sync::Weak<Inner<N>>,
    mut machine: NodeMachine<Pump>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    clock: Clock,
) {
    let mut stamp: SnapshotStamp = machine.snapshot_stamp();
    loop {
        let next = machine.poll_timeout();
        let due = async {
            match next {
                Some(t) => tokio::time::sleep_until(clock.to_tokio(t)).await,
                None => std::future::pending().await,
            }
        };
        let mut job = tokio::select! {
            biased;
            j = jobs.recv() => match j {
                Some(j) => Some(j),
                None => return,
            },
            () = due => None,
        };
        let Some(inner) = inner.upgrade() else { return };
        let mut ran = 0;
        loop {
            let now = clock.now();
            let then = match job.take() {
                Some(j) => j(&mut machine, now),
                None => {
                    machine.handle_timeout(now);
                    None
                }
            };
            let moved = machine.snapshot_stamp();
            if moved != stamp {
                stamp = moved;
                inner.brain.view.store(Arc::new(machine.snapshot()));
            }
            inner.perform_now(&mut machine);
            if let Some(then) = then {
                then();
            }
            ran += 1;
            if ran == JOBS_PER_TURN {
                break;
            }
            match jobs.try_recv() {
                Ok(j) => job = Some(j),
                Err(_) => break,
            }
        }
    }
}

/// What the forwarder takes, in order: one of our events, or sends to links that found
/// the link's queue full when the owner made them ([`Inner::perform_now`]).
#[allow(
    clippy::large_enum_variant,
    reason = "events went by value before; the sends are rare (a full link queue)"
)]
pub(super) enum Forward {
    Event(EventMsg),
    Send(Vec<(Pump, Command)>),
}

/// The way of our own events to the forwarder, and how many items it has not finished
/// (queued, or being sent): while any are, newer events go the same way, in order.
#[derive(Clone)]
pub(super) struct OwnEvents {
    tx: mpsc::UnboundedSender<Forward>,
    unfinished: Arc<AtomicUsize>,
}

impl OwnEvents {
    /// The way in, and the forwarder's end.
    pub(super) fn new() -> (OwnEvents, mpsc::UnboundedReceiver<Forward>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let unfinished = Arc::new(AtomicUsize::new(0));
        (OwnEvents { tx, unfinished }, rx)
    }

    /// Queues one of our events.
    pub(super) fn send(&self, ev: EventMsg) {
        self.push(Forward::Event(ev));
    }

    fn push(&self, item: Forward) {
        self.unfinished.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(item).is_err() {
            self.unfinished.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Nothing of ours is on its way.
    fn idle(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst) == 0
    }

    /// `n` items are sent.
    fn finished(&self, n: usize) {
        self.unfinished.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Takes our events, in order, to the machine, which sends them to the control node
/// holding our proxy (a control member hears its own). Sending waits for room on the
/// link, so events are never reordered.
pub(super) async fn forward_events<N: Net>(
    inner: Arc<Inner<N>>,
    mut rx: mpsc::UnboundedReceiver<Forward>,
) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < JOBS_PER_TURN {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let n = items.len();
        let mut batch = Vec::new();
        for item in items {
            match item {
                Forward::Event(ev) => batch.push(ev),
                Forward::Send(sends) => {
                    if !handle_own_events(&inner, std::mem::take(&mut batch)).await {
                        return;
                    }
                    for (link, cmd) in sends {
                        let _ = link.send(cmd).await;
                    }
                }
            }
        }
        if !handle_own_events(&inner, batch).await {
            return;
        }
        inner.events_out.finished(n);
    }
}

/// Has the machine take `batch` (our events) and sends what they send, waiting for room
/// on each link. `false`: the node is gone.
async fn handle_own_events<N: Net>(inner: &Arc<Inner<N>>, batch: Vec<EventMsg>) -> bool {
    if batch.is_empty() {
        return true;
    }
    // This job's outputs come back here (taken inside it, before the owner would
    // perform them), so that sends to our proxy can wait for room in order.
    let out = inner
        .ask(move |b, now| {
            for ev in batch {
                b.handle_own_event(now, ev);
            }
            std::iter::from_fn(|| b.poll_output()).collect::<Vec<_>>()
        })
        .await;
    let Some(out) = out else { return false };
    for o in out {
        match o {
            Output::Notify { link, request } => {
                if let Some(cmd) = inner.notify_command(&request) {
                    let _ = link.send(cmd).await;
                }
            }
            o => inner.perform(o),
        }
    }
    true
}
