//! The cluster protocol: what nodes ask of each other above one link, as typed messages.
//! A request's class name selects a [`ClusterRequest`] variant and its body is that
//! variant's postcard encoding; [`ClusterRequest::decode`] is the one place where a peer's
//! cluster request is parsed (a class that is not the cluster's goes to the registered
//! handlers), and [`ClusterRequest::encode`] gives the class and body to send.
//!
//! Peer input never panics here and never allocates what it merely claims (postcard reads
//! lengths against the bytes present); whatever decodes re-encodes to a fixed point.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::conn_error::RequestError;
use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::status::Status;

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
/// Any node: a job operation (a [`JobCall`], postcard).
pub const CLASS_JOB: &str = "nkcluster.job";
/// Worker to its control node: an event ([`EventMsg`], postcard).
pub const CLASS_JOB_EVENT: &str = "nkcluster.job_event";
/// Control node to a worker linked to it: "your proxy is here, at your ring owner" (empty
/// body): the events the worker kept while disconnected go out on this link.
pub const CLASS_PLACED: &str = "nkcluster.placed";

/// Admin or control peer to any node: load a WebAssembly module as a named function
/// (a [`LoadRequest`](crate::modules::LoadRequest), postcard). Reply: a
/// [`LoadReply`](crate::modules::LoadReply).
pub const CLASS_LOAD: &str = "nkcluster.load";

/// Admin request to a control node: dial a URL (a [`DialRequest`], postcard): `join`
/// (a control node: we join its control cluster) or `connect` (a listening worker: the
/// cluster serves it, its proxy at its owner). Reply: the id of the node that answered,
/// UTF-8.
pub const CLASS_DIAL: &str = "nkcluster.dial";
/// Admin request to a control node (or, `local`, between members): forget a node whose
/// link is lost (a [`RemoveRequest`], postcard). Reply: a [`RemoveReport`].
pub const CLASS_REMOVE: &str = "nkcluster.remove";

/// What [`CLASS_DIAL`] dials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// The URL (discovery looks up what it leaves out).
    pub url: String,
    /// The node expected there is a control node (`join`), not a worker (`connect`).
    pub control: bool,
}

/// What [`CLASS_REMOVE`] forgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The node.
    pub node: String,
    /// Remove it even while it is connected (its links are closed).
    pub force: bool,
    /// At the answering member only (between members); otherwise at every member.
    pub local: bool,
}

/// The outcome of a removal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RemoveReport {
    /// The control members that knew the node and forgot it, sorted.
    pub forgotten_at: Vec<String>,
    /// The control members that did not answer (they may still list it).
    pub incomplete: Vec<String>,
}

/// A `call` of a named function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRequest {
    /// Function name.
    pub function: String,
    /// Arguments.
    pub args: Vec<String>,
}

/// A subscription to a control node's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    /// Who receives the stream (linked to the control node).
    pub subscriber: String,
    /// Also gather every other control member's events (an admin client's whole-cluster
    /// view); members asked on its behalf stream to this control node only.
    pub fanout: bool,
}

/// A request for another node, routed by control nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The control node holding the target's link sends it over a dedicated connection
    /// (when the target listens).
    pub exclusive: bool,
}

/// A proxy hand-off: the worker and the URLs to dial it at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// The worker's node id.
    pub worker: String,
    /// Its listen URLs (`all` already replaced by the address it was reached at).
    pub urls: Vec<String>,
}

/// The wire form of events (payload still encoded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireEvent {
    /// A class's own event, postcard-encoded.
    User(Bytes),
    /// The task started.
    TaskStarted,
    /// The task ended.
    TaskStopped(String),
    /// The worker's status.
    NodeStatus(Status),
    /// The worker's information (sent periodically and when its status or metadata
    /// change).
    Info(NodeInfo),
    /// The task is running: re-announced for every running task whenever the worker's
    /// events start going to a control link (a reconnection, a new owner), after the
    /// events it kept while it had none.
    TaskRunning,
    /// This many of the class's events were dropped (the oldest first) while the worker
    /// had no control link and its event buffer was full; told before the kept ones.
    EventsLost(u64),
}

