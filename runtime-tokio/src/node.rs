//! The node daemon: listeners, the connector that dials `cluster_addr`, the table of
//! authenticated peers, and the request API. Every connection runs in its own task
//! ([`crate::driver::drive`]); the node only keeps track of them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nkcluster_core::ConnError;
use nkcluster_core::admission::{Admission, Refusal};
use nkcluster_core::auth::Key;
use nkcluster_core::conn::{Connection, ConnectionParams, Event, RequestError};
use nkcluster_core::handshake::{Identity, PeerInfo, Role, Side};
use nkcluster_core::membership::{MemberEvent, MemberInfo, Membership, MembershipConfig};
use nkcluster_core::message::RemoteError;
use nkcluster_core::proxy::{Action, Proxies};
use nkcluster_core::status::{NodeStatus, Status, StatusEvent};
use nkcluster_core::url::{ClusterUrl, Host, TlsOptions, Transport, parse_url};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::driver::{Answer, Command, EventSink, RequestHandler, Responder, drive};
use crate::jobs::{
    EventMsg, FilePart, JobCall, JobClass, JobClasses, NodeInfo, NodeJobEvent, Stats, TaskStarted,
    WireEvent,
};
use crate::net::Net;
use crate::transport::{self, ServerTls, merge_tls};

/// Commands queued per connection before callers wait.
const COMMAND_QUEUE: usize = 1024;
/// Node events kept for slow subscribers.
const EVENT_QUEUE: usize = 4096;

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
    /// The connector spent its attempt budget.
    GaveUp {
        /// Error code of the last failure.
        code: String,
    },
}

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

/// Why [`Node::connect`] reached no peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConnectError {
    /// Stable code: `invalid_scheme`, `invalid_transport`, `syntax_error`,
    /// `no_connections`, `auth_failed`, `cluster_mismatch`, `tls_error`, `tls_config`, ...
    pub code: String,
    /// Detail.
    pub detail: String,
}

impl std::fmt::Display for ConnectError {
    /// `code: detail`, or the detail alone when it names the code already (typed errors
    /// print their own code).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.contains(self.code.as_str()) {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.code, self.detail)
        }
    }
}

/// Options of [`Node::request_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// How long to wait for the reply.
    pub timeout: Duration,
    /// Use a dedicated connection.
    pub exclusive: bool,
}

/// Where the process should stop: the connector gave up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("gave up connecting to the cluster: {code}: {detail}")]
pub struct Fatal {
    /// Error code of the last attempt (`auth_failed`, `no_connections`, ...).
    pub code: String,
    /// Detail.
    pub detail: String,
}

/// A summary of one authenticated link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Peer node id.
    pub node_id: String,
    /// Peer role.
    pub role: Role,
    /// Transport and remote address.
    pub remote: String,
    /// Whether we dialed.
    pub dialer: bool,
    /// Peer listen URLs.
    pub listen: Vec<String>,
    /// Peer metadata.
    pub meta: String,
}

/// Handlers for incoming requests, by class name. Built in: `nkcluster.echo` (returns
/// the body) and `nkcluster.node` (returns this node's id).
#[derive(Clone)]
pub struct Handlers {
    map: HashMap<String, HandlerFn>,
    functions: HashMap<String, FunctionFn>,
    classes: JobClasses,
}

/// A named function of the registry that `call` reaches (arguments as strings).
pub type FunctionFn = Arc<dyn Fn(&[String]) -> Result<String, RemoteError> + Send + Sync>;

/// A synchronous request handler.
pub type HandlerFn = Arc<dyn Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync>;

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// The built-in handlers for `node_id`.
    pub fn builtin(node_id: &str) -> Self {
        let mut h = Handlers {
            map: HashMap::new(),
            functions: HashMap::new(),
            classes: JobClasses::new(),
        };
        h.insert("nkcluster.echo", Ok);
        let id = Bytes::from(node_id.to_owned());
        h.insert("nkcluster.node", move |_| Ok(id.clone()));
        let name = node_id.to_owned();
        h.insert_function("node", move |_| Ok(name.clone()));
        h.insert_function("echo", |args| Ok(args.join(" ")));
        h
    }

    /// Sets the job classes this node runs (worker side) and hears (control side).
    pub fn set_classes(&mut self, classes: JobClasses) {
        self.classes = classes;
    }

    /// Adds or replaces a named function (what `call` and `nkcluster call` reach).
    /// Built in: `node` (this node's id) and `echo` (its arguments, space separated).
    pub fn insert_function(
        &mut self,
        name: &str,
        f: impl Fn(&[String]) -> Result<String, RemoteError> + Send + Sync + 'static,
    ) {
        self.functions.insert(name.to_owned(), Arc::new(f));
    }

    /// Adds or replaces a handler.
    pub fn insert(
        &mut self,
        class: &str,
        f: impl Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync + 'static,
    ) {
        self.map.insert(class.to_owned(), Arc::new(f));
    }
}

impl Handlers {
    /// Runs the handler of `class` (at once: these handlers are synchronous).
    pub fn call(&self, class: &str, body: Bytes) -> Result<Bytes, RemoteError> {
        if class == CLASS_CALL || class == CLASS_SPAWN_CALL {
            let req: CallRequest = postcard::from_bytes(&body)
                .map_err(|e| RemoteError::new("bad_request", format!("call: {e}")))?;
            let f = self.functions.get(&req.function).ok_or_else(|| {
                RemoteError::new(
                    "unknown_function",
                    format!("no function {:?} is registered", req.function),
                )
            })?;
            // A function that panics is reported with its message; the node keeps running.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&req.args)))
                .map_err(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    RemoteError::new("function_panicked", msg)
                })??;
            return Ok(Bytes::from(r));
        }
        match self.map.get(class) {
            Some(f) => f(body),
            None => Err(RemoteError::new(
                "unknown_class",
                format!("no handler for class {class:?}"),
            )),
        }
    }
}

/// Admin request: every node this node has a link to, and itself.
pub const CLASS_NODES: &str = "nkcluster.nodes";
/// Admin request: one node's row (body: the node id, UTF-8).
pub const CLASS_NODE_INFO: &str = "nkcluster.node_info";
/// Between control nodes: the rows of the answering node's own links.
pub const CLASS_LOCAL_NODES: &str = "nkcluster.local_nodes";
/// Between control nodes: "dial this worker and serve it" (a proxy hand-off). Body: an
/// [`AdoptRequest`] (postcard).
pub const CLASS_ADOPT: &str = "nkcluster.adopt";
/// From a control node to a worker: "reconnect to these URLs" (its owner's). Body: the
/// URL list, UTF-8, comma separated.
pub const CLASS_REDIRECT: &str = "nkcluster.redirect";
/// Any node: call a named function of its registry. Body: a [`CallRequest`] (postcard);
/// reply: the function's result, UTF-8.
pub const CLASS_CALL: &str = "nkcluster.call";
/// Like [`CLASS_CALL`], but the function runs on the blocking pool, so a long call does
/// not hold up the link (the original's `spawn_call`).
pub const CLASS_SPAWN_CALL: &str = "nkcluster.spawn_call";
/// To a control node: "stream me the events you hear" (body: a [`SubscribeRequest`]).
pub const CLASS_SUBSCRIBE: &str = "nkcluster.subscribe";
/// A control node to a subscriber: one event (body: an [`EventMsg`], postcard).
pub const CLASS_EVENT_STREAM: &str = "nkcluster.event_stream";
/// To a control node: "send this request to that node", wherever its proxy lives (routed
/// over the mesh to the owner when needed). Body: a [`RouteRequest`] (postcard).
pub const CLASS_ROUTE: &str = "nkcluster.route";
/// To a control node: the job events it heard last, oldest first, as `(wall ms, event)`
/// pairs (postcard). An empty body gathers every control member's too; `local` asks for
/// the answering node's only.
pub const CLASS_RECENT_EVENTS: &str = "nkcluster.recent_events";
/// Job events a control node keeps for [`CLASS_RECENT_EVENTS`] (periodic info reports
/// are not kept).
const RECENT_EVENTS: usize = 200;
/// Any node: a job operation (a [`JobCall`], postcard).
pub const CLASS_JOB: &str = "nkcluster.job";
/// Worker to its control node: an event ([`EventMsg`], postcard).
pub const CLASS_JOB_EVENT: &str = "nkcluster.job_event";
/// Size of the parts big files travel in.
const FILE_PART: usize = 1024 * 1024;
/// Files received at once (each holds an open `.part` file).
const MAX_TRANSFERS: usize = 64;
/// File parts in flight at once.
const FILE_WINDOW: usize = 2;
/// The data registry's size limit (keys plus values), bytes.
const DATA_LIMIT: usize = 64 * 1024 * 1024;
/// Machine figures younger than this are reused.
const STATS_MAX_AGE: Duration = Duration::from_secs(1);
/// How often a node reports its information to its control node.
const INFO_EVERY: Duration = Duration::from_secs(10);
/// How long a control node waits for each member's rows.
const GATHER_TIMEOUT: Duration = Duration::from_secs(3);

/// A `call` of a named function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallRequest {
    /// Function name.
    pub function: String,
    /// Arguments.
    pub args: Vec<String>,
}

/// A subscription to a control node's events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscribeRequest {
    /// Who receives the stream (linked to the control node).
    pub subscriber: String,
    /// Also gather every other control member's events (an admin client's whole-cluster
    /// view); members asked on its behalf stream to this control node only.
    pub fanout: bool,
}

/// A request for another node, routed by control nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRequest {
    /// Target node id.
    pub node: String,
    /// Request class.
    pub class: String,
    /// Request body.
    pub body: Bytes,
    /// Deadline, milliseconds.
    pub timeout_ms: u64,
    /// Control nodes it went through (a routed request is forwarded at most once).
    pub hops: u8,
}

/// A proxy hand-off: the worker and the URLs to dial it at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdoptRequest {
    /// The worker's node id.
    pub worker: String,
    /// Its listen URLs (`all` already replaced by the address it was reached at).
    pub urls: Vec<String>,
}

pub use nkcluster_core::table::{NodeRow, NodesReport};

/// Answers the node's own request classes, then the registered handlers.
struct NodeHandler<N: Net> {
    inner: Arc<Inner<N>>,
}

