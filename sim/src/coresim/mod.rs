//! The core-only simulator: every node's core machines (its [`NodeMachine`] and a
//! [`Connection`] at each end of each link) in one thread, driven by a time-ordered event
//! queue over a seeded link model, with no tokio and no sockets. It is what reaches the
//! cluster size the system is for (128 control nodes, 100,000 workers), where turmoil's
//! cost (about the cube of the host count) cannot.
//!
//! What the tokio shell does around the machines is done here the same way, in
//! miniature: outputs are performed in order (gossip, notifications, hand-off requests
//! and their answers, releases, closes, dials of members and of the connector's plan), a
//! peer's cluster requests are dispatched by the node machine with the peer's role, and
//! a node's own events go back into its machine. What no scenario here needs (job
//! classes, files, routed requests) is answered with a typed `unknown_request` error.
//!
//! The link model ([`world::LinkModel`]): each direction of a link delivers in order,
//! each write after a latency drawn from the seed; a partition drops what crosses it and
//! makes dials across it time out; a crashed node's links go silent (its peers find out
//! by their idle timeout). Everything random comes from one seed: a run replays bit for
//! bit.
//!
//! Files: `world` (nodes, links, timers), `queue` (the event queue), `shell` (the shell's part:
//! connection events, outputs, requests, the connector), `scale` (the scenarios at
//! scale, their invariants and their report).

mod queue;
pub mod scale;
mod shell;
pub mod world;

#[cfg(doc)]
use nkcluster_core::{conn::Connection, node::NodeMachine};