/// What `get_info` returns, and what workers report periodically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// Status.
    pub status: Status,
    /// Listen URLs.
    pub listen: Vec<String>,
    /// Metadata.
    pub meta: String,
    /// Machine figures.
    pub stats: Stats,
    /// The modules loaded over the wire, by name.
    pub modules: Vec<crate::modules::ModuleInfo>,
}

/// Machine figures, gathered with `sysinfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Global CPU usage, percent (since the previous sample).
    pub cpu_percent: f32,
    /// Load averages (1, 5, 15 minutes).
    pub load_avg: [f64; 3],
    /// Memory, bytes.
    pub mem_total: u64,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Disks: mount point, total and available bytes.
    pub disks: Vec<(String, u64, u64)>,
    /// Wall clock, Unix milliseconds.
    pub time_ms: u64,
    /// Operating system and version.
    pub os: String,
    /// Seconds since boot.
    pub uptime_s: u64,
}

/// One part of a file sent to a node (`send_file`): small files go in one part, big
/// ones in 1 MiB parts, in order. The last part carries the digest of the whole file
/// (SHA-256 in [`JobCall::SendFile`], BLAKE3 in [`JobCall::SendFileBlake3`]), which the
/// receiver checks before the file appears at `path`; every other part of a big file
/// carries the file's identity in that field (for resuming).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    /// Destination path on the receiving node.
    pub path: String,
    /// Offset of `data` in the file.
    pub offset: u64,
    /// Whole file size.
    pub total: u64,
    /// The bytes.
    pub data: Bytes,
    /// The whole file's digest on the last part (of the request's hash); a big file's
    /// identity on the others.
    pub sha256: Option<[u8; 32]>,
}

/// One event from a worker to the control node holding its proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMsg {
    /// The node it comes from.
    pub node: String,
    /// Job class (`nkcluster` for node-level events).
    pub class: String,
    /// The task it concerns.
    pub task: Option<u64>,
    /// What happened.
    pub event: WireEvent,
}

/// Everything a control node asks of a worker's job side (the body of `nkcluster.job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobCall {
    /// A class's request.
    Request {
        /// Class.
        class: String,
        /// Encoded request.
        body: Bytes,
    },
    /// Start a task; replies `(task id, immediate reply)`.
    Task {
        /// Class.
        class: String,
        /// Encoded spec.
        body: Bytes,
        /// The caller's own id for it (`already_started` if one runs with it); `None`:
        /// the node picks one.
        id: Option<u64>,
    },
    /// A command for a running task.
    Command {
        /// Class.
        class: String,
        /// Task id.
        task: u64,
        /// Encoded command.
        body: Bytes,
    },
    /// Stop a running task (it ends `stopped`).
    StopTask(u64),
    /// Change the node status.
    SetStatus(Status),
    /// Running tasks `(id, class)`, all or one class's.
    GetTasks(Option<String>),
    /// The node's [`NodeInfo`].
    GetInfo,
    /// The node's metadata.
    GetMeta,
    /// Updates metadata tokens (appends, or replaces a token of the same name).
    UpdateMeta(String),
    /// Removes metadata tokens by name.
    RemoveMeta(Vec<String>),
    /// A value of the node's data registry (`not_found` when absent).
    GetData(String),
    /// Stores a value in the data registry.
    PutData(String, Bytes),
    /// Deletes a value from the data registry.
    DelData(String),
    /// A part of a file.
    SendFile(FilePart),
    /// Where the transfer of a file is at (resuming a big file): replies the bytes
    /// confirmed so far, a `u64` (0: start from the beginning).
    FileStatus(FileQuery),
    /// A part of a file whose content is checked with BLAKE3 instead of SHA-256: the
    /// last part's `sha256` field carries the whole file's BLAKE3 digest (protocol 6,
    /// see [`crate::file_send::digest`]).
    SendFileBlake3(FilePart),
}

/// The identity of a big file's transfer, asked for its confirmed offset
/// ([`JobCall::FileStatus`]) before its parts are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileQuery {
    /// Destination path on the receiving node.
    pub path: String,
    /// Whole file size.
    pub total: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
}

/// The reply to [`JobCall::Task`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The new task's id.
    pub task: u64,
    /// The class's immediate reply, encoded.
    pub reply: Option<Bytes>,
}

