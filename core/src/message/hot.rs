//! The hot messages, a request and an `Ok` reply, encoded and decoded by hand: a link
//! handles one of each per request, and the generic postcard path (serde, an owned
//! [`Message`] built around borrowed fields) costs more than the rest of the request.
//!
//! The bytes are exactly postcard's (the tests check it against the generic path):
//! `varint(variant) varint(id) [varint(timeout_ms) varint(len) class] [varint(0 = Ok)]
//! varint(len) payload`. The decoder takes only what it reads unambiguously (canonical
//! varints, UTF-8 class, payload ending the frame); anything else, errors included, goes
//! to the generic decoder, so both paths agree on every input.

use bytes::{Bytes, BytesMut};
use smol_str::SmolStr;

use super::{Message, Reply, Request};
use crate::frame::HEADER_LEN;

/// `Message::Request`'s and `Message::Reply`'s variant indexes.
const REQUEST: u8 = 5;
const REPLY: u8 = 6;
/// `Result::Ok`'s variant index.
const OK: u8 = 0;

/// A request or an `Ok` reply, fields borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Hot<'a> {
    /// `Message::Request`.
    Request {
        /// Request id.
        id: u64,
        /// How long the sender waits.
        timeout_ms: u32,
        /// Class name.
        class: &'a str,
        /// Payload.
        body: &'a Bytes,
    },
    /// `Message::Reply` with an `Ok` payload.
    Reply {
        /// The request's id.
        id: u64,
        /// Payload.
        body: &'a Bytes,
    },
}

