//! Unit tests of one connection: handshake, requests, deadlines, pings, close; and the
//! linked pairs other modules' tests drive.

use super::*;
use crate::frame::MAX_FRAME_DEFAULT;
use crate::handshake::{HandshakeError, Role};
use crate::message::RejectReason;

fn params(side: Side, id: &str, pw: &str, wall: u64) -> ConnectionParams {
    ConnectionParams {
        side,
        identity: Identity {
            cluster: "c".into(),
            node_id: id.into(),
            instance: 1,
            role: if side == Side::Dialer {
                Role::Worker
            } else {
                Role::Control
            },
            listen: vec![],
            meta: String::new(),
            partitions: 64,
        },
        key: Key::derive(pw, "c", 2),
        worker_key: None,
        nonce: [id.len() as u8; 32],
        channel_binding: vec![],
        wall_origin_ns: wall,
    }
}

fn cfg() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

#[test]
fn an_idle_link_asks_for_no_read_buffer() {
    let c = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    assert_eq!(c.read_room(&[], 4096, 1 << 20), 0);
    assert_eq!(c.read_room(&[0, 0, 0], 4096, 1 << 20), 4096);
    let ws = ConnectionConfig {
        framing: Framing::Messages,
        ..cfg()
    };
    let c = Connection::new(ws, params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    assert_eq!(c.read_room(&[0, 0, 0], 4096, 1 << 20), 0);
}

/// Moves every pending transmit of `a` into `b` (and back) until both are quiet.
pub(crate) fn pump(a: &mut Connection, b: &mut Connection, now: Instant) {
    loop {
        let mut moved = false;
        while let Some(x) = a.poll_transmit() {
            b.handle_input(now, &x);
            moved = true;
        }
        while let Some(x) = b.poll_transmit() {
            a.handle_input(now, &x);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Two connections that authenticated each other at time zero.
pub(crate) fn linked() -> (Connection, Connection) {
    linked_at(crate::message::PROTOCOL_VERSION)
}

/// A linked pair whose listener speaks protocol versions up to `version_max`.
pub(crate) fn linked_at(version_max: u16) -> (Connection, Connection) {
    let t0 = Instant::ZERO;
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "pw", 0), t0);
    let l_cfg = ConnectionConfig {
        handshake: crate::handshake::HandshakeConfig {
            version_max,
            ..cfg().handshake
        },
        ..cfg()
    };
    let mut l = Connection::new(l_cfg, params(Side::Listener, "c1", "pw", 0), t0);
    pump(&mut d, &mut l, t0);
    // The handshake's last exchange is each end's first round-trip sample (zero here: no
    // time passes).
    assert!(matches!(&events(&mut d)[..],
        [Event::Authenticated(p), Event::RttMeasured(Duration::ZERO)] if p.node_id == "c1"));
    assert!(matches!(&events(&mut l)[..],
        [Event::Authenticated(p), Event::RttMeasured(Duration::ZERO)] if p.node_id == "w1"));
    (d, l)
}

#[test]
fn request_reply_round_trip() {
    let (mut d, mut l) = linked();
    let t = Instant::from_millis(10);
    let id = d
        .request(t, "echo", Bytes::from_static(b"hi"), Duration::from_secs(1))
        .expect("sent");
    assert_eq!(id, RequestId(1));
    pump(&mut d, &mut l, t);
    assert_eq!(
        events(&mut l),
        [Event::Request {
            id: 1,
            class: "echo".into(),
            body: Bytes::from_static(b"hi"),
            timeout: Duration::from_secs(1)
        }]
    );
    l.reply(1, Ok(Bytes::from_static(b"hi!")));
    l.reply(1, Ok(Bytes::from_static(b"twice is ignored")));
    pump(&mut d, &mut l, t);
    assert_eq!(
        events(&mut d),
        [Event::Reply {
            id,
            tag: NO_TAG,
            result: Ok(Bytes::from_static(b"hi!"))
        }]
    );
    assert_eq!(d.pending_requests(), 0);
}

#[test]
fn remote_error_reaches_the_caller() {
    let (mut d, mut l) = linked();
    let t = Instant::from_millis(1);
    let id = d
        .request(t, "x", Bytes::new(), Duration::from_secs(1))
        .expect("sent");
    pump(&mut d, &mut l, t);
    let _ = events(&mut l);
    l.reply(1, Err(RemoteError::new("unknown_class", "x")));
    pump(&mut d, &mut l, t);
    assert_eq!(
        events(&mut d),
        [Event::Reply {
            id,
            tag: NO_TAG,
            result: Err(RequestError::Remote(RemoteError::new("unknown_class", "x")))
        }]
    );
}

#[test]
fn request_past_its_deadline_ends_timeout_and_late_reply_is_dropped() {
    let (mut d, mut l) = linked();
    let t = Instant::from_millis(0);
    let id = d
        .request(t, "slow", Bytes::new(), Duration::from_millis(100))
        .expect("sent");
    pump(&mut d, &mut l, t);
    let _ = events(&mut l);
    assert_eq!(d.poll_timeout(), Some(Instant::from_millis(100)));
    d.handle_timeout(Instant::from_millis(99));
    assert_eq!(events(&mut d), []);
    d.handle_timeout(Instant::from_millis(100));
    assert_eq!(
        events(&mut d),
        [Event::Reply {
            id,
            tag: NO_TAG,
            result: Err(RequestError::Timeout)
        }]
    );
    l.reply(1, Ok(Bytes::new()));
    pump(&mut d, &mut l, Instant::from_millis(200));
    assert_eq!(events(&mut d), []);
    assert_eq!(d.stats().late_replies, 1);
}

#[test]
fn transport_loss_fails_every_pending_request_then_closes() {
    let (mut d, _l) = linked();
    let t = Instant::from_millis(1);
    let a = d
        .request(t, "a", Bytes::new(), Duration::from_secs(9))
        .expect("sent");
    let b = d
        .request(t, "b", Bytes::new(), Duration::from_secs(9))
        .expect("sent");
    d.handle_transport_closed(t, "reset by peer");
    assert_eq!(
        events(&mut d),
        [
            Event::Reply {
                id: a,
                tag: NO_TAG,
                result: Err(RequestError::ConnectionFailed)
            },
            Event::Reply {
                id: b,
                tag: NO_TAG,
                result: Err(RequestError::ConnectionFailed)
            },
            Event::Closed(Some(ConnError::TransportClosed("reset by peer".into()))),
        ]
    );
    assert_eq!(d.poll_timeout(), None);
    assert_eq!(
        d.request(t, "c", Bytes::new(), Duration::from_secs(1)),
        Err(RequestError::NotConnected)
    );
}

#[test]
fn a_handoff_close_ends_pending_requests_with_proxy_moved() {
    let (mut d, mut l) = linked();
    let t = Instant::from_millis(1);
    let a = d
        .request(t, "a", Bytes::new(), Duration::from_secs(9))
        .expect("sent");
    let moved = RequestError::ProxyMoved { to: "c2".into() };
    d.close_with("proxy moved to c2", moved.clone());
    assert_eq!(
        events(&mut d),
        [
            Event::Reply {
                id: a,
                tag: NO_TAG,
                result: Err(moved.clone())
            },
            Event::Closed(None),
        ]
    );
    assert_eq!(moved.code(), "proxy_moved");
    // The peer sees an orderly close with the reason.
    pump(&mut d, &mut l, t);
    let ev = events(&mut l);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Closed(Some(ConnError::PeerClosed(r))) if r.contains("c2"))
        ),
        "{ev:?}"
    );
}

