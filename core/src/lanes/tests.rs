use super::*;
use crate::frame::FrameDecoder;
use crate::message::{Ping, Reply};
use credit::{BUSY_FOR, REPORT_EVERY, WINDOW_BUSY, WINDOW_QUIET};

fn ping(seq: u64) -> Message {
    Message::Ping(Ping { seq, wall_ns: 7 })
}

fn reply(id: u64, len: usize) -> Message {
    Message::Reply(Reply {
        id,
        result: Ok(Bytes::from(
            (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )),
    })
}

/// Every frame in `bytes` (stream framing), decoded.
fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut dec = FrameDecoder::new(u32::MAX);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    dec.decode_buf(&mut buf, |b| {
        out.push(Message::decode_bytes(&b).expect("decodes"));
        true
    })
    .expect("frames");
    assert!(buf.is_empty(), "a frame cut short");
    out
}

/// Short names of the frames: `ping1`, `reply2`, `chunk+`/`chunk.` (more or last).
fn names(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m {
            Message::Ping(p) => format!("ping{}", p.seq),
            Message::Reply(r) => format!("reply{}", r.id),
            Message::Request(r) => format!("request{}", r.id),
            Message::Close(_) => "close".into(),
            Message::Chunk(c) => format!("chunk{}", if c.more { "+" } else { "." }),
            m => m.kind().into(),
        })
        .collect()
}

fn drain(l: &mut Lanes, queued: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = l.poll(queued) {
        out.extend_from_slice(&b);
    }
    out
}

/// What the chunks put together make.
fn assemble(msgs: Vec<Message>) -> Vec<Message> {
    let mut a = Assembly::default();
    let mut out = Vec::new();
    for m in msgs {
        match m {
            Message::Chunk(c) => {
                if let Some(body) = a.push(c, u32::MAX).expect("fits") {
                    out.push(Message::decode_bytes(&body).expect("a message"));
                }
            }
            m => out.push(m),
        }
    }
    out
}

#[test]
fn control_goes_before_bulk_and_bulk_leaves_one_chunk_at_a_time() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    let big = reply(1, 3 * CHUNK);
    l.bulk(&big);
    l.control(&ping(1));
    // Everything: the ping first, then the reply in 4 chunks (its head pushes the body
    // just past 3 chunks).
    let all = frames(&drain(&mut l, 0));
    assert_eq!(
        names(&all),
        ["ping1", "chunk+", "chunk+", "chunk+", "chunk."]
    );
    for m in &all[1..4] {
        let Message::Chunk(c) = m else { panic!() };
        assert_eq!(c.data.len(), CHUNK);
    }
    assert_eq!(assemble(all), vec![ping(1), big]);
    assert!(l.is_empty());
}

#[test]
fn a_control_message_waits_for_the_frame_under_way_only() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    let big = reply(1, 2 * CHUNK);
    l.bulk(&big);
    // The first segment of the first chunk leaves; a ping queued now goes right after
    // that chunk's frame, before the next chunk.
    let mut out = l.poll(0).expect("a segment").to_vec();
    l.control(&ping(2));
    out.extend(drain(&mut l, 0));
    assert_eq!(
        names(&frames(&out)),
        ["chunk+", "ping2", "chunk+", "chunk."]
    );
}

#[test]
fn bulk_is_paced_by_what_the_shell_still_holds() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    l.bulk(&reply(1, 2 * CHUNK));
    l.control(&ping(1));
    // The shell holds PACE bytes: control only.
    let held = frames(&drain(&mut l, PACE));
    assert_eq!(names(&held), ["ping1"]);
    assert!(l.has_bulk());
    // Room: one chunk's frame at a time (its segments), then nothing until asked again.
    let mut chunk = Vec::new();
    let first = l.poll(PACE - 1).expect("a chunk");
    chunk.extend_from_slice(&first);
    // The rest of the frame under way goes whatever the shell holds.
    while let Some(b) = l.poll(usize::MAX) {
        chunk.extend_from_slice(&b);
    }
    assert_eq!(names(&frames(&chunk)), ["chunk+"]);
    assert!(l.poll(PACE).is_none());
    assert_eq!(names(&frames(&drain(&mut l, 0))), ["chunk+", "chunk."]);
}