/// Most bytes of a varint.
const VARINT_MAX: usize = 10;

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    // One byte per started group of 7 bits (at least one).
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A few small fields built on the stack, appended to the output in one copy (each
/// `put_u8` of a `BytesMut` checks its room and moves its length).
struct Small<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Small<N> {
    fn new() -> Self {
        Small {
            buf: [0; N],
            len: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn u32_be(&mut self, v: u32) {
        self.buf[self.len..self.len + 4].copy_from_slice(&v.to_be_bytes());
        self.len += 4;
    }

    fn varint(&mut self, mut v: u64) {
        // The length in a local: stored once, not after every byte.
        let mut len = self.len;
        while v >= 0x80 {
            self.buf[len] = (v as u8) | 0x80;
            len += 1;
            v >>= 7;
        }
        self.buf[len] = v as u8;
        self.len = len + 1;
    }

    /// Appends `s`; `false` (nothing appended) when it does not fit.
    fn slice(&mut self, s: &[u8]) -> bool {
        let Some(to) = self.buf.get_mut(self.len..self.len + s.len()) else {
            return false;
        };
        to.copy_from_slice(s);
        self.len += s.len();
        true
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Frames up to this size (a request of a short class with a small payload, or its
/// reply) are built whole on the stack and appended to the output in one copy.
const STACK_FRAME: usize = 128;

/// The frame header (stream framing) and the variant, id and (requests) timeout.
const LEAD: usize = HEADER_LEN + 1 + VARINT_MAX + 5 + 5;

impl Hot<'_> {
    fn payload(&self) -> &Bytes {
        match self {
            Hot::Request { body, .. } | Hot::Reply { body, .. } => body,
        }
    }

    /// The body's length: everything before the payload, then the payload.
    fn body_len(&self) -> usize {
        let payload = self.payload().len();
        let head = match *self {
            Hot::Request {
                id,
                timeout_ms,
                class,
                ..
            } => {
                1 + varint_len(id)
                    + varint_len(u64::from(timeout_ms))
                    + varint_len(class.len() as u64)
                    + class.len()
            }
            Hot::Reply { id, .. } => 1 + varint_len(id) + 1,
        };
        head + varint_len(payload as u64) + payload
    }

    /// Appends everything before the payload, its length included, after `frame_len`
    /// (the stream frame's length prefix) when there is one. `out` has room for it.
    fn head(&self, frame_len: Option<u32>, out: &mut BytesMut) {
        let mut lead = Small::<LEAD>::new();
        if let Some(n) = frame_len {
            lead.u32_be(n);
        }
        let payload = self.payload().len() as u64;
        self.fields(&mut lead);
        match *self {
            Hot::Request { class, .. } => {
                out.extend_from_slice(lead.bytes());
                out.extend_from_slice(class.as_bytes());
                let mut len = Small::<VARINT_MAX>::new();
                len.varint(payload);
                out.extend_from_slice(len.bytes());
            }
            Hot::Reply { .. } => {
                lead.varint(payload);
                out.extend_from_slice(lead.bytes());
            }
        }
    }

    /// Writes the fields before a request's class (variant, id, timeout, class length)
    /// or before a reply's payload length (variant, id, `Ok`). `f` has room for them.
    #[inline(always)]
    fn fields<const N: usize>(&self, f: &mut Small<N>) {
        match *self {
            Hot::Request {
                id,
                timeout_ms,
                class,
                ..
            } => {
                f.byte(REQUEST);
                f.varint(id);
                f.varint(u64::from(timeout_ms));
                f.varint(class.len() as u64);
            }
            Hot::Reply { id, .. } => {
                f.byte(REPLY);
                f.varint(id);
                f.byte(OK);
            }
        }
    }

    /// The whole frame (stream framing) built in `f` (empty, on the caller's stack)
    /// when it fits [`STACK_FRAME`]: its length prefix, then what [`head`](Self::head)
    /// writes, then the payload. `false`: it does not fit (what `f` holds then is
    /// meaningless). Filled in place: returned by value, the buffer was copied twice.
    #[inline]
    fn small_frame(&self, f: &mut Small<STACK_FRAME>) -> bool {
        // The length prefix, set once the body is written.
        f.len = HEADER_LEN;
        let payload = self.payload();
        if payload.len() >= STACK_FRAME {
            return false;
        }
        if let Hot::Request { class, .. } = *self
            && class.len() >= STACK_FRAME
        {
            return false;
        }
        self.fields(f);
        if let Hot::Request { class, .. } = *self
            && (!f.slice(class.as_bytes()) || f.len + VARINT_MAX > STACK_FRAME)
        {
            return false;
        }
        f.varint(payload.len() as u64);
        if !f.slice(payload) {
            return false;
        }
        // Below STACK_FRAME: fits the prefix.
        let body = (f.len - HEADER_LEN) as u32;
        f.buf[..HEADER_LEN].copy_from_slice(&body.to_be_bytes());
        true
    }

    /// [`Message::encode_frame_split`] of the same message: the frame appended to `out`,
    /// except a payload of at least [`Message::SPLIT_BODY_MIN`] bytes, returned to be
    /// written right after.
    pub fn encode_frame_split(&self, out: &mut BytesMut) -> Option<Bytes> {
        let mut f = Small::<STACK_FRAME>::new();
        if self.small_frame(&mut f) {
            out.extend_from_slice(f.bytes());
            return None;
        }
        let total = self.body_len();
        let frame_len = u32::try_from(total).unwrap_or(u32::MAX);
        let payload = self.payload();
        let split = payload.len() >= Message::SPLIT_BODY_MIN;
        let here = HEADER_LEN + total - if split { payload.len() } else { 0 };
        out.reserve(here);
        self.head(Some(frame_len), out);
        if split {
            Some(payload.clone())
        } else {
            out.extend_from_slice(payload);
            None
        }
    }

    /// [`Message::encode_body`] of the same message.
    #[must_use]
    pub fn encode_body(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.body_len());
        self.encode_body_into(&mut out);
        out.freeze()
    }

    /// [`encode_body`](Self::encode_body) appended to `out` (a buffer reused from one
    /// message to the next costs no allocation per message).
    pub fn encode_body_into(&self, out: &mut BytesMut) {
        out.reserve(self.body_len());
        self.head(None, out);
        out.extend_from_slice(self.payload());
    }

    /// The same message, owned.
    #[must_use]
    pub fn to_message(&self) -> Message {
        match *self {
            Hot::Request {
                id,
                timeout_ms,
                class,
                body,
            } => Message::Request(Request {
                id,
                timeout_ms,
                class: SmolStr::new(class),
                body: body.clone(),
            }),
            Hot::Reply { id, body } => Message::Reply(Reply {
                id,
                result: Ok(body.clone()),
            }),
        }
    }
}

/// Reads a canonical varint of at most `max_bytes` bytes (so it cannot overflow) at
/// `*at`; `None` for anything else.
fn varint(b: &[u8], at: &mut usize, max_bytes: usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..max_bytes {
        let byte = *b.get(*at + i)?;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // Canonical: no needless zero group at the end.
            if byte == 0 && i > 0 {
                return None;
            }
            *at += i + 1;
            return Some(v);
        }
    }
    None
}

/// `n` bytes at `*at`.
fn take<'a>(b: &'a [u8], at: &mut usize, n: u64) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok()?;
    let s = b.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

/// A request or an `Ok` reply read off a frame, owned: what a link's input needs of
/// it, without the [`Message`] around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotFrame {
    /// `Message::Request`.
    Request {
        /// Request id.
        id: u64,
        /// How long the sender waits.
        timeout_ms: u32,
        /// Class name.
        class: SmolStr,
        /// Payload.
        body: Bytes,
    },
    /// `Message::Reply` with an `Ok` payload.
    Reply {
        /// The request's id.
        id: u64,
        /// Payload.
        body: Bytes,
    },
}

/// What [`parse`] read: the fields before the payload and where the payload starts
/// (it ends the frame).
enum Parsed {
    Request {
        id: u64,
        timeout_ms: u32,
        class: SmolStr,
        start: usize,
    },
    Reply {
        id: u64,
        start: usize,
    },
}

/// The class name of the last request read on a link, kept so that the next request of
/// the same class is read without checking its name's UTF-8 and copying it again (a
/// link's requests mostly repeat a few classes; both cost more than comparing the
/// bytes). Boxed: 8 bytes in the connection and no storage until a request arrives;
/// given back with the link's idle storage ([`release`](Self::release)).
#[derive(Debug, Default)]
pub struct LastClass(Option<Box<SmolStr>>);

impl LastClass {
    /// `bytes` as a class name: the kept one when they are its bytes, else checked
    /// (UTF-8) and kept in its place. `None`: not UTF-8.
    pub fn read(&mut self, bytes: &[u8]) -> Option<SmolStr> {
        if let Some(last) = &self.0
            && crate::short_eq::same(last.as_bytes(), bytes)
        {
            return Some(SmolStr::clone(last));
        }
        let class = SmolStr::new(std::str::from_utf8(bytes).ok()?);
        match &mut self.0 {
            Some(last) => **last = class.clone(),
            None => self.0 = Some(Box::new(class.clone())),
        }
        Some(class)
    }

    /// Forgets the kept name and gives its storage back.
    pub fn release(&mut self) {
        self.0 = None;
    }

    /// Bytes of storage held (for tests).
    #[must_use]
    pub fn storage_bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |s| size_of::<SmolStr>() + s.len())
    }
}

