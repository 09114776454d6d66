//! In-process nodes (the library API over real loopback sockets) and a controllable TCP
//! relay, for tests that need to see inside a node or between two of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Handlers, Node, NodeEvent};
use nkcluster_core::cluster::{ClusterRequest, JobCall};
use nkcluster_core::conn::RequestError;
use nkcluster_core::url::{Transport, parse_url_list};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

use crate::DEADLINE;

/// PBKDF2 iterations for in-process tests: every node of a test uses the same low
/// count, so keys derive in microseconds (the real default is for production).
pub const TEST_ITERATIONS: u32 = 16;

/// A node running on the test's runtime.
pub type TestNode = Node<TokioNet>;

/// A config for `id`: control or worker, listening on `listen` (a URL list, may be
/// empty), with [`TEST_ITERATIONS`].
///
/// # Panics
/// When `listen` does not parse.
pub fn config(id: &str, control: bool, listen: &str) -> NodeConfig {
    let mut c = NodeConfig::new(id);
    c.control = control;
    c.key_iterations = TEST_ITERATIONS;
    c.listen = parse_url_list(listen).expect("a valid listen list");
    // Tests send files to paths under the system temp dir (see `TempDir`).
    c.files_dir = std::env::temp_dir();
    c
}

/// Starts a node on the real network.
///
/// # Panics
/// When it cannot start.
pub async fn start(config: NodeConfig) -> TestNode {
    start_with(config, None).await
}

/// Starts a node on the real network with these request handlers (`None`: the
/// built-in ones).
///
/// # Panics
/// When it cannot start.
pub async fn start_with(config: NodeConfig, handlers: Option<Handlers>) -> TestNode {
    let id = config.node_id.clone();
    Node::start_with(config, Env::real(), handlers)
        .await
        .unwrap_or_else(|e| panic!("{id} does not start: {e}"))
}

/// `nkcluster://127.0.0.1:PORT;transport=T` for the node's first listener of
/// `transport`.
///
/// # Panics
/// When it has no such listener.
pub fn url_of(node: &TestNode, transport: Transport) -> String {
    let port = port_of(node, transport);
    format!("nkcluster://127.0.0.1:{port};transport={transport}")
}

/// The bound port of the node's first listener of `transport`.
///
/// # Panics
/// When it has no such listener.
pub fn port_of(node: &TestNode, transport: Transport) -> u16 {
    node.listen_addrs()
        .into_iter()
        .find(|(t, _)| *t == transport)
        .map(|(_, a)| a.port())
        .unwrap_or_else(|| panic!("{} has no {transport} listener", node.node_id()))
}

/// Waits up to [`DEADLINE`] for an event satisfying `pred` and returns it; events
/// before it are skipped.
///
/// # Panics
/// At the deadline, listing the events seen while waiting.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    pred: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(e)) => seen.push(e),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                seen.push(NodeEvent::GaveUp {
                    code: format!("(test: {n} events lost to lag)"),
                });
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                panic!("waiting for {what}: the node's event channel closed; seen: {seen:#?}")
            }
            Err(_) => {
                panic!("waiting for {what}: nothing within {DEADLINE:?}; seen: {seen:#?}")
            }
        }
    }
}

/// Starts worker `worker` (its config as given, with `control`'s TCP listener as its
/// control node) and returns once both ends have the link up.
///
/// # Panics
/// When it cannot start or link within [`DEADLINE`].
pub async fn start_linked_worker(control: &TestNode, mut worker: NodeConfig) -> TestNode {
    let id = worker.node_id.clone();
    let mut heard = control.subscribe();
    worker.cluster_addr = parse_url_list(&url_of(control, Transport::Tcp)).expect("url");
    let node = start(worker).await;
    let mut mine = node.subscribe();
    while !control.peers().iter().any(|p| p.node_id == id) {
        wait_event(
            &mut heard,
            &format!("{id} links to {}", control.node_id()),
            |e| matches!(e, NodeEvent::LinkUp { peer, .. } if *peer == id),
        )
        .await;
    }
    while !node.peers().iter().any(|p| p.node_id == control.node_id()) {
        wait_event(&mut mine, &format!("{id}'s link up"), |e| {
            matches!(e, NodeEvent::LinkUp { .. })
        })
        .await;
    }
    let roles: Vec<_> = control
        .peers()
        .into_iter()
        .filter(|p| p.node_id == id)
        .map(|p| p.role)
        .collect();
    assert_eq!(
        roles,
        [nkcluster_core::handshake::Role::Worker],
        "{id}'s role at {}",
        control.node_id()
    );
    node
}

