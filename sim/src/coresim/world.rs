//! The simulated world: nodes, links between their connection machines, the event queue
//! and the clock. A node is its core [`NodeMachine`]; a link is two [`Connection`]s, one
//! per end, whose writes reach the other end after the link model's latency.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::Instant;
use nkcluster_core::auth::Key;
use nkcluster_core::conn::{Connection, ConnectionConfig, ConnectionParams, Event};
use nkcluster_core::handshake::{Identity, Role, Side};
use nkcluster_core::node::{NodeMachine, NodeSettings};
use nkcluster_core::url::ClusterUrl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::queue::Queue;
use super::shell::Purpose;

/// A node's index in the world.
pub type NodeIdx = usize;
/// One end of a link (unique in the world).
pub type ConnId = u64;

/// How links behave.
#[derive(Debug, Clone)]
pub struct LinkModel {
    /// One-way latency, drawn uniformly from this range for every write.
    pub latency: (Duration, Duration),
    /// How long a dial to an unreachable node takes to fail.
    pub connect_timeout: Duration,
}

/// One simulated node.
pub struct SimNode {
    /// Its id.
    pub id: String,
    /// What it announces in handshakes.
    pub identity: Identity,
    /// Its core machine.
    pub machine: NodeMachine<ConnId>,
    /// Running (a crashed node keeps its index; its machine is rebuilt at restart).
    pub alive: bool,
    /// Which side of a partition it is on.
    pub group: u8,
    /// The deadline its timer event is queued for.
    pub(super) armed: Option<Instant>,
    /// The connector's link in progress (workers).
    pub(super) connector_link: Option<ConnId>,
    /// The connector waits until no control link is left.
    pub(super) connector_waits: bool,
    /// Settings, to rebuild the machine at a restart.
    pub(super) settings: NodeSettings,
}

/// One end of a link.
pub struct SimConn {
    pub(super) conn: Connection,
    pub(super) node: NodeIdx,
    pub(super) peer_node: NodeIdx,
    /// The other end.
    pub(super) peer: ConnId,
    pub(super) purpose: Purpose,
    pub(super) authenticated: bool,
    /// When the last write in this direction arrives (writes arrive in order).
    pub(super) last_arrival: Instant,
    pub(super) armed: Option<Instant>,
    /// Our requests whose answers go to the machine (`Output::Ask` ids), by request id.
    pub(super) asks: HashMap<u64, u64>,
    /// Peer requests being served by a dial in progress (adoption).
    pub(super) remote: String,
}

#[derive(Debug)]
pub(super) enum Ev {
    /// Bytes written by `from` arrive at its peer `to`.
    Deliver { to: ConnId, bytes: Bytes },
    /// A connection's deadline.
    ConnTimer { conn: ConnId, at: Instant },
    /// A node's deadline (machine and connector).
    NodeTimer { node: NodeIdx, at: Instant },
    /// The other end's transport closed (after its last writes).
    Eof { to: ConnId },
    /// A dial that reached nothing fails.
    DialFailed {
        node: NodeIdx,
        purpose: Purpose,
        detail: String,
    },
}

/// Counters of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Writes delivered to or from a control node.
    pub control_writes: u64,
    /// Writes delivered in all.
    pub writes: u64,
    /// Handshakes that succeeded.
    pub links_up: u64,
    /// Dials that reached nothing.
    pub dials_failed: u64,
    /// Events processed.
    pub events: u64,
}

/// See the module docs.
pub struct World {
    pub(super) now: Instant,
    pub(super) queue: Queue<Ev>,
    pub(super) rng: StdRng,
    /// Every node, started or not.
    pub nodes: Vec<SimNode>,
    pub(super) by_id: HashMap<String, NodeIdx>,
    pub(super) conns: HashMap<ConnId, SimConn>,
    pub(super) next_conn: ConnId,
    pub(super) key: Key,
    pub(super) conn_config: ConnectionConfig,
    pub(super) link: LinkModel,
    /// A partition is in force: writes and dials between groups are lost.
    pub(super) split: bool,
    /// What happened so far.
    pub counters: Counters,
}

impl World {
    /// An empty world drawing everything random from `seed`.
    pub fn new(seed: u64, conn_config: ConnectionConfig, link: LinkModel) -> Self {
        World {
            now: Instant::ZERO,
            queue: Queue::new(),
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            by_id: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            // One derivation for the whole world (the password is the same everywhere).
            key: Key::derive("sim-password", "sim", 1),
            conn_config,
            link,
            split: false,
            counters: Counters::default(),
        }
    }

