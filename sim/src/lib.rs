//! # nkcluster-sim
//!
//! Deterministic simulation of nkcluster, at two levels.
//!
//! **The turmoil layer** runs the runtime's real node code ([`nkcluster::node::Node`]:
//! sockets, TLS, the shell's tasks and timers) over turmoil's simulated TCP
//! ([`net::TurmoilNet`]) and simulated time, through partitions, repairs and crashes.
//! Everything random comes from one seed: the network's latencies, tokio's scheduling
//! choices, the nodes' nonces and jitter, and their TLS (hello randoms, ephemeral keys,
//! session tickets and the generated certificates, [`tls`]); machine figures are fixed and
//! the wall clock starts at a fixed instant. So a seed replays bit for bit: [`harness::run`]
//! returns the event log ending with a digest of every byte the nodes wrote, and two runs
//! of one seed give identical logs (tested, also over TLS). It covers what only the real
//! code can show (the transports, TLS included; the shell's tasks, deadlines and
//! reconnects; many connections per host, as when several nodes share a host), at up to a
//! few dozen hosts: turmoil's cost grows about with the cube of the host count.
//!
//! **The core-only simulator** ([`coresim`]) drives every node's core machines directly in
//! one thread, no tokio and no sockets, for the cluster sizes turmoil cannot reach
//! (`nkcluster-sim scale --control 128 --workers 100000`) and for many seeds of random
//! faults checked by invariants (`nkcluster-sim faults --seeds N`; a failing seed replays
//! with `nkcluster-sim --reproduce <seed>`, printing its fault schedule and the first
//! violated invariant).
//!
//! - [`net`]: the [`Net`](nkcluster::net::Net) implementation over turmoil, recording the
//!   digest of the bytes written.
//! - [`tls`]: a rustls crypto provider whose randomness comes from the seed.
//! - [`harness`]: building simulations, hosts running one or several nodes, the shared
//!   event log, requests made on a node's own host, crashes, seeds and replay.
//! - [`scenarios`]: the scenarios, each checking its invariants; [`scenarios::fleet`] has
//!   the few-dozen-node, many-nodes-per-host and TLS ones.
//!
//! Replay a failing seed: `NKCLUSTER_SIM_SEED=<seed> cargo test -p nkcluster-sim`, or
//! `cargo run -p nkcluster-sim -- <scenario> <seed>` to print the whole event log.

// turmoil seeds tokio's own randomness (select! branch order, scheduler) only under this
// cfg; without it a seed does not replay. `.cargo/config.toml` sets it; a RUSTFLAGS
// environment variable silently replaces that setting, hence this guard.
#[cfg(not(tokio_unstable))]
compile_error!(
    "nkcluster-sim must be built with `--cfg tokio_unstable` (set in .cargo/config.toml). \
     A RUSTFLAGS override dropped it; add `--cfg tokio_unstable` to RUSTFLAGS."
);

pub mod coresim;
pub mod harness;
pub mod net;
pub mod scenarios;
pub mod tls;
