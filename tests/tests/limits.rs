//! What peers cannot make a node do (issue 8): an unauthenticated peer gets a few KiB, not
//! the frame maximum; the excess of unauthenticated connections is refused at accept;
//! files land only below `files_dir`; two control nodes that dial each other keep one
//! link. Real processes (or in-process nodes) on loopback.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use nkcluster_tests::{Daemon, TempDir, has, nkcluster_bin, run_with_deadline};

/// Opens a TCP connection to `port` from the loopback address `source`.
async fn connect_from(source: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind((source, 0).into()).expect("bind the source address");
    s.connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn unauthenticated_peers_announcing_huge_frames_cost_almost_nothing() {
    // Refusal lines from one address are rate-limited: the left-out ones are debug lines.
    let mut c1 = Daemon::node_env(
        "c1",
        &[
            "--node-id",
            "c1",
            "--control",
            "true",
            "--listen",
            "nkcluster://127.0.0.1:0",
        ],
        &[("NKCLUSTER_LOG", nkcluster_tests::LOG_EVERY_REFUSAL)],
    );
    let port = c1.listen_port();
    let idle_kib = c1.rss_kib();
    // 200 connections, each announcing an 8 MiB frame and sending 1 MiB of it.
    runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![0x5au8; 64 * 1024];
        let mut held = Vec::new();
        for _ in 0..200 {
            let mut s = connect_from([127, 0, 0, 2], port).await;
            let _ = s.write_all(&(8u32 << 20).to_be_bytes()).await;
            for _ in 0..16 {
                if s.write_all(&chunk).await.is_err() {
                    break; // refused and closed: what we want
                }
            }
            held.push(s);
        }
        // Every one of them was refused on its header, before any body was buffered.
        c1.wait_count(0, 200, "200 refusals", |l: &str| {
            l.contains("connection refused") && has(l, "code", "frame_too_large")
        });
    });
    let grown_kib = c1.rss_kib().saturating_sub(idle_kib);
    assert!(
        grown_kib < 64 * 1024,
        "RSS grew by {grown_kib} KiB for 200 unauthenticated peers"
    );
    assert!(
        c1.lines().iter().any(|l| l.contains("maximum is 65536")),
        "the pre-authentication cap is 64 KiB"
    );
    // A good peer still joins.
    let mut w1 = Daemon::worker("w1", &format!("nkcluster://127.0.0.1:{port}"), &[]);
    w1.wait_line("w1 joins", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });
}

#[test]
fn unauthenticated_websocket_peers_announcing_huge_messages_cost_almost_nothing() {
    let mut c1 = Daemon::node_env(
        "c1",
        &[
            "--node-id",
            "c1",
            "--listen",
            "nkcluster://127.0.0.1:0;transport=ws",
        ],
        &[("NKCLUSTER_LOG", nkcluster_tests::LOG_EVERY_REFUSAL)],
    );
    let port = c1.listen_port();
    let idle_kib = c1.rss_kib();
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upgrade = "GET / HTTP/1.1\r\nHost: c1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Protocol: nkcluster\r\n\r\n";
        // A masked binary message announcing 8 MiB.
        let mut header = vec![0x82u8, 0x80 | 127];
        header.extend_from_slice(&(8u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        let chunk = vec![0x5au8; 64 * 1024];
        let mut held = Vec::new();
        for _ in 0..200 {
            let mut s = connect_from([127, 0, 0, 2], port).await;
            let _ = s.write_all(upgrade.as_bytes()).await;
            // The upgrade's answer first (a frame before it is junk to the server).
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !answer.ends_with(b"\r\n\r\n") {
                match s.read(&mut byte).await {
                    Ok(1) => answer.push(byte[0]),
                    _ => panic!("no upgrade answer: {}", String::from_utf8_lossy(&answer)),
                }
            }
            assert!(
                answer.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
            let _ = s.write_all(&header).await;
            for _ in 0..16 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            held.push(s);
        }
        // Refused on the budget, not after the handshake timeout.
        c1.wait_count(0, 200, "200 refusals", |l: &str| {
            l.contains("connection refused")
                && l.contains("sent more than it may before authenticating")
        });
    });
    let grown_kib = c1.rss_kib().saturating_sub(idle_kib);
    assert!(
        grown_kib < 64 * 1024,
        "RSS grew by {grown_kib} KiB for 200 unauthenticated websocket peers"
    );
    let url = format!("nkcluster://127.0.0.1:{port};transport=ws");
    let mut w1 = Daemon::worker("w1", &url, &[]);
    w1.wait_line("w1 joins", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });
}