#[test]
fn payloads_are_not_copied_on_streams() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    let payload = Bytes::from(vec![3u8; 2 * CHUNK]);
    l.bulk(&Message::Reply(Reply {
        id: 9,
        result: Ok(payload.clone()),
    }));
    let mut shared = 0;
    while let Some(b) = l.poll(0) {
        if payload.as_ptr_range().contains(&b.as_ptr()) {
            shared += b.len();
        }
    }
    // Everything but the few payload bytes that share the first chunk with the head.
    assert!(shared >= 2 * CHUNK - 256, "{shared}");
}

#[test]
fn an_older_peer_gets_bulk_whole_after_the_control_lane() {
    let mut l = Lanes::new(Framing::Stream);
    let big = reply(1, 3 * CHUNK);
    l.bulk(&big);
    l.control(&ping(1));
    let bytes = drain(&mut l, 0);
    let mut want = BytesMut::new();
    ping(1).encode_frame_into(&mut want);
    big.encode_frame_into(&mut want);
    assert_eq!(bytes, want.to_vec());
}

#[test]
fn a_bulk_message_that_fits_one_chunk_leaves_whole() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    let m = reply(4, CHUNK - 32);
    l.bulk(&m);
    assert_eq!(frames(&drain(&mut l, 0)), vec![m]);
}

#[test]
fn a_close_after_bulk_leaves_after_it() {
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    let close = Message::Close(crate::message::Close { reason: "r".into() });
    l.bulk(&reply(1, 2 * CHUNK));
    l.last(&close);
    l.control(&ping(1));
    assert_eq!(
        names(&frames(&drain(&mut l, 0))),
        ["ping1", "chunk+", "chunk+", "chunk.", "close"]
    );
    // With no bulk queued it is an ordinary control message.
    let mut l = Lanes::new(Framing::Stream);
    l.control(&ping(1));
    l.last(&close);
    assert_eq!(names(&frames(&drain(&mut l, 0))), ["ping1", "close"]);
}

#[test]
fn message_framing_gives_one_message_per_chunk() {
    let mut l = Lanes::new(Framing::Messages);
    l.set_chunked(true);
    let big = reply(1, CHUNK + 10);
    l.bulk(&big);
    l.control(&ping(1));
    let mut msgs = Vec::new();
    while let Some(b) = l.poll(0) {
        msgs.push(Message::decode_bytes(&b).expect("one message"));
    }
    assert_eq!(names(&msgs), ["ping1", "chunk+", "chunk."]);
    assert_eq!(assemble(msgs), vec![ping(1), big]);
}

#[test]
fn message_framing_gives_each_hot_message_its_own_body_from_a_reused_buffer() {
    let mut l = Lanes::new(Framing::Messages);
    let body = Bytes::from_static(b"thirty-two bytes of request body");
    let request = Hot::Request {
        id: 7,
        timeout_ms: 5000,
        class: "nkcluster.echo",
        body: &body,
    };
    let answer = Hot::Reply { id: 7, body: &body };
    l.control_hot(&request);
    l.control_hot(&answer);
    let first = l.poll(0).expect("the request");
    let second = l.poll(0).expect("the reply");
    assert_eq!(l.poll(0), None);
    assert_eq!(first, request.encode_body());
    assert_eq!(second, answer.encode_body());
    assert_eq!(
        Message::decode_bytes(&first).expect("one message"),
        request.to_message()
    );
    assert_eq!(
        Message::decode_bytes(&second).expect("one message"),
        answer.to_message()
    );
    drop((first, second));
    // Written out and dropped by the transport: the next message of that size takes
    // the same storage back (no allocation of its own).
    let mut storage = Vec::new();
    for _ in 0..3 {
        l.control_hot(&request);
        let again = l.poll(0).expect("the request again");
        assert_eq!(again, request.encode_body());
        storage.push(again.as_ptr());
    }
    assert_eq!(storage[1], storage[2], "the buffer is taken back in place");
}

