//! The shell's part, done the way the tokio daemon does it, without I/O: a connection's
//! events go to its node's machine, the machine's outputs are performed in order, a
//! peer's cluster requests are dispatched by the machine (routed requests and job calls
//! go to [`super::routing`] and [`super::workload`]), the connector's plan is followed,
//! and a node's own events go back into its machine. Every request sent on a connection
//! goes through [`World::request_on`], where the request invariant hears of it.

use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::cluster::{ClusterRequest, EventMsg, Stats, WireEvent, encode_answer};
use nkcluster_core::conn::{Event, RequestError, RequestId};
use nkcluster_core::connector::ConnectorAction;
use nkcluster_core::discovery::Candidate;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::handshake::{Role, Side};
use nkcluster_core::message::RemoteError;
use nkcluster_core::node::{
    Dispatch, Link, LinkGone, NODE_EVENT_CLASS, NodeEvent, Output, PeerSummary, ShellWork,
};
use nkcluster_core::url::parse_url;
use rand::Rng;

use super::world::{ConnId, NodeIdx, World};

/// Why a link was dialed (what its end reports to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The listener's end.
    Accepted,
    /// The connector's plan.
    Connector,
    /// A control member learned from a view (full mesh).
    Mesh(String),
    /// A listening worker whose link failed, by its owner.
    Redial(String),
}

/// Who waits for the answer to one of our requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The node machine (an [`Output::Ask`] id).
    Machine(u64),
    /// A routed request in progress (see [`super::routing`]).
    Route(u64),
    /// Nobody (a notification: an event, a subscription).
    Notify,
}

/// How long a notification waits for its (ignored) answer.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(3);

