//! Scenarios. Each builds a simulation from a seed, runs a script on a `driver` host
//! that checks its invariants as it goes, and returns the event log. The scripted ones
//! with a handful of nodes are here; [`fleet`] has the few-dozen-node and TLS ones.

use std::time::Duration;

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::node::NodeEvent;
use nkcluster_core::RequestError;
use nkcluster_core::url::parse_url_list;

pub mod fleet;

use crate::harness::{
    BoxError, Entry, Failure, Log, Scenario, What, add_node, builder, link_up, run, sim_config,
};

/// Ping interval used by the scenarios.
pub const PING: Duration = Duration::from_millis(200);
/// Idle timeout (failure-detection time) used by the scenarios.
pub const IDLE: Duration = Duration::from_millis(1000);
/// How long the partition lasts after both sides detected it.
const PARTITION_HOLD: Duration = Duration::from_secs(4);
/// Slack for "within the deadline": timer and delivery granularity (ticks of 1 ms).
const SLACK: Duration = Duration::from_millis(5);

/// Every scenario, by name (for the replay binary).
pub const ALL: &[(&str, Scenario)] = &[
    ("two_nodes_link_up", two_nodes_link_up),
    ("partition_detect_and_repair", partition_detect_and_repair),
    ("control_split_and_heal", control_split_and_heal),
    ("split_with_workers", split_with_workers),
    ("tls_cluster", fleet::tls_cluster),
    ("dozens_of_workers", fleet::dozens_of_workers),
    ("join_storm", fleet::join_storm),
];

fn pair() -> Result<(NodeConfig, NodeConfig), BoxError> {
    let mut c1 = sim_config("c1");
    c1.listen = parse_url_list("nkcluster://all:1972;transport=tcp")?;
    let mut w1 = sim_config("w1");
    w1.control = false;
    w1.cluster_addr = parse_url_list("nkcluster://c1:1972;transport=tcp")?;
    for c in [&mut c1, &mut w1] {
        c.connection.ping_interval = PING;
        c.connection.idle_timeout = IDLE;
        c.connection.connect_timeout = Duration::from_secs(1);
    }
    Ok((c1, w1))
}

fn setup(seed: u64) -> Result<(turmoil::Sim<'static>, Log), Failure> {
    let log = Log::default();
    let (c1, w1) = pair().map_err(|e| Failure {
        error: e.to_string(),
        log: vec![],
    })?;
    let mut sim = builder(seed, Duration::from_secs(120)).build();
    add_node(&mut sim, &log, c1, seed, 1);
    add_node(&mut sim, &log, w1, seed, 2);
    Ok((sim, log))
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), BoxError> {
    if cond { Ok(()) } else { Err(what().into()) }
}

async fn linked(log: &Log, from: usize) -> Result<Duration, BoxError> {
    log.wait_for("c1 and w1 to link", Duration::from_secs(30), |e| {
        link_up(e, "c1", "w1", from).is_some() && link_up(e, "w1", "c1", from).is_some()
    })
    .await
}

/// A control node and a worker link up and a request round-trips.
pub fn two_nodes_link_up(seed: u64) -> Result<Vec<String>, Failure> {
    let (mut sim, log) = setup(seed)?;
    let l = log.clone();
    sim.client("driver", async move {
        linked(&l, 0).await?;
        let r = l
            .request(
                "w1",
                "c1",
                "nkcluster.node",
                Bytes::new(),
                Duration::from_secs(5),
            )
            .await?;
        ensure(r == Bytes::from_static(b"c1"), || {
            format!("node answered {r:?}")
        })?;
        l.note(format!(
            "w1 -> c1 nkcluster.node = {}",
            String::from_utf8_lossy(&r)
        ));
        Ok(())
    });
    run(sim, &log)
}

fn link_down_at(
    entries: &[Entry],
    host: &str,
    peer: &str,
    from: usize,
) -> Option<(Duration, Option<String>)> {
    entries.iter().skip(from).find_map(|e| match &e.what {
        What::Node(NodeEvent::LinkDown { peer: p, code, .. }) if e.host == host && p == peer => {
            Some((e.at, code.clone()))
        }
        _ => None,
    })
}

