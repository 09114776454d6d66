//! The node machine: everything a node decides above one link, in one sans-IO machine
//! that composes the smaller ones (the link table, membership, the proxies and their
//! hand-offs, the connector, the node's status and tasks, the control side's book of
//! workers and events, metadata and the data registry).
//!
//! Inputs are `handle_*(now, …)` calls (a link came up or went down, a view arrived, a
//! hand-off step ended, a worker's event, a job call, a timer); what the node must do
//! comes out of one [`Output`] queue, drained with [`NodeMachine::poll_output`] until it
//! is empty, after which [`NodeMachine::poll_timeout`] says when to call
//! [`NodeMachine::handle_timeout`]. The shell (the tokio daemon), the simulator and the
//! unit tests all drain it the same way. Queries that answer at once (routing, the node
//! table, job calls that only touch state) return their result directly and queue their
//! side effects as outputs.
//!
//! `H` is the shell's handle of an authenticated link (a command channel in the daemon,
//! a connection id in tests); the machine stores it in its link table and hands it back
//! in the outputs that act on a link, so the shell never looks a link up itself.
//!
//! Files: `links` (links up and down, views), `control` (membership, hand-offs, the
//! workers' events and their subscribers, the node table), `jobs` (status, tasks,
//! metadata, data, redirects), `offline` (where a worker's own events go: its control
//! link, or the bounded buffer kept while it has none; what a new link is told),
//! `dispatch` (a peer's cluster request, with its role), `identity` (a node id linked
//! from two runs at once), `lifecycle` (joining, connecting and removing nodes by hand),
//! `code` (loading WebAssembly modules), `gauges` (what metrics read: members, links,
//! proxies, workers, tasks), `snapshot` (what the shell reads between
//! inputs), `limits` (the size of every table a
//! peer can make grow, against its limit), `follow` (the dashboard's live feed).

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::cluster::{ClusterRequest, EventMsg, NodeInfo, WireEvent};
use crate::connector::Connector;
use crate::data::DataRegistry;
use crate::events::{Events, EventsConfig};
use crate::handshake::Role;
use crate::links::{LinkInfo, LinkTable};
use crate::membership::{MemberInfo, Membership, MembershipConfig};
use crate::meta::Meta;
use crate::modules::{ModuleRegistry, ModulesConfig};
use crate::outbox::{Outbox, OutboxConfig};
use crate::proxy::Proxies;
use crate::routing::{RouteStep, RouteView, route};
use crate::status::{NodeStatus, Status};
use crate::time::Instant;
use crate::transfers::{Transfers, TransfersConfig};
use crate::url::ClusterUrl;
use crate::workers::{Workers, WorkersConfig};

mod code;
mod control;
mod dispatch;
mod follow;
mod gauges;
mod handoff;
mod identity;
mod jobs;
mod lifecycle;
mod limits;
mod links;
mod offline;
mod seeds;
mod snapshot;
#[cfg(test)]
mod tests;

pub use control::SubscribeError;
pub use dispatch::{Dispatch, ShellWork};
pub use gauges::Gauges;
pub use handoff::{HandoffStep, HandoffTimes};
pub use identity::{check_dialed_worker, check_exclusive_peer, worker_dial_urls};
pub use lifecycle::check_removal;
pub use limits::TableSize;
pub use links::LinkGone;
pub use snapshot::{Snapshot, SnapshotStamp};

/// The class name of node-level events (status, information).
pub const NODE_EVENT_CLASS: &str = crate::workers::NODE_CLASS;

