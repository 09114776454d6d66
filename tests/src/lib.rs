//! Helpers for the end-to-end tests: real `nkcluster` processes on loopback.
//!
//! - [`nkcluster_bin`] finds the binary that `cargo test --workspace` (or
//!   `cargo build -p nkcluster`) built next to the test executable.
//! - [`Daemon`] runs one process, reads its stdout and stderr line by line on two threads
//!   into a channel, and lets a test wait for a line with a deadline (no sleeps). The
//!   process is killed when the guard drops; if the test is failing at that point, the
//!   whole log is printed so the failure explains itself.
//! - [`TempDir`], [`field`], [`XorShift`], [`free_port`], [`run_with_deadline`]: small
//!   utilities; [`quick_start`]: `nkcluster dev` on free ports.
//! - [`engine`], [`fleet`], [`load`]: the real Docker engine, a cluster of containers on
//!   private networks with faults, and the admin client with its request load (the
//!   multi-host fault tests).
//! - [`inproc`]: in-process nodes over real loopback sockets, event waits with deadlines,
//!   and a TCP [`Relay`](inproc::Relay) that can pause or cut a path.
//! - [`poll`]: waiting, with a deadline, on a condition nothing notifies us of.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// `NKCLUSTER_LOG` for a daemon whose test counts every refused connection: refusal
/// lines are rate-limited per source address, and the ones left out are debug lines.
pub const LOG_EVERY_REFUSAL: &str = "info,nkcluster::node::links=debug";

/// Default deadline for anything a test waits on. Generous so that a loaded 2-core
/// machine does not make the suite flaky; tests that work never wait this long, they
/// return as soon as the awaited line appears.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Path of the `nkcluster` binary of the current build profile.
///
/// Test executables live in `target/<profile>/deps/`; the binary is in `target/<profile>/`.
///
/// # Panics
/// When the binary has not been built.
pub fn nkcluster_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    let bin = dir.join(format!("nkcluster{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the nkcluster binary is missing at {}: build it with `cargo test --workspace` \
         (which builds it for the nkcluster package's own tests) or `cargo build -p nkcluster` \
         in the same profile",
        bin.display()
    );
    if let Some(src) = newer_source(&bin) {
        panic!(
            "the nkcluster binary at {} is older than {}: rebuild it with \
             `cargo build -p nkcluster` (or run `cargo test --workspace`, which does)",
            bin.display(),
            src.display()
        );
    }
    bin
}

/// A source file of the binary modified after `bin` was built, if any: the tests would
/// run an old build. The sources are the ones cargo lists in the binary's dep-info file
/// (`nkcluster.d` beside it); without that file nothing is checked.
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    // `target: dep dep ...`, spaces inside paths escaped as `\ `.
    let (_, deps) = dep_info.lines().next()?.split_once(": ")?;
    let deps = deps.replace("\\ ", "\u{0}");
    deps.split_whitespace()
        .map(|d| PathBuf::from(d.replace('\u{0}', " ")))
        .find(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
        })
}

/// Lines longer than this are cut (a runaway child must not exhaust the test's memory).
const MAX_LINE: usize = 64 * 1024;

fn spawn_reader(name: String, stream: impl Read + Send + 'static, tx: Sender<String>) {
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-reader"))
        .spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    spawned.expect("spawn a log reader thread");
}

