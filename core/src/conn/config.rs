//! A connection's settings: how frames are delimited and the limits and timers of one
//! link, with their defaults.

use std::time::Duration;

use crate::frame::MAX_FRAME_DEFAULT;
use crate::handshake::HandshakeConfig;

/// How frames are delimited on the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A byte stream (TCP, TLS): 4-byte length prefixes.
    Stream,
    /// A message transport (WebSocket): one frame per message.
    Messages,
}

/// Settings of a connection. Limits are part of the config, with units in the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Maximum frame body, both directions.
    pub max_frame: u32,
    /// Transport framing.
    pub framing: Framing,
    /// Handshake settings.
    pub handshake: HandshakeConfig,
    /// A dial that has not connected after this long is abandoned (the shell applies it
    /// around its connect call; a partitioned network may never answer).
    pub connect_timeout: Duration,
    /// A ping goes out this long after the previous one.
    pub ping_interval: Duration,
    /// The link is declared dead when nothing arrived for this long.
    pub idle_timeout: Duration,
    /// Maximum of our requests awaiting a reply.
    pub max_pending_requests: usize,
    /// Maximum of the peer's requests we are still answering.
    pub max_incoming_requests: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_frame: MAX_FRAME_DEFAULT,
            framing: Framing::Stream,
            handshake: HandshakeConfig::default(),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_pending_requests: 65_536,
            max_incoming_requests: 4_096,
        }
    }
}

/// What a running connection keeps of its [`ConnectionConfig`]: the framing and the
/// limits it checks on frames and requests. The timers went to its keepalive and the
/// handshake's settings to its handshake when it was made; keeping the whole config
/// (112 bytes) would cost every link's task that much more for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Maximum frame body, both directions.
    pub max_frame: u32,
    /// Transport framing.
    pub framing: Framing,
    /// Maximum of our requests awaiting a reply (a configured one beyond `u32::MAX` is
    /// `u32::MAX`, more than a link's memory could hold anyway).
    pub max_pending_requests: u32,
    /// Maximum of the peer's requests we are still answering (the same).
    pub max_incoming_requests: u32,
}

impl Limits {
    pub(super) fn of(config: &ConnectionConfig) -> Self {
        let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Limits {
            max_frame: config.max_frame,
            framing: config.framing,
            max_pending_requests: cap(config.max_pending_requests),
            max_incoming_requests: cap(config.max_incoming_requests),
        }
    }
}
