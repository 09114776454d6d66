//! How a connection's requests and the connection itself end: the typed errors of
//! [`crate::conn`], with stable snake_case codes; and how connecting to a list of URLs
//! ends ([`ConnectError`], [`Fatal`]).

use std::time::Duration;

use thiserror::Error;

use crate::frame::FrameError;
use crate::handshake::HandshakeError;
use crate::message::{DecodeError, RemoteError};

/// How a request ended, when not with the peer's payload. `NotConnected`,
/// `TooManyPending` and `PayloadTooLarge` are refusals at [`Connection::request`](crate::conn::Connection::request): nothing
/// was sent and the connection's state is unchanged; the others end a request that was
/// pending (it is no longer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// No reply before the deadline.
    #[error("timeout")]
    Timeout,
    /// The link died before the reply came.
    #[error("connection_failed")]
    ConnectionFailed,
    /// The peer answered with an error.
    #[error("{0}")]
    Remote(RemoteError),
    /// The request was not sent: the link is not established (yet, or any more).
    #[error("not_connected")]
    NotConnected,
    /// The worker's proxy moved to another control node while the request was pending
    /// (ring ownership changed); the request may be sent again through `to`.
    #[error("proxy_moved: the node is now served by {to}")]
    ProxyMoved {
        /// The control node that now holds the proxy.
        to: String,
    },
    /// The request was not sent: too many requests are awaiting replies.
    #[error("too_many_pending")]
    TooManyPending,
    /// The request was not sent: its body exceeds the frame maximum.
    #[error("payload_too_large: {size} bytes, maximum {max}")]
    PayloadTooLarge {
        /// Encoded size.
        size: usize,
        /// The frame maximum.
        max: u32,
    },
}

impl RequestError {
    /// Stable snake_case code.
    pub fn code(&self) -> &str {
        match self {
            RequestError::Timeout => "timeout",
            RequestError::ConnectionFailed => "connection_failed",
            RequestError::Remote(e) => e.code.as_str(),
            RequestError::NotConnected => "not_connected",
            RequestError::ProxyMoved { .. } => "proxy_moved",
            RequestError::TooManyPending => "too_many_pending",
            RequestError::PayloadTooLarge { .. } => "payload_too_large",
        }
    }
}

/// Why a connection ended. All variants are terminal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnError {
    /// Bad framing (oversized frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame that is not a valid message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Authentication failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// Nothing arrived within the idle timeout.
    #[error("idle_timeout: nothing received for {0:?}")]
    IdleTimeout(Duration),
    /// The peer closed the link in order.
    #[error("peer_closed: {0}")]
    PeerClosed(String),
    /// The transport ended (EOF, reset, I/O error).
    #[error("transport_closed: {0}")]
    TransportClosed(String),
    /// The peer sent a message that makes no sense now.
    #[error("protocol_error: {0}")]
    Protocol(String),
}

impl ConnError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnError::Frame(e) => e.code(),
            ConnError::Decode(_) => "malformed_message",
            ConnError::Handshake(e) => e.code(),
            ConnError::IdleTimeout(_) => "idle_timeout",
            ConnError::PeerClosed(_) => "peer_closed",
            ConnError::TransportClosed(_) => "transport_closed",
            ConnError::Protocol(_) => "protocol_error",
        }
    }
}

/// Why connecting to a list of URLs reached no peer. Stable `code`: `invalid_scheme`,
/// `invalid_transport`, `syntax_error`, `no_connections`, `auth_failed`,
/// `cluster_mismatch`, `tls_error`, `tls_config`, ...
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConnectError {
    /// Stable code.
    pub code: String,
    /// Detail.
    pub detail: String,
}

impl ConnectError {
    /// An error of `code`.
    pub fn new(code: &str, detail: impl Into<String>) -> Self {
        ConnectError {
            code: code.to_owned(),
            detail: detail.into(),
        }
    }

    /// Nothing tried yet (or nothing answered): `no_connections`.
    pub fn nothing_reached() -> Self {
        ConnectError::new("no_connections", "no url could be reached")
    }

    /// What to report after one more entry failed with `next`: the latest failure, but a
    /// later entry that did not answer at all does not hide an earlier one that answered
    /// and refused (say, `auth_failed`).
    #[must_use]
    pub fn then(self, next: ConnectError) -> ConnectError {
        if next.code == "no_connections" && self.code != "no_connections" {
            self
        } else {
            next
        }
    }
}

impl std::fmt::Display for ConnectError {
    /// `code: detail`, or the detail alone when it names the code already (typed errors
    /// print their own code).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.contains(self.code.as_str()) {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.code, self.detail)
        }
    }
}

/// Where a process should stop: its connector gave up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("gave up connecting to the cluster: {code}: {detail}")]
pub struct Fatal {
    /// Error code of the last attempt (`auth_failed`, `no_connections`, ...).
    pub code: String,
    /// Detail.
    pub detail: String,
}

/// Whether a handshake failure's code means that the two nodes are configured
/// differently (wrong password or cluster name, another ring size, protocol version or
/// transport), rather than a passing fault: worth an `error` log line.
pub fn is_misconfiguration(code: &str) -> bool {
    matches!(
        code,
        "auth_failed"
            | "cluster_mismatch"
            | "partition_mismatch"
            | "unsupported_version"
            | "transport_mismatch"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_not_hidden_by_a_later_silent_entry_and_prints_its_code_once() {
        let none = ConnectError::nothing_reached();
        let refused = ConnectError::new("auth_failed", "auth_failed: wrong password");
        let silent = ConnectError::new("no_connections", "connection refused");
        assert_eq!(none.clone().then(silent.clone()), silent);
        assert_eq!(refused.clone().then(silent.clone()), refused);
        let tls = ConnectError::new("tls_error", "bad certificate");
        assert_eq!(refused.clone().then(tls.clone()), tls);
        assert_eq!(refused.to_string(), "auth_failed: wrong password");
        assert_eq!(tls.to_string(), "tls_error: bad certificate");
    }
}
