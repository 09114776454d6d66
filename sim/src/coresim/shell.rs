//! The shell's part, done the way the tokio daemon does it, without I/O: a connection's
//! events go to its node's machine, the machine's outputs are performed in order, a
//! peer's cluster requests are dispatched by the machine, the connector's plan is
//! followed, and a node's own events go back into its machine.

use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::cluster::{ClusterRequest, EventMsg, Stats, WireEvent, encode_answer};
use nkcluster_core::conn::{Event, RequestError};
use nkcluster_core::connector::ConnectorAction;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::handshake::{Role, Side};
use nkcluster_core::message::RemoteError;
use nkcluster_core::node::{
    Dispatch, Link, LinkGone, NODE_EVENT_CLASS, Output, PeerSummary, ShellWork,
};
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

/// How long a notification waits for its (ignored) answer.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(3);

impl World {
    /// One event of connection `id`.
    pub(super) fn conn_event(&mut self, id: ConnId, e: Event) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let node = c.node;
        if !self.nodes[node].alive {
            return;
        }
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
                    rtt_us: 0,
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
                let answer = self.serve(node, peer, &class, body);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.conn.reply(rid, answer);
                }
            }
            Event::Reply { id: rid, result } => {
                let Some(ask) = c.asks.remove(&rid.0) else {
                    return;
                };
                let r = result.map(|_| ()).map_err(|e| ErrorCode::parse(e.code()));
                self.nodes[node].machine.handle_answer(now, ask, r);
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

    /// A peer's request to `node`: the probe class, or a cluster request the machine
    /// dispatches. Shell work no scenario needs is refused with a typed error.
    fn serve(
        &mut self,
        node: NodeIdx,
        peer: Option<(String, Role)>,
        class: &str,
        body: Bytes,
    ) -> Result<Bytes, RemoteError> {
        if class == "nkcluster.echo" {
            return Ok(body);
        }
        let now = self.now;
        let req = match ClusterRequest::decode(class, &body) {
            None => {
                return Err(RemoteError::new(
                    ErrorCode::UnknownClass,
                    format!("no class {class} in the core-only simulator"),
                ));
            }
            Some(Err(e)) => return Err(RemoteError::new(e.code(), e.to_string())),
            Some(Ok(req)) => req,
        };
        let Some((from, role)) = peer else {
            return Err(RemoteError::new(
                ErrorCode::Forbidden,
                "a request before authentication",
            ));
        };
        let m = &mut self.nodes[node].machine;
        match m.handle_request(now, &from, role, req) {
            Dispatch::Answer(r) => r,
            Dispatch::Shell(ShellWork::GetInfo) => encode_answer(&m.node_info(Stats::default())),
            Dispatch::Shell(_) => Err(RemoteError::new(
                ErrorCode::UnknownRequest,
                "not simulated by the core-only driver",
            )),
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
        let now = self.now;
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
        let now = self.now;
        loop {
            let mut touched: Vec<ConnId> = Vec::new();
            let mut answers: Vec<(u64, Result<(), ErrorCode>)> = Vec::new();
            let mut own: Vec<EventMsg> = Vec::new();
            let mut dials: Vec<(NodeIdx, super::shell::Purpose)> = Vec::new();
            while let Some(o) = self.nodes[idx].machine.poll_output() {
                match o {
                    Output::Gossip { link, view } => {
                        if let Some(c) = self.conns.get_mut(&link) {
                            c.conn.send_gossip(view);
                            touched.push(link);
                        }
                    }
                    Output::Notify { link, request } => {
                        if let (Some(c), Ok((class, body))) =
                            (self.conns.get_mut(&link), request.encode())
                        {
                            let _ = c.conn.request(now, class, body, NOTIFY_TIMEOUT);
                            touched.push(link);
                        }
                    }
                    Output::DialMember { id, .. } => {
                        if let Some(&t) = self.by_id.get(&id) {
                            dials.push((t, Purpose::Mesh(id)));
                        }
                    }
                    Output::Ask {
                        id,
                        link,
                        class,
                        body,
                        timeout,
                    } => match self.conns.get_mut(&link) {
                        Some(c) => match c.conn.request(now, &class, body, timeout) {
                            Ok(rid) => {
                                c.asks.insert(rid.0, id);
                                touched.push(link);
                            }
                            Err(e) => answers.push((id, Err(ErrorCode::parse(e.code())))),
                        },
                        None => answers.push((id, Err(ErrorCode::ConnectionFailed))),
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
                    | Output::Event(_) => {}
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
            if answers.is_empty() && own.is_empty() {
                return;
            }
            let m = &mut self.nodes[idx].machine;
            for (id, r) in answers {
                m.handle_answer(now, id, r);
            }
            for ev in own {
                m.handle_own_event(now, ev);
            }
        }
    }

    /// Follows node `idx`'s connector: dials what it names, waits while a control link
    /// lasts, reports the loss.
    pub(super) fn follow_connector(&mut self, idx: NodeIdx) {
        let now = self.now;
        loop {
            let action = self.nodes[idx].machine.connector_mut().poll_action();
            match action {
                Some(ConnectorAction::Dial(url)) => match self.node_of_url(&url) {
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
