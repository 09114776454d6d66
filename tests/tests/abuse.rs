//! Limits against abuse (issue 12, point 4), each tried for real over loopback sockets:
//! abandoned file transfers end with the link that started them, a flood of
//! wrong-password handshakes from one address backs off that address only (a good peer
//! elsewhere is not slowed, the log stays short), and a worker sending events of too many
//! job classes is refused with `too_many_classes` while the control node keeps serving.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nkcluster::node::NodeEvent;
use nkcluster_core::cluster::{ClusterRequest, EventMsg, FilePart, JobCall, WireEvent};
use nkcluster_core::conn::RequestError;
use nkcluster_core::handshake::Role;
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{TestNode, config, start, start_linked_worker, url_of, wait_event};
use nkcluster_tests::poll::poll_until_async;
use nkcluster_tests::{Daemon, TempDir, has};

const T: Duration = Duration::from_secs(5);

/// An admin client (in-process) linked to `url`.
async fn admin(id: &str, url: &str) -> TestNode {
    let mut c = config(id, false, "");
    c.admin = true;
    let node = start(c).await;
    node.connect(url).await.expect("the admin client links");
    node
}

/// The first part (one byte of `total`) of a file to `path`, as a request.
fn first_part(path: &str, total: u64) -> (&'static str, Bytes) {
    ClusterRequest::Job(JobCall::SendFile(FilePart {
        path: path.into(),
        offset: 0,
        total,
        data: Bytes::from_static(b"x"),
        sha256: None,
    }))
    .encode()
    .expect("encodes")
}

fn remote_code(r: Result<Bytes, RequestError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(RequestError::Remote(e)) => e.code.as_str().to_owned(),
        Err(e) => format!("local:{}", e.code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transfers_end_with_their_link_and_do_not_block_the_next_send_file() {
    let dir = TempDir::new("abuse-transfers");
    let mut c = config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp");
    c.files_dir = dir.path().to_path_buf();
    let control = start(c).await;
    let url = url_of(&control, Transport::Tcp);
    let mut heard = control.subscribe();

    // A client opens 64 transfers (first part only) and never finishes them.
    let a1 = admin("admin-a1", &url).await;
    for i in 0..64 {
        let (class, body) = first_part(&format!("f{i}"), 100);
        let r = a1.request("c1", class, body, T).await;
        assert_eq!(remote_code(r), "ok", "part {i}");
    }
    // The table is full: the limit answers with its typed error.
    let (class, body) = first_part("f64", 100);
    assert_eq!(
        remote_code(a1.request("c1", class, body, T).await),
        "too_many_transfers"
    );
    assert!(dir.path().join("f0.part").exists());
    // Another peer may not continue (or restart) a transfer it did not start.
    let a2 = admin("admin-a2", &url).await;
    let (class, body) = first_part("f0", 100);
    assert_eq!(
        remote_code(a2.request("c1", class, body, T).await),
        "transfer_busy"
    );

    // The client goes away (as a Ctrl-C'd send-file): its transfers end with its link.
    a1.shutdown();
    wait_event(
        &mut heard,
        "admin-a1's link down",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "admin-a1"),
    )
    .await;
    let started = Instant::now();
    let local = dir.write("local.txt", "hello, abandoned transfers");
    let sent = a2
        .send_file("c1", &local, "landed.txt", T, |_, _| {})
        .await
        .expect("the next send-file goes through");
    assert_eq!(sent, 26);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the send-file waited {:?} (the idle deadline is 60 s)",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("landed.txt")).expect("landed"),
        "hello, abandoned transfers"
    );
    // The `.part` files of the abandoned transfers are removed (by the file writer).
    poll_until_async(
        "the .part files of the abandoned transfers are removed",
        nkcluster_tests::DEADLINE,
        Duration::from_millis(10),
        || {
            let left = (0..64)
                .filter(|i| dir.path().join(format!("f{i}.part")).exists())
                .count();
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} .part files"))
            }
        },
    )
    .await;
    a2.shutdown();
    control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sending_events_of_too_many_classes_is_refused_and_the_control_keeps_serving() {
    let control = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let url = url_of(&control, Transport::Tcp);
    let worker = start_linked_worker(&control, config("w1", false, "")).await;
    let event = |class: String| {
        ClusterRequest::JobEvent(EventMsg {
            node: "w1".into(),
            class,
            task: Some(1),
            event: WireEvent::TaskStarted,
        })
        .encode()
        .expect("encodes")
    };
    for i in 0..64 {
        let (class, body) = event(format!("class-{i}"));
        assert_eq!(
            remote_code(worker.request("c1", class, body, T).await),
            "ok",
            "class {i}"
        );
    }
    let (class, body) = event("class-64".into());
    let r = worker.request("c1", class, body, T).await;
    let Err(RequestError::Remote(e)) = r else {
        panic!("the 65th class must be refused: {r:?}");
    };
    assert_eq!(e.code.as_str(), "too_many_classes");
    assert!(e.message.contains("64 classes"), "{}", e.message);
    // The control keeps serving: a known class still passes, and another client is
    // answered.
    let (class, body) = event("class-3".into());
    assert_eq!(
        remote_code(worker.request("c1", class, body, T).await),
        "ok"
    );
    let a1 = admin("admin-a1", &url).await;
    a1.get_info("c1", T).await.expect("c1 answers");
    a1.shutdown();
    worker.shutdown();
    control.shutdown();
}

