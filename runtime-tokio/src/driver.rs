//! Drives one [`Connection`] over one byte stream: reads into the machine, writes what it
//! transmits, arms its timer, forwards application commands. No decisions are made here:
//! the loop only moves bytes, time and commands between the socket and the core.

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::conn::{Connection, Event, RequestError, RequestId};
use nkcluster_core::message::RemoteError;
use tokio::io::ReadBuf;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::net::Stream;

/// Read buffer bounds: small while idle (memory per connection), grows under bulk load.
const READ_BUF_MIN: usize = 4 * 1024;
const READ_BUF_MAX: usize = 256 * 1024;
/// Stop taking new commands while this much output is waiting for the socket.
const WRITE_HIGH_WATER: usize = 4 * 1024 * 1024;

/// What the application asks of a connection.
#[derive(Debug)]
pub enum Command {
    /// Send a request; the outcome goes to `reply`.
    Request {
        /// Class name.
        class: String,
        /// Payload.
        body: Bytes,
        /// Deadline from now.
        timeout: Duration,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Bytes, RequestError>>,
    },
    /// Close in order.
    Close {
        /// Told to the peer.
        reason: String,
    },
}

/// Answers the peer's requests, synchronously, inside the connection task.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request of `class`.
    fn handle(&self, class: &str, body: Bytes) -> Result<Bytes, RemoteError>;
}

/// Receives the connection's events that the driver does not consume itself.
pub trait EventSink: Send + 'static {
    /// The handshake succeeded (or the link ended: `Event::Closed`).
    fn on_event(&mut self, conn: &Connection, event: &Event);
}

enum Wake {
    Read(usize),
    Eof,
    IoError(String),
    Command(Command),
    CommandsClosed,
    Timer,
}

/// Runs the connection until it is closed and its last bytes are written.
pub async fn drive<S: Stream>(
    mut stream: S,
    mut conn: Connection,
    clock: Clock,
    mut commands: mpsc::Receiver<Command>,
    handler: &dyn RequestHandler,
    sink: &mut dyn EventSink,
) {
    // Ordered, so that failing them all at the end wakes callers in a reproducible order.
    let mut pending: BTreeMap<RequestId, oneshot::Sender<Result<Bytes, RequestError>>> =
        BTreeMap::new();
    let mut wq: VecDeque<Bytes> = VecDeque::new();
    let mut wq_bytes = 0usize;
    let mut need_flush = false;
    let mut rbuf = vec![0u8; READ_BUF_MIN];
    let mut commands_open = true;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut write_failed = false;

    loop {
        // Drain the machine.
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Request {
                    id, class, body, ..
                } => {
                    let r = handler.handle(&class, body);
                    conn.reply(id, r);
                }
                Event::Reply { id, result } => {
                    if let Some(tx) = pending.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
                ev => sink.on_event(&conn, &ev),
            }
        }
        while let Some(b) = conn.poll_transmit() {
            wq_bytes += b.len();
            wq.push_back(b);
        }
        if conn.is_closed() && (wq.is_empty() || write_failed) {
            break;
        }
        let deadline = conn.poll_timeout();
        if let Some(d) = deadline {
            sleep.as_mut().reset(clock.to_tokio(d));
        }

        let wake = poll_fn(|cx| {
            // 1. Write as much as the socket takes.
            while let Some(front) = wq.front_mut() {
                match Pin::new(&mut stream).poll_write(cx, front) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Wake::IoError("write returned zero".into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        wq_bytes -= n;
                        need_flush = true;
                        if n == front.len() {
                            wq.pop_front();
                        } else {
                            let _ = front.split_to(n);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Wake::IoError(e.to_string())),
                    Poll::Pending => break,
                }
            }
            if wq.is_empty() && need_flush {
                match Pin::new(&mut stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => need_flush = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Wake::IoError(e.to_string())),
                    Poll::Pending => {}
                }
            }
            if conn.is_closed() {
                // Only the remaining writes matter now.
                return if wq.is_empty() {
                    Poll::Ready(Wake::Eof)
                } else {
                    Poll::Pending
                };
            }
            // 2. Read.
            let mut rb = ReadBuf::new(&mut rbuf);
            match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    return Poll::Ready(if n == 0 { Wake::Eof } else { Wake::Read(n) });
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Wake::IoError(e.to_string())),
                Poll::Pending => {}
            }
            // 3. Commands, unless the socket is backed up.
            if commands_open && wq_bytes < WRITE_HIGH_WATER {
                match commands.poll_recv(cx) {
                    Poll::Ready(Some(c)) => return Poll::Ready(Wake::Command(c)),
                    Poll::Ready(None) => return Poll::Ready(Wake::CommandsClosed),
                    Poll::Pending => {}
                }
            }
            // 4. Timer.
            if deadline.is_some() && sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;

        let now = clock.now();
        match wake {
            Wake::Read(n) => {
                conn.handle_input(now, &rbuf[..n]);
                // Grow the buffer under bulk load; shrink it back when traffic is small.
                if n == rbuf.len() && rbuf.len() < READ_BUF_MAX {
                    rbuf.resize(rbuf.len() * 2, 0);
                } else if n < READ_BUF_MIN / 2 && rbuf.len() > READ_BUF_MIN {
                    rbuf = vec![0u8; READ_BUF_MIN];
                }
            }
            Wake::Eof => {
                if conn.is_closed() {
                    break;
                }
                conn.handle_transport_closed(now, "eof");
            }
            Wake::IoError(e) => {
                write_failed = true;
                wq.clear();
                wq_bytes = 0;
                conn.handle_transport_closed(now, &e);
            }
            Wake::Command(Command::Request {
                class,
                body,
                timeout,
                reply,
            }) => match conn.request(now, &class, body, timeout) {
                Ok(id) => {
                    pending.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Wake::Command(Command::Close { reason }) => conn.close(&reason),
            Wake::CommandsClosed => {
                commands_open = false;
                conn.close("node shutting down");
            }
            Wake::Timer => conn.handle_timeout(now),
        }
    }
    // Every caller gets an answer, even if the machine could not give one.
    for (_, tx) in std::mem::take(&mut pending) {
        let _ = tx.send(Err(RequestError::ConnectionFailed));
    }
    while let Some(ev) = conn.poll_event() {
        if !matches!(ev, Event::Reply { .. } | Event::Request { .. }) {
            sink.on_event(&conn, &ev);
        }
    }
    let _ = poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
}
