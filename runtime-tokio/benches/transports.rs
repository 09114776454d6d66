//! Transport benchmark, one run, one table: for each transport (tcp, tls, ws, wss),
//! request round trip and bulk throughput of nkcluster next to a raw baseline over the
//! same stack, with their ratio.
//!
//! - Round trip: 32-byte body, sequential. nkcluster: two in-process nodes (a control
//!   listening on the transport, a worker that `connect`s to it) and `nkcluster.echo`.
//!   Raw: a length-prefixed ping-pong over plain TCP or plain tokio-rustls (TLS 1.3, ring),
//!   a binary-message ping-pong over plain tokio-tungstenite (over TCP, or over rustls).
//! - Bulk: 1 MiB bodies. nkcluster: requests to a `sink` handler (empty reply), 8 in
//!   flight, timed until the last reply. Raw: a one-way copy of the same bytes in 1 MiB
//!   writes (1 MiB binary messages on WebSockets), the receiver reading everything and
//!   acknowledging the end with one byte (one small message).
//!
//! Raw WebSockets use tungstenite's default configuration; the extra "nk ws cfg" rows
//! run the same baseline with the configuration nkcluster's transport uses (8 KiB read
//! buffer, no write buffering), to separate the library's cost from ours. The target check
//! of a transport with two baselines uses the better raw figure of each metric. Round
//! trip means are also given against raw TCP.
//!
//! Bulk also reports CPU cost: the process's CPU time (every thread, user and kernel, both
//! ends of the link) per GB moved, from Linux schedstat. On a busy machine MB/s swings
//! with the CPU left over; CPU per GB shows what each stack costs regardless.
//!
//! Every client runs as a task on one tokio multi-thread runtime with 2 workers.
//!
//! Run: `cargo bench -p nkcluster --bench transports` (`-- --quick` for a short run).

mod common;

use common::{Goal, Lat, stats, target};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkcluster::config::NodeConfig;
use nkcluster::net::{Stream, TokioNet};
use nkcluster::node::{Env, Handlers, Node};
use nkcluster::transport;
use nkcluster_core::url::{TlsOptions, parse_url_list};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const RTT_BODY: usize = 32;
const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 8;
/// Untimed bytes sent before each bulk measurement.
const BULK_WARMUP: usize = 8 * CHUNK;
/// Receive buffer of the raw stream copies (the driver's read buffer grows to this size).
const RAW_READ_BUF: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Round trips run in this many interleaved rounds per variant, samples pooled.
const RTT_ROUNDS: usize = 5;
/// Bulk runs this many interleaved rounds per variant; the best counts.
const BULK_ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }

    fn raw_label(self) -> &'static str {
        match self {
            Kind::Tcp => "raw TCP",
            Kind::Tls => "raw rustls",
            Kind::Ws => "raw tungstenite",
            Kind::Wss => "raw tungstenite+rustls",
        }
    }
}

/// The timed part of one bulk run.
#[derive(Clone, Copy, Default)]
struct Bulk {
    secs: f64,
    /// CPU time of the whole process (every thread, user and kernel), ns.
    cpu_ns: u64,
}

/// CPU time consumed so far by this process's live threads, ns (Linux schedstat; 0
/// elsewhere). The runtime's threads live for the whole run, so differences are exact.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One row of results: round trip, bulk throughput (MB/s, 10^6 bytes) and bulk CPU cost.
struct Row {
    label: String,
    rtt: Lat,
    mbps: f64,
    /// CPU ms per GB moved (all rounds), when measurable.
    cpu_ms_per_gb: Option<f64>,
}

// ---------------------------------------------------------------------------------------
// Raw stacks.

struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The raw TLS configuration: exactly nkcluster's own (`transport::server_tls` with a
/// generated self-signed certificate, TLS 1.3 only, ring; the client with
/// `tls_verify=false`), used here by plain tokio-rustls.
fn raw_tls() -> Tls {
    let server = transport::server_tls(&TlsOptions::default(), "bench")
        .expect("server config")
        .config();
    let client = transport::client_tls(&TlsOptions::default()).expect("client config");
    Tls { server, client }
}

/// A connected loopback TCP pair (client, server), no Nagle.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let c = c.expect("connect");
    let (s, _) = s.expect("accept");
    c.set_nodelay(true).expect("nodelay");
    s.set_nodelay(true).expect("nodelay");
    (c, s)
}

