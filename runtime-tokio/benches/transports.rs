//! Transport benchmark, one run, one table: for each transport (tcp, tls, ws, wss),
//! request round trip and bulk throughput of nkcluster next to a raw baseline over the
//! same stack, with their ratio.
//!
//! - Round trip: 32-byte body, sequential. nkcluster: two in-process nodes (a control
//!   listening on the transport, a worker that `connect`s to it) and `nkcluster.echo`.
//!   Raw: a length-prefixed ping-pong over plain TCP or plain tokio-rustls (TLS 1.3, ring),
//!   a binary-message ping-pong over plain tokio-tungstenite (over TCP, or over rustls).
//! - Bulk: 1 MiB bodies. nkcluster: requests to a `sink` handler (empty reply), 8 in
//!   flight, timed until the last reply. Raw: a one-way copy of the same bytes in 1 MiB
//!   writes (1 MiB binary messages on WebSockets), the receiver reading everything and
//!   acknowledging the end with one byte (one small message).
//!
//! Raw WebSockets use tungstenite's default configuration; the extra "nk ws cfg" rows
//! run the same baseline with the configuration nkcluster's transport uses (8 KiB read
//! buffer, no write buffering), to separate the library's cost from ours. The target check
//! of a transport with two baselines uses the better raw figure of each metric. Round
//! trip means are also given against raw TCP.
//!
//! Bulk also reports CPU cost: the process's CPU time (every thread, user and kernel, both
//! ends of the link) per GB moved, from Linux schedstat. On a busy machine MB/s swings
//! with the CPU left over; CPU per GB shows what each stack costs regardless.
//!
//! Every client runs as a task on one tokio multi-thread runtime with 2 workers.
//!
//! Run: `cargo bench -p nkcluster --bench transports` (`-- --quick` for a short run).

mod common;

use common::stacks::{
    Kind, NkPair, RTT_BODY, TIMEOUT, Tls, raw_rtt, raw_tls, tcp_pair, tls_pair, ws_pair,
};
use common::{Goal, Lat, stats, target};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkcluster::net::{Stream, TokioNet};
use nkcluster::node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 8;
/// Untimed bytes sent before each bulk measurement.
const BULK_WARMUP: usize = 8 * CHUNK;
/// Receive buffer of the raw stream copies (the driver's read buffer grows to this size).
const RAW_READ_BUF: usize = 256 * 1024;
/// Round trips run in this many interleaved rounds per variant, samples pooled.
const RTT_ROUNDS: usize = 5;
/// Bulk runs this many interleaved rounds per variant; the best counts.
const BULK_ROUNDS: usize = 5;

/// The timed part of one bulk run.
#[derive(Clone, Copy, Default)]
struct Bulk {
    secs: f64,
    /// CPU time of the whole process (every thread, user and kernel), ns.
    cpu_ns: u64,
}

