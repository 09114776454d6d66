use std::time::Duration;

use super::*;

fn request(deadline_ms: u64, reply: u32) -> Command<u32> {
    // Asked no earlier than taken (the tests below count from the take).
    Command::Request {
        class: "c".into(),
        body: Bytes::new(),
        asked: Instant::from_millis(deadline_ms),
        deadline: Instant::from_millis(deadline_ms),
        reply,
    }
}

#[test]
fn empty_maps_and_queue_are_given_back_on_request_and_the_rest_kept() {
    let (mut a, _b) = crate::conn::tests::linked();
    let now = Instant::from_millis(10);
    let mut p = Pump::<u32>::new();
    p.serving(now, 1, "c".into());
    p.served(now, 1, Ok(()));
    p.hold(now, request(100, 1));
    assert_eq!(p.unhold(&mut a, now), vec![]);
    assert!(p.storage_bytes() > 0);
    p.release_idle_storage();
    // Our request is still pending: only its map is kept.
    assert_eq!(p.storage_bytes(), p.pending.capacity_bytes());
    assert_eq!(
        p.finish(now),
        vec![(1, Err(RequestError::ConnectionFailed))]
    );
    p.release_idle_storage();
    assert_eq!(p.storage_bytes(), 0);
}

#[test]
fn the_meters_classes_go_with_the_idle_storage_and_come_back_on_use() {
    use crate::telemetry::{ClassCounters, Telemetry};
    use crate::url::Transport;

    let now = Instant::from_millis(10);
    let telemetry = std::sync::Arc::new(Telemetry::new());
    let mut p = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
    p.serving(now, 1, "info".into());
    p.served(now, 1, Ok(()));
    p.served_at_once("status", Ok(()));
    p.serving(now, 2, "status".into());
    // Four remembered classes' room (a Vec's first allocation) and the two names.
    let entry = size_of::<(String, std::sync::Arc<ClassCounters>)>();
    assert_eq!(p.meter.storage_bytes(), 4 * entry + 4 + 6);
    p.release_idle_storage();
    assert_eq!(p.meter.storage_bytes(), 0);
    // The request in flight is still counted under its class, once answered (looked
    // up again by its name).
    p.served(now, 2, Ok(()));
    assert_eq!(p.meter.storage_bytes(), 4 * entry + 6);
    p.serving(now, 3, "info".into());
    p.served(now, 3, Ok(()));
    assert_eq!(p.meter.storage_bytes(), 4 * entry + 6 + 4);
    let served = || -> Vec<(String, u64)> {
        telemetry
            .report()
            .requests
            .into_iter()
            .map(|c| (c.class, c.count))
            .collect()
    };
    // The last one is tallied until the driver publishes.
    assert_eq!(
        served(),
        vec![("info".to_owned(), 1), ("status".to_owned(), 2)]
    );
    p.publish_counts();
    assert_eq!(
        served(),
        vec![("info".to_owned(), 2), ("status".to_owned(), 2)]
    );
}

#[test]
fn commands_are_taken_held_or_left_by_the_transport_backlog() {
    let mut p = Pump::<u32>::new();
    assert_eq!(p.accepts(false, 0), Accept::Wait);
    assert_eq!(p.accepts(true, 0), Accept::Send);
    assert_eq!(p.accepts(true, WRITE_HIGH_WATER), Accept::Hold);
    for i in 0..HELD_MAX {
        p.hold(Instant::ZERO, request(100, i as u32));
    }
    assert_eq!(p.accepts(true, WRITE_HIGH_WATER), Accept::Wait);
    assert_eq!(p.accepts(true, 0), Accept::Unhold);
}

#[test]
fn held_requests_end_timeout_at_their_deadline_and_the_rest_connection_failed() {
    let mut p = Pump::<u32>::new();
    p.hold(Instant::ZERO, request(100, 1));
    p.hold(Instant::ZERO, Command::Gossip(Vec::new()));
    p.hold(Instant::ZERO, request(300, 2));
    p.hold(Instant::ZERO, request(200, 3));
    let ids = |v: Vec<Outcome<u32>>| -> Vec<(u32, Result<Bytes, RequestError>)> { v };
    assert_eq!(
        ids(p.expire(Instant::from_millis(200))),
        vec![
            (1, Err(RequestError::Timeout)),
            (3, Err(RequestError::Timeout))
        ]
    );
    assert_eq!(
        ids(p.finish(Instant::from_millis(200))),
        vec![(2, Err(RequestError::ConnectionFailed))]
    );
    assert_eq!(p.finish(Instant::from_millis(200)), vec![]);
}

