//! The protocol's messages: one versioned enum, encoded with postcard.
//!
//! Compatibility rule: variants and fields are only ever *appended* (postcard encodes the
//! variant index as a varint), and a peer that receives a variant it does not know closes
//! the connection with a typed decode error. The versions a node speaks travel in
//! [`Hello`]; both ends pick the highest common one.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::frame::HEADER_LEN;
use crate::handshake::Role;

mod hot;
pub use hot::{Hot, HotFrame, LastClass};

/// Newest protocol version this build speaks. 2: bulk messages in chunks
/// ([`crate::lanes`]); 3: one end of a link pings every interval, the other answers
/// ([`crate::keepalive`]); 4: the pinging end sends a [`Message::Heartbeat`], which needs
/// no answer, when it heard from the peer recently enough (see [`crate::keepalive`]).
/// Older peers get the older behaviour. 5: one-way notices ([`Message::Notice`],
/// [`NOTICE_VERSION`]). 6: a file sent to a node directly is checked with BLAKE3
/// ([`crate::file_send::digest`], `JobCall::SendFileBlake3`). 7: the receiver of bulk
/// reports what it has read ([`Message::BulkRead`]) and the sender windows its bulk lane
/// by it ([`crate::lanes::credit`]).
pub const PROTOCOL_VERSION: u16 = 7;

/// First protocol version with one-way notices ([`Message::Notice`]): with an older
/// peer a notice goes as a request whose answer nobody reads (the peer still writes
/// it).
pub const NOTICE_VERSION: u16 = 5;

/// Whether a link that speaks `version` carries notices one way (no answer written).
pub fn notices_one_way(version: u16) -> bool {
    version >= NOTICE_VERSION
}

/// Oldest protocol version this build still speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// Every message that crosses a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message of each side: who it is and a fresh nonce.
    Hello(Hello),
    /// Proof of knowledge of the cluster key over the handshake transcript.
    Proof(Proof),
    /// The handshake failed; the sender closes after this.
    Reject(Reject),
    /// Liveness and RTT probe.
    Ping(Ping),
    /// Answer to a [`Ping`].
    Pong(Pong),
    /// A request to the peer's job layer.
    Request(Request),
    /// The answer to a [`Request`].
    Reply(Reply),
    /// Orderly close.
    Close(Close),
    /// A control node's membership view (first entry: the sender itself).
    Gossip(Vec<crate::membership::MemberInfo>),
    /// A piece of a big message's body (protocol 2): the pieces of one message follow
    /// each other in order, other messages may come between them, and the last has
    /// `more: false`; put together they are the body of one message (never a chunk),
    /// handled as if it had arrived whole. See [`crate::lanes`].
    Chunk(Chunk),
    /// Liveness only (protocol 4): the sender is alive and wants no answer. The pinging
    /// end sends it instead of a [`Ping`] while it has heard from the peer recently enough
    /// (see [`crate::keepalive`]).
    Heartbeat,
    /// A one-way message to the peer's job layer (protocol 5, [`NOTICE_VERSION`]):
    /// handled like a request, but nothing is answered (a worker's status and info
    /// reports, a control node's `placed`).
    Notice(Notice),
    /// The bulk body bytes (chunk data) the sender has read from this link since its
    /// last such report (protocol 7): the peer windows its bulk lane by it (see
    /// [`crate::lanes::credit`]).
    BulkRead(u64),
}

/// A one-way message (see [`Message::Notice`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Job class (or built-in handler) name.
    pub class: SmolStr,
    /// Class-specific payload.
    pub body: Bytes,
}

/// A piece of a big message's body (see [`Message::Chunk`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// More pieces of the same message follow.
    pub more: bool,
    /// The bytes.
    pub data: Bytes,
}

