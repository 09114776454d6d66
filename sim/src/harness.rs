//! Simulation plumbing: a seeded turmoil builder, hosts running one or several nodes whose
//! events land in one shared log stamped with simulated time, waiting on log conditions,
//! crashes asked for by a scenario, and seed handling.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::node::{Env, Node, NodeEvent};
use nkcluster_core::RequestError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::net::{TurmoilNet, Wire};

/// A boxed error, as turmoil hosts return.
pub type BoxError = Box<dyn std::error::Error>;

/// Wall clock of every simulated node at simulation start (fixed: replays must match).
pub const WALL_ORIGIN_NS: u64 = 1_700_000_000_000_000_000;

/// turmoil's per-host TCP capacity: the listener backlog and each stream's segments in
/// flight. turmoil's default (64) panics with "server socket buffer full" as soon as more
/// than 64 connections wait on one listener, as in a join storm of many workers.
pub const TCP_CAPACITY: usize = 4096;

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

/// Work the scenario hands to a node's own host (see [`Log::on_node`]).
type Job = Box<dyn FnOnce(Node<TurmoilNet>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

#[derive(Default)]
struct LogInner {
    entries: Vec<Entry>,
    nodes: BTreeMap<String, Node<TurmoilNet>>,
    /// Per running node, the way to run work on its host.
    runners: BTreeMap<String, mpsc::UnboundedSender<Job>>,
    /// The nodes each host runs.
    hosts: BTreeMap<String, Vec<String>>,
    /// Hosts the scenario asked to crash, for [`run`] to carry out after this step.
    crashes: Vec<String>,
    /// Nodes started from now on use rustls's own randomness (see
    /// [`Log::use_os_tls_randomness`]).
    os_tls: bool,
}

/// The shared, time-stamped event log of one simulation, plus the running nodes and the
/// digest of the bytes they wrote.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Mutex<LogInner>>,
    changed: watch::Sender<u64>,
    wire: Wire,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            inner: Arc::default(),
            changed: watch::channel(0).0,
            wire: Wire::default(),
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

    /// The handle of a running node, for reading its state (members, peers). Anything
    /// that reads its clock (a request and its deadline) goes through
    /// [`on_node`](Self::on_node).
    pub fn node(&self, id: &str) -> Option<Node<TurmoilNet>> {
        lock(&self.inner).nodes.get(id).cloned()
    }

    /// Runs `f` with node `id` on that node's own host (its tokio runtime) and returns
    /// what it returns; `None` when the node is not running or stopped first.
    ///
    /// Anything that reads the node's clock must go this way: every turmoil host has its
    /// own paused tokio clock, and two hosts' clocks differ by the real time between their
    /// creation. A request made from the driver would take its deadline from the driver's
    /// clock and the node would measure it with its own, so the timeout on the wire would
    /// depend on the real machine's speed, not on the seed.
    pub async fn on_node<T, F, Fut>(&self, id: &str, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Node<TurmoilNet>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |node| {
            Box::pin(async move {
                let _ = tx.send(f(node).await);
            })
        });
        let runner = lock(&self.inner).runners.get(id).cloned()?;
        runner.send(job).ok()?;
        rx.await.ok()
    }

    /// `from` sends a request to `to` (on `from`'s host, see [`on_node`](Self::on_node));
    /// `not_connected` when `from` is not running.
    pub async fn request(
        &self,
        from: &str,
        to: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let (to, class) = (to.to_owned(), class.to_owned());
        self.on_node(from, move |n| async move {
            n.request(&to, &class, body, timeout).await
        })
        .await
        .unwrap_or(Err(RequestError::NotConnected))
    }

    /// Crashes `host` at the end of the current simulation step, as a machine that loses
    /// power: every node on it stops at once, and its peers hear nothing more (no closed
    /// connections: they find out by their idle timeouts, and dials to it time out). Its
    /// nodes leave [`node`](Self::node). Only [`run`] carries it out: turmoil crashes
    /// hosts from outside the simulation.
    ///
    /// Why silence rather than closed connections: turmoil's crash drops the host's tasks
    /// in tokio's shutdown order, which follows process-wide task ids, so the closes
    /// would go out (and draw latencies from the seeded generator) in an order that
    /// differs between two runs in one process. Cut off first, the closes are dropped
    /// without drawing anything.
    pub fn crash(&self, host: &str) {
        self.note(format!("crash {host}"));
        lock(&self.inner).crashes.push(host.to_owned());
    }

    /// Nodes started from now on take their TLS randomness from the OS, not the seed: their
    /// runs no longer replay bit for bit. Only for the test that shows the wire digest sees
    /// the difference.
    pub fn use_os_tls_randomness(&self) {
        lock(&self.inner).os_tls = true;
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
        .max_message_latency(Duration::from_millis(20))
        .tcp_capacity(TCP_CAPACITY);
    b
}

/// A node config fit for simulation: cheap key derivation (the sim tests protocol
/// behaviour, not PBKDF2 cost).
pub fn sim_config(node_id: &str) -> NodeConfig {
    let mut c = NodeConfig::new(node_id);
    c.key_iterations = 16;
    c
}

