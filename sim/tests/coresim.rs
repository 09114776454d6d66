//! The core-only simulator at a size CI can afford: every scenario (join storm, steady
//! state, control crash, split and heal, rolling restart) converges over a few seeds,
//! and a seed replays bit for bit. The full size is a command:
//! `cargo run --release -p nkcluster-sim -- scale --control 128 --workers 100000`.

use nkcluster_sim::coresim::scale::{Size, Tuning, run};

const SMALL: Size = Size {
    controls: 6,
    workers: 300,
};

/// Seeds per run: `NKCLUSTER_SIM_SEEDS` (default 3).
fn seeds() -> u64 {
    std::env::var("NKCLUSTER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

#[test]
fn every_scenario_converges_at_a_small_size() {
    for seed in 0..seeds() {
        let mut lines = Vec::new();
        let r = run(seed, SMALL, Tuning::default(), |l| lines.push(l.to_owned()));
        if let Err(e) = r {
            panic!(
                "seed {seed} failed: {e}\nreport so far:\n{}\nreplay: cargo run --release -p nkcluster-sim -- scale --control {} --workers {} --seed {seed}",
                lines.join("\n"),
                SMALL.controls,
                SMALL.workers
            );
        }
        for scenario in ["join storm", "steady", "crash", "split+heal", "rolling"] {
            assert!(
                lines.iter().any(|l| *l == format!("{scenario}: converged")),
                "seed {seed}: no `{scenario}: converged` line in\n{}",
                lines.join("\n")
            );
        }
    }
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let a = run(7, SMALL, Tuning::default(), |_| {}).expect("seed 7");
    let b = run(7, SMALL, Tuning::default(), |_| {}).expect("seed 7 again");
    assert_eq!(a, b);
    let c = run(8, SMALL, Tuning::default(), |_| {}).expect("seed 8");
    assert_ne!(a, c, "another seed, another run");
}
