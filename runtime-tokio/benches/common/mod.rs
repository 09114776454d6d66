//! Helpers shared by the bench binaries.

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