impl<N: Net> RequestHandler for NodeHandler<N> {
    fn handle(&self, peer: &str, class: &str, body: Bytes, responder: Responder) -> Answer {
        match class {
            // This node's own links only (what other control nodes gather).
            CLASS_LOCAL_NODES => Answer::Now(encode(&self.inner.node_rows())),
            CLASS_SUBSCRIBE if self.inner.membership.is_some() => {
                match postcard::from_bytes::<SubscribeRequest>(&body) {
                    // Only a node linked here can receive the stream.
                    Ok(req) if !lock(&self.inner.peers).contains_key(&req.subscriber) => {
                        Answer::Now(Err(RemoteError::new(
                            "not_connected",
                            format!("{} is not linked here", req.subscriber),
                        )))
                    }
                    Ok(req) => {
                        self.inner.subscribe(req);
                        Answer::Now(Ok(Bytes::new()))
                    }
                    Err(e) => Answer::Now(Err(RemoteError::new("bad_request", e.to_string()))),
                }
            }
            // A member's event for our whole-cluster subscribers.
            CLASS_EVENT_STREAM if self.inner.membership.is_some() => {
                self.inner.publish(&body, true);
                Answer::Now(Ok(Bytes::new()))
            }
            CLASS_SPAWN_CALL => {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || {
                    responder.reply(inner.handlers.call(CLASS_SPAWN_CALL, body));
                });
                Answer::Later
            }
            CLASS_JOB => match postcard::from_bytes::<JobCall>(&body) {
                Err(e) => Answer::Now(Err(RemoteError::new("bad_request", format!("job: {e}")))),
                // A class's request and command callbacks may take a while: they run on
                // the blocking pool, so the link (pings, other requests) never waits.
                Ok(JobCall::SendFile(part)) => {
                    self.inner.write_file_part(peer, part, responder);
                    Answer::Later
                }
                Ok(call @ (JobCall::Request { .. } | JobCall::Command { .. })) => {
                    let inner = self.inner.clone();
                    let peer = peer.to_owned();
                    tokio::task::spawn_blocking(move || {
                        responder.reply(inner.job_call(&peer, call))
                    });
                    Answer::Later
                }
                Ok(call) => Answer::Now(self.inner.job_call(peer, call)),
            },
            CLASS_JOB_EVENT if self.inner.membership.is_some() => Answer::Now(
                postcard::from_bytes::<EventMsg>(&body)
                    .map_err(|e| RemoteError::new("bad_request", format!("event: {e}")))
                    .map(|ev| {
                        self.inner.handle_job_event(ev);
                        Bytes::new()
                    }),
            ),
            CLASS_ROUTE if self.inner.membership.is_some() => {
                let req: RouteRequest = match postcard::from_bytes(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return Answer::Now(Err(RemoteError::new(
                            "bad_request",
                            format!("route: {e}"),
                        )));
                    }
                };
                let node = Node::from_inner(self.inner.clone());
                // Queued now, in arrival order; answered when the reply comes.
                let timeout = Duration::from_millis(req.timeout_ms);
                let routed = node.route_enqueue(&req.node, &req.class, req.body, timeout, req.hops);
                tokio::spawn(async move {
                    let r =
                        node.route_finish(&req.node, routed, timeout)
                            .await
                            .map_err(|e| match e {
                                RequestError::Remote(r) => r,
                                e => RemoteError::new(e.code(), e.to_string()),
                            });
                    responder.reply(r);
                });
                Answer::Later
            }
            CLASS_ADOPT if self.inner.proxies.is_some() => {
                let req: AdoptRequest = match postcard::from_bytes(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return Answer::Now(Err(RemoteError::new(
                            "bad_request",
                            format!("adopt: {e}"),
                        )));
                    }
                };
                tokio::spawn(adopt(self.inner.clone(), req, responder));
                Answer::Later
            }
            CLASS_REDIRECT if self.inner.membership.is_none() => {
                let text = String::from_utf8_lossy(&body);
                match nkcluster_core::url::parse_url_list(&text) {
                    Ok(urls) if urls.is_empty() => Answer::Now(Err(RemoteError::new(
                        "bad_request",
                        "a redirect needs at least one URL",
                    ))),
                    Ok(urls) => {
                        info!(node = %self.inner.config.node_id, to = %text, "told to reconnect to our proxy's owner");
                        lock(&self.inner.connector).handle_redirect(urls);
                        Answer::Now(Ok(Bytes::new()))
                    }
                    Err(e) => Answer::Now(Err(RemoteError::new(e.code(), e.to_string()))),
                }
            }
            CLASS_RECENT_EVENTS if self.inner.membership.is_some() => {
                if body.as_ref() == b"local" {
                    let recent: Vec<(u64, EventMsg)> =
                        lock(&self.inner.recent).iter().cloned().collect();
                    return Answer::Now(encode(&recent));
                }
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    responder.reply(encode(&inner.cluster_recent_events().await));
                });
                Answer::Later
            }
            // The whole cluster: ours plus every control member's, gathered over the mesh.
            CLASS_NODES | CLASS_NODE_INFO => {
                let inner = self.inner.clone();
                let want =
                    (class == CLASS_NODE_INFO).then(|| String::from_utf8_lossy(&body).into_owned());
                tokio::spawn(async move {
                    let report = inner.cluster_rows().await;
                    let r = match want {
                        None => encode(&report),
                        Some(id) => match report.rows.into_iter().find(|r| r.id == id) {
                            Some(row) => encode(&row),
                            None if !report.incomplete.is_empty() => Err(RemoteError::new(
                                "incomplete",
                                format!(
                                    "no node {id:?} among the answers, but {} did not answer: the list is incomplete",
                                    report.incomplete.join(", ")
                                ),
                            )),
                            None => Err(RemoteError::new(
                                "unknown_node",
                                format!("no node {id:?} is known in the cluster"),
                            )),
                        },
                    };
                    responder.reply(r);
                });
                Answer::Later
            }
            _ => Answer::Now(self.inner.handlers.call(class, body)),
        }
    }
}

/// The error for a node nobody in the cluster holds.
fn unknown_node(node: &str) -> RequestError {
    RequestError::Remote(RemoteError::new(
        "unknown_node",
        format!("no node {node:?} is connected to the cluster"),
    ))
}

/// A routed request after its synchronous half.
enum Routed {
    /// Answered already.
    Done(Result<Bytes, RequestError>),
    /// Queued on the target's own link.
    Direct(Result<oneshot::Receiver<Result<Bytes, RequestError>>, RequestError>),
    /// Queued to a control node that routes it further.
    Forwarded {
        rx: Result<oneshot::Receiver<Result<Bytes, RequestError>>, RequestError>,
        body: Bytes,
        owner: String,
        fallback: bool,
    },
}

async fn wait_reply(
    rx: Result<oneshot::Receiver<Result<Bytes, RequestError>>, RequestError>,
) -> Result<Bytes, RequestError> {
    rx?.await.unwrap_or(Err(RequestError::ConnectionFailed))
}

fn encode_req<T: serde::Serialize>(v: &T) -> Result<Bytes, RequestError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| RequestError::Remote(RemoteError::new("bad_request", e.to_string())))
}

fn decode_reply<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, RequestError> {
    postcard::from_bytes(b)
        .map_err(|e| RequestError::Remote(RemoteError::new("bad_reply", e.to_string())))
}

fn encode(v: &dyn erased::Encode) -> Result<Bytes, RemoteError> {
    v.encode()
        .map_err(|e| RemoteError::new("internal_error", e.to_string()))
}

mod erased {
    //! postcard encoding behind a trait object (so one closure serves several types).
    use bytes::Bytes;

    pub(super) trait Encode {
        fn encode(&self) -> Result<Bytes, postcard::Error>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Bytes, postcard::Error> {
            postcard::to_allocvec(self).map(Bytes::from)
        }
    }
}

/// How the node meets the outside world: the network, randomness and the wall clock.
#[derive(Debug, Clone)]
pub struct Env<N> {
    /// The network.
    pub net: N,
    /// Seed for nonces, instance ids and jitter (`None`: from the OS).
    pub seed: Option<u64>,
    /// Wall clock at start, Unix ns (`None`: the system clock).
    pub wall_origin_ns: Option<u64>,
}

struct PeerLink {
    conn_id: u64,
    commands: mpsc::Sender<Command>,
    summary: PeerSummary,
    /// IP address the link reached (to dial a peer announced on `all`).
    remote_ip: Option<IpAddr>,
    /// Latest ping round trip, microseconds (0: none yet).
    rtt_us: Arc<AtomicU64>,
}

struct Inner<N: Net> {
    config: NodeConfig,
    identity: Identity,
    net: N,
    clock: Clock,
    keys: Mutex<HashMap<String, Key>>,
    rng: Mutex<StdRng>,
    peers: Mutex<BTreeMap<String, Vec<PeerLink>>>,
    next_conn_id: AtomicU64,
    events: broadcast::Sender<NodeEvent>,
    handlers: Handlers,
    shutdown: watch::Sender<bool>,
    fatal: watch::Sender<Option<Fatal>>,
    client_tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
    /// Control nodes only: the membership view, and members being dialed.
    membership: Option<Mutex<Membership>>,
    mesh_dialing: Mutex<std::collections::BTreeSet<String>>,
    membership_timer: tokio::sync::Notify,
    /// Control nodes only: which workers we serve, and hand-offs.
    proxies: Option<Mutex<Proxies>>,
    /// Nodes with `cluster_addr`: what to dial next (a redirect first, once), when to
    /// wait, when to give up.
    connector: Mutex<nkcluster_core::connector::Connector>,
    /// This node's status and running tasks (every node runs jobs).
    status: Mutex<NodeStatus>,
    /// The bodies of running tasks, by id (the task table itself is the status
    /// machine's).
    tasks: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    /// Our events, in order, to the control node holding our proxy.
    events_out: mpsc::UnboundedSender<EventMsg>,
    /// Control side: events of the workers we serve.
    job_events: broadcast::Sender<NodeJobEvent>,
    /// Control side: per worker, the classes that have seen it, its last status and
    /// information (bounded; gone workers are forgotten after a while).
    workers: Mutex<nkcluster_core::workers::Workers<NodeInfo>>,
    /// This node's metadata (updated by `update_meta` / `remove_meta`).
    meta: Mutex<nkcluster_core::meta::Meta>,
    /// The data registry (`get_data` / `put_data` / `del_data`).
    data: Mutex<nkcluster_core::data::DataRegistry>,
    /// Files being received (the core receiver machine).
    transfers: Mutex<nkcluster_core::transfers::Transfers>,
    /// The `.part` files of the transfers in progress, open between parts.
    open_files: Mutex<HashMap<std::path::PathBuf, std::fs::File>>,
    /// File parts are written in arrival order by one thread (started at first use).
    file_writer: Mutex<Option<std::sync::mpsc::Sender<(String, FilePart, Responder)>>>,
    /// Machine figures for `get_info`, and the latest sample (taken at most once per
    /// `STATS_MAX_AGE`: disk enumeration is not cheap).
    sys: Mutex<sysinfo::System>,
    stats_cache: Mutex<Option<(nkcluster_core::Instant, Stats)>>,
    /// Control side: the last job events heard, with their wall time (ms).
    recent: Mutex<std::collections::VecDeque<(u64, EventMsg)>>,
    /// Control side: who gets our events (id -> wants the whole cluster's).
    subscribers: Mutex<HashMap<String, bool>>,
    /// Connection tasks still running (any phase), for an orderly stop.
    running: watch::Sender<usize>,
    /// Accepted connections that have not authenticated yet.
    admission: Arc<Mutex<Admission>>,
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

impl<N: Net> Node<N> {
    /// A handle for the node's own tasks (they do not need the listen addresses).
    fn from_inner(inner: Arc<Inner<N>>) -> Self {
        Node {
            inner,
            listen_addrs: Arc::new(Vec::new()),
        }
    }

    /// Starts a node: binds its listeners, then dials `cluster_addr` in the background.
    pub async fn start(config: NodeConfig, env: Env<N>) -> Result<Node<N>, StartError> {
        Self::start_with(config, env, None).await
    }