/// One wrong-password handshake from `source`: `Some(true)` when the node answered it
/// (a guess), `Some(false)` when it closed without answering (refused at accept),
/// `None` when the connection could not be made.
async fn guess(source: [u8; 4], port: u16, n: u64) -> Option<bool> {
    use nkcluster_core::auth::Key;
    use nkcluster_core::handshake::{Handshake, HandshakeConfig, Identity, Side};
    use nkcluster_core::message::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = tokio::net::TcpSocket::new_v4().ok()?;
    s.bind((source, 0).into()).ok()?;
    let mut s = s.connect(([127, 0, 0, 1], port).into()).await.ok()?;
    let identity = Identity {
        cluster: "nkcluster".into(),
        node_id: format!("guesser-{n}"),
        instance: n,
        role: Role::Admin,
        listen: Vec::new(),
        meta: String::new(),
        partitions: 0,
    };
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(&n.to_be_bytes());
    let now = nkcluster_core::Instant::ZERO;
    let mut hs = Handshake::new(
        Side::Dialer,
        &identity,
        Key::from_bytes([n as u8; 32]),
        nonce,
        &[],
        HandshakeConfig::default(),
        now,
    );
    loop {
        while let Some(body) = hs.poll_transmit() {
            let mut frame = u32::try_from(body.len()).ok()?.to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            if s.write_all(&frame).await.is_err() {
                return Some(false);
            }
        }
        if hs.poll_outcome().is_some() || hs.is_finished() {
            return Some(true);
        }
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return Some(false);
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut body).await.is_err() {
            return Some(false);
        }
        let Ok(msg) = Message::decode(&body) else {
            return Some(false);
        };
        if matches!(msg, Message::Reject(_)) {
            return Some(true);
        }
        hs.handle_message(now, &body, msg);
    }
}

/// How long a fresh admin client takes to link to `url` (handshake included): the
/// median of `n`.
async fn handshake_time(url: &str, n: usize, tag: &str) -> Duration {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = config(&format!("admin-{tag}-{i}"), false, "");
        c.admin = true;
        c.key_iterations = nkcluster_core::auth::KEY_ITERATIONS;
        let node = start(c).await;
        let t = Instant::now();
        node.connect(url).await.expect("the good peer links");
        times.push(t.elapsed());
        node.shutdown();
    }
    times.sort();
    times[n / 2]
}

#[test]
fn a_wrong_password_flood_from_one_address_backs_off_that_address_only() {
    let (mut c1, port) = Daemon::control("c1", &[]);
    let url = format!("nkcluster://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (idle, flooded, answered, refused, flood_for) = rt.block_on(async {
        let idle = handshake_time(&url, 5, "idle").await;
        // The flood: 16 connections at a time from 127.0.0.2, each guessing a password.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let (mut answered, mut refused) = (0u64, 0u64);
                let mut n = t << 32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    match guess([127, 0, 0, 2], port, n).await {
                        Some(true) => answered += 1,
                        Some(false) => refused += 1,
                        None => tokio::task::yield_now().await,
                    }
                }
                (answered, refused)
            }));
        }
        // Let the backoff set in, then measure the good peer during the flood.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let flooded = handshake_time(&url, 5, "flooded").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let flood_for = started.elapsed();
        let (mut answered, mut refused) = (0, 0);
        for t in tasks {
            let (a, r) = t.await.expect("flood task");
            answered += a;
            refused += r;
        }
        (idle, flooded, answered, refused, flood_for)
    });
    // A few lines for the whole flood, not one per connection.
    let lines = c1
        .lines()
        .iter()
        .filter(|l| l.contains("connection refused") && l.contains("127.0.0.2"))
        .count();
    let rate = answered as f64 / flood_for.as_secs_f64();
    eprintln!(
        "good peer handshake: idle {idle:?}, during the flood {flooded:?}; \
         flood: {answered} guesses answered, {refused} connections refused in {flood_for:?} \
         ({rate:.1} guesses/s); {lines} refusal lines about 127.0.0.2 in the log"
    );
    assert!(
        flooded <= idle * 2 + Duration::from_millis(50),
        "the flood slowed a good peer's handshake from {idle:?} to {flooded:?}"
    );
    assert!(
        rate < 10.0,
        "{answered} guesses answered in {flood_for:?}: the source did not back off"
    );
    assert!(
        lines <= 6,
        "{lines} refusal lines for the flood:\n{}",
        c1.log_text()
    );
    assert!(
        c1.lines()
            .iter()
            .any(|l| l.contains("connection refused") && has(l, "code", "auth_failed")),
        "{}",
        c1.log_text()
    );
    assert!(c1.is_running());
}