/// What a node is configured with (what the machine needs of it).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's id.
    pub me: String,
    /// Its role: a control member, a worker, or an admin client.
    pub role: Role,
    /// Its listen URLs as announced.
    pub listen: Vec<String>,
    /// Ring partitions (control members).
    pub partitions: u32,
    /// Wall clock at the machine's time origin, Unix ns (event times, generations).
    pub wall_origin_ns: u64,
    /// Membership settings (control members).
    pub membership: MembershipConfig,
    /// How long a hand-off waits before asking a silent owner again.
    pub handoff_retry: Duration,
    /// How long each hand-off step may take.
    pub handoff: HandoffTimes,
    /// Where to dial the cluster, and how often to try.
    pub cluster_addr: Vec<ClusterUrl>,
    /// Backoff between connection rounds.
    pub backoff: BackoffConfig,
    /// The data registry's size limit, bytes.
    pub data_limit: usize,
    /// The node's metadata at start.
    pub meta: Meta,
    /// Limits of the control side's book of workers.
    pub workers: WorkersConfig,
    /// Limits of the control side's subscribers and recent events.
    pub events: EventsConfig,
    /// Where received files land.
    pub files_dir: std::path::PathBuf,
    /// Limits of the file receiver.
    pub transfers: TransfersConfig,
    /// Limits of the events a worker keeps while it has no control link.
    pub outbox: OutboxConfig,
    /// Limits of code loaded over the wire.
    pub modules: ModulesConfig,
}

/// One authenticated link as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Peer node id.
    pub node_id: String,
    /// Peer role.
    pub role: Role,
    /// Transport and remote address (`tls:10.0.0.1:1973`).
    pub remote: String,
    /// Whether we dialed.
    pub dialer: bool,
    /// The peer's run (random per start: a restarted peer announces another).
    pub instance: u64,
    /// Peer listen URLs.
    pub listen: Vec<String>,
    /// Peer metadata.
    pub meta: String,
    /// The protocol version the link speaks.
    pub version: u16,
}

impl PeerSummary {
    /// What an authenticated peer said of itself, and where its link came from.
    pub fn new(peer: &crate::handshake::PeerInfo, remote: &str, dialer: bool) -> Self {
        PeerSummary {
            node_id: peer.node_id.clone(),
            role: peer.role,
            remote: remote.to_owned(),
            dialer,
            instance: peer.instance,
            listen: peer.listen.clone(),
            meta: peer.meta.clone(),
            version: peer.version,
        }
    }
}

/// A link in the machine's table: what the peer said, where it came from, and the
/// shell's handle.
#[derive(Debug, Clone)]
pub struct Link<H> {
    /// Unique id of the connection.
    pub conn_id: u64,
    /// The peer.
    pub summary: PeerSummary,
    /// IP address the link reached (to dial a peer announced on `all`).
    pub remote_ip: Option<IpAddr>,
    /// Latest ping round trip.
    pub rtt: RoundTrip,
    /// The shell's handle.
    pub handle: H,
}

/// A link's latest ping round trip, shared by every copy of the link table, so that an
/// update is made in place. The table is persistent: changing a link in it copies the
/// link and the tree path above it, and a snapshot still holding the old path keeps both
/// (about 350 bytes per link whose round trip was measured since the last snapshot).
#[derive(Debug, Clone, Default)]
pub struct RoundTrip(Arc<AtomicU64>);

impl RoundTrip {
    /// Records a measured round trip (at least 1 µs: a measured one is never none).
    pub fn set(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.store(us, Relaxed);
    }

    /// The latest round trip, microseconds (`None`: none measured yet).
    pub fn us(&self) -> Option<u64> {
        Some(self.0.load(Relaxed)).filter(|us| *us > 0)
    }
}

impl<H> LinkInfo for Link<H> {
    fn conn_id(&self) -> u64 {
        self.conn_id
    }
    fn role(&self) -> Role {
        self.summary.role
    }
    fn dialer(&self) -> bool {
        self.summary.dialer
    }
    fn instance(&self) -> u64 {
        self.summary.instance
    }
}

