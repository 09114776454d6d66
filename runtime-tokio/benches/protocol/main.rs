//! Protocol benchmark: the whole picture of the request path in one run, every figure
//! next to baselines measured side by side in the same process:
//!
//! 1. Frame decode throughput (large frames GB/s, small frames messages/s).
//! 2. Request paths over loopback TCP, on both tokio flavours (current_thread and
//!    multi_thread with 2 workers), 32-byte bodies:
//!    - raw TCP ping-pong (the caller owns the socket): the round-trip floor;
//!    - raw TCP stream echo (one writer, one reader, no per-request routing): the
//!      pipelining floor;
//!    - raw multiplexed echo (one connection task per side owning the socket, callers
//!      over a channel, replies routed by id): the same shape as an nkcluster link, so
//!      the honest floor of our request path;
//!    - tonic unary gRPC (HTTP/2, hand-written prost message, no codegen);
//!    - nkcluster: a worker's `request` to a control node's `nkcluster.echo`.
//!
//!    Each is measured sequentially (p50/p99 µs) and with 64 requests in flight from 64
//!    caller tasks (requests/s, CPU µs per request of the whole process, both ends), in
//!    interleaved rounds so that background load hits all alike.
//! 3. The issue-15 target lines: `target <name> <measured> <goal> ok|miss`.
//!
//! Run: `cargo bench -p nkcluster --bench protocol` (`-- --quick` for a short run).
//! `-- --runs 10` runs the round-trip stability check instead (see [`stability`]): ten
//! consecutive runs, every p50 ratio printed, nkcluster over TCP on both flavours and over
//! ws and wss against raw tungstenite.

#[path = "../common/mod.rs"]
mod common;
mod decode;
mod drive;
mod grpc;
mod nk;
mod raw;
mod stability;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Goal, Lat, stats, target};
use drive::{Pipe, WINDOW, pipelined, sequential};

/// Rounds the sequential and pipelined runs are cut into, each variant once per round.
const ROUNDS: usize = 4;

/// One request path's figures on one runtime flavour.
struct Row {
    label: &'static str,
    seq: Option<Lat>,
    pipe: Option<Pipe>,
}

/// Measures every request path on the current runtime (called from a spawned task).
async fn measure(n: usize, pn: usize) -> Vec<Row> {
    let body = Bytes::from(vec![7u8; 32]);
    let mut ping = raw::PingPong::start().await;
    let mux = raw::Mux::start().await;
    let grpc = grpc::Grpc::start().await;
    let nk = nk::Nk::start().await;
    let (mut mux1, mut grpc1, mut nk1) = (mux.clone(), grpc.clone(), nk.clone());
    // Warm-up (connections, buffers, lazy state) outside the counted part.
    let warm = 200;
    sequential(&mut ping, warm, &body).await;
    sequential(&mut mux1, warm, &body).await;
    sequential(&mut grpc1, warm, &body).await;
    sequential(&mut nk1, warm, &body).await;

    let mut seq: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        let k = n / ROUNDS;
        seq[0].extend(sequential(&mut ping, k, &body).await);
        seq[1].extend(sequential(&mut mux1, k, &body).await);
        seq[2].extend(sequential(&mut grpc1, k, &body).await);
        seq[3].extend(sequential(&mut nk1, k, &body).await);
    }
    let mut pipe = [Pipe::default(); 4];
    for _ in 0..ROUNDS {
        let k = pn / ROUNDS;
        pipe[0].add(raw::stream_pipelined(k, &body).await);
        pipe[1].add(pipelined(&mux, k, &body).await);
        pipe[2].add(pipelined(&grpc, k, &body).await);
        pipe[3].add(pipelined(&nk, k, &body).await);
    }
    nk.shutdown();
    let [s_ping, s_mux, s_grpc, s_nk] = seq;
    let [p_stream, p_mux, p_grpc, p_nk] = pipe;
    vec![
        Row {
            label: "raw TCP ping-pong",
            seq: Some(stats(s_ping)),
            pipe: None,
        },
        Row {
            label: "raw TCP stream echo (no routing)",
            seq: None,
            pipe: Some(p_stream),
        },
        Row {
            label: "raw multiplexed echo",
            seq: Some(stats(s_mux)),
            pipe: Some(p_mux),
        },
        Row {
            label: "tonic unary gRPC",
            seq: Some(stats(s_grpc)),
            pipe: Some(p_grpc),
        },
        Row {
            label: "nkcluster request",
            seq: Some(stats(s_nk)),
            pipe: Some(p_nk),
        },
    ]
}

