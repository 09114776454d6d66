//! The simulator's commands:
//!
//! - `nkcluster-sim <scenario> <seed>`: replays one turmoil scenario with one seed and
//!   prints its event log (no arguments: list scenarios). With `NKCLUSTER_LOG=info` the
//!   nodes' own log lines go to stderr.
//! - `nkcluster-sim scale [--control N] [--workers N] [--seed S] [--ring-settle-ms MS]
//!   [--gossip-every-ms MS]`: the core-only scenarios at scale, with their report.
//! - `nkcluster-sim faults [--seeds N] [--from S] [size flags]`: core-only runs under
//!   random faults, one line per seed, stopping at the first failing seed (its schedule,
//!   its log, its first violated invariant and the command that replays it).
//! - `nkcluster-sim --reproduce <seed> [size flags]`: one seed's run, bit for bit: its
//!   fault schedule, its log and its first violated invariant.
//!
//! Size flags: `--control N --workers N --safety SECONDS` (default 5, 60, 60).

use std::process::ExitCode;
use std::time::Duration;

const SCALE_USAGE: &str = "nkcluster-sim scale [--control N] [--workers N] [--seed S] [--ring-settle-ms MS] [--gossip-every-ms MS]";

/// mimalloc: the core-only simulation at 100,000 workers allocates and frees small
/// buffers and records by the hundred million over a multi-gigabyte heap; with glibc's
/// malloc, allocation was over a third of its profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log lines stamped with simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(t) => write!(w, "{:>9.3}s", t.as_secs_f64()),
            None => write!(w, "{:>10}", "-"),
        }
    }
}

fn main() -> ExitCode {
    // The nodes' own logs (stderr) when asked: NKCLUSTER_LOG=info.
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_env("NKCLUSTER_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_timer(SimTime)
            .try_init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("scale") => return scale(&args[1..]),
        Some("faults") => return faults(&args[1..], None),
        Some("--reproduce") => return faults(&args[2..], args.get(1)),
        _ => {}
    }
    let [name, seed] = args.as_slice() else {
        eprintln!(
            "usage: nkcluster-sim <scenario> <seed>\n       {SCALE_USAGE}\n       {FAULTS_USAGE}\nscenarios:"
        );
        for (n, _) in nkcluster_sim::scenarios::ALL {
            eprintln!("  {n}");
        }
        return ExitCode::from(2);
    };
    let Some((_, f)) = nkcluster_sim::scenarios::ALL
        .iter()
        .find(|(n, _)| n == name)
    else {
        eprintln!("unknown scenario {name}");
        return ExitCode::from(2);
    };
    let Ok(seed) = seed.parse::<u64>() else {
        eprintln!("seed must be an unsigned integer");
        return ExitCode::from(2);
    };
    match f(seed) {
        Ok(log) => {
            println!("{}", log.join("\n"));
            println!("scenario {name} seed {seed}: ok");
            ExitCode::SUCCESS
        }
        Err(fail) => {
            println!("{}", fail.log.join("\n"));
            println!("scenario {name} seed {seed}: FAILED: {}", fail.error);
            ExitCode::from(1)
        }
    }
}

/// `scale [--control N] [--workers N] [--seed S]`: the core-only simulation at scale.
fn scale(args: &[String]) -> ExitCode {
    let mut size = nkcluster_sim::coresim::scale::Size {
        controls: 128,
        workers: 100_000,
    };
    let mut tuning = nkcluster_sim::coresim::scale::Tuning::default();
    let mut seed = 1u64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--control", Some(v)) => size.controls = v as usize,
            ("--workers", Some(v)) => size.workers = v as usize,
            ("--seed", Some(v)) => seed = v,
            ("--ring-settle-ms", Some(v)) => tuning.ring_settle = Duration::from_millis(v),
            ("--gossip-every-ms", Some(v)) => tuning.gossip_every = Duration::from_millis(v),
            _ => {
                eprintln!("usage: {SCALE_USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match nkcluster_sim::coresim::scale::run(seed, size, tuning, |l| println!("{l}")) {
        Ok(c) => {
            // What the run did, to compare runs of one seed (a replay matches it exactly).
            println!(
                "counters: {} events, {} writes ({} to or from control nodes), {} links up, {} dials failed, {} gossip messages ({} records), {} member changes seen",
                c.events,
                c.writes,
                c.control_writes,
                c.links_up,
                c.dials_failed,
                c.gossip.0,
                c.gossip.1,
                c.member_changes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED (seed {seed}): {e}");
            ExitCode::from(1)
        }
    }
}

const FAULTS_USAGE: &str = "nkcluster-sim faults [--seeds N] [--from S] [--control N] [--workers N] [--safety SECONDS]\n       nkcluster-sim --reproduce <seed> [--control N] [--workers N] [--safety SECONDS]";

/// `faults ...` (`reproduce`: `None`) or `--reproduce <seed> ...`.
fn faults(args: &[String], reproduce: Option<&String>) -> ExitCode {
    use nkcluster_sim::coresim::faultrun::{self, FaultSize};
    let usage = || {
        eprintln!("usage: {FAULTS_USAGE}");
        ExitCode::from(2)
    };
    let mut size = FaultSize::default();
    let (mut from, mut seeds) = (0u64, 100u64);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next().and_then(|v| v.parse::<u64>().ok()) else {
            return usage();
        };
        match flag.as_str() {
            "--control" => size.controls = v as usize,
            "--workers" => size.workers = v as usize,
            "--safety" => size.safety = std::time::Duration::from_secs(v),
            "--seeds" if reproduce.is_none() => seeds = v,
            "--from" if reproduce.is_none() => from = v,
            _ => return usage(),
        }
    }
    let replay = |seed: u64| {
        format!(
            "cargo run --release -p nkcluster-sim{} -- --reproduce {seed} {}",
            // A build with the planted bug replays with it.
            if cfg!(feature = "planted-bug") {
                " --features planted-bug"
            } else {
                ""
            },
            size.flags()
        )
    };
    if let Some(seed) = reproduce {
        let Ok(seed) = seed.parse::<u64>() else {
            return usage();
        };
        let size_ = size.clone();
        let schedule =
            nkcluster_sim::coresim::faults::FaultSchedule::draw(seed, &size_.cast(), size_.safety);
        print!("{schedule}");
        let o = faultrun::run(seed, &size, |l| println!("{l}"));
        return match o.violation {
            None => ExitCode::SUCCESS,
            Some(v) => {
                println!("first violated invariant: {}", v.invariant);
                println!("{v}");
                ExitCode::from(1)
            }
        };
    }
    let started = std::time::Instant::now();
    let failed = faultrun::search(from, seeds, &size, |o| {
        let last = o.log.last().map(String::as_str).unwrap_or("");
        println!(
            "{last} ({} faults, {}, {:.1} s simulated)",
            o.schedule.faults.len(),
            o.workload.summary(),
            o.ended_at.as_secs_f64()
        );
    });
    match failed {
        None => {
            println!(
                "all {seeds} seeds from {from} passed in {:.1} s wall",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Some(o) => {
            print!("{}", o.schedule);
            println!("{}", o.log.join("\n"));
            if let Some(v) = &o.violation {
                println!("first violated invariant: {}", v.invariant);
            }
            println!("first failing seed: {}\nreplay: {}", o.seed, replay(o.seed));
            ExitCode::from(1)
        }
    }
}
