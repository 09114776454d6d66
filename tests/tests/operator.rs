//! What an operator sees (issue 8): honest node tables (a member that does not answer is
//! named, exit 5; measured round trips), log levels that match what happened, messages
//! that say what is wrong and what to try, and a CLI that explains itself. Real processes
//! on loopback.

use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_tests::{Daemon, TempDir, free_port, has, nkcluster_bin, run_with_deadline};
use serde_json::Value;

fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

fn admin(port: u16, args: &[&str]) -> std::process::Output {
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut all = args.to_vec();
    all.extend(["--addr", addr.as_str()]);
    cli(&all, &[])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn member_up(id: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("membership") && has(l, "member", id) && has(l, "change", "up")
}

#[test]
fn a_member_that_does_not_answer_is_named_and_round_trips_are_shown() {
    // Pings every 200 ms measure round trips; a long idle timeout keeps the frozen member
    // linked, so only the gather deadline can notice it.
    let liveness = ["--ping-interval-ms", "200", "--idle-timeout-ms", "60000"];
    let (mut c1, p1) = Daemon::control("c1", &liveness);
    let seed = format!("nkcluster://127.0.0.1:{p1}");
    let mut args = vec!["--cluster-addr", seed.as_str()];
    args.extend_from_slice(&liveness);
    let (_c2, _) = Daemon::control("c2", &args);
    let (c3, _) = Daemon::control("c3", &args);
    let mut w1 = Daemon::worker("w1", &seed, &liveness);
    w1.wait_line("w1 linked", |l| l.contains("link up"));
    c1.wait_line_after(0, "c1 sees c2", member_up("c2"));
    c1.wait_line_after(0, "c1 sees c3", member_up("c3"));
    // Round trips appear once the first pings have come back.
    let until = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let out = admin(p1, &["nodes", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let rows = v["nodes"].as_array().cloned().unwrap_or_default();
        let measured = rows
            .iter()
            .filter(|r| r["id"] != "c1")
            .all(|r| r["rtt_us"].as_u64().is_some_and(|us| us > 0));
        if rows.len() == 4 && measured {
            break rows;
        }
        assert!(Instant::now() < until, "no round trips measured: {v}");
    };
    assert!(
        rows[0]["rtt_us"].is_null(),
        "the answering node itself has none"
    );
    let table = text(&admin(p1, &["nodes"]).stdout);
    assert!(table.contains("RTT_MS"), "{table}");

    c3.signal("STOP");
    let out = admin(p1, &["nodes", "--json"]);
    c3.signal("CONT");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        text(&out.stderr).contains("c3 did not answer; the list is incomplete"),
        "{out:?}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["incomplete"], serde_json::json!(["c3"]), "{v}");
    c3.signal("STOP");
    let out = admin(p1, &["nodes"]);
    c3.signal("CONT");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(text(&out.stdout).contains("c3*"), "{out:?}");
}

#[test]
fn normal_departures_are_info_and_debug_shows_decisions() {
    let (mut c1, port) = Daemon::control("c1", &[]);
    let out = admin(port, &["nodes"]);
    assert!(out.status.success(), "{out:?}");
    c1.wait_line("the admin client's departure", |l| {
        l.contains(" INFO ") && l.contains("link down") && l.contains("admin-")
    });
    assert!(
        !c1.lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("admin-")),
        "no warning for an admin client that is done"
    );
    // Debug logs say what the node decides, with whom and why.
    let seed = format!("nkcluster://127.0.0.1:{port}");
    let mut c2 = Daemon::node_env(
        "c2",
        &[
            "--node-id",
            "c2",
            "--listen",
            "nkcluster://127.0.0.1:0",
            "--cluster-addr",
            &seed,
        ],
        &[("NKCLUSTER_LOG", "info,nkcluster=debug")],
    );
    c2.wait_line("a dial decision", |l| {
        l.contains("DEBUG") && l.contains("dialing cluster_addr entry")
    });
    // A filter that does not parse is reported at start.
    let mut c3 = Daemon::node_env(
        "c3",
        &["--node-id", "c3", "--listen", "nkcluster://127.0.0.1:0"],
        &[("NKCLUSTER_LOG", "nkcluster=[bogus")],
    );
    c3.wait_line("the bad filter is reported", |l| {
        l.contains("invalid NKCLUSTER_LOG filter")
    });
}

#[test]
fn misconfigured_peers_get_messages_that_say_what_to_fix() {
    // A wrong cluster name: each side names its own cluster as ours.
    let (mut c1, port) = Daemon::control("c1", &["--cluster-name", "alpha"]);
    let seed = format!("nkcluster://127.0.0.1:{port}");
    let mut c2 = Daemon::node(
        "c2",
        &[
            "--node-id",
            "c2",
            "--cluster-name",
            "beta",
            "--listen",
            "",
            "--cluster-addr",
            &seed,
            "--connect-attempts",
            "3",
        ],
    );
    let mismatch = |ours: &'static str, theirs: &'static str| {
        move |l: &str| {
            l.contains("ERROR")
                && l.contains(&format!(
                    "we are in cluster \"{ours}\", the peer in \"{theirs}\""
                ))
        }
    };
    c2.wait_line("the dialer's view", mismatch("beta", "alpha"));
    c1.wait_line("the listener's view", mismatch("alpha", "beta"));
    assert_eq!(c2.wait_exit(Duration::from_secs(60)).code(), Some(3));
    let refusals = c2
        .lines()
        .iter()
        .filter(|l| l.contains("connection refused") && l.contains("cluster_mismatch"))
        .count();
    assert!(
        refusals <= 3,
        "one line per attempt, not a flood: {refusals}"
    );

    // Plain TCP to a TLS port.
    let (_tls, tls_port) = {
        let mut d = Daemon::node(
            "c-tls",
            &[
                "--node-id",
                "c-tls",
                "--listen",
                "nkcluster://127.0.0.1:0;transport=tls",
            ],
        );
        let p = d.listen_port();
        (d, p)
    };
    let out = admin(tls_port, &["nodes"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("is this a TLS port? try ;transport=tls"),
        "{out:?}"
    );
    // And the reverse: TLS to a plain port.
    let (_plain, plain_port) = Daemon::control("c-plain", &[]);
    let addr = format!("nkcluster://127.0.0.1:{plain_port};transport=tls");
    let out = cli(&["nodes", "--addr", &addr], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("a plain port wants ;transport=tcp"),
        "{out:?}"
    );
    // A wrong password: the code once, the reason in words.
    let out = cli(
        &[
            "nodes",
            "--password",
            "nope",
            "--addr",
            &format!("nkcluster://127.0.0.1:{plain_port}"),
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("auth_failed") && !err.contains("auth_failed: auth_failed"),
        "{err}"
    );
}

#[test]
fn the_cli_explains_itself() {
    let (mut c1, port) = Daemon::control("c1", &[]);
    let mut w1 = Daemon::worker("w1", &format!("nkcluster://127.0.0.1:{port}"), &[]);
    w1.wait_line("w1 linked", |l| l.contains("link up"));
    c1.wait_line("c1 holds w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
    // Empty results print a header and (none).
    let out = admin(port, &["tasks", "w1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "TASK     CLASS\n(none)");
    // Recent events, not the node table.
    let out = admin(port, &["set-status", "w1", "standby"]);
    assert!(out.status.success(), "{out:?}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let out = admin(port, &["events"]);
        let t = text(&out.stdout);
        assert!(t.starts_with("TIME_MS"), "{t}");
        if t.lines()
            .any(|l| l.contains("w1") && l.contains("node_status") && l.contains("standby"))
        {
            break;
        }
        assert!(Instant::now() < until, "no standby event listed: {t}");
    }
    // A reader that went away (`| head -1`) ends the command quietly, not with a panic.
    let mut child = Command::new(nkcluster_bin())
        .args(["nodes", "--addr", &format!("nkcluster://127.0.0.1:{port}")])
        .env_remove("NKCLUSTER_ADDR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // before it has connected, let alone printed
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success() && !text(&out.stderr).contains("panicked"),
        "{out:?}"
    );
    // Help that lists the choices and the defaults.
    let help = text(&cli(&["set-status", "--help"], &[]).stdout);
    for s in ["ready", "standby", "stopping", "stopped"] {
        assert!(help.contains(s), "{help}");
    }
    let help = text(&cli(&["node", "--help"], &[]).stdout);
    assert!(help.contains("[default: nkcluster]"), "{help}");
    assert!(help.contains("nkcluster://all;transport=tls"), "{help}");
    // Nothing answering: what to try.
    let out = cli(
        &[
            "nodes",
            "--addr",
            &format!("nkcluster://127.0.0.1:{}", free_port()),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--addr") && err.contains("NKCLUSTER_ADDR"),
        "{err}"
    );
    // The default address list also tries a daemon's default listener.
    let help = text(&cli(&["nodes", "--help"], &[]).stdout);
    assert!(
        help.contains("nkcluster://127.0.0.1;transport=tls"),
        "{help}"
    );
}

#[test]
fn the_quick_start_on_another_port_prints_the_addr_to_use() {
    let base = free_port();
    let base_arg = base.to_string();
    let mut dev = Daemon::spawn(
        "dev",
        &["dev", "--base-port", &base_arg, "--http-port", "0"],
        &[],
    );
    let want = format!("--addr 'nkcluster://127.0.0.1:{base};transport=tcp'");
    dev.wait_line("the next commands", |l| {
        l.contains(&want) && l.contains("nodes")
    });
    dev.signal("INT");
    assert!(dev.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn is_control_is_an_alias_and_an_unreachable_node_is_warned_about() {
    let dir = TempDir::new("is-control");
    let file = dir.write(
        "node.toml",
        "node_id = \"w9\"\nis_control = false\nlisten = \"\"\n",
    );
    let file = file.display().to_string();
    let not_control = |l: &str| l.contains("starting node") && has(l, "control", "false");
    let mut a = Daemon::node("toml", &["--config", &file]);
    a.wait_line("TOML is_control", not_control);
    a.wait_line("nothing can reach it", |l| {
        l.contains("WARN") && l.contains("nothing can reach it")
    });
    let mut b = Daemon::node_env(
        "env",
        &["--node-id", "w8", "--listen", ""],
        &[("NKCLUSTER_IS_CONTROL", "false")],
    );
    b.wait_line("env NKCLUSTER_IS_CONTROL", not_control);
    let mut c = Daemon::node(
        "flag",
        &["--node-id", "w7", "--listen", "", "--is-control", "false"],
    );
    c.wait_line("flag --is-control", not_control);
}
