//! The node machine's decisions, each with the exact outputs for given inputs and times.
//! Links are identified by their connection id (the machine's handle `H` is `u64` here).
//! This file: the shared helpers; `control` (links, membership, hand-offs, events, the
//! table, routing, shutdown), `jobs` (status, tasks, state calls, dispatch, files) and
//! `offline` (a worker's events while it has no control link), `identity` (one node id
//! linked from two runs).

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::cluster::{JobCall, Stats, SubscribeRequest};
use crate::conn::ConnError;
use crate::membership::Status as MemberStatus;
use crate::node::control::SubscribeError;
use crate::node::links::LinkGone;
use crate::table::NodeRow;

const T0: Instant = Instant::ZERO;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn settings(me: &str, role: Role) -> NodeSettings {
    NodeSettings {
        me: me.into(),
        role,
        listen: vec![format!("nkcluster://{me}:1972")],
        partitions: 64,
        wall_origin_ns: 1_000_000_000_000,
        membership: MembershipConfig::default(),
        handoff_retry: Duration::from_secs(5),
        handoff: HandoffTimes::default(),
        cluster_addr: Vec::new(),
        backoff: BackoffConfig::default(),
        data_limit: 16,
        meta: Meta::default(),
        workers: WorkersConfig {
            max_workers: 100,
            forget_after: Duration::from_secs(60),
            max_classes: 2,
        },
        events: EventsConfig {
            keep: 3,
            max_subscribers: 2,
        },
        files_dir: "/srv/files".into(),
        transfers: Default::default(),
        outbox: crate::outbox::OutboxConfig {
            max_events: 3,
            max_bytes: 1 << 20,
        },
        modules: Default::default(),
    }
}

fn machine(me: &str, role: Role) -> NodeMachine<u64> {
    let mut m = NodeMachine::new(settings(me, role));
    m.start(T0);
    drain(&mut m);
    m
}

fn drain(m: &mut NodeMachine<u64>) -> Vec<Output<u64>> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn peer(id: &str, role: Role, listen: &[&str]) -> PeerSummary {
    PeerSummary {
        node_id: id.into(),
        role,
        remote: format!("tcp:10.0.0.{}:5000", id.len()),
        dialer: false,
        instance: 1,
        listen: listen.iter().map(|u| (*u).to_owned()).collect(),
        meta: String::new(),
        version: crate::message::PROTOCOL_VERSION,
    }
}

fn link(conn_id: u64, summary: PeerSummary) -> Link<u64> {
    Link {
        conn_id,
        summary,
        remote_ip: Some("10.0.0.9".parse().expect("ip")),
        rtt: Default::default(),
        handle: conn_id,
    }
}

fn member(id: &str, generation: u64) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        generation,
        incarnation: 0,
        status: MemberStatus::Alive,
        listen: vec![format!("nkcluster://{id}:1972")],
    }
}

fn link_up_event(p: &PeerSummary) -> Output<u64> {
    Output::Event(NodeEvent::LinkUp {
        peer: p.node_id.clone(),
        role: p.role,
        remote: p.remote.clone(),
        dialer: p.dialer,
    })
}

fn status_event(node: &str, s: Status) -> EventMsg {
    EventMsg {
        node: node.into(),
        class: NODE_EVENT_CLASS.into(),
        task: None,
        event: WireEvent::NodeStatus(s),
    }
}

fn class_event(node: &str, class: &str, task: Option<u64>, event: WireEvent) -> EventMsg {
    EventMsg {
        node: node.into(),
        class: class.into(),
        task,
        event,
    }
}

/// c1 linked to c2 (views exchanged), so that the ring has both.
fn two_members() -> NodeMachine<u64> {
    let mut c1 = machine("c1", Role::Control);
    let c2 = peer("c2", Role::Control, &["nkcluster://c2:1972"]);
    c1.handle_link_up(T0, link(2, c2), true);
    c1.handle_gossip(T0, "c2", 2, &[member("c2", 7)]);
    drain(&mut c1);
    c1
}

/// A worker the ring of `m` gives to `owner`.
fn worker_of(m: &NodeMachine<u64>, owner: &str) -> String {
    (0..100)
        .map(|i| format!("w{i}"))
        .find(|w| m.proxies.as_ref().is_some_and(|p| p.owner_of(w) == owner))
        .unwrap_or_else(|| panic!("some worker belongs to {owner}"))
}

/// A worker the ring gives to c2 (with c1 and c2 live).
fn worker_of_c2(c1: &NodeMachine<u64>) -> String {
    worker_of(c1, "c2")
}

mod code;
mod control;
mod follow;
mod gauges;
mod identity;
mod jobs;
mod lifecycle;
mod limits;
mod offline;
mod seeds;
mod snapshot;
