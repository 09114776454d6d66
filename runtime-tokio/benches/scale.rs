//! Scale bench: handshakes per second on one control node, and memory per idle link.
//!
//! A control node listens on loopback; a worker node opens `N` links to it with
//! `Node::connect` (64 at a time), each a full TCP (or TLS) connect plus the mutual
//! handshake. Both ends run in this process on one 2-worker runtime, so the rate is a
//! lower bound for the control node alone. The key is derived once per password
//! (production iteration count), not per connection. Then the process's RSS growth per
//! idle link is reported (both ends of each link live here, so one end is about half).
//! Beside them, the same number of plain rustls handshakes (nkcluster's own TLS
//! configuration, tokio-rustls, no nkcluster handshake on top), the baseline of the TLS
//! rate; the run ends with the issue-15 target lines.
//!
//! Run: `cargo bench -p nkcluster --bench scale` (`-- --quick` for N = 500).

mod common;

use common::{Goal, target};
use std::time::{Duration, Instant};

use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node};
use nkcluster_core::url::parse_url_list;
use tokio::task::JoinSet;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env() -> Env<TokioNet> {
    Env::real()
}

async fn run(transport: &str, n: usize) -> (f64, f64, f64) {
    let mut c = NodeConfig::new("c1");
    c.listen =
        parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={transport}")).expect("url");
    // Idle links must stay up for the memory reading: long ping and idle timeouts.
    c.connection.ping_interval = Duration::from_secs(60);
    c.connection.idle_timeout = Duration::from_secs(600);
    let control = Node::start(c, env()).await.expect("control");
    let port = control.listen_addrs()[0].1.port();
    let mut w = NodeConfig::new("w1");
    w.control = false;
    w.listen = Vec::new();
    w.connection = control_conn();
    let worker = Node::start(w, env()).await.expect("worker");
    let url = format!("nkcluster://127.0.0.1:{port};transport={transport}");
    // Warm up (key derivation, TLS config caches) outside the timed part.
    worker.connect(&url).await.expect("warm-up link");
    let rss0 = rss_kib();
    let t = Instant::now();
    let mut set = JoinSet::new();
    let mut done = 0;
    let mut started = 0;
    while done < n {
        while started < n && set.len() < 64 {
            let w = worker.clone();
            let u = url.clone();
            set.spawn(async move { w.connect(&u).await });
            started += 1;
        }
        if let Some(r) = set.join_next().await {
            r.expect("task").expect("link");
            done += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rss1 = rss_kib();
    let per_link = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    worker.shutdown();
    control.shutdown();
    (n as f64 / secs, per_link, per_link / 2.0)
}

/// `n` plain rustls handshakes (64 at a time) on loopback with nkcluster's own TLS
/// configuration; each counts once the server has accepted and the client has read the
/// server's first byte (done at both ends). Returns handshakes per second.
async fn rustls_rate(n: usize) -> f64 {
    use nkcluster_core::url::TlsOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = nkcluster::transport::server_tls(&TlsOptions::default(), "bench")
        .expect("server config")
        .config();
    let client = nkcluster::transport::client_tls(&TlsOptions::default()).expect("client config");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            // As nkcluster's sockets (`TokioNet`): no Nagle delay on the small records
            // that follow the handshake.
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(s).await {
                    let _ = s.write_all(b"k").await;
                    let _ = s.flush().await;
                    let mut end = [0u8; 1];
                    let _ = s.read(&mut end).await;
                }
            });
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let one = move || {
        let connector = connector.clone();
        async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut s = connector.connect(name, s).await?;
            let mut first = [0u8; 1];
            s.read_exact(&mut first).await?;
            std::io::Result::Ok(())
        }
    };
    one().await.expect("warm-up handshake");
    let t = Instant::now();
    let mut set = JoinSet::new();
    let (mut done, mut started) = (0, 0);
    while done < n {
        while started < n && set.len() < 64 {
            set.spawn(one());
            started += 1;
        }
        if let Some(r) = set.join_next().await {
            r.expect("task").expect("rustls handshake");
            done += 1;
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn control_conn() -> nkcluster_core::ConnectionConfig {
    nkcluster_core::ConnectionConfig {
        ping_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 500 } else { 5000 };
    // Each transport runs in a fresh process, so that memory freed by one run does not
    // hide the next run's growth.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let Some(only) = only else {
        println!("nkcluster scale bench: {n} links per transport, 64 connecting at a time");
        println!(
            "{:<6} {:>16} {:>22} {:>22}",
            "", "handshakes/s", "RSS KiB/link (2 ends)", "~KiB per end"
        );
        let exe = std::env::current_exe().expect("own path");
        // Each child prints its row: name, handshakes/s, KiB per link, KiB per end.
        let mut figures: Vec<(String, Vec<f64>)> = Vec::new();
        for t in ["tcp", "tls", "ws", "wss", "rustls"] {
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["--only", t]);
            if quick {
                cmd.arg("--quick");
            }
            cmd.stderr(std::process::Stdio::inherit());
            let out = cmd.output().expect("run a transport");
            assert!(out.status.success(), "{t} run failed");
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let Some(name) = words.next() {
                    let nums = words.map(|w| w.parse().unwrap_or(f64::NAN)).collect();
                    figures.push((name.to_owned(), nums));
                }
            }
        }
        let fig = |name: &str, col: usize| {
            figures
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.get(col).copied())
                .unwrap_or(f64::NAN)
        };
        println!();
        target(
            "handshakes_per_s_tcp",
            fig("tcp", 0),
            Goal::AtLeast(10_000.0),
            "",
            0,
        );
        target(
            "tls_handshakes_vs_rustls",
            fig("tls", 0) / fig("rustls", 0),
            Goal::AtLeast(0.9),
            "x",
            2,
        );
        // The idle-link memory targets (idle_<transport>_link_kib) are the idle bench's:
        // it measures the control node's end alone, at 10,000 links.
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t = only.as_str();
    if t == "rustls" {
        let rate = rt.block_on(async { tokio::spawn(rustls_rate(n)).await.expect("rustls run") });
        println!("{t:<6} {rate:>16.0} {:>22} {:>22}", "-", "-");
        return;
    }
    let (rate, both, one) = rt.block_on(async {
        let t = t.to_owned();
        tokio::spawn(async move { run(&t, n).await })
            .await
            .expect("run")
    });
    println!("{t:<6} {rate:>16.0} {both:>22.1} {one:>22.1}");
}
