//! Round-trip probe: one sequential request loop over loopback, nkcluster next to a raw
//! framed TCP ping-pong and a raw multiplexed connection (one connection task, the caller
//! hands it each request over a channel), on one runtime flavour. Prints p50 per path,
//! their ratio, and context switches per round trip (all threads of the process).
//!
//! Run: `cargo run --release -p nkcluster --example rtt -- mt|ct [raw|mux|nk|all|ws] [N]`
//! (`ws`: raw tungstenite ping-pong with nkcluster's WebSocket configuration next to
//! nkcluster over `transport=ws`)
//! (count futex calls with `strace -f -c -e futex` over one path at a time).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node};
use nkcluster_core::url::parse_url_list;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SIZE: usize = 32;

/// Context switches of every thread of this process so far.
fn switches() -> u64 {
    let mut n = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
                {
                    n += l
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    n
}

/// p50 and context switches per round trip.
struct Run {
    p50: Duration,
    cs: f64,
}

fn summarise(mut lat: Vec<Duration>, cs: u64) -> Run {
    let n = lat.len();
    lat.sort_unstable();
    Run {
        p50: lat[n / 2],
        cs: cs as f64 / n as f64,
    }
}

async fn echo_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 4 + SIZE];
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
    addr
}

fn message() -> Vec<u8> {
    let mut msg = (SIZE as u32).to_be_bytes().to_vec();
    msg.extend(std::iter::repeat_n(7u8, SIZE));
    msg
}

async fn raw(n: usize) -> Run {
    let addr = echo_server().await;
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let msg = message();
    let mut back = vec![0u8; 4 + SIZE];
    let mut lat = Vec::with_capacity(n);
    let mut cs = 0;
    for i in 0..n + n / 10 {
        if i == n / 10 {
            cs = switches();
        }
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.read_exact(&mut back).await.expect("read");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    summarise(lat, switches() - cs)
}

async fn mux(n: usize) -> Run {
    let addr = echo_server().await;
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<Vec<u8>>)>(64);
    tokio::spawn(async move {
        while let Some((msg, reply)) = rx.recv().await {
            let mut back = vec![0u8; msg.len()];
            c.write_all(&msg).await.expect("write");
            c.read_exact(&mut back).await.expect("read");
            let _ = reply.send(back);
        }
    });
    let msg = message();
    let mut lat = Vec::with_capacity(n);
    let mut cs = 0;
    for i in 0..n + n / 10 {
        if i == n / 10 {
            cs = switches();
        }
        let t = Instant::now();
        let (rtx, rrx) = oneshot::channel();
        tx.send((msg.clone(), rtx)).await.expect("send");
        black_box(rrx.await.expect("reply"));
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    summarise(lat, switches() - cs)
}

async fn raw_ws(n: usize) -> Run {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, s) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
    let (c, (s, _)) = (c.expect("connect"), s.expect("accept"));
    c.set_nodelay(true).expect("nodelay");
    s.set_nodelay(true).expect("nodelay");
    // The configuration nkcluster's transport uses.
    let max = nkcluster_core::MAX_FRAME_DEFAULT as usize;
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (c, s) = tokio::join!(
        tokio_tungstenite::client_async_with_config("ws://127.0.0.1/", c, Some(cfg)),
        tokio_tungstenite::accept_async_with_config(s, Some(cfg))
    );
    let (mut c, mut s) = (c.expect("ws connect").0, s.expect("ws accept"));
    tokio::spawn(async move {
        while let Some(Ok(m)) = s.next().await {
            if let WsMessage::Binary(b) = m
                && s.send(WsMessage::Binary(b)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Bytes::from(vec![7u8; SIZE]);
    let mut lat = Vec::with_capacity(n);
    let mut cs = 0;
    for i in 0..n + n / 10 {
        if i == n / 10 {
            cs = switches();
        }
        let t = Instant::now();
        c.send(WsMessage::Binary(body.clone())).await.expect("send");
        black_box(c.next().await);
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    summarise(lat, switches() - cs)
}

async fn nk(n: usize, transport: &str) -> Run {
    let env = || Env {
        net: TokioNet,
        seed: None,
        wall_origin_ns: None,
        tls_provider: None,
        machine_figures: None,
    };
    let mut c = NodeConfig::new("c1");
    c.key_iterations = 16;
    c.listen =
        parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={transport}")).expect("url");
    let c1 = Node::start(c, env()).await.expect("c1");
    let port = c1.listen_addrs()[0].1.port();
    let mut w = NodeConfig::new("w1");
    w.key_iterations = 16;
    w.control = false;
    let w1 = Node::start(w, env()).await.expect("w1");
    w1.connect(&format!(
        "nkcluster://127.0.0.1:{port};transport={transport}"
    ))
    .await
    .expect("connect");
    // Let the link settle (first gossip, status) before measuring.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each request's timeout (`RTT_TIMEOUT_MS`, default 5 s): one shorter than the ping
    // interval (5 s) is the link's next deadline while it is pending.
    let timeout = Duration::from_millis(
        std::env::var("RTT_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000),
    );
    let body = Bytes::from(vec![7u8; SIZE]);
    let mut lat = Vec::with_capacity(n);
    let mut cs = 0;
    for i in 0..n + n / 10 {
        if i == n / 10 {
            cs = switches();
        }
        let t = Instant::now();
        let r = w1
            .request("c1", "nkcluster.echo", body.clone(), timeout)
            .await
            .expect("reply");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
        black_box(r);
    }
    let run = summarise(lat, switches() - cs);
    w1.shutdown();
    c1.shutdown();
    run
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flavor = args.get(1).map_or("mt", String::as_str);
    let what = args.get(2).map_or("all", String::as_str);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let rt = if flavor == "ct" {
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
    let runs = rt.block_on(async {
        let mut runs = Vec::new();
        if what == "raw" || what == "all" {
            runs.push(("raw", tokio::spawn(raw(n)).await.expect("raw")));
        }
        if what == "mux" || what == "all" {
            runs.push(("mux", tokio::spawn(mux(n)).await.expect("mux")));
        }
        if what == "nk" || what == "all" {
            runs.push(("nk", tokio::spawn(nk(n, "tcp")).await.expect("nk")));
        }
        if what == "ws" {
            runs.push(("raw_ws", tokio::spawn(raw_ws(n)).await.expect("raw ws")));
            runs.push(("nk_ws", tokio::spawn(nk(n, "ws")).await.expect("nk ws")));
        }
        runs
    });
    let base = runs
        .first()
        .map(|(_, r)| r.p50.as_secs_f64())
        .unwrap_or(1.0);
    let mut line = flavor.to_string();
    for (name, r) in &runs {
        line += &format!(
            "  {name} p50 {:.1}us x{:.2} cs/rt {:.3}",
            r.p50.as_secs_f64() * 1e6,
            r.p50.as_secs_f64() / base,
            r.cs
        );
    }
    println!("{line}");
}
