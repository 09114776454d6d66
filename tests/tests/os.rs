//! OS processes (the `nkcluster.os` class) on a real worker daemon, driven by the real
//! CLI: `exec` prints the command's output and exits with its code; `proc start`,
//! `list`, `logs` and `stop` (SIGTERM, then SIGKILL after the grace for a process that
//! ignores SIGTERM); restarts on failure counted; node status `stopping` stops them all.
//! Events are read from a live `nkcluster events --follow --json`, log lines from the
//! daemons: every wait is on a condition with a deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_tests::pair::CliPair;
use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{Daemon, has, run_with_deadline};

const DEADLINE: Duration = Duration::from_secs(30);

/// A control node c1 and a worker w1 linked to it.
struct Cluster(CliPair);

impl std::ops::Deref for Cluster {
    type Target = CliPair;
    fn deref(&self) -> &CliPair {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut CliPair {
        &mut self.0
    }
}

fn cluster() -> Cluster {
    Cluster(CliPair::start("w1"))
}

impl Cluster {
    /// `proc start w1 ARGS`: (task, pid).
    fn start(&self, args: &[&str]) -> (u64, u32) {
        let mut all = vec!["proc", "start", "w1", "--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let task = v["task"].as_u64().expect("task");
        let pid = v["pid"].as_u64().expect("pid");
        (task, u32::try_from(pid).expect("pid"))
    }

    /// `exec w1 OPTS -- sh -c SCRIPT`.
    fn exec_sh(&self, opts: &[&str], script: &str) -> std::process::Output {
        let mut all = vec!["exec", "w1"];
        all.extend_from_slice(opts);
        all.extend(["--", "sh", "-c", script]);
        self.cli(&all)
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["proc", "list", "w1", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v.as_array().expect("a list").clone()
    }
}

/// SIGKILLs a process group at the end of a test whatever happened (a failing test must
/// not leave `sleep 600` behind).
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: it has ended, it waits to be reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A task_stopped event of task `task` from the follower: its reason.
fn task_stopped(events: &mut Daemon, task: u64) -> String {
    // Any order: each task's event is looked for from the start.
    let line = events.wait_line_after(0, "task_stopped", |l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["event"] == "task_stopped" && v["task"] == task && v["class"] == "nkcluster.os"
        })
    });
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    v["detail"].as_str().expect("a reason").to_owned()
}

