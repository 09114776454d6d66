//! Docker containers (the `nkcluster.docker` class) on a real worker daemon and the real
//! Docker engine, driven by the real CLI. No registry is reachable: each test run builds
//! a tiny image of its own (`docker import` of a tarball holding a statically linked C
//! program compiled here) and removes it at the end, with every container it made. A
//! test that needs the engine prints why and returns when no engine answers.
//!
//! The program (`/app CODE SECS LINE...`) prints its lines, sleeps SECS seconds and
//! exits with CODE; on SIGTERM it prints `terminating` and exits with 7.
//!
//! Events are read from a live `nkcluster events --follow --json`: every wait is on a
//! condition with a deadline.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nkcluster_tests::pair::CliPair;
use nkcluster_tests::{Daemon, has, run_with_deadline};

const DEADLINE: Duration = Duration::from_secs(60);

const APP: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void on_term(int s) { (void)s; write(1, "terminating\n", 12); _exit(7); }
int main(int argc, char **argv) {
  signal(SIGTERM, on_term);
  int code = argc > 1 ? atoi(argv[1]) : 0;
  int secs = argc > 2 ? atoi(argv[2]) : 0;
  for (int i = 3; i < argc; i++) printf("%s\n", argv[i]);
  fflush(stdout);
  for (int i = 0; i < secs; i++) sleep(1);
  return code;
}
"#;

fn docker(args: &[&str]) -> std::process::Output {
    run_with_deadline(Command::new("docker").args(args), DEADLINE)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

/// Whether an engine answers (else the reason, printed by the test that skips).
fn engine() -> Result<(), String> {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("no Docker engine answers: {}", text(&o.stderr))),
        Err(e) => Err(format!("no docker command: {e}")),
    }
}

/// A name unique to this test run and test.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "nkt{}x{}{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The test image, removed (with every container of `node`) when dropped.
struct Image {
    name: String,
    node: String,
}

