//! The node setting `bulk_priority`: how far below the request path the threads that do
//! a file's bulk work (reading and hashing a file being sent, writing and hashing one
//! received) run, and which scheduler changes the shell makes on such a thread for it
//! ([`BulkPriority::steps`]). The shell (`nkcluster`'s `node::part_files`) only
//! performs the steps.
//!
//! The trade-off it chooses: under `idle` (Linux SCHED_IDLE, the default) a request-path
//! thread takes a CPU from the bulk work at once, so small requests barely wait behind a
//! transfer, but a transfer to or from a node whose CPUs other threads keep busy slows
//! to what they leave (SCHED_IDLE's minimum share). Under `low` (nice 10) the bulk work
//! keeps about a tenth of a busy CPU, so such a transfer keeps going, and a small request
//! may queue behind it for up to a scheduler tick. `normal` leaves the threads as
//! started.

use std::fmt;
use std::str::FromStr;

/// The nice level of `low`: about a tenth of a default thread's CPU share when both want
/// the CPU.
pub const LOW_NICE: i32 = 10;

/// The `bulk_priority` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkPriority {
    /// Linux SCHED_IDLE (nice [`LOW_NICE`] where it is refused).
    #[default]
    Idle,
    /// Nice [`LOW_NICE`].
    Low,
    /// No change: the priority the thread was started with.
    Normal,
}

/// One scheduler change on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStep {
    /// Linux's SCHED_IDLE policy.
    SchedIdle,
    /// This nice level (normal policy).
    Nice(i32),
}

impl BulkPriority {
    /// Every value, in the order the setting's documentation gives them.
    pub const ALL: [BulkPriority; 3] =
        [BulkPriority::Idle, BulkPriority::Low, BulkPriority::Normal];

    /// The setting's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BulkPriority::Idle => "idle",
            BulkPriority::Low => "low",
            BulkPriority::Normal => "normal",
        }
    }

    /// The changes to try on a bulk thread, in order: the first one the system accepts
    /// is the thread's; the rest are fallbacks. Empty: the thread is left as it is.
    pub fn steps(self) -> &'static [ThreadStep] {
        match self {
            BulkPriority::Idle => &[ThreadStep::SchedIdle, ThreadStep::Nice(LOW_NICE)],
            BulkPriority::Low => &[ThreadStep::Nice(LOW_NICE)],
            BulkPriority::Normal => &[],
        }
    }
}

impl fmt::Display for BulkPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BulkPriority {
    type Err = String;

    /// `idle`, `low` or `normal` (ASCII case and surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        BulkPriority::ALL
            .into_iter()
            .find(|p| t.eq_ignore_ascii_case(p.name()))
            .ok_or_else(|| format!("{s:?} is not idle, low or normal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_maps_to_its_scheduler_steps() {
        assert_eq!(BulkPriority::default(), BulkPriority::Idle);
        assert_eq!(
            BulkPriority::Idle.steps(),
            &[ThreadStep::SchedIdle, ThreadStep::Nice(10)]
        );
        assert_eq!(BulkPriority::Low.steps(), &[ThreadStep::Nice(10)]);
        assert_eq!(BulkPriority::Normal.steps(), &[] as &[ThreadStep]);
    }

    #[test]
    fn the_setting_parses_its_three_names_and_nothing_else() {
        for p in BulkPriority::ALL {
            assert_eq!(p.name().parse::<BulkPriority>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(" IDLE ".parse::<BulkPriority>(), Ok(BulkPriority::Idle));
        assert_eq!("Low".parse::<BulkPriority>(), Ok(BulkPriority::Low));
        assert_eq!(
            "high".parse::<BulkPriority>(),
            Err("\"high\" is not idle, low or normal".to_owned())
        );
        assert_eq!(
            "".parse::<BulkPriority>(),
            Err("\"\" is not idle, low or normal".to_owned())
        );
        assert!("nice10".parse::<BulkPriority>().is_err());
    }
}