#[test]
fn pings_keep_the_link_alive_and_measure_rtt_and_offset() {
    // The listener's wall clock runs 5 s ahead of the dialer's.
    let t0 = Instant::ZERO;
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "pw", 1_000_000_000), t0);
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 6_000_000_000), t0);
    pump(&mut d, &mut l, t0);
    let _ = (events(&mut d), events(&mut l));
    assert_eq!(d.poll_timeout(), Some(Instant::from_millis(1000)));
    d.handle_timeout(Instant::from_millis(1000));
    let ping = d.poll_transmit().expect("ping");
    l.handle_input(Instant::from_millis(1010), &ping);
    let pong = l.poll_transmit().expect("pong");
    d.handle_input(Instant::from_millis(1020), &pong);
    assert_eq!(d.stats().rtt, Some(Duration::from_millis(20)));
    assert_eq!(d.stats().clock_offset_ns, Some(5_000_000_000));
    assert_eq!(
        events(&mut d),
        [Event::RttMeasured(Duration::from_millis(20))]
    );
    // Keep exchanging pings every second: nobody idles out for 10 s.
    for s in 2..=10 {
        let now = Instant::from_millis(s * 1000);
        d.handle_timeout(now);
        l.handle_timeout(now);
        pump(&mut d, &mut l, now);
        assert!(d.is_established() && l.is_established(), "at {s}s");
    }
}

