//! turmoil's simulated TCP as an nkcluster [`Net`].

use std::io;
use std::net::SocketAddr;

use nkcluster::net::Net;

/// The simulated network of the current turmoil host.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        listener.accept().await
    }

    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    /// The blocking pool's threads run outside the simulation's schedule.
    fn real_threads(&self) -> bool {
        false
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<(Self::Stream, SocketAddr)> {
        let s = turmoil::net::TcpStream::connect((host, port)).await?;
        let peer = s.peer_addr()?;
        Ok((s, peer))
    }
}
