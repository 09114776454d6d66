//! `--log-format json` (and `NKCLUSTER_LOG_FORMAT=json`): real daemons write one JSON
//! object per line on stderr, with the node id, the peer, the remote end (transport and
//! address), the transport alone and the error code as fields of their own, what a log
//! shipper indexes.

use std::process::Command;

use nkcluster_tests::{DEADLINE, Daemon, nkcluster_bin, run_with_deadline};
use serde_json::Value;

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

fn message_is(line: &str, message: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["message"] == message)
}

#[test]
fn json_logs_carry_node_peer_remote_and_code_as_fields() {
    // The control node from the environment, the worker from the flag.
    let mut control = Daemon::node_env(
        "c1",
        &[
            "--node-id",
            "c1",
            "--control",
            "true",
            "--listen",
            "nkcluster://127.0.0.1:0;transport=tcp",
        ],
        &[("NKCLUSTER_LOG_FORMAT", "json")],
    );
    let listening = json(&control.wait_line("the listening line", |l| message_is(l, "listening")));
    assert_eq!(listening["node"], "c1", "{listening}");
    assert_eq!(listening["level"], "INFO", "{listening}");
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    assert!(addr.starts_with("tcp:127.0.0.1:"), "{listening}");
    let port = addr.rsplit(':').next().expect("port");
    let url = format!("nkcluster://127.0.0.1:{port};transport=tcp");

    let mut worker = Daemon::node(
        "w1",
        &[
            "--log-format",
            "json",
            "--node-id",
            "w1",
            "--control",
            "false",
            "--listen",
            "",
            "--cluster-addr",
            &url,
        ],
    );
    let up = json(&control.wait_line("the worker's link", |l| {
        message_is(l, "link up") && l.contains("\"peer\":\"w1\"")
    }));
    assert_eq!(
        (&up["node"], &up["peer"], &up["role"]),
        (&"c1".into(), &"w1".into(), &"worker".into())
    );
    assert!(
        up["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("tcp:127.0.0.1:")),
        "{up}"
    );
    assert_eq!(up["transport"], "tcp", "{up}");
    let mine = json(&worker.wait_line("the link at the worker", |l| message_is(l, "link up")));
    assert_eq!(
        (&mine["node"], &mine["peer"], &mine["transport"]),
        (&"w1".into(), &"c1".into(), &"tcp".into())
    );

    // A refusal names its code in a field.
    let mark = control.mark();
    let mut admin = Command::new(nkcluster_bin());
    admin.args(["nodes", "--addr", &url, "--password", "wrong"]);
    let out = run_with_deadline(&mut admin, DEADLINE);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let refused = json(
        &control.wait_line_after(mark, "the refusal", |l| message_is(l, "connection refused")),
    );
    assert_eq!(
        (&refused["node"], &refused["code"], &refused["transport"]),
        (&"c1".into(), &"auth_failed".into(), &"tcp".into())
    );
    assert_eq!(refused["level"], "ERROR", "{refused}");

    // Every line of both daemons is one JSON object.
    for d in [&mut control, &mut worker] {
        for line in d.lines() {
            assert!(json(line).is_object(), "{line}");
        }
    }
}
