//! Length-prefixed framing for stream transports (TCP, TLS).
//!
//! A frame is a 4-byte big-endian body length followed by the body. The decoder checks the
//! announced length against a configured maximum *before* buffering anything for it, and
//! never reserves memory for what the peer merely announces: a partial frame is buffered
//! only as its bytes actually arrive. Frames whose bytes are all present in one input slice
//! are handed out straight from that slice, without copying.
//!
//! Message transports (WebSocket) carry one body per message and skip this codec, but
//! enforce the same maximum.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Default maximum frame body: 8 MiB.
pub const MAX_FRAME_DEFAULT: u32 = 8 * 1024 * 1024;
/// A partial frame never makes the decoder hold more than this beyond what arrived, and its
/// buffer is released (shrunk) when it held more than this and becomes empty.
const RETAIN_MAX: usize = 16 * 1024;

/// Errors of the frame layer. Every variant is terminal: the stream cannot be resynchronised,
/// the decoder stays poisoned and the connection must be closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The peer announced a body larger than the configured maximum.
    #[error("frame_too_large: peer announced {announced} bytes, maximum is {max}")]
    TooLarge {
        /// Length the header claimed.
        announced: u32,
        /// Configured maximum.
        max: u32,
    },
    /// Before authentication, the first bytes are another protocol's: a TLS record or an
    /// HTTP request, that is, a peer dialing with the wrong transport.
    #[error("transport_mismatch: {}", .0.hint())]
    ForeignProtocol(ForeignProtocol),
}

impl FrameError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "frame_too_large",
            FrameError::ForeignProtocol(_) => "transport_mismatch",
        }
    }
}

/// Another protocol recognised in a would-be frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignProtocol {
    /// A TLS record (handshake, alert...).
    Tls,
    /// An HTTP request or response (a WebSocket upgrade).
    Http,
}

impl ForeignProtocol {
    /// What to tell the user.
    pub fn hint(self) -> &'static str {
        match self {
            ForeignProtocol::Tls => {
                "the peer speaks TLS, not plain nkcluster frames: is this a TLS port? \
                 try ;transport=tls (or wss)"
            }
            ForeignProtocol::Http => {
                "the peer speaks HTTP, not plain nkcluster frames: is this a WebSocket port? \
                 try ;transport=ws (or wss)"
            }
        }
    }

    /// Recognises the first four bytes of a stream.
    pub fn sniff(header: [u8; 4]) -> Option<ForeignProtocol> {
        match header {
            // Record type (change_cipher_spec, alert, handshake, application_data), then
            // protocol version 3.x.
            [0x14..=0x17, 0x03, 0x00..=0x04, _] => Some(ForeignProtocol::Tls),
            [b'G', b'E', b'T', b' '] | [b'H', b'T', b'T', b'P'] | [b'P', b'O', b'S', b'T'] => {
                Some(ForeignProtocol::Http)
            }
            _ => None,
        }
    }
}

