//! The invariants of the core-only simulator, one per file, each with its name, when it
//! is checked and what a violation says: the invariant, the node(s), the simulated time.
//!
//! - [`one_reply_per_request`]: every request sent on a link (and every client's routed
//!   request) ends with exactly one reply or typed error, never after its deadline plus
//!   [`one_reply_per_request::REPLY_SLACK`]. Checked as replies come and links close,
//!   and on every tick for requests past their deadline.
//! - [`events_not_lost`]: a worker's events reach the control node at the other end of
//!   the link they were sent on, in order, each once; only a link that ends may lose
//!   what was in flight on it (documented). Checked as events arrive, and on every tick.
//! - [`ownership_agrees`]: two control members that see the same members own every
//!   partition alike. Every tick.
//! - [`ring_balance`]: no member owns more than `ceil(P/n)` partitions, every member owns
//!   some (while `n <= P`). Every tick.
//! - [`bounded_tables`]: every table a peer can make grow stays within its limit. Every
//!   tick.
//! - [`one_proxy_at_owner`]: once the live control members' views agree, every live
//!   worker has exactly one proxy, at its ring owner ([`super::oracle`] says who that
//!   is). Checked at the end of a phase that must converge.

pub mod bounded_tables;
pub mod events_not_lost;
pub mod one_proxy_at_owner;
pub mod one_reply_per_request;
pub mod ownership_agrees;
pub mod ring_balance;

use std::fmt;
use std::time::Duration;

use nkcluster_core::Instant;

use super::world::{ConnId, NodeIdx, World};
use events_not_lost::EventBook;
use one_reply_per_request::RequestBook;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name (its file's).
    pub invariant: &'static str,
    /// The nodes concerned.
    pub nodes: Vec<String>,
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` at world time `at`.
    pub fn new(invariant: &'static str, nodes: &[&str], at: Instant, detail: String) -> Self {
        Violation {
            invariant,
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            at: at.since_origin(),
            detail,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} violated at {:.3} s (nodes {}): {}",
            self.invariant,
            self.at.as_secs_f64(),
            self.nodes.join(", "),
            self.detail
        )
    }
}

/// Violations found by one checker: the first is kept, the rest counted.
#[derive(Debug, Default)]
pub struct Found {
    first: Option<Violation>,
    count: u64,
}

impl Found {
    /// One more violation.
    pub fn add(&mut self, v: Violation) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(v);
        }
    }
}

/// The checkers that follow the run as it happens, and what they found.
#[derive(Debug, Default)]
pub struct Checks {
    /// [`one_reply_per_request`].
    pub requests: RequestBook,
    /// [`events_not_lost`].
    pub events: EventBook,
    /// What the tick checks found.
    ticks: Found,
}

impl Checks {
    /// The earliest violation found (ties: in the order of the module docs).
    pub fn first(&self) -> Option<&Violation> {
        [
            self.requests.found.first.as_ref(),
            self.events.found.first.as_ref(),
            self.ticks.first.as_ref(),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|v| v.at)
    }

    /// How many violations were found in all.
    pub fn count(&self) -> u64 {
        self.requests.found.count + self.events.found.count + self.ticks.count
    }

    /// Records a violation found outside the books (ticks, phase ends).
    pub fn record(&mut self, v: Violation) {
        self.ticks.add(v);
    }

    /// Node `idx` went down: what it was waiting for is void.
    pub(super) fn node_down(&mut self, idx: NodeIdx) {
        self.requests.node_down(idx);
    }

    /// End `id` (of `node`, whose peer end is `peer`) left the world at `at`.
    pub(super) fn conn_removed(
        &mut self,
        (id, peer): (ConnId, ConnId),
        node: &str,
        peer_open: bool,
        at: Instant,
    ) {
        self.requests.conn_removed(id, node, at);
        self.events.conn_removed(id, peer, peer_open);
    }
}

/// Runs the invariants checked on every tick; what they find is recorded in
/// [`World::checks`].
pub fn check_tick(w: &mut World) {
    let at = w.now();
    w.checks.requests.overdue(at);
    let (conns, nodes) = (&w.conns, &w.nodes);
    w.checks.events.overdue(at, |id| {
        conns
            .get(&id)
            .map(|c| (nodes[c.node].id.as_str(), conns.contains_key(&c.peer)))
    });
    for r in [
        ownership_agrees::check(w),
        ring_balance::check(w),
        bounded_tables::check(w),
    ] {
        if let Err(v) = r {
            w.checks.record(v);
        }
    }
}

/// The live control members (running, not stopping), by index.
pub fn live_controls(w: &World) -> Vec<NodeIdx> {
    (0..w.nodes.len())
        .filter(|i| {
            let n = &w.nodes[*i];
            n.alive && n.machine.is_control() && !n.machine.is_stopping()
        })
        .collect()
}