type TlsClient = tokio_rustls::client::TlsStream<TcpStream>;
type TlsServer = tokio_rustls::server::TlsStream<TcpStream>;

async fn tls_pair(tls: &Tls) -> (TlsClient, TlsServer) {
    let (c, s) = tcp_pair().await;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let (c, s) = tokio::join!(
        TlsConnector::from(tls.client.clone()).connect(name, c),
        TlsAcceptor::from(tls.server.clone()).accept(s)
    );
    (c.expect("tls connect"), s.expect("tls accept"))
}

/// tungstenite's defaults, or the configuration nkcluster's transport uses.
fn ws_config(nk: bool) -> WebSocketConfig {
    if nk {
        let max = nkcluster_core::MAX_FRAME_DEFAULT as usize;
        WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(32 * 1024)
            .write_buffer_size(0)
    } else {
        WebSocketConfig::default()
    }
}

async fn ws_pair<C: Stream, S: Stream>(
    c: C,
    s: S,
    scheme: &str,
    nk: bool,
) -> (WebSocketStream<C>, WebSocketStream<S>) {
    let url = format!("{scheme}://127.0.0.1/");
    let (c, s) = tokio::join!(
        tokio_tungstenite::client_async_with_config(url.as_str(), c, Some(ws_config(nk))),
        tokio_tungstenite::accept_async_with_config(s, Some(ws_config(nk)))
    );
    (c.expect("ws connect").0, s.expect("ws accept"))
}

fn frame(size: usize) -> Vec<u8> {
    let mut msg = (size as u32).to_be_bytes().to_vec();
    msg.extend(std::iter::repeat_n(7u8, size));
    msg
}

/// Length-prefixed ping-pong over a byte stream; the server echoes from its own task.
async fn stream_rtt<C: Stream, S: Stream>(mut c: C, mut s: S, n: usize) -> Vec<Duration> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4 + RTT_BODY];
        loop {
            if s.read_exact(&mut buf[..4]).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let len = len.min(RTT_BODY);
            if s.read_exact(&mut buf[4..4 + len]).await.is_err() {
                return;
            }
            if s.write_all(&buf[..4 + len]).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    });
    let msg = frame(RTT_BODY);
    let mut back = [0u8; 4 + RTT_BODY];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.flush().await.expect("flush");
        c.read_exact(&mut back).await.expect("read");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    let _ = c.shutdown().await;
    lat
}

/// One-way copy in `CHUNK` writes; the receiver acknowledges the warm-up and the end with
/// one byte each. Returns the timed part.
async fn stream_bulk<C: Stream, S: Stream>(mut c: C, mut s: S, total: usize) -> Bulk {
    tokio::spawn(async move {
        let mut buf = vec![0u8; RAW_READ_BUF];
        for phase in [BULK_WARMUP, total] {
            let mut left = phase;
            while left > 0 {
                let want = left.min(buf.len());
                let n = s.read(&mut buf[..want]).await.expect("read");
                assert!(n > 0, "eof in bulk copy");
                left -= n;
            }
            s.write_all(&[1]).await.expect("ack");
            s.flush().await.expect("flush");
        }
    });
    let chunk = vec![0x5au8; CHUNK];
    let mut ack = [0u8; 1];
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let (t, c0) = (Instant::now(), cpu_ns());
        for _ in 0..phase / CHUNK {
            c.write_all(&chunk).await.expect("write");
        }
        c.flush().await.expect("flush");
        c.read_exact(&mut ack).await.expect("ack");
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    let _ = c.shutdown().await;
    out
}

