//! Table sizes against their limits, and the ring a control member routes by.

use super::*;

fn size(table: &'static str, len: usize, max: usize) -> TableSize {
    TableSize { table, len, max }
}

#[test]
fn every_bounded_table_is_measured_against_its_own_limit() {
    let mut c1 = two_members();
    let admin = peer("admin", Role::Admin, &[]);
    c1.handle_link_up(T0, link(20, admin), true);
    c1.handle_subscribe(&SubscribeRequest {
        subscriber: "admin".into(),
        fanout: false,
    })
    .expect("subscribed");
    for (ms, s) in [(1, Status::Ready), (2, Status::Standby)] {
        c1.handle_job_event(at(ms), status_event("w1", s));
    }
    assert_eq!(
        c1.handle_state_call(&JobCall::PutData("k".into(), Bytes::from_static(b"12345"))),
        Some(Ok(Bytes::new()))
    );
    drain(&mut c1);
    assert_eq!(
        c1.table_sizes(),
        vec![
            size("membership records", 1, 1024),
            size("workers remembered", 1, 100),
            size("event subscribers", 1, 2),
            size("recent events", 2, 3),
            size("open file transfers", 0, 64),
            size("data registry bytes", 6, 16),
            size("buffered events", 0, 3),
            size("loaded modules", 0, 64),
        ]
    );
    // A worker has no membership.
    let mut w = machine("w1", Role::Worker);
    assert_eq!(w.table_sizes()[0], size("workers remembered", 0, 100));
    assert_eq!(w.table_sizes().len(), 7);
    // Events kept while disconnected: never more than the limit.
    for n in 0..5 {
        w.handle_own_event(
            T0,
            class_event("w1", "video", Some(1), WireEvent::TaskStarted),
        );
        assert_eq!(
            w.table_sizes()[5],
            size("buffered events", (n + 1).min(3), 3)
        );
    }
}

#[test]
fn the_ring_is_the_placement_over_the_live_members() {
    let c1 = two_members();
    let members = vec!["c1".to_owned(), "c2".to_owned()];
    assert_eq!(c1.members(), members);
    assert_eq!(c1.ring(), crate::ring::place(64, &members).as_ref());
    assert_eq!(machine("w1", Role::Worker).ring(), None);
    // Alone since its start, a member owns everything without a ring.
    let c9 = machine("c9", Role::Control);
    assert_eq!((c9.members(), c9.ring()), (vec!["c9".to_owned()], None));
    assert_eq!(c9.route("w1", 0), RouteStep::Unknown);
}
