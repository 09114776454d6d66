//! Handshake tests: exact outcomes of every path, role secrets included.

use super::*;
use proptest::prelude::*;

fn ident(id: &str, cluster: &str, role: Role) -> Identity {
    Identity {
        cluster: cluster.into(),
        node_id: id.into(),
        instance: 7,
        role,
        listen: vec!["nkcluster://127.0.0.1:1972;transport=tcp".into()],
        meta: "core;group=g1".into(),
        partitions: 64,
    }
}

fn pair(
    pw_d: &str,
    pw_l: &str,
    cl_d: &str,
    cl_l: &str,
    binding: (&[u8], &[u8]),
) -> (Handshake, Handshake) {
    let t0 = Instant::ZERO;
    let d = Handshake::new(
        Side::Dialer,
        &ident("w1", cl_d, Role::Worker),
        Key::derive(pw_d, cl_d, 2),
        [1; 32],
        binding.0,
        HandshakeConfig::default(),
        t0,
    );
    let l = Handshake::new(
        Side::Listener,
        &ident("c1", cl_l, Role::Control),
        Key::derive(pw_l, cl_l, 2),
        [2; 32],
        binding.1,
        HandshakeConfig::default(),
        t0,
    );
    (d, l)
}

/// Shuttles messages until both sides are quiet; returns the messages kinds exchanged.
fn run(d: &mut Handshake, l: &mut Handshake, now: Instant) -> Vec<String> {
    let mut log = Vec::new();
    loop {
        let mut moved = false;
        while let Some(b) = d.poll_transmit() {
            let m = Message::decode(&b).expect("valid");
            log.push(format!("d>{}", m.kind()));
            l.handle_message(now, &b, m);
            moved = true;
        }
        while let Some(b) = l.poll_transmit() {
            let m = Message::decode(&b).expect("valid");
            log.push(format!("l>{}", m.kind()));
            d.handle_message(now, &b, m);
            moved = true;
        }
        if !moved {
            return log;
        }
    }
}

#[test]
fn equal_passwords_authenticate_both_ways() {
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let log = run(&mut d, &mut l, Instant::ZERO);
    assert_eq!(log, ["d>hello", "l>hello", "d>proof", "l>proof"]);
    match d.poll_outcome() {
        Some(Outcome::Authenticated(p)) => {
            assert_eq!(p.node_id, "c1");
            assert_eq!(p.role, Role::Control);
            assert_eq!(p.version, PROTOCOL_VERSION);
        }
        o => panic!("dialer: {o:?}"),
    }
    match l.poll_outcome() {
        Some(Outcome::Authenticated(p)) => {
            assert_eq!(p.node_id, "w1");
            assert_eq!(p.meta, "core;group=g1");
        }
        o => panic!("listener: {o:?}"),
    }
    assert!(d.is_finished() && l.is_finished());
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn wrong_password_is_rejected_after_the_delay() {
    let (mut d, mut l) = pair("bad", "pw", "c", "c", (b"", b""));
    let log = run(&mut d, &mut l, Instant::ZERO);
    assert_eq!(log, ["d>hello", "l>hello", "d>proof"]);
    assert_eq!(l.poll_outcome(), None);
    let at = Instant::ZERO + Duration::from_millis(500);
    assert_eq!(l.poll_timeout(), Some(at));
    l.handle_timeout(Instant::from_millis(499));
    assert_eq!(l.poll_transmit(), None);
    l.handle_timeout(at);
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::AuthFailed))
    );
    let b = l.poll_transmit().expect("reject");
    let m = Message::decode(&b).expect("valid");
    d.handle_message(at, &b, m);
    match d.poll_outcome() {
        Some(Outcome::Failed(HandshakeError::Rejected { reason, .. })) => {
            assert_eq!(reason, RejectReason::AuthFailed)
        }
        o => panic!("dialer: {o:?}"),
    }
}

