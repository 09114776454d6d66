//! Configuration sources of a real `nkcluster node`: a TOML file, the environment and
//! flags (flags > environment > file), and the errors that stop it with exit code 2.
//!
//! Every daemon here listens on 127.0.0.1 only, and the commands that must fail still get
//! a loopback listener, so that a regression cannot bind the default public port.

use nkcluster_tests::{DEADLINE, Daemon, TempDir, field, has};

const CONFIG_ERROR: i32 = 2;
const GAVE_UP: i32 = 3;

const FILE: &str = r#"
cluster_name = "filecluster"
password = "filepw"
node_id = "file-node"
listen = "nkcluster://127.0.0.1:0"
"#;

/// The `starting node` line.
fn starting(d: &mut Daemon) -> String {
    d.wait_line("the starting line", |l| l.contains("starting node"))
}

/// A worker of `cluster` with `password` links to the control at `port`, named `control`.
fn links(control: &mut Daemon, control_id: &str, port: u16, cluster: &str, password: &str) {
    let mut w = Daemon::worker(
        "w1",
        &format!("nkcluster://127.0.0.1:{port}"),
        &["--cluster-name", cluster, "--password", password],
    );
    w.wait_line(&format!("link up with {control_id}"), |l| {
        l.contains("link up") && has(l, "peer", control_id)
    });
    control.wait_line("link up with w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
}

/// Runs a command that must fail with a configuration error; returns its output.
fn config_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut d = Daemon::spawn("nkcluster", args, env);
    let status = d.wait_exit(DEADLINE);
    let log = d.log_text();
    assert_eq!(
        status.code(),
        Some(CONFIG_ERROR),
        "{status}; output:\n{log}"
    );
    log
}

#[test]
fn options_come_from_the_file() {
    let dir = TempDir::new("config");
    let file = dir.write("node.toml", FILE);
    let file = file.to_str().expect("utf-8 temp path");
    let mut control = Daemon::node("file-node", &["--config", file]);
    let line = starting(&mut control);
    assert!(has(&line, "node", "file-node"), "{line}");
    assert!(has(&line, "cluster", "filecluster"), "{line}");
    assert!(has(&line, "control", "true"), "{line}");
    let port = control.listen_port();
    let line = control.wait_line_after(0, "the listening line", |l| l.contains("listening"));
    assert_eq!(
        field(&line, "addr"),
        Some(format!("tcp:127.0.0.1:{port}").as_str())
    );
    // The file's password and cluster name are the ones in force.
    links(&mut control, "file-node", port, "filecluster", "filepw");
}

#[test]
fn flags_and_environment_override_the_file() {
    let dir = TempDir::new("config");
    let file = dir.write("node.toml", FILE);
    let file = file.to_str().expect("utf-8 temp path");
    // The file comes through NKCLUSTER_CONFIG; the node id is in the file, the
    // environment and a flag (the flag wins); the password in the file and the
    // environment (the environment wins).
    let mut control = Daemon::node_env(
        "flag-node",
        &["--node-id", "flag-node"],
        &[
            ("NKCLUSTER_CONFIG", file),
            ("NKCLUSTER_NODE_ID", "env-node"),
            ("NKCLUSTER_PASSWORD", "envpw"),
        ],
    );
    let line = starting(&mut control);
    assert!(has(&line, "node", "flag-node"), "{line}");
    assert!(has(&line, "cluster", "filecluster"), "{line}");
    let port = control.listen_port();
    links(&mut control, "flag-node", port, "filecluster", "envpw");

    // The file's password no longer opens the door.
    let mut old = Daemon::worker(
        "w-old",
        &format!("nkcluster://127.0.0.1:{port}"),
        &[
            "--cluster-name",
            "filecluster",
            "--password",
            "filepw",
            "--connect-attempts",
            "1",
        ],
    );
    let status = old.wait_exit(DEADLINE);
    let log = old.log_text();
    assert_eq!(status.code(), Some(GAVE_UP), "{status}; log:\n{log}");
    assert!(
        old.lines()
            .iter()
            .any(|l| l.contains("giving up") && has(l, "code", "auth_failed")),
        "{log}"
    );
}

