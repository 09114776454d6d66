//! A worker that keeps working while disconnected: what it keeps, what it drops, what a
//! new control link is told and in which order, and what the control side makes of it.

use super::*;

fn user(task: u64, n: u8) -> EventMsg {
    class_event(
        "w1",
        "video",
        Some(task),
        WireEvent::User(Bytes::from(vec![n])),
    )
}

fn notify(link: u64, ev: EventMsg) -> Output<u64> {
    Output::Notify {
        link,
        request: ClusterRequest::JobEvent(ev),
    }
}

fn gone(conn_id: u64, p: PeerSummary) -> LinkGone {
    LinkGone {
        conn_id,
        summary: p,
        remote_ip: None,
        error: Some(ConnError::PeerClosed("bye".into())),
    }
}

/// Control node `from` tells worker `w` it serves it at its owner.
fn placed(w: &mut NodeMachine<u64>, from: &str) {
    assert_eq!(
        w.handle_request(T0, from, Role::Control, ClusterRequest::Placed),
        Dispatch::Answer(Ok(Bytes::new()))
    );
}

/// w1 with tasks 1 (`video`) and 2 (`audio`) running, linked to c1 on conn 1 (told,
/// and placed).
fn working() -> NodeMachine<u64> {
    let mut w = machine("w1", Role::Worker);
    let c1 = peer("c1", Role::Control, &[]);
    w.handle_link_up(T0, link(1, c1), true);
    placed(&mut w, "c1");
    assert_eq!(w.start_task(None, "video"), Ok(1));
    assert_eq!(w.start_task(None, "audio"), Ok(2));
    for o in drain(&mut w) {
        if let Output::OwnEvent(ev) = o {
            w.handle_own_event(T0, ev);
        }
    }
    drain(&mut w);
    w
}

#[test]
fn without_a_control_link_class_events_are_kept_and_present_news_is_dropped() {
    let mut w = working();
    w.handle_link_down(at(10), gone(1, peer("c1", Role::Control, &[])));
    drain(&mut w);
    w.handle_own_event(at(11), user(1, 1));
    w.handle_own_event(at(12), status_event("w1", Status::Standby));
    w.handle_own_event(
        at(13),
        class_event("w1", "audio", Some(2), WireEvent::TaskRunning),
    );
    w.handle_own_event(
        at(14),
        class_event(
            "w1",
            "audio",
            Some(2),
            WireEvent::TaskStopped("normal".into()),
        ),
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.buffered_events(), (2, 0));
}

#[test]
fn a_reconnection_hears_the_kept_events_first_then_status_running_tasks_and_info() {
    let mut w = working();
    w.handle_link_down(at(10), gone(1, peer("c1", Role::Control, &[])));
    assert_eq!(
        drain(&mut w),
        vec![Output::Event(NodeEvent::LinkDown {
            peer: "c1".into(),
            remote: "tcp:10.0.0.2:5000".into(),
            code: Some("peer_closed".into()),
        })]
    );
    // The buffer keeps 3: of 5 events the 2 oldest are dropped.
    for n in 0..5 {
        w.handle_own_event(at(20), user(1, n));
    }
    assert_eq!(w.buffered_events(), (3, 2));
    // Any owner: c2 this time. It is told where w1 stands, on the ordered path.
    let c2 = peer("c2", Role::Control, &[]);
    w.handle_link_up(at(30), link(7, c2.clone()), true);
    let told = drain(&mut w);
    assert_eq!(
        told,
        vec![
            Output::OwnEvent(status_event("w1", Status::Ready)),
            Output::OwnEvent(class_event("w1", "video", Some(1), WireEvent::TaskRunning)),
            Output::OwnEvent(class_event("w1", "audio", Some(2), WireEvent::TaskRunning)),
            Output::ReportInfo,
            link_up_event(&c2),
        ]
    );
    // An event queued before the link came up is newer than the kept ones: it waits
    // behind them (in the same bounded buffer: the oldest, 2, is dropped for it) until
    // c2 says it serves us at our owner; then they go, after one `events_lost` for their
    // class.
    w.handle_own_event(at(31), user(1, 9));
    assert_eq!(drain(&mut w), vec![]);
    placed(&mut w, "c2");
    assert_eq!(
        drain(&mut w),
        vec![
            notify(
                7,
                class_event("w1", "video", None, WireEvent::EventsLost(3))
            ),
            notify(7, user(1, 3)),
            notify(7, user(1, 4)),
            notify(7, user(1, 9)),
        ]
    );
    assert_eq!(w.buffered_events(), (0, 0));
    // Then the announcement, once each.
    for o in told {
        if let Output::OwnEvent(ev) = o {
            w.handle_own_event(at(32), ev);
        }
    }
    assert_eq!(
        drain(&mut w),
        vec![
            notify(7, status_event("w1", Status::Ready)),
            notify(
                7,
                class_event("w1", "video", Some(1), WireEvent::TaskRunning)
            ),
            notify(
                7,
                class_event("w1", "audio", Some(2), WireEvent::TaskRunning)
            ),
        ]
    );
}