#[test]
fn exec_prints_the_output_and_exits_with_the_commands_code() {
    let mut c = cluster();
    let out = c.cli(&["exec", "w1", "--", "uname", "-a"]);
    assert!(out.status.success(), "{out:?}");
    let local = run_with_deadline(Command::new("uname").arg("-a"), DEADLINE);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Linux "));

    let out = c.exec_sh(&[], "echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Environment and working directory.
    let out = c.exec_sh(
        &["--env", "GREETING=hi there", "--cwd", "/tmp"],
        "echo \"$GREETING\"; pwd",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n/tmp\n");

    // The node's own settings (NKCLUSTER_LOG here; its passwords alike) stay the node's.
    let out = c.exec_sh(&[], "echo \"${NKCLUSTER_LOG:-unset}\"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unset\n", "{out:?}");

    // A signal: 128 + its number, like a shell.
    let out = c.exec_sh(&[], "kill -KILL $$");
    assert_eq!(out.status.code(), Some(137), "{out:?}");

    // A timeout kills it: exit 124, exec_timeout.
    let started = Instant::now();
    let out = c.cli(&["exec", "w1", "--timeout-ms", "500", "--", "sleep", "600"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exec_timeout"),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // A program that does not exist: spawn_failed.
    let out = c.cli(&["exec", "w1", "--", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spawn_failed"),
        "{out:?}"
    );

    // Each action is logged with who asked: the admin client at the control node, the
    // control node at the worker.
    c.control.wait_line("the admin's request logged", |l| {
        l.contains("nkcluster.os request")
            && has(l, "role", "admin")
            && l.contains(r#"exec ["uname", "-a"] (routed to w1)"#)
    });
    c.worker.wait_line("the request logged at the worker", |l| {
        l.contains("nkcluster.os request")
            && has(l, "peer", "c1")
            && has(l, "role", "control")
            && l.contains(r#"exec ["uname", "-a"]"#)
    });
}

#[test]
fn a_started_process_is_listed_and_stopped_within_the_grace() {
    let c = cluster();
    let mut events = c.follow_events();
    let (task, pid) = c.start(&["--", "sleep", "600"]);
    let _reap = Reap(pid);
    assert!(alive(pid), "sleep runs as pid {pid}");
    let list = c.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["task"], task);
    assert_eq!(list[0]["pid"], pid);
    assert_eq!(list[0]["argv"], serde_json::json!(["sleep", "600"]));
    assert_eq!(list[0]["state"], "running");
    let text = c.cli(&["proc", "list", "w1"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("sleep 600"),
        "{text:?}"
    );

    let started = Instant::now();
    let out = c.cli(&["proc", "stop", "w1", &task.to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("task {task} stopped: signal 15 (SIGTERM)")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!alive(pid));
    assert_eq!(
        task_stopped(&mut events, task),
        "stopped: signal 15 (SIGTERM)"
    );
    assert!(c.list().is_empty());

    // An unknown task (the node's task table answers before the class).
    let out = c.cli(&["proc", "stop", "w1", "9999"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("task_not_found"),
        "{out:?}"
    );
}

#[test]
fn a_process_that_ignores_sigterm_is_killed_after_the_grace() {
    let c = cluster();
    let mut events = c.follow_events();
    // The shell ignores SIGTERM and so does sleep (an ignored signal stays ignored
    // across exec).
    let (task, pid) = c.start(&[
        "--grace-ms",
        "1000",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 600",
    ]);
    let _reap = Reap(pid);
    let started = Instant::now();
    let out = c.cli(&["proc", "stop", "w1", &task.to_string()]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("task {task} stopped: signal 9 (SIGKILL)")
    );
    assert!(
        took >= Duration::from_secs(1),
        "killed before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        task_stopped(&mut events, task),
        "stopped: signal 9 (SIGKILL)"
    );
    // Nothing of its group runs any more (the sleep child included; a zombie waiting
    // for its new parent to reap it has ended).
    let group = run_with_deadline(
        Command::new("pgrep").args(["-g", &pid.to_string()]),
        DEADLINE,
    );
    let left: Vec<u32> = String::from_utf8_lossy(&group.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| alive(p))
        .collect();
    assert!(left.is_empty(), "{left:?} still run");
}

#[test]
fn restarts_on_failure_are_counted_and_then_it_gives_up() {
    let mut c = cluster();
    let mut events = c.follow_events();
    let (task, _) = c.start(&[
        "--restart",
        "on-failure",
        "--max-restarts",
        "3",
        "--backoff-ms",
        "50",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    assert_eq!(
        task_stopped(&mut events, task),
        "exit 1 (gave up after 3 restarts)"
    );
    // The class's own events, in order before task_stopped: 4 runs, 3 restarts.
    let count = |events: &mut Daemon, what: &str| {
        events
            .lines()
            .iter()
            .filter(|l| l.contains(&format!("\"task\":{task}")) && l.contains(what))
            .count()
    };
    assert_eq!(count(&mut events, "\"spawned\""), 4);
    assert_eq!(count(&mut events, "\"exited\":\"exit 1\""), 4);
    assert_eq!(count(&mut events, "\"restarting\""), 3);
    for attempt in 1..=3 {
        c.worker.wait_line("a restart", |l| {
            l.contains("process restarted") && has(l, "attempt", &attempt.to_string())
        });
    }
    let restarts = c
        .worker
        .lines()
        .iter()
        .filter(|l| l.contains("process restarted"))
        .count();
    assert_eq!(restarts, 3);
    // The last run's exit is logged after the third restart: wait for all four, then
    // check there is no fifth.
    let exited = |l: &str| l.contains("process exited") && l.contains("exit 1");
    c.worker.wait_count(0, 4, "4 process exits", exited);
    let exits = c.worker.lines().iter().filter(|l| exited(l)).count();
    assert_eq!(exits, 4, "the first run and 3 restarts");
}

#[test]
fn logs_give_the_tail_of_the_output() {
    let c = cluster();
    let mut events = c.follow_events();
    // The output arrives while the command runs: ask until it is all there.
    let tail_until = |task: u64, lines: &str, want: &str| {
        poll_until(
            &format!("the last {lines} lines of task {task} are {want:?}"),
            DEADLINE,
            Duration::ZERO,
            || {
                let out = c.cli(&["proc", "logs", "w1", &task.to_string(), "--lines", lines]);
                assert!(out.status.success(), "{out:?}");
                let last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if last == want { Ok(()) } else { Err(last) }
            },
        );
    };
    let (task, pid) = c.start(&["--stream", "--", "sh", "-c", "seq 1 1000; exec sleep 600"]);
    let _reap = Reap(pid);
    tail_until(task, "5", "996\n997\n998\n999\n1000");
    let out = c.cli(&[
        "proc",
        "logs",
        "w1",
        &task.to_string(),
        "--lines",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v, serde_json::json!(["999", "1000"]));
    // Standard error is kept too (the two streams are read apart, so lines of both are
    // in the order the node read them).
    let (err_task, err_pid) = c.start(&[
        "--stream",
        "--",
        "sh",
        "-c",
        "echo oops >&2; exec sleep 600",
    ]);
    let _reap_err = Reap(err_pid);
    tail_until(err_task, "5", "oops");
    // --stream: each line is an event too.
    events.wait_line_after(0, "line 1000 as an event", |l| {
        l.contains("{\"stdout\":\"1000\"}")
    });
    events.wait_line_after(0, "the stderr line as an event", |l| {
        l.contains("{\"stderr\":\"oops\"}")
    });
    for t in [task, err_task] {
        let out = c.cli(&["proc", "stop", "w1", &t.to_string()]);
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn node_status_stopping_stops_every_process() {
    let c = cluster();
    let mut events = c.follow_events();
    let (t1, p1) = c.start(&["--", "sleep", "600"]);
    let _r1 = Reap(p1);
    let (t2, p2) = c.start(&["--", "sh", "-c", "sleep 600"]);
    let _r2 = Reap(p2);
    assert_eq!(c.list().len(), 2);
    let out = c.cli(&["set-status", "w1", "stopping"]);
    assert!(out.status.success(), "{out:?}");
    let mut reasons = [task_stopped(&mut events, t1), task_stopped(&mut events, t2)];
    reasons.sort();
    assert_eq!(reasons[0], "stopped: signal 15 (SIGTERM)");
    assert_eq!(reasons[1], "stopped: signal 15 (SIGTERM)");
    assert!(!alive(p1) && !alive(p2));
    assert!(c.list().is_empty());
    events.wait_line("the node stopped", |l| {
        l.contains("\"node_status\"") && l.contains("\"stopped\"")
    });
}

#[test]
fn limits_apply_to_the_command() {
    let c = cluster();
    // The command sees its limits (sh's ulimit reports KiB).
    let out = c.exec_sh(
        &["--cpu-secs", "7", "--mem-bytes", "1048576000"],
        "ulimit -t; ulimit -v",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n1024000\n");
    // A busy loop past its CPU time is killed (soft and hard limit alike: SIGKILL).
    let out = c.exec_sh(&["--cpu-secs", "1"], "while :; do :; done");
    assert_eq!(out.status.code(), Some(137), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_may_not_start_processes() {
    use nkcluster_core::cluster::JobCall;
    use nkcluster_core::os::{Command as OsCmd, ExecSpec, OsRequest, ProcSpec};

    let (mut control, port) = Daemon::control("c1", &[]);
    let dir = nkcluster_tests::TempDir::new("os-refused");
    let marker = dir.path().join("ran");
    // A worker of the library (same password and key derivation as the daemon).
    let worker = nkcluster_tests::inproc::library_worker_of_daemon(port).await;
    let touch = OsCmd::new(["touch", &marker.display().to_string()]);
    let exec = OsRequest::Exec(ExecSpec {
        command: touch.clone(),
        timeout_ms: None,
    });
    let start = ProcSpec {
        command: touch,
        ..Default::default()
    };
    let attacks = [
        JobCall::Request {
            class: "nkcluster.os".into(),
            body: postcard::to_allocvec(&exec).expect("enc").into(),
        },
        JobCall::Task {
            class: "nkcluster.os".into(),
            body: postcard::to_allocvec(&start).expect("enc").into(),
            id: None,
        },
    ];
    nkcluster_tests::inproc::assert_forbidden_to_worker(&worker, &mut control, attacks.into())
        .await;
    assert!(!marker.exists(), "nothing ran");
    worker.shutdown_and_wait(Duration::from_secs(2)).await;
}
