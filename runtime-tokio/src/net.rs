//! The network the shell runs on, as a trait, so that the same daemon code runs over
//! tokio's real sockets in production and over turmoil's simulated network in `sim`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::discovery::{Dns, DnsSetupError, HickoryDns};

/// A byte stream the connection driver can use.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A TCP-like network: bind, accept, connect.
pub trait Net: Clone + Send + Sync + 'static {
    /// Connected stream type.
    type Stream: Stream;
    /// Listening socket type.
    type Listener: Send + Sync + 'static;

    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Accepts one connection.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address a listener is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;
    /// Connects to `host:port` (`host` is a name or an IP literal).
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The DNS that discovery asks: `server` only, or the system's configuration. The
    /// default is `hickory-resolver` over real sockets.
    fn dns(&self, server: Option<SocketAddr>) -> Result<std::sync::Arc<dyn Dns>, DnsSetupError> {
        Ok(std::sync::Arc::new(HickoryDns::new(server)?))
    }

    /// Whether slow local work (machine figures) may run on the blocking pool's own
    /// threads. A simulation says no: only work on its scheduler replays from a seed.
    fn real_threads(&self) -> bool {
        true
    }
}

/// The real network, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        make_descriptor_room().await;
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = listener.accept().await?;
        s.set_nodelay(true)?;
        Ok((s, a))
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<(Self::Stream, SocketAddr)> {
        // An IP literal (what a node dials almost always, discovery having resolved any
        // name) is the peer's address itself: no `getpeername` per link (issue 15,
        // point 7). A name may resolve to several addresses: the socket says which
        // one answered.
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let peer = SocketAddr::new(ip, port);
            let s = tokio::net::TcpStream::connect(peer).await?;
            s.set_nodelay(true)?;
            return Ok((s, peer));
        }
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        s.set_nodelay(true)?;
        let peer = s.peer_addr()?;
        Ok((s, peer))
    }
}

/// Makes room in the process's descriptor table for the links a listener will hold, once
/// per process (see `nkcluster_core::descriptors`): the growth's wait for an RCU grace
/// period happens here, on the blocking pool, before any link, instead of stalling the
/// runtime's threads at every doubling of the table while links arrive.
async fn make_descriptor_room() {
    static MADE: AtomicBool = AtomicBool::new(false);
    if MADE.swap(true, Ordering::Relaxed) {
        return;
    }
    let grow = || {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let Some(fd) = nkcluster_core::descriptors::room_descriptor(limit) else {
            return;
        };
        let Ok(fd) = i32::try_from(fd) else {
            return;
        };
        // The copy is closed at once; the table keeps its size.
        if let Ok(file) = std::fs::File::open("/dev/null") {
            let _ = rustix::io::fcntl_dupfd_cloexec(&file, fd);
        }
    };
    let _ = tokio::task::spawn_blocking(grow).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dial to an IP literal reports that address (without asking the socket), a dial
    /// to a name the address that answered; both are the listener's.
    #[tokio::test]
    async fn a_dial_reports_the_address_that_answered() {
        let net = TokioNet;
        let listener = net
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let at = net.local_addr(&listener).expect("local addr");
        let (_s, peer) = net.connect("127.0.0.1", at.port()).await.expect("dial ip");
        assert_eq!(peer, at);
        let (_s, peer) = net
            .connect("localhost", at.port())
            .await
            .expect("dial name");
        assert_eq!(peer, at);
    }
}
