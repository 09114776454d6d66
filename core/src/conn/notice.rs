//! One-way notices ([`Message::Notice`], protocol
//! [`NOTICE_VERSION`](crate::message::NOTICE_VERSION)): what a node tells
//! a peer without wanting an answer (a worker's status and info reports, a control
//! node's `placed`). With a peer older than that version a notice goes as a request,
//! whose answer the caller ignores (the peer still writes it).

use bytes::Bytes;
use std::time::Duration;

use super::{Connection, RequestError, RequestId};
use crate::lanes::BULK_MIN;
use crate::message::{Message, Notice, notices_one_way};
use crate::time::Instant;

/// How a notice left (see [`Connection::notify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noticed {
    /// As a [`Message::Notice`]: nothing comes back.
    OneWay,
    /// As a request (a peer older than
    /// [`NOTICE_VERSION`](crate::message::NOTICE_VERSION)): its
    /// [`Event::Reply`](super::Event::Reply) comes back under this id, as for any
    /// request.
    AsRequest(RequestId),
}

impl Connection {
    /// Tells the peer `class`/`body` and wants no answer: one way when the link speaks
    /// [`NOTICE_VERSION`](crate::message::NOTICE_VERSION) or newer; otherwise a request
    /// with `timeout`, whose reply the caller ignores. Fails as
    /// [`request`](Connection::request) does.
    pub fn notify(
        &mut self,
        now: Instant,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Noticed, RequestError> {
        if !self.is_established() {
            return Err(RequestError::NotConnected);
        }
        let version = self.peer().map_or(0, |p| p.version);
        if !notices_one_way(version) {
            return self
                .request(now, class, body, timeout)
                .map(Noticed::AsRequest);
        }
        // Worst-case overhead of the envelope: variant, two lengths.
        let size = body.len() + class.len() + 16;
        if size > self.limits.max_frame as usize {
            return Err(RequestError::PayloadTooLarge {
                size,
                max: self.limits.max_frame,
            });
        }
        let big = body.len() >= BULK_MIN;
        let msg = Message::Notice(Notice {
            class: class.into(),
            body,
        });
        self.stats.frames_out += 1;
        if big {
            self.lanes.bulk(&msg);
        } else {
            self.lanes.control(&msg);
        }
        Ok(Noticed::OneWay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Key;
    use crate::conn::{ConnectionConfig, ConnectionParams, Event};
    use crate::handshake::{HandshakeConfig, Identity, Role, Side};
    use crate::message::PROTOCOL_VERSION;

    fn conn(side: Side, version_max: u16) -> Connection {
        let config = ConnectionConfig {
            handshake: HandshakeConfig {
                version_max,
                ..Default::default()
            },
            ..Default::default()
        };
        let (id, role) = match side {
            Side::Dialer => ("w", Role::Worker),
            Side::Listener => ("c", Role::Control),
        };
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

    /// Moves what each end writes to the other until both are quiet; returns how many
    /// frames (writes) each sent: (dialer, listener).
    fn exchange(d: &mut Connection, l: &mut Connection) -> (usize, usize) {
        let (mut from_d, mut from_l) = (0, 0);
        loop {
            let a: Vec<Bytes> = std::iter::from_fn(|| d.poll_transmit()).collect();
            let b: Vec<Bytes> = std::iter::from_fn(|| l.poll_transmit()).collect();
            if a.is_empty() && b.is_empty() {
                return (from_d, from_l);
            }
            from_d += a.len();
            from_l += b.len();
            a.iter().for_each(|x| l.handle_input(Instant::ZERO, x));
            b.iter().for_each(|x| d.handle_input(Instant::ZERO, x));
        }
    }

    /// A worker (dialer) linked to a control node whose newest version is `l_version`.
    fn link(l_version: u16) -> (Connection, Connection) {
        let mut d = conn(Side::Dialer, PROTOCOL_VERSION);
        let mut l = conn(Side::Listener, l_version);
        exchange(&mut d, &mut l);
        for c in [&mut d, &mut l] {
            assert!(matches!(c.poll_event(), Some(Event::Authenticated(_))));
            // The handshake's round trip (no time passes here).
            assert_eq!(c.poll_event(), Some(Event::RttMeasured(Duration::ZERO)));
        }
        (d, l)
    }

    #[test]
    fn notices_are_one_way_from_protocol_5() {
        assert_eq!(crate::message::NOTICE_VERSION, 5);
        assert!(notices_one_way(PROTOCOL_VERSION));
        assert!(!notices_one_way(1));
        assert!(!notices_one_way(3));
        assert!(!notices_one_way(4));
        assert!(notices_one_way(5));
        assert!(notices_one_way(6));
    }

    #[test]
    fn on_a_protocol_5_link_a_notice_reaches_the_peer_and_nothing_comes_back() {
        let (mut d, mut l) = link(PROTOCOL_VERSION);
        let body = Bytes::from_static(b"status");
        let sent = d.notify(Instant::ZERO, "sys", body.clone(), Duration::from_secs(5));
        assert_eq!(sent, Ok(Noticed::OneWay));
        assert_eq!(d.pending_requests(), 0);
        // One frame out, none back.
        assert_eq!(exchange(&mut d, &mut l), (1, 0));
        assert_eq!(
            l.poll_event(),
            Some(Event::Notice {
                class: "sys".into(),
                body
            })
        );
        assert_eq!(l.poll_event(), None);
        assert_eq!(d.poll_event(), None);
    }

    #[test]
    fn with_a_protocol_4_peer_a_notice_is_a_request_and_its_answer_comes_back() {
        let (mut d, mut l) = link(4);
        assert_eq!(d.peer().map(|p| p.version), Some(4));
        let body = Bytes::from_static(b"status");
        let sent = d.notify(Instant::ZERO, "sys", body.clone(), Duration::from_secs(5));
        assert_eq!(sent, Ok(Noticed::AsRequest(RequestId(1))));
        assert_eq!(d.pending_requests(), 1);
        assert_eq!(exchange(&mut d, &mut l), (1, 0));
        assert_eq!(
            l.poll_event(),
            Some(Event::Request {
                id: 1,
                class: "sys".into(),
                body,
                timeout: Duration::from_secs(5)
            })
        );
        l.reply(1, Ok(Bytes::new()));
        assert_eq!(exchange(&mut d, &mut l), (0, 1));
        assert_eq!(
            d.poll_event(),
            Some(Event::Reply {
                id: RequestId(1),
                tag: crate::conn::NO_TAG,
                result: Ok(Bytes::new())
            })
        );
    }

    #[test]
    fn a_notice_before_the_handshake_or_over_the_frame_maximum_is_refused() {
        let mut d = conn(Side::Dialer, PROTOCOL_VERSION);
        let sent = d.notify(Instant::ZERO, "sys", Bytes::new(), Duration::from_secs(5));
        assert_eq!(sent, Err(RequestError::NotConnected));
        let (mut d, _l) = link(PROTOCOL_VERSION);
        let max = d.limits.max_frame as usize;
        let big = Bytes::from(vec![0u8; max]);
        let sent = d.notify(Instant::ZERO, "sys", big, Duration::from_secs(5));
        assert_eq!(
            sent,
            Err(RequestError::PayloadTooLarge {
                size: max + 3 + 16,
                max: max as u32
            })
        );
        assert_eq!(d.poll_transmit(), None);
    }
}
