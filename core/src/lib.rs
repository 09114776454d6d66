//! # nkcluster-core
//!
//! The sans-IO heart of nkcluster: every decision about bytes on the wire, authentication
//! and link liveness is made here, by deterministic state machines that never touch a
//! socket, a clock, a thread or a random number generator. Time (`now`) and randomness
//! (nonces, ids) are passed in as arguments by the shell that drives the machines (the
//! tokio daemon in `nkcluster`, the turmoil simulator in `nkcluster-sim`, or a unit test).
//!
//! Modules:
//! - [`time`]: the monotonic [`Instant`](time::Instant) the machines reason with.
//! - [`error`]: the stable error codes every typed error and peer error carries.
//! - [`data`]: a node's data registry, under a size limit.
//! - [`dashboard`]: the dashboard's view of the cluster and its live feed (bounded).
//! - [`events`]: a control node's event subscribers and recent events (bounded).
//! - [`files`]: where received files may land (below `files_dir`).
//! - [`transfers`]: the file-transfer receiver (parts, checksum, limits, expiry, resume).
//! - [`file_send`]: the file-transfer sender's decisions (big files, link, resume, retry).
//! - [`bulk_priority`]: how far below the request path a file's bulk threads run.
//! - [`frame`]: the length-prefixed frame codec (maximum checked before any allocation).
//! - [`message`]: the versioned protocol [`Message`](message::Message) enum (postcard).
//! - [`url`]: `nkcluster://` URL lists; [`meta`]: node metadata tokens.
//! - [`links`]: the link table (which link serves a peer, one per control pair).
//! - [`membership`]: control-node views, failure handling and explicit leave.
//! - [`mesh`]: one link per pair of control nodes.
//! - [`ring`]: partition ownership, a pure function of the live members.
//! - [`handlers`]: registered request handlers and named functions.
//! - [`modules`]: code loaded over the wire (WebAssembly): names, versions, limits.
//! - [`jobs`]: job classes (typed requests, tasks, commands, events) and their registry.
//! - [`node`]: the node machine, composing the others: every decision above one link.
//! - [`workers`]: what a control node remembers of the workers it hears (bounded).
//! - [`outbox`]: the events a worker keeps while it has no control link (bounded).
//! - [`routing`]: where a request for a node goes (local, direct, via a control node).
//! - [`proxy`]: which workers a control node serves, and hand-offs to their owner.
//! - [`table`]: the cluster's node table and how members' answers merge.
//! - [`telemetry`]: what a node counts for metrics (requests, handshakes, bytes), capped.
//! - [`status`]: a node's status (the original's seven states) and its running tasks.
//! - [`auth`]: password key derivation and transcript proofs.
//! - [`admission`]: limits on connections that have not authenticated yet, and the
//!   per-source backoff of failed handshakes.
//! - [`descriptors`]: room in the descriptor table, made once by a listening node.
//! - [`audit`]: what a request for the OS and Docker classes asks, for the audit log.
//! - [`loglimit`]: refusal logs, one line per source per interval.
//! - [`cluster`]: the cluster protocol above one link, as typed requests.
//! - [`backoff`]: reconnection delays with jitter and an attempt budget.
//! - [`connector`]: which control node a node dials next, when it waits, when it gives up.
//! - [`handshake`]: the mutual authentication state machine.
//! - [`pump`]: a link driver's bookkeeping: queued, held and pending requests.
//! - [`seqmap`]: the ordered map of a link's request bookkeeping (ids mostly increase).
//! - [`conn`]: one connection end to end: framing, handshake, then the link
//!   (ping/pong, idle deadline, requests with deadlines).
//!
//! Every machine follows one shape: feed an input (`handle_*`), then drain
//! `poll_transmit`, `poll_event` until they return `None`, then arm a timer for
//! `poll_timeout` and call `handle_timeout` when it fires.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod bulk_priority;
pub mod cluster;
pub mod conn;
pub mod conn_error;
pub mod connector;
pub mod dashboard;
pub mod data;
pub mod descriptors;
pub mod discovery;
pub mod docker;
pub mod error;
pub mod events;
pub mod file_send;
pub mod files;
pub mod frame;
pub mod handlers;
pub mod handshake;
pub mod info_report;
pub mod jobs;
pub mod keepalive;
pub mod lanes;
pub mod link_end;
pub mod links;
pub mod loglimit;
pub mod membership;
pub mod mesh;
pub mod message;
pub mod meta;
pub mod modules;
pub mod node;
pub mod os;
pub mod outbox;
pub mod proxy;
pub mod pump;
pub mod ring;
pub mod routing;
pub mod seqmap;
pub mod short_eq;
pub mod slots;
pub mod status;
pub mod table;
pub mod telemetry;
pub mod time;
pub mod tls_tail;
pub mod transfers;
pub mod url;
pub mod workers;

pub use conn::{ConnError, Connection, ConnectionConfig, Event, RequestError, RequestId};
pub use frame::{FrameDecoder, FrameError, MAX_FRAME_DEFAULT};
pub use handshake::{HandshakeError, Identity, PeerInfo, Role};
pub use message::Message;
/// A request's class name (inline when short: no allocation per request).
pub use smol_str::SmolStr;
pub use time::Instant;
