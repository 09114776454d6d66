//! `nkcluster node` (one daemon) and `nkcluster dev` (the local quick-start cluster):
//! start, wait for a stop signal (SIGINT or SIGTERM, what systemd, Docker and Kubernetes
//! send) or a fatal connector error, then leave the cluster gracefully.

use std::process::ExitCode;
use std::time::Duration;

use nkcluster_core::url::parse_url_list;
use tracing::{error, info, warn};

use super::admin::print_rows;
use super::{DevArgs, NodeArgs, env};
use crate::config::NodeConfig;
use crate::net::TokioNet;
use crate::node::Node;

/// How long a stopping daemon may take to hand its workers over and close its links.
const STOP_LIMIT: Duration = Duration::from_secs(3);

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is called (the handlers
/// are installed at once, before the node starts, so an early signal stops the node
/// gracefully instead of killing it); the future resolves with the signal's name.
pub(super) fn stop_signals() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut i), Ok(mut t)) => tokio::select! {
                    _ = i.recv() => "SIGINT",
                    _ = t.recv() => "SIGTERM",
                },
                (Ok(mut i), Err(e)) => {
                    warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                    let _ = i.recv().await;
                    "SIGINT"
                }
                (Err(e), Ok(mut t)) => {
                    warn!(error = %e, "cannot listen for SIGINT");
                    let _ = t.recv().await;
                    "SIGTERM"
                }
                (Err(e), Err(_)) => {
                    warn!(error = %e, "cannot listen for stop signals");
                    std::future::pending().await
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

pub(super) async fn run_node(args: NodeArgs) -> ExitCode {
    let stop = stop_signals();
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    info!(node = %config.node_id, cluster = %config.cluster_name, control = config.control,
          partitions = config.partitions, "starting node");
    for url in config.listen.iter().filter(|u| u.is_exposed_plaintext()) {
        warn!(node = %config.node_id, listen = %url,
              "plaintext listener other hosts can reach: traffic after the handshake is neither encrypted nor integrity-protected (use transport=tls or wss across untrusted networks)");
    }
    if config.listen.is_empty() && config.cluster_addr.is_empty() {
        warn!(node = %config.node_id,
              "this node neither listens (listen is empty) nor dials anyone (no cluster_addr): nothing can reach it");
    }
    let node_id = config.node_id.clone();
    let http = config.http;
    let node = match Node::start_with(config, env(), Some(os_handlers(&node_id))).await {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = http
        && let Err(e) = crate::http::serve(node.clone(), addr).await
    {
        error!(node = %node_id, "{e}");
        node.shutdown_and_wait(STOP_LIMIT).await;
        return ExitCode::from(2);
    }
    tokio::select! {
        f = node.fatal() => {
            error!(code = %f.code, "{f}");
            ExitCode::from(3)
        }
        sig = stop => {
            info!(signal = sig, "stopping: leaving the cluster");
            node.shutdown_and_wait(STOP_LIMIT).await;
            ExitCode::SUCCESS
        }
    }
}

pub(super) async fn run_dev(args: DevArgs) -> ExitCode {
    let stop = stop_signals();
    let control_url = |k: u16| {
        format!(
            "nkcluster://127.0.0.1:{};transport=tcp",
            args.base_port + 10 * k
        )
    };
    let dev1 = control_url(0);
    // Workers know every control node, so losing one never strands them.
    let controls = (0..3u16).map(control_url).collect::<Vec<_>>().join(", ");
    let mut nodes: Vec<Node<TokioNet>> = Vec::new();
    let mut pages = Vec::new();
    for i in 1..=5u16 {
        let mut c = NodeConfig::new(format!("dev{i}"));
        c.control = i <= 3;
        c.listen = if c.control {
            match parse_url_list(&control_url(i - 1)) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("nkcluster dev: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            Vec::new()
        };
        if i > 3 {
            c.cluster_addr = parse_url_list(&controls).unwrap_or_default();
        } else if i > 1 {
            c.cluster_addr = parse_url_list(&dev1).unwrap_or_default();
        }
        let listen = c.listen.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        match Node::start_with(c, env(), Some(os_handlers(&format!("dev{i}")))).await {
            Ok(n) => {
                let http = match args.http_port {
                    0 => None,
                    base if i <= 3 => Some(std::net::SocketAddr::from((
                        [127, 0, 0, 1],
                        base.saturating_add(i - 1),
                    ))),
                    _ => None,
                };
                if let Some(addr) = http {
                    match crate::http::serve(n.clone(), addr).await {
                        Ok(bound) => pages.push(format!("dev{i}  http://{bound}/")),
                        Err(e) => {
                            eprintln!("nkcluster dev: dev{i}: {e} (--http-port 0 turns it off)");
                            n.shutdown_and_wait(STOP_LIMIT).await;
                            for n in &nodes {
                                n.shutdown_and_wait(STOP_LIMIT).await;
                            }
                            return ExitCode::from(2);
                        }
                    }
                }
                outln!(
                    "dev{i}  {:<8} {}",
                    if i <= 3 { "control" } else { "worker" },
                    if listen.is_empty() {
                        "(no listener)".into()
                    } else {
                        listen.join(", ")
                    }
                );
                nodes.push(n);
            }
            Err(e) => {
                eprintln!("nkcluster dev: dev{i}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Wait until the cluster has converged, then print the node table.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let members = ["dev1", "dev2", "dev3"].map(String::from);
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members);
    // Converged: every control node sees the three members, and every worker is linked
    // to exactly one control node, its ring owner (its one proxy).
    let converged = |nodes: &[Node<TokioNet>]| {
        nodes[..3].iter().all(|n| n.members() == members)
            && nodes[3..].iter().all(|w| {
                let owner = ring.as_ref().and_then(|r| r.owner_of(w.node_id()));
                let holders: Vec<&str> = nodes[..3]
                    .iter()
                    .filter(|c| c.peers().iter().any(|p| p.node_id == w.node_id()))
                    .map(|c| c.node_id())
                    .collect();
                holders.len() == 1 && owner == Some(holders[0])
            })
    };
    while !converged(&nodes) && tokio::time::Instant::now() < deadline {
        // Any node event may complete convergence.
        let any = futures_util::future::select_all(events.iter_mut().map(|e| Box::pin(e.recv())));
        let _ = tokio::time::timeout_at(deadline, any).await;
    }
    if !converged(&nodes) {
        eprintln!("nkcluster dev: the cluster did not converge within 30 s (see the log)");
    }
    outln!();
    let report = nodes[0].cluster_nodes().await;
    print_rows(&report.rows, &report.incomplete);
    let addr = if args.base_port == 1972 {
        String::new()
    } else {
        format!(" --addr '{dev1}'")
    };
    if !pages.is_empty() {
        outln!("\ndashboards (metrics at /metrics):");
        for p in &pages {
            outln!("  {p}");
        }
    }
    outln!("\nrunning; Ctrl-C to stop. In another terminal, try:");
    for cmd in [
        "nodes",
        "node-info dev4",
        "call dev3 node",
        "set-status dev5 standby",
        "events --follow",
    ] {
        let (verb, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(" {rest}")
        };
        outln!("  cargo run --release -p nkcluster -- {verb}{addr}{rest}");
    }
    let _ = stop.await;
    for n in &nodes {
        n.shutdown_and_wait(STOP_LIMIT).await;
    }
    ExitCode::SUCCESS
}

/// A daemon's handlers: the built-in ones and the `nkcluster.os` class.
fn os_handlers(node_id: &str) -> crate::node::Handlers {
    crate::os::daemon_handlers(node_id)
}
