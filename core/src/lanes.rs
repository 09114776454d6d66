//! A link's output in two lanes, so that small messages never wait behind bulk.
//!
//! - The **control lane** carries every message in the order it was sent (pings, pongs,
//!   requests, small replies, gossip, close), small frames packed into one buffer.
//! - The **bulk lane** carries big replies (an `Ok` payload of at least [`BULK_MIN`]
//!   bytes) and file parts, every one of them whatever its size ([`is_bulk_request`]:
//!   the parts of a file must keep their order), in their order. Nothing is ordered
//!   after them but other bulk messages: a reply answers its own request, and a sender
//!   of file parts waits for their answers.
//!
//! Output order ([`Lanes::poll`]): the rest of the frame under way (a frame is never
//! cut by another), then the whole control lane, then ONE frame of the bulk lane, and
//! only while the shell holds fewer than [`PACE`] unwritten bytes: the shell pulls bulk
//! at the pace the transport takes it, so a control message waits behind at most what
//! the shell already holds plus one bulk frame, never behind the whole bulk lane.
//!
//! With a peer speaking protocol 2, a bulk message whose body is over [`CHUNK`] bytes
//! leaves in [`Chunk`]s of at most [`CHUNK`] bytes of body each, so control messages
//! pass between them ([`Assembly`] puts them together at the receiver). With an older
//! peer a bulk message leaves whole (still after the control lane). Payloads are never
//! copied on stream transports: a chunk's frame is its header followed by slices of
//! the payload.
//!
//! With a peer speaking protocol 7 the bulk lane is also windowed by the peer's reports
//! of what it has read ([`credit`]): every bulk message leaves in chunks, and a small
//! message waits behind at most a window of unread bulk at the peer, not behind what
//! the kernel's socket buffers hold.
//!
//! Over such a link with a short round trip, the bulk lane also takes turns with our
//! small requests ([`turns`]): while one is in flight or was just answered, bulk leaves
//! only as one small chunk behind each write of small requests, so that a small
//! request never finds the links' threads busy with a run of chunks.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::conn::Framing;
use crate::frame::{FrameError, HEADER_LEN};
use crate::message::{Chunk, Hot, Message};
use crate::time::Instant;

pub mod credit;
use credit::{BulkCredit, CreditError};
pub mod turns;
use turns::{SmallTraffic, Turns};

/// Most body bytes in one chunk.
pub const CHUNK: usize = 64 * 1024;
/// Replies with a payload at least this big go to the bulk lane.
pub const BULK_MIN: usize = 32 * 1024;
/// A new bulk frame is handed out only while the shell holds fewer unwritten bytes than
/// this (see [`Lanes::poll`]).
pub const PACE: usize = CHUNK;

/// A link task that read at least this many bytes at once gives its runtime thread up
/// before it goes on (see [`turn_ends_after`]).
pub const TURN_READ: usize = CHUNK / 2;

/// What a link task just did, for [`turn_ends_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Handed a bulk frame to the transport (at most [`CHUNK`] bytes of body).
    BulkFrame,
    /// Read this many bytes from the transport.
    Read(usize),
    /// Anything else (a command, a late answer, a timer, a small read's handling).
    Other,
}

/// Whether a link task ends its turn on the runtime after `moved`, letting the
/// runtime's thread run other tasks and poll for I/O before the task goes on.
///
/// A link moving a big transfer is always ready for more: the socket keeps taking
/// chunks and keeps having bytes to read. Without a turn's end, one poll of the task
/// wrote a whole 1 MiB file part (17 chunk writes, ~180 µs) or read and assembled one,
/// while the tasks a small request goes through (its caller, the other end's link
/// task, the reply's way back) waited: the runtime's thread polls for I/O and runs
/// woken tasks only between polls, and the other thread was parked, never told. A
/// turn ends after each bulk frame and each big read, so a small message waits behind
/// at most one chunk's work on each hop.
#[must_use]
pub fn turn_ends_after(moved: Moved) -> bool {
    match moved {
        Moved::BulkFrame => true,
        Moved::Read(n) => n >= TURN_READ,
        Moved::Other => false,
    }
}

