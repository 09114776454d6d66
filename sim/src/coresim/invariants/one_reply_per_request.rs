//! Every request ends with exactly one reply or typed error, never after its deadline
//! plus [`REPLY_SLACK`]: each request a node sends on a link (the link's own guarantee,
//! [`nkcluster_core::conn`]: the peer's answer, `timeout` at the deadline, or the error
//! the link ended with, always before its `Closed`), and each routed request a workload
//! client issues (whatever path it took through the cluster).
//!
//! Checked as replies arrive (a second reply, or one past the deadline), when a link
//! leaves the world (a request still pending never ended), and on every tick (a request
//! past its deadline that has not ended). A node that goes down takes its own requests
//! with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::Instant;
use nkcluster_core::conn::RequestError;

use super::{Found, Violation};
use crate::coresim::world::{ConnId, NodeIdx};

/// This invariant's name.
pub const NAME: &str = "one_reply_per_request";

/// How late after its deadline a request may end: the simulated shell runs a deadline's
/// timer at the deadline exactly; a real one may wake up a little later.
pub const REPLY_SLACK: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Pending {
    node: NodeIdx,
    name: String,
    /// The class, and where it went (for the report).
    what: String,
    issued: Instant,
    deadline: Instant,
}

/// Which request a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Link(ConnId, u64),
    Client(u64),
}

/// The requests in flight. See the module docs.
#[derive(Debug, Default)]
pub struct RequestBook {
    links: BTreeMap<(ConnId, u64), Pending>,
    clients: BTreeMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, Key)>,
    /// What was found.
    pub(super) found: Found,
    /// Requests that ended as they should.
    pub ended: u64,
}

impl RequestBook {
    /// Node `node` (`name`) sent request `rid` of `class` on end `conn` at `at`.
    pub fn issued(
        &mut self,
        (conn, rid): (ConnId, u64),
        (node, name): (NodeIdx, &str),
        class: &str,
        at: Instant,
        timeout: Duration,
    ) {
        let deadline = at + timeout;
        self.deadlines.insert((deadline, Key::Link(conn, rid)));
        self.links.insert(
            (conn, rid),
            Pending {
                node,
                name: name.to_owned(),
                what: class.to_owned(),
                issued: at,
                deadline,
            },
        );
    }

    /// Request `rid` on end `conn` ended at `at` with `result`.
    pub fn replied(
        &mut self,
        (conn, rid): (ConnId, u64),
        at: Instant,
        (me, peer): (&str, &str),
        result: &Result<Bytes, RequestError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        match self.links.remove(&(conn, rid)) {
            None => self.found.add(Violation::new(
                NAME,
                &[me, peer],
                at,
                format!(
                    "request {rid} on end {conn} ({me} to {peer}) ended ({outcome}) but was not pending: a second reply, or a request never sent"
                ),
            )),
            Some(p) => {
                self.deadlines.remove(&(p.deadline, Key::Link(conn, rid)));
                self.check_in_time(&p, at, &outcome, &format!("request {rid} on end {conn} to {peer}"));
            }
        }
    }

    /// A client of node `node` (`name`) issued routed request `id` for `target`.
    pub fn client_issued(
        &mut self,
        id: u64,
        (node, name): (NodeIdx, &str),
        target: &str,
        at: Instant,
        timeout: Duration,
    ) {
        let deadline = at + timeout;
        self.deadlines.insert((deadline, Key::Client(id)));
        self.clients.insert(
            id,
            Pending {
                node,
                name: name.to_owned(),
                what: format!("routed request for {target}"),
                issued: at,
                deadline,
            },
        );
    }

    /// Client request `id` ended at `at`.
    pub fn client_ended(&mut self, id: u64, at: Instant, outcome: &str) {
        match self.clients.remove(&id) {
            None => self.found.add(Violation::new(
                NAME,
                &[],
                at,
                format!(
                    "client request {id} ended ({outcome}) but was not pending: it ended twice"
                ),
            )),
            Some(p) => {
                self.deadlines.remove(&(p.deadline, Key::Client(id)));
                self.check_in_time(&p, at, outcome, &format!("client request {id}"));
            }
        }
    }

    fn check_in_time(&mut self, p: &Pending, at: Instant, outcome: &str, which: &str) {
        if at > p.deadline + REPLY_SLACK {
            self.found.add(Violation::new(
                NAME,
                &[&p.name],
                at,
                format!(
                    "{which} ({}), issued at {:.3} s with its deadline at {:.3} s, ended ({outcome}) {:.3} s late",
                    p.what,
                    p.issued.since_origin().as_secs_f64(),
                    p.deadline.since_origin().as_secs_f64(),
                    (at - p.deadline).as_secs_f64()
                ),
            ));
        } else {
            self.ended += 1;
        }
    }

    /// End `conn` (of node `name`) left the world: a request still pending on it never
    /// ended.
    pub fn conn_removed(&mut self, conn: ConnId, name: &str, at: Instant) {
        let left: Vec<(u64, Pending)> = self
            .links
            .range((conn, 0)..=(conn, u64::MAX))
            .map(|(k, _)| k.1)
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|rid| self.links.remove(&(conn, rid)).map(|p| (rid, p)))
            .collect();
        for (rid, p) in left {
            self.deadlines.remove(&(p.deadline, Key::Link(conn, rid)));
            self.found.add(Violation::new(
                NAME,
                &[name],
                at,
                format!(
                    "request {rid} ({}) on end {conn}, issued at {:.3} s, never ended: its link closed with it pending",
                    p.what,
                    p.issued.since_origin().as_secs_f64()
                ),
            ));
        }
    }

    /// Node `node` went down: its requests are void.
    pub fn node_down(&mut self, node: NodeIdx) {
        let links: Vec<(ConnId, u64)> = self
            .links
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(k, _)| *k)
            .collect();
        for k in links {
            if let Some(p) = self.links.remove(&k) {
                self.deadlines.remove(&(p.deadline, Key::Link(k.0, k.1)));
            }
        }
        let clients: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, p)| p.node == node)
            .map(|(k, _)| *k)
            .collect();
        for k in clients {
            if let Some(p) = self.clients.remove(&k) {
                self.deadlines.remove(&(p.deadline, Key::Client(k)));
            }
        }
    }

    /// Requests past their deadline (and the slack) at `at` that have not ended.
    pub fn overdue(&mut self, at: Instant) {
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline + REPLY_SLACK >= at {
                return;
            }
            self.deadlines.pop_first();
            let p = match key {
                Key::Link(conn, rid) => self.links.remove(&(conn, rid)),
                Key::Client(id) => self.clients.remove(&id),
            };
            if let Some(p) = p {
                self.found.add(Violation::new(
                    NAME,
                    &[&p.name],
                    at,
                    format!(
                        "{key:?} ({}), issued at {:.3} s, has not ended {:.3} s after its deadline",
                        p.what,
                        p.issued.since_origin().as_secs_f64(),
                        (at - p.deadline).as_secs_f64()
                    ),
                ));
            }
        }
    }

    /// Requests (link and client) not ended yet.
    pub fn in_flight(&self) -> usize {
        self.links.len() + self.clients.len()
    }

    /// The latest deadline of the requests not ended yet.
    pub fn last_deadline(&self) -> Option<Instant> {
        self.deadlines.last().map(|(t, _)| *t)
    }
}