/// What happens on a node, for logs, tests and the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A listener is up.
    Listening {
        /// Transport and bound address, e.g. `tcp:127.0.0.1:1972`.
        addr: String,
    },
    /// A peer authenticated.
    LinkUp {
        /// Peer node id.
        peer: String,
        /// Peer role.
        role: Role,
        /// Transport and remote address.
        remote: String,
        /// Whether we dialed.
        dialer: bool,
    },
    /// An authenticated link ended.
    LinkDown {
        /// Peer node id.
        peer: String,
        /// Transport and remote address.
        remote: String,
        /// Error code (`idle_timeout`, `peer_closed`, ...); `None` when we closed it.
        code: Option<String>,
    },
    /// A connection failed before authenticating.
    HandshakeFailed {
        /// Transport and remote address.
        remote: String,
        /// Node id the peer claimed, if it said one.
        claimed: Option<String>,
        /// Error code.
        code: String,
    },
    /// A dial attempt found nobody.
    ConnectFailed {
        /// The URL (without password).
        url: String,
        /// OS error.
        error: String,
    },
    /// A control member changed state (`up`, `down`, `left`, `removed`).
    Member {
        /// Member id.
        id: String,
        /// What happened.
        change: &'static str,
    },
    /// A hand-off step ended in a way worth a log line.
    Handoff {
        /// The worker.
        worker: String,
        /// Its ring owner.
        owner: String,
        /// What happened.
        step: HandoffStep,
        /// The error's code, if one.
        code: Option<String>,
    },
    /// This node's own status changed.
    StatusChanged {
        /// The new status.
        status: Status,
    },
    /// The connector spent its attempt budget.
    GaveUp {
        /// Error code of the last failure.
        code: String,
    },
    /// A link of a node id already linked from another live process was refused
    /// (`duplicate_node_id`): the old link answered its probe.
    DuplicateRefused {
        /// The node id.
        peer: String,
        /// Transport and remote address of the refused link.
        remote: String,
        /// Transport and remote address of the link that keeps the id.
        linked: String,
    },
    /// The link of a run of a node that is gone was closed: a new run of it replaces it.
    Replaced {
        /// The node id.
        peer: String,
        /// Transport and remote address of the old link.
        remote: String,
    },
    /// A peer's request was refused (`forbidden`) for its authenticated role; its link
    /// stays up.
    Refused {
        /// The peer.
        peer: String,
        /// Its authenticated role.
        role: Role,
        /// The request's class.
        kind: String,
    },
}

/// What the shell must do. Drained with [`NodeMachine::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output<H> {
    /// Send our membership view on a control link.
    Gossip {
        /// The link.
        link: H,
        /// The view.
        view: Vec<MemberInfo>,
    },
    /// Send a cluster request nobody waits for (an event, a subscription) on a link.
    Notify {
        /// The link.
        link: H,
        /// The request.
        request: ClusterRequest,
    },
    /// Dial a control member we are not linked to (full mesh), trying `urls` in order
    /// until one authenticates or the member is linked; then report with
    /// [`NodeMachine::handle_mesh_dial_done`]. A seed round dials a `cluster_addr` entry
    /// the same way, under the id `seed:<transport:host:port>`.
    DialMember {
        /// The member (or the seed).
        id: String,
        /// Its URLs we could dial.
        urls: Vec<String>,
    },
    /// A hand-off step's request (an adoption, a probe, a redirect) on a link, answered
    /// with [`NodeMachine::handle_answer`] (its outcome, or the error's code; the shell
    /// ends it `timeout` after `timeout`).
    Ask {
        /// Given back with the answer.
        id: u64,
        /// The link.
        link: H,
        /// Request class.
        class: String,
        /// Request body.
        body: bytes::Bytes,
        /// How long the answer may take.
        timeout: Duration,
    },
    /// Close these links with `worker` in order: their pending requests end
    /// `proxy_moved` (to `to`).
    Release {
        /// The worker.
        worker: String,
        /// Its new proxy.
        to: String,
        /// The links.
        links: Vec<H>,
    },
    /// At the owner: dial a listening worker whose link failed; report a failure with
    /// [`NodeMachine::handle_redial_failed`].
    Redial {
        /// The worker.
        worker: String,
        /// Its URLs.
        urls: Vec<String>,
    },
    /// Close a link in order (the node stops).
    Close {
        /// The link.
        link: H,
        /// Told to the peer.
        reason: String,
    },
    /// A link is no longer listed (a second link to a control member): the shell lets it
    /// close once its requests are done.
    Unlisted {
        /// The link.
        link: H,
    },
    /// A job class hears an event of a node (control side).
    ClassEvent {
        /// The class.
        class: String,
        /// The event.
        event: EventMsg,
    },
    /// A running task hears the node's new status (its class's `status` callback).
    TaskStatus {
        /// The task's class.
        class: String,
        /// Task id.
        task: u64,
        /// The new status.
        status: Status,
    },
    /// Control side: an event heard, for the API's subscribers.
    JobEvent(EventMsg),
    /// An event of our own, for our proxy: the shell queues it on the one ordered path
    /// of our events and hands it back to [`NodeMachine::handle_own_event`].
    OwnEvent(EventMsg),
    /// The connector has work although the node has no `cluster_addr` (a redirect to
    /// follow): the shell runs it (see [`NodeMachine::connector_mut`]) unless it runs.
    RunConnector,
    /// A control node adopted us while the connector resolved, waited between rounds or
    /// dialed: the shell stops the resolution or the wait, and abandons a dial whose
    /// transport is not up yet (reporting it with
    /// [`Connector::handle_dial_abandoned`](crate::connector::Connector::handle_dial_abandoned));
    /// then it asks the connector for its next action.
    InterruptConnector,
    /// Send our information (status, metadata, machine figures) to our proxy: the shell
    /// measures the machine and queues [`WireEvent::Info`] as an own event.
    ReportInfo,
    /// Perform these file operations in order: file transfers that ended without a last
    /// part (their link closed, or they were idle past their deadline).
    FileOps(Vec<crate::transfers::FileOp>),
    /// Something happened (logs, tests, the simulator).
    Event(NodeEvent),
    /// A change for the dashboard's live feed, right after the output that told of it
    /// (only when the shell asked, see [`NodeMachine::set_follow`]).
    ClusterEvent(crate::dashboard::FeedItem),
}

