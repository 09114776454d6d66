//! Scenarios. Each builds a simulation from a seed, runs a script on a `driver` host
//! that checks its invariants as it goes, and returns the event log.

use std::time::Duration;

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::node::NodeEvent;
use nkcluster_core::RequestError;
use nkcluster_core::url::parse_url_list;

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
        let w1 = l.node("w1").ok_or("w1 is not running")?;
        let r = w1
            .request("c1", "nkcluster.node", Bytes::new(), Duration::from_secs(5))
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
        let c1 = l.node("c1").ok_or("c1 is not running")?;
        let w1 = l.node("w1").ok_or("w1 is not running")?;
        let from = l.entries().len();
        turmoil::partition("c1", "w1");
        let t_part = turmoil::sim_elapsed().unwrap_or_default();
        l.note("partition c1 | w1");
        let long = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            w1.request("c1", "nkcluster.echo", Bytes::from_static(b"x"), long),
            c1.request("w1", "nkcluster.echo", Bytes::from_static(b"y"), long),
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
        let r = w1
            .request("c1", "nkcluster.node", Bytes::new(), Duration::from_secs(5))
            .await?;
        ensure(r == Bytes::from_static(b"c1"), || {
            format!("node answered {r:?}")
        })?;
        l.note("request after repair ok");
        Ok(())
    });
    run(sim, &log)
}
