//! The node table behind `nodes`: one row per node, as the answering control node merges
//! its own rows with every member's.

use serde::{Deserialize, Serialize};

/// The node table of the whole cluster, as one control node gathered it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodesReport {
    /// One row per node, sorted by id.
    pub rows: Vec<NodeRow>,
    /// Control members that did not answer in time: the nodes they serve may be missing.
    pub incomplete: Vec<String>,
}

impl NodesReport {
    /// Node `id`'s row: `unknown_node` when nobody listed it, `incomplete` when it may
    /// be served by a member that did not answer.
    pub fn into_row(self, id: &str) -> Result<NodeRow, crate::message::RemoteError> {
        use crate::error::ErrorCode;
        use crate::message::RemoteError;
        match self.rows.into_iter().find(|r| r.id == id) {
            Some(row) => Ok(row),
            None if !self.incomplete.is_empty() => Err(RemoteError::new(
                ErrorCode::Incomplete,
                format!(
                    "no node {id:?} among the answers, but {} did not answer: the list is incomplete",
                    self.incomplete.join(", ")
                ),
            )),
            None => Err(RemoteError::new(
                ErrorCode::UnknownNode,
                format!("no node {id:?} is known in the cluster"),
            )),
        }
    }
}

/// One row of the node table, as control nodes answer admin requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// Node id.
    pub id: String,
    /// `control` or `worker`.
    pub role: String,
    /// Node status as seen by the answering node (`ready` while linked).
    pub status: String,
    /// The control node holding the node's proxy (its link); for a control node, itself.
    pub owner: String,
    /// Every control node holding a link to this node: one, once the cluster has
    /// converged (two during a hand-off).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// Transport and remote address of the link (`-` for the answering node itself).
    pub remote: String,
    /// Listen URLs.
    pub listen: Vec<String>,
    /// Metadata.
    pub meta: String,
    /// Latest ping round trip of the link, microseconds.
    pub rtt_us: Option<u64>,
    /// A worker whose link is lost (`not_connected`): when it was last seen, Unix ms.
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    /// The node's latest machine figures, as its control node last heard them (its
    /// periodic information report); `None` until one arrived. Added after the first
    /// protocol version's rows: postcard fields are positional, so a node built before
    /// it cannot read these rows (it lists the member as not answering) and the other
    /// way round.
    #[serde(default)]
    pub figures: Option<NodeFigures>,
}

/// A node's machine figures as the node table carries them (whole units: exact to
/// compare, small on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeFigures {
    /// Global CPU usage, tenths of a percent.
    pub cpu_permille: u32,
    /// One-minute load average, thousandths.
    pub load_1m_milli: u32,
    /// Memory in use, bytes.
    pub mem_used_bytes: u64,
    /// Memory, bytes.
    pub mem_total_bytes: u64,
    /// Seconds since the machine booted.
    pub uptime_s: u64,
    /// When the figures were taken, Unix ms (the node's clock).
    pub sampled_ms: u64,
}

impl NodeFigures {
    /// The figures of an information report (fractions rounded; out-of-range values,
    /// which only a confused peer sends, clamped).
    pub fn of(stats: &crate::cluster::Stats) -> Self {
        let whole = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.round().min(f64::from(u32::MAX)) as u32
            } else {
                0
            }
        };
        NodeFigures {
            cpu_permille: whole(f64::from(stats.cpu_percent) * 10.0),
            load_1m_milli: whole(stats.load_avg[0] * 1000.0),
            mem_used_bytes: stats.mem_used,
            mem_total_bytes: stats.mem_total,
            uptime_s: stats.uptime_s,
            sampled_ms: stats.time_ms,
        }
    }
}

impl NodeRow {
    /// Whether the row is of a worker whose link is lost (no control node holds it).
    pub fn is_lost(&self) -> bool {
        self.last_seen_ms.is_some()
    }
}

