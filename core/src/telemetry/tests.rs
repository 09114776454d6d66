//! Exact counts for given inputs.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn outcomes_are_ok_a_known_code_or_other() {
    assert_eq!(outcome_label(outcome_index(Ok(()))), "ok");
    assert_eq!(outcome_label(outcome_index(Err("timeout"))), "timeout");
    assert_eq!(
        outcome_label(outcome_index(Err("connection_failed"))),
        "connection_failed"
    );
    assert_eq!(
        outcome_label(outcome_index(Err("made_up_by_a_peer"))),
        OTHER
    );
    assert_eq!(outcome_index(Err("made_up_by_a_peer")), OUTCOMES - 1);
    assert_eq!(outcome_label(OUTCOMES + 5), OTHER);
}

#[test]
fn label_values_are_short_and_plain() {
    assert!(label_ok("nkcluster.core"));
    assert!(label_ok("a-b_c:d/e.9"));
    assert!(!label_ok(""));
    assert!(!label_ok("quote\"d"));
    assert!(!label_ok("new\nline"));
    assert!(!label_ok("é"));
    assert!(label_ok(&"x".repeat(LABEL_LEN_MAX)));
    assert!(!label_ok(&"x".repeat(LABEL_LEN_MAX + 1)));
}

#[test]
fn the_histogram_buckets_by_upper_bound_and_sums_microseconds() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(100)); // le 0.0001
    h.observe(Duration::from_micros(101)); // le 0.00025
    h.observe(ms(3)); // le 0.005
    h.observe(Duration::from_secs(10)); // le 10
    h.observe(Duration::from_secs(11)); // +Inf
    let r = h.read();
    assert_eq!(r.count, 5);
    assert_eq!(r.sum_us, 100 + 101 + 3_000 + 10_000_000 + 11_000_000);
    let mut want = [0u64; 17];
    want[0] = 1;
    want[1] = 1;
    want[5] = 1;
    want[15] = 1;
    want[16] = 1;
    assert_eq!(r.buckets, want);
    let c = r.by_bound();
    assert_eq!(c.len(), 17);
    assert_eq!(c[0], (0.0001, 1));
    assert_eq!(c[1], (0.00025, 1));
    assert_eq!(c[4], (0.0025, 0));
    assert_eq!(c[5], (0.005, 1));
    assert_eq!(c[15], (10.0, 1));
    assert_eq!(c[16], (f64::MAX, 1));
}

#[test]
fn requests_are_counted_by_class_side_and_outcome() {
    let t = Arc::new(Telemetry::new());
    let mut m = Meter::new(t.clone(), Transport::Tcp);
    m.class("echo").count(ReqSide::Sent, Ok(()), ms(1));
    m.class("echo").count(ReqSide::Sent, Ok(()), ms(2));
    m.class("echo")
        .count(ReqSide::Sent, Err("timeout"), ms(500));
    m.class("echo")
        .count(ReqSide::Served, Err("bad_request"), ms(0));
    m.class("boom")
        .count(ReqSide::Sent, Err("peer's own code"), ms(1));
    let r = t.report();
    let rc = |class: &str, side, outcome, count| RequestCount {
        class: class.into(),
        side,
        outcome,
        count,
    };
    assert_eq!(
        r.requests,
        vec![
            rc("boom", ReqSide::Sent, OTHER, 1),
            rc("echo", ReqSide::Sent, "ok", 2),
            rc("echo", ReqSide::Sent, "timeout", 1),
            rc("echo", ReqSide::Served, "bad_request", 1),
        ]
    );
    let counts: Vec<(&str, ReqSide, u64, u64)> = r
        .durations
        .iter()
        .map(|(c, s, h)| (c.as_str(), *s, h.count, h.sum_us))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("boom", ReqSide::Sent, 1, 1_000),
            ("echo", ReqSide::Sent, 3, 503_000),
            ("echo", ReqSide::Served, 1, 0),
        ]
    );
}