/// Incremental decoder for a stream of length-prefixed frames.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    /// Recognise another protocol's first bytes (before authentication).
    sniff: bool,
    /// Bytes of an incomplete frame (header and/or part of a body).
    partial: BytesMut,
    poisoned: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder that refuses frames whose body exceeds `max` bytes.
    pub fn new(max: u32) -> Self {
        FrameDecoder {
            max,
            sniff: false,
            partial: BytesMut::new(),
            poisoned: None,
        }
    }

    /// The configured maximum body size.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Changes the maximum for the frames still to come (a connection raises it once the
    /// peer has authenticated).
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// While on, an oversized header that is really a TLS record or an HTTP request is
    /// reported as [`FrameError::ForeignProtocol`] (a peer using the wrong transport).
    pub fn set_sniff(&mut self, on: bool) {
        self.sniff = on;
    }

    /// Bytes currently held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Capacity currently allocated for incomplete frames.
    pub fn capacity(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds `input` and calls `on_frame` with every complete body, in order. `on_frame`
    /// returns `false` to stop early (the rest of the input is dropped: the caller is closing).
    ///
    /// On error nothing more is decoded, now or later.
    pub fn decode(
        &mut self,
        mut input: &[u8],
        mut on_frame: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), FrameError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        // Finish a frame started by earlier input.
        if !self.partial.is_empty() {
            if self.partial.len() < HEADER_LEN {
                let need = HEADER_LEN - self.partial.len();
                let take = need.min(input.len());
                self.partial.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.partial.len() < HEADER_LEN {
                    return Ok(());
                }
                self.check_len(header(&self.partial))?;
            }
            let total = HEADER_LEN + header(&self.partial) as usize;
            let take = (total - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            let go_on = on_frame(&self.partial[HEADER_LEN..]);
            self.partial.clear();
            if self.partial.capacity() > RETAIN_MAX {
                self.partial = BytesMut::new();
            }
            if !go_on {
                return Ok(());
            }
        }
        // Whole frames straight from the input.
        while input.len() >= HEADER_LEN {
            let len = header(input);
            self.check_len(len)?;
            let total = HEADER_LEN + len as usize;
            if input.len() < total {
                break;
            }
            if !on_frame(&input[HEADER_LEN..total]) {
                return Ok(());
            }
            input = &input[total..];
        }
        if !input.is_empty() {
            if input.len() >= HEADER_LEN {
                self.check_len(header(input))?;
            }
            self.partial.extend_from_slice(input);
        }
        Ok(())
    }

    /// Splits every complete frame off the front of `buf` and hands out its body as a
    /// `Bytes` sharing `buf`'s memory (no copy). Incomplete data stays in `buf`: the shell
    /// reads further input straight after it. Same checks and errors as
    /// [`decode`](Self::decode).
    pub fn decode_buf(
        &mut self,
        buf: &mut BytesMut,
        mut on_frame: impl FnMut(Bytes) -> bool,
    ) -> Result<(), FrameError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        // The run of whole frames of allowed lengths at the front is split off the
        // buffer at once, then each frame off the run: a frozen `Bytes` is split for
        // less than a `BytesMut` (one new handle per frame either way).
        let run = self.whole_frames(buf);
        if run > 0 {
            let mut run = if run == buf.len() {
                std::mem::take(buf).freeze()
            } else {
                buf.split_to(run).freeze()
            };
            while !run.is_empty() {
                let len = header(&run) as usize;
                bytes::Buf::advance(&mut run, HEADER_LEN);
                let body = run.split_to(len);
                if !on_frame(body) {
                    // What was not handed out goes back in front of the rest (a
                    // copy, rare: the end of a handshake, a connection closing).
                    if !run.is_empty() {
                        let mut back = BytesMut::with_capacity(run.len() + buf.len());
                        back.extend_from_slice(&run);
                        back.extend_from_slice(buf);
                        *buf = back;
                    }
                    return Ok(());
                }
            }
        }
        // A frame under way, or one whose length is refused (its error).
        while buf.len() >= HEADER_LEN {
            let len = header(buf);
            self.check_len(len)?;
            let total = HEADER_LEN + len as usize;
            if buf.len() < total {
                break;
            }
            bytes::Buf::advance(buf, HEADER_LEN);
            let body = buf.split_to(total - HEADER_LEN).freeze();
            if !on_frame(body) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Bytes at the front of `buf` taken by whole frames whose lengths are allowed.
    fn whole_frames(&self, buf: &[u8]) -> usize {
        let mut end = 0;
        while let Some(h) = buf.get(end..end + HEADER_LEN) {
            let len = header(h);
            if len > self.max {
                break;
            }
            let total = HEADER_LEN + len as usize;
            if buf.len() - end < total {
                break;
            }
            end += total;
        }
        end
    }

    /// How many bytes the shell should make room for before its next read into a buffer
    /// used with [`decode_buf`](Self::decode_buf): what the current frame still needs
    /// plus `min` for the start of the next one, at least `min` and at most `max`. It
    /// never exceeds what the peer *sent* by more than `max`, so a claimed length alone
    /// cannot make us allocate it.
    ///
    /// The `min` beyond the frame keeps a run of bulk chunks at one read each: the read
    /// that ends a chunk also takes the next one's header and first bytes, so the buffer
    /// never falls empty between them (an empty buffer means a small read into scratch
    /// space for the next header, then another for the rest of the chunk).
    pub fn read_hint(&self, buf: &[u8], min: usize, max: usize) -> usize {
        if buf.len() < HEADER_LEN {
            return min;
        }
        let total = HEADER_LEN + header(buf).min(self.max) as usize;
        total
            .saturating_sub(buf.len())
            .saturating_add(min)
            .clamp(min, max)
    }

    /// Room to make in the read buffer before the next read, for a shell that keeps no
    /// buffer while idle: `0` when no frame is in progress (`buf` empty: the shell reads
    /// into scratch space of its own and keeps only the bytes that arrived), otherwise
    /// [`read_hint`](Self::read_hint). An idle link then holds no read buffer at all.
    pub fn read_room(&self, buf: &[u8], min: usize, max: usize) -> usize {
        if buf.is_empty() {
            0
        } else {
            self.read_hint(buf, min, max)
        }
    }

    fn check_len(&mut self, announced: u32) -> Result<(), FrameError> {
        if announced > self.max {
            let foreign = self
                .sniff
                .then(|| ForeignProtocol::sniff(announced.to_be_bytes()))
                .flatten();
            let e = match foreign {
                Some(p) => FrameError::ForeignProtocol(p),
                None => FrameError::TooLarge {
                    announced,
                    max: self.max,
                },
            };
            self.poisoned = Some(e.clone());
            self.partial = BytesMut::new();
            return Err(e);
        }
        Ok(())
    }
}

fn header(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends one frame (header and body) to `out`.
///
/// # Panics
/// Never for bodies up to 4 GiB; callers keep bodies under their configured maximum.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.reserve(HEADER_LEN + body.len());
    out.put_u32(len);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(dec: &mut FrameDecoder, input: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut v = Vec::new();
        dec.decode(input, |f| {
            v.push(f.to_vec());
            true
        })?;
        Ok(v)
    }

    fn encode_all(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for f in frames {
            encode_frame(f, &mut out);
        }
        out.to_vec()
    }

    #[test]
    fn tls_and_http_bytes_are_named_while_sniffing() {
        // A TLS alert (what a TLS server answers to plain bytes) and a ClientHello.
        for (bytes, want) in [
            (&[0x15u8, 0x03, 0x03, 0x00, 0x02][..], ForeignProtocol::Tls),
            (&[0x16, 0x03, 0x01, 0x02, 0x00][..], ForeignProtocol::Tls),
            (b"GET / HTTP/1.1\r\n", ForeignProtocol::Http),
            (b"HTTP/1.1 400 Bad Request\r\n", ForeignProtocol::Http),
        ] {
            let mut dec = FrameDecoder::new(64 * 1024);
            dec.set_sniff(true);
            assert_eq!(
                collect(&mut dec, bytes),
                Err(FrameError::ForeignProtocol(want))
            );
            assert_eq!(
                FrameError::ForeignProtocol(want).code(),
                "transport_mismatch"
            );
            // Without sniffing it is just too large.
            let mut dec = FrameDecoder::new(64 * 1024);
            assert!(matches!(
                collect(&mut dec, bytes),
                Err(FrameError::TooLarge { .. })
            ));
        }
        // A length within the maximum is a frame, whatever its bytes.
        let mut dec = FrameDecoder::new(u32::MAX);
        dec.set_sniff(true);
        assert_eq!(collect(&mut dec, &[0x16, 0x03, 0x01]), Ok(vec![]));
        let msg = FrameError::ForeignProtocol(ForeignProtocol::Tls).to_string();
        assert!(msg.contains("try ;transport=tls"), "{msg}");
    }

    #[test]
    fn the_maximum_can_be_raised_between_frames() {
        let mut dec = FrameDecoder::new(4);
        assert_eq!(
            collect(&mut dec, &encode_all(&[b"abcd".to_vec()])),
            Ok(vec![b"abcd".to_vec()])
        );
        dec.set_max(8);
        assert_eq!(
            collect(&mut dec, &encode_all(&[b"abcdefgh".to_vec()])),
            Ok(vec![b"abcdefgh".to_vec()])
        );
    }

    #[test]
    fn many_frames_in_one_read() {
        let frames = vec![b"a".to_vec(), vec![], b"hello".to_vec()];
        let mut dec = FrameDecoder::new(16);
        assert_eq!(collect(&mut dec, &encode_all(&frames)), Ok(frames));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn partial_header_then_body() {
        let mut dec = FrameDecoder::new(16);
        let bytes = encode_all(&[b"xyz".to_vec()]);
        assert_eq!(collect(&mut dec, &bytes[..2]), Ok(vec![]));
        assert_eq!(dec.buffered(), 2);
        assert_eq!(collect(&mut dec, &bytes[2..5]), Ok(vec![]));
        assert_eq!(collect(&mut dec, &bytes[5..]), Ok(vec![b"xyz".to_vec()]));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_header_rejected_before_buffering() {
        let mut dec = FrameDecoder::new(1024);
        // A header claiming 4 GiB - 1, followed by a few bytes.
        let r = collect(&mut dec, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(
            r,
            Err(FrameError::TooLarge {
                announced: u32::MAX,
                max: 1024
            })
        );
        assert_eq!(dec.capacity(), 0);
        // Poisoned: later input is refused too.
        assert!(collect(&mut dec, &[0, 0, 0, 0]).is_err());
    }

    #[test]
    fn oversized_header_split_across_reads() {
        let mut dec = FrameDecoder::new(1024);
        assert_eq!(collect(&mut dec, &[0x00, 0x10]), Ok(vec![]));
        assert!(collect(&mut dec, &[0x00, 0x00]).is_err());
    }

    #[test]
    fn max_is_inclusive() {
        let mut dec = FrameDecoder::new(3);
        assert_eq!(
            collect(&mut dec, &encode_all(&[b"abc".to_vec()])),
            Ok(vec![b"abc".to_vec()])
        );
        assert!(collect(&mut dec, &encode_all(&[b"abcd".to_vec()])).is_err());
    }

    #[test]
    fn early_stop_drops_rest() {
        let mut dec = FrameDecoder::new(16);
        let bytes = encode_all(&[b"a".to_vec(), b"b".to_vec()]);
        let mut n = 0;
        dec.decode(&bytes, |_| {
            n += 1;
            false
        })
        .expect("decodes");
        assert_eq!(n, 1);
    }

    #[test]
    fn read_room_is_nothing_between_frames() {
        let dec = FrameDecoder::new(8 << 20);
        assert_eq!(dec.read_room(&[], 4096, 1 << 18), 0);
        // A frame under way: what it still needs, within the bounds.
        assert_eq!(dec.read_room(&[0, 0], 4096, 1 << 18), 4096);
        assert_eq!(dec.read_room(&[0, 0x01, 0, 0], 4096, 1 << 18), 65536 + 4096);
        assert_eq!(dec.read_room(&[0, 0x80, 0, 0], 4096, 1 << 18), 1 << 18);
    }

    #[test]
    fn read_hint_is_bounded_by_what_arrived() {
        let dec = FrameDecoder::new(8 << 20);
        assert_eq!(dec.read_hint(&[], 4096, 1 << 18), 4096);
        // A header claiming 8 MiB: room for at most `max` more, never the claim.
        assert_eq!(dec.read_hint(&[0, 0x80, 0, 0], 4096, 1 << 18), 1 << 18);
        // Near the end of a frame: what is missing, and `min` for the next one's start.
        assert_eq!(dec.read_hint(&[0, 0, 0, 10, 1, 2], 16, 1 << 18), 8 + 16);
        let mut b = vec![0, 0, 0x10, 0];
        b.extend(vec![0; 4000]);
        assert_eq!(dec.read_hint(&b, 16, 1 << 18), 4096 - 4000 + 16);
        // A frame that arrived whole (the next header not yet): `min`.
        let mut b = vec![0, 0, 0, 2, 7, 7];
        assert_eq!(dec.read_hint(&b, 16, 1 << 18), 16);
        b.push(0);
        assert_eq!(dec.read_hint(&b, 16, 1 << 18), 16);
    }

    #[test]
    fn buffered_frames_share_the_buffer() {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        encode_frame(&[9u8; 1000], &mut buf);
        encode_frame(b"x", &mut buf);
        buf.extend_from_slice(&[0, 0, 0]);
        let base = buf.as_ptr() as usize;
        let mut got = Vec::new();
        dec.decode_buf(&mut buf, |f| {
            got.push(f);
            true
        })
        .expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ptr() as usize, base + HEADER_LEN, "no copy");
        assert_eq!(&got[1][..], b"x");
        assert_eq!(&buf[..], &[0, 0, 0]);
    }

    #[test]
    fn frames_left_unread_stay_in_the_buffer_in_order() {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        for f in [&b"one"[..], b"two", b"three"] {
            encode_frame(f, &mut buf);
        }
        buf.extend_from_slice(&[0, 0, 0, 9, 1]);
        let whole = buf.to_vec();
        let mut got = Vec::new();
        dec.decode_buf(&mut buf, |f| {
            got.push(f);
            false
        })
        .expect("valid");
        assert_eq!(got, vec![Bytes::from_static(b"one")]);
        assert_eq!(&buf[..], &whole[HEADER_LEN + 3..]);
        let mut rest = Vec::new();
        dec.decode_buf(&mut buf, |f| {
            rest.push(f);
            true
        })
        .expect("valid");
        assert_eq!(
            rest,
            vec![Bytes::from_static(b"two"), Bytes::from_static(b"three")]
        );
        assert_eq!(&buf[..], &[0, 0, 0, 9, 1]);
    }

    #[test]
    fn large_partial_buffer_is_released() {
        let mut dec = FrameDecoder::new(1 << 20);
        let bytes = encode_all(&[vec![7u8; 100_000]]);
        assert_eq!(collect(&mut dec, &bytes[..50_000]), Ok(vec![]));
        assert_eq!(collect(&mut dec, &bytes[50_000..]).map(|v| v.len()), Ok(1));
        assert_eq!(dec.capacity(), 0);
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        ) {
            let bytes = encode_all(&frames);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut dec = FrameDecoder::new(300);
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain(std::iter::once(bytes.len())) {
                got.extend(collect(&mut dec, &bytes[last..p]).expect("valid stream"));
                last = p;
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(dec.buffered(), 0);
        }

        #[test]
        fn buffered_decoding_matches_slice_decoding(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
            max in 0u32..200,
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let (mut a, mut b) = (FrameDecoder::new(max), FrameDecoder::new(max));
            let (mut fa, mut fb) = (Vec::new(), Vec::new());
            let (mut ea, mut eb) = (None, None);
            let mut buf = BytesMut::new();
            let mut last = 0;
            for p in points.into_iter().chain(std::iter::once(data.len())) {
                let chunk = &data[last..p];
                last = p;
                if ea.is_none() {
                    if let Err(e) = a.decode(chunk, |f| { fa.push(f.to_vec()); true }) { ea = Some(e); }
                }
                if eb.is_none() {
                    buf.extend_from_slice(chunk);
                    if let Err(e) = b.decode_buf(&mut buf, |f| { fb.push(f.to_vec()); true }) { eb = Some(e); }
                }
            }
            prop_assert_eq!(fa, fb);
            prop_assert_eq!(ea, eb);
        }

        #[test]
        fn garbage_never_yields_oversized_frames(data in proptest::collection::vec(any::<u8>(), 0..2000), max in 0u32..512) {
            let mut dec = FrameDecoder::new(max);
            let _ = dec.decode(&data, |f| { assert!(f.len() <= max as usize); true });
            prop_assert!(dec.buffered() <= data.len());
        }
    }
}
