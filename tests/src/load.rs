//! The admin side of the fault tests, in the test process (outside the containers): an
//! admin client linked to every control node it can reach, a load of requests flowing to
//! the workers through them, counted by outcome, and the cluster's state as the control
//! nodes themselves report it (who holds which worker, which tasks run).
//!
//! Every request carries a deadline and is also guarded by a longer one of its own: a
//! request that outlives both counts as **hung** (the tests assert none does); every other
//! ends as a reply or a typed error, counted by its code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node, NodeRow};
use nkcluster::os::{Command, OsClass, ProcSpec};
use nkcluster_core::{RequestError, Role};
use tokio::task::JoinHandle;

use crate::fleet::{KEY_ITERATIONS, Timing};

/// Deadline of one load request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Past its deadline plus this, a request counts as hung.
const HANG_GRACE: Duration = Duration::from_secs(3);

/// Deadline of the admin's own questions (node rows, tasks).
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An admin client that keeps a link to every control node whose URL it is given.
pub struct Admin {
    /// The client node.
    pub node: Node<TokioNet>,
    urls: Arc<Mutex<BTreeMap<String, String>>>,
    keeper: JoinHandle<()>,
}

impl Admin {
    /// Starts the client with the fleet's link timing (so that it, too, notices a dead
    /// link within the detection time).
    pub async fn start(timing: Timing) -> Admin {
        let mut c = NodeConfig::new(format!("admin-{}", std::process::id()));
        c.admin = true;
        c.control = false;
        c.key_iterations = KEY_ITERATIONS;
        c.connection.ping_interval = Duration::from_millis(timing.ping_ms);
        c.connection.idle_timeout = Duration::from_millis(timing.idle_ms);
        let env = Env::real();
        let node = Node::start(c, env).await.expect("start the admin client");
        let urls: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let keeper = tokio::spawn(keep_linked(node.clone(), urls.clone()));
        Admin { node, urls, keeper }
    }

    /// Where control node `id` is now (`None`: unreachable, not dialed).
    pub fn set_url(&self, id: &str, url: Option<String>) {
        let mut urls = lock(&self.urls);
        match url {
            Some(u) => urls.insert(id.to_owned(), u),
            None => urls.remove(id),
        };
    }

    /// Whether the client holds a link to control node `id`.
    pub fn linked_to(&self, id: &str) -> bool {
        self.node
            .peers()
            .iter()
            .any(|p| p.node_id == id && p.role == Role::Control)
    }

