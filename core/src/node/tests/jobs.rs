//! The node machine's own jobs: status, tasks, state calls, redirects, dispatch by role,
//! files, and what its proxy hears.

use super::*;

#[test]
fn starting_makes_the_node_ready_and_tells_its_proxy() {
    let mut w = NodeMachine::<u64>::new(settings("w1", Role::Worker));
    assert_eq!(w.status(), Status::Launching);
    w.start(T0);
    assert_eq!(
        drain(&mut w),
        vec![
            Output::Event(NodeEvent::StatusChanged {
                status: Status::Ready
            }),
            Output::OwnEvent(status_event("w1", Status::Ready)),
        ]
    );
}

#[test]
fn a_worker_tells_its_first_control_link_where_it_stands_once() {
    let mut w = machine("w1", Role::Worker);
    let c1 = peer("c1", Role::Control, &[]);
    w.handle_link_up(T0, link(1, c1.clone()), true);
    assert_eq!(
        drain(&mut w),
        vec![
            Output::OwnEvent(status_event("w1", Status::Ready)),
            Output::ReportInfo,
            link_up_event(&c1),
        ]
    );
    // A second link to a control node (an exclusive one) does not repeat it.
    let c2 = peer("c2", Role::Control, &[]);
    w.handle_link_up(T0, link(2, c2.clone()), true);
    assert_eq!(drain(&mut w), vec![link_up_event(&c2)]);
    // Once c1 says it serves us at our owner, our events go on the first control link;
    // with none, nowhere (see the offline tests for what is kept).
    assert_eq!(
        w.handle_request(T0, "c1", Role::Control, ClusterRequest::Placed),
        Dispatch::Answer(Ok(Bytes::new()))
    );
    assert_eq!(drain(&mut w), vec![]);
    let ev = class_event("w1", "video", Some(1), WireEvent::TaskStarted);
    w.handle_own_event(T0, ev.clone());
    assert_eq!(
        drain(&mut w),
        vec![Output::Notify {
            link: 1,
            request: ClusterRequest::JobEvent(ev.clone()),
        }]
    );
    for (conn, p) in [(1, peer("c1", Role::Control, &[])), (2, c2)] {
        w.handle_link_down(
            at(10),
            LinkGone {
                conn_id: conn,
                summary: p,
                remote_ip: None,
                error: Some(ConnError::PeerClosed("bye".into())),
            },
        );
    }
    drain(&mut w);
    w.handle_own_event(at(10), ev);
    assert_eq!(drain(&mut w), vec![]);
}

#[test]
fn a_control_member_hears_its_own_events_and_an_admin_client_drops_them() {
    let mut c1 = machine("c1", Role::Control);
    let ev = class_event("c1", "video", Some(4), WireEvent::TaskStarted);
    c1.handle_own_event(at(5), ev.clone());
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::ClassEvent {
                class: "video".into(),
                event: ev.clone(),
            },
            Output::JobEvent(ev.clone()),
        ]
    );
    assert_eq!(c1.recent_events(), vec![(1_000_005, ev.clone())]);
    let mut admin = machine("admin", Role::Admin);
    admin.handle_own_event(T0, ev);
    assert_eq!(drain(&mut admin), vec![]);
}

