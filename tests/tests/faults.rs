//! Multi-host faults with the real Docker engine: 3 control nodes and 6 workers, each a
//! container of the image built from this test build (`tests/src/fleet.rs`), on two
//! private networks (`front` for every node, `mesh` for the control nodes), a ping every
//! 300 ms and a detection time (idle timeout) of 1.5 s. An admin client in the test
//! process sends requests to the workers without pause through the whole run
//! (`tests/src/load.rs`). Then, one after the other, each fault is made and checked:
//!
//! 1. `docker network disconnect` of the control node holding the most workers from both
//!    networks: its workers are re-homed at the others within 2x the detection time;
//!    once reconnected, exactly one proxy per worker again;
//! 2. a 2|1 split of the control nodes (one disconnected from `mesh` only): both sides
//!    notice, each worker stays held exactly once, and the cluster merges again;
//! 3. `docker restart` of a control node (SIGTERM: it leaves and hands its workers over);
//! 4. `docker kill` (SIGKILL) of a worker, started again;
//! 5. `docker kill` of a control node, started again.
//!
//! For every lost control node (1, 3, 5) its workers must be re-homed within twice the
//! detection time, counted from the fault.
//!
//! After each: no request hung (each ended with a reply or a typed error, counted), one
//! proxy per live worker, every control node meshed with every other, and every task
//! still listed (the killed worker's task died with it: a new one is started). A table of
//! figures is printed (detection, re-homing, healing times). Skips, saying why, only when
//! no engine answers. Everything the test made is removed, pass or fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nkcluster_tests::engine;
use nkcluster_tests::fleet::{Fleet, Timing};
use nkcluster_tests::load::{Admin, Load, Tally, View};
use nkcluster_tests::poll::poll_until;

const TIMING: Timing = Timing {
    ping_ms: 300,
    idle_ms: 1500,
};

/// Converging after a fault (rejoin, re-placement, hand-offs) never takes this long when
/// it works.
const CONVERGE: Duration = Duration::from_secs(30);

/// How often the test looks at the cluster while it measures.
const POLL: Duration = Duration::from_millis(50);

fn detection() -> Duration {
    Duration::from_millis(TIMING.idle_ms)
}

/// The workers of a lost control node are re-homed within twice the detection time
/// (counted from the fault: detection included).
fn rehomed_in_time(victim: &str, rehomed: Duration) {
    assert!(
        rehomed <= detection() * 2,
        "{victim}'s workers re-homed after {rehomed:?}, over twice the detection time ({:?})",
        detection()
    );
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| d.as_millis().to_string())
}

/// One row of the figures table.
struct Figure {
    fault: String,
    detected: Option<Duration>,
    rehomed: Option<Duration>,
    healed: Option<Duration>,
    requests: Tally,
}

struct Run {
    rt: tokio::runtime::Runtime,
    fleet: Fleet,
    admin: Admin,
    load: Option<Load>,
    /// Worker: the task it must list.
    tasks: BTreeMap<String, u64>,
    figures: Vec<Figure>,
    mark: Tally,
}

impl Run {
    fn view(&self, controls: &[String]) -> View {
        self.rt.block_on(self.admin.holders(controls))
    }

    /// Polls the cluster (the control nodes in `ask`) until `done` holds; the time from
    /// `t0` when it did. Panics with `what` and the last view after `within`.
    fn wait(
        &self,
        t0: Instant,
        within: Duration,
        ask: &[String],
        what: &str,
        done: impl Fn(&View) -> bool,
    ) -> Duration {
        poll_until(what, within, POLL, || {
            let v = self.view(ask);
            if done(&v) {
                Ok(t0.elapsed())
            } else {
                Err(format!("the cluster as the control nodes report it: {v:?}"))
            }
        })
    }

    /// Control nodes other than `victim`.
    fn others(&self, victim: &str) -> Vec<String> {
        self.fleet
            .controls
            .iter()
            .filter(|c| *c != victim)
            .cloned()
            .collect()
    }

    /// The control node holding the most workers.
    fn busiest_control(&self) -> String {
        let v = self.view(&self.fleet.controls);
        let mut best = self.fleet.controls[0].clone();
        for c in &self.fleet.controls {
            if v.held_by(c).len() > v.held_by(&best).len() {
                best = c.clone();
            }
        }
        best
    }

    fn point_admin_at(&self, control: &str) {
        self.admin.set_url(control, self.fleet.front_url(control));
    }

    /// Every control node answers, is meshed with every other, and every worker has
    /// exactly one proxy.
    fn converged(&self, v: &View) -> bool {
        let controls = &self.fleet.controls;
        v.answered.len() == controls.len()
            && controls
                .iter()
                .all(|c| controls.iter().all(|m| m == c || v.meshed(c, m)))
            && v.one_proxy_each(&self.fleet.workers, &[])
    }

