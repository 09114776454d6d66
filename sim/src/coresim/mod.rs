//! The core-only simulator: every node's core machines (its [`NodeMachine`] and a
//! [`Connection`] at each end of each link) in one thread, driven by a time-ordered event
//! queue over a seeded link model, with no tokio and no sockets. It is what reaches the
//! cluster size the system is for (128 control nodes, 100,000 workers), where turmoil's
//! cost (about the cube of the host count) cannot, and what runs many seeds of random
//! faults in seconds.
//!
//! What the tokio shell does around the machines is done here the same way, in
//! miniature: outputs are performed in order (gossip, notifications, hand-off requests
//! and their answers, releases, closes, dials of members and of the connector's plan), a
//! peer's cluster requests are dispatched by the node machine with the peer's role,
//! routed requests follow the machine's route (and fan out as the daemon's do), job
//! requests and tasks of the workload's classes are served, and a node's own events go
//! back into its machine. What no run needs (files, calls, the node table) is answered
//! with a typed `unknown_request` error.
//!
//! Every node has its own clock (counting from its process start) and a wall clock that
//! may be off. The link model ([`links`]) is TCP as its applications see it: each
//! direction delivers in order after a latency drawn from the seed; partitions and held
//! links hold writes (and make dials fail) until they end, lossy links delay writes by
//! retransmission timeouts, resets close both ends; a crashed host's links go silent.
//! Everything random comes from one seed: a run replays bit for bit.
//!
//! Two ways to run it:
//! - [`scale`]: scripted scenarios at any size (`nkcluster-sim scale --control 128
//!   --workers 100000`), with their figures;
//! - [`faultrun`]: a seed's random [`faults::FaultSchedule`] on a small cluster with a
//!   workload, a safety phase then a fault-free liveness phase, every [`invariants`]
//!   checked (`nkcluster-sim faults --seeds N`, `nkcluster-sim --reproduce <seed>`);
//! - [`offline`]: a worker apart from everyone whose owner dies, its tasks sending all
//!   along; after the heal every event it kept is heard (its tests).
//!
//! Files: `world` (nodes, links, timers, clocks), `queue` (the event queue), `links` (the link model under
//! faults), `shell` (the shell's part: connection events, outputs, requests, the
//! connector), `routing` (routed requests), `workload` (clients, job requests, tasks),
//! `cluster` (node settings), `faults` (fault schedules), `oracle` (what a settled
//! cluster looks like), `invariants/` (one checker per file), `faultrun` (runs under
//! faults and the search over seeds), `scale` (the scenarios at scale and their
//! report), `offline` (a disconnected worker's kept events, end to end).

pub mod cluster;
pub mod faultrun;
pub mod faults;
pub mod invariants;
pub mod links;
pub mod offline;
pub mod oracle;
mod queue;
mod routing;
pub mod scale;
mod shell;
pub mod workload;
pub mod world;

#[cfg(doc)]
use nkcluster_core::{conn::Connection, node::NodeMachine};
