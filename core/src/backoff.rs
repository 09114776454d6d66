//! Reconnection backoff: exponential with jitter, bounded, and with an optional attempt
//! budget. Randomness comes in as an argument so a seed replays the same delays.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of any delay (before jitter).
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

/// Tracks consecutive failures of one connection target.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure. Returns the delay before the next attempt, or `None` when the
    /// attempt budget is spent. `random` is any random `u64`: it picks a delay uniformly
    /// in `[d/2, d]`, where `d = min(initial * 2^(failures-1), max)`.
    pub fn on_failure(&mut self, random: u64) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if let Some(m) = self.config.max_attempts
            && self.failures >= m
        {
            return None;
        }
        let exp = self.failures.saturating_sub(1).min(31);
        let d = self
            .config
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.config.max);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let jitter = if half == 0 { 0 } else { random % (half + 1) };
        Some(Duration::from_nanos(half + jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_in_range() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            max_attempts: None,
        });
        // random = 0 gives the lower bound, u64::MAX % (half+1) something within range.
        assert_eq!(b.on_failure(0), Some(Duration::from_millis(50)));
        assert_eq!(b.on_failure(0), Some(Duration::from_millis(100)));
        assert_eq!(b.on_failure(0), Some(Duration::from_millis(200)));
        assert_eq!(b.on_failure(0), Some(Duration::from_millis(200)));
        for r in [1u64, 12345, u64::MAX] {
            let d = b.on_failure(r).expect("no budget");
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
        b.reset();
        assert_eq!(b.on_failure(0), Some(Duration::from_millis(50)));
    }

    #[test]
    fn attempt_budget_is_enforced() {
        let mut b = Backoff::new(BackoffConfig {
            max_attempts: Some(2),
            ..Default::default()
        });
        assert!(b.on_failure(0).is_some());
        assert_eq!(b.on_failure(0), None);
        assert_eq!(b.failures(), 2);
    }
}