#[test]
fn commands_left_queued_end_at_their_own_deadline_while_the_driver_takes_none() {
    let (a, _b) = crate::conn::tests::linked();
    let mut p = Pump::<u32>::new();
    // The held queue full of requests due at 60 s: the driver takes no more.
    for i in 0..HELD_MAX {
        p.hold(Instant::ZERO, request(60_000, i as u32));
    }
    let accept = p.accepts(true, WRITE_HIGH_WATER);
    assert!(accept.watches_queue());
    assert!(!Accept::Send.watches_queue() && !Accept::Hold.watches_queue());
    assert!(!Accept::Unhold.watches_queue());
    // A request queued behind them, due at 300 ms: the driver wakes for it, not at 60 s.
    let queued = Command::Request {
        class: "c".into(),
        body: Bytes::new(),
        asked: Instant::from_millis(100),
        deadline: Instant::from_millis(300),
        reply: 9_999,
    };
    assert_eq!(queued.deadline(), Some(Instant::from_millis(300)));
    let wake = p.poll_timeout(&a, Instant::from_millis(100), queued.deadline());
    assert_eq!(wake, Some(Instant::from_millis(300)));
    assert!(!queued.is_due(Instant::from_millis(299)));
    assert!(queued.is_due(Instant::from_millis(300)));
    // Its time is up: `timeout`, and the held ones stay.
    assert_eq!(
        p.expire_queued(Instant::from_millis(300), queued),
        Some((9_999, Err(RequestError::Timeout)))
    );
    assert_eq!(p.held.len(), HELD_MAX);
    // A notice is dropped; the other commands have no deadline and never fall due.
    let notice = Command::Notice {
        class: "n".into(),
        body: Bytes::new(),
        deadline: Instant::from_millis(5),
    };
    assert!(notice.is_due(Instant::from_millis(5)));
    assert_eq!(p.expire_queued(Instant::from_millis(5), notice), None);
    let gossip = Command::<u32>::Gossip(Vec::new());
    assert_eq!(gossip.deadline(), None);
    assert!(!gossip.is_due(Instant::from_millis(u64::MAX / 2_000_000)));
    let close = Command::<u32>::Close {
        reason: "bye".into(),
    };
    assert!(!close.is_due(Instant::from_millis(1)));
}

#[test]
fn a_request_expired_in_the_callers_queue_counts_from_its_ask() {
    use crate::telemetry::Telemetry;
    use crate::url::Transport;

    let telemetry = std::sync::Arc::new(Telemetry::new());
    let mut p = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
    let queued = Command::Request {
        class: "q".into(),
        body: Bytes::new(),
        asked: Instant::from_millis(100),
        deadline: Instant::from_millis(400),
        reply: 1,
    };
    let done = p.expire_queued(Instant::from_millis(400), queued);
    assert_eq!(done, Some((1, Err(RequestError::Timeout))));
    // Published at once (no turn of the driver publishes it later).
    let r = telemetry.report();
    assert_eq!(
        r.requests
            .iter()
            .map(|c| (c.class.as_str(), c.count))
            .collect::<Vec<_>>(),
        vec![("q", 1)]
    );
    assert_eq!(
        (r.durations[0].2.count, r.durations[0].2.sum_us),
        (1, 300_000)
    );
}

