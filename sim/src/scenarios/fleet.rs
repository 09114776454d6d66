//! Fleet scenarios: a few dozen nodes, several nodes per host, and TLS. The real runtime
//! (sockets, TLS, the shell's tasks) at the sizes turmoil still runs well; the core-only
//! simulator ([`crate::coresim`]) covers the large sizes without any of that.
//!
//! Each one runs the same script: the control nodes mesh and every worker joins; the
//! cluster converges (every control node sees every member, every worker has exactly one
//! proxy, at its ring owner, and answers a request through it); the last control node
//! crashes; the cluster converges again on the survivors.

use std::time::Duration;

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::node::NodeEvent;
use nkcluster_core::url::parse_url_list;

use super::{IDLE, PING, ensure, one_proxy_each, placement_report, proxies_of};
use crate::harness::{BoxError, Failure, Log, What, add_host, builder, run, sim_config};

/// The shape of a fleet scenario.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// The transport of every link: `tcp` or `tls`.
    pub transport: &'static str,
    /// Control nodes `c1..cN`, one per host; all but `c1` know only `c1`.
    pub controls: usize,
    /// Hosts running workers (`wh1..`).
    pub worker_hosts: usize,
    /// Workers on each of those hosts (`w1..`, numbered across hosts).
    pub workers_per_host: usize,
    /// A join storm on one listener: every worker dials `c1` first, and the links from
    /// the worker hosts to `c1` are held from the start for [`STORM_HOLD`], then released
    /// (a network blip heals): every worker's connection attempt reaches `c1` in the same
    /// instant. Otherwise each worker starts at a different control node.
    pub storm: bool,
    /// The nodes' TLS uses rustls's own randomness (the OS) instead of the seed's: only to
    /// show that a replay test tells the difference.
    pub os_tls_randomness: bool,
}

/// Three control nodes and six workers, every link over TLS whose randomness comes from
/// the seed.
pub const TLS: Fleet = Fleet {
    transport: "tls",
    controls: 3,
    worker_hosts: 6,
    workers_per_host: 1,
    storm: false,
    os_tls_randomness: false,
};

/// Three control nodes and thirty workers, each on its own host (34 hosts with the
/// driver).
pub const DOZENS: Fleet = Fleet {
    transport: "tcp",
    controls: 3,
    worker_hosts: 30,
    workers_per_host: 1,
    storm: false,
    os_tls_randomness: false,
};

/// Three control nodes and 96 workers on four hosts, all dialing `c1` at once: more
/// connections waiting on one listener than turmoil's default capacity (64) allows.
pub const STORM: Fleet = Fleet {
    transport: "tcp",
    controls: 3,
    worker_hosts: 4,
    workers_per_host: 24,
    storm: true,
    os_tls_randomness: false,
};

/// How long the storm's held links stay held: less than the connect timeout (1 s), so
/// the held connection attempts are still waited for when they arrive.
pub const STORM_HOLD: Duration = Duration::from_millis(500);

/// How long each convergence may take (simulated).
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// [`TLS`].
pub fn tls_cluster(seed: u64) -> Result<Vec<String>, Failure> {
    join_and_lose_control(seed, TLS)
}

/// [`DOZENS`].
pub fn dozens_of_workers(seed: u64) -> Result<Vec<String>, Failure> {
    join_and_lose_control(seed, DOZENS)
}

/// [`STORM`].
pub fn join_storm(seed: u64) -> Result<Vec<String>, Failure> {
    join_and_lose_control(seed, STORM)
}

/// The configs of a fleet: control nodes, then worker hosts with their workers.
fn configs(f: Fleet) -> Result<(Vec<NodeConfig>, Vec<Vec<NodeConfig>>), BoxError> {
    let url = |c: &str| format!("nkcluster://{c}:1972;transport={}", f.transport);
    let controls: Vec<String> = (1..=f.controls).map(|i| format!("c{i}")).collect();
    let tune = |c: &mut NodeConfig| {
        c.connection.ping_interval = PING;
        c.connection.idle_timeout = IDLE;
        c.connection.connect_timeout = Duration::from_secs(1);
    };
    let mut cs = Vec::new();
    for id in &controls {
        let mut c = sim_config(id);
        c.listen = parse_url_list(&url(id))?;
        if id != "c1" {
            c.cluster_addr = parse_url_list(&url("c1"))?;
        }
        tune(&mut c);
        cs.push(c);
    }
    let mut hosts = Vec::new();
    let mut k = 0;
    for _ in 0..f.worker_hosts {
        let mut ws = Vec::new();
        for _ in 0..f.workers_per_host {
            k += 1;
            let mut c = sim_config(&format!("w{k}"));
            c.control = false;
            let first = if f.storm { 0 } else { k % f.controls };
            let order: Vec<String> = (0..f.controls)
                .map(|i| url(&controls[(first + i) % f.controls]))
                .collect();
            c.cluster_addr = parse_url_list(&order.join(", "))?;
            tune(&mut c);
            ws.push(c);
        }
        hosts.push(ws);
    }
    Ok((cs, hosts))
}

