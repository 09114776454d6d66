//! What the connection driver reads from and writes to: a byte stream (TCP, TLS) carrying
//! length-prefixed frames, or a WebSocket carrying one frame per binary message. Both are
//! [`LinkIo`] trait objects, so one driver loop serves every transport.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker, ready};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use futures_util::{Sink, Stream as _};
use nkcluster_core::conn::{ConnError, Framing};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::net::Stream;

/// What a read produced.
#[derive(Debug)]
pub enum Incoming {
    /// `n` bytes were appended to the read buffer (stream framing).
    Bytes(usize),
    /// One whole frame body (message framing).
    Frame(Bytes),
    /// The peer sent a message larger than the maximum; it was not buffered.
    Oversized(usize),
    /// The peer closed.
    Eof,
}

/// A transport as the driver sees it.
pub trait LinkIo: Send + 'static {
    /// How frames are delimited.
    fn framing(&self) -> Framing;
    /// Reads some input: stream transports append to `buf` (into its spare capacity, or,
    /// when it has none, through scratch space of their own, so that an idle link holds
    /// no read buffer), message transports return whole frames.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut)
    -> Poll<io::Result<Incoming>>;
    /// Writes from the front of `queue`, removing what was fully written, until the queue is
    /// empty (`Ready(Ok)`) or the transport is full (`Pending`). Returns bytes accepted
    /// through `written`.
    fn poll_write_queue(
        &mut self,
        cx: &mut Context<'_>,
        queue: &mut VecDeque<Bytes>,
        written: &mut usize,
    ) -> Poll<io::Result<()>>;
    /// Flushes buffered output.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Closes the write side cleanly (TLS close_notify, WebSocket close frame).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The peer has authenticated: limits meant for unauthenticated peers are lifted.
    fn authenticated(&mut self) {}
    /// Tells the transport why the connection ended, before `poll_shutdown` (a WebSocket
    /// puts it in its close frame). `None`: an orderly close.
    fn closing(&mut self, _why: Option<&ConnError>) {}
    /// After `poll_shutdown`: reads and discards input until the peer closes its side
    /// (`Ready(Ok(n))` with `n` bytes discarded in this call, `0` at the end). Closing a
    /// socket with unread input makes the kernel send a reset, which can destroy our own
    /// last messages (a leave notice, a close) before the peer reads them; draining
    /// first avoids that.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>;
}

/// Bytes a stream transport reads at most between frames (into the stack, see
/// [`LinkIo::poll_read`]).
const SCRATCH_READ: usize = 16 * 1024;

/// Segments of the write queue handed to one vectored write at most.
const WRITE_SEGMENTS: usize = 64;

/// Segments a short write queue holds at most (an idle link's pong is one): its vectored
/// write is given a list of that many, not [`WRITE_SEGMENTS`] to fill (a kilobyte).
const FEW_SEGMENTS: usize = 4;

/// One vectored write of the first `N` segments of `queue` at most.
fn poll_write_segments<S: Stream, const N: usize>(
    stream: &mut S,
    cx: &mut Context<'_>,
    queue: &VecDeque<Bytes>,
) -> Poll<io::Result<usize>> {
    let mut slices = [io::IoSlice::new(&[]); N];
    let k = queue.len().min(N);
    for (s, b) in slices.iter_mut().zip(queue.iter()) {
        *s = io::IoSlice::new(b);
    }
    Pin::new(stream).poll_write_vectored(cx, &slices[..k])
}

/// Removes the first `n` bytes from the front of `queue` (`n` at most its length).
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if n >= front.len() {
            n -= front.len();
            queue.pop_front();
        } else {
            let _ = front.split_to(n);
            return;
        }
    }
}

/// A byte stream with length-prefixed frames.
pub struct StreamIo<S>(pub S);

