//! Shared fixtures of the fuzz targets and of the seed generator (`examples/gen_seeds.rs`).
//!
//! The input formats of the structured targets (`frame_decoder`, `handshake`) are defined
//! here once, as a parser (used by the targets) and an encoder (used by the generator), so
//! the committed seeds always match what the targets read.

use std::time::Duration;

use nkcluster_core::MAX_FRAME_DEFAULT;
use nkcluster_core::auth::Key;
use nkcluster_core::conn::{ConnectionConfig, ConnectionParams, Framing};
use nkcluster_core::handshake::{Identity, Role, Side};

/// A cursor over the fuzzer's bytes; every read past the end yields nothing.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Next byte, if any.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// Next big-endian u16; `None` unless two bytes remain.
    pub fn u16(&mut self) -> Option<u16> {
        let (&bytes, rest) = self.data.split_first_chunk::<2>()?;
        self.data = rest;
        Some(u16::from_be_bytes(bytes))
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

// ----- frame_decoder -----

/// `frame_decoder` input: `[max selector][n][n chunk sizes][stream...]`.
///
/// The stream is fed to the decoder in `n + 1` chunks: the `n` given sizes (clamped to
/// what is left), then the remainder.
pub struct FrameInput<'a> {
    /// The decoder's maximum body size.
    pub max: u32,
    /// Decode-and-stop-after-k-frames check: `k`.
    pub stop_after: usize,
    /// Chunk sizes.
    pub chunks: Vec<usize>,
    /// The byte stream.
    pub stream: &'a [u8],
}

/// Maximum frame sizes selected by the high values of the selector byte; lower values are
/// used as the maximum directly (so small maxima, where the limit matters, dominate).
pub const FRAME_MAX_TABLE: [u32; 8] = [
    255,
    256,
    1024,
    4096,
    65_536,
    1 << 20,
    MAX_FRAME_DEFAULT,
    u32::MAX,
];

impl<'a> FrameInput<'a> {
    /// Parses the target's input.
    pub fn parse(data: &'a [u8]) -> Self {
        let mut r = Reader::new(data);
        let sel = r.u8().unwrap_or(0);
        let max = if sel >= 248 {
            FRAME_MAX_TABLE[usize::from(sel - 248)]
        } else {
            u32::from(sel)
        };
        let n = r.u8().unwrap_or(0);
        let stop_after = usize::from(n >> 4);
        let chunks = (0..n & 0x0f)
            .filter_map(|_| r.u8().map(usize::from))
            .collect();
        FrameInput {
            max,
            stop_after,
            chunks,
            stream: r.rest(),
        }
    }

    /// Encodes an input (the inverse of [`parse`](Self::parse)); `max_sel` is the raw
    /// selector byte, `stop_after < 16`, at most 15 chunks.
    pub fn encode(max_sel: u8, stop_after: u8, chunks: &[u8], stream: &[u8]) -> Vec<u8> {
        assert!(stop_after < 16 && chunks.len() < 16);
        let mut out = vec![max_sel, (stop_after << 4) | chunks.len() as u8];
        out.extend_from_slice(chunks);
        out.extend_from_slice(stream);
        out
    }
}

// ----- handshake -----

/// Cluster name of every fixture.
pub const CLUSTER: &str = "fz";
/// Key of the machine under test. Seeds never carry proofs made with it (the generator
/// uses [`SEED_PEER_KEY`]), so an `Authenticated` event in the unauthenticated modes means
/// the fuzzer forged an HMAC or bypassed the check.
pub const TARGET_KEY: [u8; 32] = [0x5a; 32];
/// Key of the peers the seed generator runs (a wrong password, from the target's view).
pub const SEED_PEER_KEY: [u8; 32] = [0xa5; 32];
/// Nonce of the machine under test.
pub const TARGET_NONCE: [u8; 32] = [7; 32];
/// The worker secret's key in `roles` mode: the target accepts it for the worker role,
/// the peer knows nothing else.
pub const WORKER_KEY: [u8; 32] = [0x3c; 32];
/// Nonce of the peers (the genuine one in established mode, the generator's).
pub const PEER_NONCE: [u8; 32] = [9; 32];

/// Maximum frame sizes of the connection under test (flags bits 3-4). All are large enough
/// for every frame the machine itself sends.
pub const CONN_MAX_TABLE: [u32; 4] = [MAX_FRAME_DEFAULT, 65_536, 4096, 2048];

/// `handshake` input flags (first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Side of the machine under test.
    pub side: Side,
    /// Framing of the connection under test.
    pub framing: Framing,
    /// Authenticate with a genuine peer first, then let the fuzzer speak for the peer.
    pub established: bool,
    /// Drive `handshake::Handshake` directly instead of a `Connection`.
    pub direct: bool,
    /// Role binding: a peer holding only the worker secret (the fuzzer picks the role it
    /// claims and tampers with its messages) against a control node that accepts the
    /// worker secret for the worker role.
    pub roles: bool,
    /// Maximum frame size.
    pub max_frame: u32,
}

impl Flags {
    /// Decodes the flags byte.
    pub fn from_byte(b: u8) -> Self {
        Flags {
            side: if b & 1 == 0 {
                Side::Listener
            } else {
                Side::Dialer
            },
            framing: if b & 2 == 0 {
                Framing::Stream
            } else {
                Framing::Messages
            },
            established: b & 4 != 0,
            direct: b & 0x20 != 0,
            roles: b & 0x40 != 0,
            max_frame: CONN_MAX_TABLE[usize::from((b >> 3) & 3)],
        }
    }

