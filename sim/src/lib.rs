//! # nkcluster-sim
//!
//! Deterministic simulation of nkcluster: the runtime's real node code
//! ([`nkcluster::node::Node`]) runs over turmoil's simulated network ([`net::TurmoilNet`])
//! and simulated time, through partitions, repairs and crashes. Everything random (the
//! network's latencies, tokio's scheduling choices, the nodes' nonces and jitter) comes
//! from one seed, so a seed replays bit for bit: [`harness::run`] returns the event log,
//! and two runs of one seed produce identical logs (tested).
//!
//! - [`coresim`]: the core-only simulator: every node's core machines in one thread, no
//!   tokio and no sockets, for the cluster sizes turmoil cannot reach (`nkcluster-sim
//!   scale --control 128 --workers 100000`) and for many seeds of random faults checked
//!   by invariants (`nkcluster-sim faults --seeds N`; a failing seed replays with
//!   `nkcluster-sim --reproduce <seed>`, printing its fault schedule and the first
//!   violated invariant).
//! - [`net`]: the [`Net`](nkcluster::net::Net) implementation over turmoil.
//! - [`harness`]: building simulations, the shared event log, seeds and replay.
//! - [`scenarios`]: the scenarios, each checking its invariants.
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
