//! The node daemon: listeners, dials, the request API. Every connection runs in its own
//! task ([`crate::driver::drive`]). Every decision is the core node machine's
//! ([`nkcluster_core::node`]); this module feeds it and performs what it decides.
//!
//! This file: the public types and the node's state. The rest: `brain` (the task that
//! owns the machine: inputs, outputs, its timer and its snapshot), `start` (starting),
//! `api` (requests, jobs, files), `code` (loading WebAssembly modules),
//! `routing` (sending anywhere, connecting), `stop` (graceful leave), `handler`
//! (carrying out what dispatch hands the shell), `links` (dial, accept, one connection),
//! `metrics` (counters and gauges for `/metrics`), `worker_side` (task bodies, files,
//! machine figures), `control_side` (gathering the
//! node table and events over the mesh), `lifecycle` (join, connect, remove), `tasks`
//! (dials, reports, the connector loop), `dashboard` (the cluster view and the feed of
//! cluster changes).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::ConnError;
use nkcluster_core::admission::{Admission, Refusal};
use nkcluster_core::auth::Key;
use nkcluster_core::cluster::{decode_reply, encode_answer, encode_body};
use nkcluster_core::conn::{Connection, ConnectionParams, Event, RequestError};
pub use nkcluster_core::conn_error::{ConnectError, Fatal};
use nkcluster_core::error::ErrorCode;
pub use nkcluster_core::handlers::{FunctionFn, HandlerFn, Handlers};
use nkcluster_core::handshake::{Identity, Role, Side};
use nkcluster_core::message::RemoteError;
use nkcluster_core::node::{
    Link, LinkGone, NodeMachine, NodeSettings, Output, check_dialed_worker, check_exclusive_peer,
    worker_dial_urls,
};
pub use nkcluster_core::node::{NodeEvent, PeerSummary};
use nkcluster_core::status::Status;
use nkcluster_core::url::{ClusterUrl, Host, TlsOptions, Transport, parse_url};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, TlsTime};
use crate::cmdq;
use crate::config::NodeConfig;
use crate::discovery::{Dns, DnsSetupError};
use crate::driver::{Answer, Command, EventSink, RequestHandler, Responder, drive};
use crate::jobs::{
    EventMsg, FilePart, JobCall, JobClass, NodeInfo, NodeJobEvent, Stats, TaskStarted, WireEvent,
};
use crate::net::Net;
use crate::transport::{self, ServerTls};
use nkcluster_core::discovery::{Candidate, DiscoveryError};

mod api;
mod brain;
mod code;
mod control_side;
mod dashboard;
mod event_feed;
mod handler;
mod lifecycle;
mod links;
mod metrics;
mod part_files;
mod routing;
mod send_file;
pub use send_file::{SendFileOptions, SendReport};
mod start;
mod stop;
mod tasks;
mod worker_side;

use brain::*;
use handler::*;
use links::*;
use tasks::*;

/// Commands queued per connection before callers wait.
const COMMAND_QUEUE: usize = 1024;
/// Node events kept for slow subscribers.
const EVENT_QUEUE: usize = 4096;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A listen URL cannot be served.
    #[error("cannot listen on {url}: {error}")]
    Listen {
        /// The URL.
        url: String,
        /// Why.
        error: String,
    },
}

/// Options of [`Node::request_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// How long to wait for the reply.
    pub timeout: Duration,
    /// Use a dedicated connection.
    pub exclusive: bool,
}

/// Files received at once (each holds an open `.part` file).
const MAX_TRANSFERS: usize = 64;
/// Refusal lines (handshake failures, refusals at accept, forbidden messages): at most
/// `REFUSAL_LOG_BURST` per source per interval, the next one saying how many were left
/// out (each left-out one is a debug line).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// See [`REFUSAL_LOG_INTERVAL`].
const REFUSAL_LOG_BURST: u32 = 5;
/// Sources the refusal log limiter tracks at most.
const REFUSAL_LOG_SOURCES: usize = 4096;
/// The data registry's size limit (keys plus values), bytes.
const DATA_LIMIT: usize = 64 * 1024 * 1024;
/// Machine figures younger than this are reused.
const STATS_MAX_AGE: Duration = Duration::from_secs(1);
/// How often a node reports its information to its control node.
const INFO_EVERY: Duration = Duration::from_secs(10);
/// The size of the events a disconnected worker keeps, bytes (their count is the
/// `event_buffer` option).
const EVENT_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// How long a control node waits for each member's rows.
const GATHER_TIMEOUT: Duration = Duration::from_secs(3);