/// A partition: both sides detect the loss within the idle timeout and fail the requests
/// pending on the link with `connection_failed`; after the repair they link again and
/// requests flow.
pub fn partition_detect_and_repair(seed: u64) -> Result<Vec<String>, Failure> {
    let (mut sim, log) = setup(seed)?;
    let l = log.clone();
    sim.client("driver", async move {
        linked(&l, 0).await?;
        let from = l.entries().len();
        turmoil::partition("c1", "w1");
        let t_part = turmoil::sim_elapsed().unwrap_or_default();
        l.note("partition c1 | w1");
        let long = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            l.request("w1", "c1", "nkcluster.echo", Bytes::from_static(b"x"), long),
            l.request("c1", "w1", "nkcluster.echo", Bytes::from_static(b"y"), long),
        );
        let t_fail = turmoil::sim_elapsed().unwrap_or_default();
        l.note(format!(
            "pending requests ended: w1->c1 {a:?}, c1->w1 {b:?}"
        ));
        ensure(
            a == Err(RequestError::ConnectionFailed) && b == Err(RequestError::ConnectionFailed),
            || format!("expected connection_failed on both sides, got {a:?} and {b:?}"),
        )?;
        ensure(t_fail - t_part <= IDLE + SLACK, || {
            format!(
                "requests failed {:?} after the partition (idle timeout {IDLE:?})",
                t_fail - t_part
            )
        })?;
        let entries = l.entries();
        for (host, peer) in [("c1", "w1"), ("w1", "c1")] {
            let (at, code) = link_down_at(&entries, host, peer, from)
                .ok_or_else(|| format!("{host} never reported the link to {peer} down"))?;
            ensure(code.as_deref() == Some("idle_timeout"), || {
                format!("{host}: link down with {code:?}, expected idle_timeout")
            })?;
            ensure(at - t_part <= IDLE + SLACK, || {
                format!(
                    "{host} detected the loss {:?} after the partition",
                    at - t_part
                )
            })?;
        }
        // Keep the partition for a while, so the worker's redials run into it (connect
        // timeouts, backoff). This is the fault's duration in simulated time, not a wait
        // for a condition.
        tokio::time::sleep(PARTITION_HOLD).await;
        turmoil::repair("c1", "w1");
        l.note("repair c1 | w1");
        let from = l.entries().len();
        linked(&l, from).await?;
        let r = l
            .request(
                "w1",
                "c1",
                "nkcluster.node",
                Bytes::new(),
                Duration::from_secs(5),
            )
            .await?;
        ensure(r == Bytes::from_static(b"c1"), || {
            format!("node answered {r:?}")
        })?;
        l.note("request after repair ok");
        Ok(())
    });
    run(sim, &log)
}

fn member_event(entries: &[Entry], host: &str, id: &str, change: &str, from: usize) -> bool {
    entries.iter().skip(from).any(|e| {
        matches!(&e.what, What::Node(NodeEvent::Member { id: i, change: c })
            if e.host == host && i == id && *c == change)
    })
}