/// Handshake greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Oldest protocol version the sender speaks.
    pub version_min: u16,
    /// Newest protocol version the sender speaks.
    pub version_max: u16,
    /// Cluster name; must be equal on both sides.
    pub cluster: String,
    /// Stable node id (`dev1`).
    pub node_id: String,
    /// Random id of this run of the node (changes on restart).
    pub instance: u64,
    /// The sender's role.
    pub role: Role,
    /// URLs the sender listens on (canonical `nkcluster://` form, no passwords).
    pub listen: Vec<String>,
    /// The sender's metadata (canonical form).
    pub meta: String,
    /// Fresh random nonce.
    pub nonce: [u8; 32],
    /// Ring partitions of a control node (every control node of a cluster must agree);
    /// 0 for other roles.
    pub partitions: u32,
}

/// HMAC proof over the handshake transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// HMAC-SHA256 value.
    pub mac: [u8; 32],
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The cluster names differ.
    ClusterMismatch,
    /// The proof did not verify: the passwords differ (or a man in the middle).
    AuthFailed,
    /// No common protocol version.
    UnsupportedVersion,
    /// The peer broke the handshake protocol.
    Protocol,
    /// The handshake took too long.
    Timeout,
    /// The receiver refuses new connections for now.
    Busy,
    /// Two control nodes with different ring partition counts.
    PartitionMismatch,
}

impl RejectReason {
    /// Stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::ClusterMismatch => "cluster_mismatch",
            RejectReason::AuthFailed => "auth_failed",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::Protocol => "protocol_error",
            RejectReason::Timeout => "handshake_timeout",
            RejectReason::Busy => "busy",
            RejectReason::PartitionMismatch => "partition_mismatch",
        }
    }
}

/// Handshake refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// Human-readable detail.
    pub detail: String,
    /// The refusing side's own value of the setting that differs (its cluster name, its
    /// partition count), so the refused side can say which value is whose.
    pub theirs: Option<String>,
}

/// Liveness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Sequence number, echoed in the pong.
    pub seq: u64,
    /// Sender's wall clock, Unix nanoseconds.
    pub wall_ns: u64,
}

/// Answer to a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's sequence number.
    pub seq: u64,
    /// The ping's `wall_ns`, echoed.
    pub echo_wall_ns: u64,
    /// Responder's wall clock when answering, Unix nanoseconds.
    pub wall_ns: u64,
}

/// A request for the peer's job layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Sender-assigned id, unique on the connection.
    pub id: u64,
    /// How long the sender waits, in milliseconds.
    pub timeout_ms: u32,
    /// Job class (or built-in handler) name: held inline when short (class names
    /// usually are), so a request's name costs no allocation on either side.
    pub class: SmolStr,
    /// Class-specific payload.
    pub body: Bytes,
}

/// An error returned by the peer for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Stable snake_case code (`unknown_class`, `timeout`, ...).
    pub code: crate::error::ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl RemoteError {
    /// Builds an error from a code and a message. A message that already starts with
    /// the code (a typed error's own text, `code: detail`) is not prefixed twice.
    pub fn new(code: impl Into<crate::error::ErrorCode>, message: impl Into<String>) -> Self {
        let code = code.into();
        let mut message = message.into();
        if let Some(rest) = message
            .strip_prefix(code.as_str())
            .and_then(|r| r.strip_prefix(": "))
        {
            message = rest.to_owned();
        }
        RemoteError { code, message }
    }
}

impl core::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.message.is_empty() {
            return f.write_str(self.code.as_str());
        }
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod remote_error_tests {
    use super::RemoteError;

    #[test]
    fn the_code_is_printed_once() {
        let e = RemoteError::new("invalid_status", "invalid_status: no status \"x\"");
        assert_eq!(e.message, "no status \"x\"");
        assert_eq!(e.to_string(), "invalid_status: no status \"x\"");
        let e = RemoteError::new("timeout", "");
        assert_eq!(e.to_string(), "timeout");
        // Only a leading `code: ` is dropped.
        assert_eq!(RemoteError::new("a", "b: a: c").to_string(), "a: b: a: c");
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// The payload, or the peer's error.
    pub result: Result<Bytes, RemoteError>,
}

/// Orderly close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// Why the sender closes.
    pub reason: String,
}