/// A class name read without a [`LastClass`].
fn read_class(bytes: &[u8]) -> Option<SmolStr> {
    std::str::from_utf8(bytes).ok().map(SmolStr::new)
}

/// Reads a request or an `Ok` reply in `b`, its class name through `class_of`; `None`:
/// not one, or not in a form read here (the generic decoder decides).
fn parse(b: &[u8], class_of: impl FnOnce(&[u8]) -> Option<SmolStr>) -> Option<Parsed> {
    let mut at = 1;
    let p = match *b.first()? {
        REQUEST => {
            let id = varint(b, &mut at, 9)?;
            let timeout_ms = u32::try_from(varint(b, &mut at, 5)?).ok()?;
            let n = varint(b, &mut at, 4)?;
            let class = class_of(take(b, &mut at, n)?)?;
            let n = varint(b, &mut at, 5)?;
            let start = at;
            take(b, &mut at, n)?;
            Parsed::Request {
                id,
                timeout_ms,
                class,
                start,
            }
        }
        REPLY => {
            let id = varint(b, &mut at, 9)?;
            if *b.get(at)? != OK {
                return None;
            }
            at += 1;
            let n = varint(b, &mut at, 5)?;
            let start = at;
            take(b, &mut at, n)?;
            Parsed::Reply { id, start }
        }
        _ => return None,
    };
    // The payload is the last field: it must end the frame.
    (at == b.len()).then_some(p)
}

/// A request or an `Ok` reply read from `frame`, its payload a slice of it; `None`:
/// not one, or not in a form read here (the generic decoder decides).
pub(super) fn decode(frame: &Bytes) -> Option<Message> {
    Some(match parse(frame, read_class)? {
        Parsed::Request {
            id,
            timeout_ms,
            class,
            start,
        } => Message::Request(Request {
            id,
            timeout_ms,
            class,
            body: frame.slice(start..),
        }),
        Parsed::Reply { id, start } => Message::Reply(Reply {
            id,
            result: Ok(frame.slice(start..)),
        }),
    })
}

impl HotFrame {
    /// What [`Message::decode_bytes`] reads in `frame` when it is a request or an `Ok`
    /// reply, the frame consumed: its payload is the frame itself, advanced past the
    /// fields before it (no new handle on the buffer, no [`Message`] built and moved).
    ///
    /// # Errors
    /// The frame itself when it is not read here (for [`Message::decode_bytes`]).
    pub fn decode(frame: Bytes) -> Result<HotFrame, Bytes> {
        Self::decode_with(frame, read_class)
    }

