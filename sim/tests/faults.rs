//! The core-only simulator under random faults: seeds whose fault schedules must pass
//! every invariant (`NKCLUSTER_SIM_SEEDS`, default 10; long runs:
//! `cargo run --release -p nkcluster-sim -- faults --seeds 10000`), a seed that replays
//! bit for bit, and, built with the `planted-bug` feature
//! (`cargo test --release -p nkcluster-sim --features planted-bug --test faults`), the
//! search that must find the core's planted bug and name the request invariant.

use nkcluster_sim::coresim::faultrun::{FaultSize, Outcome, run, search};

/// Seeds per run: `NKCLUSTER_SIM_SEEDS` (default 10).
#[cfg(not(feature = "planted-bug"))]
fn seeds() -> u64 {
    std::env::var("NKCLUSTER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// The first seed: `NKCLUSTER_SIM_SEED` (default 0).
#[cfg(not(feature = "planted-bug"))]
fn first_seed() -> u64 {
    std::env::var("NKCLUSTER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn report(o: &Outcome, size: &FaultSize) -> String {
    format!(
        "{}{}\nreplay: cargo run --release -p nkcluster-sim -- --reproduce {} {}",
        o.schedule,
        o.log.join("\n"),
        o.seed,
        size.flags()
    )
}

#[cfg(not(feature = "planted-bug"))]
#[test]
fn random_fault_schedules_keep_every_invariant() {
    let size = FaultSize::default();
    let failed = search(first_seed(), seeds(), &size, |o| {
        eprintln!("{}", o.log.last().map(String::as_str).unwrap_or(""));
    });
    if let Some(o) = failed {
        panic!(
            "seed {} failed: {}\n{}",
            o.seed,
            o.violation
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            report(&o, &size)
        );
    }
}

#[cfg(not(feature = "planted-bug"))]
#[test]
fn a_fault_seed_replays_bit_for_bit() {
    let size = FaultSize::default();
    let a = run(3, &size, |_| {});
    let b = run(3, &size, |_| {});
    assert_eq!(a.schedule, b.schedule);
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert!(a.violation.is_none(), "{}", report(&a, &size));
    let c = run(4, &size, |_| {});
    assert_ne!(a.schedule, c.schedule, "another seed, another schedule");
    assert_ne!(
        a.fingerprint(),
        c.fingerprint(),
        "another seed, another run"
    );
}

#[cfg(feature = "planted-bug")]
#[test]
fn the_fault_search_finds_the_planted_bug_within_100_seeds() {
    let size = FaultSize::default();
    let found = search(0, 100, &size, |_| {}).expect("the planted bug is found within 100 seeds");
    let v = found.violation.clone().expect("a violation");
    eprintln!(
        "found at seed {}: {v}\n{}",
        found.seed,
        report(&found, &size)
    );
    assert_eq!(v.invariant, "one_reply_per_request", "{v}");
    // The failure replays bit for bit.
    let again = run(found.seed, &size, |_| {});
    assert_eq!(again.fingerprint(), found.fingerprint());
}
