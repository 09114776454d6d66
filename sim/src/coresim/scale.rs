//! The cluster at scale in the core-only simulator: a join storm from zero, steady state,
//! a control node crash, a split in two halves and its heal, and a rolling restart of
//! every control node, each with its figures (simulated and wall time, time to
//! convergence, writes per second per control node, workers per control node, moves
//! against the minimum) and the invariant it must reach: once the live control nodes'
//! views agree, every live worker has exactly one proxy, at its ring owner.

use std::collections::HashMap;
use std::time::Duration;

use nkcluster_core::Instant;
use nkcluster_core::backoff::BackoffConfig;
use nkcluster_core::conn::ConnectionConfig;
use nkcluster_core::handshake::Role;
use nkcluster_core::meta::Meta;
use nkcluster_core::node::{HandoffTimes, NodeSettings};
use nkcluster_core::ring::{self, PARTITIONS_DEFAULT};
use nkcluster_core::url::parse_url_list;
use rand::Rng;

use super::world::{Counters, LinkModel, NodeIdx, World};

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Control nodes.
    pub controls: usize,
    /// Workers.
    pub workers: usize,
}

/// How often convergence is checked (simulated).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a scenario may take to converge (simulated).
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);
/// Steady state, simulated.
const STEADY_FOR: Duration = Duration::from_secs(30);
/// How long the control nodes stay split (simulated).
const SPLIT_FOR: Duration = Duration::from_secs(20);
/// Control nodes each worker knows (its `cluster_addr`).
const SEEDS_PER_WORKER: usize = 3;

fn connection_config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(6),
        ..ConnectionConfig::default()
    }
}

fn settings(me: &str, role: Role, cluster_addr: &str) -> Result<NodeSettings, String> {
    let conn = connection_config();
    Ok(NodeSettings {
        me: me.to_owned(),
        role,
        listen: if role == Role::Control {
            vec![format!("nkcluster://{me}:1972;transport=tcp")]
        } else {
            Vec::new()
        },
        partitions: PARTITIONS_DEFAULT,
        wall_origin_ns: 0,
        membership: Default::default(),
        handoff_retry: conn.ping_interval,
        handoff: HandoffTimes {
            adopt: conn.connect_timeout + conn.handshake.timeout,
            probe: conn.idle_timeout,
            redirect: Duration::from_secs(3),
        },
        cluster_addr: if cluster_addr.is_empty() {
            Vec::new()
        } else {
            parse_url_list(cluster_addr).map_err(|e| e.to_string())?
        },
        backoff: BackoffConfig::default(),
        data_limit: 1 << 20,
        meta: Meta::default(),
        workers: Default::default(),
        events: Default::default(),
        files_dir: "/nonexistent".into(),
        transfers: Default::default(),
    })
}

/// Where the workers are served, when the cluster has converged.
struct Placement {
    /// Workers per live control node.
    per_control: Vec<usize>,
    /// Each worker's proxy.
    proxy_of: HashMap<String, String>,
}

/// The invariant: the live control nodes' views agree, and then every live worker has
/// exactly one proxy, at its owner in the ring over them. `Err` names the first
/// violation.
fn converged(w: &World, controls: &[NodeIdx], workers: &[NodeIdx]) -> Result<Placement, String> {
    let live: Vec<NodeIdx> = controls
        .iter()
        .copied()
        .filter(|c| w.nodes[*c].alive)
        .collect();
    let mut ids: Vec<String> = live.iter().map(|c| w.nodes[*c].id.clone()).collect();
    ids.sort();
    for c in &live {
        let view = w.nodes[*c].machine.members();
        if view != ids {
            return Err(format!(
                "views disagree: {} sees {} members of {}",
                w.nodes[*c].id,
                view.len(),
                ids.len()
            ));
        }
    }
    let ring = ring::place(PARTITIONS_DEFAULT, &ids).ok_or("no ring")?;
    let mut proxies: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut per_control = Vec::new();
    for c in &live {
        let n = &w.nodes[*c];
        let mut count = 0;
        for (peer, l) in n.machine.links().iter() {
            if l.summary.role == Role::Worker {
                proxies.entry(peer).or_default().push(n.id.as_str());
                count += 1;
            }
        }
        per_control.push(count);
    }
    let mut proxy_of = HashMap::new();
    for wk in workers.iter().filter(|i| w.nodes[**i].alive) {
        let id = w.nodes[*wk].id.as_str();
        let owner = ring.owner_of(id).unwrap_or("?");
        match proxies.get(id).map(Vec::as_slice) {
            Some([one]) if *one == owner => {
                proxy_of.insert(id.to_owned(), owner.to_owned());
            }
            other => {
                return Err(format!("worker {id}: proxies {other:?}, owner {owner}"));
            }
        }
    }
    Ok(Placement {
        per_control,
        proxy_of,
    })
}