#[test]
fn chunk_frames_are_the_encoded_chunk_messages() {
    // The hand-written chunk headers are postcard's encoding of Message::Chunk: the
    // bytes are exactly the decoded frames encoded again.
    for len in [CHUNK + 1, 2 * CHUNK + 200, 5 * CHUNK] {
        let mut l = Lanes::new(Framing::Stream);
        l.set_chunked(true);
        l.bulk(&reply(1, len));
        let bytes = drain(&mut l, 0);
        let mut again = BytesMut::new();
        for m in frames(&bytes) {
            assert!(matches!(m, Message::Chunk(_)));
            m.encode_frame_into(&mut again);
        }
        assert_eq!(bytes, again.to_vec(), "{len}");
    }
}

#[test]
fn file_parts_of_any_size_and_either_digest_are_bulk_requests_other_requests_are_not() {
    use crate::cluster::{CLASS_JOB, FilePart, FileQuery, JobCall, encode_body};
    let file_part = |len: usize| FilePart {
        path: "f".into(),
        offset: 0,
        total: len as u64,
        data: Bytes::from(vec![0u8; len]),
        sha256: None,
    };
    let sha256_part: fn(FilePart) -> JobCall = JobCall::SendFile;
    let blake3_part: fn(FilePart) -> JobCall = JobCall::SendFileBlake3;
    for variant in [sha256_part, blake3_part] {
        let part = |len| encode_body(&variant(file_part(len))).expect("encodes");
        assert!(is_bulk_request(CLASS_JOB, &part(BULK_MIN)));
        // A short (last) part too: the parts of a file keep their order.
        assert!(is_bulk_request(CLASS_JOB, &part(17)));
        assert!(!is_bulk_request("nkcluster.echo", &part(BULK_MIN)));
    }
    let put = encode_body(&JobCall::PutData(
        "k".into(),
        Bytes::from(vec![0u8; BULK_MIN]),
    ))
    .expect("encodes");
    assert!(!is_bulk_request(CLASS_JOB, &put));
    // The variant between the two (asking where a transfer is at) is small: control.
    let query = encode_body(&JobCall::FileStatus(FileQuery {
        path: "f".into(),
        total: 1,
        sha256: [0; 32],
    }))
    .expect("encodes");
    assert!(!is_bulk_request(CLASS_JOB, &query));
}

#[test]
fn assembly_caps_the_whole_body_and_passes_a_lone_last_chunk_through() {
    let mut a = Assembly::default();
    let c = |more, n: usize| Chunk {
        more,
        data: Bytes::from(vec![1u8; n]),
    };
    let lone = c(false, 10);
    let data = lone.data.clone();
    let got = a.push(lone, 100).expect("fits").expect("whole");
    assert_eq!(got.as_ptr(), data.as_ptr());
    assert_eq!(a.push(c(true, 60), 100), Ok(None));
    assert_eq!(a.buffered(), 60);
    assert_eq!(
        a.push(c(false, 41), 100),
        Err(FrameError::TooLarge {
            announced: 101,
            max: 100
        })
    );
    assert_eq!(a.buffered(), 0);
}

#[test]
fn on_a_link_a_small_request_overtakes_a_big_reply_and_both_arrive_whole() {
    use crate::conn::Event;
    use crate::conn::tests::{linked, pump};
    use crate::time::Instant;
    use std::time::Duration;
    let (mut d, mut l) = linked();
    let t = Instant::from_millis(1);
    d.request(t, "get", Bytes::from_static(b"big"), Duration::from_secs(5))
        .expect("sent");
    while let Some(x) = d.poll_transmit() {
        l.handle_input(t, &x);
    }
    let Some(Event::Request { id, .. }) = l.poll_event() else {
        panic!("the request")
    };
    let big = Bytes::from(vec![8u8; 3 * CHUNK]);
    l.reply(id, Ok(big.clone()));
    l.request(t, "echo", Bytes::from_static(b"hi"), Duration::from_secs(5))
        .expect("sent");
    let mut wire = Vec::new();
    while let Some(x) = l.poll_transmit() {
        wire.extend_from_slice(&x);
    }
    // The request first, then the reply's chunks, half the busy window each, until the
    // window is full (the request says control traffic is about).
    assert_eq!(names(&frames(&wire)), ["request1", "chunk+", "chunk+"]);
    assert_eq!(l.bulk_credit().unreported(), WINDOW_BUSY as u64);
    d.handle_input(t, &wire);
    // The rest as d reports what it read.
    pump(&mut d, &mut l, t);
    let evs: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    assert!(matches!(&evs[0], Event::Request { class, .. } if class == "echo"));
    assert_eq!(
        evs[1],
        Event::Reply {
            id: crate::conn::RequestId(1),
            tag: crate::conn::NO_TAG,
            result: Ok(big)
        }
    );
    assert_eq!(evs.len(), 2);
    assert_eq!(l.bulk_credit().unreported(), 0);
}