#[test]
fn losses_add_up_over_outages_until_a_link_takes_them() {
    let mut w = working();
    let c1 = peer("c1", Role::Control, &[]);
    w.handle_link_down(at(10), gone(1, c1.clone()));
    for n in 0..4 {
        w.handle_own_event(at(11), user(1, n));
    }
    // A link that comes and goes before any event is handled takes nothing.
    w.handle_link_up(at(20), link(2, c1.clone()), true);
    w.handle_link_down(at(21), gone(2, c1.clone()));
    drain(&mut w);
    for n in 4..6 {
        w.handle_own_event(at(22), user(1, n));
    }
    assert_eq!(w.buffered_events(), (3, 3));
    w.handle_link_up(at(30), link(3, c1), true);
    drain(&mut w);
    // Where we stand is told at once; the kept events wait for the word of our owner.
    w.handle_own_event(at(31), status_event("w1", Status::Ready));
    assert_eq!(
        drain(&mut w),
        vec![notify(3, status_event("w1", Status::Ready))]
    );
    placed(&mut w, "c1");
    assert_eq!(
        drain(&mut w),
        vec![
            notify(
                3,
                class_event("w1", "video", None, WireEvent::EventsLost(3))
            ),
            notify(3, user(1, 3)),
            notify(3, user(1, 4)),
            notify(3, user(1, 5)),
        ]
    );
}

#[test]
fn a_new_owner_that_takes_the_events_is_told_and_an_extra_link_is_not() {
    let mut w = working();
    // c2 links too (a hand-off to it, dialed while c1 still holds us): our events go
    // on c1 (the first by id), nothing is told.
    let c2 = peer("c2", Role::Control, &[]);
    w.handle_link_up(at(5), link(2, c2.clone()), true);
    assert_eq!(drain(&mut w), vec![link_up_event(&c2)]);
    // c1 releases us: our events now go to c2, which hears where we stand.
    w.handle_link_down(at(6), gone(1, peer("c1", Role::Control, &[])));
    let out = drain(&mut w);
    assert_eq!(
        out[..4],
        [
            Output::OwnEvent(status_event("w1", Status::Ready)),
            Output::OwnEvent(class_event("w1", "video", Some(1), WireEvent::TaskRunning)),
            Output::OwnEvent(class_event("w1", "audio", Some(2), WireEvent::TaskRunning)),
            Output::ReportInfo,
        ]
    );
    // A new owner with a smaller id linked later takes our events at once: told too.
    let c0 = peer("c0", Role::Control, &[]);
    w.handle_link_up(at(7), link(3, c0.clone()), true);
    assert_eq!(
        drain(&mut w),
        vec![
            Output::OwnEvent(status_event("w1", Status::Ready)),
            Output::OwnEvent(class_event("w1", "video", Some(1), WireEvent::TaskRunning)),
            Output::OwnEvent(class_event("w1", "audio", Some(2), WireEvent::TaskRunning)),
            Output::ReportInfo,
            link_up_event(&c0),
        ]
    );
}