#[test]
fn state_calls_change_status_tasks_metadata_and_data() {
    let mut w = machine("w1", Role::Worker);
    assert_eq!(w.start_task(None, "video"), Ok(1));
    assert_eq!(
        w.start_task(Some(1), "video").map_err(|e| e.code),
        Err("already_started".into())
    );
    assert_eq!(
        drain(&mut w),
        vec![Output::OwnEvent(class_event(
            "w1",
            "video",
            Some(1),
            WireEvent::TaskStarted
        ))]
    );
    // A status change goes to the proxy, then to every running task.
    assert_eq!(
        w.handle_state_call(&JobCall::SetStatus(Status::Standby)),
        Some(Ok(Bytes::new()))
    );
    assert_eq!(
        drain(&mut w),
        vec![
            Output::Event(NodeEvent::StatusChanged {
                status: Status::Standby
            }),
            Output::OwnEvent(status_event("w1", Status::Standby)),
            Output::TaskStatus {
                class: "video".into(),
                task: 1,
                status: Status::Standby,
            },
        ]
    );
    assert_eq!(
        w.start_task(None, "video").map_err(|e| e.code),
        Err("node_not_ready".into())
    );
    // Stopping waits for the last task; its end reason goes out first.
    w.handle_state_call(&JobCall::SetStatus(Status::Stopped));
    drain(&mut w);
    assert_eq!(w.status(), Status::Stopping);
    assert!(w.handle_task_ended(1, "stopped"));
    assert!(!w.handle_task_ended(1, "stopped"), "ended once");
    assert_eq!(
        drain(&mut w),
        vec![
            Output::OwnEvent(class_event(
                "w1",
                "video",
                Some(1),
                WireEvent::TaskStopped("stopped".into())
            )),
            Output::Event(NodeEvent::StatusChanged {
                status: Status::Stopped
            }),
            Output::OwnEvent(status_event("w1", Status::Stopped)),
        ]
    );
    // Metadata changes are reported; the data registry has its limit (16 bytes).
    assert_eq!(
        w.handle_state_call(&JobCall::UpdateMeta("zone;dc=a".into())),
        Some(Ok(Bytes::from_static(b"zone;dc=a")))
    );
    assert_eq!(drain(&mut w), vec![Output::ReportInfo]);
    let put = |k: &str, v: &'static [u8]| JobCall::PutData(k.into(), Bytes::from_static(v));
    assert_eq!(
        w.handle_state_call(&put("k", b"12345")),
        Some(Ok(Bytes::new()))
    );
    assert_eq!(
        w.handle_state_call(&put("k2", b"0123456789abcdef"))
            .map(|r| r.map_err(|e| e.code)),
        Some(Err("too_large".into()))
    );
    assert_eq!(
        w.handle_state_call(&JobCall::GetData("k".into())),
        Some(Ok(Bytes::from_static(b"12345")))
    );
    assert_eq!(w.handle_state_call(&JobCall::GetInfo), None);
}

#[test]
fn a_redirect_makes_the_connector_dial_the_new_owner_first() {
    let mut w = machine("w1", Role::Worker);
    assert_eq!(
        w.handle_redirect("c1", "").map_err(|e| e.code),
        Err("bad_request".into())
    );
    assert_eq!(
        w.handle_redirect("c1", "http://x").map_err(|e| e.code),
        Err("invalid_scheme".into())
    );
    // Redirected by c1 (linked now, announced on every interface).
    let c1 = peer("c1", Role::Control, &["nkcluster://all:1972"]);
    w.handle_link_up(T0, link(1, c1.clone()), true);
    drain(&mut w);
    assert_eq!(w.handle_redirect("c1", "nkcluster://10.0.0.2:1972"), Ok(()));
    // Without cluster_addr the connector was idle: the shell runs it now, and it
    // follows the redirect once our links are gone: the owner, then (not stranded if
    // the owner cannot be reached) the control node that redirected us.
    assert_eq!(drain(&mut w), vec![Output::RunConnector]);
    use crate::connector::ConnectorAction;
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(ConnectorAction::WaitWhileLinked)
    );
    w.handle_link_down(
        T0,
        LinkGone {
            conn_id: 1,
            summary: c1,
            remote_ip: Some("10.0.0.9".parse().expect("ip")),
            error: None,
        },
    );
    drain(&mut w);
    w.connector_mut().handle_links_lost(T0);
    let owner = crate::url::parse_url("nkcluster://10.0.0.2:1972").expect("url");
    let back = crate::url::parse_url("nkcluster://10.0.0.9:1972;transport=tcp").expect("url");
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(ConnectorAction::Resolve(vec![owner.clone(), back.clone()]))
    );
    let found = crate::discovery::Candidate::as_written(owner);
    let found_back = crate::discovery::Candidate::as_written(back);
    w.connector_mut().handle_resolved(
        T0,
        vec![Ok(vec![found.clone()]), Ok(vec![found_back.clone()])],
        0,
    );
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(ConnectorAction::Dial(found))
    );
    w.connector_mut()
        .handle_dial_failed(T0, "no_connections", "refused", 0);
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(ConnectorAction::Dial(found_back))
    );
}

