//! One run under a random fault schedule, and the search over seeds.
//!
//! A run builds a small cluster (default 5 control nodes and 60 workers, with a spare
//! control node and a few spare workers the schedule may start), starts the workload,
//! and goes through:
//!
//! 1. **warm-up**: no faults; the cluster must converge (see [`super::oracle`]);
//! 2. **safety**: the seed's [`FaultSchedule`] is applied while every continuous
//!    invariant is checked (after each event for the request and event books, on every
//!    tick of [`TICK`] for the rest);
//! 3. **heal**: every link fault ends; restarts due later happen now; if no control node
//!    is left running, the first one restarts;
//! 4. **liveness**: no faults; the cluster must converge within [`LIVENESS_MAX`]: every
//!    live control member sees the live members, every live worker has one proxy, at its
//!    owner ([`one_proxy_at_owner`]);
//! 5. **drain**: no new requests; every request in flight must end by its deadline, and
//!    the cluster must still be converged.
//!
//! The first violated invariant ends the run. Everything random comes from the seed: a
//! run replays bit for bit (`nkcluster-sim --reproduce <seed>`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nkcluster_core::Instant;
use nkcluster_core::handshake::Role;
use rand::Rng;

use super::cluster::{connection_config, settings, url_of};
use super::faults::{Cast, FaultKind, FaultSchedule};
use super::invariants::{Violation, check_tick};
use super::links::{Block, Slow};
use super::oracle::Oracle;
use super::workload::{WorkloadConfig, WorkloadStats};
use super::world::{Counters, LinkModel, NodeIdx, World};

/// The invariants that are not path-dependent are checked this often (simulated).
pub const TICK: Duration = Duration::from_millis(100);
/// Convergence is tested this often (simulated).
const CONVERGE_EVERY: Duration = Duration::from_millis(500);
/// The warm-up must converge within this (simulated).
pub const WARMUP_MAX: Duration = Duration::from_secs(60);
/// The liveness phase must converge within this (simulated): a worker's backoff is at
/// most 10 s, a dead link is found within 6 s, a down member is removed after 30 s.
pub const LIVENESS_MAX: Duration = Duration::from_secs(120);

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct FaultSize {
    /// Control nodes started at the beginning.
    pub controls: usize,
    /// Workers started at the beginning.
    pub workers: usize,
    /// Control nodes the schedule may start later.
    pub spare_controls: usize,
    /// Workers the schedule may start later.
    pub spare_workers: usize,
    /// The safety phase (simulated).
    pub safety: Duration,
}

impl Default for FaultSize {
    fn default() -> Self {
        FaultSize {
            controls: 5,
            workers: 60,
            spare_controls: 1,
            spare_workers: 6,
            safety: Duration::from_secs(60),
        }
    }
}

impl FaultSize {
    /// The flags that give this size (for replay commands).
    pub fn flags(&self) -> String {
        format!(
            "--control {} --workers {} --safety {}",
            self.controls,
            self.workers,
            self.safety.as_secs()
        )
    }

    /// The nodes, by id.
    pub fn cast(&self) -> Cast {
        let c = |i: usize| format!("c{i:03}");
        let wk = |i: usize| format!("w{i:06}");
        Cast {
            controls: (0..self.controls).map(c).collect(),
            spare_controls: (self.controls..self.controls + self.spare_controls)
                .map(c)
                .collect(),
            workers: (0..self.workers).map(wk).collect(),
            spare_workers: (self.workers..self.workers + self.spare_workers)
                .map(wk)
                .collect(),
        }
    }
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Its fault schedule.
    pub schedule: FaultSchedule,
    /// What happened, phase by phase.
    pub log: Vec<String>,
    /// The first violated invariant, if any.
    pub violation: Option<Violation>,
    /// The world's counters at the end.
    pub counters: Counters,
    /// What the clients saw.
    pub workload: WorkloadStats,
    /// Simulated time at the end.
    pub ended_at: Duration,
}

