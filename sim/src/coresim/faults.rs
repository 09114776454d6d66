//! Random fault schedules drawn from a seed: what goes wrong, when, for how long. A
//! schedule is a plain value that prints one fault per line, so a failing seed shows
//! what it did before its first violated invariant.
//!
//! The vocabulary (see [`FaultKind`]): partitions between node groups, both ways or one
//! way; a node's links held (a stalled host: writes wait, then go); slow and lossy links;
//! links reset; host crashes (silent) and process kills with or without a restart;
//! bounces (a kill and an immediate restart); orderly stops (a control member leaves, a
//! worker goes away) and starts (a new control member joins, a new worker appears, a
//! stopped node comes back); and wall-clock skews, taken by a node at its next start.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What goes wrong. Nodes are named by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Writes between `a` and `b` are held (`one_way`: from `a` to `b` only), and dials
    /// between them fail, for `lasts`.
    Partition {
        /// One side.
        a: Vec<String>,
        /// The other side.
        b: Vec<String>,
        /// Only `a`'s writes to `b` are held.
        one_way: bool,
        /// How long.
        lasts: Duration,
    },
    /// Every link of `node` is held both ways for `lasts` (a stalled host or interface).
    Hold {
        /// The node.
        node: String,
        /// How long.
        lasts: Duration,
    },
    /// Links touching `nodes` get up to `extra` latency and lose `loss_per_mille` of
    /// their segments (each loss a retransmission timeout), for `lasts`.
    Slow {
        /// The nodes.
        nodes: Vec<String>,
        /// Extra one-way latency, at most.
        extra: Duration,
        /// Segment loss, per mille.
        loss_per_mille: u32,
        /// How long.
        lasts: Duration,
    },
    /// Every link of `node` is reset (both ends read a transport error).
    Reset {
        /// The node.
        node: String,
    },
    /// `node`'s host crashes (its links go silent); it restarts after `down_for`, or
    /// stays down (`None`) for the rest of the run.
    Crash {
        /// The node.
        node: String,
        /// Downtime.
        down_for: Option<Duration>,
    },
    /// `node`'s process is killed (its peers read an end of file) and restarts at once.
    Bounce {
        /// The node.
        node: String,
    },
    /// `node` stops in order (a control member leaves the membership first).
    Stop {
        /// The node.
        node: String,
    },
    /// `node` starts: a new control member joins, a new worker appears, or a stopped or
    /// crashed node comes back.
    Start {
        /// The node.
        node: String,
    },
    /// `node`'s wall clock is off by `ms` from its next start on.
    Skew {
        /// The node.
        node: String,
        /// Offset, ms (negative: behind).
        ms: i64,
    },
}

/// One fault at its time (since the start of the safety phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When.
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
}

/// The nodes a schedule may draw from.
#[derive(Debug, Clone)]
pub struct Cast {
    /// Control nodes started at the beginning.
    pub controls: Vec<String>,
    /// Control nodes that may join later.
    pub spare_controls: Vec<String>,
    /// Workers started at the beginning.
    pub workers: Vec<String>,
    /// Workers that may appear later.
    pub spare_workers: Vec<String>,
}

impl Cast {
    /// Every node, controls first.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.controls
            .iter()
            .chain(&self.spare_controls)
            .chain(&self.workers)
            .chain(&self.spare_workers)
    }
}

/// A seeded fault schedule. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSchedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// How long the safety phase lasts.
    pub safety: Duration,
    /// Wall clocks off from the start (ms, negative: behind).
    pub skews: Vec<(String, i64)>,
    /// The faults, by time.
    pub faults: Vec<Fault>,
}

/// Faults per minute of safety phase, on average.
const FAULTS_PER_MINUTE: u64 = 15;

