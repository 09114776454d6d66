//! The four transports through the library API, over real loopback sockets: one link
//! suite run once per transport (tcp, tls, ws, wss), the connection cases of DESIGN §6
//! through `Node::connect`, certificate verification against a CA, and link death with
//! requests pending (through a relay that can pause or cut the path).

use std::time::{Duration, Instant};

use bytes::Bytes;
use nkcluster::node::{NodeEvent, RequestOptions};
use nkcluster_core::RequestError;
use nkcluster_core::Role;
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{Relay, TestNode, config, port_of, start, url_of, wait_event};
use nkcluster_tests::{TempDir, XorShift, free_port};

/// Frame maximum of the link suite: small enough that a payload at the limit crosses
/// quickly in a debug build, large enough to span many TLS records and socket reads.
const MAX_FRAME: u32 = 1024 * 1024;
/// Envelope allowance the core reserves per request and reply (see `Connection::request`).
const ENVELOPE: usize = 32;
const ECHO: &str = "nkcluster.echo";
/// Generous: only reached when something is broken.
const LONG: Duration = Duration::from_secs(30);

fn listen(transport: Transport) -> String {
    format!("nkcluster://127.0.0.1:0;transport={transport}")
}

async fn control_on(transport: Transport) -> TestNode {
    let mut c = config("c1", true, &listen(transport));
    c.connection.max_frame = MAX_FRAME;
    start(c).await
}

async fn worker() -> TestNode {
    let mut c = config("w1", false, "");
    c.connection.max_frame = MAX_FRAME;
    start(c).await
}

fn is_link_up(peer: &'static str, dialer: bool) -> impl Fn(&NodeEvent) -> bool {
    move |e| matches!(e, NodeEvent::LinkUp { peer: p, dialer: d, .. } if p == peer && *d == dialer)
}

fn remote_of(e: &NodeEvent) -> String {
    match e {
        NodeEvent::LinkUp { remote, .. }
        | NodeEvent::LinkDown { remote, .. }
        | NodeEvent::HandshakeFailed { remote, .. } => remote.clone(),
        other => panic!("no remote in {other:?}"),
    }
}

async fn echo(from: &TestNode, to: &str, body: Bytes) -> Bytes {
    from.request(to, ECHO, body, LONG)
        .await
        .unwrap_or_else(|e| panic!("echo from {} to {to}: {e}", from.node_id()))
}

