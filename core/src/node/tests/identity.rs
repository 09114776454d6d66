//! One node id linked from two runs: the old link is probed; alive, it keeps the id and
//! the new link is refused `duplicate_node_id`; silent, failed or gone, it is replaced.

use super::*;
use crate::error::ErrorCode;

fn run(id: &str, role: Role, instance: u64) -> PeerSummary {
    PeerSummary {
        instance,
        ..peer(id, role, &[])
    }
}

fn probe(id: u64, link: u64) -> Output<u64> {
    Output::Ask {
        id,
        link,
        class: "nkcluster.echo".into(),
        body: Bytes::new(),
        timeout: HandoffTimes::default().identity,
    }
}

fn down(conn_id: u64, summary: PeerSummary, error: Option<ConnError>) -> LinkGone {
    LinkGone {
        conn_id,
        summary,
        remote_ip: None,
        error,
    }
}

/// c1 with worker w1 linked on connection 1 (run 1), then another run (2) of w1 linked on
/// connection 2: held, and its old link probed.
fn w1_twice() -> NodeMachine<u64> {
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(1, run("w1", Role::Worker, 1)), true);
    drain(&mut c1);
    c1.handle_link_up(at(10), link(2, run("w1", Role::Worker, 2)), true);
    assert_eq!(drain(&mut c1), [probe(1, 1)]);
    assert_eq!(c1.link_of("w1"), Some(&1));
    assert_eq!(c1.links().links_of("w1").count(), 1);
    c1
}

#[test]
fn an_impostor_of_a_live_id_is_refused_and_the_old_link_keeps_it() {
    let mut c1 = w1_twice();
    c1.handle_answer(at(20), 1, Ok(()));
    let p = run("w1", Role::Worker, 2);
    assert_eq!(
        drain(&mut c1),
        [
            Output::Close {
                link: 2,
                reason: "duplicate_node_id: node id w1 is already linked from another process"
                    .into(),
            },
            Output::Event(NodeEvent::DuplicateRefused {
                peer: "w1".into(),
                remote: p.remote.clone(),
                linked: p.remote.clone(),
            }),
        ]
    );
    // The refused link ends: w1 is still linked on its old link, nothing else happens.
    let err = ConnError::TransportClosed("eof".into());
    c1.handle_link_down(at(30), down(2, p.clone(), Some(err)));
    assert_eq!(
        drain(&mut c1),
        [Output::Event(NodeEvent::LinkDown {
            peer: "w1".into(),
            remote: p.remote,
            code: Some("transport_closed".into()),
        })]
    );
    assert_eq!(c1.link_of("w1"), Some(&1));
    assert_eq!(c1.links().count_role(Role::Worker), 1);
}

#[test]
fn a_silent_old_link_is_replaced_by_the_new_run() {
    let mut c1 = w1_twice();
    c1.handle_answer(at(5010), 1, Err(ErrorCode::Timeout));
    let out = drain(&mut c1);
    let old = run("w1", Role::Worker, 1);
    let new = run("w1", Role::Worker, 2);
    assert_eq!(
        out[..2],
        [
            Output::Close {
                link: 1,
                reason: "replaced by a new run of w1".into(),
            },
            Output::Event(NodeEvent::Replaced {
                peer: "w1".into(),
                remote: old.remote.clone(),
            }),
        ]
    );
    assert_eq!(out.last(), Some(&link_up_event(&new)));
    assert_eq!(c1.link_of("w1"), Some(&2));
    assert_eq!(c1.links().count_role(Role::Worker), 1);
    // The old link's end is not w1's loss: it stays linked on the new one.
    c1.handle_link_down(at(5020), down(1, old.clone(), None));
    assert_eq!(
        drain(&mut c1),
        [Output::Event(NodeEvent::LinkDown {
            peer: "w1".into(),
            remote: old.remote,
            code: None,
        })]
    );
    assert_eq!(c1.link_of("w1"), Some(&2));
    assert_eq!(c1.route("w1", 0), RouteStep::Direct);
}