    /// Control node `id`'s rows of its own links (`nkcluster.local_nodes`: no fan-out to
    /// the other members, so a silent member does not slow the answer).
    pub async fn local_rows(&self, id: &str) -> Result<Vec<NodeRow>, String> {
        let b = self
            .node
            .request(
                id,
                nkcluster_core::cluster::CLASS_LOCAL_NODES,
                Bytes::new(),
                ASK_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        postcard::from_bytes(&b).map_err(|e| format!("malformed rows from {id}: {e}"))
    }

    /// Who holds each worker: for every control node in `controls` that answers, the
    /// workers it is linked to. A worker held by two control nodes lists both.
    pub async fn holders(&self, controls: &[String]) -> View {
        let asks = controls
            .iter()
            .map(|c| async move { (c.clone(), self.local_rows(c).await) });
        let mut view = View::default();
        for (c, rows) in futures_util::future::join_all(asks).await {
            let Ok(rows) = rows else {
                continue;
            };
            view.answered.push(c.clone());
            for r in rows {
                if r.role == "control" && r.id != c {
                    view.mesh.entry(c.clone()).or_default().push(r.id);
                } else if r.role == "worker" && !r.is_lost() {
                    view.holders.entry(r.id).or_default().push(c.clone());
                }
            }
        }
        view
    }

    /// Starts a long-running process task on `worker` (an idle nkcluster node: the image
    /// has no other program); returns its task id.
    pub async fn start_task(&self, worker: &str) -> Result<u64, RequestError> {
        let spec = ProcSpec {
            command: Command::new([
                "/usr/local/bin/nkcluster",
                "node",
                "--node-id",
                &format!("{worker}-task"),
                "--control",
                "false",
                "--listen",
                "",
                "--key-iterations",
                &KEY_ITERATIONS.to_string(),
            ]),
            ..Default::default()
        };
        let (task, _) = self
            .node
            .start_task::<OsClass>(worker, nkcluster::os::CLASS, &spec, Duration::from_secs(5))
            .await?;
        Ok(task)
    }

    /// The task ids running on `worker`.
    pub async fn tasks(&self, worker: &str) -> Result<Vec<u64>, RequestError> {
        let tasks = self.node.get_tasks(worker, None, ASK_TIMEOUT * 2).await?;
        Ok(tasks.into_iter().map(|(id, _)| id).collect())
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.keeper.abort();
        self.node.shutdown();
    }
}

/// Dials every control node with a URL and no link, every 200 ms.
async fn keep_linked(node: Node<TokioNet>, urls: Arc<Mutex<BTreeMap<String, String>>>) {
    loop {
        let wanted: Vec<(String, String)> = lock(&urls)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let peers = node.peers();
        for (id, url) in wanted {
            if !peers.iter().any(|p| p.node_id == id) {
                let _ = tokio::time::timeout(Duration::from_secs(1), node.connect(&url)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Who holds which worker, as the control nodes that answered report it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct View {
    /// The control nodes that answered.
    pub answered: Vec<String>,
    /// Worker id: the control nodes linked to it.
    pub holders: BTreeMap<String, Vec<String>>,
    /// Control node: the control members it is linked to.
    pub mesh: BTreeMap<String, Vec<String>>,
}

impl View {
    /// Whether every worker in `workers` is held by exactly one control node, none of
    /// them in `not_by`.
    pub fn one_proxy_each(&self, workers: &[String], not_by: &[&str]) -> bool {
        workers.iter().all(|w| {
            self.holders
                .get(w)
                .is_some_and(|h| h.len() == 1 && !not_by.contains(&h[0].as_str()))
        })
    }

    /// The workers `control` holds.
    pub fn held_by(&self, control: &str) -> Vec<String> {
        self.holders
            .iter()
            .filter(|(_, h)| h.iter().any(|c| c == control))
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// Whether `control` is linked to `member`.
    pub fn meshed(&self, control: &str, member: &str) -> bool {
        self.mesh
            .get(control)
            .is_some_and(|m| m.iter().any(|x| x == member))
    }
}

/// Request outcomes so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Replies naming the right node.
    pub ok: u64,
    /// Replies naming another node than the one asked (never expected).
    pub wrong: u64,
    /// Typed errors, by code.
    pub errors: BTreeMap<String, u64>,
    /// Requests that outlived their deadline plus a grace.
    pub hung: u64,
    /// Requests not ended yet.
    pub in_flight: u64,
}

impl Tally {
    /// Typed errors in all.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The outcomes between `earlier` and this tally.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut errors = self.errors.clone();
        for (k, v) in &earlier.errors {
            if let Some(n) = errors.get_mut(k) {
                *n -= v;
            }
        }
        errors.retain(|_, n| *n > 0);
        Tally {
            sent: self.sent - earlier.sent,
            ok: self.ok - earlier.ok,
            wrong: self.wrong - earlier.wrong,
            errors,
            hung: self.hung - earlier.hung,
            in_flight: self.in_flight,
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    wrong: AtomicU64,
    hung: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// Requests flowing to the workers: `streams` loops, each sending one request at a time
/// (the built-in function `node`, which answers the node's id) to the next worker.
pub struct Load {
    stop: Arc<AtomicBool>,
    streams: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Load {
    /// Starts the streams on `node`, round-robin over `workers`, each request followed by
    /// a pause of `pause`.
    pub fn start(
        node: &Node<TokioNet>,
        workers: &[String],
        streams: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let streams = (0..streams)
            .map(|i| {
                let node = node.clone();
                let workers = workers.to_vec();
                let stop = stop.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    let mut next = i;
                    while !stop.load(Ordering::Relaxed) {
                        let w = &workers[next % workers.len()];
                        next += 1;
                        one_request(&node, w, &counters).await;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            streams,
            counters,
        }
    }

    /// The outcomes so far.
    pub fn tally(&self) -> Tally {
        let c = &self.counters;
        let sent = c.sent.load(Ordering::SeqCst);
        let ok = c.ok.load(Ordering::SeqCst);
        let wrong = c.wrong.load(Ordering::SeqCst);
        let hung = c.hung.load(Ordering::SeqCst);
        let errors = lock(&c.errors).clone();
        let ended = ok + wrong + hung + errors.values().sum::<u64>();
        Tally {
            sent,
            ok,
            wrong,
            errors,
            hung,
            in_flight: sent.saturating_sub(ended),
        }
    }

    /// Stops the streams, waits for their last requests to end, returns the tally.
    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for s in std::mem::take(&mut self.streams) {
            let _ = s.await;
        }
        self.tally()
    }
}

async fn one_request(node: &Node<TokioNet>, worker: &str, c: &Counters) {
    c.sent.fetch_add(1, Ordering::SeqCst);
    let guarded = tokio::time::timeout(
        REQUEST_TIMEOUT + HANG_GRACE,
        node.call(worker, "node", &[], REQUEST_TIMEOUT),
    );
    match guarded.await {
        Err(_) => {
            c.hung.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok(reply)) if reply.trim() == worker => {
            c.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok(_)) => {
            c.wrong.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Err(e)) => {
            *lock(&c.errors).entry(e.code().to_owned()).or_default() += 1;
        }
    }
}