/// The node machine. See the module docs.
#[derive(Debug)]
pub struct NodeMachine<H> {
    settings: NodeSettings,
    links: LinkTable<Link<H>>,
    /// Control members only.
    membership: Option<Membership>,
    proxies: Option<Proxies>,
    /// Members being dialed (one dial at a time each).
    mesh_dialing: BTreeSet<String>,
    connector: Connector,
    status: NodeStatus,
    meta: Meta,
    data: DataRegistry,
    workers: Workers<NodeInfo>,
    events: Events<EventMsg>,
    /// Files being received.
    transfers: Transfers,
    /// Code loaded over the wire.
    modules: ModuleRegistry,
    /// Hand-off steps in flight.
    steps: handoff::Steps,
    /// New links held while the old link of their id is probed (see [`crate::mesh`]).
    held: identity::Held<H>,
    /// When a control member next dials the seeds no linked member announces.
    seed_round: Option<Instant>,
    /// The last status told to our proxy, and on which link (a worker).
    status_told: Option<(u64, Status)>,
    /// The control link our events last started going to, told where we stand (a worker).
    announced: Option<u64>,
    /// Our events while we have no control link, or one not known to be our owner's (a
    /// worker).
    outbox: Outbox,
    /// Events dropped from the outbox since start (for metrics).
    events_dropped: u64,
    /// The control link our class events go to directly: our owner said so
    /// ([`ClusterRequest::Placed`]), or we stopped waiting (a worker).
    placed: Option<u64>,
    /// Until when we wait for our owner to say so on the announced link.
    placed_wait_until: Option<Instant>,
    /// The node is stopping: nothing new is dialed.
    stopping: bool,
    /// The live members as last seen, and how many times they changed.
    live: Vec<String>,
    member_changes: u64,
    /// Describe cluster changes for the dashboard (see `follow`).
    follow: bool,
    /// Our information reports: which periodic ones go.
    info_reports: crate::info_report::InfoReports,
    out: VecDeque<Output<H>>,
}

