//! One connection, end to end: framing, the handshake, then the link.
//!
//! [`Connection`] is the only machine a shell drives per socket. Method groups, in the
//! order a shell calls them:
//!
//! 1. **Inputs**: [`handle_input`](Connection::handle_input) (stream bytes) or
//!    [`handle_frame`](Connection::handle_frame) (one message of a message transport),
//!    [`handle_timeout`](Connection::handle_timeout),
//!    [`handle_transport_closed`](Connection::handle_transport_closed), and the
//!    application's [`request`](Connection::request), [`notify`](Connection::notify),
//!    [`reply`](Connection::reply), [`close`](Connection::close).
//! 2. **Outputs**, drained after every input until `None`:
//!    [`poll_transmit`](Connection::poll_transmit) (bytes to write, in order), then
//!    [`poll_event`](Connection::poll_event).
//! 3. **Timer**: [`poll_timeout`](Connection::poll_timeout), the instant at which
//!    `handle_timeout` must be called next.
//!
//! Guarantees: every request issued with [`request`](Connection::request) ends with exactly
//! one [`Event::Reply`] (the peer's answer, `timeout` at its deadline, or
//! `connection_failed` when the link dies); the last event is always one
//! [`Event::Closed`]; no peer input panics, and nothing is allocated beyond what actually
//! arrived (frames are capped before buffering).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::auth::Key;
use crate::frame::{FrameDecoder, FrameError};
use crate::handshake::{Handshake, Identity, Outcome, PeerInfo, Role, Side};
use crate::keepalive::{Due, Keepalive, pings_every_interval, sends_heartbeats};
use crate::lanes::credit::CREDIT_VERSION;
use crate::lanes::{Assembly, BULK_MIN, Lanes, is_bulk_request};
use crate::message::{Close, Hot, HotFrame, LastClass, Message, Ping, RemoteError, Reply};
use crate::seqmap::SeqMap;
use crate::time::Instant;
use smol_str::SmolStr;

/// Identifies one of our requests on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// The tag of a request sent without one ([`Connection::request`]).
pub const NO_TAG: u32 = u32::MAX;

pub use crate::conn_error::{ConnError, RequestError};

/// What the connection tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake succeeded; requests may flow.
    Authenticated(PeerInfo),
    /// The peer asks something; answer with [`Connection::reply`] using `id`.
    Request {
        /// The peer's request id.
        id: u64,
        /// Class name.
        class: SmolStr,
        /// Payload.
        body: Bytes,
        /// How long the peer waits.
        timeout: Duration,
    },
    /// One of our requests ended.
    Reply {
        /// Which request.
        id: RequestId,
        /// The tag it was sent with ([`Connection::request_tagged`]; [`NO_TAG`] for
        /// [`Connection::request`]).
        tag: u32,
        /// The payload, or why there is none.
        result: Result<Bytes, RequestError>,
    },
    /// The peer sent a one-way notice ([`Connection::notify`]): handle it as a request
    /// and answer nothing.
    Notice {
        /// Class name.
        class: SmolStr,
        /// Payload.
        body: Bytes,
    },
    /// The peer sent its membership view (control links).
    Gossip(Vec<crate::membership::MemberInfo>),
    /// A ping's answer came back: the link's latest round trip.
    RttMeasured(Duration),
    /// The connection is over: `None` when we closed it ourselves. Always the last event.
    Closed(Option<ConnError>),
}

/// Counters and measurements of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Latest ping round trip.
    pub rtt: Option<Duration>,
    /// Smoothed round trip (7/8 old + 1/8 new).
    pub srtt: Option<Duration>,
    /// Estimated `peer clock - our clock`, nanoseconds.
    pub clock_offset_ns: Option<i64>,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Replies that arrived for requests no longer pending (late or unknown).
    pub late_replies: u64,
}

#[derive(Debug)]
enum Phase {
    Handshaking(Box<Handshake>),
    Established,
    Closed,
}

/// Maximum frame body before the peer has authenticated: a hello with every field at its
/// limit fits, and an unauthenticated peer cannot make us buffer more.
pub const HANDSHAKE_MAX_FRAME: u32 = 64 * 1024;

