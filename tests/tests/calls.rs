//! The admin CLI's job commands on a real multi-process cluster: `call` of named
//! functions on any node (routed by whichever control node the admin client reaches),
//! `set-status` seen in `node-info`, `send-file`, `meta`, `tasks`, and the typed errors
//! around them.

use std::process::Command;
use std::time::Duration;

use nkcluster_tests::{Daemon, has, nkcluster_bin, run_with_deadline};

fn admin(port: u16, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args)
        .args(["--addr", &format!("nkcluster://127.0.0.1:{port}")]);
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

fn call(port: u16, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.arg("call")
        .args(args)
        .args(["--addr", &format!("nkcluster://127.0.0.1:{port}")]);
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

#[test]
fn any_control_node_routes_a_call_to_any_node() {
    let (mut c1, p1) = Daemon::control("c1", &[]);
    let first = format!("nkcluster://127.0.0.1:{p1}");
    let (mut c2, p2) = Daemon::control("c2", &["--cluster-addr", &first]);
    let (mut c3, p3) = Daemon::control("c3", &["--cluster-addr", &first]);
    // Files land below the system temp dir (where the test's TempDir is).
    let tmp = std::env::temp_dir().display().to_string();
    let mut workers: Vec<Daemon> = ["w1", "w2"]
        .iter()
        .map(|w| Daemon::worker(w, &first, &["--files-dir", &tmp]))
        .collect();
    for c in [&mut c1, &mut c2, &mut c3] {
        for m in ["c1", "c2", "c3"] {
            if m != c.name() {
                c.wait_line_after(0, "mesh member up", |l| {
                    l.contains("membership") && has(l, "member", m) && has(l, "change", "up")
                });
            }
        }
    }
    // Each worker linked to its ring owner.
    let members: Vec<String> = ["c1", "c2", "c3"].map(String::from).to_vec();
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members)
        .expect("ring");
    for w in &mut workers {
        let owner = ring.owner_of(w.name()).expect("owner").to_owned();
        w.wait_line_after(0, "linked to its owner", |l| {
            l.contains("link up") && has(l, "peer", &owner)
        });
    }
    for port in [p1, p2, p3] {
        for node in ["c1", "c2", "c3", "w1", "w2"] {
            let out = call(port, &[node, "node"]);
            assert!(out.status.success(), "call {node} node via {port}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);
        }
    }
    let out = call(p2, &["w1", "echo", "a", "b", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["result"], "a b");

    // An event follower (through c1) sees status changes of workers served anywhere.
    let addr1 = format!("nkcluster://127.0.0.1:{p1}");
    let mut follower = Daemon::spawn(
        "events",
        &["events", "--follow", "--json", "--addr", &addr1],
        &[],
    );
    follower.wait_line("the follower is subscribed", |l| {
        l.contains("following the events")
    });
    // Status: set through any control node, seen in node-info, calls still answered.
    let out = admin(p3, &["set-status", "w1", "standby"]);
    assert!(out.status.success(), "{out:?}");
    let out = admin(p1, &["node-info", "w1", "--json"]);
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(row["status"], "standby", "{row}");
    let out = call(p2, &["w1", "node"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "w1");
    follower.wait_line("w1's standby event", |l| {
        l.contains("\"node\":\"w1\"") && l.contains("node_status") && l.contains("standby")
    });
    let out = admin(p1, &["set-status", "w1", "sleepy"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A 3 MiB file arrives identical.
    let dir = nkcluster_tests::TempDir::new("calls-file");
    let mut rng = nkcluster_tests::XorShift::new(3);
    let data: Vec<u8> = (0..3 * 1024 * 1024).map(|_| rng.next_u64() as u8).collect();
    let local = dir.path().join("in");
    std::fs::write(&local, &data).expect("write");
    let remote = dir.path().join("out");
    let (l, r) = (local.display().to_string(), remote.display().to_string());
    let out = admin(p2, &["send-file", "w2", &l, &r, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["bytes"], 3 * 1024 * 1024);
    assert_eq!(std::fs::read(&remote).expect("arrived"), data);
    // Metadata and tasks.
    let out = admin(p1, &["meta", "w2", "update", "core;group=g1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "core;group=g1");
    let out = admin(p1, &["meta", "w2", "remove", "core", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["meta"], "");
    let out = admin(p3, &["tasks", "w2", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // Typed errors, non-zero exits.
    let out = call(p1, &["nobody", "node"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_node"));
    let out = call(p1, &["w2", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_function"));
}

/// A function that panics is reported with its message and the node keeps answering.
#[tokio::test]
async fn a_panicking_function_is_reported_and_the_node_keeps_running() {
    use bytes::Bytes;
    use nkcluster::node::{CLASS_CALL, CallRequest, Handlers, Node};
    use nkcluster_core::RequestError;
    use nkcluster_tests::inproc::config;

    let mut h = Handlers::builtin("n1");
    h.insert_function("boom", |_| panic!("kaboom"));
    let n = Node::start_with(
        config("n1", true, ""),
        nkcluster::node::Env::real(),
        Some(h),
    )
    .await
    .expect("start");
    let body = |f: &str| {
        Bytes::from(
            postcard::to_allocvec(&CallRequest {
                function: f.into(),
                args: vec![],
            })
            .expect("encode"),
        )
    };
    let r = n
        .send("n1", CLASS_CALL, body("boom"), Duration::from_secs(1))
        .await;
    match r {
        Err(RequestError::Remote(e)) => {
            assert_eq!(e.code, "function_panicked");
            assert!(e.to_string().contains("kaboom"), "{e}");
        }
        other => panic!("expected function_panicked, got {other:?}"),
    }
    let r = n
        .send("n1", CLASS_CALL, body("node"), Duration::from_secs(1))
        .await;
    assert_eq!(r.as_deref(), Ok(&b"n1"[..]));
    n.shutdown();
}
