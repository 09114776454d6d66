//! A `Connection` (or a bare `handshake::Handshake`) talking to the fuzzer.
//!
//! Input: a flags byte, then ops (see [`nkcluster_fuzz::Flags`] and [`nkcluster_fuzz::Op`]):
//! peer bytes in fuzzer-chosen chunks at increasing times, timer ticks, jumps to
//! `poll_timeout`, and our application's requests, replies and closes. Outputs are drained
//! after every op.
//!
//! Modes:
//! - **raw** (default): the fuzzer is the peer from the first byte. It does not know the
//!   key, so it must never authenticate.
//! - **established** (flag bit 2): a genuine peer with the right key authenticates first,
//!   then the fuzzer speaks for it on the established link.
//! - **direct** (flag bit 5): drives `handshake::Handshake` with decoded message bodies.
//! - **roles** (flag bit 6): the role binding. The target is a control node (either
//!   side) that accepts the worker secret for the worker role; the peer is a genuine
//!   `Handshake` that knows only the worker secret and claims the role the fuzzer picks
//!   (the byte after the flags). Its messages reach the target one per input op, XOR-ed
//!   with the op's bytes (tampering when any is non-zero); ticks move time. The target
//!   never authenticates the peer as anything but a worker; untampered and in time, a
//!   worker claim authenticates and a control or admin claim fails.
//!
//! Connection invariants: at most one `Closed`, and nothing at all (events, transmits)
//! after it; every request issued ends with exactly one `Reply` before `Closed`
//! (`timeout` never before its deadline); `Closed(None)` exactly when we closed;
//! `Authenticated` never comes from the fuzzer; every transmit is whole frames within the
//! maximum that decode as messages of the current phase (no link message before
//! authentication; a listener never proves itself to an unauthenticated dialer);
//! `buffered_input() < max_frame + 4`; after `handle_timeout(now)`, `poll_timeout()` is
//! later than `now` or `None` (no busy loop); `None` once closed; peer requests are
//! announced once per id, within the incoming limit.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nkcluster_core::auth::Key;
use nkcluster_core::conn::{Connection, Event, Framing, RequestError, RequestId};
use nkcluster_core::frame::{FrameDecoder, HEADER_LEN};
use nkcluster_core::handshake::Role;
use nkcluster_core::handshake::{
    Handshake, HandshakeConfig, HandshakeError, MAX_NAME_LEN, Outcome, Side,
};
use nkcluster_core::message::{Message, RemoteError};
use nkcluster_core::time::Instant;
use nkcluster_fuzz::{
    Flags, Op, PEER_NONCE, Reader, TARGET_KEY, TARGET_NONCE, WORKER_KEY, conn_config, identity,
    opposite, params,
};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let flags = Flags::from_byte(r.u8().unwrap_or(0));
    if flags.roles {
        run_roles(flags, &mut r);
    } else if flags.direct {
        run_handshake(flags, &mut r);
    } else {
        run_connection(flags, &mut r);
    }
});

// ----- Connection -----

struct Driver {
    conn: Connection,
    flags: Flags,
    now: Instant,
    /// `Closed` was seen.
    closed: bool,
    /// We called `close()` on an open connection.
    we_closed: bool,
    /// `Authenticated` was seen (only during the genuine setup).
    authenticated: bool,
    /// Our requests awaiting their `Reply` event, with their deadlines.
    outstanding: BTreeMap<RequestId, Instant>,
    /// The peer's requests we have not answered.
    incoming: Vec<u64>,
    hellos_sent: usize,
    proofs_sent: usize,
}