impl Outcome {
    /// Everything a replay must reproduce, as one comparable value.
    pub fn fingerprint(&self) -> String {
        format!(
            "{} {:?} {:?} {:?} {:?} {:?}",
            self.schedule, self.log, self.violation, self.counters, self.workload, self.ended_at
        )
    }
}

/// The workload of a fault run: a request every 50 ms per control node on average,
/// deadlines of 0.5 to 5 s, service times up to 3 s, tasks of up to 20 s.
fn workload(cast: &Cast) -> WorkloadConfig {
    WorkloadConfig {
        every: Duration::from_millis(50),
        timeout: (Duration::from_millis(500), Duration::from_secs(5)),
        service: (Duration::ZERO, Duration::from_secs(3)),
        task_for: (Duration::from_millis(100), Duration::from_secs(20)),
        tasks_percent: 20,
        status_percent: 5,
        targets: cast
            .workers
            .iter()
            .chain(&cast.spare_workers)
            .cloned()
            .collect(),
        // Running tasks keep sending, linked or not (a worker kept apart by a fault keeps
        // their events and sends them on its next link).
        task_events_every: Some(Duration::from_secs(1)),
    }
}

/// Runs seed `seed` at `size`; `log` hears each line as it comes.
pub fn run(seed: u64, size: &FaultSize, mut log: impl FnMut(&str)) -> Outcome {
    let cast = size.cast();
    let schedule = FaultSchedule::draw(seed, &cast, size.safety);
    let mut lines = Vec::new();
    let mut say = |l: String| {
        log(&l);
        lines.push(l);
    };
    let mut w = World::new(seed, connection_config(), LinkModel::lan());
    say(format!(
        "seed {seed}: {} control nodes (+{} spare), {} workers (+{} spare); safety {} s, liveness within {} s",
        size.controls,
        size.spare_controls,
        size.workers,
        size.spare_workers,
        size.safety.as_secs(),
        LIVENESS_MAX.as_secs()
    ));
    let violation = build(&mut w, &cast, &schedule)
        .and_then(|()| phases(&mut w, &cast, &schedule, &mut say))
        .err();
    match &violation {
        None => say(format!("seed {seed}: ok")),
        Some(v) => say(format!("seed {seed}: FAILED: {v}")),
    }
    Outcome {
        seed,
        schedule,
        log: lines,
        violation,
        counters: w.counters.clone(),
        workload: w.workload.stats.clone(),
        ended_at: w.now().since_origin(),
    }
}

/// Adds every node of `cast` (each control node lists the others, each worker every
/// control node, in an order of its own) and starts the initial ones.
fn build(w: &mut World, cast: &Cast, schedule: &FaultSchedule) -> Result<(), Violation> {
    let bad = |e: String| Violation::new("setup", &[], Instant::ZERO, e);
    let controls: Vec<&String> = cast.controls.iter().chain(&cast.spare_controls).collect();
    let skews: BTreeMap<&str, i64> = schedule
        .skews
        .iter()
        .map(|(n, ms)| (n.as_str(), *ms))
        .collect();
    for id in cast.all() {
        let mut list: Vec<&String> = controls.iter().copied().filter(|c| *c != id).collect();
        for i in (1..list.len()).rev() {
            let j = w.rng.random_range(0..=i);
            list.swap(i, j);
        }
        let urls: Vec<String> = list.iter().map(|c| url_of(c)).collect();
        let role = if controls.contains(&id) {
            Role::Control
        } else {
            Role::Worker
        };
        let idx = w.add_node(settings(id, role, &urls.join(", ")).map_err(bad)?);
        w.nodes[idx].wall_skew_ms = skews.get(id.as_str()).copied().unwrap_or(0);
    }
    for id in cast.controls.iter().chain(&cast.workers) {
        if let Some(i) = w.node_idx(id) {
            w.start(i);
        }
    }
    w.start_workload(workload(cast));
    Ok(())
}

