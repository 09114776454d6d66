//! Idle bench: what an idle link costs the control node, in memory and CPU.
//!
//! The control node runs in a child process of its own (this binary started again with
//! `--control <transport>`), with the default connection settings (ping every 5 s). This
//! process starts `N` worker nodes (N = 10,000; `--quick`: 1,000), each linked to the
//! control once, 64 connecting at a time. Then, once the control's RSS has settled, it
//! reads the control's `VmRSS` (before the links and after) and, from one ping interval
//! after the last link came up (every link has had its first ping exchange), its CPU (its
//! threads' run time from `/proc/<pid>/task/*/schedstat`, nanoseconds, exact per process:
//! not tick-sampled, and other processes' load is not in it) over an idle window of two
//! ping intervals (10 s, `--idle-secs S`): each link's ping, pong and heartbeat once. A
//! baseline child (`--control raw`) accepts plain TCP connections and waits for
//! readability on each, one tokio task per socket, and the bench sends on each socket
//! what an idle link carries: a 16-byte frame every ping interval, every other one
//! answered with 16 bytes. That is the floor for a link on this runtime, in memory and in
//! CPU: an idle link's CPU is mostly the kernel's (about 80% in `perf record` of the tcp
//! control: TCP send and receive, netfilter, wake-ups; on loopback a write also runs the
//! peer's receive), which changes with the machine's state for the same work, so the
//! tcp control's CPU is printed beside the raw one's, measured in the same run.
//!
//! Run: `cargo bench -p nkcluster --bench idle` (`-- --quick` for N = 1,000, `--only tcp`
//! for one transport). Ends with one `target` line per goal.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::Node;
use nkcluster_core::url::parse_url_list;
use tokio::task::JoinSet;

/// The idle window, s: two ping intervals (the default, 5 s), so that it holds every
/// link's ping (and the control's pong) and its heartbeat once, whatever their phase. A
/// window of one interval held only heartbeats or only pings, as the links came up.
const IDLE_SECS: u64 = 10;

/// Links connecting at a time.
const CONCURRENCY: usize = 64;
/// The bench's password key is derived with few rounds: it is derived once per node and
/// plays no part in a link's cost.
const KEY_ITERATIONS: u32 = 1;

fn status_field_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_field_kib(pid, "VmRSS:")
}

/// CPU time of process `pid` so far, in nanoseconds: the sum over its threads of the
/// scheduler's run time (`/proc/<pid>/task/<tid>/schedstat`, nanosecond resolution; the
/// utime and stime of `/proc/<pid>/stat` count 10 ms ticks, too coarse for a quick run).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Raises the open-file limit to its hard limit; returns the soft limit now in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(s, _)| s)
}

/// The child: a control node (or the raw baseline) on loopback; prints its port, then
/// runs until its standard input closes.
fn control_child(transport: &str) {
    raise_nofile();
    // The daemon's runtime: multi-thread, one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (port, keep): (u16, Box<dyn std::any::Any>) = if transport == "raw" {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = l.local_addr().expect("addr").port();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let mut scratch = [0u8; 64];
                        loop {
                            if s.readable().await.is_err() {
                                return;
                            }
                            match s.try_read(&mut scratch) {
                                Ok(0) => return,
                                // A frame that asks is answered (see `raw_keepalive`).
                                Ok(_) if scratch[0] == ASKS => {
                                    let _ = s.try_write(&[0u8; RAW_FRAME]);
                                }
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            });
            (port, Box::new(()))
        } else {
            let mut c = NodeConfig::new("c1");
            c.key_iterations = KEY_ITERATIONS;
            c.listen = parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={transport}"))
                .expect("url");
            let control = Node::start(c, common::fixed_figures_env())
                .await
                .expect("control");
            (control.listen_addrs()[0].1.port(), Box::new(control))
        };
        println!("port {port}");
        // Standard input closes when the parent is done (or gone).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("stdin");
        // Out at once, the links still up: under heaptrack, what is "leaked" at exit is
        // exactly what the idle links held.
        std::mem::forget(keep);
        std::process::exit(0);
    });
}

/// A started control child and its port.
struct ControlProcess {
    child: Child,
    port: u16,
}