impl Image {
    /// Builds `/app` statically and imports it as an image of its own.
    fn build(node: &str) -> Image {
        let dir = nkcluster_tests::TempDir::new("docker-image");
        let src = dir.path().join("app.c");
        std::fs::write(&src, APP).expect("write app.c");
        let app = dir.path().join("app");
        let out = run_with_deadline(
            Command::new("gcc")
                .args(["-static", "-Os", "-o"])
                .arg(&app)
                .arg(&src),
            DEADLINE,
        );
        assert!(out.status.success(), "gcc -static: {out:?}");
        let tar = dir.path().join("app.tar");
        let out = run_with_deadline(
            Command::new("tar")
                .arg("-cf")
                .arg(&tar)
                .arg("-C")
                .arg(dir.path())
                .arg("app"),
            DEADLINE,
        );
        assert!(out.status.success(), "tar: {out:?}");
        let name = format!("{}:1", unique("img"));
        let out = docker(&[
            "import",
            "--change",
            r#"CMD ["/app","0","600"]"#,
            &path(&tar),
            &name,
        ]);
        assert!(out.status.success(), "docker import: {out:?}");
        Image {
            name,
            node: node.to_owned(),
        }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The engine's containers of `node` (running or not): their names.
fn containers_of(node: &str) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=nkcluster.node={node}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(out.status.success(), "docker ps: {out:?}");
    text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Drop for Image {
    fn drop(&mut self) {
        // Quietly: the test may be failing already.
        let quiet = |args: &[&str]| Command::new("docker").args(args).output();
        let label = format!("label=nkcluster.node={}", self.node);
        if let Ok(o) = quiet(&["ps", "-aq", "--filter", &label]) {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = quiet(&["rm", "-f", id]);
            }
        }
        let _ = quiet(&["rmi", "-f", &self.name]);
    }
}

/// A control node c1 and a worker of a unique id linked to it.
struct Cluster(CliPair);

impl std::ops::Deref for Cluster {
    type Target = CliPair;
    fn deref(&self) -> &CliPair {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut CliPair {
        &mut self.0
    }
}

fn cluster() -> Cluster {
    Cluster(CliPair::start(&unique("w")))
}

impl Cluster {
    /// `docker run WORKER ARGS`: (task, container name).
    fn run(&self, args: &[&str]) -> (u64, String) {
        let mut all = vec!["docker", "run", &self.worker_id, "--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let task = v["task"].as_u64().expect("task");
        let name = v["container"].as_str().expect("container").to_owned();
        (task, name)
    }
}

/// The detail of the first event of `task` (class `nkcluster.docker`) that `pred`
/// accepts.
fn task_event(
    events: &mut Daemon,
    task: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let line = events.wait_line_after(0, what, |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["class"] == "nkcluster.docker" && v["task"] == task && pred(&v))
    });
    serde_json::from_str(&line).expect("json")
}

fn task_stopped(events: &mut Daemon, task: u64) -> String {
    let v = task_event(events, task, "task_stopped", |v| {
        v["event"] == "task_stopped"
    });
    v["detail"].as_str().expect("a reason").to_owned()
}

fn started(events: &mut Daemon, task: u64) {
    task_event(events, task, "the container started", |v| {
        v["event"] == "event" && v["detail"]["started"].is_object()
    });
}

#[test]
fn a_container_runs_is_listed_logs_and_stop_removes_it() {
    if let Err(why) = engine() {
        println!("skipped: {why}");
        return;
    }
    let mut c = cluster();
    let image = Image::build(&c.worker_id);
    let mut events = c.follow_events();
    let (task, name) = c.run(&[
        &image.name,
        "--grace-ms",
        "30000",
        "--",
        "/app",
        "0",
        "600",
        "first line",
        "second line",
        "third line",
    ]);
    assert_eq!(name, format!("nkcluster-{}-{task}", c.worker_id));
    started(&mut events, task);

    // The engine's own `docker ps` shows it, with our labels.
    assert_eq!(containers_of(&c.worker_id), vec![name.clone()]);
    let out = docker(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{index .Config.Labels \"nkcluster.task\"}} {{.HostConfig.Init}}",
        &name,
    ]);
    assert_eq!(text(&out.stdout), format!("running {task} true"), "{out:?}");
    // So does ours.
    let out = c.cli(&["docker", "ps", &c.worker_id, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["name"], name.as_str(), "{list}");
    assert_eq!(list[0]["task"], task, "{list}");
    assert_eq!(list[0]["state"], "running", "{list}");
    assert_eq!(list[0]["image"], image.name.as_str(), "{list}");

    // Logs: the tail, by task id or by name (the engine writes them as the program
    // prints: wait for all three).
    let until = Instant::now() + DEADLINE;
    let logs = |target: &str, n: &str| {
        let out = c.cli(&["docker", "logs", &c.worker_id, target, "--lines", n]);
        assert!(out.status.success(), "{out:?}");
        text(&out.stdout)
    };
    while logs(&name, "10") != "first line\nsecond line\nthird line" {
        assert!(Instant::now() < until, "logs: {:?}", logs(&name, "10"));
        std::thread::yield_now();
    }
    assert_eq!(logs(&task.to_string(), "2"), "second line\nthird line");
    assert_eq!(logs(&name, "1"), "third line");

    // Stats: one sample (the init and the program).
    let out = c.cli(&["docker", "stats", &c.worker_id, &name, "--json"]);
    assert!(out.status.success(), "{out:?}");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st["pids"], 2, "{st}");
    assert!(st["mem_bytes"].as_u64().is_some_and(|m| m > 0), "{st}");

    // Each request is logged at the node with who asked.
    c.worker.wait_line("the run logged with who asked", |l| {
        l.contains("nkcluster.docker request")
            && has(l, "role", "control")
            && l.contains(&format!("run {:?}", image.name))
    });

    // Stop: SIGTERM reaches the program through the init (it exits 7 at once, well
    // within the 30 s grace); the container is removed when the reply comes.
    let t0 = Instant::now();
    let out = c.cli(&["docker", "stop", &c.worker_id, &task.to_string()]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!("{task} stopped: exit 7"),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(15), "stopped in {took:?}");
    assert_eq!(containers_of(&c.worker_id), Vec::<String>::new());
    assert_eq!(task_stopped(&mut events, task), "stopped: exit 7");
    let out = c.cli(&["docker", "logs", &c.worker_id, &name]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("container_not_found"), "{out:?}");
}

#[test]
fn a_container_that_exits_ends_its_task_with_its_code() {
    if let Err(why) = engine() {
        println!("skipped: {why}");
        return;
    }
    let c = cluster();
    let image = Image::build(&c.worker_id);
    let mut events = c.follow_events();
    let (task, _) = c.run(&[&image.name, "--", "/app", "3", "0", "bye"]);
    assert_eq!(task_stopped(&mut events, task), "exit 3");
    let exited = task_event(&mut events, task, "the exited event", |v| {
        v["event"] == "event" && v["detail"]["exited"].is_number()
    });
    assert_eq!(exited["detail"]["exited"], 3);
    // Removed once its task ended (task_stopped comes after the removal).
    assert_eq!(containers_of(&c.worker_id), Vec::<String>::new());

    // A kept container stays (exited) and is found by `ps`; `rm` removes it. Its
    // variables, published port and volume are the engine's.
    let port = nkcluster_tests::free_port().to_string();
    let (task, name) = c.run(&[
        &image.name,
        "--keep",
        "-e",
        "A=1",
        "-p",
        &format!("{port}:80"),
        "-v",
        "/tmp:/data:ro",
        "--",
        "/app",
        "0",
        "0",
    ]);
    assert_eq!(task_stopped(&mut events, task), "exit 0");
    let out = docker(&[
        "inspect",
        "--format",
        "{{json .Config.Env}} {{json .HostConfig.PortBindings}} {{json .HostConfig.Binds}}",
        &name,
    ]);
    assert_eq!(
        text(&out.stdout),
        format!(r#"["A=1"] {{"80/tcp":[{{"HostIp":"","HostPort":"{port}"}}]}} ["/tmp:/data:ro"]"#),
        "{out:?}"
    );
    let out = c.cli(&["docker", "ps", &c.worker_id, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list[0]["name"], name.as_str(), "{list}");
    assert_eq!(list[0]["state"], "exited", "{list}");
    let out = c.cli(&["docker", "rm", &c.worker_id, &name]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(containers_of(&c.worker_id), Vec::<String>::new());
}

#[test]
fn errors_have_their_codes() {
    if let Err(why) = engine() {
        println!("skipped: {why}");
        return;
    }
    let c = cluster();
    let missing = format!("{}:1", unique("none"));
    let out = c.cli(&["docker", "run", &c.worker_id, &missing]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("image_not_found"), "{out:?}");
    // Someone else's container (no label of this node) is not this node's.
    let out = c.cli(&["docker", "stop", &c.worker_id, "nkcluster-not-ours"]);
    assert!(text(&out.stderr).contains("container_not_found"), "{out:?}");
    let out = c.cli(&["docker", "run", &c.worker_id, "img", "-p", "80"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_may_not_run_containers() {
    use nkcluster_core::cluster::JobCall;
    use nkcluster_core::docker::{DockerRequest, RunSpec};

    let (mut control, port) = Daemon::control("c1", &[]);
    let worker = nkcluster_tests::inproc::library_worker_of_daemon(port).await;
    let list = DockerRequest::List;
    let run = RunSpec::new("anything:1");
    let attacks = [
        JobCall::Request {
            class: "nkcluster.docker".into(),
            body: postcard::to_allocvec(&list).expect("enc").into(),
        },
        JobCall::Task {
            class: "nkcluster.docker".into(),
            body: postcard::to_allocvec(&run).expect("enc").into(),
            id: None,
        },
    ];
    nkcluster_tests::inproc::assert_forbidden_to_worker(&worker, &mut control, attacks.into())
        .await;
    worker.shutdown_and_wait(Duration::from_secs(2)).await;
}

#[test]
fn node_status_stopping_stops_every_container() {
    if let Err(why) = engine() {
        println!("skipped: {why}");
        return;
    }
    let c = cluster();
    let image = Image::build(&c.worker_id);
    let mut events = c.follow_events();
    let (t1, _) = c.run(&[&image.name, "--", "/app", "0", "600"]);
    let (t2, _) = c.run(&[&image.name, "--", "/app", "0", "600"]);
    started(&mut events, t1);
    started(&mut events, t2);
    assert_eq!(containers_of(&c.worker_id).len(), 2);
    let out = c.cli(&["set-status", &c.worker_id, "stopping"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(task_stopped(&mut events, t1), "stopped: exit 7");
    assert_eq!(task_stopped(&mut events, t2), "stopped: exit 7");
    assert_eq!(containers_of(&c.worker_id), Vec::<String>::new());
    events.wait_line("the node stopped", |l| {
        l.contains("\"node_status\"") && l.contains("\"stopped\"")
    });
}