#[test]
fn a_redirect_from_one_control_node_after_another_adopted_us_is_not_followed() {
    use crate::connector::ConnectorAction;
    let mut w = machine("w1", Role::Worker);
    // We dialed c1 (it holds our proxy); c3, the owner, then dialed us: it adopted us.
    let mut c1 = peer("c1", Role::Control, &["nkcluster://all:1972"]);
    c1.dialer = true;
    w.handle_link_up(T0, link(1, c1), true);
    w.handle_link_up(T0, link(2, peer("c3", Role::Control, &[])), true);
    drain(&mut w);
    // c1's redirect to the owner (sent before it heard of the adoption) is answered and
    // dropped: the connector does not wake for it, nor will it dial the owner first.
    assert_eq!(
        w.handle_redirect("c1", "nkcluster://192.168.32.3:1972"),
        Ok(())
    );
    assert_eq!(drain(&mut w), vec![]);
    assert_eq!(w.connector_mut().poll_action(), None);
    // From the adopter itself, a redirect is followed (its hand-off to another owner).
    assert_eq!(w.handle_redirect("c3", "nkcluster://10.0.0.2:1972"), Ok(()));
    assert_eq!(drain(&mut w), vec![Output::RunConnector]);
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(ConnectorAction::WaitWhileLinked)
    );
}

/// The connector's next action starts a round: it is answered with every entry resolved
/// as written, kept in order (random 1).
fn resolve_as_written(c: &mut crate::connector::Connector, now: Instant) {
    use crate::connector::ConnectorAction;
    use crate::discovery::Candidate;
    let Some(ConnectorAction::Resolve(urls)) = c.poll_action() else {
        panic!("a round starts by resolving");
    };
    let found = urls
        .into_iter()
        .map(|u| Ok(vec![Candidate::as_written(u)]))
        .collect();
    c.handle_resolved(now, found, 1);
}

#[test]
fn a_control_node_that_adopted_the_worker_is_dialed_last_after_a_loss() {
    use crate::connector::ConnectorAction;
    let mut s = settings("w1", Role::Worker);
    s.cluster_addr = crate::url::parse_url_list(
        "nkcluster://10.0.0.1:1972, nkcluster://10.0.0.2:1972, nkcluster://10.0.0.3:1972",
    )
    .expect("urls");
    let mut w = NodeMachine::new(s.clone());
    w.start(T0);
    drain(&mut w);
    // One round: resolved as written, kept in order (random 1), dialed one at a time.
    let round = |w: &mut NodeMachine<u64>| -> Vec<String> {
        let c = w.connector_mut();
        resolve_as_written(c, T0);
        let mut order = Vec::new();
        while let Some(ConnectorAction::Dial(d)) = c.poll_action() {
            order.push(d.label());
            c.handle_dial_failed(T0, "no_connections", "refused", 0);
        }
        order
    };
    assert_eq!(
        round(&mut w),
        [
            "tcp:10.0.0.1:1972",
            "tcp:10.0.0.2:1972",
            "tcp:10.0.0.3:1972"
        ]
    );
    // The next round: the worker dials 10.0.0.1 (c1) and links.
    let t = w.connector().poll_timeout().expect("a backoff");
    w.connector_mut().handle_timeout(t);
    let c = w.connector_mut();
    resolve_as_written(c, t);
    assert!(matches!(c.poll_action(), Some(ConnectorAction::Dial(_))));
    c.handle_linked(t);
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    let mut c1 = peer("c1", Role::Control, &["nkcluster://all:1972"]);
    c1.dialer = true;
    let mut l1 = link(1, c1.clone());
    l1.remote_ip = Some("10.0.0.1".parse().expect("ip"));
    w.handle_link_up(t, l1, true);
    // c3, the owner, adopts it: c3 dialed the worker (from 10.0.0.3).
    let c3 = peer("c3", Role::Control, &["nkcluster://all:1972"]);
    let mut l3 = link(3, c3.clone());
    l3.remote_ip = Some("10.0.0.3".parse().expect("ip"));
    w.handle_link_up(t, l3, true);
    drain(&mut w);
    // Both links end (c1 handed the worker over; then c3 dies): c3, the node that served
    // it last, is dialed last; c1, most likely alive, first.
    for (id, summary, ip) in [(1, c1, "10.0.0.1"), (3, c3, "10.0.0.3")] {
        w.handle_link_down(
            t,
            LinkGone {
                conn_id: id,
                summary,
                remote_ip: Some(ip.parse().expect("ip")),
                error: None,
            },
        );
    }
    drain(&mut w);
    let later = t + Duration::from_secs(1);
    w.connector_mut().handle_links_lost(later);
    let t = w.connector().poll_timeout().expect("the initial delay");
    w.connector_mut().handle_timeout(t);
    assert_eq!(
        round(&mut w),
        [
            "tcp:10.0.0.1:1972",
            "tcp:10.0.0.2:1972",
            "tcp:10.0.0.3:1972"
        ]
    );
    // A control node that links to the worker because the worker dialed it changes
    // nothing: only an adoption names the adopter.
    let mut other = NodeMachine::new(s);
    other.start(T0);
    drain(&mut other);
    let mut dialed = peer("c2", Role::Control, &[]);
    dialed.dialer = true;
    let mut l2 = link(2, dialed);
    l2.remote_ip = Some("10.0.0.2".parse().expect("ip"));
    other.handle_link_up(T0, l2, true);
    assert_eq!(
        round(&mut other),
        [
            "tcp:10.0.0.1:1972",
            "tcp:10.0.0.2:1972",
            "tcp:10.0.0.3:1972"
        ]
    );
}