#[test]
fn cluster_mismatch_is_rejected_at_once() {
    let (mut d, mut l) = pair("pw", "pw", "a", "b", (b"", b""));
    let log = run(&mut d, &mut l, Instant::ZERO);
    assert_eq!(log, ["d>hello", "l>reject"]);
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::ClusterMismatch {
            ours: "b".into(),
            theirs: "a".into()
        }))
    );
    // The dialer names its own cluster as ours, the listener's as the peer's.
    let dialer = d.poll_outcome();
    assert_eq!(
        dialer,
        Some(Outcome::Failed(HandshakeError::ClusterMismatch {
            ours: "a".into(),
            theirs: "b".into()
        }))
    );
    let Some(Outcome::Failed(e)) = dialer else {
        unreachable!()
    };
    assert_eq!(
        e.to_string(),
        "cluster_mismatch: we are in cluster \"a\", the peer in \"b\""
    );
}

fn control_pair(partitions_d: u32, partitions_l: u32, role_d: Role) -> (Handshake, Handshake) {
    let id = |id: &str, role: Role, partitions: u32| Identity {
        partitions,
        ..ident(id, "c", role)
    };
    let hs = |side, ident: &Identity, nonce| {
        Handshake::new(
            side,
            ident,
            Key::derive("pw", "c", 2),
            nonce,
            b"",
            HandshakeConfig::default(),
            Instant::ZERO,
        )
    };
    (
        hs(Side::Dialer, &id("c2", role_d, partitions_d), [1; 32]),
        hs(
            Side::Listener,
            &id("c1", Role::Control, partitions_l),
            [2; 32],
        ),
    )
}

#[test]
fn control_nodes_with_different_partitions_refuse_each_other_naming_both_values() {
    let (mut d, mut l) = control_pair(128, 64, Role::Control);
    let log = run(&mut d, &mut l, Instant::ZERO);
    assert_eq!(log, ["d>hello", "l>reject"]);
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::PartitionMismatch {
            ours: 64,
            theirs: 128
        }))
    );
    assert_eq!(
        d.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::PartitionMismatch {
            ours: 128,
            theirs: 64
        }))
    );
}

#[test]
fn partitions_only_matter_between_control_nodes() {
    // A worker announces whatever it likes (0): the control node accepts it.
    let (mut d, mut l) = control_pair(0, 64, Role::Worker);
    let log = run(&mut d, &mut l, Instant::ZERO);
    assert_eq!(log, ["d>hello", "l>hello", "d>proof", "l>proof"]);
    assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(_))));
    assert!(matches!(l.poll_outcome(), Some(Outcome::Authenticated(_))));
    // Equal counts link.
    let (mut d, mut l) = control_pair(64, 64, Role::Control);
    run(&mut d, &mut l, Instant::ZERO);
    assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(_))));
}

#[test]
fn differing_channel_bindings_fail_like_a_wrong_password() {
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"tls-a", b"tls-b"));
    run(&mut d, &mut l, Instant::ZERO);
    l.handle_timeout(Instant::from_millis(500));
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::AuthFailed))
    );
}

#[test]
fn replayed_dialer_proof_fails() {
    // Record a good run, then replay the dialer's messages to a fresh listener that
    // picks another nonce.
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let hello = d.poll_transmit().expect("hello");
    l.handle_message(
        Instant::ZERO,
        &hello,
        Message::decode(&hello).expect("valid"),
    );
    let lh = l.poll_transmit().expect("hello");
    d.handle_message(Instant::ZERO, &lh, Message::decode(&lh).expect("valid"));
    let proof = d.poll_transmit().expect("proof");
    let mut l2 = Handshake::new(
        Side::Listener,
        &ident("c1", "c", Role::Control),
        Key::derive("pw", "c", 2),
        [3; 32],
        b"",
        HandshakeConfig::default(),
        Instant::ZERO,
    );
    l2.handle_message(
        Instant::ZERO,
        &hello,
        Message::decode(&hello).expect("valid"),
    );
    let _ = l2.poll_transmit();
    l2.handle_message(
        Instant::ZERO,
        &proof,
        Message::decode(&proof).expect("valid"),
    );
    l2.handle_timeout(Instant::from_secs_for_test(1));
    assert_eq!(
        l2.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::AuthFailed))
    );
}

