//! Rate-limited refusal logs: at most `burst` lines per source per interval (a window
//! opens with the source's first line), and the first line after the window says how
//! many were left out. A flood of refused connections (or refused messages from one
//! peer) thus writes a few lines, not one per attempt. Bounded: at most `max_sources`
//! sources are tracked (the one whose line is oldest is forgotten first; its count of
//! left-out lines is lost).
//!
//! ```
//! use std::time::Duration;
//! use nkcluster_core::Instant;
//! use nkcluster_core::loglimit::LogLimiter;
//! let mut l = LogLimiter::new(Duration::from_secs(10), 1, 1024);
//! let t = Instant::from_millis;
//! assert_eq!(l.note(t(0), "127.0.0.2").map(|n| n.suffix("127.0.0.2")), Some(String::new()));
//! for ms in 1..5_000 {
//!     assert!(l.note(t(ms), "127.0.0.2").is_none()); // left out
//! }
//! assert_eq!(
//!     l.note(t(10_000), "127.0.0.2").map(|n| n.suffix("127.0.0.2")),
//!     Some(" (and 4,999 more from 127.0.0.2 in the last 10 s)".to_owned())
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::time::Instant;

/// A line to write: how many of the source's lines were left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Lines left out since the source's previous line.
    pub left_out: u64,
    /// The interval.
    pub interval: Duration,
}

impl Line {
    /// Text to append to the line: empty when nothing was left out, else
    /// ` (and 4,999 more from <source> in the last 10 s)`.
    pub fn suffix(&self, source: &str) -> String {
        if self.left_out == 0 {
            return String::new();
        }
        format!(
            " (and {} more from {source} in the last {} s)",
            thousands(self.left_out),
            self.interval.as_secs()
        )
    }
}

/// `4999` as `4,999`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the window opened (the source's first line in it).
    logged: Instant,
    /// Lines written in the window.
    written: u32,
    left_out: u64,
}

/// The limiter. See the module docs.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    burst: u32,
    max_sources: usize,
    sources: BTreeMap<String, Window>,
    /// The same, by when their last line was written (oldest first).
    by_logged: BTreeSet<(Instant, String)>,
}

impl LogLimiter {
    /// `burst` lines per source per `interval`; at most `max_sources` sources tracked.
    pub fn new(interval: Duration, burst: u32, max_sources: usize) -> Self {
        LogLimiter {
            interval,
            burst: burst.max(1),
            max_sources: max_sources.max(1),
            sources: BTreeMap::new(),
            by_logged: BTreeSet::new(),
        }
    }

    /// Something to log about `source` at `now`: the line to write, or `None` (left out,
    /// counted).
    pub fn note(&mut self, now: Instant, source: &str) -> Option<Line> {
        if let Some(w) = self.sources.get_mut(source)
            && now.saturating_duration_since(w.logged) < self.interval
        {
            if w.written < self.burst {
                w.written += 1;
                return Some(Line {
                    left_out: 0,
                    interval: self.interval,
                });
            }
            w.left_out += 1;
            return None;
        }
        let left_out = match self.sources.remove(source) {
            Some(w) => {
                self.by_logged.remove(&(w.logged, source.to_owned()));
                w.left_out
            }
            None => {
                if self.sources.len() >= self.max_sources
                    && let Some((_, oldest)) = self.by_logged.pop_first()
                {
                    self.sources.remove(&oldest);
                }
                0
            }
        };
        self.sources.insert(
            source.to_owned(),
            Window {
                logged: now,
                written: 1,
                left_out: 0,
            },
        );
        self.by_logged.insert((now, source.to_owned()));
        Some(Line {
            left_out,
            interval: self.interval,
        })
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn one_line_per_source_per_interval_with_the_count_left_out() {
        let mut l = LogLimiter::new(Duration::from_secs(10), 1, 8);
        let line = |left_out| {
            Some(Line {
                left_out,
                interval: Duration::from_secs(10),
            })
        };
        assert_eq!(l.note(t(0), "a"), line(0));
        assert_eq!(l.note(t(1), "a"), None);
        assert_eq!(l.note(t(2), "a"), None);
        // Another source has its own window.
        assert_eq!(l.note(t(3), "b"), line(0));
        assert_eq!(l.note(t(9_999), "a"), None);
        assert_eq!(l.note(t(10_000), "a"), line(3));
        assert_eq!(l.note(t(10_001), "a"), None);
        // A quiet source's next line says nothing was left out.
        assert_eq!(l.note(t(30_000), "b"), line(0));
        assert_eq!(
            line(3).map(|n| n.suffix("a")),
            Some(" (and 3 more from a in the last 10 s)".into())
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn a_burst_of_lines_then_the_rest_are_left_out_until_the_window_ends() {
        let mut l = LogLimiter::new(Duration::from_secs(10), 3, 8);
        let got: Vec<Option<u64>> = [0, 1, 2, 3, 4, 9_999, 10_000, 10_001]
            .into_iter()
            .map(|ms| l.note(t(ms), "a").map(|n| n.left_out))
            .collect();
        assert_eq!(
            got,
            [
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None,
                Some(3),
                Some(0)
            ]
        );
    }

    #[test]
    fn at_most_max_sources_the_oldest_line_forgotten_first() {
        let mut l = LogLimiter::new(Duration::from_secs(10), 1, 2);
        assert!(l.note(t(0), "a").is_some());
        assert!(l.note(t(1), "b").is_some());
        assert_eq!(l.note(t(2), "a"), None);
        // A third source: `a` (logged first) is forgotten, so its next note is a line.
        assert!(l.note(t(3), "c").is_some());
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.note(t(4), "a"),
            Some(Line {
                left_out: 0,
                interval: Duration::from_secs(10)
            })
        );
        assert_eq!(l.note(t(5), "c"), None);
    }
}
