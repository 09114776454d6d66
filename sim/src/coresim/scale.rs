//! The cluster at scale in the core-only simulator: a join storm from zero, steady state,
//! a control node crash, a split in two halves and its heal, and a rolling restart of
//! every control node, each with its figures (simulated and wall time, time to
//! convergence, writes per second per control node, workers per control node, moves
//! against the minimum) and the invariant it must reach: once the live control nodes'
//! views agree, every live worker has exactly one proxy, at its ring owner.

use std::collections::BTreeSet;
use std::time::Duration;

use nkcluster_core::Instant;
use nkcluster_core::handshake::Role;
use nkcluster_core::ring::PARTITIONS_DEFAULT;
use rand::Rng;

use super::cluster::{connection_config, settings, url_of};
use super::invariants::check_tick;
use super::invariants::one_proxy_at_owner::Placement;
use super::links::Block;
use super::oracle::Oracle;
use super::world::{Counters, LinkModel, NodeIdx, World};

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Control nodes.
    pub controls: usize,
    /// Workers.
    pub workers: usize,
}

/// The control nodes' membership tuning for a run (zero: at once, the core's default).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// A change of the live members is placed this long after it.
    pub ring_settle: Duration,
    /// Gossip goes out at most this often.
    pub gossip_every: Duration,
}

impl Default for Tuning {
    /// What a cluster of 128 control nodes wants: news and ring placements batched over
    /// 200 ms (in a join storm of 128 members, every member otherwise gossips and places
    /// the ring once per member it hears of).
    fn default() -> Self {
        Tuning {
            ring_settle: Duration::from_millis(200),
            gossip_every: Duration::from_millis(200),
        }
    }
}

/// How often convergence and the continuous invariants are checked (simulated).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a scenario may take to converge (simulated).
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);
/// Steady state, simulated.
const STEADY_FOR: Duration = Duration::from_secs(30);
/// How long the control nodes stay split (simulated).
const SPLIT_FOR: Duration = Duration::from_secs(20);
/// Control nodes each worker knows (its `cluster_addr`).
const SEEDS_PER_WORKER: usize = 3;

/// The oracle's check, with the continuous invariants first; `Err` names the first
/// violation.
fn converged(w: &mut World) -> Result<Placement, String> {
    check_tick(w);
    if let Some(v) = w.checks.first() {
        return Err(v.to_string());
    }
    Oracle::of(w).check(w).map_err(|v| v.to_string())
}

/// Workers served by another control node in `after` than in `before` (or gone).
fn moved_between(before: &Placement, after: &Placement) -> usize {
    before
        .proxy_of
        .iter()
        .filter(|(wk, p)| after.proxy_of.get(*wk) != Some(*p))
        .count()
}