#[test]
fn version_without_overlap_is_rejected() {
    let t0 = Instant::ZERO;
    let mut d = Handshake::new(
        Side::Dialer,
        &ident("w1", "c", Role::Worker),
        Key::from_bytes([0; 32]),
        [1; 32],
        b"",
        HandshakeConfig {
            version_min: crate::message::PROTOCOL_VERSION + 1,
            version_max: crate::message::PROTOCOL_VERSION + 2,
            ..Default::default()
        },
        t0,
    );
    let mut l = Handshake::new(
        Side::Listener,
        &ident("c1", "c", Role::Control),
        Key::from_bytes([0; 32]),
        [2; 32],
        b"",
        HandshakeConfig::default(),
        t0,
    );
    assert_eq!(run(&mut d, &mut l, t0), ["d>hello", "l>reject"]);
    assert!(matches!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::UnsupportedVersion {
            theirs_min,
            ..
        })) if theirs_min == crate::message::PROTOCOL_VERSION + 1
    ));
}

#[test]
fn silence_times_out() {
    let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    assert_eq!(l.poll_timeout(), Some(Instant::from_secs_for_test(10)));
    l.handle_timeout(Instant::from_secs_for_test(10));
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::Timeout))
    );
    let b = l.poll_transmit().expect("reject");
    assert!(matches!(
        Message::decode(&b),
        Ok(Message::Reject(Reject {
            reason: RejectReason::Timeout,
            ..
        }))
    ));
}

#[test]
fn unexpected_message_is_a_protocol_error() {
    let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let m = Message::Proof(Proof { mac: [0; 32] });
    l.handle_message(Instant::ZERO, &m.encode_body(), m);
    assert!(matches!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::Protocol(_)))
    ));
}

#[test]
fn oversized_hello_fields_are_refused() {
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let _ = d.poll_transmit();
    let m = worker_hello("x".repeat(MAX_NAME_LEN + 1));
    l.handle_message(Instant::ZERO, &m.encode_body(), m);
    assert!(matches!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::Protocol(_)))
    ));
}

/// A worker's hello to cluster `c` claiming `node_id`, nothing else set.
fn worker_hello(node_id: String) -> Message {
    Message::Hello(Hello {
        version_min: 1,
        version_max: 1,
        cluster: "c".into(),
        node_id,
        instance: 1,
        role: Role::Worker,
        listen: vec![],
        meta: String::new(),
        nonce: [0; 32],
        partitions: 0,
    })
}

#[test]
fn overlong_multibyte_node_id_is_refused_without_panicking() {
    // 'é' is two bytes: byte 255 falls inside a character.
    let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let m = worker_hello("é".repeat(200));
    l.handle_message(Instant::ZERO, &m.encode_body(), m);
    assert!(matches!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::Protocol(_)))
    ));
    assert_eq!(l.claimed_peer().map(str::len), Some(254));
}

/// A control listener with control key "c1" and worker key "w1", and a dialer with
/// `role` proving `password` (its only secret, as a worker started with
/// `--password w1` has).
fn role_pair(role: Role, password: &str) -> (Handshake, Handshake) {
    let d = Handshake::new(
        Side::Dialer,
        &ident("d1", "c", role),
        Key::derive(password, "c", 2),
        [1; 32],
        b"",
        HandshakeConfig::default(),
        Instant::ZERO,
    );
    let l = Handshake::new(
        Side::Listener,
        &ident("c1", "c", Role::Control),
        Key::derive("c1", "c", 2),
        [2; 32],
        b"",
        HandshakeConfig::default(),
        Instant::ZERO,
    )
    .with_worker_key(Some(Key::derive("w1", "c", 2)));
    (d, l)
}