/// `handle_input`'s buffer is released when empty and larger than this.
const INBUF_RETAIN: usize = 16 * 1024;

/// Parameters to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectionParams {
    /// Dialer or listener.
    pub side: Side,
    /// What we announce.
    pub identity: Identity,
    /// The cluster key for this peer's password (the control cluster's secret).
    pub key: Key,
    /// The worker key (`worker_password`), used when either side is a worker; `None`:
    /// the control key serves every role (the original's behaviour).
    pub worker_key: Option<Key>,
    /// Fresh random nonce.
    pub nonce: [u8; 32],
    /// TLS exporter value; empty on plain transports.
    pub channel_binding: Vec<u8>,
    /// Our wall clock at the shell's time origin, Unix nanoseconds (for clock offsets).
    pub wall_origin_ns: u64,
}

/// Who the peer is, as far as the connection knows. Boxed: the connection lives in its
/// link's task for the link's whole life, and an authenticated peer's record is needed only
/// for logs and look-ups, not on the hot path (issue 15, point 6: bytes per idle link).
#[derive(Debug)]
enum KnownPeer {
    /// No hello read yet.
    Unknown,
    /// The node id its hello claims, not authenticated (yet): for logs.
    Claimed(Box<str>),
    /// Authenticated.
    Authenticated(Box<PeerInfo>),
}

/// One connection's state machine. See the module docs for the driving protocol.
#[derive(Debug)]
pub struct Connection {
    /// What it keeps of its [`ConnectionConfig`].
    limits: Limits,
    side: Side,
    /// Our role (who pings depends on it, see [`crate::keepalive`]).
    role: Role,
    phase: Phase,
    decoder: FrameDecoder,
    peer: KnownPeer,
    /// Input of `handle_input` (shells that read into their own buffer skip it).
    inbuf: BytesMut,
    /// What leaves, in two lanes (see [`crate::lanes`]).
    lanes: Lanes,
    /// A chunked message under way from the peer.
    assembly: Assembly,
    events: VecDeque<Event>,
    wall_origin_ns: u64,
    keepalive: Keepalive,
    next_request_id: u64,
    /// Our requests in flight, by id and by deadline.
    pending: InFlight,
    /// The peer's requests we have not answered.
    incoming: SeqMap<u64, ()>,
    /// The class name of the peer's last request (see [`LastClass`]).
    last_class: LastClass,
    stats: LinkStats,
    /// A keepalive was heard since storage was last given back (see `trim.rs`).
    trim_due: bool,
    /// Frames in and out when storage was last given back at a keepalive (see `trim.rs`).
    frames_at_trim: u64,
}

impl Connection {
    /// Opens a connection at `now`. A dialer has its hello ready in `poll_transmit`.
    pub fn new(config: ConnectionConfig, params: ConnectionParams, now: Instant) -> Self {
        let hs = Handshake::new(
            params.side,
            &params.identity,
            params.key,
            params.nonce,
            &params.channel_binding,
            config.handshake.clone(),
            now,
        )
        .with_worker_key(params.worker_key);
        let mut decoder = FrameDecoder::new(config.max_frame.min(HANDSHAKE_MAX_FRAME));
        decoder.set_sniff(true);
        let mut c = Connection {
            decoder,
            side: params.side,
            role: params.identity.role,
            phase: Phase::Handshaking(Box::new(hs)),
            peer: KnownPeer::Unknown,
            inbuf: BytesMut::new(),
            lanes: Lanes::new(config.framing),
            assembly: Assembly::default(),
            events: VecDeque::new(),
            wall_origin_ns: params.wall_origin_ns,
            keepalive: Keepalive::new(config.ping_interval, config.idle_timeout, now),
            next_request_id: 1,
            pending: InFlight::default(),
            incoming: SeqMap::new(),
            last_class: LastClass::default(),
            stats: LinkStats::default(),
            trim_due: false,
            frames_at_trim: 0,
            limits: Limits::of(&config),
        };
        c.drain_handshake(now);
        c
    }

    /// Which side we are.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The authenticated peer, once known.
    pub fn peer(&self) -> Option<&PeerInfo> {
        match &self.peer {
            KnownPeer::Authenticated(p) => Some(p),
            KnownPeer::Unknown | KnownPeer::Claimed(_) => None,
        }
    }

