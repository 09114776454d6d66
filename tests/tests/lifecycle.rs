//! Node lifecycle with real processes (issue 11): a killed worker stays in `nodes` as
//! `not_connected` until `remove` forgets it at every control node; without
//! `cluster_addr` nothing is dialed and an operator joins control nodes and connects
//! listening workers by hand; a worker with no control link reports `connecting`.

use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_tests::{Daemon, nkcluster_bin, run_with_deadline};
use serde_json::Value;

fn cli(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    run_with_deadline(&mut cmd, Duration::from_secs(40))
}

fn admin(port: u16, args: &[&str]) -> std::process::Output {
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut all = args.to_vec();
    all.extend(["--addr", addr.as_str()]);
    cli(&all)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The node table `port` answers, as JSON rows.
fn rows(port: u16) -> Vec<Value> {
    let out = admin(port, &["nodes", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nodes"].as_array().cloned().unwrap_or_default()
}

fn row_of(port: u16, id: &str) -> Option<Value> {
    rows(port).into_iter().find(|r| r["id"] == id)
}

/// Waits (30 s at most) until `pred` holds for node `id`'s row at `port` (`None`: not
/// listed); returns the row.
fn wait_row(
    port: u16,
    id: &str,
    what: &str,
    pred: impl Fn(&Option<Value>) -> bool,
) -> Option<Value> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = row_of(port, id);
        if pred(&r) {
            return r;
        }
        // Each round asks the control node again (a process of its own: no busy spin).
        assert!(Instant::now() < until, "{what}: {id} at {port} is {r:?}");
    }
}

fn status_is(s: &'static str) -> impl Fn(&Option<Value>) -> bool {
    move |r| r.as_ref().is_some_and(|r| r["status"] == s)
}

#[test]
fn a_killed_worker_is_listed_not_connected_until_removed_from_every_control_node() {
    let (_c1, p1) = Daemon::control("c1", &[]);
    let seed = format!("nkcluster://127.0.0.1:{p1}");
    let (_c2, p2) = Daemon::control("c2", &["--cluster-addr", &seed]);
    wait_row(p1, "c2", "c2 joins", |r| r.is_some());
    let mut w1 = Daemon::worker("w1", &seed, &[]);
    wait_row(p2, "w1", "w1 linked", status_is("ready"));

    // Connected: refused without --force.
    let out = admin(p2, &["remove", "w1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("node_connected"), "{out:?}");
    assert!(text(&out.stderr).contains("--force"), "{out:?}");

    // kill -9: both control nodes list it `not_connected`, with when it was last seen.
    w1.kill();
    for p in [p1, p2] {
        let r = wait_row(p, "w1", "w1 lost", status_is("not_connected")).expect("row");
        assert!(r["last_seen_ms"].as_u64().is_some_and(|ms| ms > 0), "{r}");
    }
    let table = text(&admin(p1, &["nodes"]).stdout);
    assert!(
        table.contains("not_connected") && table.contains("last seen"),
        "{table}"
    );

    // Removed through c1: gone from every control node's table.
    let out = admin(p1, &["remove", "w1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["node"], "w1", "{v}");
    assert!(
        !v["forgotten_at"].as_array().expect("list").is_empty(),
        "{v}"
    );
    for p in [p1, p2] {
        assert_eq!(row_of(p, "w1"), None, "still listed at {p}");
    }
    // Nobody knows it any more.
    let out = admin(p1, &["remove", "w1"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[test]
fn without_cluster_addr_an_operator_joins_control_nodes_and_connects_a_listening_worker() {
    let (_c1, p1) = Daemon::control("c1", &[]);
    let (_c2, p2) = Daemon::control("c2", &[]);
    let mut w1 = Daemon::node(
        "w1",
        &[
            "--node-id",
            "w1",
            "--control",
            "false",
            "--listen",
            "nkcluster://127.0.0.1:0",
        ],
    );
    let pw = w1.listen_port();
    // Nothing is dialed: each control node sees only itself, and the worker, asked
    // directly, reports `connecting` (no control node links it).
    assert_eq!(rows(p1).len(), 1);
    assert_eq!(rows(p2).len(), 1);
    wait_row(pw, "w1", "w1 alone", status_is("connecting"));

    // join: c2 joins c1's control cluster.
    let c1_url = format!("nkcluster://127.0.0.1:{p1}");
    let out = admin(p2, &["join", &c1_url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["via"].as_str(), v["node"].as_str()),
        (Some("c2"), Some("c1"))
    );
    wait_row(p1, "c2", "c2 joined", |r| r.is_some());
    wait_row(p2, "c1", "c1 seen by c2", |r| r.is_some());

    // connect: c1 dials the worker; its proxy ends at its owner, one proxy.
    let w_url = format!("nkcluster://127.0.0.1:{pw}");
    let out = admin(p1, &["connect", &w_url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["node"], "w1", "{v}");
    let r = wait_row(p2, "w1", "w1 served once", |r| {
        r.as_ref().is_some_and(|r| {
            r["status"] == "ready" && r["proxies"].as_array().is_some_and(|p| p.len() == 1)
        })
    })
    .expect("row");
    assert_eq!(r["proxies"][0], r["owner"], "{r}");
    wait_row(pw, "w1", "w1 linked", status_is("ready"));

    // A worker URL given to join (or a control URL to connect) says what answered.
    let out = admin(p1, &["join", &w_url]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("wrong_node"), "{out:?}");
}
