//! Admission of unauthenticated connections: how many may be handshaking at once, in all
//! and per source address. A peer that has not proved the password gets a small frame
//! limit ([`HANDSHAKE_MAX_FRAME`](crate::conn::HANDSHAKE_MAX_FRAME)) and a handshake
//! deadline; this bounds how many such peers hold memory and a task at the same time.
//! The excess is refused at accept, before any byte is read.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use nkcluster_core::admission::{Admission, AdmissionConfig, Refusal};
//! let mut a = Admission::new(AdmissionConfig { max_total: 3, max_per_source: 2 });
//! let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
//! assert_eq!(a.admit(ip), Ok(()));
//! assert_eq!(a.admit(ip), Ok(()));
//! assert_eq!(a.admit(ip), Err(Refusal::PerSource { max: 2 }));
//! a.release(ip); // that connection authenticated or ended
//! assert_eq!(a.admit(ip), Ok(()));
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use thiserror::Error;

/// Limits on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// At most this many in all.
    pub max_total: usize,
    /// At most this many from one source address.
    pub max_per_source: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        // Generous enough for a few hundred workers (re)connecting at once from one NAT
        // address; a handshake takes milliseconds, so the slots turn over fast.
        AdmissionConfig {
            max_total: 1024,
            max_per_source: 256,
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
}

impl Refusal {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        "too_many_handshakes"
    }
}

/// Counts of unauthenticated connections. Every successful [`admit`](Self::admit) must be
/// matched by one [`release`](Self::release) (when the connection authenticates or ends).
#[derive(Debug, Default)]
pub struct Admission {
    config: AdmissionConfig,
    total: usize,
    per_source: BTreeMap<IpAddr, usize>,
}

impl Admission {
    /// Empty counts under `config`.
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            config,
            total: 0,
            per_source: BTreeMap::new(),
        }
    }

    /// A connection from `source` was accepted: admitted (counted) or refused (not
    /// counted; close it).
    pub fn admit(&mut self, source: IpAddr) -> Result<(), Refusal> {
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
        Ok(())
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

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn limits_per_source_and_in_all() {
        let mut a = Admission::new(AdmissionConfig {
            max_total: 4,
            max_per_source: 2,
        });
        assert_eq!(a.admit(ip(2)), Ok(()));
        assert_eq!(a.admit(ip(2)), Ok(()));
        assert_eq!(a.admit(ip(2)), Err(Refusal::PerSource { max: 2 }));
        // Another source still gets in.
        assert_eq!(a.admit(ip(1)), Ok(()));
        assert_eq!(a.admit(ip(3)), Ok(()));
        assert_eq!(a.total(), 4);
        assert_eq!(a.admit(ip(4)), Err(Refusal::Total { max: 4 }));
        // Refusals are not counted; releases free the slots.
        assert_eq!(a.from_source(ip(2)), 2);
        a.release(ip(2));
        a.release(ip(2));
        assert_eq!((a.total(), a.from_source(ip(2))), (2, 0));
        assert_eq!(a.admit(ip(4)), Ok(()));
        // A release for a source with nothing admitted changes nothing.
        a.release(ip(9));
        assert_eq!(a.total(), 3);
        assert_eq!(
            Refusal::Total { max: 4 }.to_string(),
            "too_many_handshakes: 4 unauthenticated connections are already open"
        );
    }
}