    /// The node id the peer claims (from its hello, authenticated or not); for logs.
    pub fn claimed_peer(&self) -> Option<&str> {
        match &self.peer {
            KnownPeer::Authenticated(p) => Some(&p.node_id),
            KnownPeer::Claimed(id) => Some(id),
            KnownPeer::Unknown => None,
        }
    }

    /// Whether requests may be sent.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Whether the connection is over (the shell closes the transport once transmits
    /// are flushed).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Link measurements.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Number of our requests awaiting replies.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Bytes buffered for an incomplete incoming frame (by `handle_input`).
    pub fn buffered_input(&self) -> usize {
        self.inbuf.len()
    }

    /// How many bytes a shell reading into its own buffer (see
    /// [`handle_input_buf`](Self::handle_input_buf)) should make room for next: what the
    /// current frame still needs, between `min` and `max`.
    pub fn read_hint(&self, buf: &[u8], min: usize, max: usize) -> usize {
        self.decoder.read_hint(buf, min, max)
    }

    /// Room a shell reading into its own buffer should make before its next read, when
    /// it keeps no buffer while idle (see [`FrameDecoder::read_room`]): `0` between frames
    /// and on message transports (frames arrive whole), else
    /// [`read_hint`](Self::read_hint).
    pub fn read_room(&self, buf: &[u8], min: usize, max: usize) -> usize {
        if self.limits.framing == Framing::Stream {
            self.decoder.read_room(buf, min, max)
        } else {
            0
        }
    }

    // ----- inputs -----

