//! Channel binding: a middlebox that terminates TLS on both sides (its own certificate
//! toward the worker, its own TLS session toward the control) relays every byte of the
//! handshake faithfully, yet cannot make it succeed, because each side's proof covers
//! the TLS exporter of its own session. The worker runs with `tls_verify=false` (the
//! default), so the certificate alone would not stop it. The control experiment: the same
//! relay passing the TLS bytes through untouched links fine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use nkcluster::node::NodeEvent;
use nkcluster::transport::{client_tls, server_tls};
use nkcluster_core::url::TlsOptions;
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{Relay, TestNode, config, port_of, start, wait_event};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS-terminating relay on 127.0.0.1 toward `target`.
struct TlsMitm {
    addr: SocketAddr,
    /// Connections whose two TLS sessions were both established.
    terminated: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsMitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsMitm {
    async fn start(target: SocketAddr) -> TlsMitm {
        // The middlebox uses the product's own setup: a generated self-signed
        // certificate toward the worker, and a client that trusts whatever the control
        // presents, as a worker with `tls_verify=false` does.
        let server = server_tls(&TlsOptions::default(), "middlebox")
            .expect("the middlebox's certificate")
            .config();
        let client = client_tls(&TlsOptions::default()).expect("client config");
        let acceptor = TlsAcceptor::from(server);
        let connector = TlsConnector::from(client);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the middlebox");
        let addr = listener.local_addr().expect("middlebox address");
        let terminated = Arc::new(AtomicUsize::new(0));
        let t = terminated.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, connector, t) = (acceptor.clone(), connector.clone(), t.clone());
                tokio::spawn(async move {
                    let Ok(mut from_worker) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let name = ServerName::try_from("localhost").expect("server name");
                    let Ok(mut to_control) = connector.connect(name, outbound).await else {
                        return;
                    };
                    t.fetch_add(1, Ordering::Relaxed);
                    // Plaintext both ways: every handshake message arrives intact.
                    let _ = tokio::io::copy_bidirectional(&mut from_worker, &mut to_control).await;
                });
            }
        });
        TlsMitm {
            addr,
            terminated,
            task,
        }
    }
}

async fn control_on(transport: Transport) -> TestNode {
    start(config(
        "c1",
        true,
        &format!("nkcluster://127.0.0.1:0;transport={transport}"),
    ))
    .await
}

async fn tls_terminating_middlebox_cannot_authenticate(transport: Transport) {
    let control = control_on(transport).await;
    let mut cev = control.subscribe();
    let target = SocketAddr::from(([127, 0, 0, 1], port_of(&control, transport)));
    let mitm = TlsMitm::start(target).await;
    let worker = start(config("w1", false, "")).await;
    let mut wev = worker.subscribe();

    let url = format!(
        "nkcluster://127.0.0.1:{};transport={transport};tls_verify=false",
        mitm.addr.port()
    );
    let e = match worker.connect(&url).await {
        Ok(p) => panic!("authenticated through a TLS-terminating middlebox: {p:?}"),
        Err(e) => e,
    };
    assert_eq!(e.code, "auth_failed", "{e}");
    // Both TLS sessions were up (so the failure is not TLS's doing) and the worker's
    // hello reached the control: it names the worker.
    assert_eq!(mitm.terminated.load(Ordering::Relaxed), 1);
    let refused = wait_event(&mut cev, "c1: the relayed handshake refused", |e| {
        matches!(e, NodeEvent::HandshakeFailed { .. })
    })
    .await;
    match &refused {
        NodeEvent::HandshakeFailed { claimed, code, .. } => {
            assert_eq!(claimed.as_deref(), Some("w1"), "{refused:?}");
            assert_eq!(code, "auth_failed", "{refused:?}");
        }
        _ => unreachable!(),
    }
    let failed = wait_event(&mut wev, "w1: its refused handshake", |e| {
        matches!(e, NodeEvent::HandshakeFailed { .. })
    })
    .await;
    assert!(
        matches!(&failed, NodeEvent::HandshakeFailed { code, .. } if code == "auth_failed"),
        "{failed:?}"
    );
    assert!(control.peers().is_empty() && worker.peers().is_empty());
    control.shutdown();

    // The control experiment: the same path with the TLS bytes passed through.
    let control = control_on(transport).await;
    let target = SocketAddr::from(([127, 0, 0, 1], port_of(&control, transport)));
    let relay = Relay::start(target).await;
    let url = format!(
        "nkcluster://127.0.0.1:{};transport={transport};tls_verify=false",
        relay.addr().port()
    );
    let p = worker
        .connect(&url)
        .await
        .expect("the pass-through relay links");
    assert_eq!(p.node_id, "c1");
    assert_eq!(relay.accepted(), 1);
    let r = worker
        .request(
            "c1",
            "nkcluster.echo",
            Bytes::from_static(b"through"),
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("echo through the relay");
    assert_eq!(r, &b"through"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminating_middlebox_cannot_authenticate_tls() {
    tls_terminating_middlebox_cannot_authenticate(Transport::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminating_middlebox_cannot_authenticate_wss() {
    tls_terminating_middlebox_cannot_authenticate(Transport::Wss).await;
}