pub use nkcluster_core::cluster::{
    AdoptRequest, CLASS_ADOPT, CLASS_CALL, CLASS_EVENT_STREAM, CLASS_JOB, CLASS_JOB_EVENT,
    CLASS_LOCAL_NODES, CLASS_NODE_INFO, CLASS_NODES, CLASS_RECENT_EVENTS, CLASS_REDIRECT,
    CLASS_ROUTE, CLASS_SPAWN_CALL, CLASS_SUBSCRIBE, CallRequest, ClusterRequest, RouteRequest,
    SubscribeRequest,
};
pub use nkcluster_core::cluster::{
    CLASS_DIAL, CLASS_REMOVE, DialRequest, RemoveReport, RemoveRequest,
};
pub use nkcluster_core::table::{NodeRow, NodesReport};

/// The error for a node nobody in the cluster holds.
fn unknown_node(node: &str) -> RequestError {
    RequestError::Remote(RemoteError::new(
        ErrorCode::UnknownNode,
        format!("no node {node:?} is connected to the cluster"),
    ))
}

/// A routed request after its synchronous half.
enum Routed {
    /// Answered already.
    Done(Result<Bytes, RequestError>),
    /// Served by this node itself, answered later.
    Local(oneshot::Receiver<Result<Bytes, RemoteError>>),
    /// Queued on the target's own link.
    Direct(Result<crate::reply::Receiver, RequestError>),
    /// Queued to a control node that routes it further.
    Forwarded {
        rx: Result<crate::reply::Receiver, RequestError>,
        body: Bytes,
        owner: String,
        fallback: bool,
    },
}

/// Waits for a queued request's outcome, at most until `deadline` (a request still
/// queued behind a backed-up link then ends `timeout`, like one that was sent).
async fn wait_reply(
    rx: Result<crate::reply::Receiver, RequestError>,
    deadline: tokio::time::Instant,
) -> Result<Bytes, RequestError> {
    let rx = rx?;
    tokio::time::timeout_at(deadline, rx)
        .await
        .map_err(|_| RequestError::Timeout)?
        .unwrap_or(Err(RequestError::ConnectionFailed))
}

/// How the node meets the outside world: the network, randomness and the wall clock.
#[derive(Debug, Clone)]
pub struct Env<N> {
    /// The network.
    pub net: N,
    /// Seed for nonces, instance ids and jitter (`None`: from the OS).
    pub seed: Option<u64>,
    /// Wall clock at start, Unix ns (`None`: the system clock). When set, TLS reads this
    /// clock too (certificate validity, ticket ages).
    pub wall_origin_ns: Option<u64>,
    /// The rustls crypto provider of every TLS setup (`None`: rustls's ring provider, OS
    /// randomness). A simulation passes one whose randomness is seeded.
    pub tls_provider: Option<Arc<rustls::crypto::CryptoProvider>>,
    /// Machine figures to report instead of measuring this machine (`None`: measure it);
    /// their `time_ms` is replaced by the node's clock. A simulation fixes them: the real
    /// machine's would differ between two replays of a seed.
    pub machine_figures: Option<Stats>,
}

impl Env<crate::net::TokioNet> {
    /// The production environment: tokio's real sockets, randomness from the OS, the
    /// system clock, rustls's ring provider, this machine's figures.
    pub fn real() -> Self {
        Env {
            net: crate::net::TokioNet,
            seed: None,
            wall_origin_ns: None,
            tls_provider: None,
            machine_figures: None,
        }
    }
}

/// The shell's handle of a link: its command channel (a byte pump's input).
type Pump = cmdq::Sender<Command>;