    /// [`decode`](Self::decode), a request's class name read through `last` (a link's
    /// input: the same class as the last request costs a comparison).
    ///
    /// # Errors
    /// The frame itself when it is not read here (for [`Message::decode_bytes`]).
    pub fn decode_cached(frame: Bytes, last: &mut LastClass) -> Result<HotFrame, Bytes> {
        Self::decode_with(frame, |b| last.read(b))
    }

    fn decode_with(
        mut frame: Bytes,
        class_of: impl FnOnce(&[u8]) -> Option<SmolStr>,
    ) -> Result<HotFrame, Bytes> {
        let Some(p) = parse(&frame, class_of) else {
            return Err(frame);
        };
        Ok(match p {
            Parsed::Request {
                id,
                timeout_ms,
                class,
                start,
            } => {
                bytes::Buf::advance(&mut frame, start);
                HotFrame::Request {
                    id,
                    timeout_ms,
                    class,
                    body: frame,
                }
            }
            Parsed::Reply { id, start } => {
                bytes::Buf::advance(&mut frame, start);
                HotFrame::Reply { id, body: frame }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn generic_frame(m: &Message) -> (BytesMut, Option<Bytes>) {
        let mut out = BytesMut::new();
        let split = m.encode_frame_split(&mut out);
        (out, split)
    }

    fn check(hot: Hot<'_>) {
        let m = hot.to_message();
        let mut out = BytesMut::from(&b"xy"[..]);
        let split = hot.encode_frame_split(&mut out);
        let (want, want_split) = generic_frame(&m);
        assert_eq!(&out[2..], &want[..]);
        assert_eq!(split, want_split);
        let body = hot.encode_body();
        assert_eq!(body, m.encode_body());
        let id = match hot {
            Hot::Request { id, .. } | Hot::Reply { id, .. } => id,
        };
        let owned = HotFrame::decode(body.clone()).ok();
        assert_eq!(owned.is_some(), decode(&body).is_some());
        match decode(&body) {
            Some(d) => assert_eq!(d, m),
            // Ids of ten varint bytes are the generic decoder's.
            None => assert!(id > u64::MAX >> 1, "{m:?}"),
        }
    }

    #[test]
    fn hand_encoding_is_postcards_at_every_varint_width() {
        // Sizes around STACK_FRAME too: a frame built on the stack, one that just does
        // not fit (a long class, a payload), and one built in place.
        for n in [
            0usize,
            1,
            40,
            50,
            60,
            90,
            100,
            110,
            127,
            128,
            16_383,
            16_384,
            Message::SPLIT_BODY_MIN + 1,
        ] {
            let body = Bytes::from(vec![9u8; n]);
            for id in [
                0u64,
                1,
                127,
                128,
                u64::from(u32::MAX),
                u64::MAX >> 1,
                u64::MAX,
            ] {
                let class = "c".repeat(n.min(200));
                check(Hot::Request {
                    id,
                    timeout_ms: u32::MAX,
                    class: &class,
                    body: &body,
                });
                check(Hot::Request {
                    id,
                    timeout_ms: 0,
                    class: "nkcluster.echo",
                    body: &body,
                });
                check(Hot::Reply { id, body: &body });
            }
        }
    }

    #[test]
    fn what_is_not_read_here_is_left_to_the_generic_decoder() {
        let req = |tail: &[u8]| {
            let mut b = vec![REQUEST, 1, 2, 1, b'c', 1, 7];
            b.extend_from_slice(tail);
            Bytes::from(b)
        };
        assert!(decode(&req(&[])).is_some());
        // Trailing bytes, a non-canonical varint, a bad UTF-8 class, an error reply,
        // an id too wide for nine bytes: all for the generic decoder.
        assert_eq!(decode(&req(&[0])), None);
        assert_eq!(
            decode(&Bytes::from_static(&[REQUEST, 0x81, 0x00, 2, 1, b'c', 0])),
            None
        );
        assert_eq!(
            decode(&Bytes::from_static(&[REQUEST, 1, 2, 1, 0xff, 0])),
            None
        );
        assert_eq!(decode(&Bytes::from_static(&[REPLY, 1, 1, 0, 0])), None);
        let mut wide = vec![REPLY];
        wide.extend_from_slice(&[0xff; 9]);
        wide.extend_from_slice(&[1, OK, 0]);
        assert_eq!(decode(&Bytes::from(wide)), None);
        assert_eq!(decode(&Bytes::new()), None);
        assert_eq!(decode(&Bytes::from_static(&[3, 0, 0])), None);
    }

    #[test]
    fn the_owned_decoder_keeps_the_payload_in_the_frame_or_gives_the_frame_back() {
        // Request 7, 1,000 ms, class "c", payload "ab".
        let frame = Bytes::from_static(&[REQUEST, 7, 0xe8, 0x07, 1, b'c', 2, b'a', b'b']);
        let Ok(HotFrame::Request {
            id: 7,
            timeout_ms: 1_000,
            class,
            body,
        }) = HotFrame::decode(frame.clone())
        else {
            panic!("a request");
        };
        assert_eq!((class.as_str(), &body[..]), ("c", &b"ab"[..]));
        // The payload is the frame's own bytes (no copy).
        assert_eq!(body.as_ptr(), frame[7..].as_ptr());
        assert_eq!(
            HotFrame::decode(Bytes::from_static(&[REPLY, 9, OK, 1, b'z'])),
            Ok(HotFrame::Reply {
                id: 9,
                body: Bytes::from_static(b"z")
            })
        );
        // An error reply is the generic decoder's: the frame comes back whole.
        let error = Bytes::from_static(&[REPLY, 1, 1, 0, 0]);
        assert_eq!(HotFrame::decode(error.clone()), Err(error));
    }

    #[test]
    fn a_kept_class_name_is_reused_for_the_same_bytes_and_replaced_by_others() {
        let mut last = LastClass::default();
        assert_eq!(last.storage_bytes(), 0);
        assert_eq!(
            last.read(b"nkcluster.echo").as_deref(),
            Some("nkcluster.echo")
        );
        assert_eq!(last.storage_bytes(), size_of::<SmolStr>() + 14);
        assert_eq!(
            last.read(b"nkcluster.echo").as_deref(),
            Some("nkcluster.echo")
        );
        // A name past the inline size: the same heap string, shared, while it repeats.
        let long = "c".repeat(40);
        let a = last.read(long.as_bytes()).expect("utf-8");
        let b = last.read(long.as_bytes()).expect("utf-8");
        assert_eq!((a.as_str(), a.as_ptr()), (long.as_str(), b.as_ptr()));
        assert_eq!(last.storage_bytes(), size_of::<SmolStr>() + 40);
        // Not UTF-8: refused, the kept one stays.
        assert_eq!(last.read(&[0xff]), None);
        assert_eq!(last.read(b"").as_deref(), Some(""));
        assert_eq!(last.read(b"x").as_deref(), Some("x"));
        last.release();
        assert_eq!(last.storage_bytes(), 0);
        // Through the decoder: the same request twice, then another class.
        let req = |class: &[u8]| {
            let mut b = vec![REQUEST, 7, 1, class.len() as u8];
            b.extend_from_slice(class);
            b.extend_from_slice(&[1, b'z']);
            Bytes::from(b)
        };
        let class_of = |r| match r {
            Ok(HotFrame::Request { class, .. }) => class,
            r => panic!("a request: {r:?}"),
        };
        for c in ["echo", "echo", "info"] {
            let got = class_of(HotFrame::decode_cached(req(c.as_bytes()), &mut last));
            assert_eq!(got, c);
        }
        assert_eq!(last.storage_bytes(), size_of::<SmolStr>() + 4);
    }

    proptest! {
        #[test]
        fn the_fast_decoder_agrees_with_the_generic_one(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            variant in prop_oneof![Just(REQUEST), Just(REPLY)],
        ) {
            let mut b = vec![variant];
            b.extend_from_slice(&data);
            let frame = Bytes::from(b);
            if let Some(m) = decode(&frame) {
                prop_assert_eq!(Some(m), Message::decode(&frame).ok());
            }
            // The owned decoder reads the same frames, or gives the frame back as it was.
            let owned = match HotFrame::decode(frame.clone()) {
                Ok(HotFrame::Request { id, timeout_ms, class, body }) => {
                    Some(Message::Request(Request { id, timeout_ms, class, body }))
                }
                Ok(HotFrame::Reply { id, body }) => {
                    Some(Message::Reply(Reply { id, result: Ok(body) }))
                }
                Err(back) => {
                    prop_assert_eq!(&back, &frame);
                    None
                }
            };
            prop_assert_eq!(&owned, &decode(&frame));
            // And through a kept class name (empty, or kept from another frame) alike.
            let mut last = LastClass::default();
            for _ in 0..2 {
                let cached = HotFrame::decode_cached(frame.clone(), &mut last).ok();
                prop_assert_eq!(cached, HotFrame::decode(frame.clone()).ok());
            }
        }

        #[test]
        fn requests_and_replies_round_trip(
            id in any::<u64>(),
            timeout_ms in any::<u32>(),
            class in "[a-z.]{0,20}",
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let body = Bytes::from(body);
            check(Hot::Request { id, timeout_ms, class: &class, body: &body });
            check(Hot::Reply { id, body: &body });
        }
    }
}
