//! The snapshot the shell routes with: it answers what the machine answers, and its
//! stamp changes exactly when its contents do.

use super::*;

/// Every routing answer of `m`, for `nodes` at hop counts 0 and 1, from the machine and
/// from a fresh snapshot (they must agree).
fn routes_agree(m: &NodeMachine<u64>, nodes: &[&str]) {
    let snap = m.snapshot();
    for n in nodes {
        for hops in [0, 1] {
            assert_eq!(snap.route(n, hops), m.route(n, hops), "{n} at {hops} hops");
        }
        assert_eq!(snap.link_of(n), m.link_of(n), "{n}");
    }
    assert_eq!(snap.members(), m.members().as_slice());
    assert_eq!(snap.status(), m.status());
}

#[test]
fn a_snapshot_routes_as_the_machine_and_its_stamp_follows_every_change() {
    let mut c1 = two_members();
    let theirs = worker_of_c2(&c1);
    // A worker the ring gives to c1 itself (routing it here finds nobody).
    let ours = worker_of(&c1, "c1");
    assert_eq!(c1.route(&ours, 0), RouteStep::Unknown);
    let nodes = ["c1", "c2", ours.as_str(), theirs.as_str(), "nobody"];
    routes_agree(&c1, &nodes);
    assert_eq!(c1.snapshot().members(), ["c1", "c2"]);
    assert_eq!(
        c1.snapshot().fan_out("c2"),
        c1.fan_out("c2"),
        "nobody else to ask"
    );

    // A worker's link: the stamp moves, the snapshot routes to it directly.
    let before = c1.snapshot_stamp();
    let w = peer(&ours, Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    drain(&mut c1);
    assert_ne!(c1.snapshot_stamp(), before);
    assert_eq!(c1.snapshot().route(&ours, 0), RouteStep::Direct);
    assert_eq!(c1.snapshot().link_of(&ours), Some(&10));
    routes_agree(&c1, &nodes);

    // A round trip changes nothing a snapshot holds that routing reads.
    let linked = c1.snapshot_stamp();
    let published = c1.snapshot();
    c1.handle_rtt(&ours, 10, Duration::from_millis(3));
    drain(&mut c1);
    assert_eq!(c1.snapshot_stamp(), linked);
    // Recorded in place: the snapshot published before shares the link (the table's
    // path to it was not copied), and reads the new round trip.
    let rtt_of = |s: &Snapshot<u64>| s.links().link(&ours, 10).and_then(|l| l.rtt.us());
    assert_eq!(rtt_of(&published), Some(3_000));
    assert_eq!(rtt_of(&c1.snapshot()), Some(3_000));

    // Its link lost while it listens: redialed, `not_connected` meanwhile.
    c1.handle_link_down(
        at(2),
        LinkGone {
            conn_id: 10,
            summary: w,
            remote_ip: Some("10.0.0.5".parse().expect("ip")),
            error: Some(ConnError::IdleTimeout(Duration::from_secs(5))),
        },
    );
    drain(&mut c1);
    assert_ne!(c1.snapshot_stamp(), linked);
    assert_eq!(c1.snapshot().route(&ours, 0), RouteStep::NotConnected);
    routes_agree(&c1, &nodes);

    // The redial given up: the stamp moves again.
    let lost = c1.snapshot_stamp();
    c1.handle_redial_failed(at(601_000), &ours);
    drain(&mut c1);
    assert_ne!(c1.snapshot_stamp(), lost);
    assert_eq!(c1.snapshot().route(&ours, 0), RouteStep::Unknown);
    routes_agree(&c1, &nodes);

    // A member leaving changes the members and the ring.
    let two = c1.snapshot_stamp();
    c1.handle_gossip(
        at(3),
        "c2",
        2,
        &[MemberInfo {
            status: MemberStatus::Left,
            ..member("c2", 7)
        }],
    );
    drain(&mut c1);
    assert_ne!(c1.snapshot_stamp(), two);
    assert_eq!(c1.snapshot().members(), ["c1"]);
    routes_agree(&c1, &nodes);

    // A status change.
    let ready = c1.snapshot_stamp();
    let set = c1.handle_state_call(&JobCall::SetStatus(Status::Standby));
    assert!(matches!(set, Some(Ok(_))), "{set:?}");
    drain(&mut c1);
    assert_ne!(c1.snapshot_stamp(), ready);
    assert_eq!(c1.snapshot().status(), Status::Standby);
}

#[test]
fn a_worker_snapshot_routes_through_its_control_link() {
    let mut w = machine("w1", Role::Worker);
    routes_agree(&w, &["w1", "w9"]);
    let before = w.snapshot_stamp();
    w.handle_link_up(T0, link(1, peer("c1", Role::Control, &[])), true);
    drain(&mut w);
    assert_ne!(w.snapshot_stamp(), before);
    assert_eq!(
        w.snapshot().route("w9", 0),
        RouteStep::Via {
            via: "c1".into(),
            hops: 0,
            fan_out: false
        }
    );
    assert_eq!(w.snapshot().count_role(Role::Control), 1);
    routes_agree(&w, &["w1", "w9", "c1"]);
}
