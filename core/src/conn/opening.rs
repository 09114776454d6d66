//! A dialer's opening: its hello, sent with the transport's own handshake (issue 15,
//! point 7).
//!
//! A dialer speaks first, and what it says first, its hello, depends on nothing the peer
//! sends: not on the TLS session either (the channel binding enters the transcript only
//! after the listener's hello). So a TLS dialer hands its hello to the TLS session before
//! the TLS handshake, which sends it in the same write as its `Finished` (rustls keeps
//! data written during the handshake until the handshake is done, never as early data).
//! The wire is the same as when the hello follows the handshake on its own: one write
//! and one wake-up of the listener fewer per link.
//!
//! [`dialer_opening`] gives those bytes; the connection made afterwards with the same
//! nonce is told with [`Connection::opening_sent`] that they left, and sends them no
//! more (its transcript holds them as always).

use bytes::Bytes;

use super::{ConnError, Connection, Framing};
use crate::handshake::{HandshakeConfig, Identity, hello_body};
use crate::lanes::Lanes;
use crate::url::Transport;

/// Whether a dialer over `transport` sends its opening with the transport's own
/// handshake: over TLS. (Plain TCP has no handshake of its own; a WebSocket's upgrade
/// request must come first, and inside it the hello is a message of its own anyway.)
pub fn opens_with_transport(transport: Transport) -> bool {
    transport == Transport::Tls
}

/// The bytes a dialer with `identity` and `nonce` sends first, framed for `framing`:
/// exactly what [`Connection::poll_transmit`] of a new dialer connection made with the
/// same framing, handshake settings, identity and nonce gives first.
pub fn dialer_opening(
    framing: Framing,
    handshake: &HandshakeConfig,
    identity: &Identity,
    nonce: [u8; 32],
) -> Bytes {
    let mut lanes = Lanes::new(framing);
    lanes.control_body(hello_body(identity, nonce, handshake));
    lanes.poll(0).unwrap_or_default()
}

impl Connection {
    /// The dialer's opening, `sent` (from [`dialer_opening`]), has left already: it is
    /// taken off what the connection transmits. Called right after [`Connection::new`],
    /// before anything else is polled. If `sent` is not what the connection would have
    /// sent first (another nonce, identity or configuration), the peer got a hello this
    /// connection cannot stand by: it closes with a protocol error.
    pub fn opening_sent(&mut self, sent: &[u8]) {
        match self.lanes.poll(0) {
            Some(first) if first == sent => {}
            _ => self.finish(Some(ConnError::Protocol(
                "the opening sent is not this connection's hello".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Key;
    use crate::conn::{ConnectionConfig, ConnectionParams, Event};
    use crate::handshake::{Role, Side};
    use crate::time::Instant;

    fn identity(id: &str, role: Role) -> Identity {
        Identity {
            cluster: "c".into(),
            node_id: id.into(),
            instance: 7,
            role,
            listen: vec!["nkcluster://127.0.0.1:1973".into()],
            meta: "a=b".into(),
            partitions: 64,
        }
    }

    fn params(side: Side, id: &str, role: Role, binding: &[u8]) -> ConnectionParams {
        ConnectionParams {
            side,
            identity: identity(id, role),
            key: Key::from_bytes([3; 32]),
            worker_key: None,
            nonce: [id.len() as u8; 32],
            channel_binding: binding.to_vec(),
            wall_origin_ns: 0,
        }
    }

    fn events(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn only_a_tls_dialer_opens_with_the_transport() {
        assert!(opens_with_transport(Transport::Tls));
        for t in [Transport::Tcp, Transport::Ws, Transport::Wss] {
            assert!(!opens_with_transport(t), "{t}");
        }
    }

    #[test]
    fn the_opening_is_a_new_dialers_first_transmit() {
        for framing in [Framing::Stream, Framing::Messages] {
            let cfg = ConnectionConfig {
                framing,
                ..Default::default()
            };
            let p = params(Side::Dialer, "w1", Role::Worker, b"binding");
            let mut d = Connection::new(cfg.clone(), p.clone(), Instant::ZERO);
            let first = d.poll_transmit().expect("a dialer's hello");
            assert_eq!(d.poll_transmit(), None);
            let opening = dialer_opening(cfg.framing, &cfg.handshake, &p.identity, p.nonce);
            assert_eq!(opening, first);
            if framing == Framing::Stream {
                // A 4-byte length, then the body.
                let len = u32::from_be_bytes([opening[0], opening[1], opening[2], opening[3]]);
                assert_eq!(len as usize, opening.len() - 4);
            }
        }
    }

    #[test]
    fn a_dialer_whose_opening_left_sends_it_no_more_and_authenticates() {
        let cfg = ConnectionConfig::default();
        let t0 = Instant::ZERO;
        let p = params(Side::Dialer, "w1", Role::Worker, b"tls exporter");
        let opening = dialer_opening(cfg.framing, &cfg.handshake, &p.identity, p.nonce);
        let mut d = Connection::new(cfg.clone(), p, t0);
        d.opening_sent(&opening);
        assert_eq!(d.poll_transmit(), None, "the hello went twice");
        assert!(!d.is_closed());
        let mut l = Connection::new(
            cfg,
            params(Side::Listener, "c1", Role::Control, b"tls exporter"),
            t0,
        );
        l.handle_input(t0, &opening);
        crate::conn::tests::pump(&mut l, &mut d, t0);
        assert!(matches!(&events(&mut d)[..],
            [Event::Authenticated(p), Event::RttMeasured(_)] if p.node_id == "c1"));
        assert!(matches!(&events(&mut l)[..],
            [Event::Authenticated(p), Event::RttMeasured(_)] if p.node_id == "w1"));
    }

    #[test]
    fn an_opening_that_is_not_the_connections_hello_closes_it() {
        let cfg = ConnectionConfig::default();
        let p = params(Side::Dialer, "w1", Role::Worker, b"");
        let other = dialer_opening(cfg.framing, &cfg.handshake, &p.identity, [9; 32]);
        let mut d = Connection::new(cfg, p, Instant::ZERO);
        d.opening_sent(&other);
        assert!(d.is_closed());
        assert_eq!(d.poll_transmit(), None);
        assert!(matches!(
            &events(&mut d)[..],
            [Event::Closed(Some(ConnError::Protocol(_)))]
        ));
    }
}