impl Driver {
    /// Drains transmits and events, checking every invariant; returns the messages sent.
    fn drain(&mut self) -> Vec<Message> {
        let was_closed = self.closed;
        let mut sent = Vec::new();
        while let Some(b) = self.conn.poll_transmit() {
            assert!(!was_closed, "transmit after Closed: {b:?}");
            assert!(!b.is_empty(), "empty transmit");
            match self.flags.framing {
                Framing::Stream => {
                    let mut dec = FrameDecoder::new(self.flags.max_frame);
                    let r = dec.decode(&b, |body| {
                        sent.push(self.check_sent(body));
                        true
                    });
                    assert_eq!(r, Ok(()), "we sent a frame over the maximum");
                    assert_eq!(dec.buffered(), 0, "a transmit ends inside a frame");
                }
                Framing::Messages => {
                    assert!(
                        b.len() <= self.flags.max_frame as usize,
                        "we sent a frame over the maximum"
                    );
                    sent.push(self.check_sent(&b));
                }
            }
        }
        let mut failed_requests = false;
        while let Some(ev) = self.conn.poll_event() {
            assert!(!self.closed, "event after Closed: {ev:?}");
            match ev {
                Event::Authenticated(peer) => {
                    panic!("authenticated by the fuzzer (it has no key): {peer:?}")
                }
                Event::Request { id, .. } => {
                    assert!(self.authenticated, "request event before auth");
                    assert!(!self.incoming.contains(&id), "request {id} announced twice");
                    self.incoming.push(id);
                    assert!(self.incoming.len() <= 4, "over the incoming request limit");
                }
                Event::Notice { .. } => {
                    assert!(self.authenticated, "notice event before auth");
                }
                Event::Reply { id, result, .. } => {
                    let deadline = self.outstanding.remove(&id);
                    assert!(deadline.is_some(), "reply for {id:?}: unknown or repeated");
                    match result {
                        Err(RequestError::Timeout) => assert!(
                            deadline.is_some_and(|d| d <= self.now),
                            "timeout before the deadline"
                        ),
                        Err(RequestError::ConnectionFailed) => failed_requests = true,
                        Ok(_) | Err(RequestError::Remote(_)) => {}
                        Err(e) => panic!("unexpected request outcome {e:?}"),
                    }
                }
                Event::RttMeasured(_) => {
                    assert!(self.authenticated, "rtt measured before auth");
                }
                Event::Gossip(view) => {
                    assert!(self.authenticated, "gossip event before auth");
                    assert!(view.len() <= 1 << 20, "absurd view size");
                }
                Event::Closed(e) => {
                    self.closed = true;
                    assert!(
                        self.outstanding.is_empty(),
                        "Closed before the replies of {:?}",
                        self.outstanding
                    );
                    assert_eq!(
                        e.is_none(),
                        self.we_closed,
                        "Closed({e:?}) but we_closed={}",
                        self.we_closed
                    );
                }
            }
        }
        assert!(
            !failed_requests || self.closed,
            "connection_failed without Closed"
        );
        assert_eq!(
            self.conn.is_closed(),
            self.closed,
            "phase and events disagree"
        );
        assert_eq!(
            self.conn.is_established(),
            self.authenticated && !self.closed
        );
        if self.closed {
            assert_eq!(self.conn.poll_timeout(), None, "a timer after Closed");
        }
        assert_eq!(self.conn.pending_requests(), self.outstanding.len());
        assert!(
            (self.conn.buffered_input() as u64)
                < u64::from(self.flags.max_frame) + HEADER_LEN as u64,
            "buffered {} bytes with max_frame {}",
            self.conn.buffered_input(),
            self.flags.max_frame
        );
        if let Some(p) = self.conn.claimed_peer() {
            assert!(p.len() <= MAX_NAME_LEN, "claimed peer of {} bytes", p.len());
        }
        sent
    }

    /// Checks one frame body we sent.
    fn check_sent(&mut self, body: &[u8]) -> Message {
        let m = Message::decode(body).expect("we sent a malformed message");
        assert_eq!(m.encode_body(), body, "we sent a non-canonical encoding");
        let handshake_kind = matches!(
            m,
            Message::Hello(_) | Message::Proof(_) | Message::Reject(_)
        );
        if self.authenticated {
            assert!(!handshake_kind, "{} on the established link", m.kind());
        } else {
            assert!(handshake_kind, "{} before authentication", m.kind());
        }
        match m {
            Message::Hello(_) => {
                self.hellos_sent += 1;
                assert!(self.hellos_sent <= 1, "two hellos");
            }
            Message::Proof(_) => {
                self.proofs_sent += 1;
                assert!(self.proofs_sent <= 1, "two proofs");
                assert!(
                    self.authenticated || self.flags.side == Side::Dialer,
                    "the listener proved itself to an unauthenticated dialer"
                );
            }
            _ => {}
        }
        m
    }

    fn timeout(&mut self, now: Instant) {
        self.now = now;
        self.conn.handle_timeout(now);
        self.drain();
        if let Some(t) = self.conn.poll_timeout() {
            assert!(
                t > now,
                "poll_timeout {t:?} not after handle_timeout({now:?})"
            );
        }
    }

