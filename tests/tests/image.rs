//! The container image (`docker/build-image.sh`, `FROM scratch`) with the real Docker
//! engine: built from this test build's binary (`--binary`, no cargo build), it runs
//! `nkcluster --help`, a container of it starts a control node that listens as the
//! unprivileged user, and `docker/compose.yaml` starts the quick-start topology (dev1..dev5)
//! that the admin CLI on the host then lists, with dev1's `/metrics` answering. Skips
//! with the reason printed when no engine answers (the Compose part when no
//! `docker-compose` runs).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nkcluster_tests::engine::{self, Scope, docker, docker_ok};
use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{free_port, nkcluster_bin, run_with_deadline};

/// `docker/compose.yaml` run under a project name of its own, taken down when dropped.
struct Compose {
    project: String,
    env: Vec<(&'static str, String)>,
}

impl Compose {
    fn file() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|p| p.join("docker/compose.yaml"))
            .unwrap_or_else(|| PathBuf::from("docker/compose.yaml"))
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(Self::file())
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        run_with_deadline(&mut cmd, Duration::from_secs(120))
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.run(&["down", "-v", "-t", "5"]));
    }
}

/// `GET path` from `127.0.0.1:port` (HTTP/1.0, the whole answer).
fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The quick-start topology from `docker/compose.yaml`, on the image `tag`.
fn compose_starts_the_quick_start(tag: &str, project: &str) {
    if let Err(e) = Command::new("docker-compose").arg("version").output() {
        eprintln!("compose part skipped: no docker-compose: {e}");
        return;
    }
    let (port, http) = (free_port(), free_port());
    let compose = Compose {
        project: project.to_owned(),
        env: vec![
            ("NKCLUSTER_IMAGE", tag.to_owned()),
            ("NKCLUSTER_PORT", port.to_string()),
            ("NKCLUSTER_HTTP_PORT", http.to_string()),
        ],
    };
    let started = Instant::now();
    let up = compose.run(&["up", "-d"]);
    assert!(
        up.status.success(),
        "docker-compose up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    // The admin CLI on the host, through dev1's published port, until every node is
    // listed and both workers have their proxy.
    let addr = format!("nkcluster://127.0.0.1:{port};transport=tls");
    let within = Duration::from_secs(60);
    let table = poll_until(
        "the compose cluster lists dev1..dev5 with one proxy per worker",
        within,
        Duration::from_millis(200),
        || {
            let out = run_with_deadline(
                Command::new(nkcluster_bin())
                    .args(["nodes", "--json", "--addr", &addr])
                    .env_remove("NKCLUSTER_PASSWORD"),
                Duration::from_secs(30),
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let listed = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    let rows = v["nodes"].as_array()?.clone();
                    let all = ["dev1", "dev2", "dev3", "dev4", "dev5"].iter().all(|id| {
                        rows.iter().any(|r| {
                            r["id"] == *id
                                && r["status"] == "ready"
                                && (r["role"] == "control"
                                    || r["proxies"].as_array().is_some_and(|p| p.len() == 1))
                        })
                    });
                    all.then_some(text.clone())
                });
            listed.ok_or_else(|| {
                format!(
                    "{text}\n{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&compose.run(&["logs", "--tail", "20"]).stdout)
                )
            })
        },
    );
    let converged = started.elapsed();
    let metrics = http_get(http, "/metrics");
    assert!(
        metrics.contains("nkcluster_"),
        "dev1's /metrics on 127.0.0.1:{http}: {metrics}"
    );
    eprintln!(
        "compose: dev1..dev5 listed with one proxy per worker {:.1} s after `up`; table: {} bytes",
        converged.as_secs_f64(),
        table.len()
    );
}

#[test]
fn the_image_runs_help_starts_a_node_and_the_compose_file_starts_the_quick_start() {
    if let Err(why) = engine::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let mut scope = Scope::new("img");
    let tag = scope.build_image();
    let built = started.elapsed();

    let help = docker(&["run", "--rm", &tag, "--help"]);
    let out = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "--help failed: {help:?}");
    assert!(out.contains("Usage: nkcluster"), "--help printed: {out}");

    let user = docker_ok(&["image", "inspect", "-f", "{{.Config.User}}", &tag]);
    assert_eq!(
        user, "65532:65532",
        "the image runs as the unprivileged user"
    );

    // A control node in a container: up when it logs that it listens; the files
    // directory is made under /data, the user's own.
    let mut args = vec!["run".to_owned(), "-d".to_owned(), "--init".to_owned()];
    args.extend(scope.container_args("node"));
    args.extend([&tag, "node", "--node-id", "c1", "--key-iterations", "1000"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker_ok(&args);
    let logs = poll_until(
        "the node in a container comes up",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let out = docker(&["logs", &id]);
            let logs = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if logs.contains("listening") {
                return Ok(logs);
            }
            let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", &id]);
            assert_eq!(running, "true", "the node in a container stopped:\n{logs}");
            Err(logs)
        },
    );
    assert!(logs.contains("c1"), "the log names the node:\n{logs}");
    let size: u64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &tag])
        .parse()
        .unwrap_or(0);
    eprintln!(
        "image {tag}: {} MB (debug build), built in {:.1} s; node up after {:.1} s in all",
        size / 1_000_000,
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    compose_starts_the_quick_start(&tag, scope.prefix());
}
