//! `Message::decode` on arbitrary frame bodies.
//!
//! Invariants, whenever a body decodes to `m`:
//! - `m.encode_body()` decodes back to `m`, and encoding is a fixed point
//!   (`encode(decode(encode(m))) == encode(m)`);
//! - the canonical encoding is never longer than the input, and of equal length only when
//!   it is the input itself (the only non-canonical encodings are over-long varints);
//! - the encoding is self-delimiting: a strict prefix or a trailing byte does not decode;
//! - `encode_frame_into` is the length prefix followed by the body.
//!
//! Allocation in proportion to claimed (not present) lengths is caught by libFuzzer's
//! `-malloc_limit_mb` / `-rss_limit_mb`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nkcluster_core::Message;
use nkcluster_core::frame::HEADER_LEN;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    let _ = m.kind();
    // The zero-copy decoder (chunks, requests and replies as slices) agrees.
    assert_eq!(
        Message::decode_bytes(&bytes::Bytes::copy_from_slice(data)).as_ref(),
        Ok(&m),
        "decode_bytes differs from decode"
    );

    let enc = m.encode_body();
    assert_eq!(
        Message::decode(&enc).as_ref(),
        Ok(&m),
        "encode/decode round trip"
    );
    let again = Message::decode(&enc).expect("round trip").encode_body();
    assert_eq!(again, enc, "encoding is not a fixed point");

    assert!(
        enc.len() <= data.len(),
        "canonical encoding ({} bytes) longer than the input ({} bytes)",
        enc.len(),
        data.len()
    );
    if enc.len() == data.len() {
        assert_eq!(
            &enc[..],
            data,
            "two encodings of the same length for one message"
        );
    }

    // Self-delimiting: no strict prefix decodes, nor the body with a trailing byte.
    for cut in [0, enc.len() / 2, enc.len().saturating_sub(1)] {
        if cut < enc.len() {
            assert!(
                Message::decode(&enc[..cut]).is_err(),
                "a {cut}-byte prefix of a {}-byte body decodes",
                enc.len()
            );
        }
    }
    let mut longer = enc.to_vec();
    longer.push(0);
    assert!(Message::decode(&longer).is_err(), "trailing byte accepted");

    let mut framed = BytesMut::new();
    framed.extend_from_slice(b"xy");
    m.encode_frame_into(&mut framed);
    assert_eq!(
        &framed[..2],
        b"xy",
        "encode_frame_into clobbered the buffer"
    );
    let header = u32::from_be_bytes([framed[2], framed[3], framed[4], framed[5]]);
    assert_eq!(header as usize, enc.len());
    assert_eq!(&framed[2 + HEADER_LEN..], &enc[..]);
});
