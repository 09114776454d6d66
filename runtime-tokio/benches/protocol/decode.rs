//! Frame decode throughput: large frames (GB/s) and small frames (messages/s), fed in
//! 64 KiB reads as a socket would deliver them.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use nkcluster_core::frame::{FrameDecoder, MAX_FRAME_DEFAULT, encode_frame};
use nkcluster_core::message::{Message, Request};

const READ: usize = 64 * 1024;

fn decode_all(stream: &[u8], dec: &mut FrameDecoder, mut f: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    for chunk in stream.chunks(READ) {
        dec.decode(chunk, |b| {
            f(b);
            n += 1;
            true
        })
        .expect("valid stream");
    }
    n
}

pub fn bench_decode(quick: bool) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    // Large frames: 1 MiB bodies.
    let body = vec![0xabu8; 1 << 20];
    let mut stream = BytesMut::new();
    for _ in 0..64 {
        encode_frame(&body, &mut stream);
    }
    let rounds = if quick { 4 } else { 20 };
    let mut dec = FrameDecoder::new(MAX_FRAME_DEFAULT);
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(b);
        });
    }
    let secs = t.elapsed().as_secs_f64();
    let gbps = (stream.len() * rounds) as f64 / secs / 1e9;
    rows.push((
        "frame decode, 1 MiB frames".into(),
        format!("{gbps:.2} GB/s"),
    ));

    // Small frames: Request messages with 64-byte bodies.
    let msg = Message::Request(Request {
        id: 12345,
        timeout_ms: 5000,
        class: "nkcluster.echo".into(),
        body: Bytes::from(vec![7u8; 64]),
    });
    let mut stream = BytesMut::new();
    let count = 200_000;
    for _ in 0..count {
        msg.encode_frame_into(&mut stream);
    }
    let rounds = if quick { 2 } else { 10 };
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(b);
        });
    }
    let rate = (count * rounds) as f64 / t.elapsed().as_secs_f64();
    rows.push((
        "frame decode, small frames".into(),
        format!("{:.1} M frames/s", rate / 1e6),
    ));
    let t = Instant::now();
    for _ in 0..rounds {
        decode_all(&stream, &mut dec, |b| {
            black_box(Message::decode(b).expect("valid"));
        });
    }
    let rate = (count * rounds) as f64 / t.elapsed().as_secs_f64();
    rows.push((
        "frame + message decode, small requests".into(),
        format!("{:.2} M msgs/s", rate / 1e6),
    ));
    rows
}
