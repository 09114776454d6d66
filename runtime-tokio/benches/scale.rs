//! Scale bench: handshakes per second on one control node, and memory per idle link.
//!
//! A control node listens on loopback; `N` worker nodes (distinct ids, started before the
//! timed part) link to it with `Node::connect`, 64 at a time, each a full TCP (or TLS,
//! WebSocket) connect plus the mutual handshake plus what a worker's arrival costs the
//! control node (its proxy, its place on the ring, its first report, whose machine
//! figures are fixed: probing the machine is the worker's cost, on its own machine).
//! Every node runs in this process on
//! one 2-worker runtime, so the rate is a lower bound for the control node alone. The
//! password key is derived once per node, before the timed part, with few rounds (the
//! iteration count plays no part in a link's cost). Then the process's RSS growth per
//! idle link is reported (both ends of each link live here, so one end is about half;
//! the idle bench measures the control's end alone, at 10,000 links).
//! Beside them, the same number of plain TCP connections (the server writes one byte, the
//! client reads it) and of plain rustls handshakes (nkcluster's own TLS configuration,
//! tokio-rustls, no nkcluster handshake on top; full handshakes, as each distinct worker's
//! first link is, with sessions resumed in a reference row; kept open until the timed
//! part ends, as the links are, with a reference row that closes each one): the
//! baselines of the TCP and TLS rates; the run ends with what the TLS row holds beyond
//! rustls, and the issue-15 target lines.
//!
//! Run: `cargo bench -p nkcluster --bench scale` (`-- --quick` for N = 500). To profile
//! the timed part of one transport alone: `mkfifo /tmp/ctl; NKCLUSTER_PERF_CTL=/tmp/ctl
//! perf record --control fifo:/tmp/ctl -D -1 -e cpu-clock -g <bench binary> --only tcp`
//! (the baselines too: `--only raw`, `--only rustls`, `--only rustls_closing`).

mod common;

use common::{Goal, perf_control, target};
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

/// Password rounds of every node here: the key is derived once per node, outside the
/// timed part.
const KEY_ITERATIONS: u32 = 1;
/// Nodes starting or connecting at a time.
const CONCURRENCY: usize = 64;

/// Runs `make(i)` for `i` in `0..n`, `CONCURRENCY` at a time; returns the results.
async fn in_parallel<T, F>(n: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    let mut started = 0;
    while out.len() < n {
        while started < n && set.len() < CONCURRENCY {
            set.spawn(make(started));
            started += 1;
        }
        if let Some(r) = set.join_next().await {
            out.push(r.expect("task"));
        }
    }
    out
}

async fn run(transport: &str, n: usize) -> (f64, f64, f64) {
    let mut c = NodeConfig::new("c1");
    c.key_iterations = KEY_ITERATIONS;
    c.listen =
        parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={transport}")).expect("url");
    // Idle links must stay up for the memory reading: long ping and idle timeouts.
    c.connection.ping_interval = Duration::from_secs(60);
    c.connection.idle_timeout = Duration::from_secs(600);
    let control = Node::start(c, env()).await.expect("control");
    let port = control.listen_addrs()[0].1.port();
    let url: std::sync::Arc<str> =
        format!("nkcluster://127.0.0.1:{port};transport={transport}").into();
    let start = |id: String| async move {
        let mut w = NodeConfig::new(id);
        w.control = false;
        w.listen = Vec::new();
        w.key_iterations = KEY_ITERATIONS;
        w.connection = control_conn();
        Node::start(w, common::fixed_figures_env())
            .await
            .expect("worker")
    };
    // Warm up (TLS config caches, lazily built tables) outside the timed part.
    let warm = start("warm".into()).await;
    warm.connect(&url).await.expect("warm-up link");
    let workers = in_parallel(n, |i| start(format!("w{i}"))).await;
    let rss0 = rss_kib();
    perf_control("enable");
    let t = Instant::now();
    let linked = in_parallel(n, |i| {
        let (w, url) = (workers[i].clone(), url.clone());
        async move { w.connect(&url).await.map(|_| ()) }
    })
    .await;
    let secs = t.elapsed().as_secs_f64();
    perf_control("disable");
    for r in linked {
        r.expect("link");
    }
    let rss1 = rss_kib();
    let per_link = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    for w in workers.iter().chain([&warm]) {
        w.shutdown();
    }
    control.shutdown();
    (n as f64 / secs, per_link, per_link / 2.0)
}

/// `n` plain TCP connections (64 at a time) on loopback; each counts once the server has
/// accepted and the client has read the server's first byte. Returns connections per
/// second: the floor of a TCP link's setup on this machine and runtime.
async fn tcp_rate(n: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = s.write_all(b"k").await;
                let mut end = [0u8; 1];
                let _ = s.read(&mut end).await;
            });
        }
    });
    perf_control("enable");
    let t = Instant::now();
    let done = in_parallel(n, |_| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await?;
        std::io::Result::Ok(())
    })
    .await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    perf_control("disable");
    for r in done {
        r.expect("tcp connection");
    }
    rate
}

