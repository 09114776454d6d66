//! Failover bench: 3 control nodes and 300 workers (lightweight nodes in this process,
//! real TCP on loopback). One control node fails, in two ways:
//!
//! - `crash`: its runtime is dropped, so every socket closes at once (its process died;
//!   the kernel closes the sockets and peers see it immediately);
//! - `freeze`: its runtime thread stops running but its sockets stay open (a hung host or
//!   a silent network loss): only failure detection (the idle timeout) can notice.
//!
//! For each, the bench reports the time until every worker is ready at its owner in the
//! ring over the survivors (linked there, exactly one proxy), next to the configured
//! failure-detection time (the idle timeout).
//!
//! Run: `cargo bench -p nkcluster --bench failover` (`-- --quick` for 60 workers).

mod common;

use common::{Goal, target};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node};
use nkcluster_core::Role;
use nkcluster_core::ring;
use nkcluster_core::url::parse_url_list;

const PING: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_millis(1000);
/// Cheaper key derivation for 303 nodes (every node of the cluster agrees on it).
const ITERATIONS: u32 = 1000;

fn env() -> Env<TokioNet> {
    Env::real()
}

fn config(id: &str) -> NodeConfig {
    let mut c = NodeConfig::new(id);
    c.key_iterations = ITERATIONS;
    c.connection.ping_interval = PING;
    c.connection.idle_timeout = IDLE;
    c
}

/// Workers linked to `node` (its proxies).
fn served(node: &Node<TokioNet>) -> BTreeSet<String> {
    node.peers()
        .into_iter()
        .filter(|p| p.role == Role::Worker)
        .map(|p| p.node_id)
        .collect()
}

/// Whether every worker is served by exactly one of `nodes`, the ring owner over
/// `members`.
fn placed(nodes: &[(&str, &Node<TokioNet>)], members: &[&str], workers: &[String]) -> bool {
    let m: Vec<String> = members.iter().map(|s| (*s).to_owned()).collect();
    let Some(r) = ring::place(ring::PARTITIONS_DEFAULT, &m) else {
        return false;
    };
    let sets: Vec<(&str, BTreeSet<String>)> =
        nodes.iter().map(|(id, n)| (*id, served(n))).collect();
    workers.iter().all(|w| {
        let holders: Vec<&str> = sets
            .iter()
            .filter(|(_, s)| s.contains(w))
            .map(|(id, _)| *id)
            .collect();
        holders.len() == 1 && r.owner_of(w) == Some(holders[0])
    })
}

async fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        // A bench polls; tests wait on events.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.elapsed()
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    Crash,
    Freeze,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 60 } else { 300 };
    // Logs (stderr) only when asked: NKCLUSTER_LOG=info.
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_env("NKCLUSTER_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
    let mut rows = Vec::new();
    for mode in [Failure::Crash, Failure::Freeze] {
        rows.push((mode, scenario(n, mode)));
    }
    println!();
    println!(
        "failure-detection time (idle timeout): {} ms, ping {} ms",
        IDLE.as_millis(),
        PING.as_millis()
    );
    println!();
    println!(
        "| failure | workers (on the failed node) | failure -> all ready at their owner | ratio to detection time |"
    );
    println!("|---|---|---|---|");
    for (mode, (victims, took)) in &rows {
        println!(
            "| {mode:?} | {n} ({victims}) | {:.0} ms | {:.2}x (target <= 2x) |",
            took.as_secs_f64() * 1000.0,
            took.as_secs_f64() / IDLE.as_secs_f64()
        );
    }
    println!();
    for (mode, (_, took)) in &rows {
        target(
            &format!(
                "failover_vs_detection_{}",
                format!("{mode:?}").to_lowercase()
            ),
            took.as_secs_f64() / IDLE.as_secs_f64(),
            Goal::AtMost(2.0),
            "x",
            2,
        );
    }
}

