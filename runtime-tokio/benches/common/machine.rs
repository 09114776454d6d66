//! What the machine charges for waking a thread, printed beside the benches' ratios.
//!
//! The multi-thread paths (a caller on one runtime worker, the link's task on the other,
//! the bulk threads) hand work between threads; a hand-off to a thread that sleeps wakes
//! it, and on a virtual machine waking a thread on the *other* CPU takes an
//! inter-processor interrupt that the host delivers, often to a halted vCPU that it must
//! schedule first. Seen on two machines of this project (`perf` sched tracepoints,
//! waking to running): 15-35 µs a cross-CPU wake-up against 4 µs on the same CPU, and
//! the cost moved with the host's load within minutes. The protocol, transports and
//! jobs benches print this probe's figures first, so that a run's ratios can be read
//! against the state of the machine they were taken on.

use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Round trips of the probe.
const ROUND_TRIPS: usize = 2_000;

/// Pins the calling thread to `cpu`; false if the system refused.
fn pin(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// The p50 of a round trip between two threads pinned to `a` and `b` (each waits in a
/// blocking receive for the other: two wake-ups a round trip), or `None` when the
/// threads could not be pinned.
fn wake_round_trip(a: usize, b: usize) -> Option<Duration> {
    let (to_b, from_a) = sync_channel::<()>(1);
    let (to_a, from_b) = sync_channel::<()>(1);
    let echo = std::thread::spawn(move || {
        let pinned = pin(b);
        while from_a.recv().is_ok() {
            if to_a.send(()).is_err() {
                break;
            }
        }
        pinned
    });
    let pinned = pin(a);
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        if to_b.send(()).is_err() || from_b.recv().is_err() {
            break;
        }
        samples.push(t.elapsed());
    }
    drop(to_b);
    let echo_pinned = echo.join().unwrap_or(false);
    // This thread goes back to every CPU for the bench that follows.
    let mut all = CpuSet::new();
    for cpu in 0..CpuSet::count() {
        let _ = all.set(cpu);
    }
    let _ = sched_setaffinity(Pid::from_raw(0), &all);
    if !(pinned && echo_pinned) || samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some(samples[samples.len() / 2])
}

/// One line on the machine's thread wake-up cost, `when` (before or after the bench):
/// the p50 round trip between two threads on the same CPU and on two CPUs (two wake-ups
/// each).
pub fn wake_up_line(when: &str) -> String {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let us =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e6));
    let same = wake_round_trip(0, 0);
    let cross = if cpus > 1 {
        wake_round_trip(0, 1)
    } else {
        None
    };
    format!(
        "machine {when}: thread wake-up round trip p50 (two wake-ups, blocking channel), same CPU {} µs, CPU 0 <-> 1 {} µs",
        us(same),
        us(cross)
    )
}