impl FaultSchedule {
    /// Draws a schedule for `cast` over a safety phase of `safety`, from `seed`.
    pub fn draw(seed: u64, cast: &Cast, safety: Duration) -> FaultSchedule {
        // Its own stream: the schedule does not depend on what the run draws.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17_5eed_fa17);
        let mut d = Draw {
            rng: &mut rng,
            cast,
        };
        let mut faults = Vec::new();
        // Some wall clocks are off from the start.
        let mut skews = Vec::new();
        for node in cast.all() {
            if d.rng.random_range(0..4) == 0 {
                skews.push((node.clone(), d.rng.random_range(-5_000..=5_000)));
            }
        }
        let secs = safety.as_secs().max(1);
        let count = (secs * FAULTS_PER_MINUTE).div_ceil(60);
        let last = safety.saturating_sub(Duration::from_secs(2));
        for _ in 0..count {
            let at = d.duration(Duration::ZERO, last);
            faults.extend(d.fault(at));
        }
        faults.sort_by_key(|f| f.at);
        FaultSchedule {
            seed,
            safety,
            skews,
            faults,
        }
    }
}

struct Draw<'a> {
    rng: &'a mut StdRng,
    cast: &'a Cast,
}

impl Draw<'_> {
    fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(u64::MAX);
        lo + Duration::from_millis(self.rng.random_range(0..=span))
    }

    fn pick<'s>(&mut self, from: &'s [String]) -> Option<&'s String> {
        (!from.is_empty()).then(|| &from[self.rng.random_range(0..from.len())])
    }

    /// Any node (controls a little more often: they are fewer and matter more).
    fn any_node(&mut self) -> String {
        let controls: Vec<String> = self
            .cast
            .controls
            .iter()
            .chain(&self.cast.spare_controls)
            .cloned()
            .collect();
        let workers: Vec<String> = self
            .cast
            .workers
            .iter()
            .chain(&self.cast.spare_workers)
            .cloned()
            .collect();
        let from = if workers.is_empty() || self.rng.random_range(0..2) == 0 {
            controls
        } else {
            workers
        };
        self.pick(&from).cloned().unwrap_or_default()
    }

    fn fault(&mut self, at: Duration) -> Vec<Fault> {
        let kind = match self.rng.random_range(0..100) {
            0..25 => self.partition(),
            25..33 => FaultKind::Hold {
                node: self.any_node(),
                lasts: self.duration(Duration::from_millis(500), Duration::from_secs(10)),
            },
            33..45 => self.slow(),
            45..50 => FaultKind::Reset {
                node: self.any_node(),
            },
            50..60 => {
                let node = self.any_node();
                let down_for = (self.rng.random_range(0..10) < 7)
                    .then(|| self.duration(Duration::from_secs(1), Duration::from_secs(20)));
                FaultKind::Crash { node, down_for }
            }
            60..72 => {
                let node = self.any_node();
                // A restart may come with a clock stepped by a time service.
                if self.rng.random_range(0..4) == 0 {
                    let ms = self.rng.random_range(-5_000..=5_000);
                    return vec![
                        Fault {
                            at,
                            kind: FaultKind::Skew {
                                node: node.clone(),
                                ms,
                            },
                        },
                        Fault {
                            at,
                            kind: FaultKind::Bounce { node },
                        },
                    ];
                }
                FaultKind::Bounce { node }
            }
            72..86 => {
                let node = self.any_node();
                let mut v = vec![Fault {
                    at,
                    kind: FaultKind::Stop { node: node.clone() },
                }];
                if self.rng.random_range(0..2) == 0 {
                    let back = at + self.duration(Duration::from_secs(1), Duration::from_secs(20));
                    v.push(Fault {
                        at: back,
                        kind: FaultKind::Start { node },
                    });
                }
                return v;
            }
            _ => {
                let spares: Vec<String> = if self.rng.random_range(0..2) == 0 {
                    self.cast.spare_controls.clone()
                } else {
                    self.cast.spare_workers.clone()
                };
                match self.pick(&spares) {
                    Some(node) => FaultKind::Start { node: node.clone() },
                    None => FaultKind::Start {
                        node: self.any_node(),
                    },
                }
            }
        };
        let mut v = vec![Fault { at, kind }];
        if let Some(Fault {
            kind:
                FaultKind::Crash {
                    node,
                    down_for: Some(d),
                },
            ..
        }) = v.first().cloned()
        {
            v.push(Fault {
                at: at + d,
                kind: FaultKind::Start { node },
            });
        }
        v
    }

    fn partition(&mut self) -> FaultKind {
        let controls: Vec<String> = self
            .cast
            .controls
            .iter()
            .chain(&self.cast.spare_controls)
            .cloned()
            .collect();
        let mut a = Vec::new();
        let mut b = Vec::new();
        // At least one control node on each side when there are two.
        let cut = self.rng.random_range(1..controls.len().max(2));
        let mut order = controls;
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        for (i, c) in order.into_iter().enumerate() {
            if i < cut { a.push(c) } else { b.push(c) }
        }
        for wk in self.cast.workers.iter().chain(&self.cast.spare_workers) {
            if self.rng.random_range(0..2) == 0 {
                a.push(wk.clone());
            } else {
                b.push(wk.clone());
            }
        }
        FaultKind::Partition {
            a,
            b,
            one_way: self.rng.random_range(0..10) < 3,
            lasts: self.duration(Duration::from_secs(1), Duration::from_secs(15)),
        }
    }

    fn slow(&mut self) -> FaultKind {
        let mut nodes = BTreeSet::new();
        for _ in 0..self.rng.random_range(1..=4) {
            nodes.insert(self.any_node());
        }
        FaultKind::Slow {
            nodes: nodes.into_iter().collect(),
            extra: self.duration(Duration::ZERO, Duration::from_millis(300)),
            loss_per_mille: self.rng.random_range(0..=300),
            lasts: self.duration(Duration::from_secs(2), Duration::from_secs(20)),
        }
    }
}