/// Decoding failed: the body is not a message this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(pub String);

impl Message {
    /// Decodes one frame body. Trailing bytes are an error.
    pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
        match postcard::take_from_bytes::<Message>(body) {
            Ok((m, [])) => Ok(m),
            Ok((_, rest)) => Err(DecodeError(format!("{} trailing bytes", rest.len()))),
            Err(e) => Err(DecodeError(e.to_string())),
        }
    }

    /// Decodes one frame body held in `frame`, without copying request and reply
    /// payloads: they become slices of `frame`. Same result as [`decode`](Self::decode).
    pub fn decode_bytes(frame: &Bytes) -> Result<Message, DecodeError> {
        if let Some(m) = hot::decode(frame) {
            return Ok(m);
        }
        let m = match postcard::take_from_bytes::<wire::MessageRef<'_>>(frame) {
            Ok((m, [])) => m,
            Ok((_, rest)) => return Err(DecodeError(format!("{} trailing bytes", rest.len()))),
            Err(e) => return Err(DecodeError(e.to_string())),
        };
        Ok(m.into_owned(frame))
    }

    /// Bodies at least this large are sent as their own segment (no copy into the frame).
    pub const SPLIT_BODY_MIN: usize = 16 * 1024;

    /// Appends a whole frame to `out`, except that a request or reply payload of at least
    /// [`SPLIT_BODY_MIN`](Self::SPLIT_BODY_MIN) bytes is not copied: it is returned, and
    /// must be written right after `out`'s new bytes. The concatenation is exactly
    /// [`encode_frame_into`](Self::encode_frame_into)'s output.
    pub fn encode_frame_split(&self, out: &mut BytesMut) -> Option<Bytes> {
        let body = match self {
            Message::Request(r) if r.body.len() >= Self::SPLIT_BODY_MIN => r.body.clone(),
            Message::Reply(Reply { result: Ok(b), .. }) if b.len() >= Self::SPLIT_BODY_MIN => {
                b.clone()
            }
            _ => {
                self.encode_frame_into(out);
                return None;
            }
        };
        // The payload is the last field, encoded as varint(len) ++ bytes: encode the
        // message with an empty payload (which ends in the single byte varint(0)), then
        // replace that byte with the real length.
        let hollow = match self {
            Message::Request(r) => Message::Request(Request {
                body: Bytes::new(),
                ..r.clone()
            }),
            Message::Reply(r) => Message::Reply(Reply {
                id: r.id,
                result: Ok(Bytes::new()),
            }),
            _ => return None,
        };
        let start = out.len();
        out.put_u32(0);
        hollow.encode_into(out);
        out.truncate(out.len() - 1);
        let mut len = body.len();
        while len >= 0x80 {
            out.put_u8((len as u8) | 0x80);
            len >>= 7;
        }
        out.put_u8(len as u8);
        let total = out.len() - start - HEADER_LEN + body.len();
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        out[start..start + HEADER_LEN].copy_from_slice(&total.to_be_bytes());
        Some(body)
    }

    /// Encodes the message body alone.
    pub fn encode_body(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size_hint());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Room for the encoded body, made before it is encoded: at least the whole body for
    /// a handshake message (hello, proof, reject), a close or a notice (postcard writes a
    /// length or a number as at most 10 bytes, a 32-byte array as 32),
    /// [`SMALL_FRAME`](Self::SMALL_FRAME) for the others (a hint). The encoder grows the
    /// buffer a few bytes at a time: from empty, a hello took an allocation and four
    /// reallocations, a proof one and three, and a worker's first status and info
    /// notices, from the 64 bytes of a small frame, two or three each, on every link
    /// coming up (issue 15, point 7).
    fn size_hint(&self) -> usize {
        match self {
            Message::Hello(h) => {
                96 + h.cluster.len()
                    + h.node_id.len()
                    + h.meta.len()
                    + h.listen.iter().map(|u| u.len() + 10).sum::<usize>()
            }
            Message::Proof(_) => 40,
            Message::Reject(r) => 32 + r.detail.len() + r.theirs.as_ref().map_or(0, String::len),
            Message::Close(c) => 16 + c.reason.len(),
            Message::Notice(n) => 32 + n.class.len() + n.body.len(),
            _ => Self::SMALL_FRAME,
        }
    }

    /// Appends the encoded body to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        // Serialising an owned enum of strings, byte buffers and integers into a growable
        // buffer cannot fail; the fallback keeps the wire well-formed anyway.
        if postcard::serialize_with_flavor::<Message, BytesMutFlavor<'_>, ()>(
            self,
            BytesMutFlavor { out },
        )
        .is_err()
        {
            out.clear();
        }
    }

    /// Room made in `out` before a frame is encoded into it: a ping or a pong fits
    /// whatever its numbers, so encoding one into an empty buffer (a link's output between wake-ups, see
    /// `lanes.rs`) allocates once. The encoder grows the buffer a few bytes at a time,
    /// which from empty took an allocation and two reallocations per pong, the only
    /// output of a control node's idle link (issue 15, point 6).
    pub const SMALL_FRAME: usize = 64;

    /// Appends a whole frame (length prefix and body) to `out`.
    pub fn encode_frame_into(&self, out: &mut BytesMut) {
        // A small frame's room as before (a ping, a pong), a whole frame's for a bigger
        // message whose size is known.
        let hint = self.size_hint();
        out.reserve(if hint > Self::SMALL_FRAME {
            HEADER_LEN + hint
        } else {
            Self::SMALL_FRAME
        });
        let start = out.len();
        out.put_u32(0);
        self.encode_into(out);
        let len = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
        out[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Short name of the variant, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Proof(_) => "proof",
            Message::Reject(_) => "reject",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Request(_) => "request",
            Message::Reply(_) => "reply",
            Message::Close(_) => "close",
            Message::Gossip(_) => "gossip",
            Message::Chunk(_) => "chunk",
            Message::Heartbeat => "heartbeat",
            Message::Notice(_) => "notice",
            Message::BulkRead(_) => "bulk_read",
        }
    }
}