impl<H: Clone> NodeMachine<H> {
    /// A node that has not started yet (see [`start`](Self::start)).
    pub fn new(settings: NodeSettings) -> Self {
        let control = settings.role == Role::Control;
        let membership = control.then(|| {
            Membership::new(
                &settings.me,
                settings.wall_origin_ns / 1_000_000,
                settings.listen.clone(),
                settings.membership.clone(),
            )
        });
        let proxies = control.then(|| {
            let mut p = Proxies::new(&settings.me, settings.partitions);
            p.set_retry_after(settings.handoff_retry);
            p.set_ring_settle(settings.membership.ring_settle);
            p
        });
        NodeMachine {
            links: LinkTable::new(&settings.me, control),
            membership,
            proxies,
            mesh_dialing: BTreeSet::new(),
            connector: Connector::new(settings.cluster_addr.clone(), settings.backoff.clone()),
            status: NodeStatus::new(),
            meta: settings.meta.clone(),
            data: DataRegistry::new(settings.data_limit),
            workers: Workers::new(settings.workers),
            events: Events::new(settings.events),
            transfers: Transfers::new(&settings.files_dir, settings.transfers),
            modules: ModuleRegistry::new(settings.modules),
            status_told: None,
            announced: None,
            outbox: Outbox::new(settings.outbox),
            events_dropped: 0,
            placed: None,
            placed_wait_until: None,
            steps: Default::default(),
            held: Default::default(),
            seed_round: None,
            stopping: false,
            live: Vec::new(),
            member_changes: 0,
            follow: false,
            info_reports: Default::default(),
            out: VecDeque::new(),
            settings,
        }
    }

    /// The node has started: its status becomes `ready` (an own event).
    pub fn start(&mut self, now: Instant) {
        self.status.handle_started();
        self.after_status();
        if !self.settings.cluster_addr.is_empty() {
            self.connector.start(now);
            self.seeds_start(now);
        }
    }

    /// The next thing to do, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output<H>> {
        let out = self.out.pop_front()?;
        if self.follow
            && let Some(item) = self.feed_item(&out)
        {
            self.out.push_front(Output::ClusterEvent(item));
        }
        Some(out)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next (membership removals and
    /// redial rounds, hand-off retries, forgetting gone workers, abandoned file
    /// transfers).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.transfers.poll_timeout(),
            self.membership.as_ref().and_then(Membership::poll_timeout),
            self.proxies.as_ref().and_then(Proxies::poll_timeout),
            self.workers.poll_timeout(),
            self.steps_poll_timeout(),
            self.seed_round,
            self.placed_wait_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(m) = &mut self.membership {
            m.handle_timeout(now);
        }
        if let Some(p) = &mut self.proxies {
            p.handle_timeout(now);
        }
        self.workers.handle_timeout(now);
        let ops = self.transfers.handle_timeout(now);
        if !ops.is_empty() {
            self.out.push_back(Output::FileOps(ops));
        }
        self.steps_timeout(now);
        self.seeds_timeout(now);
        self.placed_timeout(now);
        self.after_membership(now);
        self.after_proxies(now);
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.settings.me
    }

    /// Whether this node is a control member.
    pub fn is_control(&self) -> bool {
        self.membership.is_some()
    }

    /// Whether the node is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The link table.
    pub fn links(&self) -> &LinkTable<Link<H>> {
        &self.links
    }

    /// The shell's handle of the link serving `peer` (its first), if linked.
    pub fn link_of(&self, peer: &str) -> Option<&H> {
        self.links.first(peer).map(|l| &l.handle)
    }

    /// Control members: the alive members, ourselves included, sorted; empty otherwise.
    pub fn members(&self) -> Vec<String> {
        self.membership
            .as_ref()
            .map(Membership::live)
            .unwrap_or_default()
    }

    /// Control members: the membership view (every record, ourselves first).
    pub fn view(&self) -> Vec<MemberInfo> {
        self.membership
            .as_ref()
            .map(Membership::view)
            .unwrap_or_default()
    }

    /// The connector (which control node to dial next, when to wait or give up).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The connector (the shell follows its plan and reports back).
    pub fn connector_mut(&mut self) -> &mut Connector {
        &mut self.connector
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        self.status.status()
    }

    /// The status this node reports of itself (its own row, its information):
    /// `launching` until [`start`](Self::start) (the shell starts it once its listeners
    /// are up), `connecting` while a worker has no link to a control node (it dials its
    /// `cluster_addr`, or waits to be dialed), otherwise its own status.
    pub fn reported_status(&self) -> Status {
        let own = self.status.status();
        if own != Status::Launching
            && self.settings.role == Role::Worker
            && self.links.count_role(Role::Control) == 0
        {
            return Status::Connecting;
        }
        own
    }

    /// This node's metadata, as text.
    pub fn meta_text(&self) -> String {
        self.meta.to_string()
    }

