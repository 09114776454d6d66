//! A worker that keeps working while it is apart from every control node, checked end to
//! end: its tasks keep sending events while a partition keeps it from everyone, its
//! owner crashes meanwhile, and after the heal the cluster hears every event it sent
//! while it had no control link, in order, at its new owner (the control node it links to
//! first may hand it over: the worker keeps its events until a control node says it is
//! its owner), nothing lost beyond its configured buffer (the oldest beyond it are told as
//! one `events_lost(count)` before the kept ones), and the new owner, holding its proxy
//! once the cluster has settled, hears `task_running` for every task it runs.
//!
//! One seed replays the run bit for bit (the report is equal).

use std::collections::BTreeSet;
use std::time::Duration;

use nkcluster_core::cluster::{EventMsg, WireEvent};
use nkcluster_core::handshake::Role;

use super::cluster::{connection_config, settings, url_of};
use super::invariants::check_tick;
use super::links::Block;
use super::oracle::Oracle;
use super::workload::CLASS_TASK;
use super::world::{LinkModel, World};

/// The scenario's knobs.
#[derive(Debug, Clone)]
pub struct OfflineConfig {
    /// Events the worker keeps while it has no control link (its `event_buffer`).
    pub buffer: usize,
    /// Tasks running on the worker.
    pub tasks: usize,
    /// Each task sends an event this often.
    pub every: Duration,
    /// How long the worker stays apart once its owner has crashed.
    pub apart_for: Duration,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            buffer: 10_000,
            tasks: 2,
            every: Duration::from_millis(200),
            apart_for: Duration::from_secs(20),
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineReport {
    /// The worker.
    pub worker: String,
    /// Its owner before, which crashed.
    pub old_owner: String,
    /// Its owner after the heal (holding its proxy).
    pub new_owner: String,
    /// The control node that heard what the worker kept (its first link after the heal).
    pub heard_by: String,
    /// Events the tasks sent while the worker had no control link.
    pub sent_apart: u64,
    /// Of them, heard after the heal.
    pub heard_apart: u64,
    /// The `events_lost` count heard (0: none was told).
    pub lost_told: u64,
    /// Tasks the new owner heard `task_running` for.
    pub running_told: usize,
}

/// How often convergence is checked, and how long it may take (simulated).
const CHECK_EVERY: Duration = Duration::from_millis(500);
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);

/// Runs until the oracle holds (the continuous invariants first): the worker's proxy.
fn settle(w: &mut World, worker: &str, phase: &str) -> Result<String, String> {
    let start = w.now();
    loop {
        let at = w.now() + CHECK_EVERY;
        w.run_until(at);
        check_tick(w);
        if let Some(v) = w.checks.first() {
            return Err(format!("{phase}: {v}"));
        }
        let placed = Oracle::of(w).check(w);
        if let Ok(p) = &placed
            && let Some(proxy) = p.proxy_of.get(worker)
        {
            return Ok(proxy.clone());
        }
        if w.now().saturating_duration_since(start) >= CONVERGE_WITHIN {
            return Err(format!(
                "{phase}: not settled within {CONVERGE_WITHIN:?}: {placed:?}"
            ));
        }
    }
}

