//! turmoil's simulated TCP as an nkcluster [`Net`], recording a digest of every byte the
//! nodes write ([`Wire`]).
//!
//! The digest is what lets a replay test see the bytes that never reach the event log:
//! TLS randoms, ephemeral keys, certificates and ciphertext, nonces and proofs, machine
//! figures. Two runs of one seed must write the same bytes in the same order. When they
//! do not, `NKCLUSTER_SIM_WIRE_DUMP=1` prints every write (stream and bytes) to stderr:
//! diff two runs' dumps to find the first byte that differs.

use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use nkcluster::discovery::{Dns, DnsSetupError, LookupFuture};
use nkcluster::net::Net;
use nkcluster_core::discovery::{Answer, Query};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A running digest of the bytes written by every node of one simulation, in write order
/// (one thread runs every simulated host, so the order is the schedule's, a function of
/// the seed).
#[derive(Debug, Clone, Default)]
pub struct Wire(Arc<Mutex<WireState>>);

#[derive(Debug)]
struct WireState {
    /// SipHash with fixed keys: the same bytes give the same digest in every run.
    digest: DefaultHasher,
    bytes: u64,
    /// Print every write (`NKCLUSTER_SIM_WIRE_DUMP`).
    dump: bool,
}

impl Default for WireState {
    fn default() -> Self {
        WireState {
            digest: DefaultHasher::new(),
            bytes: 0,
            dump: std::env::var_os("NKCLUSTER_SIM_WIRE_DUMP").is_some(),
        }
    }
}

impl Wire {
    fn record(&self, stream: &turmoil::net::TcpStream, written: &[u8]) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.digest.write(written);
        s.bytes += written.len() as u64;
        if s.dump {
            let addr = |a: io::Result<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            let (from, to) = (addr(stream.local_addr()), addr(stream.peer_addr()));
            eprintln!("wire {from} -> {to} {} {written:02x?}", written.len());
        }
    }

    /// `wire: <bytes> bytes, digest <hex>`, for the end of an event log.
    pub fn summary(&self) -> String {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "wire: {} bytes written, digest {:016x}",
            s.bytes,
            s.digest.finish()
        )
    }
}

/// The simulated network of the current turmoil host; what its streams write goes into
/// `wire`.
#[derive(Debug, Clone, Default)]
pub struct TurmoilNet {
    /// Where written bytes are recorded.
    pub wire: Wire,
}

/// A simulated TCP stream whose writes are recorded.
#[derive(Debug)]
pub struct WireStream {
    inner: turmoil::net::TcpStream,
    wire: Wire,
}

impl AsyncRead for WireStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wire.record(&self.inner, &buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Net for TurmoilNet {
    type Stream = WireStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (inner, peer) = listener.accept().await?;
        let wire = self.wire.clone();
        Ok((WireStream { inner, wire }, peer))
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    /// The blocking pool's threads run outside the simulation's schedule.
    fn real_threads(&self) -> bool {
        false
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<(Self::Stream, SocketAddr)> {
        let inner = turmoil::net::TcpStream::connect((host, port)).await?;
        let peer = inner.peer_addr()?;
        let wire = self.wire.clone();
        Ok((WireStream { inner, wire }, peer))
    }

    fn dns(&self, _server: Option<SocketAddr>) -> Result<Arc<dyn Dns>, DnsSetupError> {
        Ok(Arc::new(TurmoilDns))
    }
}

/// The simulated network's names: a host's address is turmoil's; there are no NAPTR
/// or SRV records.
#[derive(Debug, Clone, Copy)]
pub struct TurmoilDns;

impl Dns for TurmoilDns {
    fn lookup<'a>(&'a self, query: &'a Query) -> LookupFuture<'a> {
        Box::pin(async move {
            match query {
                // Known names only (turmoil's `lookup` would invent an address).
                Query::Ip(name) => match turmoil::net::lookup_host((name.as_str(), 0)).await {
                    Ok(addrs) => Answer::Ip(addrs.map(|a| a.ip()).collect()),
                    Err(_) => Answer::NotFound,
                },
                Query::Naptr(_) | Query::Srv(_) => Answer::NotFound,
            }
        })
    }
}