    /// Encodes the flags byte.
    pub fn to_byte(self) -> u8 {
        let max = CONN_MAX_TABLE
            .iter()
            .position(|&m| m == self.max_frame)
            .unwrap_or(0) as u8;
        u8::from(self.side == Side::Dialer)
            | (u8::from(self.framing == Framing::Messages) << 1)
            | (u8::from(self.established) << 2)
            | (max << 3)
            | (u8::from(self.direct) << 5)
            | (u8::from(self.roles) << 6)
    }
}

/// One step of the `handshake` target. Encoded as an op byte (low 3 bits: kind, high 5
/// bits: `param`, 0..=31) followed by the kind's operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Kind 0 (`[len u8][bytes]`) or 1 (`[len u16 be][bytes]`): bytes from the peer (stream
    /// framing) or one frame body (message framing, direct mode), `param * 20 ms` later.
    Input {
        /// Time advance, 20 ms units.
        param: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Kind 2 or 3: advance time by `param * 500 ms` and call `handle_timeout`.
    Tick(u8),
    /// Kind 4: jump to `poll_timeout()` (if later than now) and call `handle_timeout`.
    Fire,
    /// Kind 5 (`[body len u8]`): our application sends a request with a timeout of
    /// `param * 250 ms`.
    Request {
        /// Timeout, 250 ms units.
        param: u8,
        /// Body length.
        len: u8,
    },
    /// Kind 6: our application answers one of the peer's requests (`param` picks which,
    /// and whether with an error).
    Reply(u8),
    /// Kind 7: even `param`: we close; odd: the transport dies.
    Close(u8),
}

impl Op {
    /// Reads the next op; `None` at the end of the input.
    pub fn read(r: &mut Reader<'_>) -> Option<Op> {
        let b = r.u8()?;
        let param = b >> 3;
        Some(match b & 7 {
            0 => {
                let n = r.u8().unwrap_or(0);
                Op::Input {
                    param,
                    bytes: r.take(usize::from(n)).to_vec(),
                }
            }
            1 => {
                let n = r.u16().unwrap_or(0);
                Op::Input {
                    param,
                    bytes: r.take(usize::from(n)).to_vec(),
                }
            }
            2 | 3 => Op::Tick(param),
            4 => Op::Fire,
            5 => Op::Request {
                param,
                len: r.u8().unwrap_or(0),
            },
            6 => Op::Reply(param),
            _ => Op::Close(param),
        })
    }

    /// Appends the op's encoding (the inverse of [`read`](Self::read)).
    pub fn write(&self, out: &mut Vec<u8>) {
        let op = |kind: u8, param: u8| {
            assert!(param < 32);
            (param << 3) | kind
        };
        match self {
            Op::Input { param, bytes } if bytes.len() <= 255 => {
                out.push(op(0, *param));
                out.push(bytes.len() as u8);
                out.extend_from_slice(bytes);
            }
            Op::Input { param, bytes } => {
                let n = u16::try_from(bytes.len()).expect("input op of at most 64 KiB");
                out.push(op(1, *param));
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(bytes);
            }
            Op::Tick(p) => out.push(op(2, *p)),
            Op::Fire => out.push(op(4, 0)),
            Op::Request { param, len } => {
                out.push(op(5, *param));
                out.push(*len);
            }
            Op::Reply(p) => out.push(op(6, *p)),
            Op::Close(p) => out.push(op(7, *p)),
        }
    }
}

/// Encodes a whole `handshake` input.
pub fn encode_handshake_input(flags: Flags, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![flags.to_byte()];
    for op in ops {
        op.write(&mut out);
    }
    out
}

/// The identity of a fixture node.
pub fn identity(side: Side, node_id: &str) -> Identity {
    Identity {
        cluster: CLUSTER.into(),
        node_id: node_id.into(),
        instance: 0x1122_3344,
        role: match side {
            Side::Dialer => Role::Worker,
            Side::Listener => Role::Control,
        },
        listen: vec!["nkcluster://127.0.0.1:1972;transport=tcp".into()],
        meta: "core;group=g1".into(),
        partitions: 64,
    }
}

/// Connection parameters of a fixture node.
pub fn params(side: Side, node_id: &str, key: [u8; 32], nonce: [u8; 32]) -> ConnectionParams {
    ConnectionParams {
        side,
        identity: identity(side, node_id),
        key: Key::from_bytes(key),
        worker_key: None,
        nonce,
        channel_binding: Vec::new(),
        wall_origin_ns: 1_700_000_000_000_000_000,
    }
}

/// The configuration of the connection under test.
pub fn conn_config(flags: Flags) -> ConnectionConfig {
    ConnectionConfig {
        max_frame: flags.max_frame,
        framing: flags.framing,
        ping_interval: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(15),
        max_pending_requests: 8,
        max_incoming_requests: 4,
        ..ConnectionConfig::default()
    }
}

/// The other side.
pub fn opposite(side: Side) -> Side {
    match side {
        Side::Dialer => Side::Listener,
        Side::Listener => Side::Dialer,
    }
}
