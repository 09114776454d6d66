//! A link's liveness: when we ping, when the link is dead, and what a pong measures.
//!
//! Both ends declare the link dead when nothing arrived for the idle timeout. Up to
//! protocol 2 both ends also ping every ping interval, so each end of an idle link wakes
//! three times per interval (its ping, the peer's ping, its pong). From protocol 3
//! ([`ONE_PINGER_VERSION`]) one end pings every interval and the other answers, which
//! keeps the answering end's input as frequent as the pinging end's, so failure
//! detection takes as long as before; the answering end pings only once at the first
//! interval (its clock offset, and a round trip measured on a quiet link that replaces
//! the handshake's provisional one) and then every [`RTT_REFRESH`] intervals (its round
//! trip and clock offset stay fresh). The pinging end is the one that holds fewer
//! links: a worker or an admin client rather than a control node (a control node
//! serves thousands of workers), the dialer when both have the same role.
//!
//! From protocol 4 ([`HEARTBEAT_VERSION`]) the pinging end asks for an answer only when it
//! needs one: while it heard from the peer recently enough that, if it asks only at its
//! next ping, the answer still has half a ping interval (or more) before the idle timeout,
//! it sends a [`Heartbeat`](crate::message::Message::Heartbeat) instead, which the peer
//! does not answer, never two in a row (see [`Keepalive::due`]). With the defaults (ping every 5 s, idle
//! timeout 15 s) an idle link's pinging end sends a ping and a heartbeat in turn, so the
//! answering end (a control node) writes one pong every 10 s instead of every 5 s, and
//! the pinging end hears it every 10 s: an answer may be 5 s late before the link dies
//! (before: 10 s). Failure detection keeps its bound: either end declares the link dead
//! after the idle timeout of silence, and the answering end still hears something every
//! ping interval.

use std::time::Duration;

use crate::handshake::{Role, Side};
use crate::time::Instant;

/// The first protocol version where only one end of a link pings every interval.
pub const ONE_PINGER_VERSION: u16 = 3;

/// The answering end pings every this many ping intervals.
pub const RTT_REFRESH: u32 = 12;

/// The first protocol version where the pinging end sends heartbeats, which need no
/// answer, when it needs none (see the module docs).
pub const HEARTBEAT_VERSION: u16 = 4;

/// Whether we may send heartbeats on a link of protocol `version` where we ping every
/// interval (`every_interval`, see [`pings_every_interval`]): the answering end's own
/// pings (every [`RTT_REFRESH`] intervals) are there to measure, so they always ask.
#[must_use]
pub fn sends_heartbeats(version: u16, every_interval: bool) -> bool {
    version >= HEARTBEAT_VERSION && every_interval
}

/// Whether we ping every interval on a link of protocol `version` where we are `side`
/// with role `ours` and the peer has role `peer` (see the module docs).
#[must_use]
pub fn pings_every_interval(version: u16, side: Side, ours: Role, peer: Role) -> bool {
    if version < ONE_PINGER_VERSION {
        return true;
    }
    match (ours == Role::Control, peer == Role::Control) {
        (false, true) => true,
        (true, false) => false,
        _ => side == Side::Dialer,
    }
}

/// What a timer wake-up asks of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing arrived for this long, the idle timeout or more: the link is dead.
    Dead(Duration),
    /// Send ping number `seq`.
    Ping(u64),
    /// Send a heartbeat (it needs no answer).
    Heartbeat,
    /// Nothing yet.
    Nothing,
}

/// One link's pings and idle deadline. See the module docs.
#[derive(Debug, Clone)]
pub struct Keepalive {
    ping_interval: Duration,
    idle_timeout: Duration,
    /// Our pings after the next one come this far apart.
    period: Duration,
    last_rx: Instant,
    next_ping: Instant,
    seq: u64,
    /// Our last ping not answered yet, and when it left.
    outstanding: Option<(u64, Instant)>,
    /// We may send heartbeats instead of pings (see [`sends_heartbeats`]).
    heartbeats: bool,
    /// Our last keepalive was a heartbeat: the next one asks.
    last_was_heartbeat: bool,
    /// A ping of ours was answered (see [`answered_before`](Self::answered_before)).
    answered: bool,
}