struct Inner<N: Net> {
    config: NodeConfig,
    /// The connector's task runs (set and cleared only inside the machine's owner task,
    /// so that a redirect that wakes an idle connector is never missed).
    connector_running: std::sync::atomic::AtomicBool,
    /// Bumped when the connector's current step is void (a control node adopted us while
    /// it resolved, waited or dialed: `Output::InterruptConnector`).
    connector_interrupt: watch::Sender<u64>,
    identity: Identity,
    net: N,
    /// Discovery's DNS, set up at its first use ([`Net::dns`]).
    dns: std::sync::OnceLock<Result<Arc<dyn Dns>, DnsSetupError>>,
    clock: Clock,
    keys: Mutex<HashMap<String, Key>>,
    rng: Mutex<StdRng>,
    /// The way to the task that owns the node machine (every decision above one link,
    /// see [`nkcluster_core::node`]), and its published snapshot.
    brain: Brain,
    next_conn_id: AtomicU64,
    events: event_feed::LazyBroadcast<NodeEvent>,
    handlers: Handlers,
    shutdown: watch::Sender<bool>,
    fatal: watch::Sender<Option<Fatal>>,
    client_tls: Mutex<HashMap<TlsOptions, Arc<rustls::ClientConfig>>>,
    /// What every TLS setup of this node draws randomness and time from.
    tls_crypto: transport::TlsCrypto,
    /// The bodies of running tasks, by id (the task table itself is the brain's).
    tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    /// Our events, in order, on their way to the brain (then to our proxy).
    events_out: brain::OwnEvents,
    /// Control side: events of the workers we serve.
    job_events: event_feed::LazyBroadcast<NodeJobEvent>,
    /// The `.part` files of the transfers in progress (open between parts) and kept,
    /// with their running hashes.
    part_files: Mutex<part_files::PartFiles>,
    /// File operations decided by the machine and not yet performed, in decision order
    /// (the writer thread performs them; see `perform_decided_file_ops`).
    decided_file_ops: Mutex<DecidedFileOps>,
    /// Control side: the dedicated connections of big files routed through us, by
    /// (target, path, SHA-256).
    file_links: Mutex<HashMap<send_file::FileLinkKey, send_file::FileLink>>,
    /// File parts are written in arrival order by one thread (started at first use).
    file_writer: Mutex<Option<std::sync::mpsc::Sender<WriterJob>>>,
    /// Machine figures for `get_info`, and the latest sample (taken at most once per
    /// `STATS_MAX_AGE`: disk enumeration is not cheap).
    sys: Mutex<sysinfo::System>,
    /// Figures reported instead of measured ([`Env::machine_figures`]).
    machine_figures: Option<Stats>,
    stats_cache: Mutex<Option<(nkcluster_core::Instant, Stats)>>,
    /// Connection tasks still running (any phase), for an orderly stop.
    running: watch::Sender<usize>,
    /// Accepted connections that have not authenticated yet.
    admission: Arc<Mutex<Admission>>,
    /// Refusal lines: one per source per interval.
    log_limit: Mutex<nkcluster_core::loglimit::LogLimiter>,
    /// The dashboard's feed of cluster changes.
    following: dashboard::Following,
    /// What the node counts for its metrics (links count into it through their meters).
    telemetry: Arc<nkcluster_core::telemetry::Telemetry>,
}

/// Work for the file writer thread, done in the order queued.
/// Numbered batches of file operations, in the order the machine decided them.
#[derive(Default)]
struct DecidedFileOps {
    next: u64,
    queue: std::collections::VecDeque<(u64, Vec<nkcluster_core::transfers::FileOp>)>,
}

enum WriterJob {
    /// A part from a peer, answered when written.
    Part(String, worker_side::FileWork, Responder),
    /// The machine decided operations for transfers that ended without a last part:
    /// perform what is decided.
    Perform,
}

impl<N: Net> Inner<N> {
    /// Whether to write a refusal line about `source` now (and what to append), or
    /// leave it out (counted, told with the next line).
    fn log_line(&self, source: &str) -> Option<nkcluster_core::loglimit::Line> {
        lock(&self.log_limit).note(self.clock.now(), source)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole node down with poisoned locks.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running node. Cloning gives another handle to the same node.
pub struct Node<N: Net> {
    inner: Arc<Inner<N>>,
    listen_addrs: Arc<Vec<(Transport, SocketAddr)>>,
}

impl<N: Net> Clone for Node<N> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
            listen_addrs: self.listen_addrs.clone(),
        }
    }
}

/// The transport named by a remote or URL label (`tls:10.0.0.1:1973`), as its own log
/// field (`""` for a label without one).
fn transport_field(label: &str) -> &'static str {
    nkcluster_core::telemetry::transport_of_remote(label).map_or("", |t| t.as_str())
}