#[test]
fn a_chunked_message_over_the_frame_maximum_ends_the_link() {
    use crate::conn::tests::linked;
    use crate::conn::{ConnError, Event};
    use crate::time::Instant;
    let (mut d, _l) = linked();
    let t = Instant::from_millis(1);
    let mut wire = BytesMut::new();
    let max = crate::frame::MAX_FRAME_DEFAULT as usize;
    for more in [true, false] {
        Message::Chunk(Chunk {
            more,
            data: Bytes::from(vec![0u8; max / 2 + 1]),
        })
        .encode_frame_into(&mut wire);
    }
    d.handle_input(t, &wire);
    let evs: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    assert!(
        matches!(
            evs.last(),
            Some(Event::Closed(Some(ConnError::Frame(
                FrameError::TooLarge { .. }
            ))))
        ),
        "{evs:?}"
    );
}

#[test]
fn a_files_short_last_part_stays_behind_the_big_part_before_it() {
    use crate::cluster::{CLASS_JOB, FilePart, JobCall, encode_body};
    use crate::time::Instant;
    use std::time::Duration;
    // An older peer (protocol 6): no window, the parts as they are cut.
    let (mut d, _l) = crate::conn::tests::linked_at(6);
    let t = Instant::from_millis(1);
    let part = |offset: u64, len: usize| {
        encode_body(&JobCall::SendFile(FilePart {
            path: "f".into(),
            offset,
            total: (CHUNK * 2 + 17) as u64,
            data: Bytes::from(vec![1u8; len]),
            sha256: None,
        }))
        .expect("encodes")
    };
    let s = Duration::from_secs(5);
    d.request(t, CLASS_JOB, part(0, 2 * CHUNK), s)
        .expect("sent");
    d.request(t, CLASS_JOB, part(2 * CHUNK as u64, 17), s)
        .expect("sent");
    d.request(t, "echo", Bytes::from_static(b"hi"), s)
        .expect("sent");
    let mut wire = Vec::new();
    while let Some(x) = d.poll_transmit() {
        wire.extend_from_slice(&x);
    }
    assert_eq!(
        names(&frames(&wire)),
        ["request3", "chunk+", "chunk+", "chunk.", "request2"]
    );
}

#[test]
fn assembly_takes_up_a_body_allocation_again_once_its_readers_dropped_it() {
    let mut a = Assembly::default();
    let c = |more, byte: u8, n: usize| Chunk {
        more,
        data: Bytes::from(vec![byte; n]),
    };
    let message = |a: &mut Assembly, byte: u8| {
        assert_eq!(a.push(c(true, byte, 300), 10_000), Ok(None));
        let body = a
            .push(c(false, byte, 200), 10_000)
            .expect("fits")
            .expect("whole");
        assert_eq!(body.len(), 500);
        assert!(body.iter().all(|&b| b == byte));
        body
    };
    let first = message(&mut a, 1);
    let at = first.as_ptr();
    assert_eq!(a.spares(), 1);
    // Still read (a slice of it held): the next body goes elsewhere.
    let held = first.slice(10..20);
    drop(first);
    let second = message(&mut a, 2);
    assert_ne!(second.as_ptr(), at);
    assert_eq!(a.spares(), 2);
    drop(held);
    drop(second);
    // Both free: the oldest is taken up first, the other stays kept.
    let third = message(&mut a, 3);
    assert_eq!(third.as_ptr(), at);
    assert_eq!(a.spares(), 2);
    // A lone last chunk passes through and keeps nothing.
    let lone = c(false, 4, 10);
    let p = lone.data.as_ptr();
    assert_eq!(
        a.push(lone, 10_000).expect("fits").map(|b| b.as_ptr()),
        Some(p)
    );
    assert_eq!(a.spares(), 2);
    // At most SPARES kept, the oldest dropped first.
    let bodies: Vec<Bytes> = (0..SPARES as u8 + 1)
        .map(|i| message(&mut a, 5 + i))
        .collect();
    assert_eq!(a.spares(), SPARES);
    drop(bodies);
    drop(third);
    // Given back when the link is idle.
    a.release_idle_storage();
    assert_eq!((a.spares(), a.buffered()), (0, 0));
    let again = message(&mut a, 9);
    assert_eq!(a.spares(), 1);
    drop(again);
}

