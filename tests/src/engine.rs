//! The real Docker engine, through the `docker` command: whether one answers, the
//! nkcluster image built from this test build's binary (`docker/build-image.sh
//! --binary`), and a [`Scope`] that names everything a test makes with a prefix unique
//! to the run and removes it all (containers, networks, the image) when dropped, pass or
//! fail.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::run_with_deadline;

/// Deadline of one `docker` command (a build or a network change takes a few seconds on
/// a loaded machine; nothing waits this long when it works).
const DOCKER_DEADLINE: Duration = Duration::from_secs(120);

/// Label every container of a scope carries (`nkcluster.test=<prefix>`).
pub const LABEL: &str = "nkcluster.test";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

/// Runs `docker args` with a deadline.
pub fn docker(args: &[&str]) -> Output {
    run_with_deadline(Command::new("docker").args(args), DOCKER_DEADLINE)
}

/// Runs `docker args` and returns its trimmed stdout.
///
/// # Panics
/// When it fails: the message has the command and its stderr.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Whether an engine answers (else the reason, for the test that skips to print).
pub fn available() -> Result<(), String> {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("no Docker engine answers: {}", text(&o.stderr))),
        Err(e) => Err(format!("no docker command: {e}")),
    }
}

/// The repository's `docker/build-image.sh`.
pub fn build_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("docker/build-image.sh"))
        .unwrap_or_else(|| PathBuf::from("docker/build-image.sh"))
}

/// Everything one test made in the engine, named `<prefix>-...`; removed when dropped.
pub struct Scope {
    prefix: String,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Scope {
    /// A scope whose prefix is unique to this process and call (`nkt<pid>x<n><tag>`).
    pub fn new(tag: &str) -> Scope {
        static N: AtomicU32 = AtomicU32::new(0);
        Scope {
            prefix: format!(
                "nkt{}x{}{tag}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            networks: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The prefix of every name in the scope.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>-<name>`.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Builds the nkcluster image from this test build's binary (quick: no cargo build),
    /// tagged `nkcluster-test:<prefix>`, removed with the scope. Returns the tag.
    ///
    /// # Panics
    /// When the build fails.
    pub fn build_image(&mut self) -> String {
        let tag = format!("nkcluster-test:{}", self.prefix);
        let bin = crate::nkcluster_bin();
        let out = run_with_deadline(
            Command::new("bash")
                .arg(build_script())
                .arg("--binary")
                .arg(&bin)
                .args(["--tag", &tag]),
            DOCKER_DEADLINE,
        );
        self.images.push(tag.clone());
        assert!(
            out.status.success(),
            "docker/build-image.sh failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        tag
    }

    /// Creates the bridge network `<prefix>-<name>` (removed with the scope); returns its
    /// full name.
    pub fn network(&mut self, name: &str) -> String {
        let full = self.name(name);
        docker_ok(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--label",
            &format!("{LABEL}={}", self.prefix),
            &full,
        ]);
        self.networks.push(full.clone());
        full
    }

    /// `docker create` arguments that name a container of this scope and label it.
    pub fn container_args(&self, name: &str) -> Vec<String> {
        vec![
            "--name".into(),
            self.name(name),
            "--label".into(),
            format!("{LABEL}={}", self.prefix),
        ]
    }
}

/// `docker args` for a clean-up: never panics (a panic in a drop while the test is already
/// failing would abort the run).
fn cleanup(args: &[&str]) -> String {
    std::panic::catch_unwind(|| text(&docker(args).stdout)).unwrap_or_default()
}

/// Whether `docker args` succeeded, for a clean-up (never panics).
fn cleanup_ok(args: &[&str]) -> bool {
    std::panic::catch_unwind(|| docker(args).status.success()).unwrap_or(false)
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Containers first (a network in use cannot be removed), found by label so that
        // one created by a command that then failed goes too.
        let ids = cleanup(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL}={}", self.prefix),
        ]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            cleanup(&args);
        }
        // The engine may still be releasing a removed container's endpoint: a network
        // that refuses is tried again for a few seconds.
        for n in &self.networks {
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while !cleanup_ok(&["network", "rm", n]) && std::time::Instant::now() < until {
                if !cleanup_ok(&["network", "inspect", n]) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for i in &self.images {
            cleanup(&["image", "rm", "-f", i]);
        }
    }
}
