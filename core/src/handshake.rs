//! Mutual authentication (SCRAM-like), as a sans-IO state machine.
//!
//! ```text
//! dialer                                   listener
//!   Hello{versions, cluster, id, nonce_d} ->
//!                                          checks version and cluster
//!                                       <- Hello{versions, cluster, id, nonce_l}
//!   T = H(hello_d || hello_l || channel binding)
//!   Proof{HMAC(K, "dialer" || T)}        ->
//!                                          verifies in constant time
//!                                       <- Proof{HMAC(K, "listener" || T)}
//!   verifies; both ends now trust the peer
//! ```
//! `K` is the cluster key derived from the password ([`Key`]); it never crosses the wire.
//!
//! **Secrets per role.** A node may hold a second key, the worker key (from
//! `worker_password`; without one it is `K`). A handshake in which either side claims
//! the worker role is proven with the worker key; every other pair (control with
//! control, admin with control) with the control key `K`. The claimed roles are in the
//! hellos, which are in `T`, so a man in the middle cannot change a role without breaking
//! both proofs; and a listener never accepts the worker key for a control or admin
//! claim: such a proof fails with [`HandshakeError::WorkerSecret`].
//! Both nonces are fresh, so a recorded handshake cannot be replayed; over TLS the
//! exporter value is the channel binding, so a man in the middle that terminates TLS on
//! both sides computes a different `T` and cannot produce either proof.
//!
//! **A first round trip.** Each side times the exchange that ends its wait: the
//! listener from its hello to the dialer's proof, the dialer from its proof to the
//! listener's proof (each answered at once by a peer that accepts). The connection takes
//! it as the link's first round-trip sample ([`Handshake::round_trip`]), so the link
//! knows its round trip from the start rather than from its first ping, which the end
//! that does not ping every interval sends one interval later.
//!
//! Failures are typed ([`HandshakeError`]); the failing side tells the peer with a
//! [`Reject`] before closing. A listener that receives a wrong proof waits
//! `reject_delay` before answering, which slows password guessing.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::{DIALER_LABEL, Key, LISTENER_LABEL, Transcript};
use crate::message::{
    Hello, Message, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, Proof, Reject, RejectReason,
};
use crate::time::Instant;

/// Limits on what a peer may put in its [`Hello`].
pub const MAX_NAME_LEN: usize = 255;
/// Maximum number of listen URLs a peer may announce.
pub const MAX_LISTEN_URLS: usize = 32;
/// Maximum length of one announced listen URL.
pub const MAX_URL_LEN: usize = 1024;
/// Maximum length of announced metadata.
pub const MAX_META_LEN: usize = 8192;

/// The role a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Full member: hosts node proxies and accepts work (also runs jobs).
    Control,
    /// Runs jobs for the control nodes.
    Worker,
    /// An administrative client (the CLI); holds no jobs.
    Admin,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Control => "control",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We opened the connection; we prove first.
    Dialer,
    /// We accepted the connection.
    Listener,
}

/// What we tell peers about ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cluster name; peers in another cluster are refused.
    pub cluster: String,
    /// Stable node id.
    pub node_id: String,
    /// Random id of this run.
    pub instance: u64,
    /// Our role.
    pub role: Role,
    /// Canonical listen URLs (no passwords).
    pub listen: Vec<String>,
    /// Canonical metadata.
    pub meta: String,
    /// Ring partitions (control nodes; every control node of a cluster must agree).
    pub partitions: u32,
}

/// What an authenticated peer told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Stable node id.
    pub node_id: String,
    /// Random id of the peer's run.
    pub instance: u64,
    /// Its role.
    pub role: Role,
    /// Its listen URLs.
    pub listen: Vec<String>,
    /// Its metadata.
    pub meta: String,
    /// The protocol version both ends use.
    pub version: u16,
}