#[test]
fn a_link_task_ends_its_turn_after_each_bulk_frame_and_each_big_read() {
    assert!(turn_ends_after(Moved::BulkFrame));
    assert!(turn_ends_after(Moved::Read(TURN_READ)));
    assert!(turn_ends_after(Moved::Read(CHUNK + 64)));
    assert!(!turn_ends_after(Moved::Read(TURN_READ - 1)));
    // A small request's frame, or a batch of 64 pipelined ones, goes on at once.
    assert!(!turn_ends_after(Moved::Read(57)));
    assert!(!turn_ends_after(Moved::Read(64 * 57)));
    assert!(!turn_ends_after(Moved::Other));
    assert_eq!(TURN_READ, 32 * 1024);
}

mod credited;

#[test]
fn beside_our_small_requests_bulk_takes_one_small_turn_per_request() {
    use crate::time::Instant;
    use std::time::Duration;
    use turns::{HOLD, SMALL_CHUNK, SmallTraffic};
    let t = Instant::from_millis(3);
    let small = |in_flight, sent, answered| SmallTraffic {
        in_flight,
        sent,
        answered,
    };
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    l.set_credited(true);
    l.bulk(&reply(1, 200_000));
    // A small request of ours queued: it leaves first, one small chunk right behind it.
    l.note_small(t, small(true, true, false));
    l.control(&ping(1));
    let out = frames(&drain(&mut l, 0));
    assert_eq!(names(&out), ["ping1", "chunk+"]);
    assert_eq!(credited::chunk_sizes(&out), [SMALL_CHUNK]);
    assert!(!l.bulk_ready());
    assert_eq!(l.turn_deadline(t), None);
    // Answered: the gap until the caller's next request stays empty for HOLD.
    let answered = t + Duration::from_micros(20);
    l.note_small(answered, small(false, false, true));
    assert!(drain(&mut l, 0).is_empty());
    assert_eq!(l.turn_deadline(answered), Some(answered + HOLD));
    // Then bulk goes by its (busy) window alone.
    l.note_small(answered + HOLD, small(false, false, false));
    assert!(l.bulk_ready());
    assert_eq!(l.turn_deadline(answered + HOLD), None);
    let out = frames(&drain(&mut l, 0));
    assert_eq!(
        credited::chunk_sizes(&out),
        [WINDOW_BUSY / 2, WINDOW_BUSY / 2 - SMALL_CHUNK]
    );
}

#[test]
fn turns_do_not_apply_over_a_long_path_or_to_a_closed_links_last_bulk() {
    use crate::time::Instant;
    use turns::SmallTraffic;
    let t = Instant::from_millis(3);
    let in_flight = SmallTraffic {
        in_flight: true,
        sent: true,
        answered: false,
    };
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    l.set_credited(true);
    l.set_rtt(std::time::Duration::from_millis(2));
    l.bulk(&reply(1, 200_000));
    l.note_small(t, in_flight);
    l.keepalive(&ping(1));
    let sizes = credited::chunk_sizes(&frames(&drain(&mut l, 0)));
    assert_eq!((sizes.len(), &sizes[..3]), (4, &[CHUNK; 3][..]));
    assert_eq!(l.turn_deadline(t), None);
    // Unwindowed (closed), a short path: whole chunks, in flight or not.
    let mut l = Lanes::new(Framing::Stream);
    l.set_chunked(true);
    l.bulk(&reply(1, 100_000));
    l.note_small(t, in_flight);
    let sizes = credited::chunk_sizes(&frames(&drain(&mut l, 0)));
    assert_eq!((sizes.len(), sizes[0]), (2, CHUNK));
}

#[test]
fn the_lanes_keep_their_size_with_the_turns() {
    assert_eq!(size_of::<Lanes>(), 160);
}