#[test]
fn an_adoption_while_the_connector_dials_interrupts_it() {
    use crate::connector::ConnectorAction;
    let mut s = settings("w1", Role::Worker);
    s.cluster_addr =
        crate::url::parse_url_list("nkcluster://192.168.32.3:1972, nkcluster://10.0.0.2:1972")
            .expect("urls");
    let mut w = NodeMachine::new(s);
    w.start(T0);
    drain(&mut w);
    let c = w.connector_mut();
    resolve_as_written(c, T0);
    let Some(ConnectorAction::Dial(d)) = c.poll_action() else {
        panic!("a dial");
    };
    assert_eq!(d.label(), "tcp:192.168.32.3:1972");
    // While that dial hangs, c2 dials us: it adopted us. The shell is told to stop the
    // dial, and once it did the connector waits while c2 serves us.
    let mut l2 = link(2, peer("c2", Role::Control, &[]));
    l2.remote_ip = Some("10.0.0.2".parse().expect("ip"));
    w.handle_link_up(T0, l2, true);
    assert!(drain(&mut w).contains(&Output::InterruptConnector));
    let c = w.connector_mut();
    assert_eq!(c.poll_action(), None);
    c.handle_dial_abandoned(T0);
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    // Another adoption while linked: nothing to interrupt.
    let mut l3 = link(3, peer("c3", Role::Control, &[]));
    l3.remote_ip = Some("10.0.0.3".parse().expect("ip"));
    w.handle_link_up(T0, l3, true);
    assert!(!drain(&mut w).contains(&Output::InterruptConnector));
}