#[test]
fn silence_past_the_idle_timeout_kills_the_link() {
    let (mut d, _l) = linked();
    let id = d
        .request(Instant::ZERO, "a", Bytes::new(), Duration::from_secs(60))
        .expect("sent");
    let mut now = Instant::ZERO;
    // Follow the machine's own timer: pings at 1 s and 2 s, death at 3 s.
    let mut pings = 0;
    while let Some(t) = d.poll_timeout() {
        now = t;
        d.handle_timeout(now);
        while d.poll_transmit().is_some() {
            pings += 1;
        }
    }
    assert_eq!(now, Instant::from_millis(3000));
    assert_eq!(pings, 3, "two pings and the close message");
    assert_eq!(
        events(&mut d),
        [
            Event::Reply {
                id,
                tag: NO_TAG,
                result: Err(RequestError::ConnectionFailed)
            },
            Event::Closed(Some(ConnError::IdleTimeout(Duration::from_secs(3)))),
        ]
    );
}

#[test]
fn garbage_closes_with_a_typed_error() {
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    l.handle_input(Instant::ZERO, &[0, 0, 0, 3, 0xde, 0xad, 0xbe]);
    assert!(matches!(
        &events(&mut l)[..],
        [Event::Closed(Some(ConnError::Decode(_)))]
    ));
    assert!(l.is_closed());
    // Later input is ignored.
    l.handle_input(Instant::ZERO, &[1, 2, 3]);
    assert_eq!(events(&mut l), []);
}

#[test]
fn oversized_header_closes_without_buffering() {
    let (_d, mut l) = linked();
    l.handle_input(Instant::ZERO, &[0xff, 0xff, 0xff, 0xff, 0, 0]);
    assert_eq!(
        events(&mut l),
        [Event::Closed(Some(ConnError::Frame(
            FrameError::TooLarge {
                announced: u32::MAX,
                max: MAX_FRAME_DEFAULT
            }
        )))]
    );
    assert_eq!(l.buffered_input(), 0);
}

#[test]
fn before_authentication_a_frame_is_capped_at_the_handshake_maximum() {
    // An unauthenticated peer announcing 8 MiB is refused on the header: nothing is
    // buffered for it, whatever the configured maximum.
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    l.handle_input(Instant::ZERO, &(8u32 << 20).to_be_bytes());
    assert_eq!(
        events(&mut l),
        [Event::Closed(Some(ConnError::Frame(
            FrameError::TooLarge {
                announced: 8 << 20,
                max: HANDSHAKE_MAX_FRAME
            }
        )))]
    );
    assert_eq!(l.buffered_input(), 0);
    // The same over a message transport.
    let ws = ConnectionConfig {
        framing: Framing::Messages,
        ..cfg()
    };
    let mut l = Connection::new(ws, params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    l.handle_frame(Instant::ZERO, &vec![0u8; HANDSHAKE_MAX_FRAME as usize + 1]);
    assert!(matches!(
        &events(&mut l)[..],
        [Event::Closed(Some(ConnError::Frame(
            FrameError::TooLarge {
                max: HANDSHAKE_MAX_FRAME,
                ..
            }
        )))]
    ));
    // Once authenticated, frames up to the configured maximum pass.
    let (mut d, mut l) = linked();
    let big = Bytes::from(vec![7u8; 1 << 20]);
    d.request(Instant::ZERO, "big", big.clone(), Duration::from_secs(1))
        .expect("sent");
    pump(&mut d, &mut l, Instant::ZERO);
    assert!(matches!(&events(&mut l)[..], [Event::Request { body, .. }] if *body == big));
}

#[test]
fn a_tls_answer_to_plain_bytes_says_which_transport_to_use() {
    // What a TLS server sends back to a plain hello: an alert record.
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "pw", 0), Instant::ZERO);
    d.handle_input(Instant::ZERO, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
    let evs = events(&mut d);
    assert_eq!(
        evs,
        [Event::Closed(Some(ConnError::Frame(
            FrameError::ForeignProtocol(crate::frame::ForeignProtocol::Tls)
        )))]
    );
    let Event::Closed(Some(e)) = &evs[0] else {
        unreachable!()
    };
    assert_eq!(e.code(), "transport_mismatch");
    assert!(
        e.to_string()
            .contains("is this a TLS port? try ;transport=tls")
    );
}