/// Workers served by another control node in `after` than in `before`.
fn moved_between(before: &Placement, after: &Placement) -> usize {
    before
        .proxy_of
        .iter()
        .filter(|(wk, p)| after.proxy_of.get(*wk) != Some(*p))
        .count()
}

/// Runs until [`converged`] holds (checked every `CHECK_EVERY`), at most
/// `CONVERGE_WITHIN`. Returns the placement and when it was reached.
fn run_to_convergence(
    w: &mut World,
    controls: &[NodeIdx],
    workers: &[NodeIdx],
) -> Result<(Placement, Duration), String> {
    let start = w.now();
    loop {
        let at = w.now() + CHECK_EVERY;
        w.run_until(at);
        match converged(w, controls, workers) {
            Ok(p) => return Ok((p, w.now().saturating_duration_since(start))),
            Err(e) if w.now().saturating_duration_since(start) >= CONVERGE_WITHIN => {
                // The offending worker's links, as the world has them.
                let links = e
                    .strip_prefix("worker ")
                    .and_then(|r| r.split(':').next())
                    .map(|id| w.describe_conns(id).join("; "))
                    .unwrap_or_default();
                return Err(format!(
                    "not converged within {CONVERGE_WITHIN:?}: {e} [links: {links}]"
                ));
            }
            Err(_) => {}
        }
    }
}

/// One scenario's figures, as a report line.
fn line(
    name: &str,
    w: &World,
    since: (Instant, std::time::Instant, u64),
    converged_after: Option<Duration>,
    placement: &Placement,
    live_controls: usize,
) -> String {
    let sim = w.now().saturating_duration_since(since.0).as_secs_f64();
    let wall = since.1.elapsed().as_secs_f64();
    let writes = w.counters.control_writes.saturating_sub(since.2) as f64;
    let per_control = writes / sim.max(1e-9) / live_controls.max(1) as f64;
    let pc = &placement.per_control;
    let (min, max) = (
        pc.iter().copied().min().unwrap_or(0),
        pc.iter().copied().max().unwrap_or(0),
    );
    let mean = pc.iter().sum::<usize>() as f64 / pc.len().max(1) as f64;
    let conv = converged_after.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    format!(
        "{name:<12} simulated {sim:>6.1} s in {wall:>6.1} s wall | converged after {conv:>7} | {per_control:>8.0} writes/s per control node | workers per control node min/mean/max {min}/{mean:.0}/{max}"
    )
}