#[test]
fn unknown_key_in_the_file_is_a_config_error_naming_it() {
    let dir = TempDir::new("config");
    let file = dir.write(
        "typo.toml",
        "node_id = \"n1\"\npasword = \"x\"\nlisten = \"nkcluster://127.0.0.1:0\"\n",
    );
    let file = file.to_str().expect("utf-8 temp path");
    let out = config_error(
        &[
            "node",
            "--config",
            file,
            "--listen",
            "nkcluster://127.0.0.1:0",
        ],
        &[],
    );
    assert!(out.contains("pasword"), "{out}");
    assert!(out.contains(file), "the message names the file:\n{out}");
}

#[test]
fn missing_config_file_is_a_config_error() {
    let dir = TempDir::new("config");
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().expect("utf-8 temp path");
    let out = config_error(
        &[
            "node",
            "--config",
            missing,
            "--listen",
            "nkcluster://127.0.0.1:0",
        ],
        &[],
    );
    assert!(out.contains("cannot read config file"), "{out}");
    assert!(out.contains(missing), "{out}");
}

#[test]
fn control_must_be_true_or_false() {
    let out = config_error(
        &[
            "node",
            "--control",
            "maybe",
            "--listen",
            "nkcluster://127.0.0.1:0",
        ],
        &[],
    );
    assert!(out.contains("maybe"), "{out}");
}

#[test]
fn bad_values_name_their_option() {
    let listen = "nkcluster://127.0.0.1:0";
    let out = config_error(
        &[
            "node",
            "--listen",
            listen,
            "--ping-interval-ms",
            "1000",
            "--idle-timeout-ms",
            "500",
        ],
        &[],
    );
    assert!(out.contains("invalid idle_timeout_ms"), "{out}");
    let out = config_error(&["node", "--listen", listen, "--max-frame", "100"], &[]);
    assert!(out.contains("invalid max_frame"), "{out}");
    let out = config_error(
        &["node", "--listen", listen],
        &[("NKCLUSTER_RING_SETTLE_MS", "70000")],
    );
    assert!(out.contains("invalid ring_settle_ms"), "{out}");
    let out = config_error(
        &["node", "--listen", listen, "--bulk-priority", "high"],
        &[],
    );
    assert!(
        out.contains("invalid bulk_priority: \"high\" is not idle, low or normal"),
        "{out}"
    );
    let out = config_error(
        &["node", "--listen", listen],
        &[("NKCLUSTER_BULK_PRIORITY", "nice")],
    );
    assert!(out.contains("invalid bulk_priority"), "{out}");
    // From the environment too.
    let out = config_error(
        &["node", "--listen", listen],
        &[("NKCLUSTER_CLUSTER_ADDR", "http://x")],
    );
    assert!(
        out.contains("invalid cluster_addr: invalid_scheme"),
        "{out}"
    );
}

#[test]
fn a_plaintext_listener_other_hosts_can_reach_is_warned_about() {
    // Port 0: any free port, on every interface (tcp), next to a loopback one.
    let mut d = Daemon::node(
        "plain",
        &[
            "--node-id",
            "plain",
            "--listen",
            "nkcluster://0.0.0.0:0;transport=tcp, nkcluster://127.0.0.1:0;transport=ws",
        ],
    );
    let line = d.wait_line("the plaintext warning", |l| {
        l.contains("plaintext listener other hosts can reach")
    });
    assert!(line.contains("0.0.0.0"), "{line}");
    // Both listeners up: the loopback one was not warned about.
    d.wait_line("the ws listener", |l| {
        l.contains("listening") && l.contains("ws:127.0.0.1")
    });
    let log = d.log_text();
    assert_eq!(
        log.matches("plaintext listener other hosts can reach")
            .count(),
        1,
        "only the exposed listener is warned about:\n{log}"
    );
}
