//! Routed requests, done as the daemon's shell does them (`route_enqueue` and
//! `route_finish` in the runtime): the node machine says where a request for a node goes
//! ([`NodeMachine::route`]); the shell sends it on the target's own link, or as a route
//! request to the control node the machine names, and a control member whose owner did
//! not hold the target asks the other members once each, within what is left of the
//! deadline. The answer goes back to whoever asked: a workload client on this node, or a
//! peer's route request.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::Instant;
use nkcluster_core::cluster::{CLASS_ROUTE, RouteRequest, encode_body};
use nkcluster_core::conn::RequestError;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;
use nkcluster_core::routing::RouteStep;

use super::shell::Asked;
use super::world::{ConnId, NodeIdx, World};

#[cfg(doc)]
use nkcluster_core::node::NodeMachine;

/// Who waits for a routed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyTo {
    /// A workload client of the node (its request id).
    Client(u64),
    /// A peer's route request `rid` on end `conn`.
    Peer { conn: ConnId, rid: u64 },
}

/// A routed request in progress at a node.
#[derive(Debug)]
pub(super) struct Route {
    node: NodeIdx,
    run: u64,
    target: String,
    /// On the node's clock.
    deadline: Instant,
    reply_to: ReplyTo,
    /// When the owner may not hold the target: the route request, the owner asked
    /// first, and the members still to ask (filled when the owner says `unknown_node`).
    fan_out: Option<FanOut>,
}

impl Route {
    /// The node it runs at.
    pub(super) fn node(&self) -> NodeIdx {
        self.node
    }
}

#[derive(Debug)]
struct FanOut {
    body: Bytes,
    owner: String,
    others: Option<VecDeque<String>>,
}

/// The error a route ends with when nobody holds the target.
fn unknown_node(node: &str) -> RequestError {
    RequestError::Remote(RemoteError::new(
        ErrorCode::UnknownNode,
        format!("no node {node:?} is connected to the cluster"),
    ))
}

fn is_unknown_node(r: &Result<Bytes, RequestError>) -> bool {
    matches!(r, Err(RequestError::Remote(e)) if e.code == ErrorCode::UnknownNode)
}

impl World {
    /// A peer's route request `rid` on end `conn` of `node`.
    pub(super) fn serve_route(
        &mut self,
        node: NodeIdx,
        (conn, rid): (ConnId, u64),
        req: RouteRequest,
    ) {
        let timeout = Duration::from_millis(req.timeout_ms);
        self.start_route(
            node,
            (&req.node, &req.class, req.body),
            timeout,
            req.hops,
            ReplyTo::Peer { conn, rid },
        );
    }

    /// Routes `(target, class, body)` from `node`, forwarded `hops` times already.
    pub(super) fn start_route(
        &mut self,
        node: NodeIdx,
        (target, class, body): (&str, &str, Bytes),
        timeout: Duration,
        hops: u8,
        reply_to: ReplyTo,
    ) {
        let now = self.clock(node);
        let id = self.workload.next_route();
        let mut route = Route {
            node,
            run: self.nodes[node].run,
            target: target.to_owned(),
            deadline: now + timeout,
            reply_to,
            fan_out: None,
        };
        let m = &self.nodes[node].machine;
        let sent = match m.route(target, hops) {
            RouteStep::Local => Err(RequestError::Remote(RemoteError::new(
                ErrorCode::UnknownRequest,
                "requests for a control node itself are not simulated",
            ))),
            RouteStep::Unknown => Err(unknown_node(target)),
            RouteStep::NotConnected => Err(RequestError::NotConnected),
            RouteStep::Direct => match m.link_of(target).copied() {
                Some(link) => self
                    .request_on(link, class, body, timeout, Asked::Route(id))
                    .map(|_| link),
                None => Err(RequestError::NotConnected),
            },
            RouteStep::Via { via, hops, fan_out } => {
                let req = RouteRequest {
                    node: target.to_owned(),
                    class: class.to_owned(),
                    body,
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    hops,
                    exclusive: false,
                };
                match (encode_body(&req), m.link_of(&via).copied()) {
                    (Err(e), _) => Err(e),
                    (_, None) => Err(RequestError::NotConnected),
                    (Ok(body), Some(link)) => {
                        if fan_out {
                            route.fan_out = Some(FanOut {
                                body: body.clone(),
                                owner: via,
                                others: None,
                            });
                        }
                        self.request_on(link, CLASS_ROUTE, body, timeout, Asked::Route(id))
                            .map(|_| link)
                    }
                }
            }
        };
        match sent {
            Ok(link) => {
                self.workload.routes.insert(id, route);
                self.flush(link);
            }
            Err(e) => self.finish_route(route, Err(e)),
        }
    }

    /// The answer to a request of route `id`.
    pub(super) fn route_reply(&mut self, id: u64, result: Result<Bytes, RequestError>) {
        let Some(mut route) = self.workload.routes.remove(&id) else {
            return;
        };
        let node = route.node;
        if !self.nodes[node].alive || self.nodes[node].run != route.run {
            return;
        }
        let Some(fan) = route.fan_out.as_mut().filter(|_| is_unknown_node(&result)) else {
            self.finish_route(route, result);
            return;
        };
        // Not at its owner (a hand-off in flight, or views that disagree for a moment):
        // ask the other members once each.
        let m = &self.nodes[node].machine;
        let others = fan
            .others
            .get_or_insert_with(|| m.fan_out(&fan.owner).into());
        let Some(next) = others.pop_front() else {
            let target = route.target.clone();
            self.finish_route(route, Err(unknown_node(&target)));
            return;
        };
        let left = route.deadline.saturating_duration_since(self.clock(node));
        let body = fan.body.clone();
        let sent = match m.link_of(&next).copied() {
            Some(link) => self
                .request_on(link, CLASS_ROUTE, body, left, Asked::Route(id))
                .map(|_| link),
            None => Err(RequestError::NotConnected),
        };
        match sent {
            Ok(link) => {
                self.workload.routes.insert(id, route);
                self.flush(link);
            }
            // Anything but `unknown_node` ends the route (as in the daemon).
            Err(e) => self.finish_route(route, Err(e)),
        }
    }

    /// Route `route` ended: its answer goes to whoever waits.
    fn finish_route(&mut self, route: Route, result: Result<Bytes, RequestError>) {
        match route.reply_to {
            ReplyTo::Client(api) => {
                let at = self.now;
                self.workload.client_done(api, &result);
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) => e.code(),
                };
                self.checks.requests.client_ended(api, at, outcome);
            }
            ReplyTo::Peer { conn, rid } => {
                let answer = result.map_err(|e| match e {
                    RequestError::Remote(r) => r,
                    e => RemoteError::new(e.code(), e.to_string()),
                });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.conn.reply(rid, answer);
                    self.flush(conn);
                }
            }
        }
    }
}