impl Keepalive {
    /// A link opened at `now` (pings start once it is [`established`](Self::established)).
    #[must_use]
    pub fn new(ping_interval: Duration, idle_timeout: Duration, now: Instant) -> Self {
        Keepalive {
            ping_interval,
            idle_timeout,
            period: ping_interval,
            last_rx: now,
            next_ping: now + ping_interval,
            seq: 0,
            outstanding: None,
            heartbeats: false,
            last_was_heartbeat: false,
            answered: false,
        }
    }

    /// The link is up at `now`: the first ping goes one interval later, then every
    /// interval if `every_interval`, else every [`RTT_REFRESH`] intervals; with
    /// `heartbeats` (see [`sends_heartbeats`]) a ping that needs no answer is a heartbeat.
    pub fn established(&mut self, now: Instant, every_interval: bool, heartbeats: bool) {
        self.heartbeats = heartbeats;
        self.last_rx = now;
        self.next_ping = now + self.ping_interval;
        self.period = if every_interval {
            self.ping_interval
        } else {
            self.ping_interval.saturating_mul(RTT_REFRESH)
        };
    }

    /// Something arrived at `now`.
    pub fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// When [`due`](Self::due) has something to say next.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        (self.last_rx + self.idle_timeout).min(self.next_ping)
    }

    /// At a timer wake-up: whether the link is dead, else whether a ping is due (then it
    /// is counted as sent at `now`).
    ///
    /// A heartbeat goes instead (when allowed, after the first ping, and never two in a
    /// row) while the link can wait for our next ping to ask: `idle + ping interval + half
    /// a ping interval < idle timeout`, so an answer asked for at the next ping has at
    /// least half an interval before the idle timeout. The threshold sits half an interval
    /// from the silences a steady link sees at its pings (multiples of the interval, less
    /// a round trip), so timer jitter does not flip the choice. One heartbeat at most
    /// between two asking pings keeps a steady link's silence at two intervals, so an
    /// answer may be late by the idle timeout less two intervals (a long idle timeout
    /// keeps most of its room for a slow answer); a run of heartbeats would save little
    /// more than the first one does.
    pub fn due(&mut self, now: Instant) -> Due {
        let idle = now.saturating_duration_since(self.last_rx);
        if idle >= self.idle_timeout {
            return Due::Dead(idle);
        }
        if now < self.next_ping {
            return Due::Nothing;
        }
        self.next_ping = now + self.period;
        let can_wait = idle + self.ping_interval + self.ping_interval / 2 < self.idle_timeout;
        if self.heartbeats && self.seq > 0 && !self.last_was_heartbeat && can_wait {
            self.last_was_heartbeat = true;
            return Due::Heartbeat;
        }
        self.last_was_heartbeat = false;
        self.seq += 1;
        self.outstanding = Some((self.seq, now));
        Due::Ping(self.seq)
    }

    /// Pong `seq` arrived at `now`: the round trip, if it answers our last ping.
    pub fn pong(&mut self, now: Instant, seq: u64) -> Option<Duration> {
        match self.outstanding {
            Some((s, sent)) if s == seq => {
                self.outstanding = None;
                self.answered = true;
                Some(now.saturating_duration_since(sent))
            }
            _ => None,
        }
    }

    /// Whether a ping of ours was answered before: the first answer's round trip is the
    /// link's first measured on a quiet link (the handshake's may have waited behind a
    /// crowd of arrivals), so it replaces the smoothed round trip instead of joining it.
    #[must_use]
    pub fn answered_before(&self) -> bool {
        self.answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn before_protocol_3_both_ends_ping_every_interval() {
        for v in [1, 2] {
            for side in [Side::Dialer, Side::Listener] {
                for ours in [Role::Control, Role::Worker, Role::Admin] {
                    for peer in [Role::Control, Role::Worker, Role::Admin] {
                        assert!(pings_every_interval(v, side, ours, peer));
                    }
                }
            }
        }
    }

    #[test]
    fn from_protocol_3_the_end_that_is_not_a_control_node_pings() {
        use Role::*;
        use Side::*;
        // Exactly one end of every link pings every interval.
        let cases = [
            (Dialer, Worker, Control, true),
            (Listener, Control, Worker, false),
            (Dialer, Control, Worker, false),
            (Listener, Worker, Control, true),
            (Dialer, Admin, Control, true),
            (Listener, Control, Admin, false),
            (Dialer, Control, Control, true),
            (Listener, Control, Control, false),
            (Dialer, Worker, Worker, true),
            (Listener, Worker, Worker, false),
            (Dialer, Admin, Worker, true),
            (Listener, Worker, Admin, false),
        ];
        for (side, ours, peer, pings) in cases {
            assert_eq!(
                pings_every_interval(3, side, ours, peer),
                pings,
                "{side:?} {ours:?} towards {peer:?}"
            );
        }
    }

    #[test]
    fn the_pinging_end_pings_every_interval_and_measures_each_pong() {
        let mut k = Keepalive::new(S, 3 * S, at(0));
        k.established(at(100), true, false);
        assert_eq!(k.deadline(), at(1100));
        assert_eq!(k.due(at(1000)), Due::Nothing);
        assert_eq!(k.due(at(1100)), Due::Ping(1));
        assert_eq!(k.deadline(), at(2100));
        // A pong of another ping measures nothing; ours does, once.
        assert_eq!(k.pong(at(1110), 7), None);
        k.received(at(1120));
        assert_eq!(k.pong(at(1120), 1), Some(Duration::from_millis(20)));
        assert_eq!(k.pong(at(1130), 1), None);
        assert_eq!(k.due(at(2100)), Due::Ping(2));
        assert_eq!(k.deadline(), at(3100));
    }

    #[test]
    fn the_answering_end_pings_at_the_first_interval_then_every_refresh() {
        let mut k = Keepalive::new(S, 3 * S, at(0));
        k.established(at(0), false, false);
        // The peer's pings keep the link alive.
        k.received(at(900));
        assert_eq!(k.due(at(1000)), Due::Ping(1));
        // Next ping twelve intervals later; meanwhile only the idle deadline wakes us,
        // and it moves with every ping of the peer.
        assert_eq!(k.deadline(), at(3900));
        for s in 2..=10 {
            k.received(at(s * 1000 - 100));
            assert_eq!(k.deadline(), at(s * 1000 + 2900), "at {s} s");
        }
        k.received(at(12_900));
        assert_eq!(k.deadline(), at(13_000));
        assert_eq!(k.due(at(13_000)), Due::Ping(2));
        assert_eq!(k.deadline(), at(15_900));
    }

    /// The pinging end's sends over `secs` intervals of `ping` (in ms, from a link up at
    /// 0) when every ping is answered at once: `P` a ping, `h` a heartbeat.
    fn sends_with_answers(ping: u64, idle: u64, heartbeats: bool, secs: u64) -> String {
        let ms = Duration::from_millis;
        let mut k = Keepalive::new(ms(ping), ms(idle), at(0));
        k.established(at(0), true, heartbeats);
        let mut out = String::new();
        for i in 1..=secs {
            let now = at(i * ping);
            assert_eq!(k.deadline(), now, "interval {i}");
            match k.due(now) {
                Due::Ping(seq) => {
                    out.push('P');
                    k.received(at(i * ping + 3));
                    assert_eq!(k.pong(at(i * ping + 3), seq), Some(ms(3)));
                }
                Due::Heartbeat => out.push('h'),
                other => panic!("interval {i}: {other:?}"),
            }
        }
        out
    }

    #[test]
    fn with_heartbeats_the_pinging_end_asks_only_when_the_idle_timeout_needs_it() {
        // Defaults (5 s, 15 s): a ping, then a heartbeat, in turn; the first always asks.
        assert_eq!(sends_with_answers(5000, 15_000, true, 8), "PhPhPhPh");
        // Idle timeout 4 or 10 intervals: still one heartbeat at most between two pings.
        assert_eq!(sends_with_answers(1000, 4000, true, 7), "PhPhPhP");
        assert_eq!(sends_with_answers(1000, 10_000, true, 7), "PhPhPhP");
        // Idle timeout 2 intervals (or a round trip that eats the half interval): every
        // ping asks.
        assert_eq!(sends_with_answers(1000, 2000, true, 4), "PPPP");
        assert_eq!(sends_with_answers(1000, 2497, true, 4), "PPPP");
        assert_eq!(sends_with_answers(1000, 2498, true, 4), "PhPh");
        // Without heartbeats (an older peer, or the answering end): pings only.
        assert_eq!(sends_with_answers(5000, 15_000, false, 4), "PPPP");
    }

    #[test]
    fn with_heartbeats_any_input_counts_and_an_unanswered_ping_is_asked_again() {
        let mut k = Keepalive::new(5 * S, 15 * S, at(0));
        k.established(at(0), true, true);
        assert_eq!(k.due(at(5000)), Due::Ping(1));
        // No pong, but something else arrived at 6 s (a request): the ping at 10 s can
        // wait.
        k.received(at(6000));
        assert_eq!(k.due(at(10_000)), Due::Heartbeat);
        // Silence since 6 s: 9 s at the next ping, too long to wait another interval (and
        // never two heartbeats in a row).
        assert_eq!(k.due(at(15_000)), Due::Ping(2));
        // Ping 1's late pong still measures nothing; ping 2's does.
        k.received(at(16_000));
        assert_eq!(k.pong(at(16_000), 1), None);
        assert_eq!(k.pong(at(16_000), 2), Some(S));
        assert_eq!(k.due(at(20_000)), Due::Heartbeat);
        // No answer to the ping at 25 s: dead at 15 s of silence, as without heartbeats.
        assert_eq!(k.due(at(25_000)), Due::Ping(3));
        assert_eq!(k.deadline(), at(30_000));
        assert_eq!(k.due(at(29_999)), Due::Nothing);
        assert_eq!(k.due(at(31_000)), Due::Dead(15 * S));
    }

    #[test]
    fn silence_for_the_idle_timeout_is_death_whoever_pings() {
        for every_interval in [true, false] {
            let mut k = Keepalive::new(S, 3 * S, at(0));
            k.established(at(0), every_interval, false);
            k.received(at(500));
            assert_eq!(k.due(at(1000)), Due::Ping(1));
            assert_eq!(k.deadline(), at(if every_interval { 2000 } else { 3500 }));
            assert_eq!(
                k.due(at(3499)),
                if every_interval {
                    Due::Ping(2)
                } else {
                    Due::Nothing
                }
            );
            assert_eq!(k.deadline(), at(3500));
            assert_eq!(k.due(at(3500)), Due::Dead(3 * S));
        }
    }
}