    /// Listen URLs of `peer` we could dial, with `all` replaced by the address its link
    /// came from.
    pub fn dialable_urls(&self, peer: &str) -> Vec<String> {
        match self.links.first(peer) {
            Some(l) => crate::url::reachable_at(&l.summary.listen, l.remote_ip),
            None => Vec::new(),
        }
    }

    /// Where a request for `node`, forwarded `hops` times already, goes next.
    pub fn route(&self, node: &str, hops: u8) -> RouteStep {
        let control_link = self.links.first_control().map(|(id, _)| id);
        let owner = self.proxies.as_ref().map(|p| p.owner_of(node));
        let view = RouteView {
            me: &self.settings.me,
            is_control: self.proxies.is_some(),
            target_linked: self.links.is_linked(node),
            control_link,
            owner,
            target_reconnecting: self
                .proxies
                .as_ref()
                .is_some_and(|p| p.is_reconnecting(node)),
            target_lost: self.proxies.is_some() && self.workers.is_gone(node),
        };
        route(&view, node, hops)
    }

    /// The members to ask, in order, when `owner` did not hold a node: every live member
    /// but ourselves and the owner.
    pub fn fan_out(&self, owner: &str) -> Vec<String> {
        crate::routing::fan_out(&self.members(), &self.settings.me, owner)
    }

    /// The node is stopping: a control member leaves the membership (the view goes out
    /// before any close), every link is closed in order and nothing new is dialed.
    pub fn handle_shutdown(&mut self, now: Instant) {
        // Stopping first: the leave still goes out, but no hand-off starts on links that
        // close right after (a graceful stop hands workers over before this).
        self.stopping = true;
        self.leave(now);
        for l in self.links.take_all() {
            self.out.push_back(Output::Close {
                link: l.handle,
                reason: "node shutting down".into(),
            });
        }
    }

    /// A control member leaves on purpose (gossiped at once): the ring moves every
    /// partition to the other members and its workers are handed over.
    pub fn leave(&mut self, now: Instant) {
        if let Some(m) = &mut self.membership {
            m.leave();
        }
        self.after_membership(now);
    }

    /// One part of a file for `files_dir`, from `from`: the file operations to perform in
    /// order, then the outcome (see [`Transfers::handle_part`]).
    pub fn handle_file_part(
        &mut self,
        now: Instant,
        from: &str,
        part: crate::transfers::Part<'_>,
    ) -> crate::transfers::PartOutcome {
        self.transfers.handle_part(now, from, part)
    }

    /// The shell's SHA-256 of a transfer's written bytes, after a
    /// [`FileOp::Digest`](crate::transfers::FileOp::Digest): the machine decides
    /// whether the file goes into place (see [`Transfers::handle_digest`]).
    pub fn handle_file_digest(
        &mut self,
        path: &str,
        digest: [u8; 32],
    ) -> crate::transfers::PartOutcome {
        self.transfers.handle_digest(path, digest)
    }

    /// Where the transfer of `path` (`total` bytes, whole-file SHA-256 `sha256`) is at:
    /// the bytes confirmed, and file operations to perform first (expiry); see
    /// [`Transfers::status`].
    pub fn handle_file_status(
        &mut self,
        now: Instant,
        path: &str,
        total: u64,
        sha256: &[u8; 32],
    ) -> Result<(u64, Vec<crate::transfers::FileOp>), crate::transfers::TransferError> {
        self.transfers.status(now, path, total, sha256)
    }

    /// Performing a transfer's file operations failed: the transfer is dropped and the
    /// operations that clean up after it are returned.
    #[must_use]
    pub fn handle_file_error(&mut self, path: &str) -> Vec<crate::transfers::FileOp> {
        self.transfers.handle_io_error(path)
    }

    /// Wall clock at `now`, Unix ms.
    fn wall_ms(&self, now: Instant) -> u64 {
        self.settings.wall_origin_ns.saturating_add(now.as_nanos()) / 1_000_000
    }

    /// Queues a node-level event of ours.
    fn own_node_event(&mut self, event: WireEvent) {
        self.out.push_back(Output::OwnEvent(EventMsg {
            node: self.settings.me.clone(),
            class: NODE_EVENT_CLASS.into(),
            task: None,
            event,
        }));
    }
}
