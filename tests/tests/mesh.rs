//! Control nodes form a full mesh from gossip, notice an explicit leave at once, and mark
//! a member that dies down by failure detection (real processes on loopback).

use std::time::Duration;

use nkcluster_tests::{Daemon, has};

fn member(id: &'static str, change: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("membership") && has(l, "member", id) && has(l, "change", change)
}

/// c1 first; c2 and c3 only know c1. Liveness flags are passed through.
fn three(extra: &[&str]) -> (Daemon, Daemon, Daemon, [u16; 3]) {
    let (c1, port) = Daemon::control("c1", extra);
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut args = vec!["--cluster-addr", addr.as_str()];
    args.extend_from_slice(extra);
    let (c2, p2) = Daemon::control("c2", &args);
    let (c3, p3) = Daemon::control("c3", &args);
    (c1, c2, c3, [port, p2, p3])
}

#[test]
fn gossip_builds_a_full_mesh_and_a_leave_is_noticed_at_once() {
    // A long idle timeout: only the explicit leave can explain a fast departure.
    let slow = ["--ping-interval-ms", "5000", "--idle-timeout-ms", "60000"];
    let (mut c1, mut c2, mut c3, _) = three(&slow);
    // c2 and c3 never had each other's address: they learn it from c1's view.
    // The order of these lines within one log is not fixed: look from the start.
    c2.wait_line_after(0, "c2 learns of c3", member("c3", "up"));
    c3.wait_line_after(0, "c3 learns of c2", member("c2", "up"));
    c2.wait_line_after(0, "c2 linked to c3", |l| {
        l.contains("link up") && has(l, "peer", "c3")
    });
    c1.wait_line_after(0, "c1 sees c3", member("c3", "up"));

    let start = std::time::Instant::now();
    c3.signal("INT");
    c1.wait_line("c1 sees c3 leave", member("c3", "left"));
    c2.wait_line("c2 sees c3 leave", member("c3", "left"));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a leave must not wait for failure detection (idle timeout 60 s): took {:?}",
        start.elapsed()
    );
    assert!(
        c3.wait_exit(Duration::from_secs(20)).success(),
        "c3 stops cleanly"
    );
}

#[test]
fn a_killed_member_is_marked_down_by_failure_detection() {
    let fast = ["--ping-interval-ms", "200", "--idle-timeout-ms", "1000"];
    let (mut c1, mut c2, mut c3, _) = three(&fast);
    c1.wait_line("c1 sees c2", member("c2", "up"));
    c3.wait_line("c3 sees c2", member("c2", "up"));
    c2.kill();
    c1.wait_line("c1 marks c2 down", member("c2", "down"));
    c3.wait_line("c3 marks c2 down", member("c2", "down"));
}

#[test]
fn any_control_node_lists_the_whole_cluster() {
    use std::process::Command;

    use nkcluster_tests::{nkcluster_bin, run_with_deadline};

    let (mut c1, mut c2, mut c3, ports) = three(&[]);
    // w1 dials c1; its proxy ends at its ring owner among c1..c3 (c2 for these names).
    let members: Vec<String> = ["c1", "c2", "c3"].map(String::from).to_vec();
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members)
        .expect("ring");
    let owner = ring.owner_of("w1").expect("an owner").to_owned();
    let mut w1 = Daemon::worker("w1", &format!("nkcluster://127.0.0.1:{}", ports[0]), &[]);
    w1.wait_line_after(0, "w1 linked to its owner", |l| {
        l.contains("link up") && has(l, "peer", &owner)
    });
    for c in [&mut c2, &mut c3] {
        for m in ["c1", "c2", "c3"] {
            if m != c.name() {
                // Members come up in either order: look from the start of the log.
                c.wait_line_after(0, "mesh member up", member(m, "up"));
            }
        }
    }
    c1.wait_line_after(0, "c1 sees c3", member("c3", "up"));
    for p in ports {
        let mut cmd = Command::new(nkcluster_bin());
        cmd.args([
            "nodes",
            "--json",
            "--addr",
            &format!("nkcluster://127.0.0.1:{p}"),
        ]);
        let out = run_with_deadline(&mut cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{out:?}");
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let rows = &rows["nodes"];
        let ids: Vec<&str> = rows
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, ["c1", "c2", "c3", "w1"], "from port {p}");
        let w1 = &rows[3];
        assert_eq!(w1["owner"], owner.as_str(), "from port {p}: {w1}");
        assert_eq!(
            w1["proxies"],
            serde_json::json!([owner]),
            "from port {p}: {w1}"
        );
        assert!(w1["remote"].as_str().is_some_and(|r| r.starts_with("tcp:")));

        let mut cmd = Command::new(nkcluster_bin());
        cmd.args([
            "node-info",
            "w1",
            "--json",
            "--addr",
            &format!("nkcluster://127.0.0.1:{p}"),
        ]);
        let out = run_with_deadline(&mut cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{out:?}");
        let row: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            (row["id"].as_str(), row["owner"].as_str()),
            (Some("w1"), Some(owner.as_str()))
        );
    }
}
