//! The two load shapes every request path is measured with: sequential round trips
//! (one caller, one request at a time) and pipelined requests (`WINDOW` callers, each a
//! task with its own handle on the same connection, so `WINDOW` requests are in flight).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::process_cpu;

/// Requests in flight in the pipelined runs.
pub const WINDOW: usize = 64;

/// A request path under test: sends `body`, waits for its echo.
pub trait Echo: Send + 'static {
    /// One request and its reply.
    fn echo(&mut self, body: Bytes) -> impl Future<Output = ()> + Send;
}

/// Round-trip samples of `n` sequential requests.
pub async fn sequential<E: Echo>(client: &mut E, n: usize, body: &Bytes) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.echo(body.clone()).await;
        lat.push(t.elapsed());
    }
    lat
}

/// Totals of pipelined runs (they add up over rounds).
#[derive(Default, Clone, Copy)]
pub struct Pipe {
    /// Requests answered.
    pub requests: usize,
    /// Wall time.
    pub wall: Duration,
    /// CPU time of the whole process (both ends, every thread).
    pub cpu: Duration,
}

impl Pipe {
    /// Adds another run.
    pub fn add(&mut self, o: Pipe) {
        self.requests += o.requests;
        self.wall += o.wall;
        self.cpu += o.cpu;
    }

    /// Requests per second.
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// CPU µs per request.
    pub fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// `n` requests (rounded down to a multiple of `WINDOW`) from `WINDOW` caller tasks.
pub async fn pipelined<E: Echo + Clone>(client: &E, n: usize, body: &Bytes) -> Pipe {
    let per_caller = n / WINDOW;
    let cpu = process_cpu();
    let t = Instant::now();
    let mut callers = Vec::with_capacity(WINDOW);
    for _ in 0..WINDOW {
        let (mut c, body) = (client.clone(), body.clone());
        callers.push(tokio::spawn(async move {
            for _ in 0..per_caller {
                c.echo(body.clone()).await;
            }
        }));
    }
    for c in callers {
        c.await.expect("caller task");
    }
    Pipe {
        requests: per_caller * WINDOW,
        wall: t.elapsed(),
        cpu: process_cpu().saturating_sub(cpu),
    }
}