/// A node list, short: controls by name, workers counted past a few.
fn nodes(list: &[String]) -> String {
    let controls: Vec<&str> = list
        .iter()
        .filter(|n| n.starts_with('c'))
        .map(String::as_str)
        .collect();
    let workers: Vec<&str> = list
        .iter()
        .filter(|n| !n.starts_with('c'))
        .map(String::as_str)
        .collect();
    let mut parts = vec![controls.join(" ")];
    match workers.len() {
        0 => {}
        1..=4 => parts.push(workers.join(" ")),
        n => parts.push(format!("{n} workers ({} ...)", workers[..3].join(" "))),
    }
    parts.retain(|p| !p.is_empty());
    format!("[{}]", parts.join(" + "))
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| format!("{:.1} s", d.as_secs_f64());
        match self {
            FaultKind::Partition {
                a,
                b,
                one_way,
                lasts,
            } => write!(
                f,
                "partition {} {} {} for {}",
                nodes(a),
                if *one_way { "-/->" } else { "<-/->" },
                nodes(b),
                s(lasts)
            ),
            FaultKind::Hold { node, lasts } => {
                write!(f, "hold every link of {node} for {}", s(lasts))
            }
            FaultKind::Slow {
                nodes: n,
                extra,
                loss_per_mille,
                lasts,
            } => write!(
                f,
                "slow links at {}: up to +{} ms, {}.{}% segments lost, for {}",
                nodes(n),
                extra.as_millis(),
                loss_per_mille / 10,
                loss_per_mille % 10,
                s(lasts)
            ),
            FaultKind::Reset { node } => write!(f, "reset every link of {node}"),
            FaultKind::Crash { node, down_for } => match down_for {
                Some(d) => write!(f, "crash {node} (host; back after {})", s(d)),
                None => write!(f, "crash {node} (host; stays down)"),
            },
            FaultKind::Bounce { node } => write!(f, "bounce {node} (kill, restart)"),
            FaultKind::Stop { node } => write!(f, "stop {node} in order"),
            FaultKind::Start { node } => write!(f, "start {node}"),
            FaultKind::Skew { node, ms } => {
                write!(f, "{node}'s wall clock off by {ms} ms from its next start")
            }
        }
    }
}

impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fault schedule of seed {} ({} faults over a {:.0} s safety phase):",
            self.seed,
            self.faults.len(),
            self.safety.as_secs_f64()
        )?;
        if !self.skews.is_empty() {
            let skews: Vec<String> = self
                .skews
                .iter()
                .map(|(n, ms)| format!("{n} {ms:+} ms"))
                .collect();
            writeln!(f, "  wall clocks off from the start: {}", skews.join(", "))?;
        }
        for fault in &self.faults {
            writeln!(f, "  {:>8.3} s  {}", fault.at.as_secs_f64(), fault.kind)?;
        }
        Ok(())
    }
}
