//! Hostile bytes on a real listener: every bad connection is closed with a typed code in
//! the log, memory stays flat, and the daemon keeps serving good peers afterwards.

use std::time::Duration;

use nkcluster_core::frame::MAX_FRAME_DEFAULT;
use nkcluster_core::message::Message;
use nkcluster_tests::{Daemon, LOG_EVERY_REFUSAL, XorShift, field, has, send_raw};

const MIB: usize = 1024 * 1024;
/// How long one hostile connection may stay open before the test fails.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);
/// Rounds of the three hostile connections.
const ROUNDS: u64 = 20;

/// 1 MiB whose first four bytes announce a 100-byte frame, then random bytes: the frame
/// layer accepts the header, so the 100 random bytes reach the message decoder.
fn plausible_header_then_garbage(seed: u64) -> Vec<u8> {
    let mut v = XorShift::new(seed).bytes(MIB);
    v[..4].copy_from_slice(&100u32.to_be_bytes());
    v
}

/// 1 MiB of random bytes, header included.
fn all_garbage(seed: u64) -> Vec<u8> {
    XorShift::new(seed).bytes(MIB)
}

/// A header claiming 4 GiB - 1, then 64 KiB.
fn huge_claim(seed: u64) -> Vec<u8> {
    let mut v = vec![0xff, 0xff, 0xff, 0xff];
    v.extend(XorShift::new(seed).bytes(64 * 1024));
    v
}

/// The error code the daemon must log for a stream of bytes it refuses. We shut our
/// write side after sending, so a frame that is merely incomplete ends with our EOF.
fn expected_code(data: &[u8]) -> &'static str {
    let claimed = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    if claimed > MAX_FRAME_DEFAULT {
        return "frame_too_large";
    }
    let end = 4 + claimed as usize;
    if end > data.len() {
        return "transport_closed";
    }
    match Message::decode(&data[4..end]) {
        Err(_) => "malformed_message",
        // A random body that happens to decode would make this seed useless here.
        Ok(m) => panic!("test input decodes as a {}: pick another seed", m.kind()),
    }
}

/// Sends `data` on a fresh connection, checks the daemon closed it, and waits for its
/// `connection refused` line for our address with the expected code.
fn refuse(control: &mut Daemon, port: u16, data: &[u8], what: &str) -> String {
    let code = expected_code(data);
    let out = send_raw(port, data, CLOSE_WITHIN);
    let remote = format!("tcp:{}", out.local);
    control.wait_line_after(
        0,
        &format!("refusal of the {what} connection from {remote} with code={code}"),
        |l| l.contains("connection refused") && has(l, "remote", &remote) && has(l, "code", code),
    )
}

fn status_kib(d: &Daemon, key: &str) -> u64 {
    let path = format!("/proc/{}/status", d.pid());
    let status = std::fs::read_to_string(&path).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {path}"))
}

