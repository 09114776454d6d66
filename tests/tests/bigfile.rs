//! Big files (issue 13 point 4, the original's `send_bigfile`) between in-process nodes
//! over real loopback sockets: a file above the threshold goes over an exclusive
//! connection to a worker that listens and over the main link to one that does not;
//! a big file interrupted mid-way (its path cut under it) resumes where it stopped.
//!
//! The interrupted file is 1 GiB (issue 13 point 5); `NKCLUSTER_BIGFILE_MB` sets another
//! size (say 64 for a quick run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nkcluster::net::TokioNet;
use nkcluster::node::{Node, NodeEvent, SendFileOptions};
use nkcluster_core::file_send::{BIG_FILE, Retry};
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{Relay, TestNode, config, port_of, start, url_of, wait_event};
use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{DEADLINE, TempDir, XorShift};
use sha2::Digest;

const MIB: u64 = 1024 * 1024;

/// Writes `size` bytes of a pattern (1 MiB of pseudo-random bytes, each MiB stamped with
/// its index so no two are alike) and returns its SHA-256.
fn write_pattern(path: &std::path::Path, size: u64) -> [u8; 32] {
    use std::io::Write;
    let block = XorShift::new(13).bytes(MIB as usize);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut hash = sha2::Sha256::new();
    let mut left = size;
    let mut i = 0u64;
    let mut buf = block.clone();
    while left > 0 {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let n = left.min(MIB) as usize;
        f.write_all(&buf[..n]).expect("write");
        hash.update(&buf[..n]);
        left -= n as u64;
        i += 1;
    }
    f.flush().expect("flush");
    hash.finalize().into()
}

fn sha_of(path: &std::path::Path) -> [u8; 32] {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("open the received file");
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return hash.finalize().into();
        }
        hash.update(&buf[..n]);
    }
}

fn opts(retry: Retry) -> SendFileOptions {
    SendFileOptions {
        timeout: Duration::from_secs(30),
        retry,
    }
}

/// Waits until `node` lists `peer` among its links.
async fn linked(node: &TestNode, peer: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while !node.peers().iter().any(|p| p.node_id == peer) {
        assert!(
            tokio::time::Instant::now() < until,
            "{peer} did not link to {} within {DEADLINE:?}",
            node.node_id()
        );
        tick.tick().await;
    }
}

/// Waits for the exclusive connection c1 dialed to w1 to close, and checks it was one:
/// one link up from c1 not dialed by w1, before that link's end.
async fn one_exclusive_link(rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>) {
    let ups = std::cell::Cell::new(0);
    wait_event(rx, "w1: c1's exclusive connection closes", |e| {
        if matches!(e, NodeEvent::LinkUp { peer, dialer: false, .. } if peer == "c1") {
            ups.set(ups.get() + 1);
        }
        matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "c1")
    })
    .await;
    assert_eq!(ups.get(), 1, "the file took one exclusive connection");
}

/// c1 sends a big file to w1 (listening: an exclusive connection, a second link at w1)
/// and to w2 (not listening: the main link); an admin client's big file routed through
/// c1 to w1 goes over an exclusive connection that c1 opens, to w2 over the main links;
/// a file at the threshold goes over the main link. All arrive intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_file_goes_over_an_exclusive_connection_when_the_worker_listens() {
    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let at_c1 = url_of(&c1, Transport::Tcp);
    let mut w = config("w1", false, "nkcluster://127.0.0.1:0;transport=tcp");
    w.cluster_addr = nkcluster_core::url::parse_url_list(&at_c1).expect("url");
    let w1 = start(w).await;
    let mut w = config("w2", false, "");
    w.cluster_addr = nkcluster_core::url::parse_url_list(&at_c1).expect("url");
    let w2 = start(w).await;
    linked(&c1, "w1").await;
    linked(&c1, "w2").await;
    let mut w1_events = w1.subscribe();

    let dir = TempDir::new("bigfile-exclusive");
    let big = dir.path().join("big.bin");
    let size = BIG_FILE + MIB + 17;
    let sha = write_pattern(&big, size);
    let to = dir.path().join("at-w1.bin");
    let r = c1
        .send_file_with(
            "w1",
            &big,
            &to.display().to_string(),
            opts(Retry::NONE),
            |_, _| {},
        )
        .await
        .expect("sent to w1");
    assert!(r.exclusive, "{r:?}");
    assert_eq!((r.total, r.sent, r.resumed_from), (size, size, 0), "{r:?}");
    assert_eq!(sha_of(&to), sha);
    // w1 saw c1 dial it once: the exclusive connection (its main link is its own dial),
    // closed after the file.
    one_exclusive_link(&mut w1_events).await;

    // From an admin client, which reaches w1 through c1: c1 opens the exclusive
    // connection for the file's parts (a new link from c1 at w1, closed after).
    let mut a = config("admin-1", false, "");
    a.admin = true;
    let admin = start(a).await;
    admin.connect(&at_c1).await.expect("admin links to c1");
    let to = dir.path().join("routed-at-w1.bin");
    let r = admin
        .send_file_with(
            "w1",
            &big,
            &to.display().to_string(),
            opts(Retry::NONE),
            |_, _| {},
        )
        .await
        .expect("routed to w1");
    assert_eq!((r.total, r.sent, r.exclusive), (size, size, false), "{r:?}");
    assert_eq!(sha_of(&to), sha);
    one_exclusive_link(&mut w1_events).await;
    // Routed to w2, which does not listen: the main links.
    let to = dir.path().join("routed-at-w2.bin");
    admin
        .send_file_with(
            "w2",
            &big,
            &to.display().to_string(),
            opts(Retry::NONE),
            |_, _| {},
        )
        .await
        .expect("routed to w2");
    assert_eq!(sha_of(&to), sha);
    admin.shutdown();

    // w2 does not listen: the main link.
    let to = dir.path().join("at-w2.bin");
    let r = c1
        .send_file_with(
            "w2",
            &big,
            &to.display().to_string(),
            opts(Retry::NONE),
            |_, _| {},
        )
        .await
        .expect("sent to w2");
    assert!(!r.exclusive, "{r:?}");
    assert_eq!(sha_of(&to), sha);
    // A file at the threshold is not big: the main link, even to w1.
    let small = dir.path().join("small.bin");
    let sha = write_pattern(&small, BIG_FILE);
    let to = dir.path().join("small-at-w1.bin");
    let r = c1
        .send_file_with(
            "w1",
            &small,
            &to.display().to_string(),
            opts(Retry::NONE),
            |_, _| {},
        )
        .await
        .expect("sent");
    assert!(!r.exclusive, "{r:?}");
    assert_eq!(sha_of(&to), sha);
    w1.shutdown();
    w2.shutdown();
    c1.shutdown();
}

