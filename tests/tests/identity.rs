//! Identity between real processes (issue 12, point 3): a second process that reuses the
//! id of a live worker (with the worker secret) is refused `duplicate_node_id` and gives
//! up with a clear line, while the original keeps its link and its proxy; once the
//! original is killed (SIGKILL), a restarted process with that id is accepted at once.

use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{DEADLINE, Daemon, field, has, nkcluster_bin, run_with_deadline};

/// Exit code of a node whose connector spent its attempt budget.
const GAVE_UP: i32 = 3;

fn addr(port: u16) -> String {
    format!("nkcluster://127.0.0.1:{port}")
}

/// `nkcluster meta <node>` through the control node at `port`: the metadata the node
/// itself answers (a request routed to it).
fn meta_of(node: &str, port: u16) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(["meta", node, "--password", "c1"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    cmd.env("NKCLUSTER_ADDR", addr(port));
    run_with_deadline(&mut cmd, DEADLINE)
}

/// Waits (within `timeout`) until a request routed to `node` answers metadata holding
/// `tag`; returns how long that took.
fn wait_meta(node: &str, port: u16, tag: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    poll_until(
        &format!("{node} answers {tag:?}"),
        timeout,
        Duration::from_millis(100),
        || {
            let out = meta_of(node, port);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.contains(tag) {
                Ok(start.elapsed())
            } else {
                Err(format!("{out:?}"))
            }
        },
    )
}

fn worker_args<'a>(id: &'a str, cluster_addr: &'a str, meta: &'a str) -> Vec<&'a str> {
    vec![
        "--node-id",
        id,
        "--control",
        "false",
        "--listen",
        "",
        "--cluster-addr",
        cluster_addr,
        "--password",
        "w1",
        "--meta",
        meta,
    ]
}

#[test]
fn a_peer_reusing_a_live_node_id_is_refused_and_a_restarted_node_is_not() {
    let (mut control, port) =
        Daemon::control("c1", &["--password", "c1", "--worker-password", "w1"]);
    let cluster_addr = addr(port);

    let mut w1 = Daemon::node("w1", &worker_args("w1", &cluster_addr, "original"));
    control.wait_line("link up with w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
    wait_meta("w1", port, "original", DEADLINE);

    // A second process claims w1, with the worker secret: refused, and it gives up.
    let mark = control.mark();
    let mut args = worker_args("w1", &cluster_addr, "impostor");
    args.extend(["--connect-attempts", "1"]);
    let mut impostor = Daemon::node("w1-impostor", &args);
    let status = impostor.wait_exit(DEADLINE);
    let log = impostor.log_text();
    assert_eq!(status.code(), Some(GAVE_UP), "{status}; log:\n{log}");
    assert!(
        log.contains("node id w1 is already linked from another process"),
        "the impostor does not say why:\n{log}"
    );
    let refused = control.wait_line_after(mark, "the refusal of the second w1", |l| {
        l.contains("refused a link") && has(l, "peer", "w1")
    });
    assert_eq!(
        field(&refused, "code"),
        Some("duplicate_node_id"),
        "{refused}"
    );

    // The original keeps its link and its proxy: a request routed to w1 reaches it.
    assert!(w1.is_running());
    wait_meta("w1", port, "original", DEADLINE);
    let out = meta_of("w1", port);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("impostor"),
        "{out:?}"
    );

    // The original dies without a word; a new run of w1 is accepted within seconds.
    w1.kill();
    let start = Instant::now();
    let mut again = Daemon::node(
        "w1-restarted",
        &worker_args("w1", &cluster_addr, "restarted"),
    );
    let took = wait_meta("w1", port, "restarted", Duration::from_secs(10));
    eprintln!(
        "restarted w1 served {:?} after the kill ({took:?} of polling)",
        start.elapsed()
    );
    assert!(again.is_running() && control.is_running());
}