/// Borrowed mirror of [`Message`] (same variants, same order) so that payloads can be
/// decoded as slices of the frame instead of copies.
mod wire {
    use bytes::Bytes;
    use serde::Deserialize;

    use super::{Close, Hello, Ping, Pong, Proof, Reject, RemoteError};

    #[derive(Deserialize)]
    pub(super) enum MessageRef<'a> {
        Hello(Hello),
        Proof(Proof),
        Reject(Reject),
        Ping(Ping),
        Pong(Pong),
        Request(#[serde(borrow)] RequestRef<'a>),
        Reply(#[serde(borrow)] ReplyRef<'a>),
        Close(Close),
        Gossip(Vec<crate::membership::MemberInfo>),
        Chunk(#[serde(borrow)] ChunkRef<'a>),
        Heartbeat,
        Notice(#[serde(borrow)] NoticeRef<'a>),
        BulkRead(u64),
    }

    #[derive(Deserialize)]
    pub(super) struct NoticeRef<'a> {
        class: &'a str,
        body: &'a [u8],
    }

    #[derive(Deserialize)]
    pub(super) struct ChunkRef<'a> {
        more: bool,
        data: &'a [u8],
    }

    #[derive(Deserialize)]
    pub(super) struct RequestRef<'a> {
        id: u64,
        timeout_ms: u32,
        class: &'a str,
        body: &'a [u8],
    }

