//! Link liveness between real processes: a frozen peer is declared dead by the idle
//! timeout and relinks when it thaws; a crashed control is noticed and a worker relinks
//! to its replacement on the same port.

use std::time::Instant;

use nkcluster_tests::{Daemon, field, has};

/// Fast liveness so the tests take seconds: pings every 200 ms, dead after 1 s of silence.
const FAST: [&str; 4] = ["--ping-interval-ms", "200", "--idle-timeout-ms", "1000"];

fn link_up(peer: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("link up") && has(l, "peer", peer)
}

fn link_down(peer: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("link down") && has(l, "peer", peer)
}

fn worker_args() -> Vec<&'static str> {
    FAST.to_vec()
}

#[test]
fn frozen_worker_times_out_and_relinks_when_it_thaws() {
    let (mut control, port) = Daemon::control("c1", &FAST);
    let mut worker = Daemon::worker(
        "w1",
        &format!("nkcluster://127.0.0.1:{port}"),
        &worker_args(),
    );
    control.wait_line("link up with w1", link_up("w1"));
    worker.wait_line("link up with c1", link_up("c1"));

    // Freeze the worker: it neither pings nor answers pings.
    let control_mark = control.mark();
    let frozen_at = Instant::now();
    worker.signal("STOP");
    let line = control.wait_line_after(
        control_mark,
        "link down with w1 (idle timeout)",
        link_down("w1"),
    );
    let noticed_after = frozen_at.elapsed();
    assert_eq!(field(&line, "code"), Some("idle_timeout"), "{line}");
    eprintln!("control noticed the frozen worker after {noticed_after:?}");

    // Thaw it: it finds its link dead too, reconnects, and the control sees a new link.
    let worker_mark = worker.mark();
    let control_mark = control.mark();
    worker.signal("CONT");
    let line = worker.wait_line_after(worker_mark, "link down with c1", link_down("c1"));
    let code = field(&line, "code").unwrap_or_default();
    assert!(
        ["idle_timeout", "peer_closed", "transport_closed"].contains(&code),
        "{line}"
    );
    worker.wait_line_after(worker_mark, "a new link up with c1", link_up("c1"));
    control.wait_line_after(control_mark, "a new link up with w1", link_up("w1"));
    assert!(control.is_running() && worker.is_running());
}

#[test]
fn worker_survives_a_control_crash_and_relinks_to_its_replacement() {
    let (mut control, port) = Daemon::control("c1", &FAST);
    let mut worker = Daemon::worker(
        "w1",
        &format!("nkcluster://127.0.0.1:{port}"),
        &worker_args(),
    );
    control.wait_line("link up with w1", link_up("w1"));
    worker.wait_line("link up with c1", link_up("c1"));

    // kill -9: no close message, the kernel just drops the sockets.
    let worker_mark = worker.mark();
    control.kill();
    drop(control);
    let line = worker.wait_line_after(worker_mark, "link down with c1", link_down("c1"));
    let code = field(&line, "code").unwrap_or_default();
    assert!(
        ["transport_closed", "idle_timeout"].contains(&code),
        "{line}"
    );
    // It keeps trying (and failing: nobody listens) instead of exiting.
    let failures = worker.wait_count(worker_mark, 2, "two failed reconnects", |l| {
        l.contains("connect failed")
    });
    assert!(
        failures
            .iter()
            .all(|l| l.contains(&format!("127.0.0.1:{port}"))),
        "{failures:?}"
    );
    assert!(worker.is_running(), "the worker must keep retrying");

    // A new control on the same port: the worker links to it.
    let worker_mark = worker.mark();
    let listen = format!("nkcluster://127.0.0.1:{port}");
    let mut args = vec!["--node-id", "c1", "--listen", listen.as_str()];
    args.extend_from_slice(&FAST);
    let mut control = Daemon::node("c1-restarted", &args);
    assert_eq!(control.listen_port(), port);
    control.wait_line("link up with w1", link_up("w1"));
    worker.wait_line_after(worker_mark, "link up with the new c1", link_up("c1"));
}
