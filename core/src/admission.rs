//! Admission of unauthenticated connections: how many may be handshaking at once, in all
//! and per source address. A peer that has not proved the password gets a small frame
//! limit ([`HANDSHAKE_MAX_FRAME`](crate::conn::HANDSHAKE_MAX_FRAME)) and a handshake
//! deadline; this bounds how many such peers hold memory and a task at the same time.
//! The excess is refused at accept, before any byte is read.
//!
//! **Failed handshakes back off per source address.** Every wrong proof from a source is
//! counted ([`Admission::handle_auth_failure`]); past `free_failures` the source is
//! penalised: a connection it opens is held (nothing read, nothing answered) until the
//! penalty ends, the penalty doubles with each further failure from `base` up to `max`,
//! and while it has failures on record the source may have one unauthenticated
//! connection at a time (the rest are refused at accept with
//! [`Refusal::Backoff`]). A source quiet for `forget_after` starts afresh; at most
//! `max_sources` sources are remembered (the one quiet the longest is forgotten first).
//! Other sources are not affected. Guessing from one address is thus bounded by one guess
//! per penalty, however many connections it opens.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use nkcluster_core::Instant;
//! use nkcluster_core::admission::{Admission, AdmissionConfig, Refusal};
//! let mut a = Admission::new(AdmissionConfig { max_total: 3, max_per_source: 2,
//!                                              ..Default::default() });
//! let (ip, now) = (IpAddr::V4(Ipv4Addr::LOCALHOST), Instant::ZERO);
//! assert_eq!(a.admit(now, ip), Ok(None));
//! assert_eq!(a.admit(now, ip), Ok(None));
//! assert_eq!(a.admit(now, ip), Err(Refusal::PerSource { max: 2 }));
//! a.release(ip); // that connection authenticated or ended
//! assert_eq!(a.admit(now, ip), Ok(None));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use crate::time::Instant;

/// How failed handshakes back off per source address (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceBackoff {
    /// Failures a source may have on record before it is penalised.
    pub free_failures: u32,
    /// The first penalty (then doubled per failure).
    pub base: Duration,
    /// The longest penalty.
    pub max: Duration,
    /// A source without failures for this long starts afresh.
    pub forget_after: Duration,
    /// Sources remembered at most.
    pub max_sources: usize,
}

impl Default for SourceBackoff {
    fn default() -> Self {
        // A mistyped password or two cost nothing more than the reject delay; a
        // guesser gets at most one guess per 5 s after a few seconds. The longest
        // penalty stays below the handshake deadline (10 s), so a held peer still hears
        // its answer.
        SourceBackoff {
            free_failures: 3,
            base: Duration::from_millis(500),
            max: Duration::from_secs(5),
            forget_after: Duration::from_secs(60),
            max_sources: 4096,
        }
    }
}

/// One source's failures on record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Limits on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// At most this many in all.
    pub max_total: usize,
    /// At most this many from one source address.
    pub max_per_source: usize,
    /// How failed handshakes back off per source address.
    pub backoff: SourceBackoff,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        // Generous enough for a few hundred workers (re)connecting at once from one NAT
        // address; a handshake takes milliseconds, so the slots turn over fast.
        AdmissionConfig {
            max_total: 1024,
            max_per_source: 256,
            backoff: SourceBackoff::default(),
        }
    }
}

/// Why a connection was refused at accept. A refusal is not counted: the counts are as
/// before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// Too many unauthenticated connections in all.
    #[error("too_many_handshakes: {max} unauthenticated connections are already open")]
    Total {
        /// The limit.
        max: usize,
    },
    /// Too many unauthenticated connections from this source address.
    #[error(
        "too_many_handshakes: {max} unauthenticated connections from this address are already open"
    )]
    PerSource {
        /// The limit.
        max: usize,
    },
    /// The source failed handshakes recently and already has a connection handshaking.
    #[error(
        "handshake_backoff: {failures} failed handshakes from this address; one connection at a time"
    )]
    Backoff {
        /// Its failures on record.
        failures: u32,
    },
}

impl Refusal {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Total { .. } | Refusal::PerSource { .. } => "too_many_handshakes",
            Refusal::Backoff { .. } => "handshake_backoff",
        }
    }
}

