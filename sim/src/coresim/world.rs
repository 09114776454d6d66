//! The simulated world: nodes, links between their connection machines, the event queue
//! and the clocks. A node is its core [`NodeMachine`]; a link is two [`Connection`]s, one
//! per end, whose writes reach the other end as the link model ([`super::links`]) says.
//!
//! Every node has its own clock: the `now` its machines see counts from its process's
//! start (as the daemon's does), and its wall clock may be off by a skew the fault
//! schedule draws. The world's time orders the event queue; a node's time is only ever
//! compared with itself.

use std::collections::{BTreeMap, HashMap};
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

use super::invariants::Checks;
use super::links::LinkFaults;
use super::queue::Queue;
use super::shell::{Asked, Purpose};

/// A node's index in the world.
pub type NodeIdx = usize;
/// One end of a link (unique in the world).
pub type ConnId = u64;

/// How links behave when nothing is wrong (faults add to it: see [`super::links`]).
#[derive(Debug, Clone)]
pub struct LinkModel {
    /// One-way latency, drawn uniformly from this range for every write.
    pub latency: (Duration, Duration),
    /// How long a dial to an unreachable node takes to fail.
    pub connect_timeout: Duration,
}

impl LinkModel {
    /// A data centre's network: 0.2-2 ms one way, a dial to nothing fails after 1 s
    /// (what the scale, fault and offline runs use).
    pub fn lan() -> LinkModel {
        LinkModel {
            latency: (Duration::from_micros(200), Duration::from_millis(2)),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// The wall clock at the world's time zero, Unix ns (2024-01-01): a node's wall clock is
/// this plus the world's time plus its skew.
pub const WALL_EPOCH_NS: u64 = 1_704_067_200_000_000_000;

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
    /// How many times it started (a run's timers and tasks name their run).
    pub run: u64,
    /// World time at which its clock reads zero (its process start, roughly).
    pub origin: Instant,
    /// Its wall clock's error, ms (taken at each start).
    pub wall_skew_ms: i64,
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
    /// Who waits for each of our requests, by request id.
    pub(super) asks: BTreeMap<u64, Asked>,
    /// Peer requests being served by a dial in progress (adoption).
    pub(super) remote: String,
}

#[derive(Debug)]
pub(super) enum Ev {
    /// Bytes written by `from` arrive at its peer `to`.
    Deliver { to: ConnId, bytes: Bytes },
    /// A connection's deadline (on its node's clock).
    ConnTimer { conn: ConnId, at: Instant },
    /// A node's deadline (machine and connector; on its clock), in run `run`.
    NodeTimer {
        node: NodeIdx,
        run: u64,
        at: Instant,
    },
    /// The other end's transport closed (after its last writes), or was reset.
    Eof { to: ConnId, detail: &'static str },
    /// A dial (by node `node`'s run `run`) that reached nothing fails.
    DialFailed {
        node: NodeIdx,
        run: u64,
        purpose: Purpose,
        detail: String,
    },
    /// A job request served by a node's shell is done: its answer goes out.
    Answer {
        conn: ConnId,
        rid: u64,
        result: Result<Bytes, nkcluster_core::message::RemoteError>,
    },
    /// A task of node `node`'s run `run` ends by itself.
    TaskEnd { node: NodeIdx, run: u64, task: u64 },
    /// A running task of node `node`'s run `run` sends its next event (then every
    /// `every`).
    TaskTick {
        node: NodeIdx,
        run: u64,
        task: u64,
        every: Duration,
    },
    /// Control node `node` (in run `run`) issues its next workload request.
    Client { node: NodeIdx, run: u64 },
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
    /// Gossip messages sent by control nodes, and the member records they carried.
    pub gossip: (u64, u64),
    /// Member changes (up, down, left, removed) reported by control nodes: each moved
    /// the node's live set, so each cost a ring placement.
    pub member_changes: u64,
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
    /// Partitions, held links, slow and lossy links in force, and the writes they hold.
    pub(super) faults: LinkFaults,
    /// The invariants checked as events happen, and the first violation.
    pub checks: Checks,
    /// The workload's state (requests in flight, tasks), when one runs.
    pub(super) workload: super::workload::Workload,
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
            faults: LinkFaults::default(),
            checks: Checks::default(),
            workload: Default::default(),
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
            run: 0,
            origin: Instant::ZERO,
            wall_skew_ms: 0,
            armed: None,
            connector_link: None,
            connector_waits: false,
            settings,
        });
        idx
    }