/// The pings of two [`Connection`](crate::conn::Connection)s, through their frames.
#[cfg(test)]
mod link_tests {
    use bytes::Bytes;

    use crate::auth::Key;
    use crate::conn::{Connection, ConnectionConfig, ConnectionParams, Event};
    use crate::handshake::{HandshakeConfig, Identity, Role, Side};
    use crate::message::Message;
    use crate::time::Instant;
    use std::time::Duration;

    fn conn(side: Side, role: Role, version_max: u16) -> Connection {
        let config = ConnectionConfig {
            ping_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
            handshake: HandshakeConfig {
                version_max,
                ..Default::default()
            },
            ..Default::default()
        };
        let id = if side == Side::Dialer { "d" } else { "l" };
        let params = ConnectionParams {
            side,
            identity: Identity {
                cluster: "c".into(),
                node_id: id.into(),
                instance: 1,
                role,
                listen: vec![],
                meta: String::new(),
                partitions: 64,
            },
            key: Key::derive("pw", "c", 2),
            worker_key: None,
            nonce: [id.len() as u8; 32],
            channel_binding: vec![],
            wall_origin_ns: 0,
        };
        Connection::new(config, params, Instant::ZERO)
    }

    type Kinds = Vec<&'static str>;

    /// The kinds of the messages in `frames` (stream framing).
    fn kinds(frames: &[Bytes]) -> Vec<&'static str> {
        let mut all: Vec<u8> = frames.iter().flat_map(|b| b.to_vec()).collect();
        let mut out = Vec::new();
        while all.len() >= 4 {
            let n = u32::from_be_bytes([all[0], all[1], all[2], all[3]]) as usize;
            let body: Vec<u8> = all.drain(..4 + n).skip(4).collect();
            out.push(Message::decode(&body).expect("a message").kind());
        }
        out
    }

    /// Runs both ends second by second for `secs` seconds; per second, the kinds each
    /// end sent (dialer, listener).
    fn run(d: &mut Connection, l: &mut Connection, secs: u64) -> Vec<(Kinds, Kinds)> {
        let mut seconds = Vec::new();
        for s in 1..=secs {
            let now = Instant::from_millis(s * 1000);
            d.handle_timeout(now);
            l.handle_timeout(now);
            let (mut from_d, mut from_l) = (Vec::new(), Vec::new());
            loop {
                let a: Vec<Bytes> = std::iter::from_fn(|| d.poll_transmit()).collect();
                let b: Vec<Bytes> = std::iter::from_fn(|| l.poll_transmit()).collect();
                if a.is_empty() && b.is_empty() {
                    break;
                }
                a.iter().for_each(|x| l.handle_input(now, x));
                b.iter().for_each(|x| d.handle_input(now, x));
                from_d.extend(kinds(&a));
                from_l.extend(kinds(&b));
            }
            seconds.push((from_d, from_l));
        }
        seconds
    }

    fn link(d_role: Role, l_role: Role, l_version_max: u16) -> (Connection, Connection) {
        let mut d = conn(Side::Dialer, d_role, crate::message::PROTOCOL_VERSION);
        let mut l = conn(Side::Listener, l_role, l_version_max);
        // The handshake, at time zero.
        loop {
            let a: Vec<Bytes> = std::iter::from_fn(|| d.poll_transmit()).collect();
            let b: Vec<Bytes> = std::iter::from_fn(|| l.poll_transmit()).collect();
            if a.is_empty() && b.is_empty() {
                break;
            }
            a.iter().for_each(|x| l.handle_input(Instant::ZERO, x));
            b.iter().for_each(|x| d.handle_input(Instant::ZERO, x));
        }
        assert!(d.is_established() && l.is_established());
        (d, l)
    }

    #[test]
    fn on_a_protocol_3_link_the_worker_pings_and_the_control_node_answers() {
        // A protocol-4 worker with a protocol-3 control node: no heartbeats.
        let (mut d, mut l) = link(Role::Worker, Role::Control, 3);
        let seconds = run(&mut d, &mut l, 26);
        for (i, (from_d, from_l)) in seconds.iter().enumerate() {
            let s = i + 1;
            // The control node's own pings: at 1 s, then every 12 s.
            let (want_d, want_l): (&[&str], &[&str]) = match s {
                1 | 13 | 25 => (&["ping", "pong"], &["ping", "pong"]),
                _ => (&["ping"], &["pong"]),
            };
            assert_eq!((&from_d[..], &from_l[..]), (want_d, want_l), "at {s} s");
        }
        assert!(d.is_established() && l.is_established());
        // The control node measured round trips at the handshake and at its own pings
        // only.
        let rtts = std::iter::from_fn(|| l.poll_event())
            .filter(|e| matches!(e, Event::RttMeasured(_)))
            .count();
        assert_eq!(rtts, 1 + 3);
    }

    #[test]
    fn on_a_protocol_4_link_the_control_node_answers_every_other_second() {
        let (mut d, mut l) = link(Role::Worker, Role::Control, 4);
        assert_eq!(d.peer().map(|p| p.version), Some(4));
        let seconds = run(&mut d, &mut l, 26);
        for (i, (from_d, from_l)) in seconds.iter().enumerate() {
            let s = i + 1;
            // The worker asks on odd seconds (its silence is then 2 s of the 3 s idle
            // timeout), else sends a heartbeat; the control node pings at 1 s, then every
            // 12 s, as on protocol 3.
            let (want_d, want_l): (&[&str], &[&str]) = match s {
                1 | 13 | 25 => (&["ping", "pong"], &["ping", "pong"]),
                _ if s % 2 == 1 => (&["ping"], &["pong"]),
                _ => (&["heartbeat"], &[]),
            };
            assert_eq!((&from_d[..], &from_l[..]), (want_d, want_l), "at {s} s");
        }
        assert!(d.is_established() && l.is_established());
        // The worker measured a round trip at the handshake and at each of its 13 pings.
        let rtts = std::iter::from_fn(|| d.poll_event())
            .filter(|e| matches!(e, Event::RttMeasured(_)))
            .count();
        assert_eq!(rtts, 1 + 13);
    }

    #[test]
    fn with_heartbeats_each_end_still_sees_a_silent_peer_die_at_the_idle_timeout() {
        // The control node goes silent after its pong at 3 s: dead for the worker at 6 s.
        let (mut d, mut l) = link(Role::Worker, Role::Control, 4);
        let _ = run(&mut d, &mut l, 3);
        for ms in [4000, 5000, 5999] {
            d.handle_timeout(Instant::from_millis(ms));
            assert!(d.is_established(), "at {ms} ms");
        }
        assert_eq!(d.poll_timeout(), Some(Instant::from_millis(6000)));
        d.handle_timeout(Instant::from_millis(6000));
        assert!(d.is_closed());
        // The worker goes silent after its heartbeat at 4 s: dead for the control at 7 s.
        let (mut d, mut l) = link(Role::Worker, Role::Control, 4);
        let _ = run(&mut d, &mut l, 4);
        for ms in [5000, 6000, 6999] {
            l.handle_timeout(Instant::from_millis(ms));
            assert!(l.is_established(), "at {ms} ms");
        }
        assert_eq!(l.poll_timeout(), Some(Instant::from_millis(7000)));
        l.handle_timeout(Instant::from_millis(7000));
        assert!(l.is_closed());
    }

    #[test]
    fn a_control_node_that_dials_a_worker_answers_its_pings() {
        let (mut d, mut l) = link(Role::Control, Role::Worker, 3);
        let seconds = run(&mut d, &mut l, 3);
        assert_eq!(
            seconds,
            [
                (vec!["ping", "pong"], vec!["ping", "pong"]),
                (vec!["pong"], vec!["ping"]),
                (vec!["pong"], vec!["ping"]),
            ]
        );
    }

    #[test]
    fn a_protocol_2_peer_gets_pings_from_both_ends_every_interval() {
        let (mut d, mut l) = link(Role::Worker, Role::Control, 2);
        assert_eq!(d.peer().map(|p| p.version), Some(2));
        for (i, (from_d, from_l)) in run(&mut d, &mut l, 14).iter().enumerate() {
            assert_eq!(
                (&from_d[..], &from_l[..]),
                (&["ping", "pong"][..], &["ping", "pong"][..]),
                "at {} s",
                i + 1
            );
        }
    }

    #[test]
    fn the_answering_end_still_sees_a_silent_peer_die_at_the_idle_timeout() {
        let (mut d, mut l) = link(Role::Worker, Role::Control, 3);
        let _ = run(&mut d, &mut l, 2);
        // The worker goes silent after its ping at 2 s: dead for the control node at 5 s.
        for ms in [3000, 4000, 4999] {
            l.handle_timeout(Instant::from_millis(ms));
            assert!(l.is_established(), "at {ms} ms");
        }
        assert_eq!(l.poll_timeout(), Some(Instant::from_millis(5000)));
        l.handle_timeout(Instant::from_millis(5000));
        assert!(l.is_closed());
    }
}