    fn op(&mut self, op: Op) {
        match op {
            Op::Input { param, bytes } => {
                self.now = self.now + Duration::from_millis(20 * u64::from(param));
                match self.flags.framing {
                    Framing::Stream => self.conn.handle_input(self.now, &bytes),
                    Framing::Messages => self.conn.handle_frame(self.now, &bytes),
                }
                self.drain();
            }
            Op::Tick(p) => {
                let now = self.now + Duration::from_millis(500 * u64::from(p));
                self.timeout(now);
            }
            Op::Fire => match self.conn.poll_timeout() {
                Some(t) => self.timeout(t.max(self.now)),
                None => assert!(self.closed, "no timer on an open connection"),
            },
            Op::Request { param, len } => {
                let established = self.conn.is_established();
                let timeout = Duration::from_millis(250 * u64::from(param));
                let body = Bytes::from(vec![0xab; usize::from(len)]);
                match self.conn.request(self.now, "k", body, timeout) {
                    Ok(id) => {
                        assert!(established, "request accepted before auth");
                        let fresh = self.outstanding.insert(id, self.now + timeout).is_none();
                        assert!(fresh, "request id {id:?} reused");
                        let sent = self.drain();
                        assert!(
                            matches!(&sent[..], [Message::Request(r)] if r.id == id.0),
                            "request {id:?} sent as {sent:?}"
                        );
                    }
                    Err(RequestError::NotConnected) => assert!(!established),
                    Err(RequestError::TooManyPending) => {
                        assert!(established && self.outstanding.len() >= 8)
                    }
                    Err(e) => panic!("request refused: {e:?}"),
                }
                self.drain();
            }
            Op::Reply(p) => {
                let result = if p & 1 == 0 {
                    Ok(Bytes::from_static(b"ok"))
                } else {
                    Err(RemoteError::new("fz", "no"))
                };
                if self.incoming.is_empty() {
                    self.conn.reply(u64::from(p), result);
                    let sent = self.drain();
                    assert!(sent.is_empty(), "reply to an unknown id sent {sent:?}");
                } else {
                    let id = self.incoming.remove(usize::from(p) % self.incoming.len());
                    let established = self.conn.is_established();
                    self.conn.reply(id, result);
                    let sent = self.drain();
                    if established {
                        assert!(
                            matches!(&sent[..], [Message::Reply(r)] if r.id == id),
                            "reply {id} sent as {sent:?}"
                        );
                    } else {
                        assert!(sent.is_empty());
                    }
                }
            }
            Op::Close(p) => {
                let open = !self.conn.is_closed();
                let established = self.conn.is_established();
                if p & 1 == 0 {
                    self.we_closed |= open;
                    self.conn.close("fz");
                    let sent = self.drain();
                    if established {
                        assert!(
                            matches!(&sent[..], [Message::Close(_)]),
                            "close sent {sent:?}"
                        );
                    } else {
                        assert!(sent.is_empty(), "close sent {sent:?}");
                    }
                } else {
                    self.conn.handle_transport_closed(self.now, "fz");
                    assert!(self.drain().is_empty());
                }
                assert!(self.closed);
            }
        }
    }
}

fn run_connection(flags: Flags, r: &mut Reader<'_>) {
    let t0 = Instant::ZERO;
    let ours = params(flags.side, "me", TARGET_KEY, TARGET_NONCE);
    let conn = Connection::new(conn_config(flags), ours, t0);
    let mut d = Driver {
        conn,
        flags,
        now: t0,
        closed: false,
        we_closed: false,
        authenticated: false,
        outstanding: BTreeMap::new(),
        incoming: Vec::new(),
        hellos_sent: 0,
        proofs_sent: 0,
    };
    if flags.established {
        establish(&mut d);
    } else {
        let sent = d.drain();
        match flags.side {
            Side::Dialer => assert!(matches!(&sent[..], [Message::Hello(_)])),
            Side::Listener => assert!(sent.is_empty()),
        }
    }
    while let Some(op) = Op::read(r) {
        d.op(op);
    }
}

