//! Replays one scenario with one seed and prints its event log:
//! `cargo run -p nkcluster-sim -- <scenario> <seed>` (no arguments: list scenarios).
//! With `NKCLUSTER_LOG=info` the nodes' own log lines go to stderr.

use std::process::ExitCode;

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
    if args.first().map(String::as_str) == Some("scale") {
        return scale(&args[1..]);
    }
    let [name, seed] = args.as_slice() else {
        eprintln!(
            "usage: nkcluster-sim <scenario> <seed>\n       nkcluster-sim scale [--control N] [--workers N] [--seed S]\nscenarios:"
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
    let mut seed = 1u64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--control", Some(v)) => size.controls = v as usize,
            ("--workers", Some(v)) => size.workers = v as usize,
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("usage: nkcluster-sim scale [--control N] [--workers N] [--seed S]");
                return ExitCode::from(2);
            }
        }
    }
    match nkcluster_sim::coresim::scale::run(seed, size, |l| println!("{l}")) {
        Ok(c) => {
            // What the run did, to compare runs of one seed (a replay matches it exactly).
            println!(
                "counters: {} events, {} writes ({} to or from control nodes), {} links up, {} dials failed",
                c.events, c.writes, c.control_writes, c.links_up, c.dials_failed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED (seed {seed}): {e}");
            ExitCode::from(1)
        }
    }
}