/// A library worker `w1` linked to the daemon control node `c1` listening on TCP `port`
/// (the daemon's password and key derivation): returns once `w1` has the link up.
///
/// # Panics
/// When it cannot start or link within [`DEADLINE`].
pub async fn library_worker_of_daemon(port: u16) -> TestNode {
    let mut w = NodeConfig::new("w1");
    w.control = false;
    w.cluster_addr = parse_url_list(&format!("nkcluster://127.0.0.1:{port}")).expect("url");
    let worker = start(w).await;
    let mut mine = worker.subscribe();
    while !worker.peers().iter().any(|p| p.node_id == "c1") {
        wait_event(&mut mine, "w1's link up", |e| {
            matches!(e, NodeEvent::LinkUp { .. })
        })
        .await;
    }
    worker
}

/// Sends each job call from `worker` (`w1`) to the daemon control `c1`: each is refused
/// with `forbidden`, and the control logs the refusal naming `w1`.
///
/// # Panics
/// When a call is not refused so, or the log line does not come within [`DEADLINE`].
pub async fn assert_forbidden_to_worker(
    worker: &TestNode,
    control: &mut crate::Daemon,
    calls: Vec<JobCall>,
) {
    for call in calls {
        let what = format!("{call:?}");
        let (class, body) = ClusterRequest::Job(call).encode().expect("encodes");
        match worker.request("c1", class, body, DEADLINE).await {
            Err(RequestError::Remote(e)) => assert_eq!(e.code, "forbidden", "{e:?}"),
            other => panic!("a worker's {what}: {other:?}"),
        }
        control.wait_line("the refusal logged with who tried", |l| {
            l.contains("refused: forbidden") && crate::has(l, "peer", "w1")
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayState {
    Open,
    Paused,
    Cut,
}

/// A TCP relay on 127.0.0.1 to one target: copies bytes both ways unchanged (so any
/// transport passes through it), and can pause both directions (nothing more is read,
/// so a request sent meanwhile stays unanswered) or cut every connection at once (the
/// sockets close under both peers, as when a network path dies).
pub struct Relay {
    addr: SocketAddr,
    state: watch::Sender<RelayState>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays each accepted connection to `target`.
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start(target: SocketAddr) -> Relay {
        Self::start_at(0, target).await
    }

    /// The same, listening on `127.0.0.1:port` (say a port a node was told about before
    /// anything listened there).
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start_at(port: u16, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let (state, _) = watch::channel(RelayState::Open);
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut stop = state.subscribe();
        let st = state.clone();
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    r = listener.accept() => r,
                    _ = wait_cut(&mut stop) => return,
                };
                let Ok((inbound, _)) = inbound else { continue };
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ir, iw) = inbound.into_split();
                let (or, ow) = outbound.into_split();
                tokio::spawn(pump(ir, ow, st.subscribe()));
                tokio::spawn(pump(or, iw, st.subscribe()));
            }
        });
        Relay {
            addr,
            state,
            accepted,
        }
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it accepted and relayed.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops reading both ways; bytes sent from now on wait in the socket buffers.
    pub fn pause(&self) {
        self.state.send_replace(RelayState::Paused);
    }

    /// Reads and forwards again.
    pub fn resume(&self) {
        self.state.send_replace(RelayState::Open);
    }

    /// Closes every relayed connection and stops accepting (final).
    pub fn cut(&self) {
        self.state.send_replace(RelayState::Cut);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn wait_cut(state: &mut watch::Receiver<RelayState>) {
    loop {
        if *state.borrow_and_update() == RelayState::Cut {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<RelayState>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Paused: read nothing until resumed (or cut).
        loop {
            match *state.borrow_and_update() {
                RelayState::Open => break,
                RelayState::Cut => return,
                RelayState::Paused => {}
            }
            if state.changed().await.is_err() {
                return;
            }
        }
        // A pause that comes while we wait for input wins over that input.
        let n = tokio::select! {
            biased;
            r = state.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        // Bytes read before a pause are still delivered; a cut drops them.
        tokio::select! {
            biased;
            _ = wait_cut(&mut state) => return,
            r = to.write_all(&buf[..n]) => if r.is_err() {
                return;
            },
        }
    }
}