/// Counts of unauthenticated connections. Every successful [`admit`](Self::admit) must be
/// matched by one [`release`](Self::release) (when the connection authenticates or ends).
#[derive(Debug, Default)]
pub struct Admission {
    config: AdmissionConfig,
    total: usize,
    per_source: BTreeMap<IpAddr, usize>,
    /// Failed handshakes per source.
    failures: BTreeMap<IpAddr, Failures>,
    /// The same, by the time of the last failure (oldest first).
    by_last: BTreeSet<(Instant, IpAddr)>,
}

impl Admission {
    /// Empty counts under `config`.
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            config,
            total: 0,
            per_source: BTreeMap::new(),
            failures: BTreeMap::new(),
            by_last: BTreeSet::new(),
        }
    }

    /// A connection from `source` was accepted at `now`: admitted (counted; with the
    /// time until which it is held, nothing read, when the source is penalised) or
    /// refused (not counted; close it).
    pub fn admit(&mut self, now: Instant, source: IpAddr) -> Result<Option<Instant>, Refusal> {
        self.forget(now);
        let record = self.failures.get(&source).copied();
        if let Some(f) = record
            && self.from_source(source) >= 1
        {
            return Err(Refusal::Backoff { failures: f.count });
        }
        if self.total >= self.config.max_total {
            return Err(Refusal::Total {
                max: self.config.max_total,
            });
        }
        let n = self.per_source.entry(source).or_insert(0);
        if *n >= self.config.max_per_source {
            return Err(Refusal::PerSource {
                max: self.config.max_per_source,
            });
        }
        *n += 1;
        self.total += 1;
        Ok(record
            .and_then(|f| self.penalty_end(f))
            .filter(|t| *t > now))
    }

    /// A handshake from `source` failed at `now` on a wrong proof (a wrong password).
    pub fn handle_auth_failure(&mut self, now: Instant, source: IpAddr) {
        self.forget(now);
        let f = match self.failures.get(&source) {
            Some(f) => {
                self.by_last.remove(&(f.last, source));
                Failures {
                    count: f.count.saturating_add(1),
                    last: now,
                }
            }
            None => {
                if self.failures.len() >= self.config.backoff.max_sources
                    && let Some((_, oldest)) = self.by_last.pop_first()
                {
                    self.failures.remove(&oldest);
                }
                Failures {
                    count: 1,
                    last: now,
                }
            }
        };
        self.failures.insert(source, f);
        self.by_last.insert((now, source));
    }

    /// Until when `source`'s new connections are held (`None`: not penalised).
    pub fn penalised_until(&self, now: Instant, source: IpAddr) -> Option<Instant> {
        let f = self.failures.get(&source)?;
        if now.saturating_duration_since(f.last) >= self.config.backoff.forget_after {
            return None;
        }
        self.penalty_end(*f).filter(|t| *t > now)
    }

    /// Sources with failures on record.
    pub fn sources_remembered(&self) -> usize {
        self.failures.len()
    }

    fn penalty_end(&self, f: Failures) -> Option<Instant> {
        let b = &self.config.backoff;
        let over = f.count.checked_sub(b.free_failures).filter(|n| *n > 0)?;
        let factor = 1u32 << (over - 1).min(20);
        Some(f.last + b.base.saturating_mul(factor).min(b.max))
    }

    /// Forgets the sources quiet for `forget_after`.
    fn forget(&mut self, now: Instant) {
        let quiet = self.config.backoff.forget_after;
        while let Some(&(last, ip)) = self.by_last.first() {
            if now.saturating_duration_since(last) < quiet {
                break;
            }
            self.by_last.pop_first();
            self.failures.remove(&ip);
        }
    }

    /// An admitted connection from `source` authenticated or ended.
    pub fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Unauthenticated connections now, in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Unauthenticated connections now from `source`.
    pub fn from_source(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const T0: Instant = Instant::ZERO;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn limits_per_source_and_in_all() {
        let mut a = Admission::new(AdmissionConfig {
            max_total: 4,
            max_per_source: 2,
            ..Default::default()
        });
        assert_eq!(a.admit(T0, ip(2)), Ok(None));
        assert_eq!(a.admit(T0, ip(2)), Ok(None));
        assert_eq!(a.admit(T0, ip(2)), Err(Refusal::PerSource { max: 2 }));
        // Another source still gets in.
        assert_eq!(a.admit(T0, ip(1)), Ok(None));
        assert_eq!(a.admit(T0, ip(3)), Ok(None));
        assert_eq!(a.total(), 4);
        assert_eq!(a.admit(T0, ip(4)), Err(Refusal::Total { max: 4 }));
        // Refusals are not counted; releases free the slots.
        assert_eq!(a.from_source(ip(2)), 2);
        a.release(ip(2));
        a.release(ip(2));
        assert_eq!((a.total(), a.from_source(ip(2))), (2, 0));
        assert_eq!(a.admit(T0, ip(4)), Ok(None));
        // A release for a source with nothing admitted changes nothing.
        a.release(ip(9));
        assert_eq!(a.total(), 3);
        assert_eq!(
            Refusal::Total { max: 4 }.to_string(),
            "too_many_handshakes: 4 unauthenticated connections are already open"
        );
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn backoff() -> Admission {
        Admission::new(AdmissionConfig {
            max_total: 100,
            max_per_source: 10,
            backoff: SourceBackoff {
                free_failures: 2,
                base: Duration::from_millis(500),
                max: Duration::from_secs(4),
                forget_after: Duration::from_secs(60),
                max_sources: 2,
            },
        })
    }

    #[test]
    fn failed_handshakes_back_off_per_source_doubling_up_to_the_max() {
        let mut a = backoff();
        // Free failures: no penalty, but one handshake at a time from that source.
        a.handle_auth_failure(at(0), ip(2));
        assert_eq!(a.penalised_until(at(0), ip(2)), None);
        assert_eq!(a.admit(at(0), ip(2)), Ok(None));
        assert_eq!(a.admit(at(0), ip(2)), Err(Refusal::Backoff { failures: 1 }));
        assert_eq!(
            Refusal::Backoff { failures: 1 }.to_string(),
            "handshake_backoff: 1 failed handshakes from this address; one connection at a time"
        );
        assert_eq!(Refusal::Backoff { failures: 1 }.code(), "handshake_backoff");
        a.release(ip(2));
        a.handle_auth_failure(at(100), ip(2));
        // Past the free ones: 0.5 s, 1 s, 2 s, 4 s, 4 s from the last failure.
        let mut ends = Vec::new();
        for t in [1_000, 2_000, 3_000, 4_000, 5_000] {
            a.handle_auth_failure(at(t), ip(2));
            ends.push(a.penalised_until(at(t), ip(2)));
        }
        assert_eq!(
            ends,
            [at(1_500), at(3_000), at(5_000), at(8_000), at(9_000)].map(Some)
        );
        // A connection now is held until the penalty ends; another source is not.
        assert_eq!(a.admit(at(5_000), ip(2)), Ok(Some(at(9_000))));
        assert_eq!(a.admit(at(5_000), ip(1)), Ok(None));
        assert_eq!(a.admit(at(5_000), ip(1)), Ok(None));
        a.release(ip(2));
        // After the penalty, not held (still one at a time).
        assert_eq!(a.admit(at(9_000), ip(2)), Ok(None));
        assert_eq!(a.penalised_until(at(9_000), ip(2)), None);
        a.release(ip(2));
        // Quiet for a minute: forgotten.
        assert_eq!(a.sources_remembered(), 1);
        assert_eq!(a.admit(at(65_000), ip(2)), Ok(None));
        assert_eq!(a.admit(at(65_000), ip(2)), Ok(None));
        assert_eq!(a.sources_remembered(), 0);
    }

    #[test]
    fn at_most_max_sources_are_remembered_the_quietest_forgotten_first() {
        let mut a = backoff();
        a.handle_auth_failure(at(0), ip(1));
        a.handle_auth_failure(at(10), ip(2));
        a.handle_auth_failure(at(20), ip(1));
        // A third source: 2 (quiet the longest) is forgotten.
        a.handle_auth_failure(at(30), ip(3));
        assert_eq!(a.sources_remembered(), 2);
        assert_eq!(a.admit(at(40), ip(2)), Ok(None));
        assert_eq!(a.admit(at(40), ip(2)), Ok(None));
        assert_eq!(a.admit(at(40), ip(1)), Ok(None));
        assert_eq!(
            a.admit(at(40), ip(1)),
            Err(Refusal::Backoff { failures: 2 })
        );
    }
}