/// CPU time consumed so far by this process's live threads, ns (Linux schedstat; 0
/// elsewhere). The runtime's threads live for the whole run, so differences are exact.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One row of results: round trip, bulk throughput (MB/s, 10^6 bytes) and bulk CPU cost.
struct Row {
    label: String,
    rtt: Lat,
    mbps: f64,
    /// CPU ms per GB moved (all rounds), when measurable.
    cpu_ms_per_gb: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// Raw stacks.

/// One-way copy in `CHUNK` writes; the receiver acknowledges the warm-up and the end with
/// one byte each. Returns the timed part.
async fn stream_bulk<C: Stream, S: Stream>(mut c: C, mut s: S, total: usize) -> Bulk {
    tokio::spawn(async move {
        let mut buf = vec![0u8; RAW_READ_BUF];
        for phase in [BULK_WARMUP, total] {
            let mut left = phase;
            while left > 0 {
                let want = left.min(buf.len());
                let n = s.read(&mut buf[..want]).await.expect("read");
                assert!(n > 0, "eof in bulk copy");
                left -= n;
            }
            s.write_all(&[1]).await.expect("ack");
            s.flush().await.expect("flush");
        }
    });
    let chunk = vec![0x5au8; CHUNK];
    let mut ack = [0u8; 1];
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let (t, c0) = (Instant::now(), cpu_ns());
        for _ in 0..phase / CHUNK {
            c.write_all(&chunk).await.expect("write");
        }
        c.flush().await.expect("flush");
        c.read_exact(&mut ack).await.expect("ack");
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    let _ = c.shutdown().await;
    out
}

/// One-way copy in `CHUNK` binary messages; the receiver acknowledges the warm-up and the
/// end with one small message each. Returns the timed part.
async fn ws_bulk<C: Stream, S: Stream>(
    mut c: WebSocketStream<C>,
    mut s: WebSocketStream<S>,
    total: usize,
) -> Bulk {
    tokio::spawn(async move {
        for phase in [BULK_WARMUP, total] {
            let mut left = phase;
            while left > 0 {
                match s.next().await {
                    Some(Ok(WsMessage::Binary(b))) => left -= b.len(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            s.send(WsMessage::Binary(Bytes::from_static(&[1])))
                .await
                .expect("ack");
        }
    });
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let (t, c0) = (Instant::now(), cpu_ns());
        for _ in 0..phase / CHUNK {
            c.feed(WsMessage::Binary(chunk.clone()))
                .await
                .expect("feed");
        }
        c.flush().await.expect("flush");
        match c.next().await {
            Some(Ok(WsMessage::Binary(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    let _ = c.close(None).await;
    out
}

async fn raw_bulk(kind: Kind, tls: &Tls, total: usize, nk_cfg: bool) -> Bulk {
    match kind {
        Kind::Tcp => {
            let (c, s) = tcp_pair().await;
            stream_bulk(c, s, total).await
        }
        Kind::Tls => {
            let (c, s) = tls_pair(tls).await;
            stream_bulk(c, s, total).await
        }
        Kind::Ws => {
            let (c, s) = tcp_pair().await;
            let (c, s) = ws_pair(c, s, "ws", nk_cfg).await;
            ws_bulk(c, s, total).await
        }
        Kind::Wss => {
            let (c, s) = tls_pair(tls).await;
            let (c, s) = ws_pair(c, s, "wss", nk_cfg).await;
            ws_bulk(c, s, total).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// nkcluster.

/// `IN_FLIGHT` requests of `CHUNK` bytes at a time to the sink, each from its own task.
async fn nk_bulk(w1: &Node<TokioNet>, total: usize) -> Bulk {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let count = phase / CHUNK;
        let (t, c0) = (Instant::now(), cpu_ns());
        let mut set = JoinSet::new();
        let mut sent = 0;
        while sent < count || !set.is_empty() {
            while sent < count && set.len() < IN_FLIGHT {
                let w = w1.clone();
                let b = chunk.clone();
                set.spawn(async move { w.request("c1", "sink", b, TIMEOUT).await });
                sent += 1;
            }
            let r = set.join_next().await.expect("a task").expect("joined");
            assert!(r.expect("sink reply").is_empty());
        }
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    RawNkWsConfig,
    Nk,
}

/// Measures every variant of `kind`, interleaved round by round so that background load
/// hits them alike: round-trip samples are pooled, bulk keeps each variant's best round.
async fn measure(kind: Kind, tls: &Tls, n: usize, total: usize) -> Vec<Row> {
    let mut variants = vec![Variant::Raw];
    if matches!(kind, Kind::Ws | Kind::Wss) {
        variants.push(Variant::RawNkWsConfig);
    }
    variants.push(Variant::Nk);
    let nk = NkPair::start(kind).await;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for _ in 0..RTT_ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let s = match v {
                Variant::Raw => raw_rtt(kind, tls, n / RTT_ROUNDS, false).await,
                Variant::RawNkWsConfig => raw_rtt(kind, tls, n / RTT_ROUNDS, true).await,
                Variant::Nk => nk.rtt(n / RTT_ROUNDS).await,
            };
            samples[i].extend(s);
        }
    }
    let mut best = vec![0f64; variants.len()];
    let mut cpu = vec![0u64; variants.len()];
    for _ in 0..BULK_ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let b = match v {
                Variant::Raw => raw_bulk(kind, tls, total, false).await,
                Variant::RawNkWsConfig => raw_bulk(kind, tls, total, true).await,
                Variant::Nk => nk_bulk(&nk.w1, total).await,
            };
            best[i] = best[i].max(total as f64 / b.secs / 1e6);
            cpu[i] += b.cpu_ns;
        }
    }
    nk.shutdown();
    variants
        .iter()
        .zip(samples)
        .zip(best)
        .zip(cpu)
        .map(|(((v, s), mbps), cpu)| Row {
            label: match v {
                Variant::Raw => kind.raw_label().to_owned(),
                Variant::RawNkWsConfig => format!("{}, nk ws cfg", kind.raw_label()),
                Variant::Nk => "nkcluster".to_owned(),
            },
            rtt: stats(s),
            mbps,
            cpu_ms_per_gb: (cpu > 0).then(|| cpu as f64 / 1e6 / (BULK_ROUNDS * total) as f64 * 1e9),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------

/// Width of the label column.
const LABEL: usize = 44;

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only tls,wss`: a subset of the transports (for profiling one of them).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect());
    let kinds: Vec<Kind> = [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss]
        .into_iter()
        .filter(|k| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|n| n == k.name()))
        })
        .collect();
    let n = if quick { 1_000 } else { 10_000 };
    let total = if quick { 26 * CHUNK } else { 256 * CHUNK };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    // Everything runs as a spawned task, on the runtime's workers, like callers in a daemon.
    let results = rt.block_on(async move {
        tokio::spawn(async move {
            let tls = raw_tls();
            let mut out = Vec::new();
            for kind in kinds {
                out.push((kind, measure(kind, &tls, n, total).await));
            }
            out
        })
        .await
        .expect("bench task")
    });

    println!(
        "nkcluster transport bench ({}): loopback, tokio multi_thread(2), every client a task",
        if quick { "quick" } else { "full" }
    );
    println!(
        "round trip: {RTT_BODY}-byte body, {n} sequential in {RTT_ROUNDS} interleaved rounds (µs)"
    );
    println!(
        "bulk: {} MiB in 1 MiB messages, best of {BULK_ROUNDS} interleaved rounds (MB/s = 10^6 \
         B/s); nkcluster: {IN_FLIGHT} requests in flight to an empty-reply handler; raw: \
         one-way copy",
        total / CHUNK
    );
    println!(
        "cpu ms/GB: CPU time of the whole process (all threads, user + kernel, both ends) \
         per GB moved, mean over the rounds (less sensitive to other load than MB/s)"
    );
    let line = "-".repeat(LABEL + 60);
    println!(
        "\n{:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "", "", "rtt mean", "rtt p50", "rtt p99", "bulk MB/s", "cpu ms/GB"
    );
    println!("{line}");
    let raw_tcp_mean = results
        .iter()
        .find(|(k, _)| *k == Kind::Tcp)
        .map(|(_, rows)| rows[0].rtt.mean);
    for (kind, rows) in &results {
        let name = kind.name();
        for r in rows {
            println!(
                "{name:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>11.0} {:>11}",
                r.label,
                us(r.rtt.mean),
                us(r.rtt.p50),
                us(r.rtt.p99),
                r.mbps,
                r.cpu_ms_per_gb
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"))
            );
        }
        let nk = &rows[rows.len() - 1];
        let raws = &rows[..rows.len() - 1];
        for raw in raws {
            let cpu = match (nk.cpu_ms_per_gb, raw.cpu_ms_per_gb) {
                (Some(a), Some(b)) => format!("{:.2}x", a / b),
                _ => "-".to_owned(),
            };
            println!(
                "{name:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>10.2}x {cpu:>11}",
                format!("ratio nk / {}", raw.label),
                ratio(nk.rtt.mean, raw.rtt.mean),
                ratio(nk.rtt.p50, raw.rtt.p50),
                ratio(nk.rtt.p99, raw.rtt.p99),
                nk.mbps / raw.mbps
            );
        }
        if let Some(tcp) = raw_tcp_mean
            && *kind != Kind::Tcp
        {
            println!(
                "{name:<5} {:<LABEL$} {:>9}",
                "ratio nk / raw TCP",
                ratio(nk.rtt.mean, tcp)
            );
        }
        // Against the best raw figure of each metric when there are two baselines. The
        // round trip is judged by its p50: a mean is dominated by a few outliers on a
        // shared machine (the p99 column shows the tail).
        let best_rtt = raws.iter().map(|r| r.rtt.p50).min().expect("a raw row");
        let best_mbps = raws.iter().map(|r| r.mbps).fold(0.0, f64::max);
        let rtt_ok = nk.rtt.p50.as_secs_f64() <= 1.3 * best_rtt.as_secs_f64();
        let bulk_ok = nk.mbps >= 0.8 * best_mbps;
        println!(
            "{name:<5} {:<LABEL$} {:>29} {:>11}",
            "target: rtt p50 <= 1.30x, bulk >= 0.80x",
            if rtt_ok { "rtt ok" } else { "rtt MISSED" },
            if bulk_ok { "bulk ok" } else { "bulk MISSED" }
        );
        println!("{line}");
    }
    println!("total time {:.1} s\n", started.elapsed().as_secs_f64());
    // Issue 15 targets: WebSocket round trips (p50) against raw tungstenite with the same
    // configuration as nkcluster's, TCP bulk against a raw copy.
    for (kind, rows) in &results {
        let nk = &rows[rows.len() - 1];
        let p50 = |r: &Row| r.rtt.p50.as_secs_f64();
        match kind {
            Kind::Ws | Kind::Wss => {
                let same_cfg = &rows[rows.len() - 2];
                target(
                    &format!("{}_rtt_vs_tungstenite", kind.name()),
                    p50(nk) / p50(same_cfg),
                    Goal::AtMost(1.3),
                    "x",
                    2,
                );
            }
            Kind::Tcp => target(
                "tcp_bulk_vs_raw",
                nk.mbps / rows[0].mbps,
                Goal::AtLeast(0.8),
                "x",
                2,
            ),
            Kind::Tls => {}
        }
    }
}