#[test]
fn an_old_link_that_goes_down_lets_the_held_one_in_at_once() {
    let mut c1 = w1_twice();
    let old = run("w1", Role::Worker, 1);
    let new = run("w1", Role::Worker, 2);
    let err = ConnError::TransportClosed("reset".into());
    c1.handle_link_down(at(15), down(1, old, Some(err)));
    let out = drain(&mut c1);
    assert_eq!(out.last(), Some(&link_up_event(&new)));
    assert_eq!(c1.link_of("w1"), Some(&2));
    // The probe's late answer changes nothing.
    c1.handle_answer(at(20), 1, Err(ErrorCode::ConnectionFailed));
    assert_eq!(drain(&mut c1), []);
    assert_eq!(c1.link_of("w1"), Some(&2));
}

#[test]
fn a_held_link_that_ends_is_forgotten() {
    let mut c1 = w1_twice();
    c1.handle_link_down(at(15), down(2, run("w1", Role::Worker, 2), None));
    assert_eq!(drain(&mut c1), []);
    c1.handle_answer(at(20), 1, Err(ErrorCode::Timeout));
    assert_eq!(drain(&mut c1), []);
    assert_eq!(c1.link_of("w1"), Some(&1));
}

#[test]
fn a_restarted_control_member_is_probed_and_replaces_its_dead_link() {
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(1, run("c2", Role::Control, 7)), true);
    drain(&mut c1);
    let new = PeerSummary {
        dialer: true,
        ..run("c2", Role::Control, 8)
    };
    c1.handle_link_up(at(10), link(2, new.clone()), true);
    assert_eq!(drain(&mut c1), [probe(1, 1)]);
    c1.handle_answer(at(20), 1, Err(ErrorCode::ConnectionFailed));
    let out = drain(&mut c1);
    assert_eq!(
        out[..2],
        [
            Output::Close {
                link: 1,
                reason: "replaced by a new run of c2".into(),
            },
            Output::Event(NodeEvent::Replaced {
                peer: "c2".into(),
                remote: new.remote.clone(),
            }),
        ]
    );
    assert!(out.contains(&link_up_event(&new)));
    assert_eq!(c1.link_of("c2"), Some(&2));
    assert_eq!(c1.links().count_role(Role::Control), 1);
}

#[test]
fn links_of_the_same_run_follow_the_mesh_rule_without_a_probe() {
    let mut c2 = machine("c2", Role::Control);
    let mine = PeerSummary {
        dialer: true,
        ..run("c1", Role::Control, 7)
    };
    c2.handle_link_up(T0, link(1, mine), true);
    drain(&mut c2);
    // c1 dialed too (same run): c1 is the smaller id, its link is kept, ours dropped.
    c2.handle_link_up(at(10), link(2, run("c1", Role::Control, 7)), true);
    let out = drain(&mut c2);
    assert!(out.contains(&Output::Unlisted { link: 1 }), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Ask { .. })),
        "{out:?}"
    );
    assert_eq!(c2.link_of("c1"), Some(&2));
    // An admin client is not held either (it is not a node of the cluster).
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(1, run("a1", Role::Admin, 1)), true);
    c1.handle_link_up(T0, link(2, run("a1", Role::Admin, 2)), true);
    assert_eq!(c1.links().links_of("a1").count(), 2);
}

fn url(s: &str) -> crate::url::ClusterUrl {
    crate::url::parse_url(s).expect("url")
}

#[test]
fn an_adoption_dials_only_urls_naming_a_host_and_answers_no_connections_without_one() {
    let urls = vec![
        "nkcluster://10.0.0.5:2000;transport=tcp".to_owned(),
        "not a url".to_owned(),
        "nkcluster://all:2001;transport=tcp".to_owned(),
        "nkcluster://10.0.0.5:2000;transport=tcp".to_owned(),
        "nkcluster://w1.example:2002;transport=tls".to_owned(),
    ];
    assert_eq!(
        worker_dial_urls(&urls),
        Ok(vec![
            url("nkcluster://10.0.0.5:2000;transport=tcp"),
            url("nkcluster://w1.example:2002;transport=tls")
        ])
    );
    let err =
        worker_dial_urls(&["nkcluster://all:2001;transport=tcp".to_owned()]).expect_err("refused");
    assert_eq!(err.code, ErrorCode::NoConnections);
}

