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
            size("classes of one worker", 0, 2),
            size("loaded modules", 0, 64),
        ]
    );
    // A worker has no membership.
    let mut w = machine("w1", Role::Worker);
    assert_eq!(w.table_sizes()[0], size("workers remembered", 0, 100));
    assert_eq!(w.table_sizes().len(), 8);
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

#[test]
fn a_worker_sending_events_of_too_many_classes_is_answered_too_many_classes() {
    let mut c1 = two_members();
    let w1 = peer("w1", Role::Worker, &[]);
    c1.handle_link_up(T0, link(30, w1), true);
    drain(&mut c1);
    let send = |c1: &mut NodeMachine<u64>, class: &str| {
        let ev = class_event("w1", class, Some(1), WireEvent::TaskStarted);
        match c1.handle_request(at(1), "w1", Role::Worker, ClusterRequest::JobEvent(ev)) {
            Dispatch::Answer(r) => r.map_err(|e| (e.code.as_str().to_owned(), e.message)),
            Dispatch::Shell(_) => panic!("a job event is answered by the machine"),
        }
    };
    assert_eq!(send(&mut c1, "a"), Ok(Bytes::new()));
    assert_eq!(send(&mut c1, "b"), Ok(Bytes::new()));
    assert_eq!(send(&mut c1, "a"), Ok(Bytes::new()));
    assert_eq!(
        send(&mut c1, "c"),
        Err((
            "too_many_classes".to_owned(),
            "w1 already sent events of 2 classes".to_owned()
        ))
    );
    // Node-level news still passes, and the refused class was not heard.
    let status = status_event("w1", Status::Ready);
    assert!(matches!(
        c1.handle_request(at(2), "w1", Role::Worker, ClusterRequest::JobEvent(status)),
        Dispatch::Answer(Ok(_))
    ));
    let heard: Vec<String> = drain(&mut c1)
        .into_iter()
        .filter_map(|o| match o {
            Output::ClassEvent { class, .. } => Some(class),
            _ => None,
        })
        .collect();
    assert_eq!(heard, vec!["a", "b", "a", "a", "b"]);
}

#[test]
fn a_peers_transfers_end_with_its_last_link_and_idle_ones_at_the_nodes_timer() {
    use crate::transfers::{FileOp, Part};
    let file_ops = |out: Vec<Output<u64>>| -> Vec<FileOp> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::FileOps(ops) => Some(ops),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let first = |path| Part {
        path,
        offset: 0,
        total: 9,
        data: Bytes::from_static(b"x"),
        sha256: None,
        hash: crate::file_send::ContentHash::Sha256,
    };
    let tmp = |p: &str| FileOp::Remove {
        tmp: format!("/srv/files/{p}.part").into(),
    };
    let mut c1 = two_members();
    let admin = peer("admin-1", Role::Admin, &[]);
    c1.handle_link_up(T0, link(40, admin.clone()), true);
    drain(&mut c1);
    let _ = c1.handle_file_part(T0, "admin-1", first("a"));
    let _ = c1.handle_file_part(at(1_000), "c2", first("b"));
    // The idle deadline (60 s) is the node's: due without any new part.
    let due = c1.poll_timeout().expect("a transfer deadline");
    assert!(due <= at(60_000), "{due:?}");
    // The admin client goes: its transfer ends at once, c2's stays.
    c1.handle_link_down(
        at(2_000),
        LinkGone {
            conn_id: 40,
            summary: admin,
            remote_ip: None,
            error: Some(ConnError::PeerClosed("closed".into())),
        },
    );
    assert_eq!(file_ops(drain(&mut c1)), [tmp("a")]);
    assert_eq!(c1.table_sizes()[4], size("open file transfers", 1, 64));
    // c2's transfer, idle for 60 s, ends on the node's timer.
    c1.handle_timeout(at(60_999));
    assert_eq!(file_ops(drain(&mut c1)), []);
    c1.handle_timeout(at(61_000));
    assert_eq!(file_ops(drain(&mut c1)), [tmp("b")]);
    assert_eq!(c1.table_sizes()[4], size("open file transfers", 0, 64));
}