/// Runs until `until`, checking the continuous invariants every [`TICK`].
fn run_checked(w: &mut World, until: Instant) -> Result<(), Violation> {
    while w.now() < until {
        let next = (w.now() + TICK).min(until);
        w.run_until(next);
        check_tick(w);
        if let Some(v) = w.checks.first() {
            return Err(v.clone());
        }
    }
    Ok(())
}

/// Runs (checked) until the oracle holds, at most `within`; returns how long it took.
/// `after`: what it converges after (for the report).
fn converge(w: &mut World, within: Duration, after: &str) -> Result<Duration, Violation> {
    let start = w.now();
    loop {
        let at = w.now() + CONVERGE_EVERY;
        run_checked(w, at)?;
        let took = w.now() - start;
        match Oracle::of(w).check(w) {
            Ok(_) => return Ok(took),
            Err(mut v) if took >= within => {
                // The first node's links, as the world has them.
                let links = v
                    .nodes
                    .first()
                    .map(|n| w.describe_conns(n).join("; "))
                    .unwrap_or_default();
                v.detail = format!(
                    "not converged {:.0} s after {after}: {} [links: {links}]",
                    within.as_secs_f64(),
                    v.detail
                );
                return Err(v);
            }
            Err(_) => {}
        }
    }
}

/// The link faults in force, by the index of the fault that made them.
#[derive(Default)]
struct Active {
    blocks: BTreeMap<usize, Vec<u64>>,
    slow: BTreeMap<usize, u64>,
}

fn phases(
    w: &mut World,
    cast: &Cast,
    schedule: &FaultSchedule,
    say: &mut impl FnMut(String),
) -> Result<(), Violation> {
    let took = converge(w, WARMUP_MAX, "the start (warm-up, no faults)")?;
    say(format!(
        "warm-up: converged after {:.1} s",
        took.as_secs_f64()
    ));

    // Safety: every fault at its time; link faults end after their duration.
    let origin = w.now();
    let mut steps: Vec<(Duration, usize, bool)> = Vec::new();
    for (i, f) in schedule.faults.iter().enumerate() {
        steps.push((f.at, i, true));
        if let Some(lasts) = lasts(&f.kind) {
            steps.push((f.at + lasts, i, false));
        }
    }
    steps.sort();
    let mut active = Active::default();
    let mut late = Vec::new();
    for (at, i, begin) in steps {
        if at >= schedule.safety {
            if begin {
                late.push(i);
            }
            continue;
        }
        run_checked(w, origin + at)?;
        let kind = &schedule.faults[i].kind;
        if begin {
            apply(w, i, kind, &mut active);
        } else {
            end(w, i, &mut active);
        }
    }
    run_checked(w, origin + schedule.safety)?;
    say(format!(
        "safety: {} faults over {} s; {}; events heard {}, lost with their link {}",
        schedule.faults.len(),
        schedule.safety.as_secs(),
        w.workload.stats.summary(),
        w.checks.events.heard,
        w.checks.events.lost_with_link
    ));

    // Heal.
    for i in active.blocks.keys().copied().collect::<Vec<_>>() {
        end(w, i, &mut active);
    }
    for i in active.slow.keys().copied().collect::<Vec<_>>() {
        end(w, i, &mut active);
    }
    for i in late {
        apply(w, i, &schedule.faults[i].kind, &mut active);
    }
    if Oracle::of(w).controls.is_empty()
        && let Some(first) = cast.controls.first().and_then(|c| w.node_idx(c))
    {
        say(format!(
            "heal: no control node is left running; {} restarts",
            w.nodes[first].id
        ));
        w.start(first);
    }

    // Liveness.
    let took = converge(w, LIVENESS_MAX, "the faults ended (liveness)")?;
    let oracle = Oracle::of(w);
    say(format!(
        "liveness: converged after {:.1} s ({} control members, {} workers live)",
        took.as_secs_f64(),
        oracle.controls.len(),
        oracle.workers.len()
    ));

    // Drain: no new client requests; every request in flight now ends by its deadline
    // (past it, the tick check names it), and the cluster stays converged.
    w.pause_workload(true);
    let until = w
        .checks
        .requests
        .last_deadline()
        .unwrap_or(w.now())
        .max(w.now())
        + TICK;
    run_checked(w, until)?;
    let placement = Oracle::of(w).check(w).map_err(|mut v| {
        v.detail = format!("after the drain: {}", v.detail);
        v
    })?;
    say(format!(
        "drain: {} requests ended in time; {}; workers per control node {:?}",
        w.checks.requests.ended,
        w.workload.stats.summary(),
        placement.per_control
    ));
    Ok(())
}