/// Whether every one of `controls` sees exactly `controls` as members.
fn members_agree(l: &Log, controls: &[&str]) -> bool {
    controls
        .iter()
        .all(|c| l.node(c).is_some_and(|n| n.members() == controls))
}

/// Waits until `controls` agree on membership and every worker has one proxy among them,
/// at its ring owner; then asks every worker through its proxy for its name.
async fn converge(l: &Log, controls: &[&str], workers: &[String]) -> Result<(), BoxError> {
    let what = format!("{controls:?} to agree and serve every worker at its owner");
    l.wait_for(&what, CONVERGE_WITHIN, |_| {
        members_agree(l, controls) && one_proxy_each(l, controls, controls, workers)
    })
    .await
    .map_err(|e| format!("{e}: {}", placement_report(l, controls, controls, workers)))?;
    for w in workers {
        let proxy = proxies_of(l, controls, w).remove(0);
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
            format!("{w} through {proxy}: {r:?}")
        })?;
    }
    l.note(format!(
        "converged on {controls:?}: {} workers, one proxy each, all answer",
        workers.len()
    ));
    Ok(())
}

/// Every link that came up used the fleet's transport (its remote label says so).
fn links_used(l: &Log, transport: &str) -> Result<usize, BoxError> {
    let prefix = format!("{transport}:");
    let mut n = 0;
    for e in l.entries() {
        if let What::Node(NodeEvent::LinkUp { peer, remote, .. }) = &e.what {
            ensure(remote.starts_with(&prefix), || {
                format!("{} linked to {peer} over {remote}, not {transport}", e.host)
            })?;
            n += 1;
        }
    }
    Ok(n)
}

/// The fleet script (see the module docs).
pub fn join_and_lose_control(seed: u64, f: Fleet) -> Result<Vec<String>, Failure> {
    let log = Log::default();
    if f.os_tls_randomness {
        log.use_os_tls_randomness();
    }
    let (controls, hosts) = configs(f).map_err(|e| Failure {
        error: e.to_string(),
        log: vec![],
    })?;
    let control_ids: Vec<String> = controls.iter().map(|c| c.node_id.clone()).collect();
    let workers: Vec<String> = hosts.iter().flatten().map(|c| c.node_id.clone()).collect();
    let mut sim = builder(seed, Duration::from_secs(300)).build();
    let mut salt = 0;
    for c in controls {
        salt += 1;
        let host = c.node_id.clone();
        add_host(&mut sim, &log, &host, vec![(c, salt)], seed);
    }
    for (h, ws) in hosts.into_iter().enumerate() {
        let nodes = ws
            .into_iter()
            .map(|c| {
                salt += 1;
                (c, salt)
            })
            .collect();
        add_host(&mut sim, &log, &format!("wh{}", h + 1), nodes, seed);
    }
    let worker_hosts: Vec<String> = (1..=f.worker_hosts).map(|h| format!("wh{h}")).collect();
    if f.storm {
        for h in &worker_hosts {
            sim.hold("c1", h.as_str());
        }
    }
    let l = log.clone();
    sim.client("driver", async move {
        if f.storm {
            // The blip lasts this long (a fault's duration, not a wait for a condition).
            tokio::time::sleep(STORM_HOLD).await;
            for h in &worker_hosts {
                turmoil::release("c1", h.as_str());
            }
            l.note("release: every held connection attempt reaches c1 at once");
        }
        let all: Vec<&str> = control_ids.iter().map(String::as_str).collect();
        converge(&l, &all, &workers).await?;
        let (victim, survivors) = all.split_last().ok_or("no control nodes")?;
        l.crash(victim);
        converge(&l, survivors, &workers).await?;
        let n = links_used(&l, f.transport)?;
        l.note(format!("{n} links came up, all over {}", f.transport));
        Ok(())
    });
    run(sim, &log)
}