/// The scenarios at `size`, seeded: the report's lines go to `report` as they come, each
/// scenario ending with a line `<name>: converged`; the error names the scenario and the
/// violated invariant.
pub fn run(seed: u64, size: Size, mut report: impl FnMut(&str)) -> Result<Counters, String> {
    let mut w = World::new(
        seed,
        connection_config(),
        LinkModel {
            latency: (Duration::from_micros(200), Duration::from_millis(2)),
            connect_timeout: Duration::from_secs(1),
        },
    );
    report(&format!(
        "core-only simulation, seed {seed}: {} control nodes, {} workers, {} partitions",
        size.controls, size.workers, PARTITIONS_DEFAULT
    ));
    let control_ids: Vec<String> = (0..size.controls).map(|i| format!("c{i:03}")).collect();
    let mut controls = Vec::new();
    for (i, id) in control_ids.iter().enumerate() {
        let seedlist = if i == 0 {
            String::new()
        } else {
            format!("nkcluster://{}:1972;transport=tcp", control_ids[0])
        };
        controls.push(w.add_node(settings(id, Role::Control, &seedlist)?));
    }
    let mut workers = Vec::new();
    for i in 0..size.workers {
        // Distinct seeds (as a DNS name or a deployment's list would give).
        let mut picks: Vec<usize> = Vec::new();
        while picks.len() < SEEDS_PER_WORKER.min(control_ids.len()) {
            let c = w.rng.random_range(0..control_ids.len());
            if !picks.contains(&c) {
                picks.push(c);
            }
        }
        let list: Vec<String> = picks
            .iter()
            .map(|c| format!("nkcluster://{}:1972;transport=tcp", control_ids[*c]))
            .collect();
        workers.push(w.add_node(settings(
            &format!("w{i:06}"),
            Role::Worker,
            &list.join(", "),
        )?));
    }

    // 1. Join storm: everything starts at once.
    let t = (
        w.now(),
        std::time::Instant::now(),
        w.counters.control_writes,
    );
    for &c in &controls {
        w.start(c);
    }
    for &wk in &workers {
        w.start(wk);
    }
    let (placement, after) =
        run_to_convergence(&mut w, &controls, &workers).map_err(|e| format!("join storm: {e}"))?;
    report(&line(
        "join storm",
        &w,
        t,
        Some(after),
        &placement,
        controls.len(),
    ));
    report("join storm: converged");

    // 2. Steady state: nothing happens; the invariant must still hold.
    let t = (
        w.now(),
        std::time::Instant::now(),
        w.counters.control_writes,
    );
    let until = w.now() + STEADY_FOR;
    w.run_until(until);
    let steady = converged(&w, &controls, &workers).map_err(|e| format!("steady: {e}"))?;
    report(&line("steady", &w, t, None, &steady, controls.len()));
    report("steady: converged");

    // 3. A control node crashes: its workers go to their new owners; nobody else moves.
    let t = (
        w.now(),
        std::time::Instant::now(),
        w.counters.control_writes,
    );
    let victim = controls[controls.len() / 2];
    let victim_id = w.nodes[victim].id.clone();
    w.crash(victim);
    let (after_crash, took) = run_to_convergence(&mut w, &controls, &workers)
        .map_err(|e| format!("control crash: {e}"))?;
    let moved = moved_between(&steady, &after_crash);
    let held = steady
        .proxy_of
        .values()
        .filter(|p| **p == victim_id)
        .count();
    report(&line(
        "crash",
        &w,
        t,
        Some(took),
        &after_crash,
        controls.len() - 1,
    ));
    report(&format!(
        "crash: {victim_id} crashed; workers moved {moved} (the minimum: the {held} it held)"
    ));
    report("crash: converged");

    // 4. The control nodes split 64|64 (workers with them, at random), then heal.
    let t = (
        w.now(),
        std::time::Instant::now(),
        w.counters.control_writes,
    );
    let half = controls.len() / 2;
    for (i, &c) in controls.iter().enumerate() {
        w.set_group(c, u8::from(i >= half));
    }
    for &wk in &workers {
        let side = w.rng.random_range(0..2u8);
        w.set_group(wk, side);
    }
    w.set_split(true);
    let until = w.now() + SPLIT_FOR;
    w.run_until(until);
    w.set_split(false);
    let (healed, took) = run_to_convergence(&mut w, &controls, &workers)
        .map_err(|e| format!("split and heal: {e}"))?;
    report(&line(
        "split+heal",
        &w,
        t,
        Some(took),
        &healed,
        controls.len() - 1,
    ));
    report(&format!(
        "split+heal: {half}|{} for {SPLIT_FOR:?}; converged {:.1} s after the heal; workers moved {} in all",
        controls.len() - half,
        took.as_secs_f64(),
        moved_between(&after_crash, &healed)
    ));
    report("split+heal: converged");

    // 5. Rolling restart: every control node in turn (the crashed one comes back first),
    // each once the cluster has converged again.
    let t = (
        w.now(),
        std::time::Instant::now(),
        w.counters.control_writes,
    );
    let mut slowest = Duration::ZERO;
    w.start(victim);
    let (mut last, took) = run_to_convergence(&mut w, &controls, &workers)
        .map_err(|e| format!("rolling restart, {victim_id} back: {e}"))?;
    slowest = slowest.max(took);
    for (i, &c) in controls.iter().enumerate() {
        w.crash(c);
        w.start(c);
        let (p, took) = run_to_convergence(&mut w, &controls, &workers)
            .map_err(|e| format!("rolling restart of {} ({i}): {e}", w.nodes[c].id))?;
        slowest = slowest.max(took);
        last = p;
    }
    report(&line(
        "rolling",
        &w,
        t,
        Some(slowest),
        &last,
        controls.len(),
    ));
    report(&format!(
        "rolling: {} control nodes restarted one at a time; slowest convergence {:.1} s",
        controls.len(),
        slowest.as_secs_f64()
    ));
    report("rolling: converged");
    Ok(w.counters.clone())
}