impl ControlProcess {
    fn start(transport: &str) -> ControlProcess {
        let exe = std::env::current_exe().expect("own path");
        // `NKCLUSTER_IDLE_WRAP=heaptrack` (or another wrapper command) runs the control
        // child under it, to see where its memory goes.
        let wrap = std::env::var("NKCLUSTER_IDLE_WRAP").ok();
        let mut cmd = match &wrap {
            Some(w) => {
                let mut c = Command::new(w);
                c.arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args(["--control", transport])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the control process");
        let out = child.stdout.take().expect("stdout");
        // A wrapper may print lines of its own first.
        let mut out = BufReader::new(out);
        let port = loop {
            let mut line = String::new();
            if out.read_line(&mut line).expect("port line") == 0 {
                panic!("the control prints its port");
            }
            if let Some(p) = line
                .trim()
                .strip_prefix("port ")
                .and_then(|p| p.parse().ok())
            {
                break p;
            }
        };
        // The rest of the wrapper's output is not read: keep the pipe drained.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        ControlProcess { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// One transport's figures.
struct Figures {
    links: usize,
    connect_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    cpu_pct: f64,
}

impl Figures {
    fn kib_per_link(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.links as f64
    }
}

/// Waits until the RSS of `pid` stops growing (three readings 300 ms apart within
/// 0.2%), at most 20 s; returns the last reading.
async fn settled_rss(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = rss_kib(pid);
    let mut steady = 0;
    while Instant::now() < deadline && steady < 3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) * 500 <= last {
            steady += 1;
        } else {
            steady = 0;
        }
        last = now;
    }
    last
}

/// Bytes of a raw baseline's keepalive frame (a nkcluster ping or heartbeat frame on an
/// idle TCP link is of this order).
const RAW_FRAME: usize = 16;
/// First byte of a raw frame that asks for an answer.
const ASKS: u8 = 1;

/// The raw baseline's traffic on one socket, the shape of an idle link's: one frame every
/// ping interval from the worker's end, every other one asking for an answer (a ping, the
/// control answers with a pong) and the rest not (a heartbeat), the first after `first`.
async fn raw_keepalive(mut s: tokio::net::TcpStream, first: Duration, every: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    let mut asks = true;
    let mut frame = [0u8; RAW_FRAME];
    loop {
        tick.tick().await;
        frame[0] = if asks { ASKS } else { 0 };
        if s.write_all(&frame).await.is_err() {
            return;
        }
        if asks && s.read_exact(&mut frame).await.is_err() {
            return;
        }
        asks = !asks;
    }
}

async fn open_raw(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("raw connect"),
        );
    }
    v
}

async fn open_links(transport: &str, port: u16, n: usize, first: usize) -> Vec<Node<TokioNet>> {
    let url: Arc<str> = format!("nkcluster://127.0.0.1:{port};transport={transport}").into();
    let mut workers = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut started = 0;
    while workers.len() < n {
        while started < n && set.len() < CONCURRENCY {
            let url = url.clone();
            let id = format!("w{}", first + started);
            set.spawn(async move {
                let mut w = NodeConfig::new(id);
                w.control = false;
                w.listen = Vec::new();
                w.key_iterations = KEY_ITERATIONS;
                let worker = Node::start(w, common::fixed_figures_env())
                    .await
                    .expect("worker");
                worker.connect(&url).await.expect("link");
                worker
            });
            started += 1;
        }
        if let Some(r) = set.join_next().await {
            workers.push(r.expect("worker task"));
        }
    }
    workers
}