    /// Waits for convergence (time from `t0`), then checks the invariants.
    fn converge_and_check(&mut self, t0: Instant, fault: &str) -> Duration {
        let healed = self.wait(t0, CONVERGE, &self.fleet.controls.clone(), fault, |v| {
            self.converged(v)
        });
        self.check(fault);
        healed
    }

    /// The invariants: no request hung or got another node's answer, requests succeed
    /// again, and every worker lists its task.
    fn check(&mut self, fault: &str) {
        let load = self.load.as_ref().expect("the load runs");
        let t = load.tally();
        assert_eq!(t.hung, 0, "{fault}: requests hung: {t:?}");
        assert_eq!(t.wrong, 0, "{fault}: replies from the wrong node: {t:?}");
        // Requests succeed again: one good reply per worker after convergence.
        let before = t.ok;
        let want = before + self.fleet.workers.len() as u64;
        poll_until(
            &format!("{fault}: requests succeed again"),
            CONVERGE,
            POLL,
            || {
                let t = load.tally();
                if t.ok >= want {
                    Ok(())
                } else {
                    Err(format!("{t:?}"))
                }
            },
        );
        for (w, task) in &self.tasks {
            let listed = self.rt.block_on(self.admin.tasks(w));
            assert!(
                listed.as_ref().is_ok_and(|l| l.contains(task)),
                "{fault}: {w} does not list its task {task}: {listed:?}"
            );
        }
    }

    fn record(
        &mut self,
        fault: &str,
        detected: Option<Duration>,
        rehomed: Option<Duration>,
        healed: Option<Duration>,
    ) {
        let now = self.load.as_ref().expect("the load runs").tally();
        let requests = now.since(&self.mark);
        eprintln!(
            "{fault}: detected {} ms, re-homed {} ms, converged again {} ms; requests {} ok, {:?}",
            ms(detected),
            ms(rehomed),
            ms(healed),
            requests.ok,
            requests.errors
        );
        self.mark = now;
        self.figures.push(Figure {
            fault: fault.into(),
            detected,
            rehomed,
            healed,
            requests,
        });
    }

    /// Runs `fault` on a thread of its own (a `docker restart` blocks until the new run
    /// started) while measuring on this one: `detected` when no other control node is
    /// meshed with `victim`, `rehomed` when its workers are each held once by another.
    fn measure_control_loss(
        &self,
        victim: &str,
        fault: impl FnOnce() + Send,
    ) -> (Duration, Duration) {
        let others = self.others(victim);
        let orphans = self.view(&self.fleet.controls).held_by(victim);
        std::thread::scope(|s| {
            let t0 = Instant::now();
            let doing = s.spawn(fault);
            let detected = self.wait(t0, CONVERGE, &others, "detection", |v| {
                others
                    .iter()
                    .all(|c| v.answered.contains(c) && !v.meshed(c, victim))
            });
            let rehomed = self.wait(t0, CONVERGE, &others, "re-homing", |v| {
                v.one_proxy_each(&orphans, &[victim])
            });
            doing.join().expect("the fault command");
            (detected, rehomed)
        })
    }
}