/// Merges `theirs`, the rows control member `member` answered about its own links, into
/// `rows` (ours), and sorts them by id:
///
/// - a member's row about itself beats our second-hand row about it, but the link (its
///   remote address, its round trip) is ours;
/// - a worker listed by several control nodes (a hand-off in flight) gets one row naming
///   every proxy; its owner is the ring's (`owner_of`) when that one holds it;
/// - a worker that one control node lists as lost (`not_connected`) and another holds
///   is listed as held; listed lost by several, it keeps the latest `last_seen_ms`;
/// - nodes we did not know are added.
pub fn merge(
    rows: &mut Vec<NodeRow>,
    member: &str,
    theirs: Vec<NodeRow>,
    owner_of: impl Fn(&str) -> Option<String>,
) {
    for row in theirs {
        match rows.iter_mut().find(|r| r.id == row.id) {
            Some(mine) if row.id == member => {
                let (remote, rtt_us) = (mine.remote.clone(), mine.rtt_us);
                *mine = NodeRow {
                    remote,
                    rtt_us,
                    ..row
                };
            }
            Some(mine) if row.is_lost() => {
                if mine.is_lost() && row.last_seen_ms > mine.last_seen_ms {
                    *mine = row;
                }
            }
            Some(mine) if mine.is_lost() => *mine = row,
            Some(mine) => {
                for p in row.proxies {
                    if !mine.proxies.contains(&p) {
                        mine.proxies.push(p);
                    }
                }
                mine.proxies.sort();
                if mine.role == "worker"
                    && let Some(owner) = owner_of(&mine.id)
                    && mine.proxies.contains(&owner)
                {
                    mine.owner = owner;
                }
            }
            None => rows.push(row),
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_is_unknown_or_incomplete_when_missing() {
        let report = |incomplete: &[&str]| NodesReport {
            rows: vec![row("c1", "control", "c1", &[], "-")],
            incomplete: incomplete.iter().map(|m| (*m).to_owned()).collect(),
        };
        assert_eq!(
            report(&[]).into_row("c1"),
            Ok(row("c1", "control", "c1", &[], "-"))
        );
        assert_eq!(
            report(&[]).into_row("w1").map_err(|e| e.code),
            Err("unknown_node".into())
        );
        assert_eq!(
            report(&["c2"]).into_row("w1").map_err(|e| e.code),
            Err("incomplete".into())
        );
    }

    fn row(id: &str, role: &str, owner: &str, proxies: &[&str], remote: &str) -> NodeRow {
        NodeRow {
            id: id.into(),
            role: role.into(),
            status: "ready".into(),
            owner: owner.into(),
            proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
            remote: remote.into(),
            listen: Vec::new(),
            meta: String::new(),
            rtt_us: None,
            last_seen_ms: None,
            figures: None,
        }
    }

    fn lost(id: &str, owner: &str, seen: u64) -> NodeRow {
        NodeRow {
            status: "not_connected".into(),
            last_seen_ms: Some(seen),
            ..row(id, "worker", owner, &[], "tcp:10.0.0.9:5000")
        }
    }

    #[test]
    fn figures_are_whole_units_and_nonsense_is_clamped() {
        let stats = crate::cluster::Stats {
            cpu_percent: 12.34,
            load_avg: [0.4567, 1.0, 2.0],
            mem_total: 8_000,
            mem_used: 3_000,
            time_ms: 1_700_000_000_000,
            uptime_s: 99,
            ..Default::default()
        };
        assert_eq!(
            NodeFigures::of(&stats),
            NodeFigures {
                cpu_permille: 123,
                load_1m_milli: 457,
                mem_used_bytes: 3_000,
                mem_total_bytes: 8_000,
                uptime_s: 99,
                sampled_ms: 1_700_000_000_000,
            }
        );
        let nonsense = crate::cluster::Stats {
            cpu_percent: f32::NAN,
            load_avg: [1e300, 0.0, 0.0],
            ..Default::default()
        };
        let f = NodeFigures::of(&nonsense);
        assert_eq!((f.cpu_permille, f.load_1m_milli), (0, u32::MAX));
    }

    #[test]
    fn a_held_worker_beats_a_lost_row_and_the_latest_loss_wins() {
        let mut rows = vec![
            row("c1", "control", "c1", &[], "-"),
            lost("w1", "c1", 1_000),
            row("w2", "worker", "c1", &["c1"], "tcp:10.0.0.8:5000"),
            lost("w3", "c1", 1_000),
        ];
        let theirs = vec![
            row("w1", "worker", "c2", &["c2"], "tcp:10.0.0.9:5001"),
            lost("w2", "c2", 5_000),
            lost("w3", "c2", 2_000),
            lost("w4", "c2", 3_000),
        ];
        merge(&mut rows, "c2", theirs, |_| None);
        assert_eq!(
            rows,
            vec![
                row("c1", "control", "c1", &[], "-"),
                row("w1", "worker", "c2", &["c2"], "tcp:10.0.0.9:5001"),
                row("w2", "worker", "c1", &["c1"], "tcp:10.0.0.8:5000"),
                lost("w3", "c2", 2_000),
                lost("w4", "c2", 3_000),
            ]
        );
    }

    #[test]
    fn members_speak_for_themselves_over_our_link_and_workers_appear_once() {
        // c1's own view: itself, its link to c2 (rtt measured), w1 linked here.
        let mut rows = vec![
            row("c1", "control", "c1", &[], "-"),
            NodeRow {
                rtt_us: Some(120),
                ..row("c2", "control", "c2", &[], "tcp:10.0.0.2:1972")
            },
            row("w1", "worker", "c1", &["c1"], "tcp:10.0.0.9:5000"),
        ];
        // c2 answers: itself (with its metadata), w1 (a hand-off in flight), w2.
        let theirs = vec![
            NodeRow {
                meta: "core".into(),
                ..row("c2", "control", "c2", &[], "-")
            },
            row("w2", "worker", "c2", &["c2"], "tcp:10.0.0.8:5000"),
            row("w1", "worker", "c2", &["c2"], "tcp:10.0.0.9:5001"),
        ];
        merge(&mut rows, "c2", theirs, |w| {
            (w == "w1").then(|| "c2".to_owned())
        });
        assert_eq!(
            rows,
            vec![
                row("c1", "control", "c1", &[], "-"),
                NodeRow {
                    rtt_us: Some(120),
                    meta: "core".into(),
                    ..row("c2", "control", "c2", &[], "tcp:10.0.0.2:1972")
                },
                row("w1", "worker", "c2", &["c1", "c2"], "tcp:10.0.0.9:5000"),
                row("w2", "worker", "c2", &["c2"], "tcp:10.0.0.8:5000"),
            ]
        );
    }
}