#[test]
fn requests_are_dispatched_by_what_they_need_and_who_asks() {
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(10, peer("w1", Role::Worker, &[])), true);
    drain(&mut c1);
    let ev = class_event("w1", "video", Some(1), WireEvent::TaskStarted);
    // A worker speaks for itself only.
    assert_eq!(
        c1.handle_request(T0, "w1", Role::Worker, ClusterRequest::JobEvent(ev.clone())),
        Dispatch::Answer(Ok(Bytes::new()))
    );
    let Dispatch::Answer(Err(e)) =
        c1.handle_request(T0, "w2", Role::Worker, ClusterRequest::JobEvent(ev))
    else {
        panic!("w2 cannot send w1's events");
    };
    assert_eq!(e.code, "forbidden");
    // Only a control member hands a worker over, or streams members' events.
    let adopt = ClusterRequest::Adopt(crate::cluster::AdoptRequest {
        worker: "w9".into(),
        urls: vec![],
    });
    let Dispatch::Answer(Err(e)) = c1.handle_request(T0, "w1", Role::Worker, adopt.clone()) else {
        panic!("a worker cannot ask for an adoption");
    };
    assert_eq!(e.code, "forbidden");
    assert!(matches!(
        c1.handle_request(T0, "c2", Role::Control, adopt),
        Dispatch::Shell(ShellWork::Adopt(_))
    ));
    // State calls are answered here; a command to a task that does not run is refused
    // before any callback runs.
    assert_eq!(
        c1.handle_request(
            T0,
            "admin",
            Role::Admin,
            ClusterRequest::Job(JobCall::GetMeta)
        ),
        Dispatch::Answer(Ok(Bytes::new()))
    );
    let command = JobCall::Command {
        class: "video".into(),
        task: 7,
        body: Bytes::new(),
    };
    let Dispatch::Answer(Err(e)) =
        c1.handle_request(T0, "admin", Role::Admin, ClusterRequest::Job(command))
    else {
        panic!("task 7 does not run");
    };
    assert_eq!(e.code, "task_not_found");
    assert_eq!(
        c1.handle_request(
            T0,
            "admin",
            Role::Admin,
            ClusterRequest::Job(JobCall::GetInfo)
        ),
        Dispatch::Shell(ShellWork::GetInfo)
    );
    // A worker is never routed through, nor redirected by anyone but a control node.
    let mut w = machine("w1", Role::Worker);
    let redirect = ClusterRequest::Redirect("nkcluster://10.0.0.2:1972".into());
    assert!(
        matches!(
            w.handle_request(T0, "admin", Role::Admin, redirect.clone()),
            Dispatch::Shell(ShellWork::Handler { .. })
        ),
        "only a control node redirects"
    );
    assert_eq!(
        w.handle_request(T0, "c1", Role::Control, redirect),
        Dispatch::Answer(Ok(Bytes::new()))
    );
}

#[test]
fn file_parts_become_file_operations_in_order() {
    use crate::transfers::{FileOp, Part, Received};
    let mut w = machine("w1", Role::Worker);
    let data = Bytes::from_static(b"hello");
    let sha: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(b"hello").into()
    };
    let out = w.handle_file_part(
        T0,
        "c1",
        Part {
            path: "a/b.txt",
            offset: 0,
            total: 5,
            data: data.clone(),
            sha256: Some(sha),
            hash: crate::file_send::ContentHash::Sha256,
        },
    );
    let to = std::path::PathBuf::from("/srv/files/a/b.txt");
    let tmp = std::path::PathBuf::from("/srv/files/a/b.txt.part");
    assert_eq!(
        out.ops,
        vec![
            FileOp::Create {
                tmp: tmp.clone(),
                hash: crate::file_send::ContentHash::Sha256
            },
            FileOp::Append {
                tmp: tmp.clone(),
                data,
            },
            FileOp::Digest { tmp: tmp.clone() },
        ]
    );
    assert_eq!(out.result, Ok(Received::Checking));
    let out = w.handle_file_digest("a/b.txt", sha);
    assert_eq!(
        out.ops,
        vec![FileOp::Rename {
            tmp: tmp.clone(),
            to: to.clone()
        }]
    );
    assert_eq!(out.result, Ok(Received::File { path: to, bytes: 5 }));
    let refused = w.handle_file_part(
        T0,
        "c1",
        Part {
            path: "../etc/passwd",
            offset: 0,
            total: 1,
            data: Bytes::from_static(b"x"),
            sha256: None,
            hash: crate::file_send::ContentHash::Sha256,
        },
    );
    assert_eq!(refused.ops, vec![]);
    assert_eq!(refused.result.map_err(|e| e.code()), Err("forbidden_path"));
    assert_eq!(w.handle_file_error("a/b.txt"), vec![]);
}