/// The machine figures every simulated node reports (the real machine's would differ
/// between two runs of a seed).
pub fn sim_machine() -> nkcluster_core::cluster::Stats {
    nkcluster_core::cluster::Stats {
        cpu_percent: 12.5,
        load_avg: [0.5, 0.25, 0.125],
        mem_total: 8 << 30,
        mem_used: 2 << 30,
        disks: vec![("/".to_owned(), 100 << 30, 60 << 30)],
        time_ms: 0,
        os: "simulated".to_owned(),
        uptime_s: 3600,
    }
}

/// Registers a host named `config.node_id` that runs a node and logs its events.
/// `salt` distinguishes nodes' random streams under one simulation seed.
pub fn add_node(sim: &mut turmoil::Sim<'_>, log: &Log, config: NodeConfig, seed: u64, salt: u64) {
    let host = config.node_id.clone();
    add_host(sim, log, &host, vec![(config, salt)], seed);
}

/// The seed of a node's own randomness (nonces, instance ids, jitter).
fn node_seed(seed: u64, salt: u64) -> u64 {
    seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The seed of a node's TLS randomness: a stream apart from its node seed.
fn tls_seed(seed: u64, salt: u64) -> u64 {
    node_seed(seed, salt) ^ 0x746c_7300_0000_0000
}

/// Registers a host named `host` that runs `nodes` (each with its salt, see [`add_node`])
/// side by side and logs their events under their node ids. The nodes' TLS draws its
/// randomness from the seed ([`crate::tls::seeded_provider`]). A restarted (bounced) host
/// starts its nodes again.
pub fn add_host(
    sim: &mut turmoil::Sim<'_>,
    log: &Log,
    host: &str,
    nodes: Vec<(NodeConfig, u64)>,
    seed: u64,
) {
    let log = log.clone();
    let ids = nodes.iter().map(|(c, _)| c.node_id.clone()).collect();
    lock(&log.inner).hosts.insert(host.to_owned(), ids);
    sim.host(host, move || {
        let log = log.clone();
        let nodes = nodes.clone();
        async move {
            // Every node's event forwarder reports a lagged log here; all of them ending
            // (every node stopped) closes the channel.
            let (failed, mut failures) = tokio::sync::mpsc::unbounded_channel::<String>();
            for (config, salt) in nodes {
                let id = config.node_id.clone();
                let env = Env {
                    net: TurmoilNet {
                        wire: log.wire.clone(),
                    },
                    seed: Some(node_seed(seed, salt)),
                    wall_origin_ns: Some(WALL_ORIGIN_NS),
                    tls_provider: (!lock(&log.inner).os_tls)
                        .then(|| crate::tls::seeded_provider(tls_seed(seed, salt))),
                    machine_figures: Some(sim_machine()),
                };
                let node = Node::start(config, env).await?;
                let rx = node.subscribe();
                let (runner, jobs) = mpsc::unbounded_channel();
                {
                    let mut inner = lock(&log.inner);
                    inner.nodes.insert(id.clone(), node.clone());
                    inner.runners.insert(id.clone(), runner);
                }
                tokio::spawn(run_jobs(node, jobs));
                log.note(format!("{id} started"));
                tokio::spawn(forward_events(log.clone(), id, rx, failed.clone()));
            }
            drop(failed);
            match failures.recv().await {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        }
    });
}

/// Runs the work handed to one node ([`Log::on_node`]), each job in a task of its own.
async fn run_jobs(node: Node<TurmoilNet>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        tokio::spawn(job(node.clone()));
    }
}

/// Copies one node's events into the log until the node stops.
async fn forward_events(
    log: Log,
    id: String,
    mut rx: tokio::sync::broadcast::Receiver<NodeEvent>,
    failed: tokio::sync::mpsc::UnboundedSender<String>,
) {
    loop {
        match rx.recv().await {
            Ok(ev) => log.push(&id, What::Node(ev)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let _ = failed.send(format!("{id}: event log lagged by {n}"));
                return;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
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

/// Runs a built simulation to completion, crashing the hosts the scenario asks for
/// ([`Log::crash`]) between steps; returns the log, or the failure with the log. The log
/// ends with the digest of every byte the nodes wrote ([`Wire::summary`]).
pub fn run(mut sim: turmoil::Sim<'_>, log: &Log) -> Result<Vec<String>, Failure> {
    let outcome = loop {
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        let crashes = std::mem::take(&mut lock(&log.inner).crashes);
        for host in crashes {
            let others: Vec<String> = lock(&log.inner).hosts.keys().cloned().collect();
            for other in others.iter().filter(|o| **o != host) {
                sim.partition(host.as_str(), other.as_str());
            }
            sim.crash(host.as_str());
            let mut inner = lock(&log.inner);
            for id in inner.hosts.get(&host).cloned().unwrap_or_default() {
                inner.nodes.remove(&id);
                inner.runners.remove(&id);
            }
        }
    };
    let mut lines = log.render();
    lines.push(log.wire.summary());
    match outcome {
        Ok(()) => Ok(lines),
        Err(e) => Err(Failure {
            error: e.to_string(),
            log: lines,
        }),
    }
}
