//! Simulation plumbing: a seeded turmoil builder, node hosts whose events land in one
//! shared log stamped with simulated time, waiting on log conditions, and seed handling.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use nkcluster::config::NodeConfig;
use nkcluster::node::{Env, Node, NodeEvent};
use tokio::sync::watch;

use crate::net::TurmoilNet;

/// A boxed error, as turmoil hosts return.
pub type BoxError = Box<dyn std::error::Error>;

/// Wall clock of every simulated node at simulation start (fixed: replays must match).
pub const WALL_ORIGIN_NS: u64 = 1_700_000_000_000_000_000;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Simulated time since start.
    pub at: Duration,
    /// Host that produced it (`driver` for the scenario script).
    pub host: String,
    /// What happened.
    pub what: What,
}

/// Log entry payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A node event.
    Node(NodeEvent),
    /// A note from the scenario script.
    Note(String),
}

#[derive(Default)]
struct LogInner {
    entries: Vec<Entry>,
    nodes: BTreeMap<String, Node<TurmoilNet>>,
}

/// The shared, time-stamped event log of one simulation, plus the running nodes.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Mutex<LogInner>>,
    changed: watch::Sender<u64>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            inner: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

fn lock(m: &Mutex<LogInner>) -> MutexGuard<'_, LogInner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Log {
    /// Appends an entry stamped with the current simulated time.
    pub fn push(&self, host: &str, what: What) {
        lock(&self.inner).entries.push(Entry {
            at: sim_now(),
            host: host.to_owned(),
            what,
        });
        self.changed.send_modify(|n| *n += 1);
    }

    /// Appends a note from the scenario.
    pub fn note(&self, text: impl Into<String>) {
        self.push("driver", What::Note(text.into()));
    }

    /// A copy of all entries.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.inner).entries.clone()
    }

    /// The handle of a running node.
    pub fn node(&self, id: &str) -> Option<Node<TurmoilNet>> {
        lock(&self.inner).nodes.get(id).cloned()
    }

    /// The log as text, one line per entry.
    pub fn render(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| {
                let mut s = format!("{:>9.3}s {:<6} ", e.at.as_secs_f64(), e.host);
                let _ = match &e.what {
                    What::Node(ev) => write!(s, "{ev:?}"),
                    What::Note(n) => write!(s, "# {n}"),
                };
                s
            })
            .collect()
    }

    /// Waits (in simulated time) until `pred` holds for the entries, or fails after
    /// `limit`. Returns the entry index and time at which it first held.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut pred: impl FnMut(&[Entry]) -> bool,
    ) -> Result<Duration, BoxError> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // A snapshot, so that `pred` may look at the nodes (which takes the lock).
            let entries = lock(&self.inner).entries.clone();
            if pred(&entries) {
                return Ok(sim_now());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(format!("timed out after {limit:?} waiting for {what}").into()),
            }
        }
    }
}

/// A seeded turmoil builder: fixed epoch, 1 ms ticks, small random latencies.
pub fn builder(seed: u64, duration: Duration) -> turmoil::Builder {
    let mut b = turmoil::Builder::new();
    b.rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_nanos(WALL_ORIGIN_NS))
        .simulation_duration(duration)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20));
    b
}

/// A node config fit for simulation: cheap key derivation (the sim tests protocol
/// behaviour, not PBKDF2 cost).
pub fn sim_config(node_id: &str) -> NodeConfig {
    let mut c = NodeConfig::new(node_id);
    c.key_iterations = 16;
    c
}

/// Registers a host named `config.node_id` that runs a node and logs its events.
/// `salt` distinguishes nodes' random streams under one simulation seed.
pub fn add_node(sim: &mut turmoil::Sim<'_>, log: &Log, config: NodeConfig, seed: u64, salt: u64) {
    let log = log.clone();
    let host = config.node_id.clone();
    sim.host(host.as_str(), move || {
        let log = log.clone();
        let config = config.clone();
        async move {
            let id = config.node_id.clone();
            let env = Env {
                net: TurmoilNet,
                seed: Some(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                wall_origin_ns: Some(WALL_ORIGIN_NS),
                tls_provider: None,
                machine_figures: None,
            };
            let node = Node::start(config, env).await?;
            let mut rx = node.subscribe();
            lock(&log.inner).nodes.insert(id.clone(), node);
            log.note(format!("{id} started"));
            loop {
                match rx.recv().await {
                    Ok(ev) => log.push(&id, What::Node(ev)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Err(format!("{id}: event log lagged by {n}").into());
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    });
}

/// Whether `host` logged a `LinkUp` with `peer` (optionally only after index `from`).
pub fn link_up(entries: &[Entry], host: &str, peer: &str, from: usize) -> Option<usize> {
    entries.iter().enumerate().skip(from).find_map(|(i, e)| {
        matches!(&e.what, What::Node(NodeEvent::LinkUp { peer: p, .. }) if e.host == host && p == peer)
            .then_some(i)
    })
}

/// The seeds a test runs: `NKCLUSTER_SIM_SEED` (one seed, to replay), else
/// `NKCLUSTER_SIM_SEEDS` consecutive seeds from a fixed base (default `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("NKCLUSTER_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("NKCLUSTER_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_count);
    (0..n).map(|i| 0x6e6b_0000 + i).collect()
}

/// Runs `scenario` once per seed; on the first failure panics with the seed, the replay
/// command and the tail of the event log.
pub fn check(name: &str, default_seeds: u64, scenario: Scenario) {
    for seed in seeds(default_seeds) {
        if let Err(f) = scenario(seed) {
            let tail = f.log.len().saturating_sub(60);
            panic!(
                "scenario {name} failed with seed {seed}: {}\n\
                 replay: NKCLUSTER_SIM_SEED={seed} cargo test -p nkcluster-sim {name}\n\
                 or:     cargo run -p nkcluster-sim -- {name} {seed}\n\
                 event log (last {} lines):\n{}",
                f.error,
                f.log.len() - tail,
                f.log[tail..].join("\n")
            );
        }
    }
}

/// A scenario: runs one seed, returns the event log or the failure.
pub type Scenario = fn(u64) -> Result<Vec<String>, Failure>;

/// A failed scenario run: what went wrong and the event log up to then.
#[derive(Debug)]
pub struct Failure {
    /// The error.
    pub error: String,
    /// The rendered event log.
    pub log: Vec<String>,
}

/// Runs a built simulation to completion; returns the log, or the failure with the log.
pub fn run(mut sim: turmoil::Sim<'_>, log: &Log) -> Result<Vec<String>, Failure> {
    match sim.run() {
        Ok(()) => Ok(log.render()),
        Err(e) => Err(Failure {
            error: e.to_string(),
            log: log.render(),
        }),
    }
}