/// `Message::Chunk`'s variant index (postcard: one varint byte).
const CHUNK_VARIANT: u8 = 9;
/// `cluster::CLASS_JOB`'s `JobCall::SendFile` (see [`crate::file_send::wire`]).
const SEND_FILE_VARIANT: u8 = 13;
/// `cluster::CLASS_JOB`'s `JobCall::SendFileBlake3` (protocol 6).
const SEND_FILE_BLAKE3_VARIANT: u8 = 15;

/// Whether a request of `class` with `body` goes to the bulk lane: a file part, of any
/// size (a file's short last part must not overtake the parts before it), whichever
/// digest checks its file.
#[must_use]
pub fn is_bulk_request(class: &str, body: &[u8]) -> bool {
    class == crate::cluster::CLASS_JOB
        && matches!(
            body.first(),
            Some(&(SEND_FILE_VARIANT | SEND_FILE_BLAKE3_VARIANT))
        )
}

/// One bulk message: its body as a head (everything before the payload) and the
/// payload, and how much of the body already left.
#[derive(Debug)]
struct Bulk {
    head: Bytes,
    payload: Bytes,
    sent: usize,
}

impl Bulk {
    fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// Body bytes `[from, from + n)` as slices of head and payload.
    fn slices(&self, from: usize, n: usize, out: &mut Vec<Bytes>) {
        let h = self.head.len();
        let end = from + n;
        if from < h {
            out.push(self.head.slice(from..end.min(h)));
        }
        if end > h {
            out.push(self.payload.slice(from.max(h) - h..end - h));
        }
    }
}

/// The output of one connection. See the module docs.
#[derive(Debug)]
pub struct Lanes {
    framing: Framing,
    /// Cut bulk messages into chunks (the peer speaks protocol 2).
    chunked: bool,
    /// Small control frames accumulate here; `control` holds segments ready, in order.
    acc: BytesMut,
    control: VecDeque<Bytes>,
    bulk: VecDeque<Bulk>,
    /// Body bytes of the bulk lane not handed out yet.
    bulk_bytes: usize,
    /// The rest of the frame under way.
    cur: VecDeque<Bytes>,
    /// The window of the bulk lane (protocol 7, see [`credit`]).
    credit: BulkCredit,
    /// The bulk lane's turns beside our small requests (see [`turns`]).
    turns: Turns,
}

impl Lanes {
    /// Empty lanes for a transport with `framing`.
    #[must_use]
    pub fn new(framing: Framing) -> Self {
        Lanes {
            framing,
            chunked: false,
            acc: BytesMut::new(),
            control: VecDeque::new(),
            bulk: VecDeque::new(),
            bulk_bytes: 0,
            cur: VecDeque::new(),
            credit: BulkCredit::default(),
            turns: Turns::default(),
        }
    }

    /// The peer reports the bulk it reads (protocol 7): the bulk lane is windowed, and
    /// every bulk message leaves in chunks (the reports count chunk bytes). Off again
    /// once the link is closed: what is left goes out unwindowed.
    pub fn set_credited(&mut self, on: bool) {
        self.credit.set_on(on);
    }

    /// The peer's report of the bulk bytes it read since its last report.
    pub fn peer_read(&mut self, n: u64) -> Result<(), CreditError> {
        self.credit.peer_read(n)
    }

    /// We handled a chunk of `n` body bytes (`last`: it ended its message): the bytes
    /// to report read, when a report is due (sent as a keepalive: it does not narrow our
    /// window).
    pub fn chunk_read(&mut self, n: usize, last: bool) -> Option<u64> {
        self.credit.chunk_read(n, last)
    }

    /// Our small requests at `now` (see [`turns`]).
    #[inline]
    pub fn note_small(&mut self, now: Instant, t: SmallTraffic) {
        self.turns.note(now, t);
    }

    /// When the turns let bulk that waits go, as of `now`, if they hold it back (see
    /// [`turns`]).
    #[must_use]
    pub fn turn_deadline(&self, now: Instant) -> Option<Instant> {
        if self.bulk.is_empty() || !self.turns_apply() {
            return None;
        }
        self.turns.deadline(now)
    }