/// One run. See the module docs.
pub fn run(seed: u64, cfg: &OfflineConfig) -> Result<OfflineReport, String> {
    let mut w = World::new(seed, connection_config(), LinkModel::lan());
    w.workload.emitted = Some(Vec::new());
    w.checks.events.log = Some(Vec::new());
    let ids = ["c1", "c2", "c3"];
    let mut controls = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let seeds = if i == 0 {
            String::new()
        } else {
            url_of(ids[0])
        };
        controls.push(w.add_node(settings(id, Role::Control, &seeds)?));
    }
    let all: Vec<String> = ids.iter().map(|id| url_of(id)).collect();
    let mut ws = settings("w1", Role::Worker, &all.join(", "))?;
    ws.outbox.max_events = cfg.buffer;
    let worker = w.add_node(ws);
    for &c in &controls {
        w.start(c);
    }
    w.start(worker);
    settle(&mut w, "w1", "start")?;

    // The tasks run and send while linked.
    let mut tasks = Vec::new();
    for _ in 0..cfg.tasks {
        tasks.push(w.start_ticking_task(worker, cfg.every)?);
    }
    let at = w.now() + Duration::from_secs(3);
    w.run_until(at);
    let old_owner = settle(&mut w, "w1", "linked")?;

    // Apart from everyone, until the worker knows it has no control link.
    let apart: BTreeSet<_> = [worker].into();
    let rest: BTreeSet<_> = controls.iter().copied().collect();
    let blocks: Vec<u64> = Block::between(&apart, &rest)
        .into_iter()
        .map(|b| w.block(b))
        .collect();
    let start = w.now();
    while w.nodes[worker].machine.links().first_control().is_some() {
        let at = w.now() + Duration::from_millis(100);
        w.run_until(at);
        if w.now().saturating_duration_since(start) >= CONVERGE_WITHIN {
            return Err("the worker kept a control link through the partition".into());
        }
    }
    // Its owner dies meanwhile; the others take over the ring.
    let victim = w
        .node_idx(&old_owner)
        .ok_or_else(|| format!("no node {old_owner}"))?;
    w.crash(victim);
    let at = w.now() + cfg.apart_for;
    w.run_until(at);
    for b in blocks {
        w.unblock(b);
    }
    let new_owner = settle(&mut w, "w1", "healed")?;
    // What the worker sent on its new links is heard within a few round trips.
    let at = w.now() + Duration::from_secs(5);
    w.run_until(at);
    check_tick(&mut w);
    if let Some(v) = w.checks.first() {
        return Err(format!("after the heal: {v}"));
    }

    let sent: Vec<EventMsg> = w
        .workload
        .emitted
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(node, _, apart)| node == "w1" && *apart)
        .map(|(_, ev, _)| ev)
        .collect();
    let heard: Vec<(String, EventMsg)> = w
        .checks
        .events
        .log
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, ev)| ev.node == "w1" && ev.class == CLASS_TASK)
        .collect();
    if sent.is_empty() {
        return Err("the tasks sent nothing while the worker was apart".into());
    }
    // Expected: the oldest beyond the buffer told as one count, then the kept ones.
    let lost = sent.len().saturating_sub(cfg.buffer);
    let mut expected: Vec<EventMsg> = Vec::new();
    if lost > 0 {
        expected.push(EventMsg {
            node: "w1".into(),
            class: CLASS_TASK.into(),
            task: None,
            event: WireEvent::EventsLost(lost as u64),
        });
    }
    expected.extend(sent[lost..].iter().cloned());
    let from = heard
        .iter()
        .position(|(_, ev)| *ev == expected[0])
        .ok_or_else(|| format!("nobody heard {:?}", expected[0]))?;
    let heard_by = heard[from].0.clone();
    if heard_by != new_owner {
        return Err(format!(
            "{heard_by} heard the events w1 kept, not its new owner {new_owner}"
        ));
    }
    let got: Vec<&EventMsg> = heard[from..]
        .iter()
        .filter(|(me, ev)| {
            *me == heard_by && matches!(ev.event, WireEvent::User(_) | WireEvent::EventsLost(_))
        })
        .map(|(_, ev)| ev)
        .take(expected.len())
        .collect();
    if got.len() != expected.len() || got.iter().zip(&expected).any(|(a, b)| *a != b) {
        let first_bad = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| *a != b)
            .unwrap_or(got.len());
        return Err(format!(
            "{heard_by} heard {} of the {} events w1 kept; the first wrong at {first_bad}: heard {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first_bad),
            expected.get(first_bad)
        ));
    }
    let running: BTreeSet<u64> = heard
        .iter()
        .filter(|(me, ev)| *me == new_owner && ev.event == WireEvent::TaskRunning)
        .filter_map(|(_, ev)| ev.task)
        .collect();
    let want: BTreeSet<u64> = tasks.iter().copied().collect();
    if running != want {
        return Err(format!(
            "{new_owner} heard task_running for {running:?}, w1 runs {want:?}"
        ));
    }
    Ok(OfflineReport {
        worker: "w1".into(),
        old_owner,
        new_owner,
        heard_by,
        sent_apart: sent.len() as u64,
        heard_apart: (sent.len() - lost) as u64,
        lost_told: lost as u64,
        running_told: running.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_apart_from_everyone_keeps_every_event_through_its_owners_death() {
        for seed in [1, 2, 3] {
            let r =
                run(seed, &OfflineConfig::default()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_ne!(r.new_owner, r.old_owner);
            assert_eq!(r.lost_told, 0, "{r:?}");
            assert_eq!(r.heard_apart, r.sent_apart, "{r:?}");
            assert!(r.sent_apart >= 100, "{r:?}");
            assert_eq!(r.running_told, 2, "{r:?}");
        }
    }

    #[test]
    fn beyond_its_buffer_the_oldest_are_dropped_and_told_as_one_count() {
        let cfg = OfflineConfig {
            buffer: 25,
            ..OfflineConfig::default()
        };
        let r = run(7, &cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.heard_apart, 25, "{r:?}");
        assert_eq!(r.lost_told, r.sent_apart - 25, "{r:?}");
        assert!(r.lost_told > 0, "{r:?}");
    }

    #[test]
    fn a_seed_replays_the_same_run() {
        let cfg = OfflineConfig {
            buffer: 40,
            ..OfflineConfig::default()
        };
        assert_eq!(run(11, &cfg), run(11, &cfg));
    }
}
