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
//! Both nonces are fresh, so a recorded handshake cannot be replayed; over TLS the
//! exporter value is the channel binding, so a man in the middle that terminates TLS on
//! both sides computes a different `T` and cannot produce either proof.
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
            HandshakeError::AuthFailed => "auth_failed",
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
        let hello = Message::Hello(Hello {
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
        .encode_body();
        let mut hs = Handshake {
            side,
            key,
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
        };
        if side == Side::Dialer {
            hs.transcript.absorb(&hello);
            hs.transmit.push_back(hello);
        }
        hs
    }

    /// Which side we are.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The node id the peer claimed in its hello (unauthenticated; for logs).
    pub fn claimed_peer(&self) -> Option<&str> {
        self.claimed_peer.as_deref()
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
            (State::AwaitHello, Message::Hello(h)) => self.on_hello(body, h),
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

    fn on_hello(&mut self, body: &[u8], h: Hello) -> State {
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
                let digest = self.transcript.digest();
                State::AwaitProof { peer, digest }
            }
            Side::Dialer => {
                self.transcript.absorb(body);
                self.transcript.absorb(&self.channel_binding);
                let digest = self.transcript.digest();
                let mac = self.key.prove(DIALER_LABEL, &digest);
                self.transmit
                    .push_back(Message::Proof(Proof { mac }).encode_body());
                State::AwaitProof { peer, digest }
            }
        }
    }

    fn on_proof(&mut self, now: Instant, peer: PeerInfo, digest: [u8; 32], p: Proof) -> State {
        let label = match self.side {
            Side::Listener => DIALER_LABEL,
            Side::Dialer => LISTENER_LABEL,
        };
        if !self.key.verify(label, &digest, &p.mac) {
            return match self.side {
                Side::Listener => State::Delaying {
                    until: now + self.config.reject_delay,
                    error: HandshakeError::AuthFailed,
                },
                Side::Dialer => {
                    self.fail(RejectReason::AuthFailed, HandshakeError::AuthFailed);
                    State::Failed
                }
            };
        }
        if self.side == Side::Listener {
            let mac = self.key.prove(LISTENER_LABEL, &digest);
            self.transmit
                .push_back(Message::Proof(Proof { mac }).encode_body());
        }
        self.outcome = Some(Outcome::Authenticated(peer));
        State::Done
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ident(id: &str, cluster: &str, role: Role) -> Identity {
        Identity {
            cluster: cluster.into(),
            node_id: id.into(),
            instance: 7,
            role,
            listen: vec!["nkcluster://127.0.0.1:1972;transport=tcp".into()],
            meta: "core;group=g1".into(),
            partitions: 64,
        }
    }

    fn pair(
        pw_d: &str,
        pw_l: &str,
        cl_d: &str,
        cl_l: &str,
        binding: (&[u8], &[u8]),
    ) -> (Handshake, Handshake) {
        let t0 = Instant::ZERO;
        let d = Handshake::new(
            Side::Dialer,
            &ident("w1", cl_d, Role::Worker),
            Key::derive(pw_d, cl_d, 2),
            [1; 32],
            binding.0,
            HandshakeConfig::default(),
            t0,
        );
        let l = Handshake::new(
            Side::Listener,
            &ident("c1", cl_l, Role::Control),
            Key::derive(pw_l, cl_l, 2),
            [2; 32],
            binding.1,
            HandshakeConfig::default(),
            t0,
        );
        (d, l)
    }

    /// Shuttles messages until both sides are quiet; returns the messages kinds exchanged.
    fn run(d: &mut Handshake, l: &mut Handshake, now: Instant) -> Vec<String> {
        let mut log = Vec::new();
        loop {
            let mut moved = false;
            while let Some(b) = d.poll_transmit() {
                let m = Message::decode(&b).expect("valid");
                log.push(format!("d>{}", m.kind()));
                l.handle_message(now, &b, m);
                moved = true;
            }
            while let Some(b) = l.poll_transmit() {
                let m = Message::decode(&b).expect("valid");
                log.push(format!("l>{}", m.kind()));
                d.handle_message(now, &b, m);
                moved = true;
            }
            if !moved {
                return log;
            }
        }
    }

    #[test]
    fn equal_passwords_authenticate_both_ways() {
        let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let log = run(&mut d, &mut l, Instant::ZERO);
        assert_eq!(log, ["d>hello", "l>hello", "d>proof", "l>proof"]);
        match d.poll_outcome() {
            Some(Outcome::Authenticated(p)) => {
                assert_eq!(p.node_id, "c1");
                assert_eq!(p.role, Role::Control);
                assert_eq!(p.version, PROTOCOL_VERSION);
            }
            o => panic!("dialer: {o:?}"),
        }
        match l.poll_outcome() {
            Some(Outcome::Authenticated(p)) => {
                assert_eq!(p.node_id, "w1");
                assert_eq!(p.meta, "core;group=g1");
            }
            o => panic!("listener: {o:?}"),
        }
        assert!(d.is_finished() && l.is_finished());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn wrong_password_is_rejected_after_the_delay() {
        let (mut d, mut l) = pair("bad", "pw", "c", "c", (b"", b""));
        let log = run(&mut d, &mut l, Instant::ZERO);
        assert_eq!(log, ["d>hello", "l>hello", "d>proof"]);
        assert_eq!(l.poll_outcome(), None);
        let at = Instant::ZERO + Duration::from_millis(500);
        assert_eq!(l.poll_timeout(), Some(at));
        l.handle_timeout(Instant::from_millis(499));
        assert_eq!(l.poll_transmit(), None);
        l.handle_timeout(at);
        assert_eq!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::AuthFailed))
        );
        let b = l.poll_transmit().expect("reject");
        let m = Message::decode(&b).expect("valid");
        d.handle_message(at, &b, m);
        match d.poll_outcome() {
            Some(Outcome::Failed(HandshakeError::Rejected { reason, .. })) => {
                assert_eq!(reason, RejectReason::AuthFailed)
            }
            o => panic!("dialer: {o:?}"),
        }
    }

    #[test]
    fn cluster_mismatch_is_rejected_at_once() {
        let (mut d, mut l) = pair("pw", "pw", "a", "b", (b"", b""));
        let log = run(&mut d, &mut l, Instant::ZERO);
        assert_eq!(log, ["d>hello", "l>reject"]);
        assert_eq!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::ClusterMismatch {
                ours: "b".into(),
                theirs: "a".into()
            }))
        );
        // The dialer names its own cluster as ours, the listener's as the peer's.
        let dialer = d.poll_outcome();
        assert_eq!(
            dialer,
            Some(Outcome::Failed(HandshakeError::ClusterMismatch {
                ours: "a".into(),
                theirs: "b".into()
            }))
        );
        let Some(Outcome::Failed(e)) = dialer else {
            unreachable!()
        };
        assert_eq!(
            e.to_string(),
            "cluster_mismatch: we are in cluster \"a\", the peer in \"b\""
        );
    }

    fn control_pair(partitions_d: u32, partitions_l: u32, role_d: Role) -> (Handshake, Handshake) {
        let id = |id: &str, role: Role, partitions: u32| Identity {
            partitions,
            ..ident(id, "c", role)
        };
        let hs = |side, ident: &Identity, nonce| {
            Handshake::new(
                side,
                ident,
                Key::derive("pw", "c", 2),
                nonce,
                b"",
                HandshakeConfig::default(),
                Instant::ZERO,
            )
        };
        (
            hs(Side::Dialer, &id("c2", role_d, partitions_d), [1; 32]),
            hs(
                Side::Listener,
                &id("c1", Role::Control, partitions_l),
                [2; 32],
            ),
        )
    }

    #[test]
    fn control_nodes_with_different_partitions_refuse_each_other_naming_both_values() {
        let (mut d, mut l) = control_pair(128, 64, Role::Control);
        let log = run(&mut d, &mut l, Instant::ZERO);
        assert_eq!(log, ["d>hello", "l>reject"]);
        assert_eq!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::PartitionMismatch {
                ours: 64,
                theirs: 128
            }))
        );
        assert_eq!(
            d.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::PartitionMismatch {
                ours: 128,
                theirs: 64
            }))
        );
    }

    #[test]
    fn partitions_only_matter_between_control_nodes() {
        // A worker announces whatever it likes (0): the control node accepts it.
        let (mut d, mut l) = control_pair(0, 64, Role::Worker);
        let log = run(&mut d, &mut l, Instant::ZERO);
        assert_eq!(log, ["d>hello", "l>hello", "d>proof", "l>proof"]);
        assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(_))));
        assert!(matches!(l.poll_outcome(), Some(Outcome::Authenticated(_))));
        // Equal counts link.
        let (mut d, mut l) = control_pair(64, 64, Role::Control);
        run(&mut d, &mut l, Instant::ZERO);
        assert!(matches!(d.poll_outcome(), Some(Outcome::Authenticated(_))));
    }

    #[test]
    fn differing_channel_bindings_fail_like_a_wrong_password() {
        let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"tls-a", b"tls-b"));
        run(&mut d, &mut l, Instant::ZERO);
        l.handle_timeout(Instant::from_millis(500));
        assert_eq!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::AuthFailed))
        );
    }

    #[test]
    fn replayed_dialer_proof_fails() {
        // Record a good run, then replay the dialer's messages to a fresh listener that
        // picks another nonce.
        let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let hello = d.poll_transmit().expect("hello");
        l.handle_message(
            Instant::ZERO,
            &hello,
            Message::decode(&hello).expect("valid"),
        );
        let lh = l.poll_transmit().expect("hello");
        d.handle_message(Instant::ZERO, &lh, Message::decode(&lh).expect("valid"));
        let proof = d.poll_transmit().expect("proof");
        let mut l2 = Handshake::new(
            Side::Listener,
            &ident("c1", "c", Role::Control),
            Key::derive("pw", "c", 2),
            [3; 32],
            b"",
            HandshakeConfig::default(),
            Instant::ZERO,
        );
        l2.handle_message(
            Instant::ZERO,
            &hello,
            Message::decode(&hello).expect("valid"),
        );
        let _ = l2.poll_transmit();
        l2.handle_message(
            Instant::ZERO,
            &proof,
            Message::decode(&proof).expect("valid"),
        );
        l2.handle_timeout(Instant::from_secs_for_test(1));
        assert_eq!(
            l2.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::AuthFailed))
        );
    }

    #[test]
    fn version_without_overlap_is_rejected() {
        let t0 = Instant::ZERO;
        let mut d = Handshake::new(
            Side::Dialer,
            &ident("w1", "c", Role::Worker),
            Key::from_bytes([0; 32]),
            [1; 32],
            b"",
            HandshakeConfig {
                version_min: 5,
                version_max: 6,
                ..Default::default()
            },
            t0,
        );
        let mut l = Handshake::new(
            Side::Listener,
            &ident("c1", "c", Role::Control),
            Key::from_bytes([0; 32]),
            [2; 32],
            b"",
            HandshakeConfig::default(),
            t0,
        );
        assert_eq!(run(&mut d, &mut l, t0), ["d>hello", "l>reject"]);
        assert!(matches!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::UnsupportedVersion {
                theirs_min: 5,
                ..
            }))
        ));
    }

    #[test]
    fn silence_times_out() {
        let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        assert_eq!(l.poll_timeout(), Some(Instant::from_secs_for_test(10)));
        l.handle_timeout(Instant::from_secs_for_test(10));
        assert_eq!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::Timeout))
        );
        let b = l.poll_transmit().expect("reject");
        assert!(matches!(
            Message::decode(&b),
            Ok(Message::Reject(Reject {
                reason: RejectReason::Timeout,
                ..
            }))
        ));
    }

    #[test]
    fn unexpected_message_is_a_protocol_error() {
        let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let m = Message::Proof(Proof { mac: [0; 32] });
        l.handle_message(Instant::ZERO, &m.encode_body(), m);
        assert!(matches!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::Protocol(_)))
        ));
    }

    #[test]
    fn oversized_hello_fields_are_refused() {
        let (mut d, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let _ = d.poll_transmit();
        let m = Message::Hello(Hello {
            version_min: 1,
            version_max: 1,
            cluster: "c".into(),
            node_id: "x".repeat(MAX_NAME_LEN + 1),
            instance: 1,
            role: Role::Worker,
            listen: vec![],
            meta: String::new(),
            nonce: [0; 32],
            partitions: 0,
        });
        l.handle_message(Instant::ZERO, &m.encode_body(), m);
        assert!(matches!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::Protocol(_)))
        ));
    }

    #[test]
    fn overlong_multibyte_node_id_is_refused_without_panicking() {
        // 'é' is two bytes: byte 255 falls inside a character.
        let (_, mut l) = pair("pw", "pw", "c", "c", (b"", b""));
        let m = Message::Hello(Hello {
            version_min: 1,
            version_max: 1,
            cluster: "c".into(),
            node_id: "é".repeat(200),
            instance: 1,
            role: Role::Worker,
            listen: vec![],
            meta: String::new(),
            nonce: [0; 32],
            partitions: 0,
        });
        l.handle_message(Instant::ZERO, &m.encode_body(), m);
        assert!(matches!(
            l.poll_outcome(),
            Some(Outcome::Failed(HandshakeError::Protocol(_)))
        ));
        assert_eq!(l.claimed_peer().map(str::len), Some(254));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn completes_iff_passwords_match(a in "[a-z]{0,8}", b in "[a-z]{0,8}") {
            let (mut d, mut l) = pair(&a, &b, "c", "c", (b"", b""));
            run(&mut d, &mut l, Instant::ZERO);
            l.handle_timeout(Instant::from_millis(500));
            run(&mut d, &mut l, Instant::from_millis(500));
            let dl = d.poll_outcome();
            let ll = l.poll_outcome();
            if a == b {
                prop_assert!(matches!(dl, Some(Outcome::Authenticated(_))));
                prop_assert!(matches!(ll, Some(Outcome::Authenticated(_))));
            } else {
                prop_assert!(matches!(dl, Some(Outcome::Failed(_))));
                prop_assert_eq!(ll, Some(Outcome::Failed(HandshakeError::AuthFailed)));
            }
        }
    }
}