/// Handshake settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Oldest version we accept.
    pub version_min: u16,
    /// Newest version we speak.
    pub version_max: u16,
    /// The whole handshake must finish within this time.
    pub timeout: Duration,
    /// Delay before a listener answers a wrong proof.
    pub reject_delay: Duration,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: PROTOCOL_VERSION,
            timeout: Duration::from_secs(10),
            reject_delay: Duration::from_millis(500),
        }
    }
}

/// Why a handshake failed. Every variant is terminal: the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The peer belongs to another cluster.
    #[error("cluster_mismatch: we are in cluster {ours:?}, the peer in {theirs:?}")]
    ClusterMismatch {
        /// Our cluster.
        ours: String,
        /// The peer's cluster.
        theirs: String,
    },
    /// Two control nodes with different ring partition counts: they cannot agree on
    /// ownership, so they refuse to link.
    #[error(
        "partition_mismatch: we have {ours} ring partitions, the peer {theirs}; every control node of a cluster needs the same `partitions`"
    )]
    PartitionMismatch {
        /// Our partition count.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer's proof did not verify: different password, or a man in the middle.
    #[error("auth_failed: the peer's proof did not verify (wrong password or a man in the middle)")]
    AuthFailed,
    /// The peer proved the worker secret but claimed another role: the worker secret
    /// authenticates workers only. Sent to the peer as an `auth_failed` reject.
    #[error(
        "auth_failed: the worker secret (worker_password) cannot authenticate the {} role; control members and admin clients prove the control cluster's password",
        role.as_str()
    )]
    WorkerSecret {
        /// The role the peer claimed.
        role: Role,
    },
    /// No protocol version in common.
    #[error(
        "unsupported_version: we speak {ours_min}..={ours_max}, the peer {theirs_min}..={theirs_max}"
    )]
    UnsupportedVersion {
        /// Our oldest.
        ours_min: u16,
        /// Our newest.
        ours_max: u16,
        /// The peer's oldest.
        theirs_min: u16,
        /// The peer's newest.
        theirs_max: u16,
    },
    /// The peer refused us.
    #[error("rejected by peer: {}: {detail}", reason.code())]
    Rejected {
        /// The peer's reason.
        reason: RejectReason,
        /// The peer's detail text.
        detail: String,
    },
    /// The peer broke the protocol (unexpected message, oversized hello field...).
    #[error("protocol_error: {0}")]
    Protocol(String),
    /// The handshake did not finish in time.
    #[error("handshake_timeout")]
    Timeout,
}

impl HandshakeError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            HandshakeError::ClusterMismatch { .. } => "cluster_mismatch",
            HandshakeError::PartitionMismatch { .. } => "partition_mismatch",
            HandshakeError::AuthFailed | HandshakeError::WorkerSecret { .. } => "auth_failed",
            HandshakeError::UnsupportedVersion { .. } => "unsupported_version",
            HandshakeError::Rejected { reason, .. } => reason.code(),
            HandshakeError::Protocol(_) => "protocol_error",
            HandshakeError::Timeout => "handshake_timeout",
        }
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the peer's hello.
    AwaitHello,
    /// Waiting for the peer's proof (dialer: the listener's; listener: the dialer's).
    AwaitProof { peer: PeerInfo, digest: [u8; 32] },
    /// Listener: wrong proof seen; the reject goes out at `until`.
    Delaying {
        until: Instant,
        error: HandshakeError,
    },
    /// Authenticated.
    Done,
    /// Failed (the error was reported).
    Failed,
}

/// Progress reported by [`Handshake::poll_outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer is authenticated.
    Authenticated(PeerInfo),
    /// The handshake failed; flush transmits, then close.
    Failed(HandshakeError),
}

/// One side of the handshake. Feed it messages with [`handle_message`](Self::handle_message),
/// then drain [`poll_transmit`](Self::poll_transmit) and [`poll_outcome`](Self::poll_outcome).
#[derive(Debug)]
pub struct Handshake {
    side: Side,
    key: Key,
    worker_key: Option<Key>,
    cluster: String,
    role: Role,
    partitions: u32,
    config: HandshakeConfig,
    our_hello: Bytes,
    channel_binding: Vec<u8>,
    transcript: Transcript,
    state: State,
    deadline: Instant,
    transmit: VecDeque<Bytes>,
    outcome: Option<Outcome>,
    claimed_peer: Option<String>,
    /// When we sent the message whose answer ends our wait (listener: its hello;
    /// dialer: its proof).
    asked_at: Option<Instant>,
    /// From `asked_at` to that answer, once it came and verified.
    round_trip: Option<Duration>,
}