#[test]
fn faults_in_docker_leave_one_proxy_per_worker_and_no_request_hanging() {
    if let Err(why) = engine::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let fleet = Fleet::start(3, 6, TIMING);
    let admin = rt.block_on(Admin::start(TIMING));
    let mut run = Run {
        rt,
        fleet,
        admin,
        load: None,
        tasks: BTreeMap::new(),
        figures: Vec::new(),
        mark: Tally::default(),
    };
    for c in run.fleet.controls.clone() {
        run.point_admin_at(&c);
    }
    let t0 = Instant::now();
    let controls = run.fleet.controls.clone();
    let up = run.wait(
        t0,
        Duration::from_secs(60),
        &controls,
        "the fleet converging",
        |v| run.converged(v),
    );
    eprintln!(
        "fleet up: 3 control nodes, 6 workers converged {} ms after start ({:.1} s with the image build)",
        up.as_millis(),
        started.elapsed().as_secs_f64()
    );
    for w in run.fleet.workers.clone() {
        let task = run.rt.block_on(run.admin.start_task(&w));
        let task = task.unwrap_or_else(|e| panic!("start a task on {w}: {e}"));
        run.tasks.insert(w, task);
    }
    let load = {
        let _in_rt = run.rt.enter();
        Load::start(
            &run.admin.node,
            &run.fleet.workers,
            4,
            Duration::from_millis(10),
        )
    };
    run.load = Some(load);
    run.check("before any fault");
    run.mark = run.load.as_ref().expect("the load runs").tally();

    // 1. A control node's cable pulled: both networks.
    let victim = run.busiest_control();
    let (detected, rehomed) = run.measure_control_loss(&victim, || run.fleet.cut(&victim));
    run.admin.set_url(&victim, None);
    rehomed_in_time(&victim, rehomed);
    let t1 = Instant::now();
    run.fleet.heal(&victim);
    run.point_admin_at(&victim);
    let healed = run.converge_and_check(t1, "network disconnect");
    run.record(
        &format!("network disconnect {victim}"),
        Some(detected),
        Some(rehomed),
        Some(healed),
    );

    // 2. A 2|1 split of the control nodes: one off the mesh, still on the workers' network.
    let victim = run.fleet.controls[2].clone();
    let others = run.others(&victim);
    let t0 = Instant::now();
    run.fleet.split(&victim);
    let detected = run.wait(
        t0,
        CONVERGE,
        &controls,
        "the split seen on both sides",
        |v| {
            v.answered.len() == 3
                && others
                    .iter()
                    .all(|c| !v.meshed(c, &victim) && !v.meshed(&victim, c))
        },
    );
    // Both sides own the whole ring now; each worker stays held exactly once.
    let settled = run.wait(
        t0,
        CONVERGE,
        &controls,
        "one proxy per worker during the split",
        |v| v.answered.len() == 3 && v.one_proxy_each(&run.fleet.workers, &[]),
    );
    let t1 = Instant::now();
    run.fleet.unsplit(&victim);
    let healed = run.converge_and_check(t1, "split");
    run.record(
        &format!("split {}|{victim}", others.join("+")),
        Some(detected),
        Some(settled),
        Some(healed),
    );

    // 3. docker restart of a control node (SIGTERM, then a new run).
    let victim = run.busiest_control();
    let (detected, rehomed) = run.measure_control_loss(&victim, || run.fleet.restart(&victim));
    rehomed_in_time(&victim, rehomed);
    let t1 = Instant::now();
    run.point_admin_at(&victim);
    let healed = run.converge_and_check(t1, "restart");
    run.record(
        &format!("docker restart {victim}"),
        Some(detected),
        Some(rehomed),
        Some(healed),
    );

    // 4. docker kill of a worker, started again (its task died with it: a new one).
    let victim = run.fleet.workers[0].clone();
    let t0 = Instant::now();
    run.fleet.kill(&victim);
    let detected = run.wait(t0, CONVERGE, &controls, "the killed worker noticed", |v| {
        !v.holders.contains_key(&victim)
    });
    run.fleet.start_again(&victim);
    let back = run.wait(t0, CONVERGE, &controls, "the worker back", |v| {
        run.converged(v)
    });
    // The admin client's view may not have the worker back yet: a request refused
    // before it was sent (nothing started) is asked again; any other error fails.
    let task = poll_until(
        &format!("start a task on {victim} again"),
        CONVERGE,
        POLL,
        || match run.rt.block_on(run.admin.start_task(&victim)) {
            Ok(task) => Ok(task),
            Err(e) if matches!(e.code(), "unknown_node" | "not_connected" | "proxy_moved") => {
                Err(e.to_string())
            }
            Err(e) => panic!("start a task on {victim} again: {e}"),
        },
    );
    run.tasks.insert(victim.clone(), task);
    let healed = back + run.converge_and_check(Instant::now(), "worker kill");
    run.record(
        &format!("docker kill {victim}"),
        Some(detected),
        None,
        Some(healed),
    );

    // 5. docker kill of a control node, started again.
    let victim = run.busiest_control();
    let (detected, rehomed) = run.measure_control_loss(&victim, || run.fleet.kill(&victim));
    rehomed_in_time(&victim, rehomed);
    let t1 = Instant::now();
    run.fleet.start_again(&victim);
    run.point_admin_at(&victim);
    let healed = run.converge_and_check(t1, "control kill");
    run.record(
        &format!("docker kill {victim}"),
        Some(detected),
        Some(rehomed),
        Some(healed),
    );

    let load = run.load.take().expect("the load runs");
    let total = run.rt.block_on(load.stop());
    assert_eq!(total.hung, 0, "requests hung: {total:?}");
    assert_eq!(total.in_flight, 0, "requests never ended: {total:?}");
    assert_eq!(
        total.sent,
        total.ok + total.error_count(),
        "every request ended with a reply or a typed error: {total:?}"
    );

    eprintln!(
        "\nfault figures (ping {} ms, detection {} ms; times from the fault, converged from the repair):",
        TIMING.ping_ms, TIMING.idle_ms
    );
    eprintln!(
        "{:<28} {:>9} {:>10} {:>10} {:>8} {:>7}  errors",
        "fault", "detected", "re-homed", "converged", "req ok", "req err"
    );
    for f in &run.figures {
        eprintln!(
            "{:<28} {:>9} {:>10} {:>10} {:>8} {:>7}  {:?}",
            f.fault,
            ms(f.detected),
            ms(f.rehomed),
            ms(f.healed),
            f.requests.ok,
            f.requests.error_count(),
            f.requests.errors
        );
    }
    eprintln!(
        "requests: {} sent, {} replies, {} typed errors, 0 hung; {:.1} s in all",
        total.sent,
        total.ok,
        total.error_count(),
        started.elapsed().as_secs_f64()
    );
}