#[test]
fn a_request_whose_time_went_waiting_ends_timeout_without_being_sent() {
    let (mut a, _b) = crate::conn::tests::linked();
    let now = Instant::from_millis(10);
    let mut p = Pump::<u32>::new();
    let late = p.submit(&mut a, now + Duration::from_millis(5), request(0, 7));
    assert_eq!(late, Some((7, Err(RequestError::Timeout))));
    let in_time = Command::Request {
        class: "c".into(),
        body: Bytes::new(),
        asked: now,
        deadline: now + Duration::from_secs(1),
        reply: 8,
    };
    assert_eq!(p.submit(&mut a, now, in_time), None);
    assert!(!p.idle_close(false, &a), "a request of ours is pending");
    assert_eq!(
        p.poll_timeout(&a, Instant::ZERO, None)
            .map(|t| t <= now + Duration::from_secs(1)),
        Some(true)
    );
    assert_eq!(
        p.finish(now),
        vec![(8, Err(RequestError::ConnectionFailed))]
    );
    assert!(p.idle_close(false, &a));
    assert!(!p.idle_close(true, &a));
}

#[test]
fn file_parts_in_flight_are_not_small_traffic() {
    use crate::cluster::{CLASS_JOB, FilePart, JobCall, encode_body};
    let (mut a, _b) = crate::conn::tests::linked();
    let now = Instant::from_millis(10);
    let mut p = Pump::<u32>::new();
    let part = encode_body(&JobCall::SendFileBlake3(FilePart {
        path: "f".into(),
        offset: 0,
        total: 100,
        data: Bytes::from(vec![0u8; 100]),
        sha256: None,
    }))
    .expect("encodes");
    let req = |class: &str, body: Bytes, reply| Command::Request {
        class: class.into(),
        body,
        asked: now,
        deadline: now + Duration::from_secs(1),
        reply,
    };
    assert_eq!(p.submit(&mut a, now, req(CLASS_JOB, part.clone(), 1)), None);
    assert_eq!(p.submit(&mut a, now, req(CLASS_JOB, part, 2)), None);
    let none = crate::lanes::turns::SmallTraffic::default();
    assert_eq!(p.small_traffic(), none);
    assert_eq!(p.submit(&mut a, now, req("c", Bytes::new(), 3)), None);
    let sent = crate::lanes::turns::SmallTraffic {
        in_flight: true,
        sent: true,
        answered: false,
    };
    assert_eq!(p.small_traffic(), sent);
    let in_flight = crate::lanes::turns::SmallTraffic {
        in_flight: true,
        ..none
    };
    assert_eq!(p.small_traffic(), in_flight);
    assert_eq!(
        p.finish(now)
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

#[test]
fn every_outcome_is_counted_once_by_class_with_the_time_given() {
    use crate::conn::tests::pump as shuttle;
    use crate::message::RemoteError;
    use crate::telemetry::{RequestCount, Telemetry};
    use crate::url::Transport;

    let (mut a, mut b) = crate::conn::tests::linked();
    let telemetry = std::sync::Arc::new(Telemetry::new());
    let mut sender = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
    let mut server = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
    let t0 = Instant::from_millis(10);
    let req = |class: &str, reply| Command::Request {
        class: class.into(),
        body: Bytes::new(),
        asked: t0,
        deadline: t0 + Duration::from_secs(1),
        reply,
    };
    assert_eq!(sender.submit(&mut a, t0, req("echo", 1)), None);
    assert_eq!(sender.submit(&mut a, t0, req("echo", 2)), None);
    assert_eq!(sender.submit(&mut a, t0, req("slow", 3)), None);
    // A held one (taken at 4 ms) whose deadline passes, never sent.
    sender.hold(
        Instant::from_millis(4),
        Command::Request {
            class: "held".into(),
            body: Bytes::new(),
            asked: t0,
            deadline: t0,
            reply: 4,
        },
    );
    assert_eq!(sender.expire(t0), vec![(4, Err(RequestError::Timeout))]);
    shuttle(&mut a, &mut b, t0);
    let t1 = t0 + Duration::from_millis(3);
    let mut ids = Vec::new();
    while let Some(ev) = b.poll_event() {
        if let crate::conn::Event::Request { id, class, .. } = ev {
            server.serving(t0, id, class);
            ids.push(id);
        }
    }
    assert_eq!(ids, vec![1, 2, 3]);
    server.served(t1, 1, Ok(()));
    b.reply(1, Ok(Bytes::from_static(b"x")));
    let refused = RemoteError::new("forbidden", "no");
    server.served(t1, 2, Err(refused.code.as_str()));
    b.reply(2, Err(refused));
    // One answered in the turn it arrived: counted at once, with no time, never kept.
    server.served_at_once("echo", Ok(()));
    assert_eq!(server.serving.len(), 1);
    shuttle(&mut a, &mut b, t1);
    let mut outcomes = Vec::new();
    while let Some(ev) = a.poll_event() {
        if let crate::conn::Event::Reply { id, tag, result } = ev {
            outcomes.extend(
                sender
                    .answered(t1, id, tag, result)
                    .map(|(r, res)| (r, res.is_ok())),
            );
        }
    }
    assert_eq!(outcomes, vec![(1, true), (2, false)]);
    // The link dies with "slow" pending at both ends.
    let t2 = t0 + Duration::from_millis(20);
    assert_eq!(
        sender.finish(t2),
        vec![(3, Err(RequestError::ConnectionFailed))]
    );
    assert_eq!(server.finish(t2), vec![]);
    let rc = |class: &str, side, outcome, count| RequestCount {
        class: class.into(),
        side,
        outcome,
        count,
    };
    let report = telemetry.report();
    assert_eq!(
        report.requests,
        vec![
            rc("echo", ReqSide::Sent, "ok", 1),
            rc("echo", ReqSide::Sent, "forbidden", 1),
            rc("echo", ReqSide::Served, "ok", 2),
            rc("echo", ReqSide::Served, "forbidden", 1),
            rc("held", ReqSide::Sent, "timeout", 1),
            rc("slow", ReqSide::Sent, "connection_failed", 1),
            rc("slow", ReqSide::Served, "connection_failed", 1),
        ]
    );
    let sums: Vec<(&str, ReqSide, u64, u64)> = report
        .durations
        .iter()
        .map(|(c, s, h)| (c.as_str(), *s, h.count, h.sum_us))
        .collect();
    assert_eq!(
        sums,
        vec![
            ("echo", ReqSide::Sent, 2, 6_000),
            ("echo", ReqSide::Served, 3, 6_000),
            ("held", ReqSide::Sent, 1, 6_000),
            ("slow", ReqSide::Sent, 1, 20_000),
            ("slow", ReqSide::Served, 1, 20_000),
        ]
    );
}

#[test]
fn a_held_request_counts_from_its_ask() {
    use crate::conn::tests::pump as shuttle;
    use crate::telemetry::Telemetry;
    use crate::url::Transport;

    let (mut a, mut b) = crate::conn::tests::linked();
    let telemetry = std::sync::Arc::new(Telemetry::new());
    let mut p = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tls));
    // Asked at 5 ms, taken by the link at 10 (held: the transport is backed up),
    // sent at 15, answered at 20: it took the caller 15 ms.
    let asked_at_5 = Command::Request {
        class: "c".into(),
        body: Bytes::new(),
        asked: Instant::from_millis(5),
        deadline: Instant::from_millis(1_000),
        reply: 1,
    };
    p.hold(Instant::from_millis(10), asked_at_5);
    assert_eq!(p.unhold(&mut a, Instant::from_millis(15)), vec![]);
    shuttle(&mut a, &mut b, Instant::from_millis(15));
    while let Some(ev) = b.poll_event() {
        if let crate::conn::Event::Request { id, .. } = ev {
            b.reply(id, Ok(Bytes::new()));
        }
    }
    shuttle(&mut a, &mut b, Instant::from_millis(15));
    let mut answered = Vec::new();
    while let Some(ev) = a.poll_event() {
        if let crate::conn::Event::Reply { id, tag, result } = ev {
            answered.extend(p.answered(Instant::from_millis(20), id, tag, result));
        }
    }
    assert_eq!(answered, vec![(1, Ok(Bytes::new()))]);
    // Handed over once published.
    assert_eq!(telemetry.report().durations, vec![]);
    p.publish_counts();
    let r = telemetry.report();
    assert_eq!(r.durations.len(), 1);
    assert_eq!(
        (r.durations[0].2.count, r.durations[0].2.sum_us),
        (1, 15_000)
    );
}
