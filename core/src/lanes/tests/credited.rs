//! The bulk window on linked connections (protocol 7, see [`crate::lanes::credit`]).

use std::time::Duration;

use super::*;
use crate::cluster::{CLASS_JOB, FilePart, JobCall, encode_body};
use crate::conn::tests::{linked, linked_at, pump};
use crate::conn::{ConnError, Connection, Event};
use crate::time::Instant;

const T: Instant = Instant::from_millis(1);
const S: Duration = Duration::from_secs(5);

fn part(len: usize) -> Bytes {
    encode_body(&JobCall::SendFile(FilePart {
        path: "f".into(),
        offset: 0,
        total: len as u64,
        data: Bytes::from(vec![1u8; len]),
        sha256: None,
    }))
    .expect("encodes")
}

/// The body bytes of our request `id` carrying `body` (what its chunks carry).
fn request_len(id: u64, body: Bytes) -> usize {
    Message::Request(crate::message::Request {
        id,
        timeout_ms: 5000,
        class: CLASS_JOB.into(),
        body,
    })
    .encode_body()
    .len()
}

/// Everything `c` writes now, decoded.
fn written(c: &mut Connection) -> Vec<Message> {
    let mut wire = Vec::new();
    while let Some(x) = c.poll_transmit() {
        wire.extend_from_slice(&x);
    }
    frames(&wire)
}

pub(super) fn chunk_sizes(msgs: &[Message]) -> Vec<usize> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Chunk(c) => Some(c.data.len()),
            _ => None,
        })
        .collect()
}

fn reports(msgs: &[Message]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::BulkRead(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Feeds `msgs` to `c` as one read.
fn feed(c: &mut Connection, msgs: &[Message]) {
    let mut wire = BytesMut::new();
    for m in msgs {
        m.encode_frame_into(&mut wire);
    }
    c.handle_input(T, &wire);
}

#[test]
fn a_transfer_alone_goes_a_quiet_window_ahead_of_the_readers_reports() {
    let (mut d, mut l) = linked();
    d.request(T, CLASS_JOB, part(1 << 20), S).expect("sent");
    let first = written(&mut d);
    assert_eq!(chunk_sizes(&first), vec![CHUNK; WINDOW_QUIET / CHUNK]);
    assert_eq!(d.bulk_credit().unreported(), WINDOW_QUIET as u64);
    assert!(!d.has_bulk(), "the window is full");
    assert!(d.poll_transmit().is_none());
    // The reader reports each chunk it handled (each is over REPORT_EVERY).
    feed(&mut l, &first);
    let back = written(&mut l);
    assert_eq!(reports(&back), vec![CHUNK as u64; WINDOW_QUIET / CHUNK]);
    // Each report opens the window again by what it reports.
    feed(&mut d, &back);
    assert_eq!(d.bulk_credit().unreported(), 0);
    assert!(d.has_bulk());
    pump(&mut d, &mut l, T);
    let evs: Vec<Event> = std::iter::from_fn(|| l.poll_event()).collect();
    assert!(
        matches!(&evs[..], [Event::Request { class, body, .. }] if class == CLASS_JOB && body.len() > 1 << 20),
        "{evs:?}"
    );
    assert_eq!(d.bulk_credit().unreported(), 0);
}

#[test]
fn with_control_traffic_about_the_window_narrows_for_busy_for_bytes() {
    let (mut d, mut l) = linked();
    d.request(T, "echo", Bytes::from_static(b"hi"), S)
        .expect("sent");
    d.request(T, CLASS_JOB, part(2 << 20), S).expect("sent");
    let first = written(&mut d);
    assert_eq!(names(&first), ["request1", "chunk+", "chunk+"]);
    assert_eq!(chunk_sizes(&first), [WINDOW_BUSY / 2, WINDOW_BUSY / 2]);
    // Report by report, half a busy window at a time, until BUSY_FOR bytes went; then
    // whole chunks, up to the quiet window.
    let mut sizes = chunk_sizes(&first);
    let mut msgs = first;
    while d.bulk_credit().window() == WINDOW_BUSY {
        feed(&mut l, &msgs);
        let back = written(&mut l);
        assert!(!reports(&back).is_empty());
        feed(&mut d, &back);
        msgs = written(&mut d);
        sizes.extend(chunk_sizes(&msgs));
    }
    let busy = BUSY_FOR / (WINDOW_BUSY / 2);
    assert_eq!(sizes[..busy], vec![WINDOW_BUSY / 2; busy]);
    assert!(!sizes[busy..].is_empty());
    assert!(sizes[busy..].iter().all(|&n| n == CHUNK), "{sizes:?}");
    assert!(d.bulk_credit().unreported() <= WINDOW_QUIET as u64);
}

#[test]
fn a_small_bulk_message_is_chunked_and_reported_at_its_end() {
    let (mut d, mut l) = linked();
    d.request(T, CLASS_JOB, part(100), S).expect("sent");
    let first = written(&mut d);
    assert_eq!(names(&first), ["chunk."]);
    feed(&mut l, &first);
    let n = chunk_sizes(&first)[0] as u64;
    assert!(n < REPORT_EVERY as u64);
    assert_eq!(reports(&written(&mut l)), [n]);
}

#[test]
fn keepalives_do_not_narrow_the_window() {
    let (mut d, mut l) = linked();
    // A ping is due at the interval, and answered.
    let at = Instant::from_millis(1000);
    d.handle_timeout(at);
    l.handle_timeout(at);
    pump(&mut d, &mut l, at);
    assert!(
        d.stats().rtt.is_some() || l.stats().rtt.is_some(),
        "a ping was answered"
    );
    l.request(T, CLASS_JOB, part(1 << 20), S).expect("sent");
    assert_eq!(l.bulk_credit().window(), WINDOW_QUIET);
    assert_eq!(
        chunk_sizes(&written(&mut l)),
        vec![CHUNK; WINDOW_QUIET / CHUNK]
    );
}

#[test]
fn an_older_peer_gets_no_window_and_sends_no_reports() {
    let (mut d, mut l) = linked_at(6);
    d.request(T, CLASS_JOB, part(1 << 20), S).expect("sent");
    let all = written(&mut d);
    assert_eq!(
        chunk_sizes(&all).iter().sum::<usize>(),
        request_len(1, part(1 << 20))
    );
    assert_eq!(chunk_sizes(&all).len(), 17);
    feed(&mut l, &all);
    assert!(reports(&written(&mut l)).is_empty());
}

#[test]
fn a_report_of_more_than_was_sent_ends_the_link() {
    let (mut d, _l) = linked();
    feed(&mut d, &[Message::BulkRead(1)]);
    let evs: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    assert_eq!(
        evs,
        [Event::Closed(Some(ConnError::Protocol(
            "the peer reported 1 bulk bytes read, only 0 were sent and not reported".into()
        )))]
    );
}

#[test]
fn a_close_sends_what_is_left_without_waiting_for_reports() {
    let (mut d, _l) = linked();
    d.request(T, CLASS_JOB, part(1 << 20), S).expect("sent");
    assert_eq!(chunk_sizes(&written(&mut d)).len(), WINDOW_QUIET / CHUNK);
    d.close("bye");
    let rest = written(&mut d);
    assert_eq!(
        chunk_sizes(&rest).iter().sum::<usize>() + WINDOW_QUIET,
        request_len(1, part(1 << 20))
    );
    assert!(matches!(rest.last(), Some(Message::Close(_))));
}