impl Handshake {
    /// Starts a handshake. `nonce` must be fresh randomness from the shell;
    /// `channel_binding` is the TLS exporter value (empty on plain transports).
    pub fn new(
        side: Side,
        identity: &Identity,
        key: Key,
        nonce: [u8; 32],
        channel_binding: &[u8],
        config: HandshakeConfig,
        now: Instant,
    ) -> Self {
        let hello = hello_body(identity, nonce, &config);
        let mut hs = Handshake {
            side,
            key,
            worker_key: None,
            cluster: identity.cluster.clone(),
            role: identity.role,
            partitions: identity.partitions,
            deadline: now + config.timeout,
            config,
            our_hello: hello.clone(),
            channel_binding: channel_binding.to_vec(),
            transcript: Transcript::new(),
            state: State::AwaitHello,
            transmit: VecDeque::new(),
            outcome: None,
            claimed_peer: None,
            asked_at: None,
            round_trip: None,
        };
        if side == Side::Dialer {
            hs.transcript.absorb(&hello);
            hs.transmit.push_back(hello);
        }
        hs
    }

    /// Sets the worker key (`worker_password`), used when either side is a worker;
    /// `None` (the default) uses the control key for every role.
    #[must_use]
    pub fn with_worker_key(mut self, worker_key: Option<Key>) -> Self {
        self.worker_key = worker_key;
        self
    }

    /// The key that proves a handshake between us and a peer claiming `peer`: the worker
    /// key when either side is a worker, the control key otherwise.
    fn key_with(&self, peer: Role) -> &Key {
        if self.role == Role::Worker || peer == Role::Worker {
            self.worker_key.as_ref().unwrap_or(&self.key)
        } else {
            &self.key
        }
    }

    /// Which side we are.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The node id the peer claimed in its hello (unauthenticated; for logs).
    pub fn claimed_peer(&self) -> Option<&str> {
        self.claimed_peer.as_deref()
    }

    /// The round trip of the exchange that authenticated the peer (see the module docs):
    /// `None` until then, and on a failed handshake.
    #[must_use]
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    /// Whether the handshake has ended (either way).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    /// Feeds one message from the peer; `body` is its exact encoded form (the transcript
    /// hashes the bytes as sent).
    pub fn handle_message(&mut self, now: Instant, body: &[u8], msg: Message) {
        if now >= self.deadline && !self.is_finished() {
            self.handle_timeout(now);
            return;
        }
        let state = core::mem::replace(&mut self.state, State::Failed);
        self.state = match (state, msg) {
            (_, Message::Reject(r)) => {
                let error = self.rejected(r);
                self.fail_silently(error);
                State::Failed
            }
            (State::AwaitHello, Message::Hello(h)) => self.on_hello(now, body, h),
            (State::AwaitProof { peer, digest }, Message::Proof(p)) => {
                self.on_proof(now, peer, digest, p)
            }
            (s @ State::Delaying { .. }, _) => s,
            (State::Done, m) | (State::Failed, m) => {
                // Not ours to judge any more: the connection routes link messages itself.
                self.fail(
                    RejectReason::Protocol,
                    HandshakeError::Protocol(format!("{} after the handshake ended", m.kind())),
                );
                State::Failed
            }
            (s, m) => {
                let expected = match s {
                    State::AwaitHello => "hello",
                    _ => "proof",
                };
                self.fail(
                    RejectReason::Protocol,
                    HandshakeError::Protocol(format!("expected {expected}, got {}", m.kind())),
                );
                State::Failed
            }
        };
    }