/// Runs a role pair to the end (past the reject delay); both outcomes.
fn role_outcomes(role: Role, password: &str) -> (Option<Outcome>, Option<Outcome>) {
    let (mut d, mut l) = role_pair(role, password);
    run(&mut d, &mut l, Instant::ZERO);
    let later = Instant::from_millis(500);
    l.handle_timeout(later);
    run(&mut d, &mut l, later);
    (d.poll_outcome(), l.poll_outcome())
}

#[test]
fn the_worker_secret_authenticates_a_worker() {
    let (d, l) = role_outcomes(Role::Worker, "w1");
    assert!(matches!(d, Some(Outcome::Authenticated(p)) if p.role == Role::Control));
    assert!(matches!(l, Some(Outcome::Authenticated(p)) if p.role == Role::Worker));
}

#[test]
fn the_worker_secret_never_authenticates_control_or_admin() {
    for role in [Role::Control, Role::Admin] {
        let (d, l) = role_outcomes(role, "w1");
        assert_eq!(
            l,
            Some(Outcome::Failed(HandshakeError::WorkerSecret { role })),
            "{role:?}"
        );
        let Some(Outcome::Failed(e)) = d else {
            panic!("dialer: {d:?}")
        };
        assert_eq!(e.code(), "auth_failed");
        assert_eq!(
            e.to_string(),
            format!(
                "rejected by peer: auth_failed: the worker secret (worker_password) cannot \
                 authenticate the {} role; control members and admin clients prove the \
                 control cluster's password",
                role.as_str()
            )
        );
    }
}

#[test]
fn the_control_secret_authenticates_control_and_admin_not_workers() {
    for role in [Role::Control, Role::Admin] {
        let (d, l) = role_outcomes(role, "c1");
        assert!(matches!(d, Some(Outcome::Authenticated(_))), "{role:?}");
        assert!(matches!(l, Some(Outcome::Authenticated(p)) if p.role == role));
    }
    // A worker proves the worker secret: the control one is a wrong password for it.
    let (_, l) = role_outcomes(Role::Worker, "c1");
    assert_eq!(l, Some(Outcome::Failed(HandshakeError::AuthFailed)));
}

#[test]
fn without_a_worker_key_the_one_password_serves_every_role() {
    for role in [Role::Control, Role::Worker, Role::Admin] {
        // The listener (ours) has no worker key; the dialer's partitions match.
        let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let mut d = Handshake::new(
            Side::Dialer,
            &ident("w1", "c", role),
            Key::derive("pw", "c", 2),
            [1; 32],
            b"",
            HandshakeConfig::default(),
            Instant::ZERO,
        );
        run(&mut d, &mut l, Instant::ZERO);
        assert!(matches!(l.poll_outcome(), Some(Outcome::Authenticated(p)) if p.role == role));
    }
}

#[test]
fn a_control_node_dialing_a_worker_proves_the_worker_secret() {
    // The worker knows only "w1"; the control node holds both secrets.
    let mut d = Handshake::new(
        Side::Dialer,
        &ident("c1", "c", Role::Control),
        Key::derive("c1", "c", 2),
        [1; 32],
        b"",
        HandshakeConfig::default(),
        Instant::ZERO,
    )
    .with_worker_key(Some(Key::derive("w1", "c", 2)));
    let mut l = Handshake::new(
        Side::Listener,
        &ident("w1", "c", Role::Worker),
        Key::derive("w1", "c", 2),
        [2; 32],
        b"",
        HandshakeConfig::default(),
        Instant::ZERO,
    );
    assert_eq!(
        run(&mut d, &mut l, Instant::ZERO),
        ["d>hello", "l>hello", "d>proof", "l>proof"]
    );
    assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(p)) if p.role == Role::Worker));
    assert!(matches!(l.poll_outcome(), Some(Outcome::Authenticated(p)) if p.role == Role::Control));
}