    /// Feeds bytes read from a stream transport (copied into an internal buffer; shells
    /// on a hot path read into their own buffer and call
    /// [`handle_input_buf`](Self::handle_input_buf) instead).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.is_closed() || self.limits.framing != Framing::Stream {
            return;
        }
        let mut buf = core::mem::take(&mut self.inbuf);
        buf.extend_from_slice(data);
        self.handle_input_buf(now, &mut buf);
        if buf.is_empty() && buf.capacity() > INBUF_RETAIN {
            buf = BytesMut::new();
        }
        self.inbuf = buf;
    }

    /// Decodes every complete frame at the front of `buf` (stream framing), splitting
    /// them off without copying; an incomplete frame stays in `buf` for the next read.
    pub fn handle_input_buf(&mut self, now: Instant, buf: &mut BytesMut) {
        if self.is_closed() || self.limits.framing != Framing::Stream {
            return;
        }
        loop {
            // Frames after the one that completes the handshake may use the full maximum:
            // decoding stops there and resumes with the raised limit.
            let handshaking = !self.is_established();
            let mut decoder = core::mem::replace(&mut self.decoder, FrameDecoder::new(0));
            let r = decoder.decode_buf(buf, |body| {
                self.on_frame(now, body) && !(handshaking && self.is_established())
            });
            self.decoder = decoder;
            self.sync_decoder();
            if let Err(e) = r {
                buf.clear();
                self.fail(ConnError::Frame(e), false);
                return;
            }
            if !(handshaking && self.is_established()) || buf.is_empty() {
                return;
            }
        }
    }

    /// Feeds one frame body from a message transport.
    pub fn handle_frame(&mut self, now: Instant, body: &[u8]) {
        self.handle_frame_bytes(now, Bytes::copy_from_slice(body));
    }

    /// Feeds one frame body from a message transport, without copying it.
    pub fn handle_frame_bytes(&mut self, now: Instant, body: Bytes) {
        if self.is_closed() {
            return;
        }
        if body.len() > self.decoder.max() as usize {
            self.handle_oversized_frame(now, body.len());
            return;
        }
        self.on_frame(now, body);
    }

    /// A message transport refused a frame of `size` bytes as larger than the maximum
    /// (it enforces the cap itself, before buffering): ends like an oversized stream frame.
    pub fn handle_oversized_frame(&mut self, _now: Instant, size: usize) {
        if !self.is_closed() {
            let announced = u32::try_from(size).unwrap_or(u32::MAX);
            self.fail(
                ConnError::Frame(FrameError::TooLarge {
                    announced,
                    max: self.decoder.max(),
                }),
                false,
            );
        }
    }

    /// The transport ended (EOF or error) without a close message.
    pub fn handle_transport_closed(&mut self, _now: Instant, detail: &str) {
        if !self.is_closed() {
            self.fail(ConnError::TransportClosed(detail.to_owned()), false);
        }
    }

    /// Advances time: handshake deadline, pings, idle deadline, request deadlines. The
    /// request tables give back the storage they no longer need (they keep it between
    /// timer wake-ups, so that a busy link does not reallocate it as it empties and
    /// refills; see [`crate::seqmap`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pending.shrink();
        self.incoming.shrink();
        match &mut self.phase {
            Phase::Closed => {}
            Phase::Handshaking(hs) => {
                hs.handle_timeout(now);
                self.drain_handshake(now);
            }
            Phase::Established => {
                let due = self.keepalive.due(now);
                if let Due::Dead(idle) = due {
                    self.fail(ConnError::IdleTimeout(idle), true);
                    return;
                }
                while let Some((id, tag)) = self.pending.pop_due(now) {
                    self.events.push_back(Event::Reply {
                        id: RequestId(id),
                        tag,
                        result: Err(RequestError::Timeout),
                    });
                }
                match due {
                    Due::Ping(seq) => {
                        let wall_ns = self.wall(now);
                        self.send_keepalive(&Message::Ping(Ping { seq, wall_ns }));
                    }
                    Due::Heartbeat => self.send_keepalive(&Message::Heartbeat),
                    Due::Dead(_) | Due::Nothing => {}
                }
            }
        }
    }

    /// Sends a request with `timeout`. Its outcome arrives later as [`Event::Reply`].
    pub fn request(
        &mut self,
        now: Instant,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RequestId, RequestError> {
        self.request_tagged(now, class, body, timeout, NO_TAG)
    }

    /// [`request`](Self::request) with a `tag` of the caller's, handed back in the
    /// request's [`Event::Reply`]: a caller that keeps its own record of each request
    /// (the [`Pump`](crate::pump::Pump)'s callers) finds it by the tag, with no table
    /// by id of its own beside the connection's.
    pub fn request_tagged(
        &mut self,
        now: Instant,
        class: &str,
        body: Bytes,
        timeout: Duration,
        tag: u32,
    ) -> Result<RequestId, RequestError> {
        if !self.is_established() {
            return Err(RequestError::NotConnected);
        }
        if self.pending.len() >= self.limits.max_pending_requests as usize {
            return Err(RequestError::TooManyPending);
        }
        // Worst-case overhead of the envelope: variant, id, timeout, two lengths.
        let size = body.len() + class.len() + 32;
        if size > self.limits.max_frame as usize {
            return Err(RequestError::PayloadTooLarge {
                size,
                max: self.limits.max_frame,
            });
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        let deadline = now + timeout;
        self.pending.insert(id, deadline, tag);
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let msg = Hot::Request {
            id,
            timeout_ms,
            class,
            body: &body,
        };
        self.stats.frames_out += 1;
        if is_bulk_request(class, &body) {
            self.lanes.bulk(&msg.to_message());
        } else {
            self.lanes.control_hot(&msg);
        }
        Ok(RequestId(id))
    }

    /// Answers the peer's request `id` (from [`Event::Request`]). Unknown ids (already
    /// answered, or from before a reconnect) are ignored; an oversized payload is replaced
    /// by a `payload_too_large` error so the peer is not left waiting.
    ///
    /// Inlined into the shell's driver (another crate): the usual answer, a small `Ok`
    /// payload, is queued there; anything else goes through `reply_rest`.
    #[inline]
    pub fn reply(&mut self, id: u64, result: Result<Bytes, RemoteError>) {
        if !self.is_established() || self.incoming.remove(&id).is_none() {
            return;
        }
        match result {
            Ok(body)
                if body.len() < BULK_MIN && body.len() + 32 <= self.limits.max_frame as usize =>
            {
                self.stats.frames_out += 1;
                self.lanes.control_hot(&Hot::Reply { id, body: &body });
            }
            result => self.reply_rest(id, result),
        }
    }

    /// [`reply`](Self::reply) of the peer's request `id` (known, now answered) with
    /// anything but a small `Ok` payload.
    fn reply_rest(&mut self, id: u64, result: Result<Bytes, RemoteError>) {
        let result = match result {
            Ok(b) if b.len() + 32 > self.limits.max_frame as usize => Err(RemoteError::new(
                "payload_too_large",
                format!("reply of {} bytes exceeds the frame maximum", b.len()),
            )),
            r => r,
        };
        match &result {
            Ok(body) if body.len() < BULK_MIN => {
                self.stats.frames_out += 1;
                self.lanes.control_hot(&Hot::Reply { id, body });
            }
            Ok(_) => {
                self.stats.frames_out += 1;
                self.lanes.bulk(&Message::Reply(Reply { id, result }));
            }
            Err(_) => self.send(&Message::Reply(Reply { id, result })),
        }
    }

    /// Sends our membership view. Ignored unless established; a view too large for one
    /// frame is cut to what fits (the receiver bounds it too).
    pub fn send_gossip(&mut self, mut view: Vec<crate::membership::MemberInfo>) {
        if !self.is_established() {
            return;
        }
        // A member record is small (id, two integers, status, a few URLs): keep the
        // encoded view well under the frame maximum.
        let budget = self.limits.max_frame as usize / 2;
        let mut size = 0usize;
        view.retain(|m| {
            size += 64 + m.id.len() + m.listen.iter().map(|u| u.len() + 2).sum::<usize>();
            size <= budget
        });
        self.send(&Message::Gossip(view));
    }

    /// Closes in order: tells the peer, fails pending requests with `connection_failed`
    /// and emits `Closed(None)`. Flush `poll_transmit` before closing the transport.
    pub fn close(&mut self, reason: &str) {
        if self.is_closed() {
            return;
        }
        if self.is_established() {
            // After everything queued, bulk included.
            self.stats.frames_out += 1;
            self.lanes.last(&Message::Close(Close {
                reason: reason.to_owned(),
            }));
        }
        self.finish(None);
    }

    /// Like [`close`](Self::close), but our pending requests end with `pending` instead of
    /// `connection_failed` (a proxy handing its worker over says where it went).
    pub fn close_with(&mut self, reason: &str, pending: RequestError) {
        if self.is_closed() {
            return;
        }
        let taken = self.pending.take_ids();
        // The planted bug (a feature for the simulator's tests only): the requests are
        // taken off the link but never ended.
        #[cfg(not(feature = "planted-bug"))]
        for (id, tag) in taken {
            self.events.push_back(Event::Reply {
                id: RequestId(id),
                tag,
                result: Err(pending.clone()),
            });
        }
        #[cfg(feature = "planted-bug")]
        let _ = (taken, pending);
        self.close(reason);
    }

    // ----- outputs -----

    /// Next bytes (stream framing) or next frame body (message framing) to write, every
    /// one of them: the control lane first, then the bulk lane (see [`crate::lanes`]).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.lanes.poll(0)
    }

    /// Next event for the application.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called; `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Closed => None,
            Phase::Handshaking(hs) => hs.poll_timeout(),
            Phase::Established => {
                let t = self.keepalive.deadline();
                Some(self.pending.next_deadline().map_or(t, |d| t.min(d)))
            }
        }
    }

    // ----- internals -----

    fn wall(&self, now: Instant) -> u64 {
        self.wall_origin_ns.saturating_add(now.as_nanos())
    }

    fn send(&mut self, msg: &Message) {
        self.stats.frames_out += 1;
        self.lanes.control(msg);
    }

    /// Sends a keepalive, a pong or a report of bulk read: control lane, without
    /// narrowing the bulk window (see [`crate::lanes::credit`]).
    fn send_keepalive(&mut self, msg: &Message) {
        self.stats.frames_out += 1;
        self.lanes.keepalive(msg);
    }

    fn send_body(&mut self, body: Bytes) {
        self.stats.frames_out += 1;
        self.lanes.control_body(body);
    }

    /// Handles one frame; returns whether to keep decoding.
    fn on_frame(&mut self, now: Instant, body: Bytes) -> bool {
        if self.is_closed() {
            return false;
        }
        self.keepalive.received(now);
        self.stats.frames_in += 1;
        // A link's usual frames, a request or an `Ok` reply, are read straight into
        // what they become (the generic decoder reads them alike, see `message::hot`).
        let body = if matches!(self.phase, Phase::Established) {
            match HotFrame::decode_cached(body, &mut self.last_class) {
                Ok(HotFrame::Request {
                    id,
                    timeout_ms,
                    class,
                    body,
                }) => {
                    self.on_request(id, timeout_ms, class, body);
                    return !self.is_closed();
                }
                Ok(HotFrame::Reply { id, body }) => {
                    self.on_reply(id, Ok(body));
                    return !self.is_closed();
                }
                Err(body) => body,
            }
        } else {
            body
        };
        let msg = match Message::decode_bytes(&body) {
            Ok(m) => m,
            Err(e) => {
                let reject = !self.is_established();
                self.fail(ConnError::Decode(e), !reject);
                return false;
            }
        };
        match &mut self.phase {
            Phase::Closed => return false,
            Phase::Handshaking(hs) => {
                hs.handle_message(now, &body, msg);
                self.drain_handshake(now);
            }
            Phase::Established => self.on_link_message(now, msg),
        }
        !self.is_closed()
    }

    fn drain_handshake(&mut self, now: Instant) {
        let Phase::Handshaking(hs) = &mut self.phase else {
            return;
        };
        if let (KnownPeer::Unknown, Some(id)) = (&self.peer, hs.claimed_peer()) {
            self.peer = KnownPeer::Claimed(id.into());
        }
        let mut bodies = Vec::new();
        while let Some(b) = hs.poll_transmit() {
            bodies.push(b);
        }
        let outcome = hs.poll_outcome();
        let round_trip = hs.round_trip();
        for b in bodies {
            self.send_body(b);
        }
        match outcome {
            None => {}
            Some(Outcome::Authenticated(peer)) => {
                self.phase = Phase::Established;
                self.sync_decoder();
                let every_interval =
                    pings_every_interval(peer.version, self.side, self.role, peer.role);
                let heartbeats = sends_heartbeats(peer.version, every_interval);
                self.keepalive.established(now, every_interval, heartbeats);
                self.lanes.set_chunked(peer.version >= 2);
                self.lanes.set_credited(peer.version >= CREDIT_VERSION);
                self.peer = KnownPeer::Authenticated(Box::new(peer.clone()));
                self.events.push_back(Event::Authenticated(peer));
                if let Some(rtt) = round_trip {
                    self.round_trip_measured(rtt, true);
                }
            }
            // The handshake already queued its reject for the peer.
            Some(Outcome::Failed(e)) => self.finish(Some(ConnError::Handshake(e))),
        }
    }

    /// The frame limit follows the phase: small and sniffing for other protocols until
    /// the peer has authenticated, the configured maximum after.
    fn sync_decoder(&mut self) {
        if self.is_established() {
            self.decoder.set_max(self.limits.max_frame);
            self.decoder.set_sniff(false);
        }
    }

    /// Ends the connection with an error; `tell_peer` sends a close message first.
    fn fail(&mut self, error: ConnError, tell_peer: bool) {
        if self.is_closed() {
            return;
        }
        if tell_peer && self.is_established() {
            self.send(&Message::Close(Close {
                reason: error.to_string(),
            }));
        }
        self.finish(Some(error));
    }

    fn finish(&mut self, error: Option<ConnError>) {
        self.phase = Phase::Closed;
        // No more reports will be read: what is left goes out unwindowed.
        self.lanes.set_credited(false);
        self.incoming.clear();
        for (id, tag) in self.pending.take_ids() {
            self.events.push_back(Event::Reply {
                id: RequestId(id),
                tag,
                result: Err(RequestError::ConnectionFailed),
            });
        }
        self.events.push_back(Event::Closed(error));
    }
}

mod config;
mod incoming;
mod inflight;
mod notice;
mod opening;
mod output;
mod trim;

use config::Limits;
pub use config::{ConnectionConfig, Framing};
use inflight::InFlight;
pub use notice::Noticed;
pub use opening::{dialer_opening, opens_with_transport};

#[cfg(test)]
pub(crate) mod tests;
