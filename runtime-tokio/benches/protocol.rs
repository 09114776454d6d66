//! Protocol benchmark, one run, figures side by side with baselines written here:
//!
//! 1. Frame decode throughput: large frames (GB/s) and small frames (messages/s), fed in
//!    64 KiB reads as a socket would deliver them.
//! 2. Request round trip over loopback: nkcluster (two nodes, `nkcluster.echo`) next to a
//!    raw length-prefixed TCP ping-pong on the same runtime, with their ratio.
//! 3. Pipelined requests: 64 in flight on one link, requests/s and CPU µs per request
//!    (both ends, the whole process), next to a raw length-prefixed TCP echo with the same
//!    window.
//!
//! Run: `cargo bench -p nkcluster --bench protocol` (`-- --quick` for a short run).

mod common;

use common::{Lat, stats};
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node};
use nkcluster_core::frame::{FrameDecoder, MAX_FRAME_DEFAULT, encode_frame};
use nkcluster_core::message::{Message, Request};
use nkcluster_core::url::parse_url_list;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ: usize = 64 * 1024;

fn decode_all(stream: &[u8], dec: &mut FrameDecoder, mut f: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    for chunk in stream.chunks(READ) {
        dec.decode(chunk, |b| {
            f(b);
            n += 1;
            true
        })
        .expect("valid stream");
    }
    n
}

fn bench_decode(quick: bool) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    // Large frames: 1 MiB bodies.
    let body = vec![0xabu8; 1 << 20];
    let mut stream = BytesMut::new();
    for _ in 0..64 {
        encode_frame(&body, &mut stream);
    }
    let rounds = if quick { 4 } else { 20 };
    let mut dec = FrameDecoder::new(MAX_FRAME_DEFAULT);
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(b);
        });
    }
    let secs = t.elapsed().as_secs_f64();
    let gbps = (stream.len() * rounds) as f64 / secs / 1e9;
    rows.push((
        "frame decode, 1 MiB frames".into(),
        format!("{gbps:.2} GB/s"),
    ));

    // Small frames: Request messages with 64-byte bodies.
    let msg = Message::Request(Request {
        id: 12345,
        timeout_ms: 5000,
        class: "nkcluster.echo".into(),
        body: Bytes::from(vec![7u8; 64]),
    });
    let mut stream = BytesMut::new();
    let count = 200_000;
    for _ in 0..count {
        msg.encode_frame_into(&mut stream);
    }
    let rounds = if quick { 2 } else { 10 };
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(b);
        });
    }
    let rate = (count * rounds) as f64 / t.elapsed().as_secs_f64();
    rows.push((
        "frame decode, small frames".into(),
        format!("{:.1} M frames/s", rate / 1e6),
    ));
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(Message::decode(b).expect("valid"));
        });
    }
    let rate = (count * rounds) as f64 / t.elapsed().as_secs_f64();
    rows.push((
        "frame + message decode, small requests".into(),
        format!("{:.2} M msgs/s", rate / 1e6),
    ));
    rows
}

async fn raw_ping_pong(n: usize, size: usize) -> Lat {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 4 + size];
        loop {
            if s.read_exact(&mut buf[..4]).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if s.read_exact(&mut buf[4..4 + len]).await.is_err() {
                return;
            }
            if s.write_all(&buf[..4 + len]).await.is_err() {
                return;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut msg = (size as u32).to_be_bytes().to_vec();
    msg.extend(std::iter::repeat_n(7u8, size));
    let mut back = vec![0u8; 4 + size];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.read_exact(&mut back).await.expect("read");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    stats(lat)
}

/// A control node and a worker linked to it over loopback TCP.
async fn two_nodes() -> (Node<TokioNet>, Node<TokioNet>) {
    let env = || Env {
        net: TokioNet,
        seed: None,
        wall_origin_ns: None,
        tls_provider: None,
        machine_figures: None,
    };
    let mut c = NodeConfig::new("c1");
    c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp").expect("url");
    let c1 = Node::start(c, env()).await.expect("c1");
    let port = c1.listen_addrs()[0].1.port();
    let mut w = NodeConfig::new("w1");
    w.control = false;
    w.cluster_addr =
        parse_url_list(&format!("nkcluster://127.0.0.1:{port};transport=tcp")).expect("url");
    let w1 = Node::start(w, env()).await.expect("w1");
    let mut ev = w1.subscribe();
    while w1.peers().is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(10), ev.recv()).await;
    }
    (c1, w1)
}

async fn nk_round_trip(n: usize, size: usize) -> Lat {
    let (c1, w1) = two_nodes().await;
    let body = Bytes::from(vec![7u8; size]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r = w1
            .request("c1", "nkcluster.echo", body.clone(), Duration::from_secs(5))
            .await
            .expect("reply");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
        black_box(r);
    }
    w1.shutdown();
    c1.shutdown();
    stats(lat)
}

/// CPU time of this process's live threads so far, in nanoseconds as the scheduler
/// counts it (`/proc/self/task/*/schedstat`, first field).
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// Throughput of a pipelined run.
struct Pipe {
    per_sec: f64,
    cpu_us: f64,
}