#[test]
fn the_peer_is_named_by_its_claim_until_it_authenticates() {
    let t0 = Instant::ZERO;
    // A wrong password: the listener knows only the claimed id, for its logs.
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "bad", 0), t0);
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), t0);
    assert_eq!((l.claimed_peer(), l.peer().is_none()), (None, true));
    pump(&mut d, &mut l, t0);
    assert_eq!((l.claimed_peer(), l.peer().is_none()), (Some("w1"), true));
    // The right one: both ends know the authenticated peer.
    let (d, l) = linked();
    assert_eq!(l.peer().map(|p| p.node_id.as_str()), Some("w1"));
    assert_eq!(l.claimed_peer(), Some("w1"));
    assert_eq!(d.peer().map(|p| p.node_id.as_str()), Some("c1"));
    assert_eq!(d.claimed_peer(), Some("c1"));
}

#[test]
fn wrong_password_closes_both_sides_with_typed_errors() {
    let t0 = Instant::ZERO;
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "bad", 0), t0);
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), t0);
    pump(&mut d, &mut l, t0);
    assert_eq!(events(&mut l), []);
    let t = Instant::from_millis(500);
    assert_eq!(l.poll_timeout(), Some(t));
    l.handle_timeout(t);
    pump(&mut d, &mut l, t);
    assert_eq!(
        events(&mut l),
        [Event::Closed(Some(ConnError::Handshake(
            HandshakeError::AuthFailed
        )))]
    );
    assert!(matches!(
        &events(&mut d)[..],
        [Event::Closed(Some(ConnError::Handshake(
            HandshakeError::Rejected {
                reason: RejectReason::AuthFailed,
                ..
            }
        )))]
    ));
}

#[test]
fn incoming_request_limit_answers_busy() {
    let t0 = Instant::ZERO;
    let small = ConnectionConfig {
        max_incoming_requests: 1,
        ..cfg()
    };
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "pw", 0), t0);
    let mut l = Connection::new(small, params(Side::Listener, "c1", "pw", 0), t0);
    pump(&mut d, &mut l, t0);
    let _ = (events(&mut d), events(&mut l));
    let _a = d
        .request(t0, "a", Bytes::new(), Duration::from_secs(1))
        .expect("sent");
    let b = d
        .request(t0, "b", Bytes::new(), Duration::from_secs(1))
        .expect("sent");
    pump(&mut d, &mut l, t0);
    assert_eq!(events(&mut l).len(), 1);
    assert_eq!(
        events(&mut d),
        [Event::Reply {
            id: b,
            tag: NO_TAG,
            result: Err(RequestError::Remote(RemoteError::new(
                "busy",
                "too many requests in flight"
            )))
        }]
    );
}

#[test]
fn orderly_close_reaches_the_peer() {
    let (mut d, mut l) = linked();
    let id = d
        .request(Instant::ZERO, "a", Bytes::new(), Duration::from_secs(1))
        .expect("sent");
    l.close("shutting down");
    pump(&mut d, &mut l, Instant::ZERO);
    assert_eq!(events(&mut l), [Event::Closed(None)]);
    assert_eq!(
        events(&mut d),
        [
            Event::Reply {
                id,
                tag: NO_TAG,
                result: Err(RequestError::ConnectionFailed)
            },
            Event::Closed(Some(ConnError::PeerClosed("shutting down".into()))),
        ]
    );
}

