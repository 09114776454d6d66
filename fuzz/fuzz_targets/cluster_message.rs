//! `ClusterRequest::decode` on arbitrary bodies of every cluster class (the first input
//! byte picks the class, the rest is the body).
//!
//! Invariants, whenever a body decodes:
//! - re-encoding gives the same class, and the encoding is a fixed point
//!   (`encode(decode(encode(r))) == encode(r)`), compared as bytes (a float field may be
//!   NaN, which no value equals);
//! - the encoding is never longer than the input body (the cluster's types hold no
//!   padding; fields a class ignores re-encode empty).
//!
//! Allocation in proportion to claimed (not present) lengths is caught by libFuzzer's
//! `-malloc_limit_mb` / `-rss_limit_mb`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nkcluster_core::cluster::{CLASSES, ClusterRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let class = CLASSES[usize::from(pick) % CLASSES.len()];
    // The zero-copy decoder (file parts as slices) agrees with the ordinary one.
    let zero_copy = ClusterRequest::decode_bytes(class, &bytes::Bytes::copy_from_slice(body));
    let Some(Ok(req)) = ClusterRequest::decode(class, body) else {
        assert!(!matches!(zero_copy, Some(Ok(_))), "decode_bytes accepts what decode refuses");
        return;
    };
    match zero_copy {
        Some(Ok(z)) => assert_eq!(
            z.encode().expect("encodes"),
            req.encode().expect("encodes"),
            "decode_bytes differs from decode"
        ),
        other => panic!("decode_bytes refuses what decode accepts: {other:?}"),
    }
    let (class2, enc) = req.encode().expect("a decoded request encodes");
    assert_eq!(class2, class, "re-encoding changed the class");
    assert!(
        enc.len() <= body.len(),
        "encoding ({} bytes) longer than the input ({} bytes)",
        enc.len(),
        body.len()
    );
    let again = match ClusterRequest::decode(class, &enc) {
        Some(Ok(r)) => r.encode().expect("encodes").1,
        other => panic!("the encoding of a decoded request does not decode: {other:?}"),
    };
    assert_eq!(again, enc, "encoding is not a fixed point");
});