#[test]
fn classes_beyond_the_cap_or_with_odd_names_count_as_other() {
    let t = Arc::new(Telemetry::new());
    let mut m = Meter::new(t.clone(), Transport::Ws);
    for i in 0..LINK_CLASSES_MAX + 10 {
        m.class(&format!("c{i}"))
            .count(ReqSide::Served, Ok(()), ms(1));
    }
    m.class("bad\"name").count(ReqSide::Served, Ok(()), ms(1));
    m.class(&"y".repeat(LABEL_LEN_MAX + 1))
        .count(ReqSide::Served, Ok(()), ms(1));
    // A named class keeps counting as itself after the cap is reached.
    m.class("c0").count(ReqSide::Served, Ok(()), ms(1));
    let r = t.report();
    assert_eq!(r.requests.len(), LABEL_VALUES_MAX + 1);
    let other = r.requests.iter().find(|c| c.class == OTHER);
    assert_eq!(
        other.map(|c| c.count),
        Some((LINK_CLASSES_MAX + 10 - LABEL_VALUES_MAX + 2) as u64)
    );
    let c0 = r.requests.iter().find(|c| c.class == "c0");
    assert_eq!(c0.map(|c| c.count), Some(2));
    // The link's own memory of classes is bounded too.
    assert_eq!(m.classes.len(), LINK_CLASSES_MAX);
}

#[test]
fn handshakes_link_failures_bytes_and_files() {
    let t = Telemetry::new();
    t.handshake(Transport::Tls, LinkSide::Dialer, Ok(()));
    t.handshake(Transport::Tls, LinkSide::Dialer, Ok(()));
    t.handshake(Transport::Tcp, LinkSide::Listener, Err("auth_failed"));
    t.handshake(Transport::Tcp, LinkSide::Listener, Err("nonsense"));
    t.link_ended("idle_timeout");
    t.link_ended("idle_timeout");
    t.link_ended("peer_closed");
    t.link_ended("transport_closed");
    t.bytes_in(Transport::Tcp, 10);
    t.bytes_in(Transport::Tcp, 5);
    t.bytes_out(Transport::Wss, 7);
    let create = || FileOp::Create {
        tmp: "/f/a.part".into(),
        hash: crate::file_send::ContentHash::Sha256,
    };
    let part = |ops, result| PartOutcome { ops, result };
    t.file_part(&part(vec![create()], Ok(Received::Part)), 1000);
    t.file_part(
        &part(
            vec![],
            Ok(Received::File {
                path: "/f/a".into(),
                bytes: 1234,
            }),
        ),
        234,
    );
    t.file_part(
        &part(
            vec![create()],
            Err(crate::transfers::TransferError::TooMany { max: 1 }),
        ),
        99,
    );
    t.file_failed();
    let r = t.report();
    let hc = |transport, side, outcome, count| HandshakeCount {
        transport,
        side,
        outcome,
        count,
    };
    assert_eq!(
        r.handshakes,
        vec![
            hc("tcp", LinkSide::Listener, "auth_failed", 1),
            hc("tcp", LinkSide::Listener, OTHER, 1),
            hc("tls", LinkSide::Dialer, "ok", 2),
        ]
    );
    assert_eq!(
        r.link_failures,
        vec![("idle_timeout", 2), ("transport_closed", 1)]
    );
    assert_eq!(
        r.bytes_in,
        vec![("tcp", 15), ("tls", 0), ("ws", 0), ("wss", 0)]
    );
    assert_eq!(
        r.bytes_out,
        vec![("tcp", 0), ("tls", 0), ("ws", 0), ("wss", 7)]
    );
    assert_eq!(
        r.files,
        FileCounts {
            started: 2,
            done: 1,
            failed: 2,
            bytes: 1234
        }
    );
    assert!(r.requests.is_empty() && r.durations.is_empty());
}