    /// Starts (or restarts, with a fresh machine and instance) node `idx`. Its clock
    /// starts a little before (its process started), its wall clock is off by its skew.
    pub fn start(&mut self, idx: NodeIdx) {
        let instance = self.rng.random();
        let boot = Duration::from_micros(self.rng.random_range(0..=2_000_000));
        let origin = Instant::from_nanos(
            self.now
                .as_nanos()
                .saturating_sub(u64::try_from(boot.as_nanos()).unwrap_or(0)),
        );
        let n = &mut self.nodes[idx];
        n.origin = origin;
        n.run += 1;
        n.settings.wall_origin_ns = wall_origin_ns(origin, n.wall_skew_ms);
        n.machine = NodeMachine::new(n.settings.clone());
        n.identity.instance = instance;
        n.alive = true;
        n.armed = None;
        n.connector_link = None;
        n.connector_waits = false;
        let now = self.clock(idx);
        self.nodes[idx].machine.start(now);
        self.after_input(idx);
        self.client_started(idx);
    }

    /// Node `idx`'s clock now (what its machines are told).
    pub fn clock(&self, idx: NodeIdx) -> Instant {
        Instant::from_nanos(
            self.now
                .as_nanos()
                .saturating_sub(self.nodes[idx].origin.as_nanos()),
        )
    }

    /// The world time at which node `idx`'s clock reads `local`.
    pub(super) fn world_time(&self, idx: NodeIdx, local: Instant) -> Instant {
        self.nodes[idx].origin + local.since_origin()
    }

    /// Crashes node `idx`'s host: its links go silent (peers notice by their idle
    /// timeout), and what it had not sent yet is lost.
    pub fn crash(&mut self, idx: NodeIdx) {
        self.nodes[idx].alive = false;
        for id in self.conns_of(idx) {
            self.conns.remove(&id);
            self.faults.drop_held(id);
        }
        self.checks.node_down(idx);
        self.workload.node_down(idx);
    }

    /// Kills node `idx`'s process: its host's kernel closes its connections, so each
    /// peer reads an end of file after the last bytes it was sent.
    pub fn kill(&mut self, idx: NodeIdx) {
        self.nodes[idx].alive = false;
        // Its own requests die with it (before its links close under them).
        self.checks.node_down(idx);
        self.workload.node_down(idx);
        for id in self.conns_of(idx) {
            self.remove_conn(id);
        }
    }

    /// Stops node `idx` in order, as the daemon does on a signal: a control member
    /// leaves the membership, every link closes in order; then the process exits.
    pub fn stop(&mut self, idx: NodeIdx) {
        if !self.nodes[idx].alive {
            return;
        }
        let now = self.clock(idx);
        self.nodes[idx].machine.handle_shutdown(now);
        self.after_input(idx);
        self.kill(idx);
    }