    fn on_hello(&mut self, now: Instant, body: &[u8], h: Hello) -> State {
        self.claimed_peer = Some(prefix_at_char_boundary(&h.node_id, MAX_NAME_LEN).to_owned());
        if let Err(e) = check_hello(&h) {
            self.fail(RejectReason::Protocol, e);
            return State::Failed;
        }
        let version = h.version_max.min(self.config.version_max);
        if version < h.version_min.max(self.config.version_min) {
            self.fail(
                RejectReason::UnsupportedVersion,
                HandshakeError::UnsupportedVersion {
                    ours_min: self.config.version_min,
                    ours_max: self.config.version_max,
                    theirs_min: h.version_min,
                    theirs_max: h.version_max,
                },
            );
            return State::Failed;
        }
        if h.cluster != self.cluster {
            let ours = Some(self.cluster.clone());
            self.fail_with(
                RejectReason::ClusterMismatch,
                HandshakeError::ClusterMismatch {
                    ours: self.cluster.clone(),
                    theirs: h.cluster,
                },
                ours,
            );
            return State::Failed;
        }
        if self.role == Role::Control && h.role == Role::Control && h.partitions != self.partitions
        {
            self.fail_with(
                RejectReason::PartitionMismatch,
                HandshakeError::PartitionMismatch {
                    ours: self.partitions,
                    theirs: h.partitions,
                },
                Some(self.partitions.to_string()),
            );
            return State::Failed;
        }
        let peer = PeerInfo {
            node_id: h.node_id,
            instance: h.instance,
            role: h.role,
            listen: h.listen,
            meta: h.meta,
            version,
        };
        match self.side {
            Side::Listener => {
                self.transcript.absorb(body);
                self.transcript.absorb(&self.our_hello);
                self.transcript.absorb(&self.channel_binding);
                self.transmit.push_back(self.our_hello.clone());
                self.asked_at = Some(now);
                let digest = self.transcript.digest();
                State::AwaitProof { peer, digest }
            }
            Side::Dialer => {
                self.transcript.absorb(body);
                self.transcript.absorb(&self.channel_binding);
                let digest = self.transcript.digest();
                let mac = self.key_with(peer.role).prove(DIALER_LABEL, &digest);
                self.transmit
                    .push_back(Message::Proof(Proof { mac }).encode_body());
                self.asked_at = Some(now);
                State::AwaitProof { peer, digest }
            }
        }
    }

    fn on_proof(&mut self, now: Instant, peer: PeerInfo, digest: [u8; 32], p: Proof) -> State {
        let label = match self.side {
            Side::Listener => DIALER_LABEL,
            Side::Dialer => LISTENER_LABEL,
        };
        if !self.key_with(peer.role).verify(label, &digest, &p.mac) {
            return match self.side {
                Side::Listener => State::Delaying {
                    until: now + self.config.reject_delay,
                    error: self.why_unverified(peer.role, &digest, &p.mac),
                },
                Side::Dialer => {
                    self.fail(RejectReason::AuthFailed, HandshakeError::AuthFailed);
                    State::Failed
                }
            };
        }
        if self.side == Side::Listener {
            let mac = self.key_with(peer.role).prove(LISTENER_LABEL, &digest);
            self.transmit
                .push_back(Message::Proof(Proof { mac }).encode_body());
        }
        self.round_trip = self.asked_at.map(|t| now.saturating_duration_since(t));
        self.outcome = Some(Outcome::Authenticated(peer));
        State::Done
    }

    /// Why a dialer's proof failed: [`HandshakeError::WorkerSecret`] when it verifies with
    /// the worker key while the claimed role needs the control key, else `AuthFailed`.
    fn why_unverified(&self, role: Role, digest: &[u8; 32], mac: &[u8; 32]) -> HandshakeError {
        let worker_secret = self.role != Role::Worker
            && role != Role::Worker
            && self
                .worker_key
                .as_ref()
                .is_some_and(|k| *k != self.key && k.verify(DIALER_LABEL, digest, mac));
        if worker_secret {
            HandshakeError::WorkerSecret { role }
        } else {
            HandshakeError::AuthFailed
        }
    }

