//! Secrets per role between real processes (issue 12, point 1): a control node started
//! with `--password c1 --worker-password w1` links workers that prove `w1`, and refuses
//! `w1` from a node claiming the control role and from an admin client, with a message
//! naming the worker secret and a non-zero exit.

use std::process::Command;

use nkcluster_tests::{DEADLINE, Daemon, field, has, nkcluster_bin, run_with_deadline};

/// Exit code of a node whose connector spent its attempt budget.
const GAVE_UP: i32 = 3;

/// What the refused side hears when it proves the worker secret for another role.
const WORKER_SECRET: &str = "the worker secret (worker_password) cannot authenticate the";

fn addr(port: u16) -> String {
    format!("nkcluster://127.0.0.1:{port}")
}

/// Runs the admin CLI against `port` with only the given `NKCLUSTER_*` environment.
fn admin(args: &[&str], port: u16) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    cmd.env("NKCLUSTER_ADDR", addr(port));
    run_with_deadline(&mut cmd, DEADLINE)
}

fn links_with(d: &mut Daemon, peer: &str) {
    d.wait_line(&format!("link up with {peer}"), |l| {
        l.contains("link up") && has(l, "peer", peer)
    });
}

#[test]
fn the_worker_secret_links_workers_only() {
    let (mut control, port) =
        Daemon::control("c1", &["--password", "c1", "--worker-password", "w1"]);

    // A worker proving w1 links.
    let mut worker = Daemon::worker("w-good", &addr(port), &["--password", "w1"]);
    links_with(&mut control, "w-good");
    links_with(&mut worker, "c1");

    // A node proving w1 while claiming the control role is refused, and gives up.
    let mark = control.mark();
    let mut args = vec![
        "--node-id",
        "c-fake",
        "--control",
        "true",
        "--listen",
        "",
        "--password",
        "w1",
        "--connect-attempts",
        "1",
    ];
    let cluster_addr = addr(port);
    args.extend(["--cluster-addr", &cluster_addr]);
    let mut fake = Daemon::node("c-fake", &args);
    let status = fake.wait_exit(DEADLINE);
    let log = fake.log_text();
    assert_eq!(status.code(), Some(GAVE_UP), "{status}; log:\n{log}");
    assert!(
        log.contains(&format!("{WORKER_SECRET} control role")),
        "the refused node does not say why:\n{log}"
    );
    let refused = control.wait_line_after(mark, "the refusal of c-fake", |l| {
        l.contains("connection refused") && has(l, "claimed_peer", "c-fake")
    });
    assert_eq!(field(&refused, "code"), Some("auth_failed"), "{refused}");
    assert!(refused.contains(WORKER_SECRET), "{refused}");

    // An admin client proving w1 is refused too, clearly, with exit 1.
    let out = admin(&["nodes", "--password", "w1"], port);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth_failed") && err.contains(&format!("{WORKER_SECRET} admin role")),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");

    // The control secret still serves the admin client, and the worker is still there.
    let out = admin(&["nodes", "--password", "c1"], port);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("w-good"),
        "{out:?}"
    );
    // Keys derived with another number of rounds do not match: refused, clearly.
    let out = admin(
        &["nodes", "--password", "c1", "--key-iterations", "1000"],
        port,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auth_failed"),
        "{out:?}"
    );
    assert!(worker.is_running() && control.is_running());
}

#[test]
fn the_worker_secret_comes_from_the_environment_or_the_url() {
    // The control node reads its worker secret from NKCLUSTER_WORKER_PASSWORD; the
    // worker, whose own password is the control one's, from its cluster_addr.
    let mut control = Daemon::node_env(
        "c1",
        &[
            "--node-id",
            "c1",
            "--control",
            "true",
            "--listen",
            "nkcluster://127.0.0.1:0",
            "--password",
            "c1",
        ],
        &[("NKCLUSTER_WORKER_PASSWORD", "w1")],
    );
    let port = control.listen_port();
    let url = format!("{};worker_password=w1", addr(port));
    let mut worker = Daemon::worker("w-url", &url, &["--password", "nope"]);
    links_with(&mut control, "w-url");
    links_with(&mut worker, "c1");
}