    /// Like [`start`](Self::start), with extra request handlers.
    pub async fn start_with(
        config: NodeConfig,
        env: Env<N>,
        handlers: Option<Handlers>,
    ) -> Result<Node<N>, StartError> {
        let mut rng = match env.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        // One generated certificate serves every TLS listener without a configured one.
        let mut generated: Option<ServerTls> = None;
        for url in &config.listen {
            let addr = bind_addr(url).map_err(|error| StartError::Listen {
                url: url.remote_label(),
                error,
            })?;
            let tls = if url.transport.is_tls() {
                let opts = merge_tls(&config.tls, &url.tls);
                let t = if opts.certfile.is_none() && generated.is_some() {
                    generated.clone()
                } else {
                    let t = transport::server_tls(&opts, &config.node_id).map_err(|e| {
                        StartError::Listen {
                            url: url.remote_label(),
                            error: e.to_string(),
                        }
                    })?;
                    if t.self_signed {
                        generated = Some(t.clone());
                    }
                    Some(t)
                };
                t.map(Arc::new)
            } else {
                None
            };
            let l = env.net.bind(addr).await.map_err(|e| StartError::Listen {
                url: url.remote_label(),
                error: e.to_string(),
            })?;
            let local = env.net.local_addr(&l).map_err(|e| StartError::Listen {
                url: url.remote_label(),
                error: e.to_string(),
            })?;
            bound.push((url.transport, local));
            listeners.push((url.clone(), l, local, tls));
        }
        let listen_urls = listeners
            .iter()
            .map(|(u, _, local, _)| {
                let mut u = u.clone();
                u.port = local.port();
                u.password = None;
                u.tls = TlsOptions::default();
                u.to_string()
            })
            .collect();
        let identity = Identity {
            cluster: config.cluster_name.clone(),
            node_id: config.node_id.clone(),
            instance: rng.random(),
            role: if config.admin {
                Role::Admin
            } else if config.control {
                Role::Control
            } else {
                Role::Worker
            },
            listen: listen_urls,
            meta: config.meta.to_string(),
            partitions: if config.control && !config.admin {
                config.partitions
            } else {
                0
            },
        };
        let key = Key::derive(
            &config.password,
            &config.cluster_name,
            config.key_iterations,
        );
        let mut keys = HashMap::new();
        keys.insert(config.password.clone(), key);
        let handlers = handlers.unwrap_or_else(|| Handlers::builtin(&config.node_id));
        let clock = Clock::new(env.wall_origin_ns);
        let (events_out, events_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            identity: identity.clone(),
            net: env.net,
            clock,
            keys: Mutex::new(keys),
            rng: Mutex::new(rng),
            peers: Mutex::new(BTreeMap::new()),
            next_conn_id: AtomicU64::new(1),
            events: broadcast::channel(EVENT_QUEUE).0,
            handlers,
            shutdown: watch::channel(false).0,
            fatal: watch::channel(None).0,
            client_tls: Mutex::new(HashMap::new()),
            membership: (config.control && !config.admin).then(|| {
                Mutex::new(Membership::new(
                    &config.node_id,
                    clock.wall_origin_ns() / 1_000_000,
                    identity.listen.clone(),
                    MembershipConfig::default(),
                ))
            }),
            mesh_dialing: Mutex::new(std::collections::BTreeSet::new()),
            membership_timer: tokio::sync::Notify::new(),
            proxies: (config.control && !config.admin).then(|| {
                let mut p = Proxies::new(&config.node_id, config.partitions);
                p.set_retry_after(config.connection.ping_interval);
                Mutex::new(p)
            }),
            connector: Mutex::new(nkcluster_core::connector::Connector::new(
                config.cluster_addr.clone(),
                config.backoff.clone(),
            )),
            status: Mutex::new(NodeStatus::new()),
            tasks: Mutex::new(HashMap::new()),
            events_out,
            job_events: broadcast::channel(EVENT_QUEUE).0,
            workers: Mutex::new(nkcluster_core::workers::Workers::new(Default::default())),
            meta: Mutex::new(config.meta.clone()),
            data: Mutex::new(nkcluster_core::data::DataRegistry::new(DATA_LIMIT)),
            transfers: Mutex::new(nkcluster_core::transfers::Transfers::new(
                &config.files_dir,
                nkcluster_core::transfers::TransfersConfig {
                    max_open: MAX_TRANSFERS,
                    ..Default::default()
                },
            )),
            open_files: Mutex::new(HashMap::new()),
            file_writer: Mutex::new(None),
            sys: Mutex::new(sysinfo::System::new()),
            stats_cache: Mutex::new(None),
            subscribers: Mutex::new(HashMap::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            running: watch::channel(0).0,
            admission: Arc::new(Mutex::new(Admission::new(config.admission))),
            config,
        });
        for (url, l, local, tls) in listeners {
            let label = format!("{}:{}", url.transport, local);
            info!(node = %inner.config.node_id, addr = %label, "listening");
            inner.emit(NodeEvent::Listening { addr: label });
            tokio::spawn(accept_loop(inner.clone(), l, url, tls));
        }
        if !inner.config.cluster_addr.is_empty() {
            tokio::spawn(connector(inner.clone()));
        }
        if inner.membership.is_some() {
            tokio::spawn(membership_timer(inner.clone()));
            tokio::spawn(stream_events(inner.clone()));
        }
        tokio::spawn(forward_events(inner.clone(), events_rx));
        tokio::spawn(report_info(inner.clone()));
        lock(&inner.status).handle_started();
        inner.after_status();
        Ok(Node {
            inner,
            listen_addrs: Arc::new(bound),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// The addresses the listeners are bound to.
    pub fn listen_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.listen_addrs.to_vec()
    }

    /// Subscribes to node events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Control nodes: the alive members of the control cluster (ourselves included),
    /// sorted; empty on other nodes.
    pub fn members(&self) -> Vec<String> {
        self.inner
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default()
    }

    /// The node table of the whole cluster as this node can see it: its own links plus,
    /// on a control node, every control member's (asked over the mesh), and the members
    /// that did not answer.
    pub async fn cluster_nodes(&self) -> NodesReport {
        self.inner.cluster_rows().await
    }

    /// Authenticated links, by peer id.
    pub fn peers(&self) -> Vec<PeerSummary> {
        lock(&self.inner.peers)
            .values()
            .flat_map(|v| v.iter().map(|l| l.summary.clone()))
            .collect()
    }

    /// Sends a request to `peer` and waits for its outcome: the peer's reply, its error,
    /// `timeout`, `connection_failed` if the link dies, or `not_connected` when there is no
    /// link to that peer. Never waits past `timeout` plus scheduling delays.
    pub async fn request(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let commands = {
            let peers = lock(&self.inner.peers);
            match peers.get(peer).and_then(|v| v.first()) {
                Some(l) => l.commands.clone(),
                None => return Err(RequestError::NotConnected),
            }
        };
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Request {
            class: class.to_owned(),
            body,
            timeout,
            reply: tx,
        };
        if commands.send(cmd).await.is_err() {
            return Err(RequestError::ConnectionFailed);
        }
        rx.await.unwrap_or(Err(RequestError::ConnectionFailed))
    }

    /// A job class's request to `node` (anywhere in the cluster; `exclusive` opens a
    /// dedicated connection when the worker is linked here and listens).
    pub async fn job_request<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        req: &C::Request,
        opts: RequestOptions,
    ) -> Result<C::Reply, RequestError> {
        let call = JobCall::Request {
            class: class.to_owned(),
            body: encode_req(req)?,
        };
        let body = encode_req(&call)?;
        let r = if opts.exclusive && lock(&self.inner.peers).contains_key(node) {
            self.request_with(node, CLASS_JOB, body, opts).await
        } else {
            self.send(node, CLASS_JOB, body, opts.timeout).await
        };
        decode_reply(&r?)
    }

    /// Starts a task of `class` at `node`: its id and the class's immediate reply.
    /// Refused with `node_not_ready(status)` unless the node is `ready`.
    pub async fn start_task<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        spec: &C::Spec,
        timeout: Duration,
    ) -> Result<(u64, Option<C::Reply>), RequestError> {
        self.start_task_with::<C>(node, class, spec, None, timeout)
            .await
    }

    /// [`start_task`](Self::start_task) with the caller's own task id: `already_started`
    /// when a task with that id runs there.
    pub async fn start_task_with<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        spec: &C::Spec,
        id: Option<u64>,
        timeout: Duration,
    ) -> Result<(u64, Option<C::Reply>), RequestError> {
        let call = JobCall::Task {
            class: class.to_owned(),
            body: encode_req(spec)?,
            id,
        };
        let r: TaskStarted = decode_reply(
            &self
                .send(node, CLASS_JOB, encode_req(&call)?, timeout)
                .await?,
        )?;
        let reply = match r.reply {
            Some(b) => Some(decode_reply(&b)?),
            None => None,
        };
        Ok((r.task, reply))
    }