/// How long a link fault lasts.
fn lasts(kind: &FaultKind) -> Option<Duration> {
    match kind {
        FaultKind::Partition { lasts, .. }
        | FaultKind::Hold { lasts, .. }
        | FaultKind::Slow { lasts, .. } => Some(*lasts),
        _ => None,
    }
}

fn set(w: &World, ids: &[String]) -> BTreeSet<NodeIdx> {
    ids.iter().filter_map(|id| w.node_idx(id)).collect()
}

/// Applies fault `i`.
fn apply(w: &mut World, i: usize, kind: &FaultKind, active: &mut Active) {
    let node = |w: &World, id: &str| w.node_idx(id);
    match kind {
        FaultKind::Partition { a, b, one_way, .. } => {
            let (a, b) = (set(w, a), set(w, b));
            let ids = if *one_way {
                vec![w.block(Block { from: a, to: b })]
            } else {
                Block::between(&a, &b)
                    .into_iter()
                    .map(|b| w.block(b))
                    .collect()
            };
            active.blocks.insert(i, ids);
        }
        FaultKind::Hold { node: id, .. } => {
            let one = set(w, std::slice::from_ref(id));
            let all: BTreeSet<NodeIdx> = (0..w.nodes.len()).collect();
            let ids = Block::between(&one, &all)
                .into_iter()
                .map(|b| w.block(b))
                .collect();
            active.blocks.insert(i, ids);
        }
        FaultKind::Slow {
            nodes,
            extra,
            loss_per_mille,
            ..
        } => {
            let id = w.slow(Slow {
                nodes: set(w, nodes),
                extra: *extra,
                loss_per_mille: *loss_per_mille,
            });
            active.slow.insert(i, id);
        }
        FaultKind::Reset { node: id } => {
            let one = set(w, std::slice::from_ref(id));
            w.reset_links(&one);
        }
        FaultKind::Crash { node: id, .. } => {
            if let Some(n) = node(w, id).filter(|n| w.nodes[*n].alive) {
                w.crash(n);
            }
        }
        FaultKind::Bounce { node: id } => {
            if let Some(n) = node(w, id).filter(|n| w.nodes[*n].alive) {
                w.kill(n);
                w.start(n);
            }
        }
        FaultKind::Stop { node: id } => {
            if let Some(n) = node(w, id) {
                w.stop(n);
            }
        }
        FaultKind::Start { node: id } => {
            if let Some(n) = node(w, id).filter(|n| !w.nodes[*n].alive) {
                w.start(n);
            }
        }
        FaultKind::Skew { node: id, ms } => {
            if let Some(n) = node(w, id) {
                w.nodes[n].wall_skew_ms = *ms;
            }
        }
    }
}

/// Ends link fault `i`.
fn end(w: &mut World, i: usize, active: &mut Active) {
    for id in active.blocks.remove(&i).unwrap_or_default() {
        w.unblock(id);
    }
    if let Some(id) = active.slow.remove(&i) {
        w.unslow(id);
    }
}

/// Runs seeds `from..from + count` at `size`, each reported with `report`, until one
/// fails: returns its outcome, or `None` when every seed passed.
pub fn search(
    from: u64,
    count: u64,
    size: &FaultSize,
    mut report: impl FnMut(&Outcome),
) -> Option<Outcome> {
    for seed in from..from.saturating_add(count) {
        let o = run(seed, size, |_| {});
        report(&o);
        if o.violation.is_some() {
            return Some(o);
        }
    }
    None
}
