//! The `nkcluster` command line, run as a process. Having this integration test also
//! makes `cargo test --workspace` build the `nkcluster` binary, which the end-to-end
//! tests in `nkcluster-tests` run.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn nkcluster(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nkcluster"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NKCLUSTER_") {
            cmd.env_remove(k);
        }
    }
    // Every command here exits on its own before any network activity; should one hang
    // (say, a node that starts despite a bad option), kill it instead of hanging the test.
    let child = cmd.spawn().expect("run nkcluster");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("collect the output of nkcluster"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("nkcluster {args:?} did not exit within 30 s");
        }
    }
}

#[test]
fn help_lists_the_subcommands() {
    let out = nkcluster(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["node", "dev"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(word)),
            "--help does not list `{word}`:\n{text}"
        );
    }
}

#[test]
fn node_help_lists_its_options() {
    let out = nkcluster(&["node", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node-id",
        "--cluster-name",
        "--password",
        "--listen",
        "--cluster-addr",
        "--control",
        "--meta",
        "--connect-attempts",
        "--ping-interval-ms",
        "--idle-timeout-ms",
        "--max-frame",
        "--config",
    ] {
        assert!(text.contains(flag), "node --help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_listen_url_is_a_config_error() {
    let out = nkcluster(&["node", "--listen", "http://x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("invalid listen: invalid_scheme"),
        "stderr:\n{err}"
    );
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = nkcluster(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
