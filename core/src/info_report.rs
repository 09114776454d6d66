//! Which of a node's periodic information reports go to its proxy.
//!
//! A node reports its information (status, listen URLs, metadata, modules, machine
//! figures) when its control link comes up, on every status or metadata change, and
//! periodically. A periodic report that says nothing new (the same information as the
//! last report sent, apart from the figures' sampling time and the uptime, which move
//! with the clock) is skipped, up to one in [`INFO_REFRESH`] that goes anyway (the
//! proxy's sampling time stays fresh): an idle worker's link then carries its keepalive
//! alone (issue 15, point 6: an information report is a request and its reply, and a
//! turn of the control node's machine, for every worker every period).

use crate::cluster::NodeInfo;

/// A periodic report goes at least once in this many periods, changed or not.
pub const INFO_REFRESH: u32 = 6;

/// The last report sent, and the periodic reports skipped since.
#[derive(Debug, Default, Clone)]
pub struct InfoReports {
    last: Option<NodeInfo>,
    skipped: u32,
}

impl InfoReports {
    /// `info` is reported (a link up, a status or metadata change, or a periodic report
    /// that goes).
    pub fn sent(&mut self, info: &NodeInfo) {
        self.last = Some(info.clone());
        self.skipped = 0;
    }

    /// The periodic report: `Some` (the report, counted as sent) if it goes.
    pub fn periodic(&mut self, info: NodeInfo) -> Option<NodeInfo> {
        let unchanged = self.last.as_ref().is_some_and(|l| same_but_clock(l, &info));
        if unchanged && self.skipped + 1 < INFO_REFRESH {
            self.skipped += 1;
            return None;
        }
        self.sent(&info);
        Some(info)
    }
}

/// A machine figure moves this much before a periodic report counts as new: CPU use,
/// in percentage points.
pub const CPU_STEP_PERCENT: f32 = 2.0;
/// ... a load average, in runnable tasks.
pub const LOAD_STEP: f64 = 0.1;
/// ... memory or disk in use, in parts per thousand of the total.
pub const USE_STEP_PERMILLE: u64 = 10;

/// Whether `a` and `b` say the same but for what moves with the clock (the sampling
/// time and the uptime) and for machine figures that moved less than their step
/// ([`CPU_STEP_PERCENT`], [`LOAD_STEP`], [`USE_STEP_PERMILLE`]): an idle real machine's
/// figures jitter from one sample to the next, and a report of jitter tells the proxy
/// nothing. The reference is the last report sent, so a slow drift adds up to a report.
fn same_but_clock(a: &NodeInfo, b: &NodeInfo) -> bool {
    let (sa, sb) = (&a.stats, &b.stats);
    a.id == b.id
        && a.status == b.status
        && a.listen == b.listen
        && a.meta == b.meta
        && a.modules == b.modules
        && (sa.cpu_percent - sb.cpu_percent).abs() < CPU_STEP_PERCENT
        && sa
            .load_avg
            .iter()
            .zip(sb.load_avg)
            .all(|(x, y)| (x - y).abs() < LOAD_STEP)
        && sa.mem_total == sb.mem_total
        && use_close(sa.mem_total, sa.mem_used, sb.mem_used)
        && sa.disks.len() == sb.disks.len()
        && sa
            .disks
            .iter()
            .zip(&sb.disks)
            .all(|(x, y)| x.0 == y.0 && x.1 == y.1 && use_close(x.1, x.2, y.2))
        && sa.os == sb.os
}