/// A cluster request, typed. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterRequest {
    /// The whole cluster's node table (admin, at a control node).
    Nodes,
    /// One node's row.
    NodeInfo(String),
    /// The answering control node's own rows (between members).
    LocalNodes,
    /// Dial this worker and serve it (a hand-off, between members).
    Adopt(AdoptRequest),
    /// Reconnect to these URLs (to a worker, from the control node handing it over).
    Redirect(String),
    /// Call a named function.
    Call(CallRequest),
    /// Call a named function on the blocking pool.
    SpawnCall(CallRequest),
    /// Stream me the events you hear.
    Subscribe(SubscribeRequest),
    /// One streamed event.
    EventStream(EventMsg),
    /// Send this request to that node.
    Route(RouteRequest),
    /// The job events heard last (`local`: the answering node's only).
    RecentEvents {
        /// Only the answering node's.
        local: bool,
    },
    /// A job operation.
    Job(JobCall),
    /// A worker's event, to its control node.
    JobEvent(EventMsg),
    /// To a worker: its proxy is at its owner (see [`CLASS_PLACED`]).
    Placed,
    /// Dial a control node to join, or a worker to serve (admin).
    Dial(DialRequest),
    /// Forget a node whose link is lost (admin; `local` between members).
    Remove(RemoveRequest),
    /// Load a WebAssembly module as a named function (admin and control peers).
    Load(crate::modules::LoadRequest),
}

/// A cluster request that does not decode: the class, and why (decoding holds no state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad_request: {class}: {detail}")]
pub struct ClusterDecodeError {
    /// The request's class.
    pub class: String,
    /// What is wrong with the body.
    pub detail: String,
}

impl ClusterDecodeError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        "bad_request"
    }
}

/// Every class name of the cluster protocol.
pub const CLASSES: [&str; 17] = [
    CLASS_NODES,
    CLASS_NODE_INFO,
    CLASS_LOCAL_NODES,
    CLASS_ADOPT,
    CLASS_REDIRECT,
    CLASS_CALL,
    CLASS_SPAWN_CALL,
    CLASS_SUBSCRIBE,
    CLASS_EVENT_STREAM,
    CLASS_ROUTE,
    CLASS_RECENT_EVENTS,
    CLASS_JOB,
    CLASS_JOB_EVENT,
    CLASS_PLACED,
    CLASS_DIAL,
    CLASS_REMOVE,
    CLASS_LOAD,
];

impl ClusterRequest {
    /// [`decode`](Self::decode) from a body held in `body`: a file part's bytes stay in
    /// it (no copy, see [`crate::file_send::wire`]).
    pub fn decode_bytes(
        class: &str,
        body: &Bytes,
    ) -> Option<Result<ClusterRequest, ClusterDecodeError>> {
        if class == CLASS_JOB
            && let Some((part, hash)) = crate::file_send::wire::decode_part(body)
        {
            let call = match hash {
                crate::file_send::ContentHash::Sha256 => JobCall::SendFile(part),
                crate::file_send::ContentHash::Blake3 => JobCall::SendFileBlake3(part),
            };
            return Some(Ok(ClusterRequest::Job(call)));
        }
        Self::decode(class, body)
    }