/// `n` plain rustls handshakes (64 at a time) on loopback with nkcluster's own TLS
/// configuration; each counts once the server has accepted and the client has read the
/// server's first byte (done at both ends). Returns handshakes per second.
///
/// With `messages`, each connection instead carries, after the handshake, the five
/// messages a worker's link opens with, at their sizes ([`LINK_OPENING`]: the two hellos,
/// the two proofs, the worker's first reports), each waited for before the next is
/// written, with no nkcluster code: the floor of any link setup that authenticates in
/// two round trips on top of TLS, for reference.
///
/// Like for like with the nkcluster rows, where `n` distinct workers link once each and
/// each worker has its own client configuration (so its own, empty, session cache: every
/// link is a full handshake), each connection here has a client configuration of its
/// own, made before the timed part, unless `resume`: then one configuration serves every
/// connection and most of them resume a session the server ticketed before (no
/// certificate signature or verification); that row is shown for reference only.
///
/// With `keep`, every connection stays open at both ends until the timed part has
/// ended, as the nkcluster rows' links do (they stay up for the memory reading): the
/// process then holds `n` live TLS connections, and its memory grows with them (fresh
/// heap pages, their page faults) as it does under the nkcluster rows. Without it, each
/// connection closes once counted, and the next reuses the memory it gave back (the
/// baseline before 2026-12-05, kept as a reference row: 9-16% faster than the same
/// handshakes kept in quick runs on this 2-core machine). Returns handshakes per second and, with
/// `keep`, the process's RSS growth per kept connection (both ends), in KiB.
async fn rustls_rate(n: usize, resume: bool, messages: bool, keep: bool) -> (f64, f64) {
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
                    if messages {
                        let _ = opening(&mut s, false).await;
                    } else {
                        let _ = s.write_all(b"k").await;
                        let _ = s.flush().await;
                    }
                    let mut end = [0u8; 1];
                    let _ = s.read(&mut end).await;
                }
            });
        }
    });
    let connectors: Vec<tokio_rustls::TlsConnector> = (0..n)
        .map(|_| {
            if resume {
                client.clone()
            } else {
                nkcluster::transport::client_tls(&TlsOptions::default()).expect("client config")
            }
            .into()
        })
        .collect();
    let connectors = std::sync::Arc::new(connectors);
    let one = move |i: usize| {
        let connector = connectors[i].clone();
        async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut s = connector.connect(name, s).await?;
            if messages {
                opening(&mut s, true).await?;
            } else {
                let mut first = [0u8; 1];
                s.read_exact(&mut first).await?;
            }
            // Held, the server's end stays too: it waits for the client's close.
            std::io::Result::Ok(keep.then_some(s))
        }
    };
    // The warm-up uses the last configuration (its session stays unused unless resuming).
    drop(one(n - 1).await.expect("warm-up handshake"));
    let rss_before = rss_kib();
    perf_control("enable");
    let t = Instant::now();
    let done = in_parallel(n, one).await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    perf_control("disable");
    let per_link = (rss_kib().saturating_sub(rss_before)) as f64 / n as f64;
    let kept: Vec<_> = done
        .into_iter()
        .map(|r| r.expect("rustls handshake"))
        .collect();
    drop(kept);
    (rate, if keep { per_link } else { f64::NAN })
}

/// The messages a worker's TLS link opens with, in order, and their sizes as framed on
/// the wire (measured with strace on the tcp row): the worker's hello, the control's
/// hello, the worker's proof, the control's proof with its `placed` notice, the
/// worker's first status and information reports. `true`: the worker (dialer) sends it.
const LINK_OPENING: [(bool, usize); 5] = [
    (true, 67),
    (false, 108),
    (true, 37),
    (false, 60),
    (true, 148),
];

/// Plays [`LINK_OPENING`] on `s` as the dialer (`dialer`) or the listener: writes its
/// own messages, reads the peer's whole, in order.
async fn opening<S>(s: &mut S, dialer: bool) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [7u8; 256];
    for (by_dialer, len) in LINK_OPENING {
        if by_dialer == dialer {
            s.write_all(&buf[..len]).await?;
            s.flush().await?;
        } else {
            s.read_exact(&mut buf[..len]).await?;
        }
    }
    Ok(())
}

fn control_conn() -> nkcluster_core::ConnectionConfig {
    nkcluster_core::ConnectionConfig {
        ping_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(600),
        ..Default::default()
    }
}