    /// Simulated time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a node (not started).
    pub fn add_node(&mut self, settings: NodeSettings) -> NodeIdx {
        let idx = self.nodes.len();
        let identity = Identity {
            cluster: "sim".into(),
            node_id: settings.me.clone(),
            instance: self.rng.random(),
            role: settings.role,
            listen: settings.listen.clone(),
            meta: String::new(),
            partitions: settings.partitions,
        };
        self.by_id.insert(settings.me.clone(), idx);
        self.nodes.push(SimNode {
            id: settings.me.clone(),
            identity,
            machine: NodeMachine::new(settings.clone()),
            alive: false,
            group: 0,
            armed: None,
            connector_link: None,
            connector_waits: false,
            settings,
        });
        idx
    }

    /// Starts (or restarts, with a fresh machine and instance) node `idx`.
    pub fn start(&mut self, idx: NodeIdx) {
        let now = self.now;
        let instance = self.rng.random();
        let n = &mut self.nodes[idx];
        n.machine = NodeMachine::new(n.settings.clone());
        n.identity.instance = instance;
        n.alive = true;
        n.armed = None;
        n.connector_link = None;
        n.connector_waits = false;
        n.machine.start(now);
        self.after_input(idx);
    }

    /// Crashes node `idx`: its links go silent (peers notice by their idle timeout).
    pub fn crash(&mut self, idx: NodeIdx) {
        self.nodes[idx].alive = false;
        let mine: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == idx)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            self.conns.remove(&id);
        }
    }

    /// Puts node `idx` on side `group` of the partition.
    pub fn set_group(&mut self, idx: NodeIdx, group: u8) {
        self.nodes[idx].group = group;
    }

    /// Starts or ends the partition between groups.
    pub fn set_split(&mut self, split: bool) {
        self.split = split;
    }

    pub(super) fn reachable(&self, a: NodeIdx, b: NodeIdx) -> bool {
        !self.split || self.nodes[a].group == self.nodes[b].group
    }

    /// Runs every event up to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some((at, ev)) = self.queue.pop_until(until) {
            self.now = at;
            self.counters.events += 1;
            self.handle(ev);
        }
        self.now = until;
    }

    pub(super) fn schedule(&mut self, at: Instant, ev: Ev) {
        self.queue.push(at, ev);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, bytes } => {
                let now = self.now;
                let Some(c) = self.conns.get_mut(&to) else {
                    return;
                };
                self.counters.writes += 1;
                if self.nodes[c.node].identity.role == Role::Control
                    || self.nodes[c.peer_node].identity.role == Role::Control
                {
                    self.counters.control_writes += 1;
                }
                c.conn.handle_input(now, &bytes);
                self.flush(to);
            }
            Ev::ConnTimer { conn, at } => {
                let now = self.now;
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.armed != Some(at) {
                    return;
                }
                c.armed = None;
                // Armed for an earlier deadline that has since moved on: nothing is due
                // yet; `flush` arms the real one.
                if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                    c.conn.handle_timeout(now);
                }
                self.flush(conn);
            }
            Ev::NodeTimer { node, at } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if !n.alive || n.armed != Some(at) {
                    return;
                }
                n.armed = None;
                if n.machine.poll_timeout().is_some_and(|t| t <= now) {
                    n.machine.handle_timeout(now);
                }
                n.machine.connector_mut().handle_timeout(now);
                self.after_input(node);
            }
            Ev::Eof { to } => {
                let now = self.now;
                if let Some(c) = self.conns.get_mut(&to) {
                    c.conn.handle_transport_closed(now, "eof");
                    self.flush(to);
                }
            }
            Ev::DialFailed {
                node,
                purpose,
                detail,
            } => {
                self.counters.dials_failed += 1;
                if self.nodes[node].alive {
                    self.dial_ended(node, purpose, false, Some(("no_connections", detail)));
                }
            }
        }
    }

    /// Dials node `to` from node `from`: both ends' machines start now; what they write
    /// travels with the link model. A dial to a node that is down or across the
    /// partition fails after the connect timeout.
    pub(super) fn dial(&mut self, from: NodeIdx, to: NodeIdx, purpose: Purpose) -> Option<ConnId> {
        let now = self.now;
        if !self.nodes[to].alive || !self.reachable(from, to) {
            let detail = format!("{} unreachable", self.nodes[to].id);
            let at = now + self.link.connect_timeout;
            self.schedule(
                at,
                Ev::DialFailed {
                    node: from,
                    purpose,
                    detail,
                },
            );
            return None;
        }
        let (a, b) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        for (id, me, other, side, peer, purpose) in [
            (a, from, to, Side::Dialer, b, purpose),
            (b, to, from, Side::Listener, a, Purpose::Accepted),
        ] {
            let params = ConnectionParams {
                side,
                identity: self.nodes[me].identity.clone(),
                key: self.key.clone(),
                nonce: self.rng.random(),
                channel_binding: Vec::new(),
                wall_origin_ns: 0,
            };
            let conn = Connection::new(self.conn_config.clone(), params, now);
            self.conns.insert(
                id,
                SimConn {
                    conn,
                    node: me,
                    peer_node: other,
                    peer,
                    purpose,
                    authenticated: false,
                    last_arrival: now,
                    armed: None,
                    asks: HashMap::new(),
                    remote: format!("tcp:{}:1972", self.nodes[other].id),
                },
            );
        }
        self.flush(a);
        self.flush(b);
        Some(a)
    }

    /// After an input to connection `id`: its writes go on the wire, its events to its
    /// node, its deadline to the queue.
    ///
    /// Re-entrant: an event may make the node write on this connection again (and flush
    /// it); each flush takes the events that are there when it starts.
    pub(super) fn flush(&mut self, id: ConnId) {
        let now = self.now;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            // One write: a lone chunk (a ping, a pong, a small message) goes as it is,
            // several are joined.
            let mut out: Option<Bytes> = None;
            let mut joined: Vec<u8> = Vec::new();
            while let Some(b) = c.conn.poll_transmit() {
                match out.take() {
                    None if joined.is_empty() => out = Some(b),
                    prev => {
                        joined.extend_from_slice(prev.as_deref().unwrap_or_default());
                        joined.extend_from_slice(&b);
                    }
                }
            }
            if !joined.is_empty() {
                out = Some(Bytes::from(joined));
            }
            let events: Vec<Event> = std::iter::from_fn(|| c.conn.poll_event()).collect();
            let (peer, from, to) = (c.peer, c.node, c.peer_node);
            if let Some(out) = out.filter(|b| !b.is_empty())
                && self.reachable(from, to)
            {
                let (lo, hi) = self.link.latency;
                let span = hi.saturating_sub(lo).as_micros() as u64;
                let jitter = if span == 0 {
                    0
                } else {
                    self.rng.random_range(0..=span)
                };
                let Some(c) = self.conns.get_mut(&id) else {
                    return;
                };
                let at = (now + lo + Duration::from_micros(jitter)).max(c.last_arrival);
                c.last_arrival = at;
                self.schedule(
                    at,
                    Ev::Deliver {
                        to: peer,
                        bytes: out,
                    },
                );
            }
            if events.is_empty() {
                break;
            }
            for e in events {
                self.conn_event(id, e);
            }
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        // A closed end is removed with its last event (`Closed`, in `conn_event`).
        if c.conn.is_closed() {
            return;
        }
        // One timer event per connection at a time: re-armed only for an earlier
        // deadline (a later one is found when the armed one fires), so the queue does not
        // fill with deadlines that every write pushes back.
        let t = c.conn.poll_timeout();
        if let Some(at) = t
            && c.armed.is_none_or(|armed| at < armed)
        {
            c.armed = t;
            self.schedule(at, Ev::ConnTimer { conn: id, at });
        }
    }

    /// After an input to node `idx`'s machine: its outputs are performed, the
    /// connector's plan followed, its deadline queued.
    pub(super) fn after_input(&mut self, idx: NodeIdx) {
        self.perform_outputs(idx);
        self.follow_connector(idx);
        let n = &mut self.nodes[idx];
        let t = [
            n.machine.poll_timeout(),
            n.machine.connector_mut().poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = t
            && n.armed.is_none_or(|armed| at < armed)
        {
            n.armed = t;
            self.schedule(at, Ev::NodeTimer { node: idx, at });
        }
    }

    /// The node a URL names (its host is the node id).
    pub(super) fn node_of_url(&self, url: &ClusterUrl) -> Option<NodeIdx> {
        self.by_id.get(&url.host.to_string()).copied()
    }
}