/// Authenticates the connection under test with a genuine peer.
fn establish(d: &mut Driver) {
    let t0 = Instant::ZERO;
    let peer_params = params(opposite(d.flags.side), "peer", TARGET_KEY, PEER_NONCE);
    let mut peer = Connection::new(conn_config(d.flags), peer_params, t0);
    loop {
        let mut moved = false;
        while let Some(b) = d.conn.poll_transmit() {
            match d.flags.framing {
                Framing::Stream => peer.handle_input(t0, &b),
                Framing::Messages => peer.handle_frame(t0, &b),
            }
            moved = true;
        }
        while let Some(b) = peer.poll_transmit() {
            match d.flags.framing {
                Framing::Stream => d.conn.handle_input(t0, &b),
                Framing::Messages => d.conn.handle_frame(t0, &b),
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    match d.conn.poll_event() {
        Some(Event::Authenticated(p)) => assert_eq!(p.node_id, "peer"),
        e => panic!("genuine peer did not authenticate: {e:?}"),
    }
    assert!(d.conn.is_established());
    d.authenticated = true;
    d.hellos_sent = 1;
    d.proofs_sent = 1;
    assert!(d.drain().is_empty());
}

// ----- Handshake -----

fn run_handshake(flags: Flags, r: &mut Reader<'_>) {
    let t0 = Instant::ZERO;
    let config = HandshakeConfig::default();
    let mut hs = Handshake::new(
        flags.side,
        &identity(flags.side, "me"),
        Key::from_bytes(TARGET_KEY),
        TARGET_NONCE,
        b"",
        config.clone(),
        t0,
    );
    let mut now = t0;
    let mut finished = false;
    // The last message fed was the peer's reject: a failure it causes is silent (our
    // error names the setting that differs from our side, but no reject goes back).
    let fed_reject = std::cell::Cell::new(false);
    let mut hellos = 0;
    let mut proofs = 0;
    let mut step = |hs: &mut Handshake| {
        let mut rejects = 0;
        while let Some(b) = hs.poll_transmit() {
            let m = Message::decode(&b).expect("the handshake sent a malformed message");
            match m {
                Message::Hello(_) => hellos += 1,
                Message::Proof(_) => proofs += 1,
                Message::Reject(_) => rejects += 1,
                m => panic!("the handshake sent {}", m.kind()),
            }
        }
        assert!(hellos <= 1, "two hellos");
        assert!(rejects <= 1, "two rejects");
        // A listener proves itself only to an authenticated dialer; a dialer proves once.
        match flags.side {
            Side::Listener => assert_eq!(proofs, 0, "listener proof to a keyless peer"),
            Side::Dialer => assert!(proofs <= 1),
        }
        match hs.poll_outcome() {
            Some(Outcome::Authenticated(p)) => panic!("authenticated by the fuzzer: {p:?}"),
            Some(Outcome::Failed(e)) => {
                assert!(!finished, "a second outcome: {e:?}");
                finished = true;
                let silent = matches!(e, HandshakeError::Rejected { .. }) || fed_reject.get();
                assert_eq!(rejects, usize::from(!silent), "reject sent for {e:?}");
            }
            None => assert_eq!(rejects, 0, "reject without an outcome"),
        }
        assert_eq!(
            hs.is_finished(),
            finished,
            "is_finished and outcome disagree"
        );
        assert_eq!(hs.poll_timeout().is_none(), finished);
        if let Some(p) = hs.claimed_peer() {
            assert!(p.len() <= MAX_NAME_LEN, "claimed peer of {} bytes", p.len());
        }
    };
    step(&mut hs);
    while let Some(op) = Op::read(r) {
        match op {
            Op::Input { param, bytes } => {
                now = now + Duration::from_millis(20 * u64::from(param));
                // A correct driver stops feeding a finished handshake; undecodable bodies
                // close the connection before reaching the handshake.
                if hs.is_finished() {
                    continue;
                }
                if let Ok(m) = Message::decode(&bytes) {
                    // A message at or after the handshake's deadline is a timeout (which
                    // the handshake reports to the peer), whatever the message was.
                    let in_time = now < t0 + config.timeout;
                    fed_reject.set(in_time && matches!(m, Message::Reject(_)));
                    hs.handle_message(now, &bytes, m);
                }
                step(&mut hs);
            }
            Op::Tick(_) | Op::Fire => {
                if let Op::Tick(p) = op {
                    now = now + Duration::from_millis(500 * u64::from(p));
                } else if let Some(t) = hs.poll_timeout() {
                    now = now.max(t);
                }
                hs.handle_timeout(now);
                step(&mut hs);
                if let Some(t) = hs.poll_timeout() {
                    assert!(
                        t > now,
                        "poll_timeout {t:?} not after handle_timeout({now:?})"
                    );
                }
            }
            Op::Request { .. } | Op::Reply(_) | Op::Close(_) => {}
        }
    }
}

// ----- Role binding -----

/// The target and the worker-secret peer, and what happened between them.
struct Roles {
    target: Handshake,
    peer: Handshake,
    /// The peer's messages not yet delivered to the target.
    from_peer: std::collections::VecDeque<Bytes>,
    now: Instant,
    claimed: Role,
    tampered: bool,
    /// The target's outcome: `Some(Ok(role))` authenticated as `role`, `Some(Err(_))`
    /// failed.
    outcome: Option<Result<Role, HandshakeError>>,
    /// The peer's outcome (for messages).
    peer_outcome: Option<Outcome>,
}

impl Roles {
    /// Moves the target's messages to the peer (untouched) and collects the peer's.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.target.poll_transmit() {
                moved = true;
                if self.peer.is_finished() {
                    continue;
                }
                let m = Message::decode(&b).expect("the target sent a malformed message");
                self.peer.handle_message(self.now, &b, m);
            }
            while let Some(b) = self.peer.poll_transmit() {
                self.from_peer.push_back(Bytes::from(b));
            }
            if let Some(o) = self.peer.poll_outcome() {
                self.peer_outcome = Some(o);
            }
            if let Some(o) = self.target.poll_outcome() {
                assert!(self.outcome.is_none(), "a second outcome: {o:?}");
                self.outcome = Some(match o {
                    Outcome::Authenticated(p) => {
                        assert_eq!(
                            p.role,
                            Role::Worker,
                            "the worker secret authenticated a {:?} (claimed {:?}, tampered {})",
                            p.role,
                            self.claimed,
                            self.tampered
                        );
                        Ok(p.role)
                    }
                    Outcome::Failed(e) => Err(e),
                });
            }
            if !moved {
                break;
            }
        }
    }

    /// Delivers the peer's next message, XOR-ed with `mask`.
    fn deliver(&mut self, mask: &[u8]) {
        let Some(b) = self.from_peer.pop_front() else {
            return;
        };
        let mut body = b.to_vec();
        if !body.is_empty() {
            for (i, m) in mask.iter().enumerate() {
                let at = i % body.len();
                body[at] ^= m;
                self.tampered |= *m != 0;
            }
        }
        if self.target.is_finished() {
            return;
        }
        // An undecodable body closes the connection before reaching the handshake.
        if let Ok(m) = Message::decode(&body) {
            self.target.handle_message(self.now, &body, m);
        } else {
            self.tampered = true;
        }
        self.pump();
    }
}