/// Runs until [`converged`] holds (checked every `CHECK_EVERY`), at most
/// `CONVERGE_WITHIN`. Returns the placement and when it was reached.
fn run_to_convergence(w: &mut World) -> Result<(Placement, Duration), String> {
    let start = w.now();
    loop {
        let at = w.now() + CHECK_EVERY;
        w.run_until(at);
        if let Some(v) = w.checks.first() {
            return Err(v.to_string());
        }
        match converged(w) {
            Ok(p) => return Ok((p, w.now().saturating_duration_since(start))),
            Err(e) if w.now().saturating_duration_since(start) >= CONVERGE_WITHIN => {
                // The offending worker's links, as the world has them.
                let links = e
                    .split("worker ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
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
    since: (Instant, std::time::Instant, Counters),
    converged_after: Option<Duration>,
    placement: &Placement,
    live_controls: usize,
) -> String {
    let sim = w.now().saturating_duration_since(since.0).as_secs_f64();
    let wall = since.1.elapsed().as_secs_f64();
    let writes = w
        .counters
        .control_writes
        .saturating_sub(since.2.control_writes) as f64;
    let gossip = (
        w.counters.gossip.0 - since.2.gossip.0,
        w.counters.gossip.1 - since.2.gossip.1,
    );
    let changes = w.counters.member_changes - since.2.member_changes;
    let per_control = writes / sim.max(1e-9) / live_controls.max(1) as f64;
    let pc = &placement.per_control;
    let (min, max) = (
        pc.iter().copied().min().unwrap_or(0),
        pc.iter().copied().max().unwrap_or(0),
    );
    let mean = pc.iter().sum::<usize>() as f64 / pc.len().max(1) as f64;
    let conv = converged_after.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    format!(
        "{name:<12} simulated {sim:>6.1} s in {wall:>6.1} s wall | converged after {conv:>7} | {per_control:>8.0} writes/s per control node | workers per control node min/mean/max {min}/{mean:.0}/{max} | gossip {} messages, {} records | {changes} member changes seen",
        gossip.0, gossip.1
    )
}

/// The scenarios at `size`, seeded: the report's lines go to `report` as they come, each
/// scenario ending with a line `<name>: converged`; the error names the scenario and the
/// violated invariant.
pub fn run(
    seed: u64,
    size: Size,
    tuning: Tuning,
    mut report: impl FnMut(&str),
) -> Result<Counters, String> {
    let mut w = World::new(seed, connection_config(), LinkModel::lan());
    report(&format!(
        "core-only simulation, seed {seed}: {} control nodes, {} workers, {} partitions, ring settle {:?}, gossip every {:?}",
        size.controls, size.workers, PARTITIONS_DEFAULT, tuning.ring_settle, tuning.gossip_every
    ));
    let control_ids: Vec<String> = (0..size.controls).map(|i| format!("c{i:03}")).collect();
    let mut controls = Vec::new();
    for (i, id) in control_ids.iter().enumerate() {
        let seedlist = if i == 0 {
            String::new()
        } else {
            url_of(&control_ids[0])
        };
        let mut s = settings(id, Role::Control, &seedlist)?;
        s.membership.ring_settle = tuning.ring_settle;
        s.membership.gossip_every = tuning.gossip_every;
        controls.push(w.add_node(s));
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
        let list: Vec<String> = picks.iter().map(|c| url_of(&control_ids[*c])).collect();
        workers.push(w.add_node(settings(
            &format!("w{i:06}"),
            Role::Worker,
            &list.join(", "),
        )?));
    }

    // 1. Join storm: everything starts at once.
    let t = (w.now(), std::time::Instant::now(), w.counters.clone());
    for &c in &controls {
        w.start(c);
    }
    for &wk in &workers {
        w.start(wk);
    }
    let (placement, after) = run_to_convergence(&mut w).map_err(|e| format!("join storm: {e}"))?;
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
    let t = (w.now(), std::time::Instant::now(), w.counters.clone());
    let until = w.now() + STEADY_FOR;
    w.run_until(until);
    let steady = converged(&mut w).map_err(|e| format!("steady: {e}"))?;
    report(&line("steady", &w, t, None, &steady, controls.len()));
    report("steady: converged");

    // 3. A control node crashes: its workers go to their new owners; nobody else moves.
    let t = (w.now(), std::time::Instant::now(), w.counters.clone());
    let victim = controls[controls.len() / 2];
    let victim_id = w.nodes[victim].id.clone();
    w.crash(victim);
    let (after_crash, took) =
        run_to_convergence(&mut w).map_err(|e| format!("control crash: {e}"))?;
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
    let t = (w.now(), std::time::Instant::now(), w.counters.clone());
    let half = controls.len() / 2;
    let (mut a, mut b): (BTreeSet<NodeIdx>, BTreeSet<NodeIdx>) = (
        controls[..half].iter().copied().collect(),
        controls[half..].iter().copied().collect(),
    );
    for &wk in &workers {
        if w.rng.random_range(0..2u8) == 0 {
            a.insert(wk);
        } else {
            b.insert(wk);
        }
    }
    let blocks: Vec<u64> = Block::between(&a, &b)
        .into_iter()
        .map(|blk| w.block(blk))
        .collect();
    let until = w.now() + SPLIT_FOR;
    w.run_until(until);
    for id in blocks {
        w.unblock(id);
    }
    let (healed, took) = run_to_convergence(&mut w).map_err(|e| format!("split and heal: {e}"))?;
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
    let t = (w.now(), std::time::Instant::now(), w.counters.clone());
    let mut slowest = Duration::ZERO;
    w.start(victim);
    let (mut last, took) = run_to_convergence(&mut w)
        .map_err(|e| format!("rolling restart, {victim_id} back: {e}"))?;
    slowest = slowest.max(took);
    for (i, &c) in controls.iter().enumerate() {
        // As an operator restarts a daemon: a signal stops it in order (it leaves the
        // membership and closes its links), then it starts again. (The crash scenario
        // covers a silent failure.)
        w.stop(c);
        w.start(c);
        let (p, took) = run_to_convergence(&mut w)
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
