//! The raw stacks nkcluster's transports are measured against, and nkcluster itself over
//! each transport: loopback pairs of plain TCP, tokio-rustls with nkcluster's own TLS
//! configuration, tokio-tungstenite with tungstenite's defaults or nkcluster's WebSocket
//! configuration; sequential round trips over each (a length-prefixed ping-pong on byte
//! streams, a binary-message ping-pong on WebSockets); two nodes (a control and a worker
//! linked to it) over any transport.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkcluster::config::NodeConfig;
use nkcluster::net::{Stream, TokioNet};
use nkcluster::node::{Env, Handlers, Node};
use nkcluster::transport;
use nkcluster_core::url::{TlsOptions, parse_url_list};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Body of the round-trip requests.
pub const RTT_BODY: usize = 32;
/// A request's timeout in the benches.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Key derivation rounds of the bench nodes (the default is slow on purpose).
const KEY_ITERATIONS: u32 = 16;

/// A transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Kind {
    /// Its name in a cluster URL.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }

    /// Its raw baseline.
    pub fn raw_label(self) -> &'static str {
        match self {
            Kind::Tcp => "raw TCP",
            Kind::Tls => "raw rustls",
            Kind::Ws => "raw tungstenite",
            Kind::Wss => "raw tungstenite+rustls",
        }
    }
}

/// Both ends' TLS configuration.
#[derive(Clone)]
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The raw TLS configuration: exactly nkcluster's own (`transport::server_tls` with a
/// generated self-signed certificate, TLS 1.3 only, ring; the client with
/// `tls_verify=false`), used here by plain tokio-rustls.
pub fn raw_tls() -> Tls {
    let server = transport::server_tls(&TlsOptions::default(), "bench")
        .expect("server config")
        .config();
    let client = transport::client_tls(&TlsOptions::default()).expect("client config");
    Tls { server, client }
}

/// A connected loopback TCP pair (client, server), no Nagle.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let c = c.expect("connect");
    let (s, _) = s.expect("accept");
    c.set_nodelay(true).expect("nodelay");
    s.set_nodelay(true).expect("nodelay");
    (c, s)
}

pub type TlsClient = tokio_rustls::client::TlsStream<TcpStream>;
pub type TlsServer = tokio_rustls::server::TlsStream<TcpStream>;

/// A connected loopback TLS pair (client, server).
pub async fn tls_pair(tls: &Tls) -> (TlsClient, TlsServer) {
    let (c, s) = tcp_pair().await;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let (c, s) = tokio::join!(
        TlsConnector::from(tls.client.clone()).connect(name, c),
        TlsAcceptor::from(tls.server.clone()).accept(s)
    );
    (c.expect("tls connect"), s.expect("tls accept"))
}

/// tungstenite's defaults, or exactly the configuration nkcluster's transport uses
/// (`over_tls`: for wss).
pub fn ws_config(nk: bool, over_tls: bool) -> WebSocketConfig {
    if nk {
        transport::ws_config(nkcluster_core::MAX_FRAME_DEFAULT, over_tls)
    } else {
        WebSocketConfig::default()
    }
}

/// A WebSocket pair over a connected pair of streams.
pub async fn ws_pair<C: Stream, S: Stream>(
    c: C,
    s: S,
    scheme: &str,
    nk: bool,
) -> (WebSocketStream<C>, WebSocketStream<S>) {
    let url = format!("{scheme}://127.0.0.1/");
    let (c, s) = tokio::join!(
        tokio_tungstenite::client_async_with_config(
            url.as_str(),
            c,
            Some(ws_config(nk, scheme == "wss"))
        ),
        tokio_tungstenite::accept_async_with_config(s, Some(ws_config(nk, scheme == "wss")))
    );
    (c.expect("ws connect").0, s.expect("ws accept"))
}

/// One length-prefixed frame of `size` bytes.
pub fn frame(size: usize) -> Vec<u8> {
    let mut msg = (size as u32).to_be_bytes().to_vec();
    msg.extend(std::iter::repeat_n(7u8, size));
    msg
}

