//! Lifecycle decisions: the status a node reports, removing nodes, dialing by hand,
//! workers handed over or lost and back.

use super::*;
use crate::cluster::{AdoptRequest, DialRequest, RemoveRequest};
use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::node::check_removal;

fn gone(conn_id: u64, w: &PeerSummary, error: Option<ConnError>) -> LinkGone {
    LinkGone {
        conn_id,
        summary: w.clone(),
        remote_ip: Some("10.0.0.5".parse().expect("ip")),
        error,
    }
}

fn idle() -> Option<ConnError> {
    Some(ConnError::IdleTimeout(Duration::from_secs(5)))
}

#[test]
fn a_node_reports_launching_then_connecting_until_a_control_node_links_it() {
    let mut w = NodeMachine::<u64>::new(settings("w1", Role::Worker));
    assert_eq!(w.reported_status(), Status::Launching);
    w.start(T0);
    drain(&mut w);
    // No control link (it dials its cluster_addr, or waits to be dialed).
    assert_eq!(
        (w.status(), w.reported_status()),
        (Status::Ready, Status::Connecting)
    );
    assert_eq!(w.local_rows()[0].status, "connecting");
    let c1 = peer("c1", Role::Control, &["nkcluster://c1:1972"]);
    w.handle_link_up(T0, link(1, c1.clone()), true);
    drain(&mut w);
    assert_eq!(w.reported_status(), Status::Ready);
    assert_eq!(w.local_rows()[0].status, "ready");
    // An admin client's link is no control link.
    w.handle_link_down(at(1), gone(1, &c1, idle()));
    w.handle_link_up(at(2), link(2, peer("admin-1", Role::Admin, &[])), true);
    assert_eq!(w.reported_status(), Status::Connecting);
    // Its own status still shows under it once linked again.
    assert!(matches!(
        w.handle_state_call(&JobCall::SetStatus(Status::Standby)),
        Some(Ok(_))
    ));
    w.handle_link_up(at(3), link(3, c1), true);
    assert_eq!(w.reported_status(), Status::Standby);
    // A control node is the control side itself.
    let c = NodeMachine::<u64>::new(settings("c1", Role::Control));
    assert_eq!(c.reported_status(), Status::Launching);
    assert_eq!(
        machine("c1", Role::Control).reported_status(),
        Status::Ready
    );
}