    #[derive(Deserialize)]
    pub(super) struct ReplyRef<'a> {
        id: u64,
        #[serde(borrow)]
        result: Result<&'a [u8], RemoteError>,
    }

    impl MessageRef<'_> {
        pub(super) fn into_owned(self, frame: &Bytes) -> super::Message {
            use super::{Message, Reply, Request};
            match self {
                MessageRef::Hello(m) => Message::Hello(m),
                MessageRef::Proof(m) => Message::Proof(m),
                MessageRef::Reject(m) => Message::Reject(m),
                MessageRef::Ping(m) => Message::Ping(m),
                MessageRef::Pong(m) => Message::Pong(m),
                MessageRef::Request(r) => Message::Request(Request {
                    id: r.id,
                    timeout_ms: r.timeout_ms,
                    class: smol_str::SmolStr::new(r.class),
                    body: frame.slice_ref(r.body),
                }),
                MessageRef::Reply(r) => Message::Reply(Reply {
                    id: r.id,
                    result: r.result.map(|b| frame.slice_ref(b)),
                }),
                MessageRef::Close(m) => Message::Close(m),
                MessageRef::Gossip(v) => Message::Gossip(v),
                MessageRef::Chunk(c) => Message::Chunk(super::Chunk {
                    more: c.more,
                    data: frame.slice_ref(c.data),
                }),
                MessageRef::Heartbeat => Message::Heartbeat,
                MessageRef::Notice(n) => Message::Notice(super::Notice {
                    class: smol_str::SmolStr::new(n.class),
                    body: frame.slice_ref(n.body),
                }),
                MessageRef::BulkRead(n) => Message::BulkRead(n),
            }
        }
    }
}

