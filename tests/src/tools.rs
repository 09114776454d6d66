//! The foreign tools some tests use as real peers, set up by the tests themselves on
//! first use, so that `cargo test --workspace` alone passes on a fresh machine:
//!
//! - [`python_with_websockets`]: a Python interpreter that has the `websockets` package
//!   (>= 12): the system's if it has it, otherwise a virtual environment created under
//!   the build's target directory and filled from PyPI once.
//! - [`openssl`]: the `openssl` command, installed with apt-get when missing (as root).
//! - [`dnsmasq`]: the `dnsmasq` command (package `dnsmasq-base`), the same way.
//! - [`chromium`]: Debian's `chromium` (the dashboard's real browser), the same way; a
//!   test may skip when it cannot be had.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::run_with_deadline;

/// How long a set-up step may take (a pip or apt-get download).
const SETUP: Duration = Duration::from_secs(600);

fn works(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// The target directory of this build (`target/<profile>`), where set-ups (and test
/// artefacts such as the dashboard's screenshot) are kept.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name() == Some(std::ffi::OsStr::new("deps")) {
        dir.pop();
    }
    dir
}

/// A Python interpreter that can `import websockets.sync.client`.
///
/// # Panics
/// When neither the system's Python has the package nor a virtual environment can be
/// made (the message says what failed).
pub fn python_with_websockets() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let probe = |py: &PathBuf| {
                works(Command::new(py).args(["-c", "import websockets.sync.client"]))
            };
            let system = PathBuf::from("python3");
            if probe(&system) {
                return system;
            }
            let venv = target_dir().join("test-venv");
            let python = venv.join("bin").join("python3");
            if probe(&python) {
                return python;
            }
            let out = run_with_deadline(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                SETUP,
            );
            assert!(
                out.status.success(),
                "cannot create a virtual environment at {} for the websockets package: {}",
                venv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let out = run_with_deadline(
                Command::new(&python).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "websockets>=12",
                ]),
                SETUP,
            );
            assert!(
                out.status.success() && probe(&python),
                "cannot install websockets into {}: {}",
                venv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            python
        })
        .clone()
}

/// Installs Debian `package` with apt-get unless `ready` already holds.
fn apt_install(package: &str, ready: impl Fn() -> bool) -> Result<(), String> {
    if ready() {
        return Ok(());
    }
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", package][..],
    ] {
        let out = run_with_deadline(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            SETUP,
        );
        if !out.status.success() {
            return Err(format!(
                "apt-get {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if ready() {
        Ok(())
    } else {
        Err(format!("{package} is still missing after apt-get install"))
    }
}

/// The `openssl` command.
///
/// # Panics
/// When it is missing and cannot be installed.
pub fn openssl() -> Command {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY
        .get_or_init(|| apt_install("openssl", || works(Command::new("openssl").arg("version"))));
    if let Err(e) = ready {
        panic!("the openssl command is required by this test and could not be installed: {e}");
    }
    Command::new("openssl")
}

/// The `dnsmasq` command (Debian package `dnsmasq-base`; often in `/usr/sbin`, which a
/// user's `PATH` may lack).
///
/// # Panics
/// When it is missing and cannot be installed.
pub fn dnsmasq() -> Command {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let find = || {
        ["dnsmasq", "/usr/sbin/dnsmasq", "/sbin/dnsmasq"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| works(Command::new(p).arg("--version")))
    };
    let path = PATH.get_or_init(|| {
        apt_install("dnsmasq-base", || find().is_some())?;
        find().ok_or_else(|| "dnsmasq is missing".to_owned())
    });
    match path {
        Ok(p) => Command::new(p),
        Err(e) => panic!(
            "the dnsmasq command (package dnsmasq-base) is required by this test and could \
             not be installed: {e}"
        ),
    }
}

/// The `chromium` browser (Debian package `chromium`), installed with apt-get when missing
/// (as root); the reason when it cannot be had (the caller skips, saying so).
pub fn chromium() -> Result<PathBuf, String> {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let find = || {
        [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "/usr/bin/chromium",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| works(Command::new(p).arg("--version")))
    };
    PATH.get_or_init(|| {
        apt_install("chromium", || find().is_some())?;
        find().ok_or_else(|| "chromium is missing".to_owned())
    })
    .clone()
}