impl<S: Stream> LinkIo for StreamIo<S> {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<Incoming>> {
        let n = if buf.capacity() > buf.len() {
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.0),
                cx,
                buf
            ))?
        } else {
            // No frame under way: read into the stack, keep only what arrived.
            let mut scratch = [const { std::mem::MaybeUninit::<u8>::uninit() }; SCRATCH_READ];
            let mut rb = ReadBuf::uninit(&mut scratch);
            ready!(Pin::new(&mut self.0).poll_read(cx, &mut rb))?;
            buf.extend_from_slice(rb.filled());
            rb.filled().len()
        };
        Poll::Ready(Ok(if n == 0 {
            Incoming::Eof
        } else {
            Incoming::Bytes(n)
        }))
    }

    fn poll_write_queue(
        &mut self,
        cx: &mut Context<'_>,
        queue: &mut VecDeque<Bytes>,
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        if self.0.is_write_vectored() {
            // One system call for as many segments as are queued (a frame's header and
            // its payload, control frames and the bulk chunk after them), not one each.
            while let Some(front) = queue.front() {
                // A lone segment (a request, a reply, a pong written on its own) goes by a
                // plain write: the socket's send path is shorter than writev's (no iovec
                // to import, no file-position lock). `protocol --profile nk ct seq`:
                // writev's kernel and libc path was ~5% of a sequential round trip's
                // CPU, ~1.7% more than a raw echo's send.
                let n = ready!(if queue.len() == 1 {
                    Pin::new(&mut self.0).poll_write(cx, front)
                } else if queue.len() <= FEW_SEGMENTS {
                    poll_write_segments::<S, FEW_SEGMENTS>(&mut self.0, cx, queue)
                } else {
                    poll_write_segments::<S, WRITE_SEGMENTS>(&mut self.0, cx, queue)
                })?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
                advance(queue, n);
            }
            return Poll::Ready(Ok(()));
        }
        while let Some(front) = queue.front_mut() {
            let n = ready!(Pin::new(&mut self.0).poll_write(cx, front))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if n == front.len() {
                queue.pop_front();
            } else {
                let _ = front.split_to(n);
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut scratch = [0u8; 4096];
        let mut rb = tokio::io::ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }
}

/// A WebSocket: one binary message per frame. Anything else ends the link with a clean
/// close frame: 1003 for text, 1002 for non-protocol binary data, 1009 for an oversized
/// frame, 1008 for a failed handshake, 1001 for an idle timeout, 1000 otherwise.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    close: Option<CloseFrame>,
    /// The read budget of the stream under the WebSocket, lifted at authentication.
    budget: Option<Budget>,
    /// Whether the socket may have input since tungstenite last found none.
    readable: Arc<ReadReadiness>,
    /// `readable` as the waker tungstenite registers for the socket's read side.
    read_waker: Waker,
}

/// Whether a WebSocket's socket may have input: set when the socket wakes its read side
/// (or at the start), cleared when tungstenite finds nothing to read. tungstenite fills
/// its whole read buffer with zeros before every read attempt (8 KiB on ws links), and
/// the link's task polls for input at each of its wake-ups (commands, replies to
/// deliver, flushes): three or four a round trip where input arrives once. With the
/// flag, a wake-up that is not the socket's tries no read.
struct ReadReadiness {
    ready: AtomicBool,
    /// The link's task, woken with the flag set.
    task: AtomicWaker,
}