/// Three control nodes mesh through gossip (c2 and c3 only know c1); a 2|1 split makes
/// each side mark the other down within the failure-detection time; after the heal the
/// mesh re-forms by itself and every member sees all three alive.
pub fn control_split_and_heal(seed: u64) -> Result<Vec<String>, Failure> {
    let log = Log::default();
    let mut sim = builder(seed, Duration::from_secs(120)).build();
    let mut configs = Vec::new();
    for id in ["c1", "c2", "c3"] {
        let mut c = sim_config(id);
        let listen = format!("nkcluster://{id}:1972;transport=tcp");
        let fail = |e: nkcluster_core::url::UrlError| Failure {
            error: e.to_string(),
            log: vec![],
        };
        c.listen = parse_url_list(&listen).map_err(fail)?;
        if id != "c1" {
            c.cluster_addr = parse_url_list("nkcluster://c1:1972;transport=tcp").map_err(fail)?;
        }
        c.connection.ping_interval = PING;
        c.connection.idle_timeout = IDLE;
        c.connection.connect_timeout = Duration::from_secs(1);
        configs.push(c);
    }
    for (i, c) in configs.into_iter().enumerate() {
        add_node(&mut sim, &log, c, seed, i as u64 + 1);
    }
    let l = log.clone();
    sim.client("driver", async move {
        let ids = ["c1", "c2", "c3"];
        // Every pair linked directly (either side dialing) and every member up everywhere.
        let all_up = |e: &[Entry], from: usize| {
            ids.iter().all(|h| {
                ids.iter()
                    .filter(|m| *m != h)
                    .all(|m| member_event(e, h, m, "up", from) && link_up(e, h, m, from).is_some())
            })
        };
        l.wait_for("the full mesh", Duration::from_secs(30), |e| all_up(e, 0))
            .await?;
        for h in ids {
            let members = l.node(h).ok_or("node missing")?.members();
            ensure(members == ids, || format!("{h} sees {members:?}"))?;
        }
        let from = l.entries().len();
        turmoil::partition("c3", "c1");
        turmoil::partition("c3", "c2");
        let t_split = turmoil::sim_elapsed().unwrap_or_default();
        l.note("partition c3 | c1 c2");
        let split_seen = |e: &[Entry]| {
            member_event(e, "c1", "c3", "down", from)
                && member_event(e, "c2", "c3", "down", from)
                && member_event(e, "c3", "c1", "down", from)
                && member_event(e, "c3", "c2", "down", from)
        };
        let t = l
            .wait_for("both sides to see the split", IDLE * 3, split_seen)
            .await?;
        ensure(t - t_split <= IDLE + SLACK, || {
            format!("split detected {:?} after it happened", t - t_split)
        })?;
        let majority = l.node("c1").ok_or("c1 missing")?.members();
        ensure(majority == ["c1", "c2"], || format!("c1 sees {majority:?}"))?;
        let minority = l.node("c3").ok_or("c3 missing")?.members();
        ensure(minority == ["c3"], || format!("c3 sees {minority:?}"))?;
        // The split lasts a while (a fault's duration, not a wait for a condition).
        tokio::time::sleep(PARTITION_HOLD).await;
        turmoil::repair("c3", "c1");
        turmoil::repair("c3", "c2");
        l.note("repair");
        // Converged: every member sees all three alive (re-checked on every log entry,
        // and every membership change is logged).
        let nodes: Vec<_> = ids.iter().filter_map(|h| l.node(h)).collect();
        l.wait_for(
            "every member to see c1, c2, c3 again",
            Duration::from_secs(60),
            |_| nodes.iter().all(|n| n.members() == ids),
        )
        .await?;
        l.note("healed: every member sees c1, c2, c3");
        Ok(())
    });
    run(sim, &log)
}

/// The control nodes holding a link to `worker` (its proxies).
fn proxies_of(l: &Log, controls: &[&str], worker: &str) -> Vec<String> {
    controls
        .iter()
        .filter(|c| {
            l.node(c).is_some_and(|n| {
                n.peers()
                    .iter()
                    .any(|p| p.node_id == worker && p.role == nkcluster_core::Role::Worker)
            })
        })
        .map(|c| (*c).to_owned())
        .collect()
}

/// Whether every worker has exactly one proxy, at its owner in the ring over `members`.
fn one_proxy_each(l: &Log, controls: &[&str], members: &[&str], workers: &[String]) -> bool {
    let members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
    let Some(ring) =
        nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members)
    else {
        return false;
    };
    workers.iter().all(|w| {
        let p = proxies_of(l, controls, w);
        p.len() == 1 && ring.owner_of(w) == Some(p[0].as_str())
    })
}