#[test]
fn message_framing_carries_one_body_per_frame() {
    let mc = ConnectionConfig {
        framing: Framing::Messages,
        ..cfg()
    };
    let t0 = Instant::ZERO;
    let mut d = Connection::new(mc.clone(), params(Side::Dialer, "w1", "pw", 0), t0);
    let mut l = Connection::new(mc, params(Side::Listener, "c1", "pw", 0), t0);
    loop {
        let mut moved = false;
        while let Some(x) = d.poll_transmit() {
            assert!(Message::decode(&x).is_ok());
            l.handle_frame(t0, &x);
            moved = true;
        }
        while let Some(x) = l.poll_transmit() {
            d.handle_frame(t0, &x);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(d.is_established() && l.is_established());
}

#[test]
fn oversized_message_from_a_message_transport_is_a_frame_error() {
    let (mut d, _l) = linked();
    let id = d
        .request(Instant::ZERO, "a", Bytes::new(), Duration::from_secs(1))
        .expect("sent");
    d.handle_oversized_frame(Instant::ZERO, 9_000_000);
    assert_eq!(
        events(&mut d),
        [
            Event::Reply {
                id,
                tag: NO_TAG,
                result: Err(RequestError::ConnectionFailed)
            },
            Event::Closed(Some(ConnError::Frame(FrameError::TooLarge {
                announced: 9_000_000,
                max: MAX_FRAME_DEFAULT
            }))),
        ]
    );
}

#[test]
fn oversized_request_is_refused_locally() {
    let (mut d, _l) = linked();
    let small = vec![0u8; MAX_FRAME_DEFAULT as usize];
    assert!(matches!(
        d.request(Instant::ZERO, "a", small.into(), Duration::from_secs(1)),
        Err(RequestError::PayloadTooLarge { .. })
    ));
}

/// Delivers what each end sends to the other `one_way` later, from `now`, until both are
/// quiet; returns the time of the last delivery.
fn exchange_over(
    d: &mut Connection,
    l: &mut Connection,
    mut now: Instant,
    one_way: Duration,
) -> Instant {
    loop {
        let from_d: Vec<Bytes> = std::iter::from_fn(|| d.poll_transmit()).collect();
        let from_l: Vec<Bytes> = std::iter::from_fn(|| l.poll_transmit()).collect();
        if from_d.is_empty() && from_l.is_empty() {
            return now;
        }
        now = now + one_way;
        from_d.iter().for_each(|x| l.handle_input(now, x));
        from_l.iter().for_each(|x| d.handle_input(now, x));
    }
}

/// A pair linked at time zero over a path of `one_way` each way; the time they linked.
fn linked_over(one_way: Duration) -> (Connection, Connection, Instant) {
    let mut d = Connection::new(cfg(), params(Side::Dialer, "w1", "pw", 0), Instant::ZERO);
    let mut l = Connection::new(cfg(), params(Side::Listener, "c1", "pw", 0), Instant::ZERO);
    let now = exchange_over(&mut d, &mut l, Instant::ZERO, one_way);
    assert!(d.is_established() && l.is_established());
    (d, l, now)
}

#[test]
fn over_a_long_path_each_end_knows_its_round_trip_and_window_at_link_up() {
    // 20 ms each way: every hop of the handshake takes that long.
    let (mut d, mut l, _) = linked_over(Duration::from_millis(20));
    let rtt = Duration::from_millis(40);
    for c in [&mut d, &mut l] {
        assert_eq!((c.stats().rtt, c.stats().srtt), (Some(rtt), Some(rtt)));
        assert!(
            matches!(&events(c)[..], [Event::Authenticated(_), Event::RttMeasured(r)] if *r == rtt)
        );
        // No ping yet, and the bulk window already holds 40 ms at 1 GB/s (quiet), where
        // the fixed 512 KiB would hold 13 MB/s.
        assert_eq!(
            c.bulk_credit().window(),
            40 * crate::lanes::credit::RATE_QUIET
        );
    }
}

#[test]
fn the_first_pings_answer_replaces_the_handshakes_round_trip_and_later_ones_are_smoothed() {
    // A handshake that waited (3 ms each way: say, behind a crowd of arrivals).
    let (mut d, mut l, up) = linked_over(Duration::from_millis(3));
    for c in [&d, &l] {
        assert_eq!(c.stats().srtt, Some(Duration::from_millis(6)));
    }
    // One interval later both ends ping (the worker every interval, the control node at
    // its first); on the quiet path each answer takes 100 µs.
    let ping_at = up + Duration::from_secs(1);
    d.handle_timeout(ping_at);
    l.handle_timeout(ping_at);
    exchange_over(&mut d, &mut l, ping_at, Duration::from_micros(50));
    for c in [&d, &l] {
        let quiet = Duration::from_micros(100);
        // Not 6 ms * 7/8 + 100 µs / 8: the first answer starts the smoothing over.
        assert_eq!((c.stats().rtt, c.stats().srtt), (Some(quiet), Some(quiet)));
        // Under 1 ms: the fixed window again.
        assert_eq!(c.bulk_credit().window(), crate::lanes::credit::WINDOW_QUIET);
    }
    // The worker's next answer (900 µs; it sends a heartbeat, which needs none, at the
    // interval between) is smoothed in.
    for i in 1..=2 {
        let next = ping_at + Duration::from_secs(i);
        d.handle_timeout(next);
        l.handle_timeout(next);
        exchange_over(&mut d, &mut l, next, Duration::from_micros(450));
    }
    assert_eq!(d.stats().rtt, Some(Duration::from_micros(900)));
    assert_eq!(d.stats().srtt, Some(Duration::from_micros(200)));
}