/// postcard flavor writing straight into a `BytesMut` (bulk copies for byte strings).
struct BytesMutFlavor<'a> {
    out: &'a mut BytesMut,
}

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.out.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message> {
        let s = "[a-z0-9]{0,12}";
        prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                s,
                s,
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(s, 0..3),
                s,
                (any::<[u8; 32]>(), any::<u32>())
            )
                .prop_map(|(a, b, c, n, i, r, l, m, (nonce, partitions))| {
                    Message::Hello(Hello {
                        version_min: a,
                        version_max: b,
                        cluster: c,
                        node_id: n,
                        instance: i,
                        role: if r { Role::Control } else { Role::Worker },
                        listen: l,
                        meta: m,
                        nonce,
                        partitions,
                    })
                }),
            any::<[u8; 32]>().prop_map(|mac| Message::Proof(Proof { mac })),
            (any::<u64>(), any::<u64>())
                .prop_map(|(seq, wall_ns)| Message::Ping(Ping { seq, wall_ns })),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(seq, e, w)| Message::Pong(
                Pong {
                    seq,
                    echo_wall_ns: e,
                    wall_ns: w
                }
            )),
            (
                any::<u64>(),
                any::<u32>(),
                s,
                proptest::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|(id, t, class, body)| Message::Request(Request {
                    id,
                    timeout_ms: t,
                    class: class.into(),
                    body: body.into()
                })),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..100),
                any::<bool>(),
                s
            )
                .prop_map(|(id, body, ok, m)| Message::Reply(Reply {
                    id,
                    result: if ok {
                        Ok(body.into())
                    } else {
                        Err(RemoteError::new("x", m))
                    }
                })),
            s.prop_map(|reason| Message::Close(Close { reason })),
            Just(Message::Heartbeat),
            any::<u64>().prop_map(Message::BulkRead),
            (s, proptest::collection::vec(any::<u8>(), 0..100)).prop_map(|(class, body)| {
                Message::Notice(Notice {
                    class: class.into(),
                    body: body.into(),
                })
            }),
        ]
    }

    #[test]
    fn a_heartbeat_is_one_byte_after_the_chunk_index() {
        // Appended after `Chunk` (index 9): index 10, no fields.
        let mut out = BytesMut::new();
        Message::Heartbeat.encode_frame_into(&mut out);
        assert_eq!(&out[..], &[0, 0, 0, 1, 10]);
        assert_eq!(
            Message::decode(&out[HEADER_LEN..]).ok(),
            Some(Message::Heartbeat)
        );
        assert_eq!(Message::Heartbeat.kind(), "heartbeat");
    }

    #[test]
    fn a_bulk_read_report_is_index_12_and_a_varint() {
        // Appended after `Notice` (index 11).
        let mut out = BytesMut::new();
        Message::BulkRead(300).encode_frame_into(&mut out);
        assert_eq!(&out[..], &[0, 0, 0, 3, 12, 0xac, 0x02]);
        assert_eq!(
            Message::decode(&out[HEADER_LEN..]).ok(),
            Some(Message::BulkRead(300))
        );
        assert_eq!(Message::BulkRead(0).kind(), "bulk_read");
    }

    #[test]
    fn a_ping_or_a_pong_is_encoded_in_one_allocation() {
        let max = u64::MAX;
        for msg in [
            Message::Ping(Ping {
                seq: max,
                wall_ns: max,
            }),
            Message::Pong(Pong {
                seq: max,
                echo_wall_ns: max,
                wall_ns: max,
            }),
        ] {
            let mut out = BytesMut::new();
            msg.encode_frame_into(&mut out);
            // The room made first, never grown: one allocation.
            assert_eq!(out.capacity(), Message::SMALL_FRAME);
            assert_eq!(Message::decode(&out[HEADER_LEN..]).ok(), Some(msg));
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut b = Message::Close(Close { reason: "x".into() })
            .encode_body()
            .to_vec();
        b.push(0);
        assert!(Message::decode(&b).is_err());
    }

    #[test]
    fn unknown_variant_rejected() {
        assert!(Message::decode(&[200]).is_err());
        assert!(Message::decode(&[]).is_err());
    }

    #[test]
    fn claimed_huge_payload_is_not_allocated() {
        // A Request whose body claims ~2^63 bytes: decoding must fail without allocating.
        let mut b = vec![5u8, 1, 1, 0];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(Message::decode(&b).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_message()) {
            let body = m.encode_body();
            prop_assert_eq!(Message::decode(&body), Ok(m.clone()));
            let mut framed = BytesMut::new();
            m.encode_frame_into(&mut framed);
            prop_assert_eq!(&framed[HEADER_LEN..], &body[..]);
            prop_assert_eq!(u32::from_be_bytes([framed[0], framed[1], framed[2], framed[3]]) as usize, body.len());
        }

        #[test]
        fn handshake_messages_encode_within_their_size_hint(m in arb_message()) {
            if matches!(m, Message::Hello(_) | Message::Proof(_) | Message::Reject(_) | Message::Close(_) | Message::Notice(_)) {
                let body = m.encode_body();
                prop_assert!(body.len() <= m.size_hint(), "{} > {}", body.len(), m.size_hint());
            }
        }

        #[test]
        fn zero_copy_decode_matches(m in arb_message()) {
            let body = m.encode_body();
            prop_assert_eq!(Message::decode_bytes(&body), Message::decode(&body));
        }

        #[test]
        fn split_frames_concatenate_to_the_whole_frame(m in arb_message(), big in 0usize..70_000) {
            // Grow the payload past the split threshold sometimes.
            let m = match m {
                Message::Request(mut r) => { r.body = vec![3u8; big].into(); Message::Request(r) }
                Message::Reply(mut r) if r.result.is_ok() => { r.result = Ok(vec![4u8; big].into()); Message::Reply(r) }
                m => m,
            };
            let mut whole = BytesMut::new();
            m.encode_frame_into(&mut whole);
            let mut split = BytesMut::new();
            if let Some(body) = m.encode_frame_split(&mut split) {
                prop_assert!(body.len() >= Message::SPLIT_BODY_MIN);
                split.extend_from_slice(&body);
            }
            prop_assert_eq!(&split[..], &whole[..]);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = Message::decode(&data);
            prop_assert_eq!(Message::decode_bytes(&Bytes::from(data)).is_ok(), r.is_ok());
        }
    }
}