#[test]
fn a_dialed_worker_must_be_the_expected_one_and_have_announced_the_url() {
    let worker = |id: &str, role: Role, listen: &[&str]| PeerSummary {
        dialer: true,
        ..peer(id, role, listen)
    };
    let ip = Some("10.0.0.5".parse().expect("ip"));
    let dialed = url("nkcluster://10.0.0.5:2000;transport=tcp");
    // The worker, which announced that URL (or `all` at that port, reached at that IP).
    let w1 = worker(
        "w1",
        Role::Worker,
        &["nkcluster://10.0.0.5:2000;transport=tcp"],
    );
    assert_eq!(check_dialed_worker("w1", &dialed, &w1, ip), Ok(()));
    let w1_all = worker("w1", Role::Worker, &["nkcluster://all:2000;transport=tcp"]);
    assert_eq!(check_dialed_worker("w1", &dialed, &w1_all, ip), Ok(()));
    // Another node answered there.
    let w2 = worker(
        "w2",
        Role::Worker,
        &["nkcluster://10.0.0.5:2000;transport=tcp"],
    );
    let e = check_dialed_worker("w1", &dialed, &w2, ip).expect_err("refused");
    assert_eq!(e.code, ErrorCode::WrongNode);
    assert_eq!(
        e.message,
        "w2 answered at nkcluster://10.0.0.5:2000;transport=tcp, where worker w1 was expected"
    );
    // The id, but not a worker.
    let c = worker(
        "w1",
        Role::Control,
        &["nkcluster://10.0.0.5:2000;transport=tcp"],
    );
    let e = check_dialed_worker("w1", &dialed, &c, ip).expect_err("refused");
    assert_eq!(e.code, ErrorCode::WrongNode);
    // The worker, at a URL it never announced (another port, another transport).
    for listen in [
        "nkcluster://10.0.0.5:2001;transport=tcp",
        "nkcluster://10.0.0.5:2000;transport=tls",
        "nkcluster://10.0.0.6:2000;transport=tcp",
    ] {
        let w = worker("w1", Role::Worker, &[listen]);
        let e = check_dialed_worker("w1", &dialed, &w, ip).expect_err("refused");
        assert_eq!(e.code, ErrorCode::Forbidden, "{listen}");
    }
    let quiet = worker("w1", Role::Worker, &[]);
    let e = check_dialed_worker("w1", &dialed, &quiet, ip).expect_err("refused");
    assert_eq!(e.code, ErrorCode::Forbidden);
}

#[test]
fn a_held_or_refused_link_speaks_for_nobody() {
    let mut c1 = w1_twice();
    let event = || ClusterRequest::JobEvent(status_event("w1", Status::Stopped));
    let refused = |d: Dispatch| match d {
        Dispatch::Answer(Err(e)) => e.code == ErrorCode::DuplicateNodeId,
        _ => false,
    };
    // Held: its events in w1's name are refused.
    assert!(refused(c1.handle_request_on(
        at(11),
        2,
        "w1",
        Role::Worker,
        event()
    )));
    // The old link's events are w1's.
    assert_eq!(
        c1.handle_request_on(at(11), 1, "w1", Role::Worker, event()),
        Dispatch::Answer(Ok(Bytes::new()))
    );
    c1.handle_answer(at(20), 1, Ok(()));
    drain(&mut c1);
    // Refused: still nothing.
    assert!(refused(c1.handle_request_on(
        at(21),
        2,
        "w1",
        Role::Worker,
        event()
    )));
}

#[test]
fn an_exclusive_connection_sends_only_to_the_node_it_was_opened_for() {
    let w1 = peer(
        "w1",
        Role::Worker,
        &["nkcluster://10.0.0.5:2000;transport=tcp"],
    );
    assert_eq!(check_exclusive_peer("w1", Role::Worker, &w1), Ok(()));
    let e = check_exclusive_peer("w2", Role::Worker, &w1).expect_err("another node");
    assert_eq!(e.code, ErrorCode::WrongNode);
    assert_eq!(
        e.message,
        "w1 (worker) answered at a listen URL of w2 (worker); the request was not sent"
    );
    // The id, claimed by a node of another role (a worker-secret holder posing as c2).
    let e = check_exclusive_peer("w1", Role::Control, &w1).expect_err("another role");
    assert_eq!(
        e.message,
        "w1 (worker) answered at a listen URL of w1 (control); the request was not sent"
    );
}