/// Where each worker is served, and where the ring over `members` wants it, for failure
/// messages.
fn placement_report(l: &Log, controls: &[&str], members: &[&str], workers: &[String]) -> String {
    let m: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &m);
    workers
        .iter()
        .map(|w| {
            let owner = ring.as_ref().and_then(|r| r.owner_of(w)).unwrap_or("?");
            format!(
                "{w}: proxies {:?}, owner {owner}",
                proxies_of(l, controls, w)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Three control nodes and six workers (no listeners: every hand-off is a redirect).
/// After convergence the network splits 2|1: {c1, c2, w1..w3} | {c3, w4..w6}. Each side
/// serves the workers it can reach: every worker ends with exactly one proxy on its side
/// (at its owner in that side's ring) and answers a request through it. After the heal,
/// every worker has exactly one proxy again, at its owner in the ring over all three.
pub fn split_with_workers(seed: u64) -> Result<Vec<String>, Failure> {
    let log = Log::default();
    let mut sim = builder(seed, Duration::from_secs(180)).build();
    let fail = |e: nkcluster_core::url::UrlError| Failure {
        error: e.to_string(),
        log: vec![],
    };
    let controls = ["c1", "c2", "c3"];
    let workers: Vec<String> = (1..=6).map(|i| format!("w{i}")).collect();
    let mut configs = Vec::new();
    for id in controls {
        let mut c = sim_config(id);
        c.listen = parse_url_list(&format!("nkcluster://{id}:1972;transport=tcp")).map_err(fail)?;
        if id != "c1" {
            c.cluster_addr = parse_url_list("nkcluster://c1:1972;transport=tcp").map_err(fail)?;
        }
        configs.push(c);
    }
    for (i, w) in workers.iter().enumerate() {
        let mut c = sim_config(w);
        c.control = false;
        // Each worker starts at a different control node; most will be redirected.
        let first = controls[i % 3];
        let rest: Vec<String> = controls
            .iter()
            .filter(|c| **c != first)
            .map(|c| format!("nkcluster://{c}:1972;transport=tcp"))
            .collect();
        let list = format!(
            "nkcluster://{first}:1972;transport=tcp, {}",
            rest.join(", ")
        );
        c.cluster_addr = parse_url_list(&list).map_err(fail)?;
        configs.push(c);
    }
    for c in &mut configs {
        c.connection.ping_interval = PING;
        c.connection.idle_timeout = IDLE;
        c.connection.connect_timeout = Duration::from_secs(1);
    }
    for (i, c) in configs.into_iter().enumerate() {
        add_node(&mut sim, &log, c, seed, i as u64 + 1);
    }
    let l = log.clone();
    sim.client("driver", async move {
        let ws = workers.clone();
        l.wait_for(
            "one proxy per worker at its owner (c1, c2, c3)",
            Duration::from_secs(60),
            |_| one_proxy_each(&l, &controls, &controls, &ws),
        )
        .await
        .map_err(|e| format!("{e}: {}", placement_report(&l, &controls, &controls, &ws)))?;
        l.note("converged: one proxy per worker");
        let (left, right) = ws.split_at(3);
        let (left_c, right_c) = (["c1", "c2"], ["c3"]);
        // Every host of one side against every host of the other.
        let sides = |f: fn(&str, &str)| {
            let l = left_c
                .iter()
                .copied()
                .chain(left.iter().map(String::as_str));
            for a in l {
                let r = right_c
                    .iter()
                    .copied()
                    .chain(right.iter().map(String::as_str));
                for b in r {
                    f(a, b);
                }
            }
        };
        sides(|a, b| turmoil::partition(a, b));
        l.note("partition c1 c2 w1 w2 w3 | c3 w4 w5 w6");
        l.wait_for(
            "each side to serve its reachable workers",
            Duration::from_secs(60),
            |_| {
                one_proxy_each(&l, &left_c, &left_c, left)
                    && one_proxy_each(&l, &right_c, &right_c, right)
            },
        )
        .await?;
        for w in &ws {
            let proxy = proxies_of(&l, &controls, w).remove(0);
            let r = l
                .request(
                    &proxy,
                    w,
                    "nkcluster.node",
                    Bytes::new(),
                    Duration::from_secs(2),
                )
                .await;
            ensure(r.as_deref() == Ok(w.as_bytes()), || {
                format!("{w} through {proxy} during the split: {r:?}")
            })?;
        }
        l.note("split: every worker served by its side, one proxy each");
        // The split lasts a while (a fault's duration, not a wait for a condition).
        tokio::time::sleep(PARTITION_HOLD).await;
        sides(|a, b| turmoil::repair(a, b));
        l.note("repair");
        l.wait_for(
            "one proxy per worker at its owner after the heal",
            Duration::from_secs(60),
            |_| one_proxy_each(&l, &controls, &controls, &ws),
        )
        .await?;
        l.note("healed: one proxy per worker");
        Ok(())
    });
    run(sim, &log)
}