#[test]
fn a_links_alike_counts_are_tallied_and_published_in_one_addition() {
    let t = Arc::new(Telemetry::new());
    let mut m = Meter::new(t.clone(), Transport::Tcp);
    let counts = |t: &Telemetry| -> Vec<(String, ReqSide, &'static str, u64)> {
        t.report()
            .requests
            .into_iter()
            .map(|r| (r.class, r.side, r.outcome, r.count))
            .collect()
    };
    let sums = |t: &Telemetry| -> Vec<(String, ReqSide, u64, u64)> {
        t.report()
            .durations
            .into_iter()
            .map(|(c, s, h)| (c, s, h.count, h.sum_us))
            .collect()
    };
    // Alike (class, side, outcome, bucket): tallied, nothing shared yet.
    m.count("echo", ReqSide::Served, Ok(()), ms(0));
    m.count("echo", ReqSide::Served, Ok(()), ms(0));
    m.count("echo", ReqSide::Served, Ok(()), Duration::from_micros(40));
    assert_eq!(counts(&t), vec![]);
    // Another bucket publishes the run before it.
    m.count("echo", ReqSide::Served, Ok(()), ms(1));
    assert_eq!(
        counts(&t),
        vec![("echo".to_owned(), ReqSide::Served, "ok", 3)]
    );
    assert_eq!(sums(&t), vec![("echo".to_owned(), ReqSide::Served, 3, 40)]);
    // Another outcome, side or class too.
    m.count("echo", ReqSide::Served, Err("timeout"), ms(1));
    m.count("echo", ReqSide::Sent, Err("timeout"), ms(1));
    m.count("info", ReqSide::Sent, Err("timeout"), ms(1));
    assert_eq!(
        counts(&t),
        vec![
            ("echo".to_owned(), ReqSide::Sent, "timeout", 1),
            ("echo".to_owned(), ReqSide::Served, "ok", 4),
            ("echo".to_owned(), ReqSide::Served, "timeout", 1),
        ]
    );
    m.publish();
    m.publish();
    assert_eq!(
        counts(&t),
        vec![
            ("echo".to_owned(), ReqSide::Sent, "timeout", 1),
            ("echo".to_owned(), ReqSide::Served, "ok", 4),
            ("echo".to_owned(), ReqSide::Served, "timeout", 1),
            ("info".to_owned(), ReqSide::Sent, "timeout", 1),
        ]
    );
    assert_eq!(
        sums(&t),
        vec![
            ("echo".to_owned(), ReqSide::Sent, 1, 1_000),
            ("echo".to_owned(), ReqSide::Served, 5, 2_040),
            ("info".to_owned(), ReqSide::Sent, 1, 1_000),
        ]
    );
    // Forgetting the classes, and the meter going, publish what is tallied.
    m.count("info", ReqSide::Sent, Ok(()), ms(2));
    m.release_classes();
    m.count("info", ReqSide::Sent, Ok(()), ms(2));
    drop(m);
    assert_eq!(
        counts(&t)[3..],
        [
            ("info".to_owned(), ReqSide::Sent, "ok", 2),
            ("info".to_owned(), ReqSide::Sent, "timeout", 1),
        ]
    );
}

#[test]
fn a_duration_is_in_the_bucket_its_bounds_say() {
    for us in [
        0,
        1,
        99,
        100,
        101,
        250,
        251,
        9_999_999,
        10_000_000,
        10_000_001,
        u64::MAX,
    ] {
        for b in 0..BUCKETS {
            assert_eq!(in_bucket(b, us), bucket_of(us) == b, "{us} us, bucket {b}");
        }
    }
    assert!(in_bucket(0, 100) && !in_bucket(0, 101) && in_bucket(1, 101));
    assert!(in_bucket(BUCKETS - 1, 10_000_001) && !in_bucket(BUCKETS - 1, 10_000_000));
}

#[test]
fn a_run_ends_at_a_bucket_bound() {
    let t = Arc::new(Telemetry::new());
    let mut m = Meter::new(t.clone(), Transport::Tcp);
    let us = Duration::from_micros;
    // 100 us is the first bucket's bound: 0, 100 alike; 101 is the next bucket; 100
    // again starts a third run.
    for d in [0, 100, 101, 250, 100] {
        m.count("echo", ReqSide::Sent, Ok(()), us(d));
    }
    m.publish();
    let r = t.report();
    assert_eq!(r.durations.len(), 1);
    let h = &r.durations[0].2;
    assert_eq!((h.count, h.sum_us), (5, 551));
    // Per bucket: <=100 us, <=250 us, <=500 us.
    assert_eq!(h.buckets[..3], [3, 2, 0]);
}

#[test]
fn a_class_the_link_cannot_remember_is_counted_at_once() {
    let t = Arc::new(Telemetry::new());
    let mut m = Meter::new(t.clone(), Transport::Tcp);
    for i in 0..LINK_CLASSES_MAX {
        m.count(&format!("c{i}"), ReqSide::Sent, Ok(()), ms(1));
    }
    m.publish();
    let total = |t: &Telemetry| t.report().requests.iter().map(|r| r.count).sum::<u64>();
    assert_eq!(total(&t), LINK_CLASSES_MAX as u64);
    // Past the link's cap: not tallied, shared at once (as `other`: past the label cap).
    m.count("late", ReqSide::Sent, Ok(()), ms(1));
    assert_eq!(total(&t), LINK_CLASSES_MAX as u64 + 1);
}