    /// Sends a reject to the peer and reports the failure.
    fn fail(&mut self, reason: RejectReason, error: HandshakeError) {
        self.fail_with(reason, error, None);
    }

    /// [`fail`](Self::fail), telling the peer our own value of the setting that differs.
    fn fail_with(&mut self, reason: RejectReason, error: HandshakeError, ours: Option<String>) {
        let detail = error.to_string();
        self.transmit.push_back(
            Message::Reject(Reject {
                reason,
                detail,
                theirs: ours,
            })
            .encode_body(),
        );
        self.outcome = Some(Outcome::Failed(error));
    }

    /// The error for the peer's refusal, from our point of view: a setting that differs
    /// names our value and the peer's (the peer's own detail text speaks for the peer).
    fn rejected(&self, r: Reject) -> HandshakeError {
        match (r.reason, r.theirs) {
            (RejectReason::ClusterMismatch, Some(theirs)) => HandshakeError::ClusterMismatch {
                ours: self.cluster.clone(),
                theirs: prefix_at_char_boundary(&theirs, MAX_NAME_LEN).to_owned(),
            },
            (RejectReason::PartitionMismatch, Some(theirs)) => match theirs.parse() {
                Ok(theirs) => HandshakeError::PartitionMismatch {
                    ours: self.partitions,
                    theirs,
                },
                Err(_) => HandshakeError::Rejected {
                    reason: r.reason,
                    detail: r.detail,
                },
            },
            (reason, _) => HandshakeError::Rejected {
                reason,
                // The peer's text starts with the code already: not twice.
                detail: r
                    .detail
                    .strip_prefix(reason.code())
                    .and_then(|d| d.strip_prefix(": "))
                    .map_or_else(|| r.detail.clone(), str::to_owned),
            },
        }
    }

    fn fail_silently(&mut self, error: HandshakeError) {
        self.outcome = Some(Outcome::Failed(error));
    }

    /// Advances time: the handshake deadline and the delayed reject.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Delaying { until, error } if now >= *until => {
                let error = error.clone();
                self.fail(RejectReason::AuthFailed, error);
                self.state = State::Failed;
            }
            State::Done | State::Failed | State::Delaying { .. } => {}
            State::AwaitHello | State::AwaitProof { .. } if now >= self.deadline => {
                self.fail(RejectReason::Timeout, HandshakeError::Timeout);
                self.state = State::Failed;
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Delaying { until, .. } => Some(*until),
            State::AwaitHello | State::AwaitProof { .. } => Some(self.deadline),
            State::Done | State::Failed => None,
        }
    }

    /// Next message body to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The result, once: authenticated or failed.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }
}

/// The encoded body of our hello with `nonce` (both sides send the same form).
pub(crate) fn hello_body(identity: &Identity, nonce: [u8; 32], config: &HandshakeConfig) -> Bytes {
    Message::Hello(Hello {
        version_min: config.version_min,
        version_max: config.version_max,
        cluster: identity.cluster.clone(),
        node_id: identity.node_id.clone(),
        instance: identity.instance,
        role: identity.role,
        listen: identity.listen.clone(),
        meta: identity.meta.clone(),
        nonce,
        partitions: identity.partitions,
    })
    .encode_body()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_hello(h: &Hello) -> Result<(), HandshakeError> {
    let bad = |what: &str| Err(HandshakeError::Protocol(format!("hello: {what}")));
    if h.node_id.is_empty() || h.node_id.len() > MAX_NAME_LEN {
        return bad("node id empty or too long");
    }
    if h.cluster.len() > MAX_NAME_LEN {
        return bad("cluster name too long");
    }
    if h.listen.len() > MAX_LISTEN_URLS || h.listen.iter().any(|u| u.len() > MAX_URL_LEN) {
        return bad("too many or too long listen urls");
    }
    if h.meta.len() > MAX_META_LEN {
        return bad("metadata too long");
    }
    if h.version_min > h.version_max {
        return bad("version range inverted");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