    /// The link's smoothed round trip, which widens the bulk window over long paths.
    pub fn set_rtt(&mut self, srtt: std::time::Duration) {
        self.credit.set_rtt(srtt);
    }

    /// The bulk lane's window and counts.
    #[must_use]
    pub fn credit(&self) -> &BulkCredit {
        &self.credit
    }

    /// The peer puts chunks together (protocol 2 or later).
    pub fn set_chunked(&mut self, on: bool) {
        self.chunked = on;
    }

    /// Whether bulk is waiting (the shell pulls it with [`poll`](Self::poll) as the
    /// transport takes it).
    #[must_use]
    pub fn has_bulk(&self) -> bool {
        !self.bulk.is_empty()
    }

    /// Whether bulk is waiting and its window lets the next frame go now (else the
    /// peer's next report opens it).
    #[must_use]
    pub fn bulk_ready(&self) -> bool {
        !self.bulk.is_empty() && self.credit.allowance().is_some() && self.turn_limit().is_some()
    }

    /// Body bytes waiting in the bulk lane.
    #[must_use]
    pub fn bulk_bytes(&self) -> usize {
        self.bulk_bytes
    }

    /// Whether nothing at all waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cur.is_empty()
            && self.control.is_empty()
            && self.acc.is_empty()
            && self.bulk.is_empty()
    }

    /// Gives back the storage of empty queues, and the encoding buffer when nothing is
    /// in it (its spare room keeps the whole allocation alive, see `conn/trim.rs`).
    pub fn release_idle_storage(&mut self) {
        if self.acc.is_empty() {
            self.acc = BytesMut::new();
        }
        for q in [&mut self.control, &mut self.cur] {
            if q.is_empty() {
                *q = VecDeque::new();
            }
        }
        if self.bulk.is_empty() {
            self.bulk = VecDeque::new();
        }
    }

    /// Bytes of storage held by the lanes' queues and buffer (for tests).
    #[must_use]
    pub fn capacity_bytes(&self) -> usize {
        self.acc.capacity()
            + (self.control.capacity() + self.cur.capacity()) * size_of::<Bytes>()
            + self.bulk.capacity() * size_of::<Bulk>()
    }

    /// Queues `msg` on the control lane; the bulk window narrows for a while (see
    /// [`credit`]).
    pub fn control(&mut self, msg: &Message) {
        self.credit.control_queued();
        self.keepalive(msg);
    }

    /// Queues `msg` on the control lane without narrowing the bulk window: a
    /// keepalive, a pong or a report of bulk read, which do not say that more control
    /// traffic follows.
    pub fn keepalive(&mut self, msg: &Message) {
        match self.framing {
            Framing::Stream => {
                // A large payload is not copied: it follows its header as its own segment.
                if let Some(payload) = msg.encode_frame_split(&mut self.acc) {
                    self.control.push_back(self.acc.split().freeze());
                    self.control.push_back(payload);
                }
            }
            Framing::Messages => {
                self.flush_acc();
                self.control.push_back(msg.encode_body());
            }
        }
    }

    /// Queues a request or an `Ok` reply on the control lane, encoded from its borrowed
    /// fields (the same bytes as [`control`](Self::control) of the owned message).
    pub fn control_hot(&mut self, msg: &Hot<'_>) {
        self.credit.control_queued();
        match self.framing {
            Framing::Stream => {
                if let Some(payload) = msg.encode_frame_split(&mut self.acc) {
                    self.control.push_back(self.acc.split().freeze());
                    self.control.push_back(payload);
                }
            }
            Framing::Messages => {
                // Encoded in the lanes' buffer and split off: the buffer is taken back
                // in place once the transport has copied the message out (a WebSocket
                // frames it into its own buffer), so a request or reply costs no
                // allocation of its own.
                self.flush_acc();
                msg.encode_body_into(&mut self.acc);
                self.control.push_back(self.acc.split().freeze());
            }
        }
    }

    /// Queues an encoded body on the control lane (the handshake's messages: they do
    /// not narrow the bulk window, there is no bulk yet).
    pub fn control_body(&mut self, body: Bytes) {
        match self.framing {
            Framing::Stream => crate::frame::encode_frame(&body, &mut self.acc),
            Framing::Messages => {
                self.flush_acc();
                self.control.push_back(body);
            }
        }
    }

    /// Queues `msg` on the bulk lane.
    pub fn bulk(&mut self, msg: &Message) {
        let mut head = BytesMut::new();
        let payload = msg.encode_frame_split(&mut head).unwrap_or_default();
        let head = head.freeze().slice(HEADER_LEN..);
        self.bulk_bytes += head.len() + payload.len();
        self.bulk.push_back(Bulk {
            head,
            payload,
            sent: 0,
        });
    }

    /// Queues `msg` after everything already queued, bulk included (an orderly close).
    pub fn last(&mut self, msg: &Message) {
        if self.bulk.is_empty() {
            self.control(msg);
        } else {
            let head = msg.encode_body();
            self.bulk_bytes += head.len();
            self.bulk.push_back(Bulk {
                head,
                payload: Bytes::new(),
                sent: 0,
            });
        }
    }

    /// The next bytes to write (stream framing) or the next message (message framing):
    /// the rest of the frame under way, then the control lane, then one bulk frame, the
    /// latter only when `queued` (the bytes the shell holds unwritten) is under
    /// [`PACE`] and the bulk window has room. `None`: nothing to write now.
    pub fn poll(&mut self, queued: usize) -> Option<Bytes> {
        if let Some(b) = self.cur.pop_front() {
            return Some(b);
        }
        if let Some(b) = self.control.pop_front() {
            return Some(b);
        }
        if !self.acc.is_empty() {
            return Some(self.acc.split().freeze());
        }
        if queued >= PACE || self.bulk.is_empty() {
            return None;
        }
        let allowance = self.credit.allowance()?.min(self.turn_limit()?);
        self.next_bulk_frame(allowance);
        self.turns.took();
        self.cur.pop_front()
    }

    /// The turns' limit on the next bulk frame, where they apply (a closed link's last
    /// bulk goes as it may).
    fn turn_limit(&self) -> Option<usize> {
        if self.turns_apply() {
            self.turns.limit()
        } else {
            Some(CHUNK)
        }
    }

    /// Whether the bulk lane takes turns with our small requests: windowed (protocol 7,
    /// and not closed) over a short path (see [`turns`]).
    fn turns_apply(&self) -> bool {
        self.credit.is_on() && self.credit.short_path()
    }

    fn flush_acc(&mut self) {
        if !self.acc.is_empty() {
            self.control.push_back(self.acc.split().freeze());
        }
    }

    /// Moves the next frame of the bulk lane, with at most `allowance` body bytes when
    /// chunked, into `cur`.
    fn next_bulk_frame(&mut self, allowance: usize) {
        let Some(b) = self.bulk.front_mut() else {
            return;
        };
        let len = b.len();
        let mut parts = Vec::with_capacity(2);
        let whole = !self.chunked || (len <= CHUNK && !self.credit.is_on());
        if b.sent == 0 && whole {
            // Whole.
            b.slices(0, len, &mut parts);
            self.bulk.pop_front();
            self.bulk_bytes -= len;
            self.frame(&[], &parts, len);
            return;
        }
        let n = (len - b.sent).min(allowance);
        b.slices(b.sent, n, &mut parts);
        b.sent += n;
        self.bulk_bytes -= n;
        self.credit.sent(n);
        let more = b.sent < len;
        if !more {
            self.bulk.pop_front();
        }
        // The chunk's body: variant, `more`, varint(n), then the n bytes.
        let mut head = BytesMut::with_capacity(HEADER_LEN + 8);
        head.put_u8(CHUNK_VARIANT);
        head.put_u8(u8::from(more));
        let mut v = n;
        while v >= 0x80 {
            head.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        head.put_u8(v as u8);
        let total = head.len() + n;
        self.frame(&head, &parts, total);
    }

    /// Puts one frame of `total` body bytes (`head` then `parts`) in `cur`.
    fn frame(&mut self, head: &[u8], parts: &[Bytes], total: usize) {
        match self.framing {
            Framing::Stream => {
                // Header, head and a first small part in one segment; big parts as
                // their own segments (not copied).
                let mut first = BytesMut::with_capacity(HEADER_LEN + head.len() + 64);
                first.put_u32(u32::try_from(total).unwrap_or(u32::MAX));
                first.put_slice(head);
                let mut rest = parts.iter();
                let mut pending = None;
                for p in rest.by_ref() {
                    if p.len() <= 256 {
                        first.put_slice(p);
                    } else {
                        pending = Some(p.clone());
                        break;
                    }
                }
                self.cur.push_back(first.freeze());
                self.cur.extend(pending);
                self.cur.extend(rest.cloned());
            }
            Framing::Messages => {
                let mut body = BytesMut::with_capacity(total);
                body.put_slice(head);
                for p in parts {
                    body.put_slice(p);
                }
                self.cur.push_back(body.freeze());
            }
        }
    }
}