#[test]
fn a_role_changed_in_flight_breaks_the_proof() {
    // A man in the middle that knows nothing rewrites a worker's hello to claim
    // control: the hellos are in the transcript, so the worker's proof fails, even
    // though one password serves every role here.
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let hello = d.poll_transmit().expect("hello");
    let Ok(Message::Hello(mut h)) = Message::decode(&hello) else {
        panic!("not a hello")
    };
    assert_eq!(h.role, Role::Worker);
    h.role = Role::Control;
    h.partitions = 64;
    let forged = Message::Hello(h);
    l.handle_message(Instant::ZERO, &forged.encode_body(), forged);
    let lh = l.poll_transmit().expect("hello");
    d.handle_message(Instant::ZERO, &lh, Message::decode(&lh).expect("valid"));
    let proof = d.poll_transmit().expect("proof");
    l.handle_message(
        Instant::ZERO,
        &proof,
        Message::decode(&proof).expect("valid"),
    );
    l.handle_timeout(Instant::from_millis(500));
    assert_eq!(
        l.poll_outcome(),
        Some(Outcome::Failed(HandshakeError::AuthFailed))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn completes_iff_passwords_match(a in "[a-z]{0,8}", b in "[a-z]{0,8}") {
        let (mut d, mut l) = pair(&a, &b, "c", "c", (b"", b""));
        run(&mut d, &mut l, Instant::ZERO);
        l.handle_timeout(Instant::from_millis(500));
        run(&mut d, &mut l, Instant::from_millis(500));
        let dl = d.poll_outcome();
        let ll = l.poll_outcome();
        if a == b {
            prop_assert!(matches!(dl, Some(Outcome::Authenticated(_))));
            prop_assert!(matches!(ll, Some(Outcome::Authenticated(_))));
        } else {
            prop_assert!(matches!(dl, Some(Outcome::Failed(_))));
            prop_assert_eq!(ll, Some(Outcome::Failed(HandshakeError::AuthFailed)));
        }
    }
}

#[test]
fn each_side_times_the_exchange_that_ends_its_wait() {
    let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
    let at = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
    // The dialer's hello reaches the listener at 10 ms; its hello goes back then.
    let hello_d = d.poll_transmit().expect("dialer hello");
    l.handle_message(at(10), &hello_d, Message::decode(&hello_d).expect("valid"));
    let hello_l = l.poll_transmit().expect("listener hello");
    // It reaches the dialer at 25 ms; the dialer's proof leaves then.
    d.handle_message(at(25), &hello_l, Message::decode(&hello_l).expect("valid"));
    let proof_d = d.poll_transmit().expect("dialer proof");
    assert_eq!((d.round_trip(), l.round_trip()), (None, None));
    // At 42 ms the listener reads it: 32 ms since its hello left.
    l.handle_message(at(42), &proof_d, Message::decode(&proof_d).expect("valid"));
    let proof_l = l.poll_transmit().expect("listener proof");
    assert_eq!(l.round_trip(), Some(Duration::from_millis(32)));
    // At 61 ms the dialer reads the listener's: 36 ms since its proof left.
    d.handle_message(at(61), &proof_l, Message::decode(&proof_l).expect("valid"));
    assert_eq!(d.round_trip(), Some(Duration::from_millis(36)));
    assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(_))));
    assert!(matches!(l.poll_outcome(), Some(Outcome::Authenticated(_))));
}

#[test]
fn a_failed_proof_times_nothing() {
    let (mut d, mut l) = pair("pw", "other", "c", "c", (b"", b""));
    let at = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
    run(&mut d, &mut l, at(5));
    // The listener delays its reject; neither side authenticated anyone.
    assert_eq!((d.round_trip(), l.round_trip()), (None, None));
    l.handle_timeout(at(5) + HandshakeConfig::default().reject_delay);
    run(
        &mut d,
        &mut l,
        at(5) + HandshakeConfig::default().reject_delay,
    );
    assert_eq!((d.round_trip(), l.round_trip()), (None, None));
}