/// Connects w1 to c1 listening on `transport`, then: the remote is reported with its
/// transport; echo both ways; a payload at the frame maximum round-trips byte for byte
/// and one byte more is refused before sending; an unknown class is the peer's
/// `unknown_class`; an exclusive request gets its own connection, closed once answered;
/// shutting the control down ends the link (LinkDown) and the next request is
/// `not_connected`.
async fn link_suite(transport: Transport) {
    let control = control_on(transport).await;
    let mut cev = control.subscribe();
    let port = port_of(&control, transport);
    let url = url_of(&control, transport);
    let worker = worker().await;
    let mut wev = worker.subscribe();

    let peer = worker.connect(&url).await.expect("the worker connects");
    assert_eq!(peer.node_id, "c1");
    assert_eq!(peer.role, Role::Control);
    assert!(peer.dialer);
    assert_eq!(peer.remote, format!("{transport}:127.0.0.1:{port}"));
    assert!(
        peer.remote.starts_with(&format!("{transport}:127.0.0.1:")),
        "{peer:?}"
    );
    // The control announces the URL it serves (the bound port, no secrets).
    assert_eq!(
        peer.listen,
        vec![format!(
            "nkcluster://127.0.0.1:{port};transport={transport}"
        )]
    );
    let up = wait_event(&mut cev, "c1: link up with w1", is_link_up("w1", false)).await;
    let main_remote = remote_of(&up);
    assert!(
        main_remote.starts_with(&format!("{transport}:127.0.0.1:")),
        "{up:?}"
    );
    assert_eq!(
        worker
            .peers()
            .iter()
            .map(|p| (p.node_id.as_str(), p.remote.as_str()))
            .collect::<Vec<_>>(),
        vec![("c1", peer.remote.as_str())]
    );

    // Echo both ways (the listener side can call the dialer too).
    assert_eq!(
        echo(&worker, "c1", Bytes::from_static(b"hello")).await,
        &b"hello"[..]
    );
    assert_eq!(
        echo(&control, "w1", Bytes::from_static(b"back")).await,
        &b"back"[..]
    );
    let id = control
        .request("w1", "nkcluster.node", Bytes::new(), LONG)
        .await
        .expect("nkcluster.node");
    assert_eq!(id, &b"w1"[..]);

    // The largest echo body the frame maximum allows, byte for byte.
    let max_body = MAX_FRAME as usize - ENVELOPE - ECHO.len();
    let big = Bytes::from(XorShift::new(7).bytes(max_body));
    let back = echo(&worker, "c1", big.clone()).await;
    assert!(
        back == big,
        "the payload at the frame maximum came back altered"
    );
    let big = Bytes::from(XorShift::new(8).bytes(max_body));
    assert!(echo(&control, "w1", big.clone()).await == big);
    // One byte more is refused locally, and the link stays usable.
    let over = Bytes::from(vec![0u8; max_body + 1]);
    match worker.request("c1", ECHO, over, LONG).await {
        Err(RequestError::PayloadTooLarge { max, .. }) => assert_eq!(max, MAX_FRAME),
        other => panic!("expected payload_too_large, got {other:?}"),
    }

    match worker
        .request("c1", "no.such.class", Bytes::from_static(b"x"), LONG)
        .await
    {
        Err(RequestError::Remote(e)) => assert_eq!(e.code, "unknown_class", "{e}"),
        other => panic!("expected the peer's unknown_class, got {other:?}"),
    }

    // Exclusive: a second connection to the control's announced URL, authenticated like
    // the first, closed once the reply is in; the main link is untouched.
    let body = Bytes::from(XorShift::new(9).bytes(256 * 1024));
    let reply = worker
        .request_with(
            "c1",
            ECHO,
            body.clone(),
            RequestOptions {
                timeout: LONG,
                exclusive: true,
            },
        )
        .await
        .expect("exclusive echo");
    assert!(reply == body, "the exclusive echo came back altered");
    let extra = wait_event(
        &mut cev,
        "c1: a second link up with w1 (exclusive)",
        is_link_up("w1", false),
    )
    .await;
    let extra_remote = remote_of(&extra);
    assert_ne!(
        extra_remote, main_remote,
        "the exclusive request reused the main link"
    );
    assert!(
        extra_remote.starts_with(&format!("{transport}:127.0.0.1:")),
        "{extra:?}"
    );
    let down = wait_event(
        &mut cev,
        "c1: the exclusive link goes down",
        |e| matches!(e, NodeEvent::LinkDown { remote, .. } if *remote == extra_remote),
    )
    .await;
    match &down {
        NodeEvent::LinkDown { code, .. } => assert!(
            code.is_none() || code.as_deref() == Some("peer_closed"),
            "the exclusive link did not end in order: {down:?}"
        ),
        _ => unreachable!(),
    }
    assert_eq!(
        control
            .peers()
            .iter()
            .map(|p| p.remote.clone())
            .collect::<Vec<_>>(),
        vec![main_remote.clone()],
        "the control must be left with the main link only"
    );
    // The worker dialed it and closed it itself once idle (no error code).
    wait_event(
        &mut wev,
        "w1: link up with c1 (main)",
        is_link_up("c1", true),
    )
    .await;
    wait_event(
        &mut wev,
        "w1: link up with c1 (exclusive)",
        is_link_up("c1", true),
    )
    .await;
    let down = wait_event(
        &mut wev,
        "w1: the exclusive link goes down",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "c1"),
    )
    .await;
    assert!(
        matches!(&down, NodeEvent::LinkDown { code: None, .. }),
        "the worker did not close its exclusive link itself: {down:?}"
    );
    assert_eq!(worker.peers().len(), 1, "{:?}", worker.peers());
    assert_eq!(
        echo(&worker, "c1", Bytes::from_static(b"still")).await,
        &b"still"[..]
    );

    // Link death: the control shuts down.
    let mut wev = worker.subscribe();
    control.shutdown();
    let down = wait_event(
        &mut wev,
        "w1: link down with c1",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "c1"),
    )
    .await;
    assert_eq!(remote_of(&down), peer.remote);
    match worker
        .request("c1", ECHO, Bytes::from_static(b"late"), LONG)
        .await
    {
        Err(RequestError::NotConnected | RequestError::ConnectionFailed) => {}
        other => panic!("a request after the link died: {other:?}"),
    }
    assert!(worker.peers().is_empty(), "{:?}", worker.peers());
    worker.shutdown();
}