/// Runs one failover; returns the failed node's worker count and the time to re-home.
fn scenario(n: usize, mode: Failure) -> (usize, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // c2 runs on its own runtime in its own thread, so that it can be killed.
    let (c2_port_tx, c2_port_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let (thaw_tx, thaw_rx) = std::sync::mpsc::channel::<()>();
    let (seed_tx, seed_rx) = std::sync::mpsc::channel::<u16>();
    let c2_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("c2 runtime");
        rt.block_on(async move {
            let seed = seed_rx.recv().expect("c1 port");
            let mut c = config("c2");
            c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp").expect("url");
            c.cluster_addr = parse_url_list(&format!("nkcluster://127.0.0.1:{seed};transport=tcp"))
                .expect("url");
            let node = Node::start(c, env()).await.expect("c2");
            c2_port_tx
                .send(node.listen_addrs()[0].1.port())
                .expect("send port");
            let _ = kill_rx.await;
            if let Failure::Freeze = mode {
                // Block the runtime's only thread: nothing of c2 runs, its sockets stay.
                let _ = thaw_rx.recv();
            }
            // Returning drops the runtime: every task and socket of c2 goes at once.
        });
    });

    let result = rt.block_on(async move {
        let mut c = config("c1");
        c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp").expect("url");
        let c1 = Node::start(c, env()).await.expect("c1");
        let p1 = c1.listen_addrs()[0].1.port();
        seed_tx.send(p1).expect("seed");
        let p2 = tokio::task::spawn_blocking(move || c2_port_rx.recv().expect("c2 port"))
            .await
            .expect("join");
        let mut c = config("c3");
        c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp").expect("url");
        c.cluster_addr =
            parse_url_list(&format!("nkcluster://127.0.0.1:{p1};transport=tcp")).expect("url");
        let c3 = Node::start(c, env()).await.expect("c3");
        let p3 = c3.listen_addrs()[0].1.port();
        wait("the control mesh", Duration::from_secs(30), || {
            c1.members().len() == 3 && c3.members().len() == 3
        })
        .await;

        let ports = [p1, p2, p3];
        let mut workers = Vec::new();
        let mut names = Vec::new();
        for i in 0..n {
            let id = format!("w{i}");
            let mut c = config(&id);
            c.control = false;
            c.listen = Vec::new();
            // Spread the first attempts; the rest of the list is the fallback.
            let list: Vec<String> = (0..3)
                .map(|k| format!("nkcluster://127.0.0.1:{};transport=tcp", ports[(i + k) % 3]))
                .collect();
            c.cluster_addr = parse_url_list(&list.join(", ")).expect("url");
            workers.push(Node::start(c, env()).await.expect("worker"));
            names.push(id);
        }
        // Converged: c1 and c3 serve exactly the workers they own, and every worker has
        // one link (so the rest are at c2, which runs on its own runtime).
        let members = ["c1", "c2", "c3"];
        let r = ring::place(ring::PARTITIONS_DEFAULT, &members.map(String::from)).expect("ring");
        let owned = |c: &str| -> BTreeSet<String> {
            names
                .iter()
                .filter(|w| r.owner_of(w) == Some(c))
                .cloned()
                .collect()
        };
        let (o1, o3) = (owned("c1"), owned("c3"));
        let t = wait("initial placement", Duration::from_secs(120), || {
            served(&c1) == o1 && served(&c3) == o3 && workers.iter().all(|w| w.peers().len() == 1)
        })
        .await;
        let victims = names.len() - o1.len() - o3.len();
        println!(
            "{mode:?}: {n} workers placed on 3 control nodes in {:.2} s (c1 {}, c2 {}, c3 {})",
            t.as_secs_f64(),
            o1.len(),
            victims,
            o3.len()
        );

        let _ = kill_tx.send(());
        let survivors = [("c1", &c1), ("c3", &c3)];
        let took = wait("re-homing after the kill", Duration::from_secs(120), || {
            placed(&survivors, &["c1", "c3"], &names)
        })
        .await;
        for w in &workers {
            w.shutdown();
        }
        c1.shutdown();
        c3.shutdown();
        (victims, took)
    });
    let _ = thaw_tx.send(());
    let _ = c2_thread.join();
    result
}