fn run_roles(flags: Flags, r: &mut Reader<'_>) {
    let t0 = Instant::ZERO;
    let config = HandshakeConfig::default();
    let claimed = match r.u8().unwrap_or(0) % 3 {
        0 => Role::Control,
        1 => Role::Worker,
        _ => Role::Admin,
    };
    let mut ours = identity(flags.side, "ctl");
    ours.role = Role::Control;
    let target = Handshake::new(
        flags.side,
        &ours,
        Key::from_bytes(TARGET_KEY),
        TARGET_NONCE,
        b"",
        config.clone(),
        t0,
    )
    .with_worker_key(Some(Key::from_bytes(WORKER_KEY)));
    let peer_side = opposite(flags.side);
    let mut theirs = identity(peer_side, "intruder");
    theirs.role = claimed;
    let peer = Handshake::new(
        peer_side,
        &theirs,
        Key::from_bytes(WORKER_KEY),
        PEER_NONCE,
        b"",
        config.clone(),
        t0,
    )
    .with_worker_key(Some(Key::from_bytes(WORKER_KEY)));
    let mut s = Roles {
        target,
        peer,
        from_peer: std::collections::VecDeque::new(),
        now: t0,
        claimed,
        tampered: false,
        outcome: None,
        peer_outcome: None,
    };
    s.pump();
    while let Some(op) = Op::read(r) {
        match op {
            Op::Input { param, bytes } => {
                s.now = s.now + Duration::from_millis(20 * u64::from(param));
                s.deliver(&bytes);
            }
            Op::Tick(p) => {
                s.now = s.now + Duration::from_millis(500 * u64::from(p));
                s.target.handle_timeout(s.now);
                s.peer.handle_timeout(s.now);
                s.pump();
            }
            Op::Fire | Op::Request { .. } | Op::Reply(_) | Op::Close(_) => {}
        }
    }
    // Then the rest of the exchange, untouched and at once.
    while !s.from_peer.is_empty() {
        s.deliver(&[]);
    }
    let in_time = s.now < t0 + config.timeout;
    // A refusal is answered after the reject delay: run the timers out.
    for _ in 0..4 {
        match s.target.poll_timeout() {
            Some(t) if s.outcome.is_none() => {
                s.now = s.now.max(t);
                s.target.handle_timeout(s.now);
                s.pump();
            }
            _ => break,
        }
    }
    if s.tampered || !in_time {
        return;
    }
    match (claimed, &s.outcome) {
        (Role::Worker, Some(Ok(_))) => {}
        (Role::Worker, o) => panic!(
            "a genuine worker was not authenticated: {o:?} (peer: {:?})",
            s.peer_outcome
        ),
        (_, Some(Err(_))) => {}
        (role, o) => panic!(
            "a {role:?} claim with the worker secret ended {o:?} (peer: {:?})",
            s.peer_outcome
        ),
    }
}