#[test]
fn hostile_bytes_are_refused_without_buffering_and_the_daemon_keeps_serving() {
    let (mut control, port) =
        Daemon::control_env("c1", &[], &[("NKCLUSTER_LOG", LOG_EVERY_REFUSAL)]);
    let rss_start = control.rss_kib();
    let vm_peak_start = status_kib(&control, "VmPeak:");

    // (a) a plausible header then garbage: the body reaches the message decoder.
    let line = refuse(
        &mut control,
        port,
        &plausible_header_then_garbage(1),
        "plausible-header",
    );
    assert_eq!(field(&line, "code"), Some("malformed_message"), "{line}");
    assert_eq!(field(&line, "claimed_peer"), Some("?"), "{line}");
    // (a') fully random bytes: with this seed the header claims more than the maximum.
    let line = refuse(&mut control, port, &all_garbage(2), "all-garbage");
    assert_eq!(field(&line, "code"), Some("frame_too_large"), "{line}");
    // (b) a header claiming 4 GiB.
    let line = refuse(&mut control, port, &huge_claim(3), "4-GiB-claim");
    assert_eq!(field(&line, "code"), Some("frame_too_large"), "{line}");
    assert!(
        line.contains("4294967295"),
        "the log names the claim: {line}"
    );

    // (c) many more rounds; memory must stay flat.
    for round in 1..=ROUNDS {
        let seed = 1000 * round;
        refuse(
            &mut control,
            port,
            &plausible_header_then_garbage(seed),
            "plausible-header",
        );
        refuse(&mut control, port, &all_garbage(seed + 1), "all-garbage");
        refuse(&mut control, port, &huge_claim(seed + 2), "4-GiB-claim");
    }
    let rss_end = control.rss_kib();
    let vm_peak_end = status_kib(&control, "VmPeak:");
    eprintln!(
        "rss: {rss_start} KiB after listening, {rss_end} KiB after {} hostile connections \
         ({} MiB sent); VmPeak {vm_peak_start} -> {vm_peak_end} KiB",
        3 * (ROUNDS + 1),
        (ROUNDS + 1) * 2 + 1
    );
    // We sent about 2 MiB per round (42 MiB in all) and claimed 4 GiB per round. A daemon
    // that kept what arrived, or reserved and touched what was claimed, would grow by
    // tens of MiB at least; an honest one reads at most a few hundred KiB per connection,
    // frees it at close, and only keeps allocator caches. 8 MiB leaves room for those
    // caches (and per-thread malloc arenas) while catching any per-connection retention
    // above ~200 KiB.
    assert!(
        rss_end < rss_start + 8 * 1024,
        "resident memory grew from {rss_start} KiB to {rss_end} KiB"
    );
    // Claims are never reserved either, even without touching the pages: the 4 GiB
    // claims would show in the peak virtual size. Runtime threads and malloc arenas
    // account for a few hundred MiB at most.
    assert!(
        vm_peak_end < vm_peak_start + 1024 * 1024,
        "peak virtual size grew from {vm_peak_start} KiB to {vm_peak_end} KiB"
    );

    // (d) a real worker still links.
    let mut worker = Daemon::worker("w1", &format!("nkcluster://127.0.0.1:{port}"), &[]);
    let line = control.wait_line("link up with w1", |l| {
        l.contains("link up") && has(l, "peer", "w1")
    });
    assert!(has(&line, "role", "worker"), "{line}");
    let line = worker.wait_line("link up with c1", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });
    assert!(has(&line, "role", "control"), "{line}");
    assert!(control.is_running(), "the control must still be running");
}

/// A well-formed hello whose node id is too long and not ASCII: the listener must refuse
/// it with `protocol_error` (and name what the peer claimed), never panic.
/// (Regression: the claimed id used to be truncated mid-character, which panicked.)
#[test]
fn overlong_non_ascii_node_id_in_hello_is_refused() {
    use nkcluster_core::handshake::Role;
    use nkcluster_core::message::{Hello, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};

    let (mut control, port) = Daemon::control("c1", &[]);
    // 200 two-byte characters: 400 bytes, so byte 255 falls inside a character.
    let hello = Message::Hello(Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION,
        cluster: "nkcluster".into(),
        node_id: "é".repeat(200),
        instance: 1,
        role: Role::Worker,
        listen: Vec::new(),
        meta: String::new(),
        nonce: [7; 32],
        partitions: 0,
    })
    .encode_body();
    let mut data = u32::try_from(hello.len())
        .expect("small hello")
        .to_be_bytes()
        .to_vec();
    data.extend_from_slice(&hello);
    let out = send_raw(port, &data, CLOSE_WITHIN);
    let remote = format!("tcp:{}", out.local);
    // Either the refusal, or the panic message (then fail at once instead of waiting).
    let line = control.wait_line(
        &format!("refusal of {remote} with code=protocol_error"),
        |l| {
            (l.contains("connection refused") && has(l, "remote", &remote))
                || l.contains("panicked")
        },
    );
    assert!(
        !line.contains("panicked"),
        "the daemon panicked on a hello: {line}"
    );
    assert_eq!(field(&line, "code"), Some("protocol_error"), "{line}");
    let claimed = field(&line, "claimed_peer").unwrap_or_default();
    assert!(claimed.starts_with("éé"), "{line}");
    assert!(control.is_running());
}