    /// Parses a peer's request: `None` when `class` is not a cluster class (the
    /// registered handlers answer it), an error when the body does not decode.
    pub fn decode(class: &str, body: &[u8]) -> Option<Result<ClusterRequest, ClusterDecodeError>> {
        fn typed<T: serde::de::DeserializeOwned>(
            class: &str,
            body: &[u8],
        ) -> Result<T, ClusterDecodeError> {
            postcard::from_bytes(body).map_err(|e| ClusterDecodeError {
                class: class.to_owned(),
                detail: e.to_string(),
            })
        }
        let text = |body: &[u8]| {
            std::str::from_utf8(body)
                .map(str::to_owned)
                .map_err(|e| ClusterDecodeError {
                    class: class.to_owned(),
                    detail: e.to_string(),
                })
        };
        Some(match class {
            CLASS_NODES => Ok(ClusterRequest::Nodes),
            CLASS_NODE_INFO => text(body).map(ClusterRequest::NodeInfo),
            CLASS_LOCAL_NODES => Ok(ClusterRequest::LocalNodes),
            CLASS_ADOPT => typed(class, body).map(ClusterRequest::Adopt),
            CLASS_REDIRECT => text(body).map(ClusterRequest::Redirect),
            CLASS_CALL => typed(class, body).map(ClusterRequest::Call),
            CLASS_SPAWN_CALL => typed(class, body).map(ClusterRequest::SpawnCall),
            CLASS_SUBSCRIBE => typed(class, body).map(ClusterRequest::Subscribe),
            CLASS_EVENT_STREAM => typed(class, body).map(ClusterRequest::EventStream),
            CLASS_ROUTE => typed(class, body).map(ClusterRequest::Route),
            CLASS_RECENT_EVENTS => Ok(ClusterRequest::RecentEvents {
                local: body == b"local",
            }),
            CLASS_JOB => typed(class, body).map(ClusterRequest::Job),
            CLASS_JOB_EVENT => typed(class, body).map(ClusterRequest::JobEvent),
            CLASS_PLACED => Ok(ClusterRequest::Placed),
            CLASS_DIAL => typed(class, body).map(ClusterRequest::Dial),
            CLASS_REMOVE => typed(class, body).map(ClusterRequest::Remove),
            CLASS_LOAD => typed(class, body).map(ClusterRequest::Load),
            _ => return None,
        })
    }

    /// The request's class (what it is, for logs and refusals), without encoding it.
    pub fn class(&self) -> &'static str {
        match self {
            ClusterRequest::Nodes => CLASS_NODES,
            ClusterRequest::NodeInfo(_) => CLASS_NODE_INFO,
            ClusterRequest::LocalNodes => CLASS_LOCAL_NODES,
            ClusterRequest::Adopt(_) => CLASS_ADOPT,
            ClusterRequest::Redirect(_) => CLASS_REDIRECT,
            ClusterRequest::Call(_) => CLASS_CALL,
            ClusterRequest::SpawnCall(_) => CLASS_SPAWN_CALL,
            ClusterRequest::Subscribe(_) => CLASS_SUBSCRIBE,
            ClusterRequest::EventStream(_) => CLASS_EVENT_STREAM,
            ClusterRequest::Route(_) => CLASS_ROUTE,
            ClusterRequest::RecentEvents { .. } => CLASS_RECENT_EVENTS,
            ClusterRequest::Job(_) => CLASS_JOB,
            ClusterRequest::JobEvent(_) => CLASS_JOB_EVENT,
            ClusterRequest::Placed => CLASS_PLACED,
            ClusterRequest::Dial(_) => CLASS_DIAL,
            ClusterRequest::Remove(_) => CLASS_REMOVE,
            ClusterRequest::Load(_) => CLASS_LOAD,
        }
    }

    /// The class and body to send.
    pub fn encode(&self) -> Result<(&'static str, Bytes), postcard::Error> {
        fn enc<T: Serialize>(v: &T) -> Result<Bytes, postcard::Error> {
            postcard::to_allocvec(v).map(Bytes::from)
        }
        Ok(match self {
            ClusterRequest::Nodes => (CLASS_NODES, Bytes::new()),
            ClusterRequest::NodeInfo(id) => (CLASS_NODE_INFO, Bytes::from(id.clone())),
            ClusterRequest::LocalNodes => (CLASS_LOCAL_NODES, Bytes::new()),
            ClusterRequest::Adopt(r) => (CLASS_ADOPT, enc(r)?),
            ClusterRequest::Redirect(urls) => (CLASS_REDIRECT, Bytes::from(urls.clone())),
            ClusterRequest::Call(r) => (CLASS_CALL, enc(r)?),
            ClusterRequest::SpawnCall(r) => (CLASS_SPAWN_CALL, enc(r)?),
            ClusterRequest::Subscribe(r) => (CLASS_SUBSCRIBE, enc(r)?),
            ClusterRequest::EventStream(e) => (CLASS_EVENT_STREAM, enc(e)?),
            ClusterRequest::Route(r) => (CLASS_ROUTE, enc(r)?),
            ClusterRequest::RecentEvents { local } => (
                CLASS_RECENT_EVENTS,
                if *local {
                    Bytes::from_static(b"local")
                } else {
                    Bytes::new()
                },
            ),
            ClusterRequest::Job(c) => (CLASS_JOB, enc(c)?),
            ClusterRequest::JobEvent(e) => (CLASS_JOB_EVENT, enc(e)?),
            ClusterRequest::Placed => (CLASS_PLACED, Bytes::new()),
            ClusterRequest::Dial(r) => (CLASS_DIAL, enc(r)?),
            ClusterRequest::Remove(r) => (CLASS_REMOVE, enc(r)?),
            ClusterRequest::Load(r) => (CLASS_LOAD, enc(r)?),
        })
    }
}