/// Whether two figures of use out of `total` differ by less than [`USE_STEP_PERMILLE`]
/// of it.
fn use_close(total: u64, x: u64, y: u64) -> bool {
    u128::from(x.abs_diff(y)) * 1000 < u128::from(total) * u128::from(USE_STEP_PERMILLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Stats;
    use crate::status::Status;

    fn info(time_ms: u64) -> NodeInfo {
        NodeInfo {
            id: "w1".into(),
            status: Status::Ready,
            listen: vec!["nkcluster://127.0.0.1:9000".into()],
            meta: "a".into(),
            stats: Stats {
                cpu_percent: 1.5,
                load_avg: [0.1, 0.2, 0.3],
                mem_total: 1 << 30,
                mem_used: 1 << 20,
                disks: vec![("/".into(), 100, 50)],
                time_ms,
                os: "linux".into(),
                uptime_s: time_ms / 1000,
            },
            modules: Vec::new(),
        }
    }

    /// Whether each of the periodic reports at `times` (seconds) goes.
    fn periodic_run(r: &mut InfoReports, times: &[u64]) -> Vec<bool> {
        times
            .iter()
            .map(|t| r.periodic(info(t * 1000)).is_some())
            .collect()
    }

    #[test]
    fn the_first_periodic_report_goes() {
        let mut r = InfoReports::default();
        assert_eq!(r.periodic(info(10_000)), Some(info(10_000)));
    }

    #[test]
    fn unchanged_reports_are_skipped_but_one_in_info_refresh_goes() {
        let mut r = InfoReports::default();
        r.sent(&info(0));
        let times: Vec<u64> = (1..=13).map(|i| i * 10).collect();
        assert_eq!(
            periodic_run(&mut r, &times),
            [
                false, false, false, false, false, true, false, false, false, false, false, true,
                false
            ]
        );
    }

    #[test]
    fn a_change_goes_at_once_and_restarts_the_count() {
        let mut r = InfoReports::default();
        r.sent(&info(0));
        assert_eq!(periodic_run(&mut r, &[10, 20]), [false, false]);
        let mut busier = info(30_000);
        busier.stats.cpu_percent = 40.0;
        assert_eq!(r.periodic(busier.clone()), Some(busier.clone()));
        // The same again (the new figures are the reference now): skipped.
        busier.stats.time_ms = 40_000;
        busier.stats.uptime_s = 40;
        assert_eq!(r.periodic(busier), None);
        let mut other = info(50_000);
        other.meta = "b".into();
        assert!(r.periodic(other.clone()).is_some());
        other.status = Status::Standby;
        assert!(r.periodic(other).is_some());
    }

    #[test]
    fn every_field_but_the_clock_counts_as_a_change() {
        let base = info(0);
        let changes: Vec<fn(&mut NodeInfo)> = vec![
            |i| i.id = "w2".into(),
            |i| i.status = Status::Standby,
            |i| i.listen.clear(),
            |i| i.meta = "b".into(),
            |i| i.stats.cpu_percent = 3.5,
            |i| i.stats.load_avg[2] = 0.4,
            |i| i.stats.mem_total += 1,
            |i| i.stats.mem_used += (1 << 30) / 50,
            |i| i.stats.disks[0].2 -= 1,
            |i| i.stats.disks[0].0 = "/data".into(),
            |i| i.stats.disks.push(("/data".into(), 10, 5)),
            |i| i.stats.os = "linux 7".into(),
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert!(!same_but_clock(&base, &changed), "{changed:?}");
        }
        let mut later = base.clone();
        later.stats.time_ms = 99_000;
        later.stats.uptime_s = 99;
        assert!(same_but_clock(&base, &later));
    }

    #[test]
    fn figures_that_move_less_than_their_step_are_no_change() {
        let base = info(0);
        let mut jitter = base.clone();
        jitter.stats.cpu_percent = 3.4; // 1.5 + 1.9 points
        jitter.stats.load_avg = [0.19, 0.11, 0.39];
        jitter.stats.mem_used += (1 << 30) / 200;
        assert!(same_but_clock(&base, &jitter));
        // A drift adds up against the last report sent.
        let mut r = InfoReports::default();
        r.sent(&base);
        let steps: Vec<Option<NodeInfo>> = (1..=3u64)
            .map(|k| {
                let mut i = info(k * 10_000);
                i.stats.cpu_percent = 1.5 + 0.9 * k as f32;
                r.periodic(i)
            })
            .collect();
        assert_eq!(
            steps.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, false, true]
        );
    }

    #[test]
    fn a_report_sent_otherwise_is_the_reference() {
        let mut r = InfoReports::default();
        r.sent(&info(0));
        assert_eq!(periodic_run(&mut r, &[10, 20, 30, 40, 50]), [false; 5]);
        // A link up (or a status change) reports: the count starts again.
        r.sent(&info(55_000));
        assert_eq!(
            periodic_run(&mut r, &[60, 70, 80, 90, 100, 110]),
            [false, false, false, false, false, true]
        );
    }
}