/// A big file (1 GiB) from c1 to w1, whose path to c1 is cut once half of the file is
/// confirmed: the transfer fails; once w1 is back (through another path), the same send
/// asks w1 where it is at and sends only the rest: less than 60% of the file, and the
/// file that appears has the right SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_big_file_resumes_from_where_it_stopped() {
    let size = std::env::var("NKCLUSTER_BIGFILE_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024)
        * MIB;
    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let spare = nkcluster_tests::free_port();
    // w1 does not listen (the main link carries the file, through the relay) and knows
    // a second path where nothing listens until the relay is cut.
    let mut w = config("w1", false, "");
    w.cluster_addr = nkcluster_core::url::parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp, nkcluster://127.0.0.1:{spare};transport=tcp",
        relay.addr().port(),
    ))
    .expect("url");
    w.backoff.initial = Duration::from_millis(50);
    let w1: Node<TokioNet> = start(w).await;
    linked(&c1, "w1").await;

    let dir = TempDir::new("bigfile-resume");
    let local = dir.path().join("big.bin");
    let t = Instant::now();
    let sha = write_pattern(&local, size);
    eprintln!("wrote {} MiB in {:?}", size / MIB, t.elapsed());
    let remote = dir.path().join("at-w1.bin");
    let remote_s = remote.display().to_string();

    // First attempt: the path is cut once half is confirmed.
    let confirmed = AtomicU64::new(0);
    let t = Instant::now();
    let r = c1
        .send_file_with("w1", &local, &remote_s, opts(Retry::NONE), |upto, total| {
            confirmed.store(upto, Ordering::Relaxed);
            if upto >= total / 2 {
                relay.cut();
            }
        })
        .await;
    let first = t.elapsed();
    let confirmed = confirmed.load(Ordering::Relaxed);
    match r {
        Err(e) => assert!(
            ["connection_failed", "not_connected", "timeout"].contains(&e.code()),
            "{e:?}"
        ),
        Ok(r) => panic!("the cut did not interrupt the transfer: {r:?}"),
    }
    assert!(confirmed >= size / 2 && confirmed < size, "{confirmed}");
    assert!(!remote.exists(), "a partial file appeared in place");

    // w1 comes back through the second path; the same send resumes.
    let _path2 = Relay::start_at(spare, target).await;
    linked(&c1, "w1").await;
    let t = Instant::now();
    let r = c1
        .send_file_with("w1", &local, &remote_s, opts(Retry::default()), |_, _| {})
        .await
        .expect("resumed");
    let second = t.elapsed();
    eprintln!(
        "{} MiB: first attempt {first:?} (cut at {} MiB confirmed), resume {second:?} from {} MiB, sent {} MiB ({:.1}%)",
        size / MIB,
        confirmed / MIB,
        r.resumed_from / MIB,
        r.sent / MIB,
        r.sent as f64 * 100.0 / size as f64
    );
    assert!(
        r.resumed_from >= confirmed,
        "{r:?}, {confirmed} were confirmed"
    );
    assert!(
        r.sent * 10 < size * 6,
        "the resume sent {} of {size} bytes: not less than 60%",
        r.sent
    );
    assert_eq!(r.sent, size - r.resumed_from, "{r:?}");
    assert_eq!(sha_of(&remote), sha, "the resumed file differs");
    assert!(!std::path::Path::new(&format!("{remote_s}.part")).exists());
    w1.shutdown();
    c1.shutdown();
}