/// Alternated runs of the tls and rustls rows (see `main`).
const TLS_PAIRS: usize = 3;

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
        let run_row = |t: &str| -> Vec<f64> {
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
            text.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    (words.next()? == t)
                        .then(|| words.map(|w| w.parse().unwrap_or(f64::NAN)).collect())
                })
                .next()
                .unwrap_or_default()
        };
        let mut figures: Vec<(String, Vec<f64>)> = Vec::new();
        for t in ["tcp", "ws", "wss", "raw", "rustls_resumed"] {
            figures.push((t.to_owned(), run_row(t)));
        }
        // The TLS target is a ratio of two rows: they run side by side, in alternated
        // pairs, and the pair with the median ratio is taken (one pair read anywhere from
        // 0.65x to 0.95x on a busy machine, as the two runs met different load).
        // Each round also runs two reference rows (not targets): rustls_msgs, the same
        // handshake carrying the link's five opening messages with no nkcluster code, and
        // rustls_closing, the rustls row with each connection closed once counted (the
        // target's baseline until 2026-12-05).
        let rounds: Vec<[f64; 4]> = (0..TLS_PAIRS)
            .map(|_| {
                ["tls", "rustls", "rustls_msgs", "rustls_closing"]
                    .map(|t| run_row(t).first().copied().unwrap_or(f64::NAN))
            })
            .collect();
        let mut pairs: Vec<(f64, f64)> = rounds.iter().map(|r| (r[0], r[1])).collect();
        let ratios: Vec<String> = pairs.iter().map(|(t, r)| format!("{:.2}", t / r)).collect();
        pairs.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let (tls, rustls) = pairs[TLS_PAIRS / 2];
        // The median over the rounds of one ratio of two rows.
        let median_of = |top: usize, bottom: usize| {
            let mut v: Vec<f64> = rounds.iter().map(|r| r[top] / r[bottom]).collect();
            v.sort_by(f64::total_cmp);
            v[TLS_PAIRS / 2]
        };
        let fig = |name: &str, col: usize| {
            figures
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.get(col).copied())
                .unwrap_or(f64::NAN)
        };
        println!(
            "tls / rustls, {TLS_PAIRS} alternated pairs: {} (the median taken)",
            ratios.join(" / ")
        );
        println!(
            "reference, medians of the same rounds: rustls_msgs / rustls {:.2}x (the floor of \
             two round trips of authentication on top of TLS), tls / rustls_msgs {:.2}x; \
             rustls / rustls_closing {:.2}x (what keeping the connections costs), \
             tls / rustls_closing {:.2}x",
            median_of(2, 1),
            median_of(0, 2),
            median_of(1, 3),
            median_of(0, 3)
        );
        println!();
        println!(
            "tls row: a full TLS 1.3 handshake (each worker has its own client configuration) \
             + the TLS exporter + nkcluster's mutual handshake (hello and proof each way: \
             4 messages, 2 round trips) + the worker's arrival (proxy, ring place, placed \
             notice, first status and info report, their replies), both ends in this process"
        );
        println!(
            "rustls row: the same full TLS 1.3 handshake (same configurations, a client \
             configuration per connection), then one byte each way, every connection kept \
             open at both ends until the timed part ends, as the tls row's links stay up \
             (its KiB column: RSS growth per connection); rustls_closing: the same, each \
             connection closed once counted (its memory reused by the next); \
             rustls_resumed: one client configuration for all (sessions resumed), for \
             reference; rustls_msgs: the rustls row's handshake, then the five messages a \
             worker's link opens with (hello each way, proof each way, the first reports; \
             nkcluster's sizes, each written once the one before it is read), no \
             nkcluster code"
        );
        target(
            "handshakes_per_s_tcp",
            fig("tcp", 0),
            Goal::AtLeast(10_000.0),
            "",
            0,
        );
        target(
            "tls_handshakes_vs_rustls",
            tls / rustls,
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
    if t == "raw" || t.starts_with("rustls") {
        let (rate, kib) = rt.block_on(async {
            let t = t.to_owned();
            match t.as_str() {
                "raw" => (tokio::spawn(tcp_rate(n)).await.expect("raw run"), f64::NAN),
                "rustls" | "rustls_resumed" | "rustls_msgs" | "rustls_closing" => {
                    let resume = t == "rustls_resumed";
                    let messages = t == "rustls_msgs";
                    let keep = t != "rustls_closing";
                    tokio::spawn(rustls_rate(n, resume, messages, keep))
                        .await
                        .expect("rustls run")
                }
                _ => panic!("unknown row {t}"),
            }
        });
        if kib.is_nan() {
            println!("{t:<6} {rate:>16.0} {:>22} {:>22}", "-", "-");
        } else {
            println!("{t:<6} {rate:>16.0} {kib:>22.1} {:>22.1}", kib / 2.0);
        }
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