const WINDOW: usize = 64;

async fn raw_pipelined(n: usize, size: usize) -> Pipe {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    // An echo that handles whatever arrived in one go, like a multiplexed server would.
    tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let (mut r, mut w) = s.into_split();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    if w.write_all(&buf[..k]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = c.into_split();
    let mut msg = (size as u32).to_be_bytes().to_vec();
    msg.extend(std::iter::repeat_n(7u8, size));
    let (credit_tx, mut credit_rx) = tokio::sync::mpsc::channel::<()>(WINDOW);
    for _ in 0..WINDOW {
        credit_tx.try_send(()).expect("window");
    }
    let cpu = cpu_time();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        // Each reply returns a credit; a batch of credits goes out as one write.
        let mut sent = 0;
        let mut batch = Vec::new();
        while sent < n {
            if credit_rx.recv().await.is_none() {
                return;
            }
            batch.clear();
            batch.extend_from_slice(&msg);
            sent += 1;
            while sent < n && credit_rx.try_recv().is_ok() {
                batch.extend_from_slice(&msg);
                sent += 1;
            }
            w.write_all(&batch).await.expect("write");
        }
    });
    let mut back = vec![0u8; 4 + size];
    for _ in 0..n {
        r.read_exact(&mut back).await.expect("read");
        let _ = credit_tx.try_send(());
    }
    let took = t.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    let _ = writer.await;
    Pipe {
        per_sec: n as f64 / took.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / n as f64,
    }
}

async fn nk_pipelined(n: usize, size: usize) -> Pipe {
    let (c1, w1) = two_nodes().await;
    let body = Bytes::from(vec![7u8; size]);
    let cpu = cpu_time();
    let t = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..WINDOW {
        let (w1, body) = (w1.clone(), body.clone());
        callers.push(tokio::spawn(async move {
            for _ in 0..n / WINDOW {
                let r = w1
                    .request(
                        "c1",
                        "nkcluster.echo",
                        body.clone(),
                        Duration::from_secs(30),
                    )
                    .await
                    .expect("reply");
                black_box(r);
            }
        }));
    }
    for c in callers {
        c.await.expect("caller");
    }
    let took = t.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    let done = (n / WINDOW) * WINDOW;
    w1.shutdown();
    c1.shutdown();
    Pipe {
        per_sec: done as f64 / took.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / done as f64,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "nkcluster protocol bench ({})",
        if quick { "quick" } else { "full" }
    );
    println!("\n{:<42} {:>16}", "decode", "throughput");
    for (k, v) in bench_decode(quick) {
        println!("{k:<42} {v:>16}");
    }
    let n = if quick { 2_000 } else { 20_000 };
    for flavor in ["current_thread", "multi_thread(2)"] {
        let rt = if flavor == "current_thread" {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        }
        .expect("runtime");
        // Both clients run as tasks on the runtime's workers, like real callers in a
        // daemon (block_on would keep them on the main thread and add a thread hop).
        let (raw, nk) = rt.block_on(async {
            let raw = tokio::spawn(raw_ping_pong(n, 32)).await.expect("raw task");
            let nk = tokio::spawn(nk_round_trip(n, 32)).await.expect("nk task");
            (raw, nk)
        });
        println!("\nrequest round trip, 32-byte body, loopback, tokio {flavor}, {n} sequential");
        println!("{:<28} {:>10} {:>10} {:>10}", "", "mean", "p50", "p99");
        println!(
            "{:<28} {:>10} {:>10} {:>10}",
            "raw framed TCP ping-pong",
            us(raw.mean),
            us(raw.p50),
            us(raw.p99)
        );
        println!(
            "{:<28} {:>10} {:>10} {:>10}",
            "nkcluster request",
            us(nk.mean),
            us(nk.p50),
            us(nk.p99)
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2}   (target <= 1.30)",
            "ratio nkcluster / raw",
            nk.mean.as_secs_f64() / raw.mean.as_secs_f64(),
            nk.p50.as_secs_f64() / raw.p50.as_secs_f64(),
            nk.p99.as_secs_f64() / raw.p99.as_secs_f64()
        );
        let pn = if quick { 64_000 } else { 640_000 };
        let (raw, nk) = rt.block_on(async {
            let raw = tokio::spawn(raw_pipelined(pn, 32)).await.expect("raw task");
            let nk = tokio::spawn(nk_pipelined(pn, 32)).await.expect("nk task");
            (raw, nk)
        });
        println!(
            "\npipelined requests, {WINDOW} in flight on one link, 32-byte body, tokio {flavor}, {pn} requests"
        );
        println!("{:<28} {:>14} {:>16}", "", "requests/s", "CPU µs/request");
        for (name, p) in [
            ("raw multiplexed TCP echo", &raw),
            ("nkcluster request", &nk),
        ] {
            println!("{name:<28} {:>14.0} {:>16.2}", p.per_sec, p.cpu_us);
        }
        println!(
            "{:<28} {:>14.3}   (target >= 0.6)",
            "ratio nkcluster / raw",
            nk.per_sec / raw.per_sec
        );
    }
}