/// The same cut, with retries: the one call tries again by itself once w1 is back, asks
/// where the transfer is at and sends the rest only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transfer_is_tried_again_and_resumes_by_itself() {
    let size = 64 * MIB;
    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let spare = nkcluster_tests::free_port();
    let mut w = config("w1", false, "");
    w.cluster_addr = nkcluster_core::url::parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp, nkcluster://127.0.0.1:{spare};transport=tcp",
        relay.addr().port(),
    ))
    .expect("url");
    w.backoff.initial = Duration::from_millis(50);
    let w1 = start(w).await;
    linked(&c1, "w1").await;
    let dir = TempDir::new("bigfile-retry");
    let local = dir.path().join("big.bin");
    let sha = write_pattern(&local, size);
    let remote = dir.path().join("at-w1.bin");
    // At half, the path is cut and a second one opens (a task: the callback is sync).
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(async move {
        if cut_rx.await.is_ok() {
            Some(Relay::start_at(spare, target).await)
        } else {
            None
        }
    });
    let mut cut = Some(cut_tx);
    let r = c1
        .send_file_with(
            "w1",
            &local,
            &remote.display().to_string(),
            opts(Retry::default()),
            |upto, total| {
                if upto >= total / 2
                    && let Some(tx) = cut.take()
                {
                    relay.cut();
                    let _ = tx.send(());
                }
            },
        )
        .await
        .expect("sent after retries");
    eprintln!("{r:?}");
    assert!(r.attempts >= 2, "{r:?}");
    assert!(r.resumed_from >= size / 2, "{r:?}");
    assert_eq!(r.last_sent, size - r.resumed_from, "{r:?}");
    assert!(r.last_sent * 10 < size * 6, "{r:?}");
    assert_eq!(sha_of(&remote), sha);
    drop(second);
    w1.shutdown();
    c1.shutdown();
}

/// The CLI against real daemons: `nkcluster send-file` of a big file to a listening
/// worker, through its control node (which carries it over an exclusive connection), is
/// killed once half of it is written; the same command again resumes (less than 60% sent again, `--json`
/// says where it resumed) and the file arrives intact.
#[test]
fn killing_the_sending_cli_mid_way_then_sending_again_resumes() {
    use nkcluster_tests::{Daemon, has, run_with_deadline};
    let size = 256 * MIB;
    let dir = TempDir::new("bigfile-cli");
    let files = dir.path().join("files");
    let files_arg = files.display().to_string();
    let (mut c1, port) = Daemon::control("c1", &[]);
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut w1 = Daemon::node(
        "w1",
        &[
            "--node-id",
            "w1",
            "--control",
            "false",
            "--listen",
            "nkcluster://127.0.0.1:0",
            "--cluster-addr",
            &addr,
            "--files-dir",
            &files_arg,
        ],
    );
    c1.wait_line("c1 holds w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
    let local = dir.path().join("big.bin");
    let sha = write_pattern(&local, size);
    let local_s = local.display().to_string();
    let part = files.join("big.bin.part");
    let send_args = [
        "send-file",
        "--addr",
        &addr,
        "w1",
        &local_s,
        "big.bin",
        "--json",
    ];

    // The sending process dies once half of the file is written at w1 (polled).
    let mut cli = Daemon::spawn("send-file", &send_args, &[]);
    poll_until(
        "the transfer reaches 50%",
        DEADLINE,
        Duration::from_millis(5),
        || {
            let written = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            assert!(
                written >= size / 2 || cli.is_running(),
                "send-file ended before 50%: {written} bytes written; {}",
                cli.log_text()
            );
            if written >= size / 2 {
                Ok(())
            } else {
                Err(format!("{written} bytes written; {}", cli.log_text()))
            }
        },
    );
    cli.kill();
    c1.wait_line("c1 carried it over an exclusive connection", |l| {
        l.contains("a routed big file goes over an exclusive connection") && has(l, "to", "w1")
    });

    // The same command again: it resumes.
    let mut cmd = std::process::Command::new(nkcluster_tests::nkcluster_bin());
    cmd.args(send_args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    let out = run_with_deadline(&mut cmd, DEADLINE);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("send-file --json prints JSON");
    let sent = report["sent"].as_u64().expect("sent");
    let from = report["resumed_from"].as_u64().expect("resumed_from");
    eprintln!(
        "CLI: resumed at {} MiB, sent {} MiB of {} MiB",
        from / MIB,
        sent / MIB,
        size / MIB
    );
    assert!(from >= size / 2, "{report}");
    assert!(sent * 10 < size * 6, "{report}");
    assert_eq!(sha_of(&files.join("big.bin")), sha);
    w1.wait_line("w1 logs the resume", |l| {
        l.contains("a file transfer resumes") && has(l, "path", "big.bin")
    });
}
