//! The container image (`docker/build-image.sh`, `FROM scratch`) with the real Docker
//! engine: built from this test build's binary (`--binary`, no cargo build), it runs
//! `nkcluster --help`, and a container of it starts a control node that listens as the
//! unprivileged user. Skips with the reason printed when no engine answers.

use std::time::{Duration, Instant};

use nkcluster_tests::engine::{self, Scope, docker, docker_ok};

#[test]
fn the_image_runs_help_and_starts_a_node() {
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let out = docker(&["logs", &id]);
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if logs.contains("listening") {
            break logs;
        }
        let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", &id]);
        assert!(
            running == "true" && Instant::now() < deadline,
            "the node did not come up (running: {running}):\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
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
}