/// Through a relay that can pause and cut: a request the peer never gets to answer ends
/// `timeout` at its deadline (from the core), the link survives it and ignores the late
/// reply; then a request pending when the path dies ends `connection_failed`, and both
/// sides see the link go down.
async fn link_cut(transport: Transport) {
    let control = control_on(transport).await;
    let mut cev = control.subscribe();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&control, transport)));
    let relay = Relay::start(target).await;
    let worker = worker().await;
    let mut wev = worker.subscribe();
    let url = format!(
        "nkcluster://127.0.0.1:{};transport={transport}",
        relay.addr().port()
    );
    let peer = worker
        .connect(&url)
        .await
        .expect("connect through the relay");
    assert_eq!(
        peer.remote,
        format!("{transport}:127.0.0.1:{}", relay.addr().port())
    );
    wait_event(&mut cev, "c1: link up with w1", is_link_up("w1", false)).await;
    assert_eq!(relay.accepted(), 1);

    // Timeout: nothing moves while paused.
    relay.pause();
    let timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let r = worker
        .request("c1", ECHO, Bytes::from_static(b"first"), timeout)
        .await;
    let took = t0.elapsed();
    assert_eq!(r, Err(RequestError::Timeout));
    assert!(took >= timeout, "timed out early, after {took:?}");
    relay.resume();
    // The late reply to "first" is dropped; the next request gets its own answer.
    assert_eq!(
        echo(&worker, "c1", Bytes::from_static(b"second")).await,
        &b"second"[..]
    );

    // Death with a request pending. Polling the request once queues it on the link;
    // a probe queued after it timing out proves the link's task took both (it takes
    // commands in order), so the first is sent and waiting when the path is cut.
    relay.pause();
    let mut pending = Box::pin(worker.request("c1", ECHO, Bytes::from_static(b"pending"), LONG));
    std::future::poll_fn(|cx| {
        assert!(
            pending.as_mut().poll(cx).is_pending(),
            "answered while paused"
        );
        std::task::Poll::Ready(())
    })
    .await;
    let probe = worker
        .request(
            "c1",
            ECHO,
            Bytes::from_static(b"probe"),
            Duration::from_millis(50),
        )
        .await;
    assert_eq!(probe, Err(RequestError::Timeout));
    relay.cut();
    let r = tokio::time::timeout(LONG, pending)
        .await
        .expect("the pending request ends");
    assert_eq!(r, Err(RequestError::ConnectionFailed));
    let down = wait_event(
        &mut wev,
        "w1: link down with c1",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "c1"),
    )
    .await;
    assert!(
        matches!(&down, NodeEvent::LinkDown { code: Some(c), .. } if c == "transport_closed"),
        "{down:?}"
    );
    wait_event(
        &mut cev,
        "c1: link down with w1",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "w1"),
    )
    .await;
    control.shutdown();
    worker.shutdown();
}

macro_rules! per_transport {
    ($($name:ident: $t:expr,)*) => {
        mod link_suite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    link_suite($t).await;
                }
            )*
        }
        mod link_cut {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    link_cut($t).await;
                }
            )*
        }
    };
}

per_transport! {
    tcp: Transport::Tcp,
    tls: Transport::Tls,
    ws: Transport::Ws,
    wss: Transport::Wss,
}

// ---------------------------------------------------------------------------------------
// DESIGN §6: connection cases.

