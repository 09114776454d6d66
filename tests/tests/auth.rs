//! Authentication between real processes: wrong passwords and cluster names are refused
//! with typed codes on both sides, workers give up (exit 3) or retry as configured, and
//! the control keeps serving good peers.

use nkcluster_tests::{DEADLINE, Daemon, field, has};

/// Exit code of a node whose connector spent its attempt budget.
const GAVE_UP: i32 = 3;

fn addr(port: u16) -> String {
    format!("nkcluster://127.0.0.1:{port}")
}

/// Checks the control's refusal line for `worker` and returns it.
fn control_refused(control: &mut Daemon, worker: &str, code: &str) -> String {
    let line = control.wait_line_after(
        0,
        &format!("connection refused for {worker} with code={code}"),
        |l| l.contains("connection refused") && has(l, "claimed_peer", worker),
    );
    assert_eq!(field(&line, "code"), Some(code), "{line}");
    // The remote is the worker's side of the connection: loopback, some ephemeral port.
    let remote = field(&line, "remote").unwrap_or_default();
    let port = remote
        .strip_prefix("tcp:127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p != 0), "no remote address: {line}");
    line
}

/// Waits for a worker started with `--connect-attempts 1` to exit 3, having logged `code`.
fn gives_up_with(worker: &mut Daemon, code: &str) {
    let status = worker.wait_exit(DEADLINE);
    let log = worker.log_text();
    assert_eq!(status.code(), Some(GAVE_UP), "{status}; log:\n{log}");
    let line = worker.wait_line("the giving-up line", |l| l.contains("giving up"));
    assert_eq!(field(&line, "code"), Some(code), "{line}");
    assert!(
        worker
            .lines()
            .iter()
            .any(|l| l.contains("connection refused") && has(l, "code", code)),
        "the worker does not log its refused connection with code={code}:\n{log}"
    );
}

/// A worker that knows the password links to the control at `port`.
fn good_worker_links(control: &mut Daemon, port: u16) {
    let mut good = Daemon::worker("w-good", &addr(port), &["--password", "good"]);
    control.wait_line("link up with w-good", |l| {
        l.contains("link up") && has(l, "peer", "w-good")
    });
    good.wait_line("link up with c1", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });
    assert!(control.is_running());
}

#[test]
fn wrong_password_is_refused_on_both_sides_and_the_control_keeps_serving() {
    let (mut control, port) = Daemon::control("c1", &["--password", "good"]);
    let mut bad = Daemon::worker(
        "w-badpw",
        &addr(port),
        &["--password", "bad", "--connect-attempts", "1"],
    );
    gives_up_with(&mut bad, "auth_failed");
    control_refused(&mut control, "w-badpw", "auth_failed");
    good_worker_links(&mut control, port);
}

/// The control refuses another cluster's hello at once (no reject delay), so the worker
/// gives up within milliseconds of starting. This is the case that exposes a give-up
/// reported before `Node::fatal` is first polled being lost (see `give_up.rs`).
#[test]
fn wrong_cluster_name_is_refused_on_both_sides_and_the_control_keeps_serving() {
    let (mut control, port) = Daemon::control("c1", &["--password", "good"]);
    let mut other = Daemon::worker(
        "w-other",
        &addr(port),
        &[
            "--password",
            "good",
            "--cluster-name",
            "other",
            "--connect-attempts",
            "1",
        ],
    );
    gives_up_with(&mut other, "cluster_mismatch");
    control_refused(&mut control, "w-other", "cluster_mismatch");
    good_worker_links(&mut control, port);
}

#[test]
fn url_list_falls_through_to_the_entry_with_the_right_password() {
    let (mut control, port) = Daemon::control("c1", &["--password", "good"]);
    let list = format!(
        "nkcluster://127.0.0.1:{port};password=bad, nkcluster://127.0.0.1:{port};password=good"
    );
    // The list is tried in a shuffled order: a worker that happened to try the good entry
    // first is replaced until one tries the bad one first (each does so with chance 1/2).
    for attempt in 0..12 {
        let id = format!("w-list{attempt}");
        let mark = control.mark();
        // One round only: the second entry must be tried in the same round as the first.
        let mut worker = Daemon::worker(&id, &list, &["--connect-attempts", "1"]);
        worker.wait_line("link up with c1", |l| {
            l.contains("link up") && has(l, "peer", "c1")
        });
        let up = control.wait_line_after(mark, &format!("link up with {id}"), |l| {
            l.contains("link up") && has(l, "peer", &id)
        });
        let refused = control
            .lines()
            .iter()
            .skip(mark)
            .take_while(|l| **l != up)
            .find(|l| l.contains("connection refused") && has(l, "claimed_peer", &id))
            .cloned();
        if let Some(line) = refused {
            // The first entry was really tried, and refused; the second linked.
            assert_eq!(field(&line, "code"), Some("auth_failed"), "{line}");
            assert!(worker.is_running());
            return;
        }
        worker.kill();
    }
    panic!("twelve workers in a row tried the good entry first: the list is not shuffled");
}

#[test]
fn wrong_password_without_attempt_limit_keeps_retrying() {
    let (mut control, port) = Daemon::control("c1", &["--password", "good"]);
    let mut worker = Daemon::worker("w-retry", &addr(port), &["--password", "bad"]);
    // Each attempt costs the 500 ms reject delay plus a backoff of 100-200 ms, then
    // 200-400 ms: two refusals arrive within about 2 s when the machine is idle.
    let refusals = control.wait_count(0, 2, "two refusals of w-retry", |l| {
        l.contains("connection refused") && has(l, "claimed_peer", "w-retry")
    });
    for l in &refusals {
        assert_eq!(field(l, "code"), Some("auth_failed"), "{l}");
    }
    assert!(worker.is_running(), "the worker must keep retrying");
    assert!(
        !worker.lines().iter().any(|l| l.contains("giving up")),
        "{}",
        worker.log_text()
    );
    // It keeps going: a third attempt comes too (and is refused the same way).
    let third = control.wait_count(0, 3, "a third refusal of w-retry", |l| {
        l.contains("connection refused") && has(l, "claimed_peer", "w-retry")
    });
    assert_eq!(third.len(), 3);
    assert!(worker.is_running());
}