impl World {
    /// The transport of connection `id` closes after its last writes: it leaves the
    /// world, and the other end reads its end of file.
    pub(super) fn remove_conn(&mut self, id: ConnId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        if self.reachable(c.node, c.peer_node) {
            let at = c.last_arrival.max(self.now);
            self.schedule(at, Ev::Eof { to: c.peer });
        }
    }

    /// Every connection end at or to node `id`, described (failure reports).
    pub fn describe_conns(&self, id: &str) -> Vec<String> {
        let Some(&idx) = self.by_id.get(id) else {
            return Vec::new();
        };
        let mut v: Vec<String> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == idx || c.peer_node == idx)
            .map(|(k, c)| {
                format!(
                    "end {k} at {} to {} ({:?}, authenticated {}, established {})",
                    self.nodes[c.node].id,
                    self.nodes[c.peer_node].id,
                    c.purpose,
                    c.authenticated,
                    c.conn.is_established()
                )
            })
            .collect();
        v.sort();
        let n = &self.nodes[idx];
        v.push(format!(
            "{}: alive {}, connector link {:?}, waits {}, control links {}, connector {:?}",
            n.id,
            n.alive,
            n.connector_link,
            n.connector_waits,
            n.machine.links().count_role(Role::Control),
            n.machine.connector()
        ));
        v
    }
}