/// Binary-message ping-pong; the server echoes from its own task.
async fn ws_rtt<C: Stream, S: Stream>(
    mut c: WebSocketStream<C>,
    mut s: WebSocketStream<S>,
    n: usize,
) -> Vec<Duration> {
    tokio::spawn(async move {
        while let Some(Ok(m)) = s.next().await {
            if let WsMessage::Binary(b) = m
                && s.send(WsMessage::Binary(b)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Bytes::from(vec![7u8; RTT_BODY]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.send(WsMessage::Binary(body.clone())).await.expect("send");
        match c.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                black_box(b);
            }
            other => panic!("unexpected {other:?}"),
        }
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    let _ = c.close(None).await;
    lat
}

/// One-way copy in `CHUNK` binary messages; the receiver acknowledges the warm-up and the
/// end with one small message each. Returns the timed part.
async fn ws_bulk<C: Stream, S: Stream>(
    mut c: WebSocketStream<C>,
    mut s: WebSocketStream<S>,
    total: usize,
) -> Bulk {
    tokio::spawn(async move {
        for phase in [BULK_WARMUP, total] {
            let mut left = phase;
            while left > 0 {
                match s.next().await {
                    Some(Ok(WsMessage::Binary(b))) => left -= b.len(),
                    other => panic!("unexpected {other:?}"),
                }
            }
            s.send(WsMessage::Binary(Bytes::from_static(&[1])))
                .await
                .expect("ack");
        }
    });
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let (t, c0) = (Instant::now(), cpu_ns());
        for _ in 0..phase / CHUNK {
            c.feed(WsMessage::Binary(chunk.clone()))
                .await
                .expect("feed");
        }
        c.flush().await.expect("flush");
        match c.next().await {
            Some(Ok(WsMessage::Binary(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    let _ = c.close(None).await;
    out
}

async fn raw_rtt(kind: Kind, tls: &Tls, n: usize, nk_cfg: bool) -> Vec<Duration> {
    match kind {
        Kind::Tcp => {
            let (c, s) = tcp_pair().await;
            stream_rtt(c, s, n).await
        }
        Kind::Tls => {
            let (c, s) = tls_pair(tls).await;
            stream_rtt(c, s, n).await
        }
        Kind::Ws => {
            let (c, s) = tcp_pair().await;
            let (c, s) = ws_pair(c, s, "ws", nk_cfg).await;
            ws_rtt(c, s, n).await
        }
        Kind::Wss => {
            let (c, s) = tls_pair(tls).await;
            let (c, s) = ws_pair(c, s, "wss", nk_cfg).await;
            ws_rtt(c, s, n).await
        }
    }
}

async fn raw_bulk(kind: Kind, tls: &Tls, total: usize, nk_cfg: bool) -> Bulk {
    match kind {
        Kind::Tcp => {
            let (c, s) = tcp_pair().await;
            stream_bulk(c, s, total).await
        }
        Kind::Tls => {
            let (c, s) = tls_pair(tls).await;
            stream_bulk(c, s, total).await
        }
        Kind::Ws => {
            let (c, s) = tcp_pair().await;
            let (c, s) = ws_pair(c, s, "ws", nk_cfg).await;
            ws_bulk(c, s, total).await
        }
        Kind::Wss => {
            let (c, s) = tls_pair(tls).await;
            let (c, s) = ws_pair(c, s, "wss", nk_cfg).await;
            ws_bulk(c, s, total).await
        }
    }
}

// ---------------------------------------------------------------------------------------
// nkcluster.

const KEY_ITERATIONS: u32 = 16;

fn env() -> Env<TokioNet> {
    Env {
        net: TokioNet,
        seed: None,
        wall_origin_ns: None,
        tls_provider: None,
        machine_figures: None,
    }
}

/// A control listening on `kind` and a worker connected to it.
struct NkPair {
    c1: Node<TokioNet>,
    w1: Node<TokioNet>,
}

async fn nk_pair(kind: Kind) -> NkPair {
    let t = kind.name();
    let mut c = NodeConfig::new("c1");
    c.key_iterations = KEY_ITERATIONS;
    c.listen = parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={t}")).expect("url");
    let mut handlers = Handlers::builtin("c1");
    handlers.insert_for_workers("sink", |_| Ok(Bytes::new()));
    let c1 = Node::start_with(c, env(), Some(handlers))
        .await
        .expect("c1");
    let port = c1.listen_addrs()[0].1.port();
    let mut w = NodeConfig::new("w1");
    w.key_iterations = KEY_ITERATIONS;
    w.control = false;
    let w1 = Node::start(w, env()).await.expect("w1");
    let peer = w1
        .connect(&format!("nkcluster://127.0.0.1:{port};transport={t}"))
        .await
        .expect("connect");
    assert_eq!(peer.node_id, "c1");
    assert!(peer.remote.starts_with(t), "{}", peer.remote);
    NkPair { c1, w1 }
}

async fn nk_rtt(w1: &Node<TokioNet>, n: usize) -> Vec<Duration> {
    let body = Bytes::from(vec![7u8; RTT_BODY]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r = w1
            .request("c1", "nkcluster.echo", body.clone(), TIMEOUT)
            .await
            .expect("reply");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
        black_box(r);
    }
    lat
}

/// `IN_FLIGHT` requests of `CHUNK` bytes at a time to the sink, each from its own task.
async fn nk_bulk(w1: &Node<TokioNet>, total: usize) -> Bulk {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let mut out = Bulk::default();
    for (timed, phase) in [(false, BULK_WARMUP), (true, total)] {
        let count = phase / CHUNK;
        let (t, c0) = (Instant::now(), cpu_ns());
        let mut set = JoinSet::new();
        let mut sent = 0;
        while sent < count || !set.is_empty() {
            while sent < count && set.len() < IN_FLIGHT {
                let w = w1.clone();
                let b = chunk.clone();
                set.spawn(async move { w.request("c1", "sink", b, TIMEOUT).await });
                sent += 1;
            }
            let r = set.join_next().await.expect("a task").expect("joined");
            assert!(r.expect("sink reply").is_empty());
        }
        if timed {
            out = Bulk {
                secs: t.elapsed().as_secs_f64(),
                cpu_ns: cpu_ns().saturating_sub(c0),
            };
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    RawNkWsConfig,
    Nk,
}

/// Measures every variant of `kind`, interleaved round by round so that background load
/// hits them alike: round-trip samples are pooled, bulk keeps each variant's best round.
async fn measure(kind: Kind, tls: &Tls, n: usize, total: usize) -> Vec<Row> {
    let mut variants = vec![Variant::Raw];
    if matches!(kind, Kind::Ws | Kind::Wss) {
        variants.push(Variant::RawNkWsConfig);
    }
    variants.push(Variant::Nk);
    let nk = nk_pair(kind).await;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for _ in 0..RTT_ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let s = match v {
                Variant::Raw => raw_rtt(kind, tls, n / RTT_ROUNDS, false).await,
                Variant::RawNkWsConfig => raw_rtt(kind, tls, n / RTT_ROUNDS, true).await,
                Variant::Nk => nk_rtt(&nk.w1, n / RTT_ROUNDS).await,
            };
            samples[i].extend(s);
        }
    }
    let mut best = vec![0f64; variants.len()];
    let mut cpu = vec![0u64; variants.len()];
    for _ in 0..BULK_ROUNDS {
        for (i, v) in variants.iter().enumerate() {
            let b = match v {
                Variant::Raw => raw_bulk(kind, tls, total, false).await,
                Variant::RawNkWsConfig => raw_bulk(kind, tls, total, true).await,
                Variant::Nk => nk_bulk(&nk.w1, total).await,
            };
            best[i] = best[i].max(total as f64 / b.secs / 1e6);
            cpu[i] += b.cpu_ns;
        }
    }
    nk.w1.shutdown();
    nk.c1.shutdown();
    variants
        .iter()
        .zip(samples)
        .zip(best)
        .zip(cpu)
        .map(|(((v, s), mbps), cpu)| Row {
            label: match v {
                Variant::Raw => kind.raw_label().to_owned(),
                Variant::RawNkWsConfig => format!("{}, nk ws cfg", kind.raw_label()),
                Variant::Nk => "nkcluster".to_owned(),
            },
            rtt: stats(s),
            mbps,
            cpu_ms_per_gb: (cpu > 0).then(|| cpu as f64 / 1e6 / (BULK_ROUNDS * total) as f64 * 1e9),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------

/// Width of the label column.
const LABEL: usize = 44;

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only tls,wss`: a subset of the transports (for profiling one of them).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect());
    let kinds: Vec<Kind> = [Kind::Tcp, Kind::Tls, Kind::Ws, Kind::Wss]
        .into_iter()
        .filter(|k| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|n| n == k.name()))
        })
        .collect();
    let n = if quick { 1_000 } else { 10_000 };
    let total = if quick { 26 * CHUNK } else { 256 * CHUNK };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    // Everything runs as a spawned task, on the runtime's workers, like callers in a daemon.
    let results = rt.block_on(async move {
        tokio::spawn(async move {
            let tls = raw_tls();
            let mut out = Vec::new();
            for kind in kinds {
                out.push((kind, measure(kind, &tls, n, total).await));
            }
            out
        })
        .await
        .expect("bench task")
    });

    println!(
        "nkcluster transport bench ({}): loopback, tokio multi_thread(2), every client a task",
        if quick { "quick" } else { "full" }
    );
    println!(
        "round trip: {RTT_BODY}-byte body, {n} sequential in {RTT_ROUNDS} interleaved rounds (µs)"
    );
    println!(
        "bulk: {} MiB in 1 MiB messages, best of {BULK_ROUNDS} interleaved rounds (MB/s = 10^6 \
         B/s); nkcluster: {IN_FLIGHT} requests in flight to an empty-reply handler; raw: \
         one-way copy",
        total / CHUNK
    );
    println!(
        "cpu ms/GB: CPU time of the whole process (all threads, user + kernel, both ends) \
         per GB moved, mean over the rounds (less sensitive to other load than MB/s)"
    );
    let line = "-".repeat(LABEL + 60);
    println!(
        "\n{:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "", "", "rtt mean", "rtt p50", "rtt p99", "bulk MB/s", "cpu ms/GB"
    );
    println!("{line}");
    let raw_tcp_mean = results
        .iter()
        .find(|(k, _)| *k == Kind::Tcp)
        .map(|(_, rows)| rows[0].rtt.mean);
    for (kind, rows) in &results {
        let name = kind.name();
        for r in rows {
            println!(
                "{name:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>11.0} {:>11}",
                r.label,
                us(r.rtt.mean),
                us(r.rtt.p50),
                us(r.rtt.p99),
                r.mbps,
                r.cpu_ms_per_gb
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"))
            );
        }
        let nk = &rows[rows.len() - 1];
        let raws = &rows[..rows.len() - 1];
        for raw in raws {
            let cpu = match (nk.cpu_ms_per_gb, raw.cpu_ms_per_gb) {
                (Some(a), Some(b)) => format!("{:.2}x", a / b),
                _ => "-".to_owned(),
            };
            println!(
                "{name:<5} {:<LABEL$} {:>9} {:>9} {:>9} {:>10.2}x {cpu:>11}",
                format!("ratio nk / {}", raw.label),
                ratio(nk.rtt.mean, raw.rtt.mean),
                ratio(nk.rtt.p50, raw.rtt.p50),
                ratio(nk.rtt.p99, raw.rtt.p99),
                nk.mbps / raw.mbps
            );
        }
        if let Some(tcp) = raw_tcp_mean
            && *kind != Kind::Tcp
        {
            println!(
                "{name:<5} {:<LABEL$} {:>9}",
                "ratio nk / raw TCP",
                ratio(nk.rtt.mean, tcp)
            );
        }
        // Against the best raw figure of each metric when there are two baselines.
        let best_rtt = raws.iter().map(|r| r.rtt.mean).min().expect("a raw row");
        let best_mbps = raws.iter().map(|r| r.mbps).fold(0.0, f64::max);
        let rtt_ok = nk.rtt.mean.as_secs_f64() <= 1.3 * best_rtt.as_secs_f64();
        let bulk_ok = nk.mbps >= 0.8 * best_mbps;
        println!(
            "{name:<5} {:<LABEL$} {:>29} {:>11}",
            "target: rtt <= 1.30x, bulk >= 0.80x",
            if rtt_ok { "rtt ok" } else { "rtt MISSED" },
            if bulk_ok { "bulk ok" } else { "bulk MISSED" }
        );
        println!("{line}");
    }
    println!("total time {:.1} s\n", started.elapsed().as_secs_f64());
    // Issue 15 targets: WebSocket round trips (p50) against raw tungstenite with the same
    // configuration as nkcluster's, TCP bulk against a raw copy.
    for (kind, rows) in &results {
        let nk = &rows[rows.len() - 1];
        let p50 = |r: &Row| r.rtt.p50.as_secs_f64();
        match kind {
            Kind::Ws | Kind::Wss => {
                let same_cfg = &rows[rows.len() - 2];
                target(
                    &format!("{}_rtt_vs_tungstenite", kind.name()),
                    p50(nk) / p50(same_cfg),
                    Goal::AtMost(1.3),
                    "x",
                    2,
                );
            }
            Kind::Tcp => target(
                "tcp_bulk_vs_raw",
                nk.mbps / rows[0].mbps,
                Goal::AtLeast(0.8),
                "x",
                2,
            ),
            Kind::Tls => {}
        }
    }
}
