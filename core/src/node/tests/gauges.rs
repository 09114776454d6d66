//! What metrics read of a node: exact gauges for given links, members, workers, tasks.

use super::*;

#[test]
fn a_lone_control_member_owns_every_partition() {
    let c1 = machine("c1", Role::Control);
    assert_eq!(
        c1.gauges(),
        Gauges {
            members: vec![("alive", 1)],
            partitions: 64,
            partitions_owned: 64,
            proxies: 0,
            workers: vec![],
            links: vec![],
            tasks: vec![],
            events_dropped: 0,
        }
    );
}

#[test]
fn links_by_transport_and_role_members_proxies_workers_and_tasks() {
    let mut c1 = two_members();
    let w = worker_of(&c1, "c1");
    let mut worker = peer(&w, Role::Worker, &[]);
    worker.remote = "wss:10.0.0.7:4000".into();
    c1.handle_link_up(T0, link(30, worker), true);
    c1.handle_link_up(T0, link(31, peer("admin", Role::Admin, &[])), true);
    c1.handle_job_event(at(1), status_event(&w, Status::Standby));
    c1.handle_job_event(at(1), status_event("gone1", Status::Ready));
    c1.start_task(None, "video").expect("started");
    c1.start_task(None, "video").expect("started");
    c1.start_task(None, "bad name!").expect("started");
    drain(&mut c1);
    let g = c1.gauges();
    assert_eq!(g.members, vec![("alive", 2)]);
    assert_eq!((g.partitions, g.partitions_owned), (64, 32));
    assert_eq!(g.proxies, 1);
    assert_eq!(g.workers, vec![("ready", 1), ("standby", 1)]);
    assert_eq!(
        g.links,
        vec![
            ("tcp", "admin", 1),
            ("tcp", "control", 1),
            ("wss", "worker", 1)
        ]
    );
    assert_eq!(g.tasks, vec![("other".into(), 1), ("video".into(), 2)]);
    // c2 goes down: its record is `down`, c1 owns the whole ring again.
    c1.handle_link_down(
        at(2),
        LinkGone {
            conn_id: 2,
            summary: peer("c2", Role::Control, &["nkcluster://c2:1972"]),
            remote_ip: None,
            error: Some(ConnError::IdleTimeout(Duration::from_secs(3))),
        },
    );
    drain(&mut c1);
    let g = c1.gauges();
    assert_eq!(g.members, vec![("alive", 1), ("down", 1)]);
    assert_eq!(g.partitions_owned, 64);
    assert_eq!(g.links, vec![("tcp", "admin", 1), ("wss", "worker", 1)]);
}

#[test]
fn a_worker_has_no_members_partitions_or_proxies() {
    let mut w = machine("w1", Role::Worker);
    // Disconnected: its buffer keeps 3 events, the 2 oldest of 5 are dropped.
    for _ in 0..5 {
        w.handle_own_event(
            T0,
            class_event("w1", "video", Some(1), WireEvent::TaskStarted),
        );
    }
    let mut c = peer("c1", Role::Control, &[]);
    c.remote = "tls:10.0.0.1:1973".into();
    w.handle_link_up(T0, link(5, c), true);
    drain(&mut w);
    assert_eq!(
        w.gauges(),
        Gauges {
            links: vec![("tls", "control", 1)],
            events_dropped: 2,
            ..Gauges::default()
        }
    );
}