async fn measure(transport: &str, n: usize, idle: Duration) -> Figures {
    let control = ControlProcess::start(transport);
    let pid = control.pid();
    let port = control.port;
    // Warm-up links (lazily built tables, TLS caches), outside the reading.
    let warm_raw;
    let warm = if transport == "raw" {
        warm_raw = open_raw(port, 16).await;
        Vec::new()
    } else {
        warm_raw = Vec::new();
        open_links(transport, port, 16, 1_000_000).await
    };
    let rss_before_kib = settled_rss(pid).await;
    let t = Instant::now();
    let ping_interval = nkcluster_core::ConnectionConfig::default().ping_interval;
    let (raw, workers) = if transport == "raw" {
        let raw: Vec<_> = open_raw(port, n)
            .await
            .into_iter()
            .enumerate()
            // Spread evenly over an interval: the links' keepalives spread as the links
            // came up (over 0.6-3 s here); the raw sockets open within ~0.1 s, and sent
            // at once their 1,000 frames took the raw control a handful of wake-ups.
            .map(|(i, s)| {
                let first = ping_interval + ping_interval.mul_f64(i as f64 / n as f64);
                tokio::spawn(raw_keepalive(s, first, ping_interval))
            })
            .collect();
        (raw, Vec::new())
    } else {
        (Vec::new(), open_links(transport, port, n, 0).await)
    };
    let connect_secs = t.elapsed().as_secs_f64();
    let linked = Instant::now();
    let rss_after_kib = settled_rss(pid).await;
    // The idle window starts once every link is past its first ping exchange (a link's
    // first interval after the handshake is not idle yet: both ends ping once).
    let steady = linked + ping_interval + Duration::from_millis(500);
    tokio::time::sleep_until(steady.into()).await;
    let c0 = cpu_ns(pid);
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let ns = cpu_ns(pid).saturating_sub(c0) as f64;
    let cpu_pct = 100.0 * ns / 1e9 / t0.elapsed().as_secs_f64();
    // The control first (it exits with its links up, see `control_child`).
    drop(control);
    for w in workers.iter().chain(&warm) {
        w.shutdown();
    }
    raw.iter().for_each(tokio::task::JoinHandle::abort);
    drop(warm_raw);
    Figures {
        links: n,
        connect_secs,
        rss_before_kib,
        rss_after_kib,
        cpu_pct,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg_after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(t) = arg_after("--control") {
        control_child(&t);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 1_000 } else { 10_000 };
    // `--idle-secs S`: a longer idle window (to profile the control meanwhile).
    let idle = Duration::from_secs(
        arg_after("--idle-secs")
            .and_then(|s| s.parse().ok())
            .unwrap_or(IDLE_SECS),
    );
    let transports: Vec<String> = match arg_after("--only") {
        Some(t) => vec![t],
        None => ["raw", "tcp", "tls", "ws", "wss"]
            .map(String::from)
            .to_vec(),
    };
    let nofile = raise_nofile();
    if nofile < n as u64 + 256 {
        println!("open-file limit {nofile}: too low for {n} links; raise `ulimit -Hn`");
        std::process::exit(1);
    }
    println!(
        "nkcluster idle bench: {n} workers linked to one control process (a child), \
         default ping interval; CPU over {} s idle; open-file limit {nofile}",
        idle.as_secs()
    );
    println!(
        "{:<6} {:>10} {:>14} {:>14} {:>16} {:>12}",
        "", "links/s", "control RSS0", "control RSS1", "KiB/link (ctl)", "ctl CPU %"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for t in &transports {
        let f = rt.block_on(measure(t, n, idle));
        println!(
            "{t:<6} {:>10.0} {:>11} KiB {:>11} KiB {:>16.2} {:>12.2}",
            f.links as f64 / f.connect_secs,
            f.rss_before_kib,
            f.rss_after_kib,
            f.kib_per_link(),
            f.cpu_pct
        );
        results.push((t.clone(), f));
    }
    let verdict = |ok: bool| if ok { "ok" } else { "miss" };
    for (t, f) in &results {
        let goal = match t.as_str() {
            "tcp" => 4.0,
            "tls" | "ws" | "wss" => 16.0,
            _ => continue,
        };
        let m = f.kib_per_link();
        println!(
            "target idle_{t}_link_kib {m:.2} <={goal} {}",
            verdict(m <= goal)
        );
    }
    if let Some((_, f)) = results.iter().find(|(t, _)| t == "tcp") {
        if let Some((_, r)) = results.iter().find(|(t, _)| t == "raw") {
            println!(
                "tcp control CPU {:.2}% of a core, raw sockets with the same keepalive frames \
                 {:.2}%: {:.2}x",
                f.cpu_pct,
                r.cpu_pct,
                f.cpu_pct / r.cpu_pct
            );
        }
        // The goal is for 10,000 workers; a quick run scales it to its count.
        let goal = 5.0 * n as f64 / 10_000.0;
        let name = if quick {
            "idle_1k_cpu_pct"
        } else {
            "idle_10k_cpu_pct"
        };
        println!(
            "target {name} {:.2} <={goal} {}",
            f.cpu_pct,
            verdict(f.cpu_pct <= goal)
        );
    }
}
