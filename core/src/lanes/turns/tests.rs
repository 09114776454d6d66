use super::*;

const T: Instant = Instant::from_millis(5);

fn at(us: u64) -> Instant {
    T + Duration::from_micros(us)
}

/// In flight, sent, answered.
fn seen(in_flight: bool, sent: bool, answered: bool) -> SmallTraffic {
    SmallTraffic {
        in_flight,
        sent,
        answered,
    }
}

const NOTHING: SmallTraffic = SmallTraffic {
    in_flight: false,
    sent: false,
    answered: false,
};

#[test]
fn it_fits_in_five_bytes() {
    assert_eq!(size_of::<Turns>(), 5);
}

#[test]
fn with_no_small_traffic_bulk_goes_in_whole_chunks() {
    let mut t = Turns::default();
    t.note(T, NOTHING);
    assert_eq!((t.limit(), t.deadline(T)), (Some(CHUNK), None));
    t.took();
    t.took();
    assert_eq!(t.limit(), Some(CHUNK));
}

#[test]
fn one_small_chunk_goes_per_small_request_sent_and_none_while_it_is_answered() {
    let mut t = Turns::default();
    t.note(T, seen(true, true, false));
    assert_eq!(t.limit(), Some(SMALL_CHUNK));
    t.took();
    // In flight: nothing, and no deadline (its outcome wakes the link).
    assert_eq!((t.limit(), t.deadline(T)), (None, None));
    t.note(at(50), seen(true, false, false));
    assert_eq!(t.limit(), None);
    // Answered, and the next one sent before the lane was asked: one turn.
    t.note(at(60), seen(true, true, true));
    assert_eq!(t.limit(), Some(SMALL_CHUNK));
    t.took();
    assert_eq!(t.limit(), None);
    // A request in flight for long (a slow handler) holds bulk all along.
    t.note(at(10_000), seen(true, false, false));
    assert_eq!((t.limit(), t.deadline(at(10_000))), (None, None));
}

#[test]
fn in_the_gap_after_an_answer_bulk_waits_hold_then_goes_whole() {
    let mut t = Turns::default();
    t.note(T, seen(true, true, false));
    t.took();
    t.note(at(20), seen(false, false, true));
    assert_eq!((t.limit(), t.deadline(at(20))), (None, Some(at(120))));
    assert_eq!(t.deadline(at(70)), Some(at(120)));
    t.note(at(119), NOTHING);
    assert_eq!(t.limit(), None);
    t.note(at(120), NOTHING);
    assert_eq!((t.limit(), t.deadline(at(120))), (Some(CHUNK), None));
}

#[test]
fn a_request_within_hold_of_the_last_answer_takes_its_turn() {
    let mut t = Turns::default();
    t.note(T, seen(true, true, false));
    t.took();
    t.note(at(20), seen(false, false, true));
    t.note(at(90), seen(true, true, false));
    assert_eq!((t.limit(), t.deadline(at(90))), (Some(SMALL_CHUNK), None));
    t.took();
    t.note(at(100), seen(false, false, true));
    assert_eq!(t.deadline(at(100)), Some(at(200)));
    // A turn not taken yet (no bulk queued then) is kept; no deadline is needed.
    t.note(at(150), seen(false, true, true));
    assert_eq!((t.limit(), t.deadline(at(150))), (Some(SMALL_CHUNK), None));
    t.took();
    assert_eq!(t.deadline(at(160)), Some(at(250)));
}

#[test]
fn a_stale_hold_does_not_come_back_when_the_microseconds_wrap() {
    let mut t = Turns::default();
    t.note(T, seen(false, true, true));
    t.took();
    assert_eq!(t.limit(), None);
    // Not renewed for 2^32 µs (about 71.6 minutes, on a link with no pings), the
    // end's microseconds wrap: it holds again only inside that HOLD, at most HOLD.
    let wrap = T + Duration::from_micros(1 << 32);
    t.note(wrap + Duration::from_micros(1), NOTHING);
    assert_eq!(t.deadline(wrap), Some(wrap + HOLD));
    t.note(wrap + HOLD, NOTHING);
    assert_eq!(t.limit(), Some(CHUNK));
    t.note(wrap + Duration::from_secs(30), NOTHING);
    assert_eq!(t.limit(), Some(CHUNK));
}
