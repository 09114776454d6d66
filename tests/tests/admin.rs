//! The admin CLI (`nkcluster nodes`, `nkcluster node-info`) against a real control daemon:
//! it speaks the protocol as an admin client, lists the nodes the control node holds
//! links to (with role, status, owner, remote address with transport and metadata), and
//! fails clearly, with a non-zero exit, on a wrong password or an unknown node.

use std::process::Command;
use std::time::Duration;

use nkcluster_tests::{Daemon, has, nkcluster_bin, run_with_deadline};

const DEADLINE: Duration = Duration::from_secs(30);

fn admin(args: &[&str], port: u16, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    cmd.env("NKCLUSTER_ADDR", format!("nkcluster://127.0.0.1:{port}"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    run_with_deadline(&mut cmd, DEADLINE)
}

#[test]
fn nodes_and_node_info_answer_from_the_control_node() {
    let (mut control, port) = Daemon::control("c1", &["--meta", "core;group=g1"]);
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut w1 = Daemon::worker("w1", &addr, &["--meta", "gpu;count=2"]);
    let mut w2 = Daemon::worker("w2", &addr, &[]);
    for w in [&mut w1, &mut w2] {
        w.wait_line("worker linked", |l| {
            l.contains("link up") && has(l, "peer", "c1")
        });
    }
    // Either order: the log waiter reads forward.
    for _ in 0..2 {
        control.wait_line("a worker linked", |l| {
            l.contains("link up") && (has(l, "peer", "w1") || has(l, "peer", "w2"))
        });
    }

    let out = admin(&["nodes", "--json"], port, &[]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows["incomplete"], serde_json::json!([]), "{rows}");
    let rows = rows["nodes"].as_array().expect("a list");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["c1", "w1", "w2"],
        "admin clients are not listed: {rows:?}"
    );
    let w1 = &rows[1];
    assert_eq!(w1["role"], "worker");
    assert_eq!(w1["status"], "ready");
    assert_eq!(w1["owner"], "c1");
    assert!(
        w1["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("tcp:127.0.0.1:")),
        "{w1}"
    );
    assert_eq!(w1["meta"], "gpu;count=2");
    assert_eq!(rows[0]["meta"], "core;group=g1");

    // The table form names every node too.
    let out = admin(&["nodes"], port, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        ["c1", "w1", "w2", "worker", "control"]
            .iter()
            .all(|w| text.contains(w)),
        "{text}"
    );

    let out = admin(&["node-info", "w2", "--json"], port, &[]);
    assert!(out.status.success(), "{out:?}");
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(row["id"], "w2");
    assert_eq!(row["owner"], "c1");

    let out = admin(&["node-info", "nope"], port, &[]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown_node"),
        "{out:?}"
    );
}

#[test]
fn a_wrong_password_fails_clearly() {
    let (mut control, port) = Daemon::control("c1", &["--password", "right"]);
    let out = admin(&["nodes"], port, &[("NKCLUSTER_PASSWORD", "wrong")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach a control node") && err.contains("auth_failed"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    control.wait_line("refusal logged", |l| {
        l.contains("connection refused") && has(l, "code", "auth_failed")
    });
    // The right password from the environment works.
    let out = admin(
        &["nodes", "--json"],
        port,
        &[("NKCLUSTER_PASSWORD", "right")],
    );
    assert!(out.status.success(), "{out:?}");
}