    /// A command to running task `task` of `class` at `node` (`task_not_found` when it
    /// is not running).
    pub async fn command<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        task: u64,
        cmd: &C::Command,
        timeout: Duration,
    ) -> Result<C::Reply, RequestError> {
        let call = JobCall::Command {
            class: class.to_owned(),
            task,
            body: encode_req(cmd)?,
        };
        decode_reply(
            &self
                .send(node, CLASS_JOB, encode_req(&call)?, timeout)
                .await?,
        )
    }

    /// Stops running task `task` at `node` (it ends `stopped`).
    pub async fn stop_task(
        &self,
        node: &str,
        task: u64,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let body = encode_req(&JobCall::StopTask(task))?;
        self.send(node, CLASS_JOB, body, timeout).await.map(|_| ())
    }

    /// Sets `node`'s status (`ready`, `standby`, `stopped`...).
    pub async fn set_status(
        &self,
        node: &str,
        status: Status,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let body = encode_req(&JobCall::SetStatus(status.as_str().to_owned()))?;
        self.send(node, CLASS_JOB, body, timeout).await.map(|_| ())
    }

    /// Running tasks `(id, class)` at `node`, all or those of `class`.
    pub async fn get_tasks(
        &self,
        node: &str,
        class: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<(u64, String)>, RequestError> {
        let body = encode_req(&JobCall::GetTasks(class.map(str::to_owned)))?;
        decode_reply(&self.send(node, CLASS_JOB, body, timeout).await?)
    }

    /// Events of the workers this control node serves (and its own tasks'), in order
    /// per worker: a class's own events, `task_started`, `task_stopped`, `node_status`.
    pub fn job_events(&self) -> broadcast::Receiver<NodeJobEvent> {
        self.inner.job_events.subscribe()
    }

    async fn job(
        &self,
        node: &str,
        call: &JobCall,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.send(node, CLASS_JOB, encode_req(call)?, timeout).await
    }

    /// Calls the named function `function` at `node` (the original's `call`: it runs on
    /// the link's task, so it must be quick; see [`spawn_call`](Self::spawn_call)).
    pub async fn call(
        &self,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        self.call_class(CLASS_CALL, node, function, args, timeout)
            .await
    }

    /// Like [`call`](Self::call), on the node's blocking pool: a long function does not
    /// hold up the link.
    pub async fn spawn_call(
        &self,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        self.call_class(CLASS_SPAWN_CALL, node, function, args, timeout)
            .await
    }

    async fn call_class(
        &self,
        class: &str,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let req = CallRequest {
            function: function.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let b = self.send(node, class, encode_req(&req)?, timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// `node`'s information: status, listen URLs, metadata, machine figures.
    pub async fn get_info(&self, node: &str, timeout: Duration) -> Result<NodeInfo, RequestError> {
        decode_reply(&self.job(node, &JobCall::GetInfo, timeout).await?)
    }

    /// `node`'s metadata.
    pub async fn get_meta(&self, node: &str, timeout: Duration) -> Result<String, RequestError> {
        let b = self.job(node, &JobCall::GetMeta, timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Updates `node`'s metadata with `tokens` (appended, or replacing tokens of the same
    /// name); returns the new metadata.
    pub async fn update_meta(
        &self,
        node: &str,
        tokens: &str,
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let b = self
            .job(node, &JobCall::UpdateMeta(tokens.to_owned()), timeout)
            .await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Removes metadata tokens by name; returns the new metadata.
    pub async fn remove_meta(
        &self,
        node: &str,
        names: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        let b = self.job(node, &JobCall::RemoveMeta(names), timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// A value of `node`'s data registry (`not_found` when absent).
    pub async fn get_data(
        &self,
        node: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.job(node, &JobCall::GetData(key.to_owned()), timeout)
            .await
    }

    /// Stores a value in `node`'s data registry.
    pub async fn put_data(
        &self,
        node: &str,
        key: &str,
        value: Bytes,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::PutData(key.to_owned(), value), timeout)
            .await
            .map(|_| ())
    }

    /// Deletes a value from `node`'s data registry.
    pub async fn del_data(
        &self,
        node: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::DelData(key.to_owned()), timeout)
            .await
            .map(|_| ())
    }

    /// Sends the local file `local` to `node`, where it appears at `remote` once whole and
    /// checked (SHA-256). Up to 4 KiB goes in one message; bigger files in 1 MiB parts,
    /// each its own request, so small messages on the link pass between them.
    /// `progress(sent, total)` is called after each part. Returns the size.
    pub async fn send_file(
        &self,
        node: &str,
        local: &std::path::Path,
        remote: &str,
        timeout: Duration,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, RequestError> {
        use sha2::Digest;
        use tokio::io::AsyncReadExt;
        let io = |e: std::io::Error| {
            RequestError::Remote(RemoteError::new(
                "file_error",
                format!("{}: {e}", local.display()),
            ))
        };
        let mut f = tokio::fs::File::open(local).await.map_err(io)?;
        let total = f.metadata().await.map_err(io)?.len();
        let mut hash = sha2::Sha256::new();
        // Up to FILE_WINDOW parts in flight, queued in order (routing keeps the order);
        // the hash is computed as the parts go and travels with the last one.
        let mut in_flight = std::collections::VecDeque::new();
        let mut offset = 0u64;
        loop {
            let mut buf = BytesMut::zeroed(FILE_PART);
            let mut filled = 0;
            while filled < FILE_PART {
                let n = f.read(&mut buf[filled..]).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            hash.update(&buf);
            let last = offset + filled as u64 >= total;
            let part = FilePart {
                path: remote.to_owned(),
                offset,
                total,
                data: buf.freeze(),
                sha256: last.then(|| hash.clone().finalize().into()),
            };
            let body = encode_req(&JobCall::SendFile(part))?;
            let routed = self.route_enqueue(node, CLASS_JOB, body, timeout, 0);
            offset += filled as u64;
            in_flight.push_back((routed, offset));
            while in_flight.len() >= FILE_WINDOW || (last && !in_flight.is_empty()) {
                let Some((routed, upto)) = in_flight.pop_front() else {
                    break;
                };
                self.route_finish(node, routed, timeout).await?;
                progress(upto, total);
            }
            if last {
                return Ok(total);
            }
        }
    }

    /// This node's own status.
    pub fn status(&self) -> Status {
        lock(&self.inner.status).status()
    }

    /// Sends a request to any node of the cluster, wherever its proxy lives: this node
    /// itself, a node linked here, or (on a control node) a node linked to another
    /// control member, through the member that owns its ring partition (over the mesh).
    /// A node nobody holds ends `unknown_node`.
    pub async fn send(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.route(node, class, body, timeout, 0).await
    }

    async fn route(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
        hops: u8,
    ) -> Result<Bytes, RequestError> {
        let routed = self.route_enqueue(node, class, body, timeout, hops);
        self.route_finish(node, routed, timeout).await
    }

    /// The synchronous half of routing: answers at once, or queues the request on the
    /// right link now, so that requests routed one after the other leave in that order
    /// (a file's parts, pipelined).
    fn route_enqueue(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
        hops: u8,
    ) -> Routed {
        use nkcluster_core::routing::{RouteStep, RouteView, route};
        let inner = &self.inner;
        let step = {
            let peers = lock(&inner.peers);
            let control_link = peers
                .values()
                .flatten()
                .find(|l| l.summary.role == Role::Control)
                .map(|l| l.summary.node_id.clone());
            let owner = inner
                .proxies
                .as_ref()
                .map(|p| lock(p).owner_of(node).to_owned());
            let view = RouteView {
                me: &inner.config.node_id,
                is_control: inner.proxies.is_some(),
                target_linked: peers.contains_key(node),
                control_link: control_link.as_deref(),
                owner: owner.as_deref(),
            };
            route(&view, node, hops)
        };
        let (via, hops, fallback) = match step {
            RouteStep::Local => {
                let r = if class == CLASS_JOB {
                    postcard::from_bytes::<JobCall>(&body)
                        .map_err(|e| RemoteError::new("bad_request", format!("job: {e}")))
                        .and_then(|call| self.inner.job_call(node, call))
                } else {
                    inner.handlers.call(class, body)
                };
                return Routed::Done(r.map_err(RequestError::Remote));
            }
            RouteStep::Direct => return Routed::Direct(inner.enqueue(node, class, body, timeout)),
            RouteStep::Unknown => return Routed::Done(Err(unknown_node(node))),
            RouteStep::Via { via, hops, fan_out } => (via, hops, fan_out),
        };
        let req = RouteRequest {
            node: node.to_owned(),
            class: class.to_owned(),
            body,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            hops,
        };
        let body = match encode_req(&req) {
            Ok(b) => b,
            Err(e) => return Routed::Done(Err(e)),
        };
        let rx = inner.enqueue(&via, CLASS_ROUTE, body.clone(), timeout);
        Routed::Forwarded {
            rx,
            body,
            owner: via,
            fallback,
        }
    }

    /// The asynchronous half: waits for the answer; a control node whose owner did not
    /// hold the node asks the other members once each.
    async fn route_finish(
        &self,
        node: &str,
        routed: Routed,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + timeout;
        let (r, body, owner) = match routed {
            Routed::Done(r) => return r,
            Routed::Direct(rx) => return wait_reply(rx).await,
            Routed::Forwarded {
                rx,
                body,
                owner,
                fallback,
            } => {
                let r = wait_reply(rx).await;
                if !fallback {
                    return r;
                }
                (r, body, owner)
            }
        };
        let unknown = || unknown_node(node);
        if !matches!(&r, Err(RequestError::Remote(e)) if e.code == "unknown_node") {
            return r;
        }
        // Not at its owner (a hand-off in flight, or views that disagree for a moment):
        // ask the other members once each.
        let live = inner
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default();
        let others = nkcluster_core::routing::fan_out(&live, &inner.config.node_id, &owner);
        for m in others {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self.request(&m, CLASS_ROUTE, body.clone(), left).await;
            if !matches!(&r, Err(RequestError::Remote(e)) if e.code == "unknown_node") {
                return r;
            }
        }
        Err(unknown())
    }

    /// Connects to the first entry of `urls` (a `nkcluster://` list, tried in order) that
    /// authenticates, and keeps that link (it is listed in [`peers`](Self::peers)).
    /// Returns the peer reached, with the remote address and its transport
    /// (`tls:127.0.0.1:1973`). Errors: the URL list's own (`invalid_scheme`,
    /// `invalid_transport`, `syntax_error`), `no_connections` when nothing answered,
    /// otherwise the last entry's failure (`auth_failed`, `tls_error`, ...).
    pub async fn connect(&self, urls: &str) -> Result<PeerSummary, ConnectError> {
        let urls = nkcluster_core::url::parse_url_list(urls).map_err(|e| ConnectError {
            code: e.code().to_owned(),
            detail: e.to_string(),
        })?;
        let mut last = ConnectError {
            code: "no_connections".into(),
            detail: "no url could be reached".into(),
        };
        for url in urls {
            let (remote, ready) = match self.inner.dial(&url).await {
                Ok(r) => r,
                Err((code, detail)) => {
                    if code != "no_connections" || last.code == "no_connections" {
                        last = ConnectError {
                            code: code.to_owned(),
                            detail,
                        };
                    }
                    continue;
                }
            };
            let password = url
                .password
                .as_deref()
                .unwrap_or(&self.inner.config.password);
            let key = self.inner.key_for(password);
            match spawn_dialed(&self.inner, ready, key, remote).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(e)) => {
                    last = ConnectError {
                        code: e.code().to_owned(),
                        detail: e.to_string(),
                    }
                }
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Like [`request`](Self::request), with options: `exclusive` opens a dedicated
    /// connection to the peer (to one of its listen URLs, authenticated like any other),
    /// sends the request over it and closes it once idle, so a long or large request does
    /// not share the main link. A peer without a listener is asked over its main link.
    pub async fn request_with(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        opts: RequestOptions,
    ) -> Result<Bytes, RequestError> {
        if !opts.exclusive {
            return self.request(peer, class, body, opts.timeout).await;
        }
        let (listen, ip) = {
            let peers = lock(&self.inner.peers);
            match peers.get(peer).and_then(|v| v.first()) {
                Some(l) => (l.summary.listen.clone(), l.remote_ip),
                None => return Err(RequestError::NotConnected),
            }
        };
        // A peer listening on `all` is reachable where its main link reached it.
        let urls: Vec<ClusterUrl> = nkcluster_core::url::reachable_at(&listen, ip)
            .iter()
            .filter_map(|u| parse_url(u).ok())
            .collect();
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let mut last = RequestError::ConnectionFailed;
        let mut dialed = false;
        for url in urls {
            let (remote, ready) = match tokio::time::timeout_at(deadline, self.inner.dial(&url))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err((code, e))) => {
                    warn!(node = %self.inner.config.node_id, url = %url.remote_label(), code, error = %e,
                          "exclusive connection failed");
                    continue;
                }
                Err(_) => return Err(RequestError::Timeout),
            };
            dialed = true;
            let (tx, rx) = mpsc::channel(1);
            let (reply_tx, reply_rx) = oneshot::channel();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let _ = tx.try_send(Command::Request {
                class: class.to_owned(),
                body: body.clone(),
                timeout: left,
                reply: reply_tx,
            });
            // The connection gets the only sender and drops it: once this request is
            // answered, the driver sees no more commands can come and closes the link.
            let key = self.inner.key_for(&self.inner.config.password);
            let inner = self.inner.clone();
            tokio::spawn(async move {
                run_connection(
                    inner,
                    ready,
                    Side::Dialer,
                    key,
                    remote,
                    LinkExtras {
                        commands: Some((tx, rx)),
                        ..Default::default()
                    },
                )
                .await;
            });
            match reply_rx.await {
                Ok(r) => return r,
                Err(_) => last = RequestError::ConnectionFailed,
            }
        }
        if !dialed {
            // No exclusive connection is possible (no listener, or none reachable): the
            // original's "if possible" semantics, use the main link.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            return self.request(peer, class, body, left).await;
        }
        Err(last)
    }

    /// Resolves when the node must stop (its connector gave up).
    pub async fn fatal(&self) -> Fatal {
        let mut rx = self.inner.fatal.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// [`shutdown`](Self::shutdown), then waits (at most `limit`) until every connection
    /// has written its last messages (the leave notice, the close) and ended.
    ///
    /// A control node leaves gracefully first: it tells the members it leaves, then hands
    /// every worker it serves to the worker's new owner while the mesh is still up (for at
    /// most half of `limit`), and only then closes its links.
    pub async fn shutdown_and_wait(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.leave_and_hand_off(limit / 2).await;
        let mut running = self.inner.running.subscribe();
        self.shutdown();
        let _ = tokio::time::timeout_at(deadline, running.wait_for(|n| *n == 0)).await;
    }

    /// A control node leaving: gossips its leave, so that the ring moves every partition to
    /// the other members, and waits (at most `limit`) until its workers have been handed
    /// over (adopted by their new owners or redirected to them).
    async fn leave_and_hand_off(&self, limit: Duration) {
        let inner = &self.inner;
        let Some(m) = &inner.membership else { return };
        lock(m).leave();
        inner.after_membership();
        if lock(m).live().is_empty() {
            return; // nobody to hand the workers to
        }
        let holds_workers = || {
            lock(&inner.peers)
                .values()
                .flatten()
                .any(|l| l.summary.role == Role::Worker)
        };
        let mut events = inner.events.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        while holds_workers() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                    info!(node = %inner.config.node_id, "leaving with workers not yet handed over; they reconnect on their own");
                    return;
                }
                Ok(_) => {}
            }
        }
        info!(node = %inner.config.node_id, "every worker handed over; leaving");
    }

    /// Closes every link in order and stops listening and dialing.
    pub fn shutdown(&self) {
        // A control node leaves explicitly: peers drop it at once, without waiting for
        // failure detection. The view goes out before the close on every link.
        if let Some(m) = &self.inner.membership {
            lock(m).leave();
            self.inner.after_membership();
        }
        let _ = self.inner.shutdown.send(true);
        let links: Vec<_> = std::mem::take(&mut *lock(&self.inner.peers))
            .into_values()
            .flatten()
            .collect();
        for l in links {
            let _ = l.commands.try_send(Command::Close {
                reason: "node shutting down".into(),
            });
        }
    }
}

impl<N: Net> Inner<N> {
    fn emit(&self, e: NodeEvent) {
        let _ = self.events.send(e);
    }

    fn random_u64(&self) -> u64 {
        lock(&self.rng).random()
    }

    fn nonce(&self) -> [u8; 32] {
        lock(&self.rng).random()
    }

    fn key_for(&self, password: &str) -> Key {
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

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits (at most `limit`) until a link to `peer` is up; false if none came.
    async fn wait_linked(&self, peer: &str, limit: Duration) -> bool {
        let mut events = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if lock(&self.peers).contains_key(peer) {
                return true;
            }
            if self.stopping() {
                return false;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return false,
                Ok(_) => {}
            }
        }
    }

    /// Acts on membership changes: logs them, gossips the view to every control link,
    /// dials the members the machine asks for (it decides when: newly learned ones at
    /// once, unlinked ones every redial round), and re-arms the membership timer.
    /// Carries out status changes: the `node_status` event first, then every running
    /// task's `status` callback, in that order.
    fn after_status(self: &Arc<Self>) {
        let changes: Vec<Status> = {
            let mut st = lock(&self.status);
            std::iter::from_fn(|| st.poll_event())
                .map(|StatusEvent::Changed(s)| s)
                .collect()
        };
        for s in changes {
            info!(node = %self.config.node_id, status = %s, "node status");
            self.node_event(WireEvent::NodeStatus(s.as_str().into()));
            let tasks: Vec<(u64, String)> = lock(&self.status)
                .tasks(None)
                .into_iter()
                .map(|(id, c)| (id, c.to_owned()))
                .collect();
            for (id, class) in tasks {
                if let Ok(c) = self.handlers.classes.get(&class) {
                    c.status(id, s);
                }
            }
        }
    }

    /// A job operation at this node (the worker side).
    fn job_call(self: &Arc<Self>, from: &str, call: JobCall) -> Result<Bytes, RemoteError> {
        let not_found =
            |id: u64| RemoteError::new("task_not_found", format!("no task {id} runs here"));
        match call {
            JobCall::Request { class, body } => self.handlers.classes.get(&class)?.request(&body),
            JobCall::Command { class, task, body } => {
                if lock(&self.status).task_class(task) != Some(class.as_str()) {
                    return Err(not_found(task));
                }
                self.handlers.classes.get(&class)?.command(task, &body)
            }
            JobCall::Task { class, body, id } => {
                let c = self.handlers.classes.get(&class)?.clone();
                let id = lock(&self.status)
                    .start_task(id, &class)
                    .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
                // task_started goes out before anything the task itself sends.
                let _ = self.events_out.send(EventMsg {
                    node: self.config.node_id.clone(),
                    class: class.clone(),
                    task: Some(id),
                    event: WireEvent::TaskStarted,
                });
                let ids = (
                    Arc::from(self.config.node_id.as_str()),
                    id,
                    Arc::from(class.as_str()),
                );
                match c.task(ids, self.events_out.clone(), &body) {
                    Ok((reply, run)) => {
                        let inner = self.clone();
                        // The body runs in its own task; a panic ends it with its message.
                        let body = tokio::spawn(run);
                        let abort = body.abort_handle();
                        lock(&self.tasks).insert(id, abort);
                        tokio::spawn(async move {
                            let reason = match body.await {
                                Ok(Ok(())) => "normal".to_owned(),
                                Ok(Err(e)) => e,
                                Err(e) if e.is_panic() => format!(
                                    "panic: {}",
                                    crate::jobs::panic_message(&*e.into_panic())
                                ),
                                Err(_) => "stopped".to_owned(),
                            };
                            inner.task_ended(id, &reason);
                        });
                        encode(&TaskStarted { task: id, reply })
                    }
                    Err(e) => {
                        self.finish_task(id, &e.to_string());
                        Err(e)
                    }
                }
            }
            JobCall::StopTask(id) => {
                let Some(h) = lock(&self.tasks).remove(&id) else {
                    return Err(not_found(id));
                };
                h.abort();
                self.finish_task(id, "stopped");
                Ok(Bytes::new())
            }
            JobCall::SetStatus(name) => {
                let st = Status::parse(&name).ok_or_else(|| {
                    RemoteError::new("invalid_status", format!("no status {name:?}"))
                })?;
                lock(&self.status)
                    .set_status(st)
                    .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
                self.after_status();
                Ok(Bytes::new())
            }
            JobCall::GetTasks(class) => {
                let t: Vec<(u64, String)> = lock(&self.status)
                    .tasks(class.as_deref())
                    .into_iter()
                    .map(|(id, c)| (id, c.to_owned()))
                    .collect();
                encode(&t)
            }
            JobCall::GetInfo => encode(&self.info()),
            JobCall::GetMeta => Ok(Bytes::from(lock(&self.meta).to_string())),
            JobCall::UpdateMeta(tokens) => {
                let m = nkcluster_core::meta::Meta::parse(&tokens)
                    .map_err(|e| RemoteError::new(e.code(), e.to_string()))?;
                let now = {
                    let mut meta = lock(&self.meta);
                    meta.update(&m);
                    meta.to_string()
                };
                self.send_info();
                Ok(Bytes::from(now))
            }
            JobCall::RemoveMeta(names) => {
                let now = {
                    let mut meta = lock(&self.meta);
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    meta.remove(&names);
                    meta.to_string()
                };
                self.send_info();
                Ok(Bytes::from(now))
            }
            JobCall::GetData(key) => lock(&self.data)
                .get(&key)
                .cloned()
                .ok_or_else(|| RemoteError::new("not_found", format!("no data under {key:?}"))),
            JobCall::PutData(key, value) => lock(&self.data)
                .put(key, value)
                .map(|()| Bytes::new())
                .map_err(|e| RemoteError::new(e.code(), e.to_string())),
            JobCall::DelData(key) => {
                lock(&self.data).delete(&key);
                Ok(Bytes::new())
            }
            JobCall::SendFile(part) => self.receive_file(from, part),
        }
    }

    /// Queues a file part for the writer thread, which handles parts in arrival order.
    fn write_file_part(self: &Arc<Self>, from: &str, part: FilePart, responder: Responder) {
        let mut w = lock(&self.file_writer);
        let tx = w.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<(String, FilePart, Responder)>();
            let weak = Arc::downgrade(self);
            std::thread::spawn(move || {
                while let Ok((from, part, responder)) = rx.recv() {
                    let Some(inner) = weak.upgrade() else { return };
                    responder.reply(inner.receive_file(&from, part));
                }
            });
            tx
        });
        if let Err(std::sync::mpsc::SendError((_, _, responder))) =
            tx.send((from.to_owned(), part, responder))
        {
            responder.reply(Err(RemoteError::new(
                "file_error",
                "the file writer stopped",
            )));
        }
    }

    /// One part of a file. The core receiver decides (where it lands, order, checksum,
    /// limits, expiry); this performs its file operations and answers.
    fn receive_file(&self, from: &str, part: FilePart) -> Result<Bytes, RemoteError> {
        use nkcluster_core::transfers::{Part, Received};
        let out = lock(&self.transfers).handle_part(
            self.clock.now(),
            from,
            Part {
                path: &part.path,
                offset: part.offset,
                total: part.total,
                data: part.data,
                sha256: part.sha256,
            },
        );
        if let Err(e) = self.perform_file_ops(out.ops) {
            let cleanup = lock(&self.transfers).handle_io_error(&part.path);
            let _ = self.perform_file_ops(cleanup);
            warn!(node = %self.config.node_id, from = %from, path = %part.path, code = %e.code, error = %e.message,
                  "a file transfer failed");
            return Err(e);
        }
        match out.result {
            Ok(Received::Part) => Ok(Bytes::new()),
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

    /// Performs the receiver's file operations in order; the `.part` files stay open
    /// between parts.
    fn perform_file_ops(
        &self,
        ops: Vec<nkcluster_core::transfers::FileOp>,
    ) -> Result<(), RemoteError> {
        use nkcluster_core::transfers::FileOp;
        use std::io::Write;
        let io = |p: &std::path::Path, e: std::io::Error| {
            RemoteError::new("file_error", format!("{}: {e}", p.display()))
        };
        let mut open = lock(&self.open_files);
        for op in ops {
            match op {
                FileOp::Create { tmp } => {
                    self.check_file_dir(&tmp)?;
                    let f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
                    open.insert(tmp, f);
                }
                FileOp::Append { tmp, data } => {
                    let f = open.get_mut(&tmp).ok_or_else(|| {
                        io(&tmp, std::io::Error::other("the part file is not open"))
                    })?;
                    f.write_all(&data).map_err(|e| io(&tmp, e))?;
                }
                FileOp::Rename { tmp, to } => {
                    open.remove(&tmp);
                    std::fs::rename(&tmp, &to).map_err(|e| io(&to, e))?;
                }
                FileOp::Remove { tmp } => {
                    open.remove(&tmp);
                    let _ = std::fs::remove_file(&tmp);
                }
            }
        }
        Ok(())
    }

    /// Makes the directory of `file` and refuses it when a symbolic link leads it out of
    /// `files_dir` (the one check the core cannot make without the file system).
    fn check_file_dir(&self, file: &std::path::Path) -> Result<(), RemoteError> {
        let root = &self.config.files_dir;
        let Some(dir) = file.parent() else {
            return Ok(());
        };
        let io =
            |e: std::io::Error| RemoteError::new("file_error", format!("{}: {e}", dir.display()));
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

    /// This node's information, with fresh machine figures.
    fn info(&self) -> NodeInfo {
        let now = self.clock.now();
        let cached = lock(&self.stats_cache)
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < STATS_MAX_AGE)
            .map(|(_, s)| s.clone());
        let stats = if let Some(s) = cached {
            s
        } else {
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
        };
        NodeInfo {
            id: self.config.node_id.clone(),
            status: lock(&self.status).status().as_str().into(),
            listen: self.identity.listen.clone(),
            meta: lock(&self.meta).to_string(),
            stats,
        }
    }

    /// Reports our information to the control node holding our proxy.
    fn send_info(&self) {
        self.node_event(WireEvent::Info(self.info()));
    }

    /// Queues a node-level event (class `nkcluster`) of ours for our proxy.
    fn node_event(&self, event: WireEvent) {
        let _ = self.events_out.send(EventMsg {
            node: self.config.node_id.clone(),
            class: "nkcluster".into(),
            task: None,
            event,
        });
    }

    /// A task's body ended by itself (not stopped: that path finished it already).
    fn task_ended(self: &Arc<Self>, id: u64, reason: &str) {
        if lock(&self.tasks).remove(&id).is_none() {
            return;
        }
        self.finish_task(id, reason);
    }

    fn finish_task(self: &Arc<Self>, id: u64, reason: &str) {
        let Some(class) = lock(&self.status).task_stopped(id) else {
            return;
        };
        let _ = self.events_out.send(EventMsg {
            node: self.config.node_id.clone(),
            class,
            task: Some(id),
            event: WireEvent::TaskStopped(reason.to_owned()),
        });
        self.after_status();
    }

    /// Control side: an event from a worker we serve (or from ourselves).
    fn handle_job_event(&self, ev: EventMsg) {
        use nkcluster_core::workers::{NODE_CLASS, WorkerNews};
        let news = match &ev.event {
            _ if ev.class != NODE_CLASS => WorkerNews::Class(&ev.class),
            WireEvent::NodeStatus(s) => WorkerNews::Status(s),
            WireEvent::Info(i) => WorkerNews::Info {
                status: &i.status,
                info: i.clone(),
            },
            // Other node-level events go to every class that has seen the node.
            _ => WorkerNews::Node,
        };
        let targets = lock(&self.workers).handle_event(self.clock.now(), &ev.node, news);
        for class in &targets {
            if let Ok(c) = self.handlers.classes.get(class) {
                c.event(&ev.node, ev.task, &ev.event);
            }
        }
        if !matches!(ev.event, WireEvent::Info(_)) {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back((self.clock.wall_now_ns() / 1_000_000, ev.clone()));
        }
        let _ = self.job_events.send(NodeJobEvent {
            node: ev.node,
            class: ev.class,
            task: ev.task,
            event: ev.event,
        });
    }

    /// Control side: a new subscriber (and, for a whole-cluster one, our subscriptions to
    /// every other member).
    fn subscribe(self: &Arc<Self>, req: SubscribeRequest) {
        lock(&self.subscribers).insert(req.subscriber.clone(), req.fanout);
        if !req.fanout {
            return;
        }
        let me = self.config.node_id.clone();
        let members: Vec<String> = self
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| *m != me)
            .collect();
        let body = match postcard::to_allocvec(&SubscribeRequest {
            subscriber: me,
            fanout: false,
        }) {
            Ok(b) => Bytes::from(b),
            Err(_) => return,
        };
        for m in members {
            let _ = self.fire(&m, CLASS_SUBSCRIBE, body.clone());
        }
    }

    /// Sends an encoded event to our subscribers (only whole-cluster ones for a member's
    /// event); drops subscribers that are gone.
    fn publish(&self, body: &Bytes, members_only: bool) {
        let subs: Vec<(String, bool)> = lock(&self.subscribers)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (s, fanout) in subs {
            if members_only && !fanout {
                continue;
            }
            if !self.fire(&s, CLASS_EVENT_STREAM, body.clone()) {
                lock(&self.subscribers).remove(&s);
            }
        }
    }

    /// Queues a request on `peer`'s link now (in call order) and returns where its
    /// outcome will arrive.
    fn enqueue(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<oneshot::Receiver<Result<Bytes, RequestError>>, RequestError> {
        let commands = lock(&self.peers)
            .get(peer)
            .and_then(|v| v.first())
            .map(|l| l.commands.clone())
            .ok_or(RequestError::NotConnected)?;
        let (tx, rx) = oneshot::channel();
        commands
            .try_send(Command::Request {
                class: class.to_owned(),
                body,
                timeout,
                reply: tx,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => RequestError::TooManyPending,
                mpsc::error::TrySendError::Closed(_) => RequestError::ConnectionFailed,
            })?;
        Ok(rx)
    }

    /// Queues a request to `peer` without waiting for its reply; false when not linked.
    fn fire(&self, peer: &str, class: &str, body: Bytes) -> bool {
        !matches!(
            self.enqueue(peer, class, body, GATHER_TIMEOUT),
            Err(RequestError::NotConnected)
        )
    }

    /// Control side: a worker's last link dropped: every class that has seen it hears
    /// `not_connected`.
    fn worker_gone(&self, worker: &str) {
        let known = lock(&self.workers).status(worker).is_some();
        if known {
            self.handle_job_event(EventMsg {
                node: worker.to_owned(),
                class: "nkcluster".into(),
                task: None,
                event: WireEvent::NodeStatus(Status::NotConnected.as_str().into()),
            });
            lock(&self.workers).handle_worker_gone(self.clock.now(), worker);
        }
    }

    fn after_membership(self: &Arc<Self>) {
        let Some(m) = &self.membership else { return };
        let (events, gossip, to_dial) = {
            let mut m = lock(m);
            let events: Vec<MemberEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            (events, m.poll_gossip(), m.poll_dial())
        };
        for e in events {
            let (id, change) = match e {
                MemberEvent::Up(id) => (id, "up"),
                MemberEvent::Down(id) => (id, "down"),
                MemberEvent::Left(id) => (id, "left"),
                MemberEvent::Removed(id) => (id, "removed"),
            };
            info!(node = %self.config.node_id, member = %id, change, "membership");
            self.emit(NodeEvent::Member { id, change });
        }
        if let Some(view) = gossip {
            for links in lock(&self.peers).values() {
                for l in links.iter().filter(|l| l.summary.role == Role::Control) {
                    let _ = l.commands.try_send(Command::Gossip(view.clone()));
                }
            }
        }
        for member in to_dial {
            if self.stopping() || !lock(&self.mesh_dialing).insert(member.id.clone()) {
                continue;
            }
            tokio::spawn(mesh_dial(self.clone(), member));
        }
        self.membership_timer.notify_one();
        if let Some(p) = &self.proxies
            && !self.stopping()
        {
            let live = lock(m).live();
            lock(p).set_members(&live);
            self.after_proxies();
        }
    }

    /// Carries out the proxy machine's hand-offs.
    fn after_proxies(self: &Arc<Self>) {
        let Some(p) = &self.proxies else { return };
        let actions: Vec<Action> = {
            let mut p = lock(p);
            std::iter::from_fn(|| p.poll_action()).collect()
        };
        for a in actions {
            match a {
                Action::Adopt { worker, owner } => {
                    debug!(node = %self.config.node_id, worker = %worker, owner = %owner, reason = "ring owner is elsewhere; the worker listens",
                           "asking the owner to adopt the worker");
                    tokio::spawn(ask_adopt(self.clone(), worker, owner));
                }
                Action::Redirect { worker, owner } => {
                    debug!(node = %self.config.node_id, worker = %worker, owner = %owner, reason = "ring owner is elsewhere",
                           "handing the worker over by redirect");
                    tokio::spawn(redirect(self.clone(), worker, owner));
                }
                Action::Release { worker, owner } => {
                    info!(node = %self.config.node_id, worker = %worker, to = %owner, "proxy moved");
                    self.release(&worker, &owner);
                }
            }
        }
    }

    /// Closes our links with `worker`; requests pending on them end `proxy_moved`.
    fn release(&self, worker: &str, to: &str) {
        let links: Vec<mpsc::Sender<Command>> = lock(&self.peers)
            .get(worker)
            .map(|v| v.iter().map(|l| l.commands.clone()).collect())
            .unwrap_or_default();
        for c in links {
            let _ = c.try_send(Command::Handoff { to: to.to_owned() });
        }
    }

    /// Listen URLs of `peer` we could dial, with `all` replaced by the address its link
    /// came from.
    fn dialable_urls(&self, peer: &str) -> Vec<String> {
        let peers = lock(&self.peers);
        let Some(l) = peers.get(peer).and_then(|v| v.first()) else {
            return Vec::new();
        };
        nkcluster_core::url::reachable_at(&l.summary.listen, l.remote_ip)
    }

    /// Rows of the whole cluster: ours, plus each alive control member's own rows asked
    /// over the mesh (in parallel, each within `GATHER_TIMEOUT`; a member that does not
    /// answer is listed from our view only, and named in `incomplete`). A node listed by
    /// several control nodes appears once.
    async fn cluster_rows(self: &Arc<Self>) -> NodesReport {
        let mut rows = self.node_rows();
        let me = &self.config.node_id;
        let live: Vec<String> = self
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default();
        let (members, mut incomplete): (Vec<(String, mpsc::Sender<Command>)>, Vec<String>) = {
            let peers = lock(&self.peers);
            let linked: Vec<(String, mpsc::Sender<Command>)> = peers
                .values()
                .filter_map(|v| v.iter().find(|l| l.summary.role == Role::Control))
                .map(|l| (l.summary.node_id.clone(), l.commands.clone()))
                .collect();
            // Alive members we have no link to cannot be asked.
            let unlinked = live
                .iter()
                .filter(|m| *m != me && !linked.iter().any(|(id, _)| id == *m))
                .cloned()
                .collect();
            (linked, unlinked)
        };
        let mut asks = tokio::task::JoinSet::new();
        for (id, commands) in members {
            asks.spawn(async move {
                let (tx, rx) = oneshot::channel();
                let cmd = Command::Request {
                    class: CLASS_LOCAL_NODES.to_owned(),
                    body: Bytes::new(),
                    timeout: GATHER_TIMEOUT,
                    reply: tx,
                };
                if commands.send(cmd).await.is_err() {
                    return (id, None);
                }
                let rows = match rx.await {
                    Ok(Ok(b)) => postcard::from_bytes::<Vec<NodeRow>>(&b).ok(),
                    _ => None,
                };
                (id, rows)
            });
        }
        while let Some(r) = asks.join_next().await {
            let (member, theirs) = match r {
                Ok((member, Some(theirs))) => (member, theirs),
                Ok((member, None)) => {
                    incomplete.push(member);
                    continue;
                }
                Err(_) => continue,
            };
            let owner_of = |w: &str| {
                self.proxies
                    .as_ref()
                    .map(|p| lock(p).owner_of(w).to_owned())
            };
            nkcluster_core::table::merge(&mut rows, &member, theirs, owner_of);
        }
        incomplete.sort();
        if !incomplete.is_empty() {
            warn!(node = %self.config.node_id, members = %incomplete.join(", "),
                  "control members did not answer; the node table is incomplete");
        }
        NodesReport { rows, incomplete }
    }

    /// The job events heard last by every control member we are linked to and by us,
    /// oldest first (members that do not answer within `GATHER_TIMEOUT` are left out).
    async fn cluster_recent_events(self: &Arc<Self>) -> Vec<(u64, EventMsg)> {
        let mut all: Vec<(u64, EventMsg)> = lock(&self.recent).iter().cloned().collect();
        let members: Vec<String> = lock(&self.peers)
            .iter()
            .filter(|(_, v)| v.iter().any(|l| l.summary.role == Role::Control))
            .map(|(id, _)| id.clone())
            .collect();
        let mut asks = tokio::task::JoinSet::new();
        for m in members {
            let rx = self.enqueue(
                &m,
                CLASS_RECENT_EVENTS,
                Bytes::from_static(b"local"),
                GATHER_TIMEOUT,
            );
            asks.spawn(wait_reply(rx));
        }
        while let Some(r) = asks.join_next().await {
            if let Ok(Ok(b)) = r
                && let Ok(theirs) = postcard::from_bytes::<Vec<(u64, EventMsg)>>(&b)
            {
                all.extend(theirs);
            }
        }
        // Stable: one member's events keep their order when their times are equal.
        all.sort_by_key(|(t, _)| *t);
        let skip = all.len().saturating_sub(RECENT_EVENTS);
        all.drain(..skip);
        all
    }

    fn node_rows(&self) -> Vec<NodeRow> {
        let me = &self.config.node_id;
        let mut rows = vec![NodeRow {
            id: me.clone(),
            role: self.identity.role.as_str().into(),
            status: lock(&self.status).status().as_str().into(),
            owner: me.clone(),
            proxies: Vec::new(),
            remote: "-".into(),
            listen: self.identity.listen.clone(),
            meta: lock(&self.meta).to_string(),
            rtt_us: None,
        }];
        for links in lock(&self.peers).values() {
            // One row per node (its first link); admin clients are not nodes.
            let Some(l) = links.iter().find(|l| l.summary.role != Role::Admin) else {
                continue;
            };
            let book = lock(&self.workers);
            let status = book
                .status(&l.summary.node_id)
                .unwrap_or("ready")
                .to_owned();
            let meta = book
                .info(&l.summary.node_id)
                .map_or_else(|| l.summary.meta.clone(), |i| i.meta.clone());
            drop(book);
            rows.push(NodeRow {
                id: l.summary.node_id.clone(),
                role: l.summary.role.as_str().into(),
                status,
                owner: if l.summary.role == Role::Control {
                    l.summary.node_id.clone()
                } else {
                    me.clone()
                },
                proxies: if l.summary.role == Role::Control {
                    Vec::new()
                } else {
                    vec![me.clone()]
                },
                remote: l.summary.remote.clone(),
                listen: l.summary.listen.clone(),
                meta,
                rtt_us: Some(l.rtt_us.load(Ordering::Relaxed)).filter(|us| *us > 0),
            });
        }
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }

    fn refused(&self, remote: &str, claimed: Option<String>, code: &str, detail: &str) {
        let claimed_peer = claimed.as_deref().unwrap_or("?");
        if is_misconfiguration(code) {
            // Two nodes that disagree on a setting: retried with growing backoff, so one
            // line per attempt.
            error!(node = %self.config.node_id, remote = %remote, claimed_peer = %claimed_peer,
                   code = %code, error = %detail, "connection refused");
        } else {
            warn!(node = %self.config.node_id, remote = %remote, claimed_peer = %claimed_peer,
                  code = %code, error = %detail, "connection refused");
        }
        self.emit(NodeEvent::HandshakeFailed {
            remote: remote.to_owned(),
            claimed,
            code: code.to_owned(),
        });
    }

    fn client_tls(
        &self,
        url: &ClusterUrl,
    ) -> Result<Arc<rustls::ClientConfig>, transport::TransportError> {
        let opts = merge_tls(&self.config.tls, &url.tls);
        let k = format!("{opts:?}");
        if let Some(c) = lock(&self.client_tls).get(&k) {
            return Ok(c.clone());
        }
        let c = transport::client_tls(&opts)?;
        lock(&self.client_tls).insert(k, c.clone());
        Ok(c)
    }

    /// Connects to `url` and sets up its transport, within the connect and handshake
    /// deadlines. Returns the remote label (`tls:10.0.0.1:1973`) and the transport, or an
    /// error code (`no_connections` when nothing answered) and detail.
    async fn dial(
        &self,
        url: &ClusterUrl,
    ) -> Result<(String, transport::Ready), (&'static str, String)> {
        let client = if url.transport.is_tls() {
            Some(
                self.client_tls(url)
                    .map_err(|e| (e.code(), e.to_string()))?,
            )
        } else {
            None
        };
        let host = url.host.to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let limit = self.config.connection.connect_timeout;
        let (stream, addr) =
            match tokio::time::timeout(limit, self.net.connect(host, url.port)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(("no_connections", format!("{}: {e}", e.kind()))),
                Err(_) => {
                    return Err((
                        "no_connections",
                        format!("connect timed out after {limit:?}"),
                    ));
                }
            };
        let limit = self.config.connection.handshake.timeout;
        let setup = transport::dial(
            stream,
            url,
            client.as_ref(),
            self.config.connection.max_frame,
        );
        match tokio::time::timeout(limit, setup).await {
            Ok(Ok(r)) => Ok((format!("{}:{addr}", url.transport), r)),
            Ok(Err(e)) => Err((e.code(), e.to_string())),
            Err(_) => Err((
                "handshake_timeout",
                format!("no {} handshake within {limit:?}", url.transport),
            )),
        }
    }
}

fn bind_addr(url: &ClusterUrl) -> Result<SocketAddr, String> {
    let ip = match &url.host {
        Host::All => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Host::Ip(ip) => *ip,
        Host::Name(n) if n.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        // A name is what peers dial: bind every interface, announce the name.
        Host::Name(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(SocketAddr::new(ip, url.port))
}

/// One unauthenticated connection's slot in the node's [`Admission`] counts, freed when
/// dropped.
struct AdmissionTicket {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl AdmissionTicket {
    fn take(admission: &Arc<Mutex<Admission>>, ip: IpAddr) -> Result<Self, Refusal> {
        lock(admission).admit(ip)?;
        Ok(AdmissionTicket {
            admission: admission.clone(),
            ip,
        })
    }
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        lock(&self.admission).release(self.ip);
    }
}

/// What some connections bring beyond the transport and key.
#[derive(Default)]
struct LinkExtras {
    /// An exclusive connection's own command channel (it is not listed as a peer link).
    commands: Option<(mpsc::Sender<Command>, mpsc::Receiver<Command>)>,
    /// Told the handshake's outcome.
    notify: Option<oneshot::Sender<Result<PeerSummary, ConnError>>>,
    /// An accepted connection's slot among the unauthenticated ones.
    admission: Option<AdmissionTicket>,
}

/// Outcome of one connection, as seen by its sink.
#[derive(Default)]
struct LinkOutcome {
    authenticated: bool,
    error: Option<ConnError>,
}

struct LinkSink<N: Net> {
    inner: Arc<Inner<N>>,
    conn_id: u64,
    remote: String,
    dialer: bool,
    commands: Option<mpsc::Sender<Command>>,
    remote_ip: Option<IpAddr>,
    rtt_us: Arc<AtomicU64>,
    /// An accepted connection's slot among the unauthenticated ones (freed at
    /// authentication, or when the connection ends).
    admission: Option<AdmissionTicket>,
    outcome: LinkOutcome,
    notify: Option<oneshot::Sender<Result<PeerSummary, ConnError>>>,
}

impl<N: Net> EventSink for LinkSink<N> {
    fn on_event(&mut self, conn: &Connection, event: &Event) {
        let me = &self.inner.config.node_id;
        match event {
            Event::Authenticated(p) => {
                self.outcome.authenticated = true;
                self.admission = None;
                info!(node = %me, peer = %p.node_id, role = p.role.as_str(), remote = %self.remote,
                      "link up");
                if let Some(commands) = self.commands.take() {
                    if p.role == Role::Control
                        && let Some(m) = &self.inner.membership
                    {
                        // Tell a new control peer everything we know.
                        let view = lock(m).view();
                        let _ = commands.try_send(Command::Gossip(view));
                    }
                    let link = PeerLink {
                        conn_id: self.conn_id,
                        commands,
                        summary: summary(p, &self.remote, self.dialer),
                        remote_ip: self.remote_ip,
                        rtt_us: self.rtt_us.clone(),
                    };
                    let mut peers = lock(&self.inner.peers);
                    let links = peers.entry(p.node_id.clone()).or_default();
                    let control = links.iter().position(|l| l.summary.role == Role::Control);
                    match control {
                        Some(i) if p.role == Role::Control => {
                            // Both ends dialed: one link per pair. Both ends keep the link
                            // dialed by the smaller node id; the other is dropped from the
                            // table and closes once its pending requests are answered.
                            let keep = nkcluster_core::mesh::duplicate_link(
                                me,
                                &p.node_id,
                                links[i].summary.dialer,
                                self.dialer,
                            );
                            let new_wins = keep == nkcluster_core::mesh::KeepLink::New;
                            debug!(node = %me, peer = %p.node_id, keep = ?keep,
                                   "two links with one control node: keeping the one the smaller id dialed");
                            if new_wins {
                                links[i] = link;
                            }
                        }
                        _ => links.push(link),
                    }
                }
                if let Some(n) = self.notify.take() {
                    let _ = n.send(Ok(summary(p, &self.remote, self.dialer)));
                }
                let first_control_link = || {
                    lock(&self.inner.peers)
                        .values()
                        .flatten()
                        .filter(|l| l.summary.role == Role::Control)
                        .count()
                        == 1
                };
                if p.role == Role::Control
                    && self.inner.membership.is_none()
                    && !self.inner.config.admin
                    && first_control_link()
                {
                    // Tell the (new) proxy where we stand (once: extra links to control
                    // nodes, such as exclusive ones, do not repeat it).
                    let st = lock(&self.inner.status).status();
                    self.inner
                        .node_event(WireEvent::NodeStatus(st.as_str().into()));
                    self.inner.send_info();
                }
                if p.role == Role::Worker
                    && let Some(px) = &self.inner.proxies
                {
                    let dialable = !self.inner.dialable_urls(&p.node_id).is_empty();
                    lock(px).handle_worker_up(&p.node_id, dialable);
                    self.inner.after_proxies();
                }
                self.inner.emit(NodeEvent::LinkUp {
                    peer: p.node_id.clone(),
                    role: p.role,
                    remote: self.remote.clone(),
                    dialer: self.dialer,
                });
            }
            Event::RttMeasured(rtt) => {
                let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
                self.rtt_us.store(us, Ordering::Relaxed);
            }
            Event::Gossip(view) => {
                let peer = conn.peer().map(|p| (p.node_id.clone(), p.role));
                if let (Some((id, Role::Control)), Some(m)) = (peer, &self.inner.membership) {
                    let now = self.inner.clock.now();
                    // The sender's own record comes first; the link proves it alive. A
                    // sender listening on `all` is dialable where this link reached it:
                    // that address goes into the view, so every member can dial it.
                    let mut view = view.clone();
                    if let Some(sender) = view.first_mut().filter(|r| r.id == id) {
                        sender.listen =
                            nkcluster_core::url::reachable_at(&sender.listen, self.remote_ip);
                    }
                    {
                        let mut m = lock(m);
                        if let Some(sender) = view.first().filter(|r| r.id == id) {
                            m.handle_link_up(now, sender.clone());
                        }
                        m.handle_view(now, &view);
                    }
                    self.inner.after_membership();
                }
            }
            Event::Closed(err) => {
                self.outcome.error = err.clone();
                if let Some(n) = self.notify.take() {
                    let e = err
                        .clone()
                        .unwrap_or_else(|| ConnError::PeerClosed("closed".into()));
                    let _ = n.send(Err(e));
                }
                let claimed = conn.claimed_peer().map(str::to_owned);
                if self.outcome.authenticated {
                    let peer = claimed.unwrap_or_default();
                    let last_link = {
                        let mut peers = lock(&self.inner.peers);
                        match peers.get_mut(&peer) {
                            Some(v) => {
                                v.retain(|l| l.conn_id != self.conn_id);
                                let empty = v.is_empty();
                                if empty {
                                    peers.remove(&peer);
                                }
                                empty
                            }
                            None => true,
                        }
                    };
                    let role = conn.peer().map(|p| p.role);
                    if last_link
                        && role == Some(Role::Worker)
                        && let Some(px) = &self.inner.proxies
                    {
                        lock(px).handle_worker_down(&peer);
                        self.inner.worker_gone(&peer);
                    }
                    if last_link
                        && role == Some(Role::Control)
                        && let Some(m) = &self.inner.membership
                    {
                        lock(m).handle_link_down(self.inner.clock.now(), &peer);
                        self.inner.after_membership();
                    }
                    match err {
                        // The peer closed in order (a stop, a hand-off, an admin client
                        // done with its command): news, not trouble.
                        Some(e)
                            if matches!(e, ConnError::PeerClosed(_))
                                || role == Some(Role::Admin) =>
                        {
                            info!(node = %me, peer = %peer, remote = %self.remote, code = e.code(), error = %e, "link down")
                        }
                        Some(e) => warn!(node = %me, peer = %peer, remote = %self.remote,
                                         code = e.code(), error = %e, "link down"),
                        None => {
                            info!(node = %me, peer = %peer, remote = %self.remote, "link closed")
                        }
                    }
                    self.inner.emit(NodeEvent::LinkDown {
                        peer,
                        remote: self.remote.clone(),
                        code: err.as_ref().map(|e| e.code().to_owned()),
                    });
                } else {
                    let code = err.as_ref().map_or("closed", |e| e.code());
                    let detail = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
                    self.inner.refused(&self.remote, claimed, code, &detail);
                }
            }
            _ => {}
        }
    }
}

/// Handshake failures that mean the two nodes are configured differently (wrong password
/// or cluster name, another ring size or transport): worth an `error` line.
fn is_misconfiguration(code: &str) -> bool {
    matches!(
        code,
        "auth_failed"
            | "cluster_mismatch"
            | "partition_mismatch"
            | "unsupported_version"
            | "transport_mismatch"
    )
}

/// The IP of a remote label like `tls:127.0.0.1:1973` or `ws:[::1]:1974`.
fn remote_ip_of(remote: &str) -> Option<IpAddr> {
    let addr = remote.split_once(':')?.1;
    addr.parse::<SocketAddr>().ok().map(|a| a.ip())
}

fn summary(p: &PeerInfo, remote: &str, dialer: bool) -> PeerSummary {
    PeerSummary {
        node_id: p.node_id.clone(),
        role: p.role,
        remote: remote.to_owned(),
        dialer,
        listen: p.listen.clone(),
        meta: p.meta.clone(),
    }
}

/// Runs a connection we dialed in a task of its own; resolves with its handshake's
/// outcome (an error when the task ended first).
fn spawn_dialed<N: Net>(
    inner: &Arc<Inner<N>>,
    ready: transport::Ready,
    key: Key,
    remote: String,
) -> oneshot::Receiver<Result<PeerSummary, ConnError>> {
    let (tx, rx) = oneshot::channel();
    let extras = LinkExtras {
        notify: Some(tx),
        ..Default::default()
    };
    tokio::spawn(run_connection(
        inner.clone(),
        ready,
        Side::Dialer,
        key,
        remote,
        extras,
    ));
    rx
}

/// Runs one connection over an established transport to completion.
async fn run_connection<N: Net>(
    inner: Arc<Inner<N>>,
    ready: transport::Ready,
    side: Side,
    key: Key,
    remote: String,
    extras: LinkExtras,
) -> LinkOutcome {
    let LinkExtras {
        commands,
        notify,
        admission,
    } = extras;
    let params = ConnectionParams {
        side,
        identity: inner.identity.clone(),
        key,
        nonce: inner.nonce(),
        channel_binding: ready.binding,
        wall_origin_ns: inner.clock.wall_origin_ns(),
    };
    let mut config = inner.config.connection.clone();
    config.framing = ready.io.framing();
    let conn = Connection::new(config, params, inner.clock.now());
    // An exclusive connection brings its own channel and is not listed as a peer link.
    let (register, tx, rx) = match commands {
        Some((tx, rx)) => (false, tx, rx),
        None => {
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            (true, tx, rx)
        }
    };
    let conn_id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let mut sink = LinkSink {
        inner: inner.clone(),
        conn_id,
        remote_ip: remote_ip_of(&remote),
        rtt_us: Arc::new(AtomicU64::new(0)),
        admission,
        remote,
        dialer: side == Side::Dialer,
        commands: register.then_some(tx),
        outcome: LinkOutcome::default(),
        notify,
    };
    let handler = NodeHandler {
        inner: inner.clone(),
    };
    inner.running.send_modify(|n| *n += 1);
    drive(ready.io, conn, inner.clock, rx, &handler, &mut sink).await;
    inner.running.send_modify(|n| *n -= 1);
    sink.outcome
}

async fn accept_loop<N: Net>(
    inner: Arc<Inner<N>>,
    listener: N::Listener,
    url: ClusterUrl,
    tls: Option<Arc<ServerTls>>,
) {
    let mut stop = inner.shutdown.subscribe();
    // Refusals at accept are logged at most once a second, with their count.
    let mut refused = 0u64;
    let mut refused_logged: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = inner.net.accept(&listener) => r,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                let ticket = match AdmissionTicket::take(&inner.admission, addr.ip()) {
                    Ok(t) => t,
                    Err(r) => {
                        drop(stream);
                        refused += 1;
                        let now = tokio::time::Instant::now();
                        if refused_logged.is_none_or(|t| now >= t + Duration::from_secs(1)) {
                            warn!(node = %inner.config.node_id, remote = %format!("{}:{addr}", url.transport),
                                  code = r.code(), error = %r, refused, "connection refused at accept");
                            refused_logged = Some(now);
                            refused = 0;
                        }
                        continue;
                    }
                };
                let inner = inner.clone();
                let tls = tls.clone();
                let path = url.path.clone();
                let transport = url.transport;
                tokio::spawn(async move {
                    let remote = format!("{transport}:{addr}");
                    let max = inner.config.connection.max_frame;
                    // The transport's own handshake (TLS, WebSocket upgrade) counts against
                    // the handshake deadline too: a silent peer cannot hold a task.
                    let limit = inner.config.connection.handshake.timeout;
                    let setup = transport::accept(stream, transport, tls.as_deref(), &path, max);
                    let ready = match tokio::time::timeout(limit, setup).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            inner.refused(&remote, None, e.code(), &e.to_string());
                            return;
                        }
                        Err(_) => {
                            let e = format!("no {transport} handshake within {limit:?}");
                            inner.refused(&remote, None, "handshake_timeout", &e);
                            return;
                        }
                    };
                    let key = inner.key_for(&inner.config.password);
                    run_connection(
                        inner,
                        ready,
                        Side::Listener,
                        key,
                        remote,
                        LinkExtras {
                            admission: Some(ticket),
                            ..Default::default()
                        },
                    )
                    .await;
                });
            }
            Err(e) => {
                // Out of descriptors and similar: keep serving, but do not spin.
                warn!(node = %inner.config.node_id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Dials a control member we learned of (full mesh), trying its listen URLs in order,
/// and stays linked while the link lasts.
async fn mesh_dial<N: Net>(inner: Arc<Inner<N>>, member: MemberInfo) {
    let mut linked = false;
    let mut tried = false;
    for url in member.listen.iter().filter_map(|u| parse_url(u).ok()) {
        if url.host == Host::All || inner.stopping() {
            // Announced on every interface: not dialable from here (it dials us).
            continue;
        }
        let already = lock(&inner.peers).contains_key(&member.id);
        if already {
            linked = true;
            break;
        }
        tried = true;
        debug!(node = %inner.config.node_id, member = %member.id, url = %url.remote_label(), "dialing control member (mesh)");
        match inner.dial(&url).await {
            Ok((remote, ready)) => {
                let key = inner.key_for(&inner.config.password);
                let outcome = run_connection(
                    inner.clone(),
                    ready,
                    Side::Dialer,
                    key,
                    remote,
                    LinkExtras::default(),
                )
                .await;
                linked |= outcome.authenticated;
                break;
            }
            Err((code, e)) => {
                warn!(node = %inner.config.node_id, member = %member.id, url = %url.remote_label(),
                      code, error = %e, "cannot reach member");
            }
        }
    }
    if tried && !linked && !inner.stopping() {
        if let Some(m) = &inner.membership {
            lock(m).handle_dial_failed(inner.clock.now(), &member.id);
        }
        inner.after_membership();
    }
    lock(&inner.mesh_dialing).remove(&member.id);
}

/// Drives the timers of the membership machine (removals, redial rounds) and of the
/// proxy machine (hand-off retries).
async fn membership_timer<N: Net>(inner: Arc<Inner<N>>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        let membership = inner
            .membership
            .as_ref()
            .and_then(|m| lock(m).poll_timeout());
        let proxies = inner.proxies.as_ref().and_then(|p| lock(p).poll_timeout());
        let next = match (membership, proxies) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(inner.clock.to_tokio(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let now = inner.clock.now();
                if let Some(m) = &inner.membership {
                    lock(m).handle_timeout(now);
                }
                if let Some(p) = &inner.proxies {
                    lock(p).handle_timeout(now);
                }
                inner.after_membership();
                inner.after_proxies();
            }
            _ = inner.membership_timer.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Control side: streams the events we hear to our subscribers.
async fn stream_events<N: Net>(inner: Arc<Inner<N>>) {
    let mut rx = inner.job_events.subscribe();
    let mut stop = inner.shutdown.subscribe();
    loop {
        let ev = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => return,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(node = %inner.config.node_id, lost = n, "event subscribers missed events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if lock(&inner.subscribers).is_empty() {
            continue;
        }
        let msg = EventMsg {
            node: ev.node,
            class: ev.class,
            task: ev.task,
            event: ev.event,
        };
        if let Ok(b) = postcard::to_allocvec(&msg) {
            inner.publish(&Bytes::from(b), false);
        }
    }
}

/// Reports our information periodically (it also goes out on every status or metadata
/// change, and when a control link comes up).
async fn report_info<N: Net>(inner: Arc<Inner<N>>) {
    if inner.config.admin {
        return;
    }
    let mut stop = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INFO_EVERY) => inner.send_info(),
            _ = stop.changed() => return,
        }
    }
}

/// Sends our events, in order, to the control node holding our proxy (a control node
/// hears its own). With no control link they are dropped: the control side has told the
/// classes `not_connected`.
async fn forward_events<N: Net>(inner: Arc<Inner<N>>, mut rx: mpsc::UnboundedReceiver<EventMsg>) {
    while let Some(ev) = rx.recv().await {
        if inner.config.admin {
            continue; // an admin client runs no jobs
        }
        if inner.membership.is_some() {
            inner.handle_job_event(ev);
            continue;
        }
        let link = lock(&inner.peers)
            .values()
            .flatten()
            .find(|l| l.summary.role == Role::Control)
            .map(|l| l.commands.clone());
        let Some(commands) = link else { continue };
        let Ok(body) = postcard::to_allocvec(&ev) else {
            continue;
        };
        let (tx, _rx) = oneshot::channel();
        let _ = commands
            .send(Command::Request {
                class: CLASS_JOB_EVENT.to_owned(),
                body: Bytes::from(body),
                timeout: GATHER_TIMEOUT,
                reply: tx,
            })
            .await;
    }
}

/// Hand-off, at the old proxy: asks `owner` to dial `worker` and serve it.
async fn ask_adopt<N: Net>(inner: Arc<Inner<N>>, worker: String, owner: String) {
    let req = AdoptRequest {
        worker: worker.clone(),
        urls: inner.dialable_urls(&worker),
    };
    let limit = inner.config.connection.connect_timeout + inner.config.connection.handshake.timeout;
    let body = postcard::to_allocvec(&req)
        .map(Bytes::from)
        .unwrap_or_default();
    let node = Node::from_inner(inner.clone());
    // An owner learned through gossip may not be linked yet (it is joining): wait for it.
    let r = if inner.wait_linked(&owner, limit).await {
        node.request(&owner, CLASS_ADOPT, body, limit).await
    } else {
        Err(RequestError::NotConnected)
    };
    let ok = r.is_ok();
    if let Err(e) = r {
        warn!(node = %inner.config.node_id, worker = %worker, owner = %owner, code = e.code(), error = %e,
              "owner could not adopt the worker; redirecting it");
    }
    if let Some(p) = &inner.proxies {
        lock(p).handle_adopted(&worker, &owner, ok);
    }
    inner.after_proxies();
}

/// Hand-off, at the old proxy, for a worker we cannot have dialed: tell it to reconnect
/// to `owner`, then close our link.
async fn redirect<N: Net>(inner: Arc<Inner<N>>, worker: String, owner: String) {
    let node = Node::from_inner(inner.clone());
    // Never send a worker to an owner that does not answer (it may have hung without
    // our failure detection noticing yet): the worker stays served here, and the hand-off
    // is retried until the owner answers or the ring moves on. An owner that is joining
    // (learned through gossip, not linked yet) is waited for, so the worker moves as soon
    // as the link is up.
    let probe = inner.config.connection.idle_timeout;
    let answered = if inner.wait_linked(&owner, probe).await {
        node.request(&owner, "nkcluster.echo", Bytes::new(), probe)
            .await
    } else {
        Err(RequestError::NotConnected)
    };
    if let Err(e) = answered {
        warn!(node = %inner.config.node_id, worker = %worker, owner = %owner, code = e.code(), error = %e,
              "owner does not answer; the worker stays here for now");
        if let Some(p) = &inner.proxies {
            lock(p).handle_owner_silent(inner.clock.now(), &worker, &owner);
        }
        inner.membership_timer.notify_one();
        return;
    }
    // The owner's URLs as the mesh knows them (`all` already replaced by the address it
    // was reached at). None that a worker could dial: no redirect, the worker stays.
    let announced = inner
        .membership
        .as_ref()
        .map(|m| lock(m).view())
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.id == owner)
        .map(|r| r.listen)
        .unwrap_or_default();
    let urls = nkcluster_core::url::reachable_at(&announced, None);
    if urls.is_empty() {
        warn!(node = %inner.config.node_id, worker = %worker, owner = %owner,
              "cannot redirect the worker: its owner announced no address a worker could dial; the worker stays here");
        return;
    }
    let body = Bytes::from(urls.join(", "));
    debug!(node = %inner.config.node_id, worker = %worker, owner = %owner, to = %urls.join(", "), "redirecting worker");
    if let Err(e) = node
        .request(&worker, CLASS_REDIRECT, body, GATHER_TIMEOUT)
        .await
    {
        warn!(node = %inner.config.node_id, worker = %worker, owner = %owner, code = e.code(), error = %e,
              "redirect not acknowledged; closing anyway");
    }
    info!(node = %inner.config.node_id, worker = %worker, to = %owner, "proxy moved (worker redirected)");
    inner.release(&worker, &owner);
}

/// Hand-off, at the new owner: dial the worker (unless already linked) and answer once
/// it is linked here.
async fn adopt<N: Net>(inner: Arc<Inner<N>>, req: AdoptRequest, responder: Responder) {
    if lock(&inner.peers).contains_key(&req.worker) {
        responder.reply(Ok(Bytes::new()));
        return;
    }
    let mut last = RemoteError::new("no_connections", "the worker announced no reachable URL");
    for url in req.urls.iter().filter_map(|u| parse_url(u).ok()) {
        let (remote, ready) = match inner.dial(&url).await {
            Ok(r) => r,
            Err((code, e)) => {
                last = RemoteError::new(code, e);
                continue;
            }
        };
        let key = inner.key_for(&inner.config.password);
        match spawn_dialed(&inner, ready, key, remote).await {
            Ok(Ok(p)) if p.node_id == req.worker => {
                info!(node = %inner.config.node_id, worker = %req.worker, remote = %p.remote, "adopted worker");
                responder.reply(Ok(Bytes::new()));
                return;
            }
            Ok(Ok(p)) => {
                last = RemoteError::new(
                    "wrong_node",
                    format!("{} answered at the worker's URL", p.node_id),
                );
            }
            Ok(Err(e)) => last = RemoteError::new(e.code(), e.to_string()),
            Err(_) => {}
        }
    }
    responder.reply(Err(last));
}

/// Performs the core [`Connector`](nkcluster_core::connector::Connector)'s plan: dials
/// the entry it names and runs the link while it lasts, waits while any control link is
/// up, sleeps between rounds, gives up when it says so.
async fn connector<N: Net>(inner: Arc<Inner<N>>) {
    use nkcluster_core::connector::ConnectorAction;
    let mut stop = inner.shutdown.subscribe();
    lock(&inner.connector).start(inner.clock.now());
    loop {
        if inner.stopping() {
            return;
        }
        let action = lock(&inner.connector).poll_action();
        match action {
            Some(ConnectorAction::Dial(url)) => match connect_once(&inner, &url).await {
                Ok(()) => lock(&inner.connector).handle_linked(inner.clock.now()),
                Err((code, detail)) => {
                    let random = inner.random_u64();
                    lock(&inner.connector).handle_dial_failed(
                        inner.clock.now(),
                        &code,
                        &detail,
                        random,
                    );
                }
            },
            Some(ConnectorAction::WaitWhileLinked) => {
                // A control node that adopted us (it dialed us) serves us now.
                let mut events = inner.events.subscribe();
                while lock(&inner.peers)
                    .values()
                    .flatten()
                    .any(|l| l.summary.role == Role::Control)
                {
                    tokio::select! {
                        _ = events.recv() => {}
                        _ = stop.changed() => return,
                    }
                }
                lock(&inner.connector).handle_links_lost(inner.clock.now());
            }
            Some(ConnectorAction::GiveUp { code, detail }) => {
                let attempts = lock(&inner.connector).failures();
                warn!(node = %inner.config.node_id, code = %code, error = %detail,
                      attempts, "giving up connecting to the cluster");
                inner.emit(NodeEvent::GaveUp { code: code.clone() });
                // send_replace: the value must stay even if nobody is waiting yet.
                inner.fatal.send_replace(Some(Fatal { code, detail }));
                return;
            }
            None => {
                let Some(t) = lock(&inner.connector).poll_timeout() else {
                    return; // nothing left to do
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(inner.clock.to_tokio(t)) => {}
                    _ = stop.changed() => return,
                }
                lock(&inner.connector).handle_timeout(inner.clock.now());
            }
        }
    }
}

/// Dials `url` and runs the link until it ends: `Ok` when it authenticated, otherwise
/// the failure's code and detail.
async fn connect_once<N: Net>(
    inner: &Arc<Inner<N>>,
    url: &ClusterUrl,
) -> Result<(), (String, String)> {
    let label = url.remote_label();
    debug!(node = %inner.config.node_id, url = %label, "dialing cluster_addr entry");
    let password = url.password.as_deref().unwrap_or(&inner.config.password);
    let key = inner.key_for(password);
    let (remote, ready) = match inner.dial(url).await {
        Ok(r) => r,
        Err((code, e)) => {
            warn!(node = %inner.config.node_id, url = %label, code, error = %e, "connect failed");
            inner.emit(NodeEvent::ConnectFailed {
                url: label,
                error: e.clone(),
            });
            return Err((code.to_owned(), e));
        }
    };
    let outcome = run_connection(
        inner.clone(),
        ready,
        Side::Dialer,
        key,
        remote,
        LinkExtras::default(),
    )
    .await;
    if outcome.authenticated {
        return Ok(());
    }
    // A refused handshake (say, a wrong password in this URL): the next entry.
    Err(outcome.error.map_or_else(
        || {
            (
                "closed".to_owned(),
                "the peer closed during the handshake".to_owned(),
            )
        },
        |e| (e.code().to_owned(), e.to_string()),
    ))
}