#[test]
fn a_status_queued_before_the_link_came_up_is_told_once() {
    // Own events travel through the shell's ordered queue: the start's `ready` may be
    // taken after the link is up, behind the link's own report of it.
    let mut w = NodeMachine::<u64>::new(settings("w1", Role::Worker));
    w.start(T0);
    let queued: Vec<EventMsg> = drain(&mut w)
        .into_iter()
        .filter_map(|o| match o {
            Output::OwnEvent(e) => Some(e),
            _ => None,
        })
        .collect();
    w.handle_link_up(T0, link(1, peer("c1", Role::Control, &[])), true);
    let at_link_up: Vec<EventMsg> = drain(&mut w)
        .into_iter()
        .filter_map(|o| match o {
            Output::OwnEvent(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(queued, at_link_up);
    for ev in queued.into_iter().chain(at_link_up) {
        w.handle_own_event(T0, ev);
    }
    let ready = status_event("w1", Status::Ready);
    assert_eq!(
        drain(&mut w),
        vec![Output::Notify {
            link: 1,
            request: ClusterRequest::JobEvent(ready.clone()),
        }]
    );
    // A change is told; back to `ready` is told again; a new link hears it anew.
    for s in [Status::Standby, Status::Ready] {
        w.handle_own_event(T0, status_event("w1", s));
    }
    assert_eq!(drain(&mut w).len(), 2);
    w.handle_link_down(
        T0,
        LinkGone {
            conn_id: 1,
            summary: peer("c1", Role::Control, &[]),
            remote_ip: None,
            error: None,
        },
    );
    w.handle_link_up(T0, link(2, peer("c1", Role::Control, &[])), true);
    drain(&mut w);
    w.handle_own_event(T0, ready.clone());
    assert_eq!(
        drain(&mut w),
        vec![Output::Notify {
            link: 2,
            request: ClusterRequest::JobEvent(ready),
        }]
    );
}

#[test]
fn a_worker_may_send_only_its_own_events_and_every_refusal_is_reported() {
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(10, peer("w1", Role::Worker, &[])), true);
    drain(&mut c1);
    let route = ClusterRequest::Route(crate::cluster::RouteRequest {
        node: "c1".into(),
        class: crate::cluster::CLASS_JOB.into(),
        body: Bytes::new(),
        timeout_ms: 100,
        hops: 0,
        exclusive: false,
    });
    let attempts = [
        ClusterRequest::Nodes,
        ClusterRequest::LocalNodes,
        ClusterRequest::NodeInfo("c1".into()),
        route,
        ClusterRequest::Job(JobCall::SetStatus(Status::Stopped)),
        ClusterRequest::Subscribe(SubscribeRequest {
            subscriber: "w1".into(),
            fanout: true,
        }),
        ClusterRequest::RecentEvents { local: true },
        ClusterRequest::JobEvent(class_event("w2", "video", Some(1), WireEvent::TaskStarted)),
    ];
    for req in attempts {
        let kind = req.class();
        assert_eq!(
            c1.handle_request(T0, "w1", Role::Worker, req),
            Dispatch::Answer(Err(crate::message::RemoteError::new(
                crate::error::ErrorCode::Forbidden,
                format!("a worker may not send {kind} (only its own events)")
            ))),
            "{kind}"
        );
        assert_eq!(
            drain(&mut c1),
            vec![Output::Event(NodeEvent::Refused {
                peer: "w1".into(),
                role: Role::Worker,
                kind: kind.to_owned(),
            })]
        );
    }
    // Nothing changed: still ready, the link still up, nobody subscribed.
    assert_eq!(c1.status(), Status::Ready);
    assert_eq!(c1.link_of("w1"), Some(&10));
    // Its own events pass.
    let own = class_event("w1", "video", Some(1), WireEvent::TaskStarted);
    assert_eq!(
        c1.handle_request(T0, "w1", Role::Worker, ClusterRequest::JobEvent(own)),
        Dispatch::Answer(Ok(Bytes::new()))
    );
    // A worker that listens is not operated by another worker either.
    let mut w = machine("w2", Role::Worker);
    let Dispatch::Answer(Err(e)) = w.handle_request(
        T0,
        "w1",
        Role::Worker,
        ClusterRequest::Job(JobCall::SetStatus(Status::Stopped)),
    ) else {
        panic!("a worker cannot operate another");
    };
    assert_eq!(e.code, "forbidden");
}