/// Length-prefixed ping-pong over a byte stream; the server echoes from its own task.
/// `n` samples, after `n / 10` untimed.
pub async fn stream_rtt<C: Stream, S: Stream>(mut c: C, mut s: S, n: usize) -> Vec<Duration> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4 + RTT_BODY];
        loop {
            if s.read_exact(&mut buf[..4]).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let len = len.min(RTT_BODY);
            if s.read_exact(&mut buf[4..4 + len]).await.is_err() {
                return;
            }
            if s.write_all(&buf[..4 + len]).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    });
    let msg = frame(RTT_BODY);
    let mut back = [0u8; 4 + RTT_BODY];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.write_all(&msg).await.expect("write");
        c.flush().await.expect("flush");
        c.read_exact(&mut back).await.expect("read");
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    let _ = c.shutdown().await;
    lat
}

/// Binary-message ping-pong; the server echoes from its own task. `n` samples, after
/// `n / 10` untimed.
pub async fn ws_rtt<C: Stream, S: Stream>(
    mut c: WebSocketStream<C>,
    mut s: WebSocketStream<S>,
    n: usize,
) -> Vec<Duration> {
    tokio::spawn(async move {
        while let Some(Ok(m)) = s.next().await {
            if let WsMessage::Binary(b) = m
                && s.send(WsMessage::Binary(b)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Bytes::from(vec![7u8; RTT_BODY]);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        c.send(WsMessage::Binary(body.clone())).await.expect("send");
        match c.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                black_box(b);
            }
            other => panic!("unexpected {other:?}"),
        }
        if i >= n / 10 {
            lat.push(t.elapsed());
        }
    }
    let _ = c.close(None).await;
    lat
}

/// Round trips of the raw stack of `kind` on a fresh pair (`nk_cfg`: WebSockets with
/// nkcluster's configuration).
pub async fn raw_rtt(kind: Kind, tls: &Tls, n: usize, nk_cfg: bool) -> Vec<Duration> {
    match kind {
        Kind::Tcp => {
            let (c, s) = tcp_pair().await;
            stream_rtt(c, s, n).await
        }
        Kind::Tls => {
            let (c, s) = tls_pair(tls).await;
            stream_rtt(c, s, n).await
        }
        Kind::Ws => {
            let (c, s) = tcp_pair().await;
            let (c, s) = ws_pair(c, s, "ws", nk_cfg).await;
            ws_rtt(c, s, n).await
        }
        Kind::Wss => {
            let (c, s) = tls_pair(tls).await;
            let (c, s) = ws_pair(c, s, "wss", nk_cfg).await;
            ws_rtt(c, s, n).await
        }
    }
}

fn env() -> Env<TokioNet> {
    Env::real()
}

/// A control node `c1` listening on `kind` (with a `sink` handler for workers: empty
/// reply) and a worker `w1` connected to it.
pub struct NkPair {
    pub c1: Node<TokioNet>,
    pub w1: Node<TokioNet>,
}

impl NkPair {
    /// Starts both nodes; returns once they are linked.
    pub async fn start(kind: Kind) -> NkPair {
        let t = kind.name();
        let mut c = NodeConfig::new("c1");
        c.key_iterations = KEY_ITERATIONS;
        c.listen = parse_url_list(&format!("nkcluster://127.0.0.1:0;transport={t}")).expect("url");
        let mut handlers = Handlers::builtin("c1");
        handlers.insert_for_workers("sink", |_| Ok(Bytes::new()));
        let c1 = Node::start_with(c, env(), Some(handlers))
            .await
            .expect("c1");
        let port = c1.listen_addrs()[0].1.port();
        let mut w = NodeConfig::new("w1");
        w.key_iterations = KEY_ITERATIONS;
        w.control = false;
        let w1 = Node::start(w, env()).await.expect("w1");
        let peer = w1
            .connect(&format!("nkcluster://127.0.0.1:{port};transport={t}"))
            .await
            .expect("connect");
        assert_eq!(peer.node_id, "c1");
        assert!(peer.remote.starts_with(t), "{}", peer.remote);
        NkPair { c1, w1 }
    }

    /// `n` sequential `nkcluster.echo` round trips of the worker, after `n / 10` untimed.
    pub async fn rtt(&self, n: usize) -> Vec<Duration> {
        let body = Bytes::from(vec![7u8; RTT_BODY]);
        let mut lat = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let t = Instant::now();
            let r = self
                .w1
                .request("c1", "nkcluster.echo", body.clone(), TIMEOUT)
                .await
                .expect("reply");
            if i >= n / 10 {
                lat.push(t.elapsed());
            }
            black_box(r);
        }
        lat
    }

    /// Stops both nodes.
    pub fn shutdown(&self) {
        self.w1.shutdown();
        self.c1.shutdown();
    }
}