impl Wake for ReadReadiness {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A WebSocket's read readiness, ready at first (input may precede the first poll).
fn read_readiness() -> (Arc<ReadReadiness>, Waker) {
    let r = Arc::new(ReadReadiness {
        ready: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let w = Waker::from(r.clone());
    (r, w)
}

impl<S> WsIo<S> {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        let (readable, read_waker) = read_readiness();
        WsIo {
            ws,
            close: None,
            budget: None,
            readable,
            read_waker,
        }
    }

    /// Wraps an upgraded WebSocket whose stream reads under `budget` (see [`ReadBudget`])
    /// until the peer authenticates.
    pub fn with_budget(ws: WebSocketStream<S>, budget: Budget) -> Self {
        let (readable, read_waker) = read_readiness();
        WsIo {
            ws,
            close: None,
            budget: Some(budget),
            readable,
            read_waker,
        }
    }
}

/// Bytes a [`ReadBudget`] may still read; shared with the link, which lifts it.
pub type Budget = Arc<AtomicUsize>;

/// A stream that reads at most its budget, then fails: a WebSocket library assembles a
/// whole message before we see it, so an unauthenticated peer announcing a large message
/// could make it buffer up to the frame maximum. Under a budget it cannot; once the peer
/// has authenticated the budget is lifted (`usize::MAX`) and reads pass straight through.
pub struct ReadBudget<S> {
    inner: S,
    left: Budget,
}

impl<S> ReadBudget<S> {
    /// `inner` may read `bytes` until the returned budget is lifted.
    pub fn new(inner: S, bytes: usize) -> (Self, Budget) {
        let left = Arc::new(AtomicUsize::new(bytes));
        (
            ReadBudget {
                inner,
                left: left.clone(),
            },
            left,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBudget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.left.load(Ordering::Relaxed);
        if left == usize::MAX {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an unauthenticated peer sent more than it may before authenticating",
            )));
        }
        // Through a small buffer of our own, so that at most `left` bytes are taken.
        let mut tmp = [0u8; 4096];
        let take = left.min(tmp.len()).min(buf.remaining());
        let mut small = ReadBuf::new(&mut tmp[..take]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut small))?;
        let n = small.filled().len();
        buf.put_slice(small.filled());
        // Lifted meanwhile: stays lifted.
        let _ = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l != usize::MAX).then(|| l.saturating_sub(n))
            });
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBudget<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn ws_err(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: Stream> LinkIo for WsIo<S> {
    fn framing(&self) -> Framing {
        Framing::Messages
    }

    fn authenticated(&mut self) {
        if let Some(b) = self.budget.take() {
            b.store(usize::MAX, Ordering::Relaxed);
        }
    }

    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        _buf: &mut BytesMut,
    ) -> Poll<io::Result<Incoming>> {
        // Registered before the flag is read: a wake in between finds this task.
        self.readable.task.register(cx.waker());
        if !self.readable.ready.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        let mut read_cx = Context::from_waker(&self.read_waker);
        loop {
            let next = Pin::new(&mut self.ws).poll_next(&mut read_cx);
            let Poll::Ready(next) = next else {
                // Nothing to read: the socket wakes `read_waker` when there is.
                return Poll::Pending;
            };
            // A message came: more may be buffered behind it.
            self.readable.ready.store(true, Ordering::Relaxed);
            match next {
                None => return Poll::Ready(Ok(Incoming::Eof)),
                Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(
                    CapacityError::MessageTooLong { size, .. },
                ))) => {
                    self.close = Some(CloseFrame {
                        code: CloseCode::Size,
                        reason: "frame_too_large".into(),
                    });
                    return Poll::Ready(Ok(Incoming::Oversized(size)));
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_err(e))),
                Some(Ok(WsMessage::Binary(b))) => return Poll::Ready(Ok(Incoming::Frame(b))),
                Some(Ok(WsMessage::Close(_))) => return Poll::Ready(Ok(Incoming::Eof)),
                // tungstenite answers pings itself; the answer goes out on the next flush.
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
                    let _ = Pin::new(&mut self.ws).poll_flush(cx);
                }
                Some(Ok(WsMessage::Text(_))) => {
                    self.close = Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "nkcluster speaks binary messages only".into(),
                    });
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on an nkcluster websocket",
                    )));
                }
            }
        }
    }

    fn poll_write_queue(
        &mut self,
        cx: &mut Context<'_>,
        queue: &mut VecDeque<Bytes>,
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        while !queue.is_empty() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_err)?;
            if let Some(b) = queue.pop_front() {
                *written += b.len();
                Pin::new(&mut self.ws)
                    .start_send(WsMessage::Binary(b))
                    .map_err(ws_err)?;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_err)
    }

    fn closing(&mut self, why: Option<&ConnError>) {
        if self.close.is_some() {
            return;
        }
        let code = match why {
            None => CloseCode::Normal,
            Some(ConnError::Frame(_)) => CloseCode::Size,
            Some(ConnError::Decode(_) | ConnError::Protocol(_)) => CloseCode::Protocol,
            Some(ConnError::Handshake(_)) => CloseCode::Policy,
            Some(ConnError::IdleTimeout(_)) => CloseCode::Away,
            Some(ConnError::PeerClosed(_) | ConnError::TransportClosed(_)) => CloseCode::Normal,
        };
        let mut reason = why.map_or_else(|| "closed".to_owned(), |e| e.code().to_owned());
        reason.truncate(120); // close reasons are limited to 123 bytes; codes are ASCII
        self.close = Some(CloseFrame {
            code,
            reason: reason.into(),
        });
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(frame) = self.close.take() {
            // Best effort: queue our close frame with its reason, then close.
            if Pin::new(&mut self.ws).poll_ready(cx).is_ready() {
                let _ = Pin::new(&mut self.ws).start_send(WsMessage::Close(Some(frame)));
            }
        }
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_err)
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // tungstenite answers the peer's close frame itself; the stream ends after it.
        match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
            None => Poll::Ready(Ok(0)),
            Some(Err(e)) => Poll::Ready(Err(ws_err(e))),
            Some(Ok(m)) => Poll::Ready(Ok(m.len().max(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The read half of a stream, counting the reads asked of it (joined with the write
    /// half by `tokio::io::join`).
    struct CountingReads {
        inner: tokio::io::ReadHalf<tokio::io::DuplexStream>,
        reads: Arc<AtomicUsize>,
    }

    impl AsyncRead for CountingReads {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    /// Counts its wakes.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_websocket_reads_only_after_its_socket_woke_the_read_side() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let reads = Arc::new(AtomicUsize::new(0));
        let (read_half, write_half) = tokio::io::split(ours);
        let counted = CountingReads {
            inner: read_half,
            reads: reads.clone(),
        };
        let stream = tokio::io::join(counted, write_half);
        let mut io = WsIo::new(WebSocketStream::from_raw_socket(stream, Role::Client, None).await);
        let mut peer = WebSocketStream::from_raw_socket(theirs, Role::Server, None).await;
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = BytesMut::new();

        // The first poll tries a read (input may already be there): nothing yet.
        assert!(io.poll_read(&mut cx, &mut buf).is_pending());
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        // Woken by something else (a command, a flush): no read is tried.
        for _ in 0..3 {
            assert!(io.poll_read(&mut cx, &mut buf).is_pending());
        }
        assert_eq!(reads.load(Ordering::Relaxed), 1);
        assert_eq!(task.0.load(Ordering::Relaxed), 0);

        // Two messages arrive: the socket wakes the link's task, both are read, and the
        // read after them finds nothing and waits again.
        futures_util::SinkExt::send(&mut peer, WsMessage::Binary(Bytes::from_static(b"one")))
            .await
            .expect("send");
        futures_util::SinkExt::send(&mut peer, WsMessage::Binary(Bytes::from_static(b"two")))
            .await
            .expect("send");
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
        for want in [&b"one"[..], b"two"] {
            match io.poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(Incoming::Frame(b))) => assert_eq!(&b[..], want),
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        assert!(io.poll_read(&mut cx, &mut buf).is_pending());
        let after = reads.load(Ordering::Relaxed);
        assert!(io.poll_read(&mut cx, &mut buf).is_pending());
        assert_eq!(reads.load(Ordering::Relaxed), after);

        // The peer closes: the socket wakes the task again and the end is read.
        drop(peer);
        assert_eq!(task.0.load(Ordering::Relaxed), 2);
        match io.poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(Incoming::Eof)) | Poll::Ready(Err(_)) => {}
            other => panic!("expected the end, got {other:?}"),
        }
    }

    #[test]
    fn advancing_drops_written_segments_and_cuts_the_first_unwritten() {
        let mut q: VecDeque<Bytes> = [&b"abc"[..], b"de", b"fgh"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        advance(&mut q, 0);
        assert_eq!(q.len(), 3);
        advance(&mut q, 4);
        assert_eq!(q, [Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]);
        advance(&mut q, 1);
        assert_eq!(q, [Bytes::from_static(b"fgh")]);
        advance(&mut q, 3);
        assert!(q.is_empty());
        advance(&mut q, 5);
        assert!(q.is_empty());
    }
}
