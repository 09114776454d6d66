//! The socket under an accepted TLS session: the session tickets written at the end of
//! the handshake leave with the link's first write (the listener's hello), in one
//! system call (issue 15, point 7). [`nkcluster_core::tls_tail::TailHold`] decides what
//! is held and when it leaves; this stream performs it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nkcluster_core::tls_tail::{TailFlush, TailHold, TailWrite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An accepted stream whose TLS handshake tail waits for the first write. See the module
/// docs.
pub struct TailHeld<S> {
    io: S,
    hold: TailHold,
    /// Held bytes not written yet (empty once they left).
    held: Vec<u8>,
}

impl<S> TailHeld<S> {
    /// `io`, nothing written to or read from it yet.
    pub fn new(io: S) -> Self {
        TailHeld {
            io,
            hold: TailHold::new(),
            held: Vec::new(),
        }
    }
}

impl<S> TailHeld<S> {
    /// The TLS handshake over this stream is done (see
    /// [`TailHold::handshake_done`]).
    pub fn handshake_done(&mut self) {
        self.hold.handshake_done();
    }
}

impl<S: AsyncWrite + Unpin> TailHeld<S> {
    /// Writes what is held, alone.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Writes what is held and then `bufs` in as few writes as the socket allows;
    /// returns how much of `bufs` went.
    fn poll_write_after_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.held.is_empty() {
                self.held = Vec::new();
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&self.held));
            all.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &all))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let held = self.held.len();
            if n < held {
                self.held.drain(..n);
                continue;
            }
            self.held = Vec::new();
            if n > held || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(n - held));
            }
        }
    }

    fn write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.hold.write(!self.held.is_empty()) {
            TailWrite::Pass => Pin::new(&mut self.io).poll_write_vectored(cx, bufs),
            TailWrite::Hold => {
                let mut n = 0;
                for b in bufs {
                    self.held.extend_from_slice(b);
                    n += b.len();
                }
                Poll::Ready(Ok(n))
            }
            TailWrite::Release => self.poll_write_after_held(cx, bufs),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TailHeld<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                r?;
                if buf.filled().len() > before {
                    this.hold.read_data();
                }
            }
            Poll::Pending => {
                // This task waits for the peer: what it may wait for leaves first. Not
                // written at once (the socket is full), it waits for the next write.
                if this.hold.read_would_wait(!this.held.is_empty())
                    && let Poll::Ready(Err(e)) = this.poll_write_held(cx)
                {
                    return Poll::Ready(Err(e));
                }
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TailHeld<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.hold.flush(!this.held.is_empty()) {
            TailFlush::Skip => return Poll::Ready(Ok(())),
            TailFlush::Release | TailFlush::Pass => ready!(this.poll_write_held(cx))?,
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold.shutdown(!this.held.is_empty()) {
            ready!(this.poll_write_held(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the peer's end.
    #[tokio::test]
    async fn the_tail_leaves_with_the_first_write_and_nothing_is_lost() {
        let (a, mut peer) = tokio::io::duplex(1024);
        let mut s = TailHeld::new(a);
        let mut buf = [0u8; 64];
        // Server flight after the client hello.
        peer.write_all(b"hello").await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello");
        s.write_all(b"flight").await.expect("write");
        s.flush().await.expect("flush");
        let n = peer.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"flight");
        // The client's Finished: the tickets are held through the handshake's flush.
        peer.write_all(b"fin").await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"fin");
        s.write_all(b"tickets").await.expect("write");
        s.flush().await.expect("flush");
        s.handshake_done();
        assert_eq!(s.held, b"tickets");
        // The first write takes them along.
        s.write_all(b"+hello").await.expect("write");
        s.flush().await.expect("flush");
        assert!(s.held.is_empty());
        let n = peer.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"tickets+hello");
    }

    #[tokio::test]
    async fn a_read_sends_what_is_held_first() {
        let (a, mut peer) = tokio::io::duplex(1024);
        let mut s = TailHeld::new(a);
        let mut buf = [0u8; 64];
        s.write_all(b"retry").await.expect("write");
        peer.write_all(b"hello2").await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello2");
        s.write_all(b"flight").await.expect("write");
        s.flush().await.expect("flush");
        // Waiting for the peer's answer: the held flight leaves first.
        let waits = futures_util::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            Poll::Ready(Pin::new(&mut s).poll_read(cx, &mut rb).is_pending())
        })
        .await;
        assert!(waits);
        let n = peer.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"retryflight");
    }
}