async fn connect_err(node: &TestNode, urls: &str) -> nkcluster::node::ConnectError {
    match node.connect(urls).await {
        Ok(p) => panic!("connecting to {urls:?} should fail, reached {p:?}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_url_is_invalid_scheme() {
    let w = worker().await;
    let e = connect_err(&w, "http://127.0.0.1:1").await;
    assert_eq!(e.code, "invalid_scheme", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_udp_is_invalid_transport() {
    let w = worker().await;
    let e = connect_err(&w, "nkcluster://127.0.0.1:1;transport=udp").await;
    assert_eq!(e.code, "invalid_transport", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_hi_is_a_syntax_error() {
    let w = worker().await;
    let e = connect_err(&w, "nkcluster://127.0.0.1:1;transport=tls;tls_verify=hi").await;
    assert_eq!(e.code, "syntax_error", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_no_connections_on_every_transport() {
    let w = worker().await;
    let port = free_port();
    for t in Transport::ALL {
        let e = connect_err(&w, &format!("nkcluster://127.0.0.1:{port};transport={t}")).await;
        assert_eq!(e.code, "no_connections", "{t}: {e}");
    }
    // A list of only dead entries too.
    let e = connect_err(
        &w,
        &format!(
            "nkcluster://127.0.0.1:{port};transport=tls, nkcluster://127.0.0.1:{port};transport=ws"
        ),
    )
    .await;
    assert_eq!(e.code, "no_connections", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_true_without_a_ca_fails() {
    let control = start(config(
        "c1",
        true,
        &format!("{}, {}", listen(Transport::Tls), listen(Transport::Wss)),
    ))
    .await;
    let mut cev = control.subscribe();
    let w = worker().await;
    for t in [Transport::Tls, Transport::Wss] {
        let url = format!("{};tls_verify=true", url_of(&control, t));
        let e = connect_err(&w, &url).await;
        assert_eq!(e.code, "tls_config", "{t}: {e}");
        assert!(e.detail.contains("tls_cacertfile"), "{t}: {e}");
    }
    // As a node option too.
    let mut c = config("w2", false, "");
    c.tls.verify = Some(true);
    let w2 = start(c).await;
    let e = connect_err(&w2, &url_of(&control, Transport::Tls)).await;
    assert_eq!(e.code, "tls_config", "{e}");
    // The URL's own tls_verify=false overrides the node's.
    let p = w2
        .connect(&format!(
            "{};tls_verify=false",
            url_of(&control, Transport::Tls)
        ))
        .await
        .expect("tls_verify=false in the URL overrides the node option");
    assert_eq!(p.node_id, "c1");
    wait_event(&mut cev, "c1: link up with w2", is_link_up("w2", false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_skips_entries_nobody_answers() {
    let control = control_on(Transport::Wss).await;
    let w = worker().await;
    let dead = free_port();
    let list = format!(
        "nkcluster://127.0.0.1:{dead};transport=tcp, nkcluster://127.0.0.1:{dead};transport=tls, {}",
        url_of(&control, Transport::Wss)
    );
    let p = w.connect(&list).await.expect("the third entry answers");
    assert_eq!(
        p.remote,
        format!("wss:127.0.0.1:{}", port_of(&control, Transport::Wss))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_then_good_succeeds_and_bad_alone_fails() {
    let mut c = config("c1", true, &listen(Transport::Tls));
    c.password = "good".into();
    let control = start(c).await;
    let mut cev = control.subscribe();
    let url = url_of(&control, Transport::Tls);

    // In the URL: bad, then good.
    let w = worker().await;
    let list = format!("{url};password=bad, {url};password=good");
    let p = w.connect(&list).await.expect("the second entry links");
    assert_eq!(p.node_id, "c1");
    assert!(p.remote.starts_with("tls:127.0.0.1:"), "{p:?}");
    let refused = wait_event(&mut cev, "c1: w1's bad password refused", |e| {
        matches!(e, NodeEvent::HandshakeFailed { .. })
    })
    .await;
    assert_eq!(
        refused,
        NodeEvent::HandshakeFailed {
            remote: remote_of(&refused),
            claimed: Some("w1".into()),
            code: "auth_failed".into(),
        }
    );
    wait_event(&mut cev, "c1: link up with w1", is_link_up("w1", false)).await;

    // Bad in the URL alone.
    let w2 = start(config("w2", false, "")).await;
    let e = connect_err(&w2, &format!("{url};password=bad")).await;
    assert_eq!(e.code, "auth_failed", "{e}");
    // Bad in the options (the default `nkcluster`), good in the URL overrides it.
    let e = connect_err(&w2, &url).await;
    assert_eq!(e.code, "auth_failed", "{e}");
    w2.connect(&format!("{url};password=good"))
        .await
        .expect("the URL's password overrides the node's");
}

// ---------------------------------------------------------------------------------------
// Certificates: tls_verify with a CA, a wrong CA, tls_depth.

struct Pki {
    dir: TempDir,
}

fn ca_params(cn: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, cn.to_owned());
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p
}

impl Pki {
    /// Writes, in a temp dir: `ca.pem` (root A), `other-ca.pem` (root B), `leaf.pem` +
    /// `leaf.key` (for 127.0.0.1 and localhost, signed by A directly) and `chain.pem` +
    /// `chained.key` (a leaf signed by an intermediate signed by A; the file holds leaf
    /// then intermediate).
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let key = || rcgen::KeyPair::generate().expect("key pair");
        let root = rcgen::CertifiedIssuer::self_signed(ca_params("nkcluster test root A"), key())
            .expect("root A");
        let other = rcgen::CertifiedIssuer::self_signed(ca_params("nkcluster test root B"), key())
            .expect("root B");
        let inter = rcgen::CertifiedIssuer::signed_by(
            ca_params("nkcluster test intermediate"),
            key(),
            &root,
        )
        .expect("intermediate");
        let leaf_params = || {
            let mut p =
                rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                    .expect("leaf params");
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "nkcluster test leaf");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            p
        };
        let leaf_key = key();
        let leaf = leaf_params()
            .signed_by(&leaf_key, &root)
            .expect("leaf signed by A");
        let chained_key = key();
        let chained = leaf_params()
            .signed_by(&chained_key, &inter)
            .expect("leaf signed by the intermediate");
        dir.write("ca.pem", &root.pem());
        dir.write("other-ca.pem", &other.pem());
        dir.write("leaf.pem", &leaf.pem());
        dir.write("leaf.key", &leaf_key.serialize_pem());
        dir.write("chain.pem", &format!("{}{}", chained.pem(), inter.pem()));
        dir.write("chained.key", &chained_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

async fn control_with_cert(id: &str, pki: &Pki, cert: &str, key: &str) -> TestNode {
    let mut c = config(
        id,
        true,
        &format!("{}, {}", listen(Transport::Tls), listen(Transport::Wss)),
    );
    c.tls.certfile = Some(pki.path(cert));
    c.tls.keyfile = Some(pki.path(key));
    start(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_accepts_the_right_ca_and_refuses_another() {
    let pki = Pki::new();
    let control = control_with_cert("c1", &pki, "leaf.pem", "leaf.key").await;
    let mut cev = control.subscribe();
    let w = worker().await;
    for t in [Transport::Tls, Transport::Wss] {
        let url = url_of(&control, t);
        let good = format!(
            "{url};tls_verify=true;tls_cacertfile={}",
            pki.path("ca.pem")
        );
        let p = w
            .connect(&good)
            .await
            .expect("verified against the right CA");
        assert!(p.remote.starts_with(&format!("{t}:127.0.0.1:")), "{p:?}");
        wait_event(&mut cev, "c1: link up with w1", is_link_up("w1", false)).await;

        let bad = format!(
            "{url};tls_verify=true;tls_cacertfile={}",
            pki.path("other-ca.pem")
        );
        let e = connect_err(&w, &bad).await;
        assert_eq!(e.code, "tls_error", "{t}: {e}");
        // The control sees a TLS handshake that the client aborted.
        let f = wait_event(&mut cev, "c1: the refused TLS handshake", |e| {
            matches!(e, NodeEvent::HandshakeFailed { .. })
        })
        .await;
        assert!(
            matches!(&f, NodeEvent::HandshakeFailed { code, claimed: None, .. } if code == "tls_error"),
            "{f:?}"
        );
    }
    // The node options work the same as the URL parameters.
    let mut c = config("w2", false, "");
    c.tls.verify = Some(true);
    c.tls.cacertfile = Some(pki.path("ca.pem"));
    let w2 = start(c).await;
    w2.connect(&url_of(&control, Transport::Tls))
        .await
        .expect("verified with node options");
    let mut c = config("w3", false, "");
    c.tls.verify = Some(true);
    c.tls.cacertfile = Some(pki.path("other-ca.pem"));
    let w3 = start(c).await;
    let e = connect_err(&w3, &url_of(&control, Transport::Tls)).await;
    assert_eq!(e.code, "tls_error", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_depth_limits_the_intermediates() {
    let pki = Pki::new();
    let control = control_with_cert("c1", &pki, "chain.pem", "chained.key").await;
    let w = worker().await;
    let url = url_of(&control, Transport::Tls);
    let ca = pki.path("ca.pem");
    let e = connect_err(
        &w,
        &format!("{url};tls_verify=true;tls_cacertfile={ca};tls_depth=0"),
    )
    .await;
    assert_eq!(e.code, "tls_error", "{e}");
    assert!(e.detail.contains("tls_depth"), "{e}");
    w.connect(&format!(
        "{url};tls_verify=true;tls_cacertfile={ca};tls_depth=1"
    ))
    .await
    .expect("one intermediate is allowed by tls_depth=1");
    // No limit: the chain verifies.
    let w2 = start(config("w2", false, "")).await;
    w2.connect(&format!("{url};tls_verify=true;tls_cacertfile={ca}"))
        .await
        .expect("no tls_depth: no limit");
}

// ---------------------------------------------------------------------------------------
// Exclusive connections toward a control that listens on every interface.

/// A control listening on `all` announces `nkcluster://all:PORT`; a peer cannot dial
/// `all`, so an exclusive request must still reach it (at the address the main link
/// reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_request_to_a_control_listening_on_all() {
    let control = start(config("c1", true, "nkcluster://all:0;transport=tcp")).await;
    let mut cev = control.subscribe();
    let port = port_of(&control, Transport::Tcp);
    let w = worker().await;
    let p = w
        .connect(&format!("nkcluster://127.0.0.1:{port};transport=tcp"))
        .await
        .expect("connect");
    wait_event(&mut cev, "c1: link up with w1", is_link_up("w1", false)).await;
    let r = w
        .request_with(
            "c1",
            ECHO,
            Bytes::from_static(b"x"),
            RequestOptions {
                timeout: Duration::from_secs(10),
                exclusive: true,
            },
        )
        .await;
    assert_eq!(
        r.as_deref().ok(),
        Some(&b"x"[..]),
        "{r:?} (announced listen URLs: {:?})",
        p.listen
    );
    wait_event(&mut cev, "c1: the exclusive link", is_link_up("w1", false)).await;
}

/// Listener sets: one node serves all four transports at once (one generated
/// certificate for both TLS listeners), and a worker links over each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_all_four_transports_at_once() {
    let all = Transport::ALL
        .iter()
        .map(|t| listen(*t))
        .collect::<Vec<_>>()
        .join(", ");
    let control = start(config("c1", true, &all)).await;
    let mut cev = control.subscribe();
    assert_eq!(
        control
            .listen_addrs()
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>(),
        Transport::ALL.to_vec()
    );
    for t in Transport::ALL {
        let id = format!("w-{t}");
        let w = start(config(&id, false, "")).await;
        let p = w.connect(&url_of(&control, t)).await.expect("links");
        assert_eq!(p.remote, format!("{t}:127.0.0.1:{}", port_of(&control, t)));
        let up = wait_event(
            &mut cev,
            &format!("c1: link up with {id}"),
            |e| matches!(e, NodeEvent::LinkUp { peer, .. } if *peer == id),
        )
        .await;
        assert!(
            remote_of(&up).starts_with(&format!("{t}:127.0.0.1:")),
            "{up:?}"
        );
    }
    assert_eq!(control.peers().len(), 4);
}