#[test]
fn the_control_side_hands_re_announced_tasks_and_losses_to_their_classes() {
    let mut c1 = machine("c1", Role::Control);
    let w1 = peer("w1", Role::Worker, &[]);
    c1.handle_link_up(T0, link(5, w1.clone()), true);
    drain(&mut c1);
    let running = class_event("w1", "video", Some(1), WireEvent::TaskRunning);
    let lost = class_event("w1", "video", None, WireEvent::EventsLost(4));
    for ev in [running.clone(), lost.clone()] {
        assert_eq!(
            c1.handle_request(at(1), "w1", Role::Worker, ClusterRequest::JobEvent(ev)),
            Dispatch::Answer(Ok(Bytes::new()))
        );
    }
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::ClassEvent {
                class: "video".into(),
                event: running.clone(),
            },
            Output::JobEvent(running),
            Output::ClassEvent {
                class: "video".into(),
                event: lost.clone(),
            },
            Output::JobEvent(lost),
        ]
    );
    // The class has seen w1 now: it hears `not_connected` when w1's link is lost.
    c1.handle_link_down(at(2), gone(5, w1));
    let not_connected = status_event("w1", Status::NotConnected);
    assert!(drain(&mut c1).contains(&Output::ClassEvent {
        class: "video".into(),
        event: not_connected,
    }));
}

#[test]
fn kept_events_wait_for_the_owner_and_go_where_the_worker_is_when_no_word_comes() {
    let mut w = working();
    w.handle_link_down(at(10), gone(1, peer("c1", Role::Control, &[])));
    w.handle_own_event(at(11), user(1, 1));
    // c2 is reached first: not our owner, it says nothing (it hands us over); a word
    // from another node than the one our events go to changes nothing.
    let c2 = peer("c2", Role::Control, &[]);
    w.handle_link_up(at(20), link(2, c2.clone()), true);
    drain(&mut w);
    placed(&mut w, "c9");
    assert_eq!(drain(&mut w), vec![]);
    // Redirected to c3, our owner, which says so: the kept event goes there.
    w.handle_link_down(at(21), gone(2, c2));
    let c3 = peer("c3", Role::Control, &[]);
    w.handle_link_up(at(22), link(3, c3), true);
    drain(&mut w);
    assert_eq!(w.buffered_events(), (1, 0));
    placed(&mut w, "c3");
    assert_eq!(drain(&mut w), vec![notify(3, user(1, 1))]);
    // Later class events go straight there.
    w.handle_own_event(at(23), user(1, 2));
    assert_eq!(drain(&mut w), vec![notify(3, user(1, 2))]);

    // Another outage; this time no word comes: after PLACED_WAIT the kept events go
    // where we are.
    w.handle_link_down(at(30), gone(3, peer("c3", Role::Control, &[])));
    w.handle_own_event(at(31), user(1, 3));
    let c4 = peer("c4", Role::Control, &[]);
    w.handle_link_up(at(40), link(4, c4), true);
    drain(&mut w);
    let wait = crate::node::offline::PLACED_WAIT;
    let due = at(40) + wait;
    assert_eq!(w.poll_timeout(), Some(due));
    w.handle_timeout(at(40) + (wait - Duration::from_millis(1)));
    assert_eq!(drain(&mut w), vec![]);
    w.handle_timeout(due);
    assert_eq!(drain(&mut w), vec![notify(4, user(1, 3))]);
    assert_eq!(w.poll_timeout(), None);
}

#[test]
fn a_control_member_tells_a_worker_it_owns_that_it_is_placed_and_not_one_it_hands_over() {
    let mut c1 = two_members();
    let mine = worker_of(&c1, "c1");
    let theirs = worker_of(&c1, "c2");
    c1.handle_link_up(at(1), link(5, peer(&mine, Role::Worker, &[])), true);
    let out = drain(&mut c1);
    assert!(
        out.contains(&Output::Notify {
            link: 5,
            request: ClusterRequest::Placed
        }),
        "{out:?}"
    );
    c1.handle_link_up(at(1), link(6, peer(&theirs, Role::Worker, &[])), true);
    let out = drain(&mut c1);
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Notify {
                request: ClusterRequest::Placed,
                ..
            }
        )),
        "{out:?}"
    );
}
