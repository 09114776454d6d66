//! The shell's clock: converts tokio's (possibly simulated) monotonic time into the core's
//! [`Instant`] and back. Under turmoil, tokio time is the simulation's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nkcluster_core::Instant;
use rustls_pki_types::UnixTime;

/// A time origin shared by all machines of one node.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
    wall_origin_ns: u64,
}

impl Clock {
    /// A clock whose origin is now; `wall_origin_ns` is the wall clock at that origin
    /// (`None`: read the system clock).
    pub fn new(wall_origin_ns: Option<u64>) -> Self {
        let wall = wall_origin_ns.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        });
        Clock {
            origin: tokio::time::Instant::now(),
            wall_origin_ns: wall,
        }
    }

    /// Current time for the core.
    pub fn now(&self) -> Instant {
        let e = self.origin.elapsed();
        Instant::from_nanos(u64::try_from(e.as_nanos()).unwrap_or(u64::MAX))
    }

    /// A core instant as a tokio instant (for timers).
    pub fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_nanos(t.as_nanos())
    }

    /// Wall clock now (origin plus elapsed time), Unix nanoseconds.
    pub fn wall_now_ns(&self) -> u64 {
        self.wall_origin_ns.saturating_add(self.now().as_nanos())
    }

    /// Wall clock at the origin, Unix nanoseconds.
    pub fn wall_origin_ns(&self) -> u64 {
        self.wall_origin_ns
    }
}

/// A [`Clock`] as the time TLS reads (certificate validity, session-ticket ages).
#[derive(Debug, Clone, Copy)]
pub struct TlsTime(pub Clock);

impl rustls::time_provider::TimeProvider for TlsTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_nanos(
            self.0.wall_now_ns(),
        )))
    }
}