/// One `nkcluster` process with its output captured line by line.
pub struct Daemon {
    name: String,
    child: Child,
    rx: Receiver<String>,
    /// Every line received so far (stdout and stderr interleaved as they arrived).
    lines: Vec<String>,
    /// `wait_line` searches from here; it moves past each match.
    cursor: usize,
    /// Both output pipes are closed (the process exited).
    eof: bool,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns `nkcluster` with `args` and `env`. The inherited `NKCLUSTER_*` variables are
    /// removed so the caller's environment cannot change a test; `NKCLUSTER_LOG` defaults
    /// to `info`. `name` labels the process in failure messages.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(nkcluster_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("NKCLUSTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NKCLUSTER_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn nkcluster for {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        spawn_reader(format!("{name}-out"), out, tx.clone());
        spawn_reader(format!("{name}-err"), err, tx);
        Daemon {
            name: name.to_owned(),
            child,
            rx,
            lines: Vec::new(),
            cursor: 0,
            eof: false,
            exited: None,
        }
    }

    /// Spawns `nkcluster node` with `args` (after `node`).
    pub fn node(name: &str, args: &[&str]) -> Daemon {
        Self::node_env(name, args, &[])
    }

    /// Spawns `nkcluster node` with `args` and extra environment.
    pub fn node_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["node"];
        all.extend_from_slice(args);
        Self::spawn(name, &all, env)
    }

    /// A control node with id `node_id` on 127.0.0.1, any port, plus `extra` flags.
    /// Returns once it logs its listener, with the bound port.
    pub fn control(node_id: &str, extra: &[&str]) -> (Daemon, u16) {
        Self::control_env(node_id, extra, &[])
    }

    /// [`control`](Self::control) with extra environment (e.g. [`LOG_EVERY_REFUSAL`]).
    pub fn control_env(node_id: &str, extra: &[&str], env: &[(&str, &str)]) -> (Daemon, u16) {
        let mut args = vec![
            "--node-id",
            node_id,
            "--control",
            "true",
            "--listen",
            "nkcluster://127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut d = Self::node_env(node_id, &args, env);
        let port = d.listen_port();
        (d, port)
    }

    /// A worker with id `node_id`, no listener, dialing `cluster_addr`, plus `extra` flags.
    pub fn worker(node_id: &str, cluster_addr: &str, extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--node-id",
            node_id,
            "--control",
            "false",
            "--listen",
            "",
            "--cluster-addr",
            cluster_addr,
        ];
        args.extend_from_slice(extra);
        Self::node(node_id, &args)
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size from `/proc/<pid>/status`, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: cannot read {path}: {e}", self.name));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no VmRSS in {path}", self.name))
    }

    /// Receives one line, or notes the end of output; `false` when `until` passed first.
    fn pump(&mut self, until: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(l) => {
                self.lines.push(l);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
        }
    }

    /// Takes every line already received without waiting.
    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// Everything the process printed so far, one line each, prefixed by its name.
    pub fn log_text(&mut self) -> String {
        self.drain();
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(&format!("  [{}] {l}\n", self.name));
        }
        s
    }

    /// Every line received so far.
    pub fn lines(&mut self) -> &[String] {
        self.drain();
        &self.lines
    }

    /// A position in the log: [`wait_line_after`](Self::wait_line_after) only looks at
    /// lines received after it.
    pub fn mark(&mut self) -> usize {
        self.drain();
        self.lines.len()
    }

    /// Waits up to `timeout` for a line at or after index `from` that satisfies `pred`;
    /// returns its index.
    pub fn try_wait_line_from(
        &mut self,
        from: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<usize> {
        let until = Instant::now() + timeout;
        let mut i = from;
        loop {
            while i < self.lines.len() {
                if pred(&self.lines[i]) {
                    return Some(i);
                }
                i += 1;
            }
            if !self.pump(until) {
                // Timed out or the output ended: one last look at anything left.
                self.drain();
                return (i..self.lines.len()).find(|&j| pred(&self.lines[j]));
            }
        }
    }

    /// Waits for the next line (after the previous match) that satisfies `pred`.
    ///
    /// # Panics
    /// After `timeout`, or when the process ended first; the message holds `what` and
    /// the whole log.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_within(what, DEADLINE, pred)
    }

    /// [`wait_line`](Self::wait_line) with an explicit timeout.
    pub fn wait_line_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let cursor = self.cursor;
        let i = self.expect_line(cursor, what, timeout, pred);
        self.cursor = i + 1;
        self.lines[i].clone()
    }

    /// Waits for a line received after `mark` (from [`mark`](Self::mark)); does not move
    /// the cursor of [`wait_line`](Self::wait_line).
    pub fn wait_line_after(
        &mut self,
        mark: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let i = self.expect_line(mark, what, DEADLINE, pred);
        self.lines[i].clone()
    }

    fn expect_line(
        &mut self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        let start = Instant::now();
        match self.try_wait_line_from(from, pred, timeout) {
            Some(i) => i,
            None => {
                let why = if self.eof {
                    "its output ended (the process exited)".to_owned()
                } else {
                    format!("nothing matched within {:?}", start.elapsed())
                };
                let log = self.log_text();
                panic!("{}: waiting for {what}: {why}; log:\n{log}", self.name);
            }
        }
    }

    /// Waits until at least `n` lines received after `from` satisfy `pred`.
    pub fn wait_count(
        &mut self,
        from: usize,
        n: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let mut at = from;
        while found.len() < n {
            let i = self.expect_line(at, what, DEADLINE, &pred);
            found.push(self.lines[i].clone());
            at = i + 1;
        }
        found
    }

    /// Waits up to `timeout` for the process to exit and returns its status. Waits on
    /// the end of its output (both pipes close when it exits), then reaps it.
    ///
    /// # Panics
    /// When it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let until = Instant::now() + timeout;
        while !self.eof {
            if !self.pump(until) && !self.eof {
                let log = self.log_text();
                panic!(
                    "{}: still running after {timeout:?}; log:\n{log}",
                    self.name
                );
            }
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("{}: wait failed: {e}", self.name));
        self.exited = Some(status);
        status
    }

    /// Whether the process is still running (a non-blocking check).
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(s)) => {
                self.exited = Some(s);
                false
            }
            Err(e) => panic!("{}: try_wait failed: {e}", self.name),
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `KILL`, ...) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{sig}: {e}"));
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// SIGKILL, then reap; returns once the process is gone.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.exited = Some(s);
            }
        }
    }

    /// Waits for the `listening ... addr=tcp:IP:PORT` line and returns the port.
    pub fn listen_port(&mut self) -> u16 {
        let line = self.wait_line("the listening line", |l| {
            l.contains(" listening ") && field(l, "addr").is_some()
        });
        let addr = field(&line, "addr").unwrap_or_default();
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{}: no port in {line:?}", self.name))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            eprintln!("--- log of {} ---\n{log}", self.name);
        }
    }
}

