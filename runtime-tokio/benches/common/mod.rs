//! Helpers shared by the bench binaries: latency summaries, the process's CPU time, the
//! machine's thread wake-up cost, and the closing `target <name> <measured> <goal> ok|miss` lines of issue 15.
// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod machine;
pub mod stacks;

use std::time::Duration;

/// Latency summary of a run.
pub struct Lat {
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// Summarises round-trip samples (at least one).
pub fn stats(mut v: Vec<Duration>) -> Lat {
    v.sort_unstable();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    Lat {
        mean,
        p50: v[v.len() / 2],
        p99: v[v.len() * 99 / 100],
    }
}

/// CPU time (user + kernel) of this whole process so far, every thread counted, those
/// that have exited too (`getrusage(RUSAGE_SELF)`).
pub fn process_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            us(u.user_time()) + us(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Profiles the timed part alone: with `NKCLUSTER_PERF_CTL` naming the control FIFO of
/// `perf record --control fifo:<ctl> -D -1 ...`, sends it `cmd` (`enable`, `disable`).
pub fn perf_control(cmd: &str) {
    if let Some(path) = std::env::var_os("NKCLUSTER_PERF_CTL") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("perf control FIFO");
        writeln!(f, "{cmd}").expect("perf control");
    }
}

/// Which way a target goes.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The measured figure must be at most this.
    AtMost(f64),
    /// The measured figure must be at least this.
    AtLeast(f64),
}

/// One closing target line, `target <name> <measured> <goal> ok|miss`: `unit` follows both
/// figures (`"x"` for ratios, `""` for plain numbers), printed with `decimals` digits.
pub fn target_line(name: &str, measured: f64, goal: Goal, unit: &str, decimals: usize) -> String {
    let (sign, bound, ok) = match goal {
        Goal::AtMost(b) => ("<=", b, measured <= b),
        Goal::AtLeast(b) => (">=", b, measured >= b),
    };
    format!(
        "target {name} {measured:.decimals$}{unit} {sign}{bound:.decimals$}{unit} {}",
        if ok { "ok" } else { "miss" }
    )
}

/// Prints [`target_line`].
pub fn target(name: &str, measured: f64, goal: Goal, unit: &str, decimals: usize) {
    println!("{}", target_line(name, measured, goal, unit, decimals));
}

/// Context switches of every live thread of this process so far (voluntary and not; a
/// thread that exits takes its count along, so subtract with `saturating_sub`;
/// from `/proc/self/task/*/status`; 0 elsewhere).
pub fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The environment of the benches' worker nodes: real sockets, and fixed machine figures
/// in their reports (a worker measures its own machine when it links; with thousands of
/// workers in one bench process, that probing would be counted against the control node).
pub fn fixed_figures_env() -> nkcluster::node::Env<nkcluster::net::TokioNet> {
    nkcluster::node::Env {
        machine_figures: Some(nkcluster_core::cluster::Stats {
            cpu_percent: 1.0,
            load_avg: [0.1, 0.1, 0.1],
            mem_total: 1 << 30,
            mem_used: 1 << 29,
            disks: Vec::new(),
            time_ms: 0,
            os: "bench".into(),
            uptime_s: 1,
        }),
        ..nkcluster::node::Env::real()
    }
}