#[test]
fn the_excess_of_unauthenticated_connections_is_refused_at_accept() {
    let (mut c1, port) = Daemon::control("c1", &["--max-handshakes-per-source", "8"]);
    runtime().block_on(async {
        use tokio::io::AsyncReadExt;
        let mut silent = Vec::new();
        for _ in 0..20 {
            silent.push(connect_from([127, 0, 0, 2], port).await);
        }
        c1.wait_line("refusal at accept", |l| {
            l.contains("connection refused at accept") && has(l, "code", "too_many_handshakes")
        });
        // The refused ones are closed at once: the last connection reads its end.
        let mut last = silent.pop().expect("a connection");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), last.read(&mut buf))
            .await
            .expect("closed by the node")
            .unwrap_or(0);
        assert_eq!(n, 0, "refused without a byte");
        // Another source address is not affected: a worker joins while they are held.
        let mut w1 = Daemon::worker("w1", &format!("nkcluster://127.0.0.1:{port}"), &[]);
        w1.wait_line("w1 joins", |l| {
            l.contains("link up") && has(l, "peer", "c1")
        });
        drop(silent);
    });
}

fn admin(port: u16, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args)
        .args(["--addr", &format!("nkcluster://127.0.0.1:{port}")]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

#[test]
fn files_land_only_below_files_dir() {
    let dir = TempDir::new("files-dir");
    let files = dir.path().join("files");
    let (mut c1, port) = Daemon::control("c1", &[]);
    let files_arg = files.display().to_string();
    let mut w1 = Daemon::worker(
        "w1",
        &format!("nkcluster://127.0.0.1:{port}"),
        &["--files-dir", &files_arg],
    );
    w1.wait_line("w1 linked", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });
    c1.wait_line("c1 holds w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
    let local = dir.path().join("in.bin");
    std::fs::File::create(&local)
        .and_then(|mut f| f.write_all(&[7u8; 5000]))
        .expect("write");
    let local = local.display().to_string();
    // A relative path lands below files_dir (directories made), logged with sender
    // and size.
    let out = admin(port, &["send-file", "w1", &local, "sub/a.bin"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(files.join("sub/a.bin"))
            .expect("arrived")
            .len(),
        5000
    );
    w1.wait_line("the receipt is logged", |l| {
        l.contains("received a file") && has(l, "bytes", "5000") && field_is(l, "from")
    });
    // Absolute paths outside it, and `..` escapes, are refused.
    let outside = dir.path().join("outside.bin").display().to_string();
    for remote in [outside.as_str(), "../escape.bin", "sub/../../escape.bin"] {
        let out = admin(port, &["send-file", "w1", &local, remote]);
        assert_eq!(out.status.code(), Some(1), "{remote}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("forbidden_path"), "{remote}: {err}");
        assert!(!err.contains("forbidden_path: forbidden_path"), "{err}");
    }
    assert!(!dir.path().join("outside.bin").exists());
    assert!(!dir.path().join("escape.bin").exists());
    w1.wait_line("a refusal is logged", |l| {
        l.contains("refused a file") && has(l, "code", "forbidden_path")
    });
    // A local file that does not exist is reported as local.
    let out = admin(port, &["send-file", "w1", "/nonexistent/x.bin", "x.bin"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read local file /nonexistent/x.bin"),
        "{out:?}"
    );
}

fn field_is(line: &str, key: &str) -> bool {
    nkcluster_tests::field(line, key).is_some_and(|v| !v.is_empty())
}

#[test]
fn two_control_nodes_that_dial_each_other_keep_one_link() {
    use nkcluster::node::NodeEvent;
    use nkcluster_core::url::Transport;
    use nkcluster_tests::inproc::{config, start, url_of};

    runtime().block_on(async {
        let a = start(config("ca", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
        let b = start(config("cb", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
        let mut events = a.subscribe();
        let (url_a, url_b) = (url_of(&a, Transport::Tcp), url_of(&b, Transport::Tcp));
        let (ra, rb) = tokio::join!(a.connect(&url_b), b.connect(&url_a));
        // Each side may also have found the other's link first: both dials succeed.
        ra.expect("a reaches b");
        rb.expect("b reaches a");
        let links = |n: &nkcluster_tests::inproc::TestNode, peer: &str| {
            n.peers().into_iter().filter(|p| p.node_id == peer).count()
        };
        // Both ends keep the link ca dialed (the smaller id); the other closes once idle.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while links(&a, "cb") != 1 || links(&b, "ca") != 1 {
            let e = tokio::time::timeout_at(deadline, events.recv()).await;
            assert!(
                e.is_ok(),
                "still {} and {} links",
                links(&a, "cb"),
                links(&b, "ca")
            );
        }
        let kept = a
            .peers()
            .into_iter()
            .find(|p| p.node_id == "cb")
            .expect("link");
        assert!(kept.dialer, "ca keeps the link it dialed: {kept:?}");
        // The duplicate is gone at the socket level too.
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(NodeEvent::LinkDown { peer, .. })) if peer == "cb" => break,
                Ok(_) => {}
                Err(_) => panic!("the duplicate link never closed"),
            }
        }
        assert_eq!(links(&a, "cb"), 1, "the kept link stays");
        a.shutdown();
        b.shutdown();
    });
}