#[test]
fn a_lost_worker_is_listed_until_removed_everywhere_and_a_linked_one_needs_force() {
    let mut c1 = machine("c1", Role::Control);
    let w = peer("w1", Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    c1.handle_job_event(at(1), status_event("w1", Status::Ready));
    drain(&mut c1);
    // Linked: refused without force, nothing changes.
    assert_eq!(
        c1.handle_forget("w1", false).map_err(|e| e.code),
        Err(ErrorCode::NodeConnected)
    );
    assert_eq!(drain(&mut c1), vec![]);
    // Lost (a kill -9): listed `not_connected`, redialed.
    c1.handle_link_down(at(2), gone(10, &w, idle()));
    drain(&mut c1);
    assert_eq!(c1.local_rows()[1].status, "not_connected");
    assert!(c1.poll_timeout().is_some());
    // Removed: no row, no redial, nothing to forget later; its classes heard enough.
    assert_eq!(c1.handle_forget("w1", false), Ok(true));
    assert_eq!(drain(&mut c1), vec![]);
    assert_eq!(c1.local_rows().len(), 1);
    assert_eq!(c1.workers_known(), 0);
    assert_eq!(c1.route("w1", 0), RouteStep::Unknown);
    assert_eq!(c1.poll_timeout(), None);
    // A node nobody here knows: nothing to do (another member may know it).
    assert_eq!(c1.handle_forget("w9", false), Ok(false));
}

#[test]
fn a_forced_removal_closes_the_links_and_the_loss_that_follows_is_not_listed() {
    let mut c1 = machine("c1", Role::Control);
    let w = peer("w1", Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    c1.handle_job_event(
        at(1),
        class_event("w1", "video", Some(1), WireEvent::TaskStarted),
    );
    drain(&mut c1);
    assert_eq!(c1.handle_forget("w1", true), Ok(true));
    assert_eq!(
        drain(&mut c1),
        vec![Output::Close {
            link: 10,
            reason: "removed by an operator".into(),
        }]
    );
    // Our close ends the link: no `not_connected`, no redial, no row.
    c1.handle_link_down(at(2), gone(10, &w, None));
    assert_eq!(
        drain(&mut c1),
        vec![Output::Event(NodeEvent::LinkDown {
            peer: "w1".into(),
            remote: w.remote.clone(),
            code: None,
        })]
    );
    assert_eq!(c1.local_rows().len(), 1);
    // Control members are never removed.
    let mut c1 = two_members();
    assert_eq!(
        c1.handle_forget("c2", true).map_err(|e| e.code),
        Err(ErrorCode::BadRequest)
    );
    assert_eq!(
        c1.handle_forget("c1", true).map_err(|e| e.code),
        Err(ErrorCode::BadRequest)
    );
}

#[test]
fn the_table_check_refuses_unknown_control_and_connected_nodes() {
    let row = |id: &str, role: &str, lost: bool| NodeRow {
        id: id.into(),
        role: role.into(),
        status: if lost { "not_connected" } else { "ready" }.into(),
        owner: "c1".into(),
        proxies: Vec::new(),
        remote: "-".into(),
        listen: Vec::new(),
        meta: String::new(),
        rtt_us: None,
        last_seen_ms: lost.then_some(7),
        figures: None,
    };
    let rows = [
        row("c1", "control", false),
        row("w1", "worker", false),
        row("w2", "worker", true),
    ];
    let code = |node: &str, force: bool| check_removal(&rows, node, force).map_err(|e| e.code);
    assert_eq!(code("w9", true), Err(ErrorCode::UnknownNode));
    assert_eq!(code("c1", true), Err(ErrorCode::BadRequest));
    assert_eq!(
        check_removal(&rows, "w1", false),
        Err(RemoteError::new(
            ErrorCode::NodeConnected,
            "w1 is connected (ready, at c1): remove it with --force"
        ))
    );
    assert_eq!(code("w1", true), Ok(()));
    assert_eq!(code("w2", false), Ok(()));
}

#[test]
fn dial_and_remove_requests_are_an_admin_clients_at_a_control_node() {
    let mut c1 = machine("c1", Role::Control);
    let dial = |url: &str, control| {
        ClusterRequest::Dial(DialRequest {
            url: url.into(),
            control,
        })
    };
    assert_eq!(
        c1.handle_request(
            T0,
            "admin-1",
            Role::Admin,
            dial("nkcluster://c2:1972", true)
        ),
        Dispatch::Shell(ShellWork::Dial {
            url: crate::url::parse_url("nkcluster://c2:1972").expect("url"),
            control: true,
        })
    );
    let refused = |d: Dispatch| match d {
        Dispatch::Answer(Err(e)) => e.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(c1.handle_request(T0, "admin-1", Role::Admin, dial("http://c2", false))),
        ErrorCode::parse("invalid_scheme")
    );
    assert_eq!(
        refused(c1.handle_request(T0, "w1", Role::Worker, dial("nkcluster://c2", true))),
        ErrorCode::Forbidden
    );
    let remove = |local| {
        ClusterRequest::Remove(RemoveRequest {
            node: "w9".into(),
            force: false,
            local,
        })
    };
    assert_eq!(
        c1.handle_request(T0, "admin-1", Role::Admin, remove(false)),
        Dispatch::Shell(ShellWork::Remove {
            node: "w9".into(),
            force: false,
        })
    );
    assert_eq!(
        c1.handle_request(T0, "c2", Role::Control, remove(true)),
        Dispatch::Answer(Ok(Bytes::from_static(&[0])))
    );
    assert_eq!(
        refused(c1.handle_request(T0, "c2", Role::Control, remove(false))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(c1.handle_request(T0, "w1", Role::Worker, remove(true))),
        ErrorCode::Forbidden
    );
    // A worker dials nothing for an admin client.
    let mut w = machine("w1", Role::Worker);
    assert_eq!(
        refused(w.handle_request(T0, "admin-1", Role::Admin, dial("nkcluster://c2", true))),
        ErrorCode::Forbidden
    );
}

#[test]
fn a_worker_handed_over_is_forgotten_not_lost() {
    let mut c1 = two_members();
    let w = worker_of_c2(&c1);
    let p = peer(&w, Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(at(3), link(11, p.clone()), true);
    c1.handle_job_event(
        at(3),
        class_event(&w, "video", Some(1), WireEvent::TaskStarted),
    );
    let adopt = ClusterRequest::Adopt(AdoptRequest {
        worker: w.clone(),
        urls: vec!["nkcluster://10.0.0.5:9000;transport=tcp".into()],
    })
    .encode()
    .expect("encode")
    .1;
    assert!(drain(&mut c1).iter().any(|o| matches!(
        o,
        Output::Ask { id: 1, class, body, .. } if class == "nkcluster.adopt" && *body == adopt
    )));
    c1.handle_answer(at(4), 1, Ok(()));
    drain(&mut c1);
    // Our release closes the link: the classes do not hear `not_connected` here (its
    // events go to c2 now) and no row lists it lost.
    c1.handle_link_down(at(5), gone(11, &p, None));
    assert_eq!(
        drain(&mut c1),
        vec![Output::Event(NodeEvent::LinkDown {
            peer: w.clone(),
            remote: p.remote.clone(),
            code: None,
        })]
    );
    assert_eq!(c1.workers_known(), 0);
    assert!(c1.local_rows().iter().all(|r| r.id != w));
}

#[test]
fn classes_hear_not_connected_then_the_status_again_when_the_worker_is_back() {
    let mut c1 = machine("c1", Role::Control);
    let w = peer("w1", Role::Worker, &[]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    c1.handle_job_event(
        at(1),
        class_event("w1", "video", Some(1), WireEvent::TaskStarted),
    );
    drain(&mut c1);
    c1.handle_link_down(at(2), gone(10, &w, idle()));
    let lost = status_event("w1", Status::NotConnected);
    // A worker that does not listen is not redialed: it rediscovers by itself.
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::ClassEvent {
                class: "video".into(),
                event: lost.clone(),
            },
            Output::JobEvent(lost),
            Output::Event(NodeEvent::LinkDown {
                peer: "w1".into(),
                remote: w.remote.clone(),
                code: Some("idle_timeout".into()),
            }),
        ]
    );
    // Meanwhile requests for it end `not_connected`, here and in the shell's snapshot.
    assert_eq!(c1.route("w1", 0), RouteStep::NotConnected);
    assert_eq!(c1.snapshot().route("w1", 0), RouteStep::NotConnected);
    let stamp = c1.snapshot_stamp();
    // Back: its link up, then its status (the worker tells its new proxy first thing).
    c1.handle_link_up(at(3), link(12, w.clone()), true);
    drain(&mut c1);
    let ready = status_event("w1", Status::Ready);
    c1.handle_job_event(at(3), ready.clone());
    assert_eq!(
        drain(&mut c1)[0],
        Output::ClassEvent {
            class: "video".into(),
            event: ready,
        }
    );
    assert_eq!(c1.local_rows()[1].status, "ready");
    assert_ne!(c1.snapshot_stamp(), stamp);
    assert_eq!(c1.snapshot().route("w1", 0), RouteStep::Direct);
}