    /// Node `idx`'s connection ends, by id (sorted: the order is part of a replay).
    fn conns_of(&self, idx: NodeIdx) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == idx)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
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
                let Some(c) = self.conns.get(&to) else {
                    return;
                };
                let (node, peer_node) = (c.node, c.peer_node);
                self.counters.writes += 1;
                if self.nodes[node].identity.role == Role::Control
                    || self.nodes[peer_node].identity.role == Role::Control
                {
                    self.counters.control_writes += 1;
                }
                let now = self.clock(node);
                if let Some(c) = self.conns.get_mut(&to) {
                    c.conn.handle_input(now, &bytes);
                }
                self.flush(to);
            }
            Ev::ConnTimer { conn, at } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let now = self.clock(c.node);
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
            Ev::NodeTimer { node, run, at } => {
                let now = self.clock(node);
                let n = &mut self.nodes[node];
                if !n.alive || n.run != run || n.armed != Some(at) {
                    return;
                }
                n.armed = None;
                if n.machine.poll_timeout().is_some_and(|t| t <= now) {
                    n.machine.handle_timeout(now);
                }
                n.machine.connector_mut().handle_timeout(now);
                self.after_input(node);
            }
            Ev::Eof { to, detail } => {
                if let Some(c) = self.conns.get(&to) {
                    let now = self.clock(c.node);
                    if let Some(c) = self.conns.get_mut(&to) {
                        c.conn.handle_transport_closed(now, detail);
                    }
                    self.flush(to);
                }
            }
            Ev::DialFailed {
                node,
                run,
                purpose,
                detail,
            } => {
                self.counters.dials_failed += 1;
                if self.nodes[node].alive && self.nodes[node].run == run {
                    self.dial_ended(node, purpose, false, Some(("no_connections", detail)));
                }
            }
            Ev::Answer { conn, rid, result } => self.answer(conn, rid, result),
            Ev::TaskEnd { node, run, task } => self.task_ended(node, run, task),
            Ev::TaskTick {
                node,
                run,
                task,
                every,
            } => self.task_tick((node, run), task, every),
            Ev::Client { node, run } => self.client_request(node, run),
        }
    }

    /// Dials node `to` from node `from`: both ends' machines start now; what they write
    /// travels with the link model. A dial to a node that is down or cut off (either way)
    /// fails after the connect timeout.
    pub(super) fn dial(&mut self, from: NodeIdx, to: NodeIdx, purpose: Purpose) -> Option<ConnId> {
        if !self.nodes[to].alive || !self.can_dial(from, to) {
            let detail = format!("{} unreachable", self.nodes[to].id);
            let at = self.now + self.link.connect_timeout;
            let run = self.nodes[from].run;
            self.schedule(
                at,
                Ev::DialFailed {
                    node: from,
                    run,
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
                worker_key: None,
                nonce: self.rng.random(),
                channel_binding: Vec::new(),
                wall_origin_ns: self.nodes[me].settings.wall_origin_ns,
            };
            let conn = Connection::new(self.conn_config.clone(), params, self.clock(me));
            self.conns.insert(
                id,
                SimConn {
                    conn,
                    node: me,
                    peer_node: other,
                    peer,
                    purpose,
                    authenticated: false,
                    last_arrival: self.now,
                    armed: None,
                    asks: BTreeMap::new(),
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
    /// Re-entrant: an event may make the node act on this connection again (write, close)
    /// and flush it. Events are taken one at a time, so a nested flush goes on with the
    /// events after the current one, in the connection's order (a close the node asks
    /// for while a reply is being handled comes after the replies queued before it).
    pub(super) fn flush(&mut self, id: ConnId) {
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
            let event: Option<Event> = c.conn.poll_event();
            if let Some(out) = out.filter(|b| !b.is_empty()) {
                self.transmit(id, out);
            }
            match event {
                Some(e) => self.conn_event(id, e),
                None => break,
            }
        }
        let Some(c) = self.conns.get(&id) else {
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
            let world_at = self.world_time(c.node, at);
            if let Some(c) = self.conns.get_mut(&id) {
                c.armed = t;
            }
            self.schedule(world_at, Ev::ConnTimer { conn: id, at });
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
            let run = n.run;
            let world_at = self.world_time(idx, at);
            self.schedule(world_at, Ev::NodeTimer { node: idx, run, at });
        }
    }

    /// The node a URL names (its host is the node id).
    pub(super) fn node_of_url(&self, url: &ClusterUrl) -> Option<NodeIdx> {
        self.by_id.get(&url.host.to_string()).copied()
    }

    /// Node `id`'s index.
    pub fn node_idx(&self, id: &str) -> Option<NodeIdx> {
        self.by_id.get(id).copied()
    }
}

/// A node's wall clock at its clock's zero (`origin` on the world's clock), Unix ns.
fn wall_origin_ns(origin: Instant, skew_ms: i64) -> u64 {
    let ns =
        i128::from(WALL_EPOCH_NS) + i128::from(origin.as_nanos()) + i128::from(skew_ms) * 1_000_000;
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

impl World {
    /// The transport of connection `id` closes after its last writes: it leaves the
    /// world (the checks hear of it), and the other end reads its end of file.
    pub(super) fn remove_conn(&mut self, id: ConnId) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let at = self.now;
        let peer_open = self.conns.contains_key(&c.peer);
        self.checks
            .conn_removed((id, c.peer), &self.nodes[c.node].id, peer_open, at);
        self.transmit_eof(id, &c);
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