/// A request body (or any of the cluster's bodies) encoded; one that cannot be is the
/// caller's `bad_request`.
pub fn encode_body<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, RequestError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| RequestError::Remote(RemoteError::new(ErrorCode::BadRequest, e.to_string())))
}

/// A reply body decoded; one that does not decode is `bad_reply`.
pub fn decode_reply<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, RequestError> {
    postcard::from_bytes(b)
        .map_err(|e| RequestError::Remote(RemoteError::new(ErrorCode::BadReply, e.to_string())))
}

/// An answer encoded for the peer; one that cannot be is our `internal_error`.
pub fn encode_answer<T: Serialize + ?Sized>(v: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_a_bad_reply_says_so() {
        let call = JobCall::GetTasks(Some("video".into()));
        let body = encode_body(&call).expect("encodes");
        assert_eq!(decode_reply::<JobCall>(&body), Ok(call));
        assert_eq!(
            encode_answer(&vec![1u8, 2]).expect("encodes"),
            encode_body(&vec![1u8, 2]).expect("encodes")
        );
        match decode_reply::<JobCall>(&[0xff, 0xff, 0xff]) {
            Err(RequestError::Remote(e)) => assert_eq!(e.code, ErrorCode::BadReply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_request_round_trips_through_its_class_and_body() {
        let event = EventMsg {
            node: "w1".into(),
            class: "video".into(),
            task: Some(3),
            event: WireEvent::TaskStopped("normal".into()),
        };
        let all = [
            ClusterRequest::Nodes,
            ClusterRequest::NodeInfo("w1".into()),
            ClusterRequest::LocalNodes,
            ClusterRequest::Adopt(AdoptRequest {
                worker: "w1".into(),
                urls: vec!["nkcluster://10.0.0.1:1972".into()],
            }),
            ClusterRequest::Redirect("nkcluster://10.0.0.2:1972".into()),
            ClusterRequest::Call(CallRequest {
                function: "node".into(),
                args: vec![],
            }),
            ClusterRequest::SpawnCall(CallRequest {
                function: "echo".into(),
                args: vec!["a".into()],
            }),
            ClusterRequest::Subscribe(SubscribeRequest {
                subscriber: "admin-1".into(),
                fanout: true,
            }),
            ClusterRequest::EventStream(event.clone()),
            ClusterRequest::Route(RouteRequest {
                node: "w1".into(),
                class: CLASS_JOB.into(),
                body: Bytes::from_static(b"x"),
                timeout_ms: 100,
                hops: 1,
                exclusive: false,
            }),
            ClusterRequest::RecentEvents { local: true },
            ClusterRequest::RecentEvents { local: false },
            ClusterRequest::Job(JobCall::SetStatus(Status::Standby)),
            ClusterRequest::JobEvent(event),
            ClusterRequest::Placed,
            ClusterRequest::Load(crate::modules::LoadRequest {
                name: "add".into(),
                module: Bytes::from_static(b"\0asm\x01\0\0\0"),
                origin: "admin-1".into(),
            }),
        ];
        for r in all {
            let (class, body) = r.encode().expect("encodes");
            assert_eq!(r.class(), class);
            assert_eq!(
                ClusterRequest::decode(class, &body),
                Some(Ok(r.clone())),
                "{class}"
            );
        }
        assert_eq!(ClusterRequest::decode("nkcluster.echo", b""), None);
        let bad = ClusterRequest::decode(CLASS_ROUTE, &[0xff; 3]).expect("a cluster class");
        assert_eq!(
            bad.map_err(|e| (e.code(), e.class)),
            Err(("bad_request", CLASS_ROUTE.to_owned()))
        );
    }
}