/// The profiled part of `--profile`: a warm-up, then `n` requests (pipelined, or one at a
/// time with `seq`) between the perf control's enable and disable.
async fn profile_run<E: drive::Echo + Clone>(client: E, n: usize, seq: bool, body: &Bytes) -> Pipe {
    let mut one = client.clone();
    pipelined(&client, WINDOW * 10, body).await;
    sequential(&mut one, 1_000, body).await;
    common::perf_control("enable");
    let p = if seq {
        let n = n / 4;
        let cpu = common::process_cpu();
        let t = Instant::now();
        sequential(&mut one, n, body).await;
        Pipe {
            requests: n,
            wall: t.elapsed(),
            cpu: common::process_cpu().saturating_sub(cpu),
        }
    } else {
        pipelined(&client, n, body).await
    };
    common::perf_control("disable");
    p
}

fn runtime(flavour: &str) -> tokio::runtime::Runtime {
    if flavour == "current_thread" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("runtime")
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn row_of<'a>(rows: &'a [Row], label: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.label == label)
        .expect("measured row")
}

/// The ratio columns of nkcluster against one baseline row.
fn ratio_line(flavour: &str, nk: &Row, base: &Row) {
    let x = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
    let seq = |f: fn(&Lat) -> Duration| {
        nk.seq
            .as_ref()
            .zip(base.seq.as_ref())
            .map(|(a, b)| f(a).as_secs_f64() / f(b).as_secs_f64())
    };
    let pipe = |f: fn(&Pipe) -> f64| {
        nk.pipe
            .as_ref()
            .zip(base.pipe.as_ref())
            .map(|(a, b)| f(a) / f(b))
    };
    println!(
        "{flavour:<16} {:<34} {:>9} {:>9} {:>11} {:>9}",
        format!("ratio nkcluster / {}", base.label),
        x(seq(|l| l.p50)),
        x(seq(|l| l.p99)),
        x(pipe(Pipe::per_sec)),
        x(pipe(Pipe::cpu_us))
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs: Option<usize> = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    if let Some(runs) = runs {
        stability::run(runs, if quick { 2_000 } else { 20_000 });
        return;
    }
    // `--profile nk|mux ct|mt [seq]`: that path alone, pipelined (or sequential round
    // trips with `seq`), for a profiler (callgrind, perf, strace -c) to see nothing else.
    // With NKCLUSTER_PERF_CTL set, only the measured part is profiled.
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let what = args.get(i + 1).map_or("nk", String::as_str).to_owned();
        let flavour = match args.get(i + 2).map(String::as_str) {
            Some("ct") => "current_thread",
            _ => "multi_thread(2)",
        };
        let seq = args.get(i + 3).is_some_and(|a| a == "seq");
        let pn = if quick { 64_000 } else { 320_000 };
        let p = runtime(flavour).block_on(async move {
            tokio::spawn(async move {
                let body = Bytes::from(vec![7u8; 32]);
                if what == "mux" {
                    let mux = raw::Mux::start().await;
                    profile_run(mux, pn, seq, &body).await
                } else {
                    let nk = nk::Nk::start().await;
                    let p = profile_run(nk.clone(), pn, seq, &body).await;
                    nk.shutdown();
                    p
                }
            })
            .await
            .expect("profile task")
        });
        println!(
            "{flavour}{}: {:.0} req/s, {:.2} CPU µs/req",
            if seq { " sequential" } else { "" },
            p.per_sec(),
            p.cpu_us()
        );
        return;
    }
    let machine = common::machine::wake_up_line("before");
    let started = Instant::now();
    println!(
        "nkcluster protocol bench ({})",
        if quick { "quick" } else { "full" }
    );
    println!("{machine}");
    println!("\n{:<42} {:>16}", "decode", "throughput");
    for (k, v) in decode::bench_decode(quick) {
        println!("{k:<42} {v:>16}");
    }
    let n = if quick { 2_000 } else { 20_000 };
    let pn = if quick { 64_000 } else { 320_000 };
    let flavours = ["current_thread", "multi_thread(2)"];
    let mut results = Vec::new();
    for flavour in flavours {
        let rt = runtime(flavour);
        // Clients run as tasks on the runtime's workers, like real callers in a daemon
        // (block_on would keep them on the main thread and add a thread hop).
        let rows = rt.block_on(async { tokio::spawn(measure(n, pn)).await.expect("bench task") });
        results.push((flavour, rows));
    }

    println!(
        "\nrequest paths, 32-byte body, loopback TCP: sequential {n} round trips (µs); \
         pipelined {pn} requests, {WINDOW} in flight from {WINDOW} caller tasks \
         (CPU: the whole process, both ends); {ROUNDS} interleaved rounds"
    );
    let line = "-".repeat(94);
    println!(
        "\n{:<16} {:<34} {:>9} {:>9} {:>11} {:>9}",
        "tokio", "", "seq p50", "seq p99", "pipe req/s", "CPU µs/req"
    );
    println!("{line}");
    for (flavour, rows) in &results {
        for r in rows {
            let (p50, p99) = r
                .seq
                .as_ref()
                .map_or(("-".to_owned(), "-".to_owned()), |l| {
                    (format!("{:.1}", us(l.p50)), format!("{:.1}", us(l.p99)))
                });
            let (rate, cpu) = r
                .pipe
                .as_ref()
                .map_or(("-".to_owned(), "-".to_owned()), |p| {
                    (format!("{:.0}", p.per_sec()), format!("{:.2}", p.cpu_us()))
                });
            println!(
                "{flavour:<16} {:<34} {p50:>9} {p99:>9} {rate:>11} {cpu:>9}",
                r.label
            );
        }
        let nk = row_of(rows, "nkcluster request");
        for base in [
            "raw TCP ping-pong",
            "raw multiplexed echo",
            "tonic unary gRPC",
        ] {
            ratio_line(flavour, nk, row_of(rows, base));
        }
        println!("{line}");
    }
    println!("total time {:.1} s\n", started.elapsed().as_secs_f64());

    for (flavour, rows) in &results {
        let tag = if flavour.starts_with("multi") {
            "multi_thread"
        } else {
            "current_thread"
        };
        let nk = row_of(rows, "nkcluster request");
        let ping = row_of(rows, "raw TCP ping-pong");
        let mux = row_of(rows, "raw multiplexed echo");
        let p50 = |r: &Row| r.seq.as_ref().map_or(f64::NAN, |l| l.p50.as_secs_f64());
        let pipe = |r: &Row| r.pipe.unwrap_or_default();
        target(
            &format!("rtt_{tag}_vs_raw"),
            p50(nk) / p50(ping),
            Goal::AtMost(1.3),
            "x",
            2,
        );
        target(
            &format!("pipelined_vs_raw_mux_{tag}"),
            pipe(nk).per_sec() / pipe(mux).per_sec(),
            Goal::AtLeast(0.6),
            "x",
            2,
        );
        target(
            &format!("pipelined_cpu_us_{tag}"),
            pipe(nk).cpu_us(),
            Goal::AtMost(2.0),
            "",
            2,
        );
    }
}