/// The value of `key=value` in a log line (up to the next space), if present. A value
/// that tracing printed in quotes (`claimed_peer="w1"`) is returned without them.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return Some(quoted.split('"').next().unwrap_or(quoted));
    }
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// The strings of a JSON array (a node row's `proxies`, `listen`...); empty otherwise.
pub fn string_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `line` has `key=value` exactly.
pub fn has(line: &str, key: &str, value: &str) -> bool {
    field(line, key) == Some(value)
}

/// A directory under the system temp dir, unique to this process and call, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates it; `tag` appears in the name.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "nkcluster-tests-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `name` in it and returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// xorshift64*: deterministic bytes for hostile inputs, no dependency needed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero is replaced, xorshift must not start at zero).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// How a raw connection ended from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOutcome {
    /// Our local address (the daemon logs it as `remote=tcp:<addr>`).
    pub local: std::net::SocketAddr,
    /// Bytes the daemon took before it closed (a write error cut the rest).
    pub written: usize,
    /// How the read side ended: `eof` or the OS error.
    pub end: String,
}

/// Connects to `127.0.0.1:port`, writes `data` (stopping at the first write error: the
/// daemon may close while we write), shuts our write side, then reads until the daemon
/// closes (EOF or reset).
///
/// # Panics
/// When the daemon keeps the connection open past `timeout`.
pub fn send_raw(port: u16, data: &[u8], timeout: Duration) -> RawOutcome {
    use std::io::Write;
    use std::net::{Shutdown, TcpStream};
    let until = Instant::now() + timeout;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon");
    let local = s.local_addr().expect("local address");
    let left = |until: Instant| {
        until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut written = 0;
    while written < data.len() {
        if s.set_write_timeout(Some(left(until))).is_err() {
            break;
        }
        match s.write(&data[written..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        s.set_read_timeout(Some(left(until)))
            .expect("set a read timeout");
        match s.read(&mut buf) {
            Ok(0) => break "eof".to_owned(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the daemon kept the connection from {local} open for {timeout:?} \
                     after {written} bytes"
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break e.to_string(),
        }
    };
    RawOutcome {
        local,
        written,
        end,
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to `:0`, then released). Only
/// for flags that need an explicit port; prefer port 0 where the product allows it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// The quick start (`nkcluster dev`) on free ports, up: its process, dev1's cluster port
/// and dev1's HTTP port (dev2 and dev3 serve HTTP on the next two). Ports found free can
/// be taken by a test running beside this one before the quick start binds them: then it
/// is started again on others (5 tries).
///
/// # Panics
/// When it does not come up.
pub fn quick_start() -> (Daemon, u16, u16) {
    let bindable = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let base = free_port();
        let http = free_port();
        if !(1..=2).all(|i| http.checked_add(i).is_some_and(bindable)) {
            continue;
        }
        let (base_arg, http_arg) = (base.to_string(), http.to_string());
        let args = ["dev", "--base-port", &base_arg, "--http-port", &http_arg];
        let mut dev = Daemon::spawn("dev", &args, &[]);
        let up_or_taken = |l: &str| l.contains("Ctrl-C to stop") || l.contains("already in use");
        let found = dev.try_wait_line_from(0, up_or_taken, DEADLINE);
        match found.map(|i| dev.lines()[i].clone()) {
            Some(l) if l.contains("Ctrl-C to stop") => return (dev, base, http),
            Some(l) if attempts < 5 => println!("quick start again on other ports: {l}"),
            _ => panic!("the quick start did not come up: {}", dev.log_text()),
        }
    }
}

/// Runs `cmd` to completion with its stdin closed and returns its output; kills it and
/// panics when it is still running after `timeout` (an external tool must not hang a
/// test). Waits on the end of its output, not with sleeps.
///
/// # Panics
/// When the command cannot start or outlives `timeout`.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>, tx: Sender<(bool, Vec<u8>)>, out: bool| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send((out, buf));
        })
    };
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    collect(Box::new(out), tx.clone(), true);
    collect(Box::new(err), tx, false);
    let until = Instant::now() + timeout;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((true, b)) => stdout = b,
            Ok((false, b)) => stderr = b,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} still running after {timeout:?}");
            }
        }
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

pub mod engine;
pub mod fleet;
pub mod inproc;
pub mod load;
pub mod pair;
pub mod poll;
pub mod tools;
