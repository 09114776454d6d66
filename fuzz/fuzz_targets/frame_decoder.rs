//! `FrameDecoder` on arbitrary streams split at fuzzer-chosen points.
//!
//! Input: see [`nkcluster_fuzz::FrameInput`]. Invariants:
//! - no frame handed out exceeds the maximum, and the buffered partial frame never
//!   reaches `HEADER_LEN + max` (a complete frame is always handed out);
//! - re-encoding the frames handed out reproduces exactly the consumed prefix of the
//!   stream; on success everything else is buffered, on error the next header announces
//!   more than the maximum, and the decoder stays poisoned with the same error;
//! - memory is never reserved for what a header merely announces;
//! - decoding in one piece gives the same frames and result as decoding in chunks;
//! - stopping early after `k` frames hands out the first `k` frames and leaves nothing
//!   buffered.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nkcluster_core::frame::{FrameDecoder, FrameError, HEADER_LEN, encode_frame};
use nkcluster_fuzz::FrameInput;

/// Mirrors the decoder's private `RETAIN_MAX`: capacity it may keep between frames.
const RETAIN_MAX: usize = 16 * 1024;

fn check_buffer(dec: &FrameDecoder, max: u32) {
    let buffered = dec.buffered();
    assert!(
        (buffered as u64) < HEADER_LEN as u64 + u64::from(max),
        "buffered {buffered} bytes with max {max}: a complete frame was held back"
    );
    // Growth is driven by arrived bytes only (amortised doubling), never by the length a
    // header announces.
    assert!(
        dec.capacity() <= RETAIN_MAX.max(2 * buffered).max(64),
        "capacity {} for {buffered} buffered bytes",
        dec.capacity()
    );
}

fuzz_target!(|data: &[u8]| {
    let input = FrameInput::parse(data);
    let max = input.max;
    let stream = input.stream;

    // Chunked decode.
    let mut dec = FrameDecoder::new(max);
    assert_eq!(dec.max(), max);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut error: Option<FrameError> = None;
    let mut pos = 0;
    let mut bounds: Vec<usize> = Vec::new();
    for &c in &input.chunks {
        pos = (pos + c).min(stream.len());
        bounds.push(pos);
    }
    bounds.push(stream.len());
    let mut start = 0;
    for end in bounds {
        let chunk = &stream[start..end];
        start = end;
        let mut got = Vec::new();
        let r = dec.decode(chunk, |f| {
            assert!(f.len() <= max as usize, "frame of {} > max {max}", f.len());
            got.push(f.to_vec());
            true
        });
        match (&error, r) {
            (None, Ok(())) => frames.extend(got),
            (None, Err(e)) => {
                frames.extend(got);
                assert_eq!(dec.buffered(), 0, "a poisoned decoder holds nothing");
                error = Some(e);
            }
            (Some(first), r) => {
                assert!(got.is_empty(), "a poisoned decoder handed out a frame");
                assert_eq!(r.as_ref(), Err(first), "a poisoned decoder stays poisoned");
            }
        }
        check_buffer(&dec, max);
    }

    // The frames handed out are exactly the consumed prefix of the stream.
    let mut encoded = BytesMut::new();
    for f in &frames {
        encode_frame(f, &mut encoded);
    }
    let consumed = encoded.len();
    assert!(consumed <= stream.len());
    assert_eq!(&encoded[..], &stream[..consumed], "re-encoding differs");
    let rest = &stream[consumed..];
    match &error {
        Some(FrameError::ForeignProtocol(p)) => panic!("the decoder does not sniff here: {p:?}"),
        None => {
            assert_eq!(
                dec.buffered(),
                rest.len(),
                "unconsumed bytes must be buffered"
            );
            if rest.len() >= HEADER_LEN {
                let announced = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                assert!(announced <= max);
                assert!(rest.len() < HEADER_LEN + announced as usize);
            }
        }
        Some(FrameError::TooLarge {
            announced,
            max: emax,
        }) => {
            assert_eq!(*emax, max);
            assert!(rest.len() >= HEADER_LEN, "error without a whole header");
            let next = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            assert_eq!(*announced, next, "the error names the offending header");
            assert!(next > max);
        }
    }

    // One piece gives the same result.
    let mut whole = FrameDecoder::new(max);
    let mut frames1 = Vec::new();
    let r1 = whole.decode(stream, |f| {
        frames1.push(f.to_vec());
        true
    });
    assert_eq!(frames1, frames, "one-piece and chunked decodes differ");
    assert_eq!(r1.err(), error, "one-piece and chunked results differ");
    assert_eq!(whole.buffered(), dec.buffered());
    check_buffer(&whole, max);

    // Stopping early hands out a prefix and leaves the decoder clean (`on_frame` returning
    // false stops after that frame, so `k` is at least 1).
    let k = input.stop_after.max(1);
    let mut early = FrameDecoder::new(max);
    let mut frames2 = Vec::new();
    let r2 = early.decode(stream, |f| {
        frames2.push(f.to_vec());
        frames2.len() < k
    });
    if k <= frames.len() {
        assert_eq!(r2, Ok(()));
        assert_eq!(&frames2[..], &frames[..k]);
        assert_eq!(early.buffered(), 0, "stopping early keeps no partial frame");
    } else {
        assert_eq!(frames2, frames);
        assert_eq!(r2.err(), error);
    }
});