impl World {
    /// One event of connection `id`.
    pub(super) fn conn_event(&mut self, id: ConnId, e: Event) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let node = c.node;
        if !self.nodes[node].alive {
            return;
        }
        let now = self.clock(node);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let peer = c.conn.peer().map(|p| (p.node_id.clone(), p.role));
        match e {
            Event::Authenticated(p) => {
                self.counters.links_up += 1;
                c.authenticated = true;
                let summary = PeerSummary::new(&p, &c.remote, c.conn.side() == Side::Dialer);
                let link = Link {
                    conn_id: id,
                    summary,
                    remote_ip: None,
                    rtt: Default::default(),
                    handle: id,
                };
                self.nodes[node].machine.handle_link_up(now, link, true);
            }
            Event::Request {
                id: rid,
                class,
                body,
                ..
            } => {
                if let Some(answer) = self.serve((id, rid), node, peer, &class, body)
                    && let Some(c) = self.conns.get_mut(&id)
                {
                    c.conn.reply(rid, answer);
                }
            }
            Event::Notice { class, body } => {
                // Served as a request whose answer goes nowhere (no request id: a
                // late answer under this one finds nothing to answer).
                let _ = self.serve((id, u64::MAX), node, peer, &class, body);
            }
            Event::Reply {
                id: rid, result, ..
            } => {
                let asked = c.asks.remove(&rid.0);
                let (me, peer_node) = (&self.nodes[node].id, &self.nodes[c.peer_node].id);
                self.checks
                    .requests
                    .replied((id, rid.0), self.now, (me, peer_node), &result);
                match asked {
                    None | Some(Asked::Notify) => return,
                    Some(Asked::Route(route)) => {
                        self.route_reply(route, result);
                        return;
                    }
                    Some(Asked::Machine(ask)) => {
                        let r = result.map(|_| ()).map_err(|e| ErrorCode::parse(e.code()));
                        self.nodes[node].machine.handle_answer(now, ask, r);
                    }
                }
            }
            Event::Gossip(view) => {
                if let Some((p, _)) = peer {
                    self.nodes[node].machine.handle_gossip(now, &p, id, &view);
                }
            }
            Event::RttMeasured(rtt) => {
                if let Some((p, _)) = peer {
                    self.nodes[node].machine.handle_rtt(&p, id, rtt);
                }
                return;
            }
            Event::Closed(err) => {
                let (purpose, authenticated) = (c.purpose.clone(), c.authenticated);
                if authenticated && let Some(p) = c.conn.peer() {
                    let gone = LinkGone {
                        conn_id: id,
                        summary: PeerSummary::new(p, &c.remote, c.conn.side() == Side::Dialer),
                        remote_ip: None,
                        error: err.clone(),
                    };
                    self.nodes[node].machine.handle_link_down(now, gone);
                }
                let why = err.map(|e| (e.code(), e.to_string()));
                self.remove_conn(id);
                self.dial_ended(node, purpose, authenticated, why);
                return;
            }
        }
        self.after_input(node);
    }

    /// A peer's request `rid` on end `conn` of `node`: the probe class, or a cluster request
    /// the machine dispatches. `None`: answered later (a routed request, a job request
    /// being served). Shell work no run needs is refused with a typed error.
    fn serve(
        &mut self,
        (conn, rid): (ConnId, u64),
        node: NodeIdx,
        peer: Option<(String, Role)>,
        class: &str,
        body: Bytes,
    ) -> Option<Result<Bytes, RemoteError>> {
        if class == "nkcluster.echo" {
            return Some(Ok(body));
        }
        let now = self.clock(node);
        let req = match ClusterRequest::decode(class, &body) {
            None => {
                return Some(Err(RemoteError::new(
                    ErrorCode::UnknownClass,
                    format!("no class {class} in the core-only simulator"),
                )));
            }
            Some(Err(e)) => return Some(Err(RemoteError::new(e.code(), e.to_string()))),
            Some(Ok(req)) => req,
        };
        let Some((from, role)) = peer else {
            return Some(Err(RemoteError::new(
                ErrorCode::Forbidden,
                "a request before authentication",
            )));
        };
        // A worker's event, for the event invariant (heard if the machine takes it).
        let event = match &req {
            ClusterRequest::JobEvent(ev) if role == Role::Worker => Some(ev.clone()),
            _ => None,
        };
        let m = &mut self.nodes[node].machine;
        match m.handle_request(now, &from, role, req) {
            Dispatch::Answer(r) => {
                if let (Some(ev), Ok(_)) = (event, &r)
                    && let Some(peer_end) = self.conns.get(&conn).map(|c| c.peer)
                {
                    let at = self.now;
                    let me = self.nodes[node].id.clone();
                    self.checks.events.heard(peer_end, &me, &ev, at);
                }
                Some(r)
            }
            Dispatch::Shell(ShellWork::GetInfo) => {
                Some(encode_answer(&m.node_info(Stats::default())))
            }
            Dispatch::Shell(ShellWork::Route(req)) => {
                self.serve_route(node, (conn, rid), req);
                None
            }
            Dispatch::Shell(work) => self.serve_job((conn, rid), node, work),
        }
    }

    /// A dialed link ended (or never came up): its dialer hears how it went.
    pub(super) fn dial_ended(
        &mut self,
        node: NodeIdx,
        purpose: Purpose,
        authenticated: bool,
        why: Option<(&str, String)>,
    ) {
        let now = self.clock(node);
        let random: u64 = self.rng.random();
        let n = &mut self.nodes[node];
        match purpose {
            Purpose::Accepted => {}
            Purpose::Connector => {
                n.connector_link = None;
                let c = n.machine.connector_mut();
                if authenticated {
                    c.handle_linked(now);
                } else {
                    let (code, detail) = why.unwrap_or(("closed", String::new()));
                    c.handle_dial_failed(now, code, &detail, random);
                }
            }
            Purpose::Mesh(member) => {
                n.machine
                    .handle_mesh_dial_done(now, &member, true, authenticated)
            }
            Purpose::Redial(worker) => {
                if !authenticated {
                    n.machine.handle_redial_failed(now, &worker);
                }
            }
        }
        self.after_input(node);
    }

    /// Performs node `idx`'s outputs, in order, until it has none left.
    pub(super) fn perform_outputs(&mut self, idx: NodeIdx) {
        let now = self.clock(idx);
        let worker = self.nodes[idx].identity.role == Role::Worker;
        loop {
            let mut touched: Vec<ConnId> = Vec::new();
            let mut answers: Vec<(u64, Result<(), ErrorCode>)> = Vec::new();
            let mut own: Vec<EventMsg> = Vec::new();
            let mut dials: Vec<(NodeIdx, Purpose)> = Vec::new();
            let mut undialable: Vec<String> = Vec::new();
            while let Some(o) = self.nodes[idx].machine.poll_output() {
                match o {
                    Output::Gossip { link, view } => {
                        self.counters.gossip.0 += 1;
                        self.counters.gossip.1 += view.len() as u64;
                        if let Some(c) = self.conns.get_mut(&link) {
                            c.conn.send_gossip(view);
                            touched.push(link);
                        }
                    }
                    Output::Notify { link, request } => {
                        let Ok((class, body)) = request.encode() else {
                            continue;
                        };
                        let sent =
                            self.request_on(link, class, body, NOTIFY_TIMEOUT, Asked::Notify);
                        if sent.is_ok() {
                            touched.push(link);
                            if let (true, ClusterRequest::JobEvent(ev)) = (worker, request) {
                                let at = self.now;
                                let peer = self.conns.get(&link).map_or(0, |c| c.peer);
                                self.checks.events.sent((link, peer), ev, at);
                            }
                        }
                    }
                    Output::DialMember { id, urls } => {
                        // The first URL that names a node (its host is the node id).
                        match urls
                            .iter()
                            .filter_map(|u| parse_url(u).ok())
                            .find_map(|u| self.node_of_url(&u))
                        {
                            Some(t) => dials.push((t, Purpose::Mesh(id))),
                            None => undialable.push(id),
                        }
                    }
                    Output::Ask {
                        id,
                        link,
                        class,
                        body,
                        timeout,
                    } => match self.request_on(link, &class, body, timeout, Asked::Machine(id)) {
                        Ok(_) => touched.push(link),
                        Err(e) => answers.push((id, Err(ErrorCode::parse(e.code())))),
                    },
                    Output::Release { to, links, .. } => {
                        for l in links {
                            if let Some(c) = self.conns.get_mut(&l) {
                                c.conn.close_with(
                                    &format!("proxy moved to {to}"),
                                    RequestError::ProxyMoved { to: to.clone() },
                                );
                                touched.push(l);
                            }
                        }
                    }
                    Output::Redial { worker, .. } => {
                        if let Some(&t) = self.by_id.get(&worker) {
                            dials.push((t, Purpose::Redial(worker)));
                        }
                    }
                    Output::Close { link, reason } => {
                        if let Some(c) = self.conns.get_mut(&link) {
                            c.conn.close(&reason);
                            touched.push(link);
                        }
                    }
                    Output::Unlisted { link } => {
                        if let Some(c) = self.conns.get_mut(&link) {
                            c.conn.close("one link per pair of control members");
                            touched.push(link);
                        }
                    }
                    Output::OwnEvent(ev) => own.push(ev),
                    // The connector is followed after every input anyway.
                    Output::RunConnector => {}
                    // The sim's dials are not abandoned: each is reported when it ends,
                    // like a tokio shell's dial past its transport.
                    Output::InterruptConnector => {}
                    Output::ReportInfo => {
                        let n = &self.nodes[idx];
                        own.push(EventMsg {
                            node: n.id.clone(),
                            class: NODE_EVENT_CLASS.into(),
                            task: None,
                            event: WireEvent::Info(n.machine.node_info(Stats::default())),
                        });
                    }
                    Output::ClassEvent { .. }
                    | Output::TaskStatus { .. }
                    | Output::JobEvent(_)
                    | Output::FileOps(_)
                    // The simulator serves no dashboard (it never turns following on).
                    | Output::ClusterEvent(_) => {}
                    Output::Event(e) => {
                        if matches!(e, NodeEvent::Member { .. }) {
                            self.counters.member_changes += 1;
                        }
                    }
                }
            }
            for (to, purpose) in dials {
                if let Some(c) = self.dial(idx, to, purpose) {
                    touched.push(c);
                }
            }
            for c in touched {
                self.flush(c);
            }
            if answers.is_empty() && own.is_empty() && undialable.is_empty() {
                return;
            }
            let m = &mut self.nodes[idx].machine;
            for (id, r) in answers {
                m.handle_answer(now, id, r);
            }
            for member in undialable {
                m.handle_mesh_dial_done(now, &member, false, false);
            }
            for ev in own {
                m.handle_own_event(now, ev);
            }
        }
    }

    /// Follows node `idx`'s connector: dials what it names, waits while a control link
    /// lasts, reports the loss.
    pub(super) fn follow_connector(&mut self, idx: NodeIdx) {
        let now = self.clock(idx);
        loop {
            let action = self.nodes[idx].machine.connector_mut().poll_action();
            match action {
                // No DNS here: a URL's host is a node id, dialed as written; the
                // candidates are shuffled with the world's seeded randomness.
                Some(ConnectorAction::Resolve(urls)) => {
                    let found = urls
                        .into_iter()
                        .map(|u| Ok(vec![Candidate::as_written(u)]))
                        .collect();
                    let random: u64 = self.rng.random();
                    self.nodes[idx]
                        .machine
                        .connector_mut()
                        .handle_resolved(now, found, random);
                }
                Some(ConnectorAction::Dial(c)) => match self.node_of_url(&c.url) {
                    Some(t) => {
                        let c = self.dial(idx, t, Purpose::Connector);
                        self.nodes[idx].connector_link = c;
                    }
                    None => {
                        let random: u64 = self.rng.random();
                        self.nodes[idx].machine.connector_mut().handle_dial_failed(
                            now,
                            "no_connections",
                            "no such host",
                            random,
                        );
                    }
                },
                Some(ConnectorAction::WaitWhileLinked) => self.nodes[idx].connector_waits = true,
                Some(ConnectorAction::GiveUp { .. }) => {}
                None => {
                    let n = &mut self.nodes[idx];
                    if n.connector_waits && n.machine.links().count_role(Role::Control) == 0 {
                        n.connector_waits = false;
                        n.machine.connector_mut().handle_links_lost(now);
                        continue;
                    }
                    return;
                }
            }
        }
    }
}

impl World {
    /// Sends a request on end `conn` (of a live node) and remembers who waits for it;
    /// the request invariant hears of it. A link that is gone fails `connection_failed`
    /// (the daemon's command channel is closed). The caller flushes `conn`.
    pub(super) fn request_on(
        &mut self,
        conn: ConnId,
        class: &str,
        body: Bytes,
        timeout: Duration,
        asked: Asked,
    ) -> Result<RequestId, RequestError> {
        let Some(c) = self.conns.get(&conn) else {
            return Err(RequestError::ConnectionFailed);
        };
        let node = c.node;
        let now = self.clock(node);
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(RequestError::ConnectionFailed);
        };
        let rid = c.conn.request(now, class, body, timeout)?;
        c.asks.insert(rid.0, asked);
        let at = self.now;
        self.checks.requests.issued(
            (conn, rid.0),
            (node, &self.nodes[node].id),
            class,
            at,
            timeout,
        );
        Ok(rid)
    }
}
