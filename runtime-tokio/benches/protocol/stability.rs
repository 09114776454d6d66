//! `--runs N`: the round-trip stability check of issue 15 (point 2). N consecutive runs,
//! each on fresh runtimes, connections and nodes (as separate processes would be): the
//! sequential round trip of nkcluster next to its raw baseline, p50 of each and their
//! ratio, with context switches per round trip (every thread of the process):
//!
//! - TCP on current_thread and on multi_thread(2), against the raw TCP ping-pong;
//! - ws and wss on multi_thread(2), against raw tungstenite (over rustls for wss) with
//!   nkcluster's own WebSocket configuration.
//!
//! Every run prints its ratios; the target lines judge the worst run of each.
//!
//! A run's ratio is the median, over its [`SLICES`] interleaved slices, of each nkcluster
//! slice's p50 over the p50 of the raw slice just before it: this machine's speed drifts
//! by a fifth or more within a second (two vCPUs whose host cores are shared), and a
//! ratio of p50s pooled over the run compares two mixtures of fast and slow periods,
//! which flips it by up to 1.7x in either direction when the halves of a run fall in
//! different periods (seen with two halves: 1.00x to 1.72x in one set of ten runs).
//!
//! What is left on the 2-worker runtime: the two vCPUs differ in speed by up to 1.5x for
//! tens of milliseconds at a time (the host shares their cores), and a pair of tasks runs
//! on one worker, which one changing now and then (the raw pair is new in each slice).
//! In some runs the slices alternate (raw/nk p50 12.9/9.8 µs, then 8.1/13.7, ...: slice
//! ratios 1.66, 0.90, 1.53, 0.89, ...), and the median falls on the high side (1.49x
//! where the pooled p50s read 1.15x). The geometric mean of the slices' ratios cancels
//! that but is noisier on the other paths (ws worst-of-ten 1.32-1.36x where the median
//! read 1.26-1.31x): the median is kept.

use std::time::Duration;

use crate::common::stacks::{Kind, NkPair, Tls, raw_rtt, raw_tls};
use crate::common::{Goal, context_switches, process_cpu, stats, target};
use crate::runtime;

/// One path's sequential round trips: p50 and context switches per round trip.
#[derive(Clone, Copy)]
struct Side {
    p50: Duration,
    cs: f64,
    /// CPU time of the whole process per round trip (both ends, every thread).
    cpu: Duration,
}

/// nkcluster and its baseline in one run.
#[derive(Clone, Copy)]
struct Pair {
    raw: Side,
    nk: Side,
    /// The median of the slices' ratios (see the module docs).
    ratio: f64,
}

/// Slices of each path, interleaved (raw, nk, raw, nk, ...) so that the machine's speed
/// drift hits both alike.
const SLICES: usize = 10;

fn side(samples: Vec<Duration>, switches: u64, cpu: Duration) -> Side {
    let n = samples.len() as f64;
    Side {
        p50: stats(samples).p50,
        cs: switches as f64 / n,
        cpu: cpu.div_f64(n),
    }
}

/// `n` round trips of each of `kind`'s raw stack and nkcluster over `kind`.
async fn measure(kind: Kind, tls: &Tls, n: usize) -> Pair {
    let nk = NkPair::start(kind).await;
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    let (mut raw_cs, mut nk_cs) = (0, 0);
    let (mut raw_cpu, mut nk_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::with_capacity(SLICES);
    for _ in 0..SLICES {
        let (cs, cpu) = (context_switches(), process_cpu());
        let raw_slice = raw_rtt(kind, tls, n / SLICES, true).await;
        raw_cs += context_switches().saturating_sub(cs);
        raw_cpu += process_cpu().saturating_sub(cpu);
        let (cs, cpu) = (context_switches(), process_cpu());
        let nk_slice = nk.rtt(n / SLICES).await;
        nk_cs += context_switches().saturating_sub(cs);
        nk_cpu += process_cpu().saturating_sub(cpu);
        let (r, k) = (stats(raw_slice.clone()).p50, stats(nk_slice.clone()).p50);
        ratios.push(k.as_secs_f64() / r.as_secs_f64());
        raw.extend(raw_slice);
        ours.extend(nk_slice);
    }
    nk.shutdown();
    ratios.sort_by(f64::total_cmp);
    Pair {
        raw: side(raw, raw_cs, raw_cpu),
        nk: side(ours, nk_cs, nk_cpu),
        ratio: ratios[SLICES / 2],
    }
}

/// The paths of one run: (name, runtime flavour, transport).
const PATHS: [(&str, &str, Kind); 4] = [
    ("rtt_current_thread_vs_raw", "current_thread", Kind::Tcp),
    ("rtt_multi_thread_vs_raw", "multi_thread(2)", Kind::Tcp),
    ("ws_rtt_vs_tungstenite", "multi_thread(2)", Kind::Ws),
    ("wss_rtt_vs_tungstenite", "multi_thread(2)", Kind::Wss),
];

/// Runs the check `runs` times with `n` round trips per path and prints it.
pub fn run(runs: usize, n: usize) {
    println!(
        "round-trip stability: {runs} runs, {n} sequential round trips per path and run \
         (32-byte body), fresh runtime, connections and nodes per path and run; \
         p50 µs raw/nk (pooled), ratio nk/raw (the median of {SLICES} interleaved slices' ratios), \
         context switches and process CPU µs (every thread, warm-up included) per round trip raw/nk"
    );
    for (name, flavour, kind) in PATHS {
        println!(
            "  {name}: nkcluster over {} on {flavour} vs {}",
            kind.name(),
            kind.raw_label()
        );
    }
    let tls = raw_tls();
    let mut all: Vec<Vec<Pair>> = Vec::new();
    for i in 1..=runs {
        let mut line = format!("run {i:>2}");
        let mut pairs = Vec::new();
        for (_, flavour, kind) in PATHS {
            let rt = runtime(flavour);
            let tls = tls.clone();
            // As a task on the runtime's workers, like callers in a daemon.
            let p = rt.block_on(async move {
                tokio::spawn(async move { measure(kind, &tls, n).await })
                    .await
                    .expect("stability task")
            });
            line += &format!(
                " | {} {} {:.1}/{:.1} {:.2}x cs {:.2}/{:.2} cpu {:.1}/{:.1}",
                if flavour.starts_with("multi") {
                    "mt"
                } else {
                    "ct"
                },
                kind.name(),
                p.raw.p50.as_secs_f64() * 1e6,
                p.nk.p50.as_secs_f64() * 1e6,
                p.ratio,
                p.raw.cs,
                p.nk.cs,
                p.raw.cpu.as_secs_f64() * 1e6,
                p.nk.cpu.as_secs_f64() * 1e6
            );
            pairs.push(p);
        }
        println!("{line}");
        all.push(pairs);
    }
    println!();
    for (k, (name, _, _)) in PATHS.iter().enumerate() {
        let mut r: Vec<f64> = all.iter().map(|p| p[k].ratio).collect();
        r.sort_by(f64::total_cmp);
        println!(
            "{name:<28} min {:.2}x median {:.2}x max {:.2}x",
            r[0],
            r[r.len() / 2],
            r[r.len() - 1]
        );
    }
    println!();
    for (k, (name, _, _)) in PATHS.iter().enumerate() {
        let worst = all.iter().map(|p| p[k].ratio).fold(0.0, f64::max);
        target(
            &format!("{name}_worst_of_{runs}"),
            worst,
            Goal::AtMost(1.3),
            "x",
            2,
        );
    }
}