/// Allocations of assembled bodies an [`Assembly`] keeps, to take up again.
pub const SPARES: usize = 3;

/// The bodies an [`Assembly`] handed out (their allocations), oldest first.
#[derive(Debug, Default)]
struct Spares(VecDeque<Bytes>);

/// Puts a chunked message together at the receiver.
///
/// The allocation of each body it hands out is kept (up to [`SPARES`] of them) and taken
/// up again for a later message once every reader of that body has dropped it: a run of
/// file parts is assembled into the same few buffers instead of a fresh allocation per
/// part (fresh pages fault in, page by page, and go back to the system when the part
/// is written; that churn cost the receiving link task more than the copy itself).
/// [`release_idle_storage`](Self::release_idle_storage) gives them back.
#[derive(Debug, Default)]
pub struct Assembly {
    buf: BytesMut,
    /// Bodies handed out (their allocations), oldest first; boxed, made at the first
    /// chunked body, so a link that never assembles one keeps 8 bytes for it.
    spares: Option<Box<Spares>>,
}

impl Assembly {
    /// Takes one chunk; returns the whole body once its last chunk arrived. The body is
    /// capped at `max` bytes (checked before buffering); the error is terminal.
    pub fn push(&mut self, chunk: Chunk, max: u32) -> Result<Option<Bytes>, FrameError> {
        let have = self.buf.len() + chunk.data.len();
        if have > max as usize {
            self.buf = BytesMut::new();
            return Err(FrameError::TooLarge {
                announced: u32::try_from(have).unwrap_or(u32::MAX),
                max,
            });
        }
        if !chunk.more && self.buf.is_empty() {
            return Ok(Some(chunk.data));
        }
        if self.buf.is_empty() {
            self.take_up_spare();
        }
        self.buf.extend_from_slice(&chunk.data);
        if chunk.more {
            return Ok(None);
        }
        let body = std::mem::take(&mut self.buf).freeze();
        // A handle on the body's allocation: once it is the only one left, the
        // allocation is taken up again.
        let spares = &mut self.spares.get_or_insert_with(Box::default).0;
        if spares.len() == SPARES {
            spares.pop_front();
        }
        spares.push_back(body.clone());
        Ok(Some(body))
    }

    /// Starts the next body in the oldest kept allocation that nobody reads any more,
    /// if there is one (its whole capacity, from its start).
    fn take_up_spare(&mut self) {
        let Some(Spares(spares)) = self.spares.as_deref_mut() else {
            return;
        };
        for _ in 0..spares.len() {
            let Some(spare) = spares.pop_front() else {
                return;
            };
            match spare.try_into_mut() {
                Ok(mut free) => {
                    free.clear();
                    self.buf = free;
                    return;
                }
                Err(read) => spares.push_back(read),
            }
        }
    }

    /// Bytes held for a message under way.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Allocations kept for later bodies.
    #[must_use]
    pub fn spares(&self) -> usize {
        self.spares.as_ref().map_or(0, |s| s.0.len())
    }

    /// Gives back the kept allocations, and the buffer when no message is under way.
    pub fn release_idle_storage(&mut self) {
        self.spares = None;
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests;
