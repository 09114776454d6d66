//! The two output lanes and chunk assembly (`nkcluster_core::lanes`): arbitrary sequences
//! of control and bulk messages, polled with arbitrary amounts held by the shell, then
//! the stream decoded and its chunks put together; and `Assembly` fed arbitrary chunks.
//!
//! Invariants:
//! - the stream is whole frames, each a message; chunks put together decode to messages;
//! - every message comes out exactly once, the control messages in their order, the bulk
//!   messages in theirs, and a close queued with `last` after everything before it;
//! - a bulk message never leaves in pieces bigger than `CHUNK` bytes of body;
//! - `Assembly` never holds more than its cap and never panics on any chunk sequence.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use nkcluster_core::Message;
use nkcluster_core::conn::Framing;
use nkcluster_core::frame::FrameDecoder;
use nkcluster_core::lanes::{Assembly, CHUNK, Lanes, PACE};
use nkcluster_core::message::{Chunk, Close, Ping, Reply};
use nkcluster_fuzz::Reader;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let Some(mode) = r.u8() else { return };
    if mode & 0x80 != 0 {
        // Assembly alone, on arbitrary chunks.
        let max = u32::from(r.u8().unwrap_or(0)) * 64;
        let mut a = Assembly::default();
        while let Some(op) = r.u8() {
            let n = usize::from(r.u8().unwrap_or(0)) * 8;
            let chunk = Chunk {
                more: op & 1 == 1,
                data: Bytes::from(vec![op; n]),
            };
            match a.push(chunk, max) {
                Ok(Some(b)) => assert!(b.len() <= max as usize),
                Ok(None) | Err(_) => {}
            }
            assert!(a.buffered() <= max as usize);
        }
        return;
    }
    let framing = if mode & 1 == 0 {
        Framing::Stream
    } else {
        Framing::Messages
    };
    let mut lanes = Lanes::new(framing);
    lanes.set_chunked(mode & 2 != 0);
    let mut sent: Vec<Message> = Vec::new();
    let mut out: Vec<Bytes> = Vec::new();
    let mut seq = 0u64;
    let mut closed = false;
    while let Some(op) = r.u8() {
        seq += 1;
        match op % 4 {
            0 if !closed => {
                let m = Message::Ping(Ping { seq, wall_ns: 0 });
                lanes.control(&m);
                sent.push(m);
            }
            1 if !closed => {
                // A bulk reply of up to ~4 chunks.
                let len = usize::from(r.u8().unwrap_or(0)) * 1024 + usize::from(op);
                let m = Message::Reply(Reply {
                    id: seq,
                    result: Ok(Bytes::from(vec![op; len])),
                });
                lanes.bulk(&m);
                sent.push(m);
            }
            2 => {
                let held = usize::from(r.u8().unwrap_or(0)) * PACE / 128;
                while let Some(b) = lanes.poll(held) {
                    out.push(b);
                }
            }
            3 if !closed => {
                let m = Message::Close(Close {
                    reason: "fuzz".into(),
                });
                lanes.last(&m);
                sent.push(m);
                closed = true;
            }
            _ => {}
        }
    }
    while let Some(b) = lanes.poll(0) {
        out.push(b);
    }
    assert!(lanes.is_empty());
    // Decode what left.
    let mut bodies: Vec<Bytes> = Vec::new();
    match framing {
        Framing::Stream => {
            let mut buf = BytesMut::new();
            for b in &out {
                buf.extend_from_slice(b);
            }
            let mut dec = FrameDecoder::new(u32::MAX);
            dec.decode_buf(&mut buf, |b| {
                bodies.push(b);
                true
            })
            .expect("frames");
            assert!(buf.is_empty(), "a frame cut short");
        }
        Framing::Messages => bodies = out,
    }
    let mut a = Assembly::default();
    let mut got: Vec<Message> = Vec::new();
    for b in bodies {
        match Message::decode_bytes(&b).expect("a message") {
            Message::Chunk(c) => {
                assert!(c.data.len() <= CHUNK);
                if let Some(whole) = a.push(c, u32::MAX).expect("fits") {
                    got.push(Message::decode_bytes(&whole).expect("a whole message"));
                }
            }
            m => got.push(m),
        }
    }
    assert_eq!(a.buffered(), 0, "a chunked message left unfinished");
    // Same messages; each lane in its order; the close last of what came before it.
    let lane = |m: &Message| matches!(m, Message::Reply(_));
    let pick = |v: &[Message], bulk: bool| -> Vec<Message> {
        v.iter().filter(|m| lane(m) == bulk && !matches!(m, Message::Close(_))).cloned().collect()
    };
    assert_eq!(pick(&got, false), pick(&sent, false));
    assert_eq!(pick(&got, true), pick(&sent, true));
    assert_eq!(got.len(), sent.len());
    if let Some(i) = sent.iter().position(|m| matches!(m, Message::Close(_))) {
        let j = got.iter().position(|m| matches!(m, Message::Close(_))).expect("the close");
        // Every bulk message queued before the close left before it.
        let bulk_before = sent[..i].iter().filter(|m| lane(m)).count();
        assert!(got[..j].iter().filter(|m| lane(m)).count() >= bulk_before);
    }
});
