//! A link's messages as they arrive from the peer once established, by either decoder
//! (the hot one of `message::hot` or the generic one): the peer's request becomes an
//! event unless it is one too many or a duplicate; a reply ends our pending request;
//! keepalives, gossip, notices, chunks (reported read with protocol 7, see
//! [`crate::lanes::credit`]) and the peer's reports of bulk read.

use std::time::Duration;

use bytes::Bytes;
use smol_str::SmolStr;

use super::{ConnError, Connection, Event, RequestError, RequestId};
use crate::message::{Chunk, Message, Pong, RemoteError, Reply};
use crate::time::Instant;

impl Connection {
    /// A round trip measured (a ping's answer, or the handshake's last exchange): the
    /// latest sample, the smoothed round trip (7/8 old + 1/8 new; the sample alone if
    /// `restart`), the bulk window that follows it, and an event. The handshake's sample
    /// and the first ping's answer restart the smoothing: the handshake's is provisional
    /// (on a busy start it may include the wait behind other links' arrivals), and one
    /// sample that is too long, smoothed 1/8 at a time with one ping per interval, would
    /// hold the link's window and its pacing rules (see [`crate::lanes`]) for minutes.
    pub(super) fn round_trip_measured(&mut self, rtt: Duration, restart: bool) {
        self.stats.rtt = Some(rtt);
        let srtt = match self.stats.srtt {
            Some(s) if !restart => (s * 7 + rtt) / 8,
            _ => rtt,
        };
        self.stats.srtt = Some(srtt);
        self.lanes.set_rtt(srtt);
        self.events.push_back(Event::RttMeasured(rtt));
    }

    pub(super) fn on_link_message(&mut self, now: Instant, msg: Message) {
        match msg {
            Message::Ping(p) => {
                self.trim_due = true;
                let wall_ns = self.wall(now);
                self.send_keepalive(&Message::Pong(Pong {
                    seq: p.seq,
                    echo_wall_ns: p.wall_ns,
                    wall_ns,
                }));
            }
            // Liveness only: `on_frame` noted the input; nothing to answer.
            Message::Heartbeat => self.trim_due = true,
            Message::Pong(p) => {
                self.trim_due = true;
                let first = !self.keepalive.answered_before();
                if let Some(rtt) = self.keepalive.pong(now, p.seq) {
                    let half = i64::try_from(rtt.as_nanos() / 2).unwrap_or(i64::MAX);
                    let mid = (p.echo_wall_ns as i128) + half as i128;
                    let off = (p.wall_ns as i128) - mid;
                    self.stats.clock_offset_ns =
                        Some(off.clamp(i64::MIN as i128, i64::MAX as i128) as i64);
                    self.round_trip_measured(rtt, first);
                }
            }
            Message::Request(r) => self.on_request(r.id, r.timeout_ms, r.class, r.body),
            Message::Reply(r) => self.on_reply(r.id, r.result),
            Message::Close(c) => self.fail(ConnError::PeerClosed(c.reason), false),
            Message::Gossip(v) => self.events.push_back(Event::Gossip(v)),
            Message::Notice(n) => self.events.push_back(Event::Notice {
                class: n.class,
                body: n.body,
            }),
            Message::Chunk(c) => {
                if let Some(read) = self.lanes.chunk_read(c.data.len(), !c.more) {
                    self.send_keepalive(&Message::BulkRead(read));
                }
                self.on_chunk(now, c);
            }
            Message::BulkRead(n) => {
                if let Err(e) = self.lanes.peer_read(n) {
                    self.fail(ConnError::Protocol(e.to_string()), true);
                }
            }
            m @ (Message::Hello(_) | Message::Proof(_) | Message::Reject(_)) => {
                self.fail(
                    ConnError::Protocol(format!("{} on an established link", m.kind())),
                    true,
                );
            }
        }
    }

    /// One piece of a chunked message from the peer; the message once whole.
    fn on_chunk(&mut self, now: Instant, c: Chunk) {
        match self.assembly.push(c, self.limits.max_frame) {
            Ok(None) => {}
            Ok(Some(body)) => match Message::decode_bytes(&body) {
                Ok(Message::Chunk(_)) => self.fail(
                    ConnError::Protocol("a chunk inside a chunked message".into()),
                    true,
                ),
                Ok(m) => self.on_link_message(now, m),
                Err(e) => self.fail(ConnError::Decode(e), true),
            },
            Err(e) => self.fail(ConnError::Frame(e), true),
        }
    }

    /// The peer's request `id`: an event for the application, unless it is one too many
    /// or a duplicate (answered with an error at once).
    pub(super) fn on_request(&mut self, id: u64, timeout_ms: u32, class: SmolStr, body: Bytes) {
        // Kept unless one too many or a duplicate (one lookup: a new id, past the last,
        // is a push).
        let full = self.incoming.len() >= self.limits.max_incoming_requests as usize;
        if full || self.incoming.try_insert(id, ()).is_err() {
            let why = if self.incoming.contains_key(&id) {
                RemoteError::new(
                    "duplicate_request",
                    format!("request {id} is already running"),
                )
            } else {
                RemoteError::new("busy", "too many requests in flight")
            };
            self.send(&Message::Reply(Reply {
                id,
                result: Err(why),
            }));
            return;
        }
        self.events.push_back(Event::Request {
            id,
            class,
            body,
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        });
    }

    /// The peer's answer to our request `id` (counted late when it is not pending).
    pub(super) fn on_reply(&mut self, id: u64, result: Result<Bytes, RemoteError>) {
        match self.pending.remove(id) {
            Some((_, tag)) => {
                self.events.push_back(Event::Reply {
                    id: RequestId(id),
                    tag,
                    result: result.map_err(RequestError::Remote),
                });
            }
            None => self.stats.late_replies += 1,
        }
    }
}
