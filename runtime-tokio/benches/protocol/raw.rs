//! Raw baselines over loopback TCP, written here with nothing but tokio:
//!
//! - [`PingPong`]: one length-prefixed frame out, its echo back, on a socket the caller
//!   owns (the floor of a sequential round trip);
//! - [`stream_pipelined`]: one writer task and one reader on a socket, `WINDOW` frames in
//!   flight, a byte echo at the far end (the floor of pipelining, with no per-request
//!   routing at all);
//! - [`Mux`]: a multiplexed connection of the same shape as an nkcluster link: one
//!   connection task per side owns the socket; callers send (body, reply slot) over a
//!   channel to it; it writes `[len u32][id u64][body]` frames, batching what is queued,
//!   and routes replies back by id. The honest floor for our request path.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::common::process_cpu;
use crate::common::stacks::tcp_pair as pair;
use crate::drive::{Echo, Pipe, WINDOW};

/// Sequential ping-pong on a socket the caller owns.
pub struct PingPong {
    sock: TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
}

impl PingPong {
    /// Connects, with a framed echo task at the far end.
    pub async fn start() -> PingPong {
        let (c, mut s) = pair().await;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4];
            loop {
                if s.read_exact(&mut buf[..4]).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                buf.resize(4 + len, 0);
                if s.read_exact(&mut buf[4..4 + len]).await.is_err() {
                    return;
                }
                if s.write_all(&buf[..4 + len]).await.is_err() {
                    return;
                }
            }
        });
        PingPong {
            sock: c,
            out: Vec::new(),
            back: Vec::new(),
        }
    }
}

impl Echo for PingPong {
    async fn echo(&mut self, body: Bytes) {
        self.out.clear();
        self.out.put_u32(body.len() as u32);
        self.out.extend_from_slice(&body);
        self.back.resize(self.out.len(), 0);
        self.sock.write_all(&self.out).await.expect("write");
        self.sock.read_exact(&mut self.back).await.expect("read");
    }
}

/// `n` frames through one socket with `WINDOW` in flight: a writer task sends a batch of
/// frames per batch of credits, the caller reads the echoes and returns the credits.
pub async fn stream_pipelined(n: usize, body: &Bytes) -> Pipe {
    let (c, s) = pair().await;
    tokio::spawn(async move {
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
    let (mut r, mut w) = c.into_split();
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(body);
    let (credit_tx, mut credit_rx) = mpsc::channel::<()>(WINDOW);
    for _ in 0..WINDOW {
        credit_tx.try_send(()).expect("window");
    }
    let cpu = process_cpu();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
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
    let mut back = vec![0u8; 4 + body.len()];
    for _ in 0..n {
        r.read_exact(&mut back).await.expect("read");
        let _ = credit_tx.try_send(());
    }
    let wall = t.elapsed();
    let cpu = process_cpu().saturating_sub(cpu);
    let _ = writer.await;
    Pipe {
        requests: n,
        wall,
        cpu,
    }
}

/// A call handed to the multiplexed connection's task.
type Call = (Bytes, oneshot::Sender<Bytes>);

/// A caller's handle on the multiplexed connection.
#[derive(Clone)]
pub struct Mux {
    calls: mpsc::Sender<Call>,
}

const HEADER: usize = 4 + 8;

/// Appends one `[len u32][id u64][body]` frame.
fn put_frame(out: &mut BytesMut, id: u64, body: &[u8]) {
    out.put_u32((8 + body.len()) as u32);
    out.put_u64(id);
    out.extend_from_slice(body);
}

/// Splits the complete frames off the front of `inbuf`: (id, body) each.
fn take_frames(inbuf: &mut BytesMut, mut f: impl FnMut(u64, Bytes)) {
    while inbuf.len() >= HEADER {
        let len = u32::from_be_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]) as usize;
        if inbuf.len() < 4 + len {
            return;
        }
        let mut frame = inbuf.split_to(4 + len).freeze();
        frame.advance(4);
        let id = frame.get_u64();
        f(id, frame);
    }
}

impl Mux {
    /// Connects, with the connection task of each side spawned.
    pub async fn start() -> Mux {
        let (c, s) = pair().await;
        tokio::spawn(mux_server(s));
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(mux_client(c, rx));
        Mux { calls: tx }
    }
}

impl Echo for Mux {
    async fn echo(&mut self, body: Bytes) {
        let (tx, rx) = oneshot::channel();
        self.calls.send((body, tx)).await.expect("connection task");
        std::hint::black_box(rx.await.expect("reply"));
    }
}

/// The calling side's connection task: writes queued calls as one batch, routes each
/// reply to its caller by id.
async fn mux_client(mut sock: TcpStream, mut calls: mpsc::Receiver<Call>) {
    let (mut r, mut w) = sock.split();
    let mut pending: HashMap<u64, oneshot::Sender<Bytes>> = HashMap::new();
    let mut next_id = 0u64;
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        tokio::select! {
            call = calls.recv() => {
                let Some(mut call) = call else { return };
                // Pipelining: while replies are awaited, one turn of the runtime lets
                // the callers running now queue theirs, so that they leave in one write
                // (on a multi-thread runtime the callers run on the other worker, and
                // without it each call would be a write of its own).
                if !pending.is_empty() {
                    tokio::task::yield_now().await;
                }
                loop {
                    next_id += 1;
                    put_frame(&mut out, next_id, &call.0);
                    pending.insert(next_id, call.1);
                    match calls.try_recv() {
                        Ok(c) => call = c,
                        Err(_) => break,
                    }
                }
                if w.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            read = r.read_buf(&mut inbuf) => {
                if !matches!(read, Ok(k) if k > 0) {
                    return;
                }
                take_frames(&mut inbuf, |id, body| {
                    if let Some(tx) = pending.remove(&id) {
                        let _ = tx.send(body);
                    }
                });
            }
        }
    }
}

/// The serving side's connection task: answers every complete frame of a read with its
/// echo (same id), all of a read's replies in one write.
async fn mux_server(mut sock: TcpStream) {
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        match sock.read_buf(&mut inbuf).await {
            Ok(k) if k > 0 => {}
            _ => return,
        }
        take_frames(&mut inbuf, |id, body| put_frame(&mut out, id, &body));
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}
