//! The node machine's decisions, each with the exact outputs for given inputs and times.
//! Links are identified by their connection id (the machine's handle `H` is `u64` here).

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::cluster::{JobCall, Stats, SubscribeRequest};
use crate::conn::ConnError;
use crate::membership::Status as MemberStatus;
use crate::node::control::SubscribeError;
use crate::node::links::LinkGone;
use crate::table::NodeRow;

const T0: Instant = Instant::ZERO;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn settings(me: &str, role: Role) -> NodeSettings {
    NodeSettings {
        me: me.into(),
        role,
        listen: vec![format!("nkcluster://{me}:1972")],
        partitions: 64,
        wall_origin_ns: 1_000_000_000_000,
        membership: MembershipConfig::default(),
        handoff_retry: Duration::from_secs(5),
        cluster_addr: Vec::new(),
        backoff: BackoffConfig::default(),
        data_limit: 16,
        meta: Meta::default(),
        workers: WorkersConfig {
            max_workers: 100,
            forget_after: Duration::from_secs(60),
        },
        events: EventsConfig {
            keep: 3,
            max_subscribers: 2,
        },
        files_dir: "/srv/files".into(),
        transfers: Default::default(),
    }
}

fn machine(me: &str, role: Role) -> NodeMachine<u64> {
    let mut m = NodeMachine::new(settings(me, role));
    m.start(T0);
    drain(&mut m);
    m
}

fn drain(m: &mut NodeMachine<u64>) -> Vec<Output<u64>> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn peer(id: &str, role: Role, listen: &[&str]) -> PeerSummary {
    PeerSummary {
        node_id: id.into(),
        role,
        remote: format!("tcp:10.0.0.{}:5000", id.len()),
        dialer: false,
        listen: listen.iter().map(|u| (*u).to_owned()).collect(),
        meta: String::new(),
    }
}

fn link(conn_id: u64, summary: PeerSummary) -> Link<u64> {
    Link {
        conn_id,
        summary,
        remote_ip: Some("10.0.0.9".parse().expect("ip")),
        rtt_us: 0,
        handle: conn_id,
    }
}

fn member(id: &str, generation: u64) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        generation,
        incarnation: 0,
        status: MemberStatus::Alive,
        listen: vec![format!("nkcluster://{id}:1972")],
    }
}

fn link_up_event(p: &PeerSummary) -> Output<u64> {
    Output::Event(NodeEvent::LinkUp {
        peer: p.node_id.clone(),
        role: p.role,
        remote: p.remote.clone(),
        dialer: p.dialer,
    })
}

fn status_event(node: &str, s: Status) -> EventMsg {
    EventMsg {
        node: node.into(),
        class: NODE_EVENT_CLASS.into(),
        task: None,
        event: WireEvent::NodeStatus(s),
    }
}

fn class_event(node: &str, class: &str, task: Option<u64>, event: WireEvent) -> EventMsg {
    EventMsg {
        node: node.into(),
        class: class.into(),
        task,
        event,
    }
}

/// c1 linked to c2 (views exchanged), so that the ring has both.
fn two_members() -> NodeMachine<u64> {
    let mut c1 = machine("c1", Role::Control);
    let c2 = peer("c2", Role::Control, &["nkcluster://c2:1972"]);
    c1.handle_link_up(T0, link(2, c2), true);
    c1.handle_gossip(T0, "c2", 2, &[member("c2", 7)]);
    drain(&mut c1);
    c1
}

/// A worker the ring gives to c2 (with c1 and c2 live).
fn worker_of_c2(c1: &NodeMachine<u64>) -> String {
    (0..100)
        .map(|i| format!("w{i}"))
        .find(|w| c1.proxies.as_ref().is_some_and(|p| p.owner_of(w) == "c2"))
        .expect("some worker belongs to c2")
}

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
    // Our events go on the first control link; with none, nowhere.
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
fn a_new_control_peer_gets_our_view_and_its_view_makes_it_a_member() {
    let mut c1 = machine("c1", Role::Control);
    let c2 = peer("c2", Role::Control, &["nkcluster://all:1972"]);
    c1.handle_link_up(T0, link(2, c2.clone()), true);
    let me = c1.view();
    assert_eq!(
        drain(&mut c1),
        vec![Output::Gossip { link: 2, view: me }, link_up_event(&c2)]
    );
    // c2 listens on `all`: the view records it where its link reached us.
    let mut theirs = member("c2", 7);
    theirs.listen = vec!["nkcluster://all:1972".into()];
    c1.handle_gossip(at(1), "c2", 2, &[theirs]);
    let mut c2_seen = member("c2", 7);
    c2_seen.listen = vec!["nkcluster://10.0.0.9:1972;transport=tcp".into()];
    let view = vec![c1.view()[0].clone(), c2_seen];
    assert_eq!(c1.view(), view);
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::Event(NodeEvent::Member {
                id: "c2".into(),
                change: "up"
            }),
            Output::Gossip { link: 2, view },
        ]
    );
    assert_eq!(c1.members(), ["c1", "c2"]);
    // The same view again is no news: nothing is gossiped back.
    let mut theirs = member("c2", 7);
    theirs.listen = vec!["nkcluster://all:1972".into()];
    c1.handle_gossip(at(2), "c2", 2, &[theirs]);
    assert_eq!(drain(&mut c1), vec![]);
}

#[test]
fn members_learned_from_a_view_are_dialed_once_at_a_time() {
    let mut c1 = two_members();
    let mut c3_all = member("c3", 9);
    c3_all.listen = vec![
        "nkcluster://all:1972".into(),
        "nkcluster://10.0.0.3:1973".into(),
    ];
    c1.handle_gossip(at(1), "c2", 2, &[member("c2", 7), c3_all.clone()]);
    let out = drain(&mut c1);
    assert_eq!(
        out[..2],
        [
            Output::Event(NodeEvent::Member {
                id: "c3".into(),
                change: "up"
            }),
            Output::Gossip {
                link: 2,
                view: c1.view()
            },
        ]
    );
    // `all` is not dialable from here; the other URL is.
    assert_eq!(
        out[2],
        Output::DialMember {
            id: "c3".into(),
            urls: vec!["nkcluster://10.0.0.3:1973".into()],
        }
    );
    // A redial round while the dial runs does not start a second one.
    let round = c1.poll_timeout().expect("removal or redial timer");
    c1.handle_mesh_dial_done(at(1), "c3", true, false);
    let out = drain(&mut c1);
    assert_eq!(
        out[..1],
        [Output::Event(NodeEvent::Member {
            id: "c3".into(),
            change: "down"
        })]
    );
    c1.handle_timeout(round.max(at(2_001)));
    let dials: Vec<_> = drain(&mut c1)
        .into_iter()
        .filter(|o| matches!(o, Output::DialMember { .. }))
        .collect();
    assert_eq!(
        dials,
        vec![Output::DialMember {
            id: "c3".into(),
            urls: vec!["nkcluster://10.0.0.3:1973".into()],
        }]
    );
    c1.handle_timeout(at(4_002));
    assert!(
        !drain(&mut c1)
            .iter()
            .any(|o| matches!(o, Output::DialMember { .. })),
        "c3 is still being dialed"
    );
}

#[test]
fn a_worker_the_ring_gives_away_is_redirected_to_its_owner_or_adopted() {
    let mut c1 = machine("c1", Role::Control);
    let w = {
        let probe = two_members();
        worker_of_c2(&probe)
    };
    // Linked alone: c1 owns everything.
    c1.handle_link_up(T0, link(10, peer(&w, Role::Worker, &[])), true);
    drain(&mut c1);
    // c2 joins: the worker (no listener) is redirected to c2's URLs.
    let c2 = peer("c2", Role::Control, &[]);
    c1.handle_link_up(at(1), link(2, c2), true);
    c1.handle_gossip(at(1), "c2", 2, &[member("c2", 7)]);
    let redirect = Output::Redirect {
        worker: w.clone(),
        owner: "c2".into(),
        urls: vec!["nkcluster://c2:1972;transport=tcp".into()],
    };
    assert_eq!(drain(&mut c1).last(), Some(&redirect));
    // c2 does not answer: the worker stays, and the redirect is tried again later.
    c1.handle_owner_silent(at(2), &w, "c2");
    assert_eq!(c1.poll_timeout(), Some(at(5_002)));
    c1.handle_timeout(at(5_002));
    assert_eq!(drain(&mut c1), vec![redirect]);
    // It answered and the worker was told: our link closes, pending requests end
    // `proxy_moved`.
    c1.handle_redirected(&w, "c2");
    assert_eq!(
        drain(&mut c1),
        vec![Output::Release {
            worker: w.clone(),
            to: "c2".into(),
            links: vec![10],
        }]
    );

    // A worker that listens is adopted instead: the owner dials it.
    let mut c1 = two_members();
    let w2 = worker_of_c2(&c1);
    c1.handle_link_up(
        at(3),
        link(11, peer(&w2, Role::Worker, &["nkcluster://all:9000"])),
        true,
    );
    let ask = Output::AskAdopt {
        worker: w2.clone(),
        owner: "c2".into(),
        urls: vec!["nkcluster://10.0.0.9:9000;transport=tcp".into()],
    };
    assert_eq!(drain(&mut c1)[0], ask);
    c1.handle_adopted(&w2, "c2", true);
    assert_eq!(
        drain(&mut c1),
        vec![Output::Release {
            worker: w2.clone(),
            to: "c2".into(),
            links: vec![11],
        }]
    );
}

#[test]
fn a_failed_adoption_falls_back_to_a_redirect() {
    let mut c1 = two_members();
    let w = worker_of_c2(&c1);
    c1.handle_link_up(
        T0,
        link(11, peer(&w, Role::Worker, &["nkcluster://10.0.0.5:9000"])),
        true,
    );
    drain(&mut c1);
    c1.handle_adopted(&w, "c2", false);
    assert_eq!(
        drain(&mut c1),
        vec![Output::Redirect {
            worker: w,
            owner: "c2".into(),
            urls: vec!["nkcluster://c2:1972;transport=tcp".into()],
        }]
    );
}

#[test]
fn a_lost_listening_worker_is_redialed_and_its_classes_hear_not_connected() {
    let mut c1 = machine("c1", Role::Control);
    let w = peer("w1", Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    drain(&mut c1);
    let started = class_event("w1", "video", Some(1), WireEvent::TaskStarted);
    c1.handle_job_event(at(1), started.clone());
    drain(&mut c1);
    assert_eq!(c1.route("w1", 0), RouteStep::Direct);
    c1.handle_link_down(
        at(2),
        LinkGone {
            conn_id: 10,
            summary: w.clone(),
            remote_ip: Some("10.0.0.5".parse().expect("ip")),
            error: Some(ConnError::IdleTimeout(Duration::from_secs(5))),
        },
    );
    let gone = status_event("w1", Status::NotConnected);
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::ClassEvent {
                class: "video".into(),
                event: gone.clone(),
            },
            Output::JobEvent(gone.clone()),
            Output::Redial {
                worker: "w1".into(),
                urls: vec!["nkcluster://10.0.0.5:9000;transport=tcp".into()],
            },
            Output::Event(NodeEvent::LinkDown {
                peer: "w1".into(),
                remote: w.remote.clone(),
                code: Some("idle_timeout".into()),
            }),
        ]
    );
    // Meanwhile, requests for it end `not_connected` at once.
    assert_eq!(c1.route("w1", 0), RouteStep::NotConnected);
    assert_eq!(c1.local_rows().len(), 1);
    // Gone workers are forgotten after a while.
    assert_eq!(c1.workers_known(), 1);
    assert_eq!(c1.poll_timeout(), Some(at(60_002)));
    c1.handle_redial_failed(at(3), "w1");
    drain(&mut c1);
    c1.handle_timeout(at(60_002));
    assert_eq!(c1.workers_known(), 0);
}

#[test]
fn a_worker_that_closed_in_order_is_not_redialed() {
    let mut c1 = machine("c1", Role::Control);
    let w = peer("w1", Role::Worker, &["nkcluster://10.0.0.5:9000"]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    drain(&mut c1);
    c1.handle_link_down(
        at(2),
        LinkGone {
            conn_id: 10,
            summary: w.clone(),
            remote_ip: None,
            error: Some(ConnError::PeerClosed("stopping".into())),
        },
    );
    assert_eq!(
        drain(&mut c1),
        vec![Output::Event(NodeEvent::LinkDown {
            peer: "w1".into(),
            remote: w.remote,
            code: Some("peer_closed".into()),
        })]
    );
    assert_eq!(c1.route("w1", 0), RouteStep::Unknown);
}

#[test]
fn subscribers_get_every_event_and_are_dropped_once_gone() {
    let mut c1 = two_members();
    let admin = peer("admin", Role::Admin, &[]);
    let ev = class_event(
        "w1",
        "video",
        None,
        WireEvent::User(Bytes::from_static(b"x")),
    );
    assert_eq!(
        c1.handle_subscribe(&SubscribeRequest {
            subscriber: "nobody".into(),
            fanout: false
        }),
        Err(SubscribeError::NotLinked("nobody".into()))
    );
    c1.handle_link_up(T0, link(20, admin.clone()), true);
    drain(&mut c1);
    // A whole-cluster subscriber: c1 subscribes to c2 on its behalf.
    c1.handle_subscribe(&SubscribeRequest {
        subscriber: "admin".into(),
        fanout: true,
    })
    .expect("subscribed");
    assert_eq!(
        drain(&mut c1),
        vec![Output::Notify {
            link: 2,
            request: ClusterRequest::Subscribe(SubscribeRequest {
                subscriber: "c1".into(),
                fanout: false,
            }),
        }]
    );
    c1.handle_job_event(at(1), ev.clone());
    assert_eq!(
        drain(&mut c1),
        vec![
            Output::ClassEvent {
                class: "video".into(),
                event: ev.clone(),
            },
            Output::Notify {
                link: 20,
                request: ClusterRequest::EventStream(ev.clone()),
            },
            Output::JobEvent(ev.clone()),
        ]
    );
    // A member's stream reaches whole-cluster subscribers only.
    c1.handle_member_event(&ev);
    assert_eq!(
        drain(&mut c1),
        vec![Output::Notify {
            link: 20,
            request: ClusterRequest::EventStream(ev.clone()),
        }]
    );
    // Gone: dropped at the next event.
    c1.handle_link_down(
        at(2),
        LinkGone {
            conn_id: 20,
            summary: admin,
            remote_ip: None,
            error: None,
        },
    );
    drain(&mut c1);
    c1.handle_member_event(&ev);
    assert_eq!(drain(&mut c1), vec![]);
    // At most `max_subscribers` (2).
    for (i, s) in ["a1", "a2", "a3"].iter().enumerate() {
        c1.handle_link_up(T0, link(30 + i as u64, peer(s, Role::Admin, &[])), true);
        let r = c1.handle_subscribe(&SubscribeRequest {
            subscriber: (*s).into(),
            fanout: false,
        });
        assert_eq!(r.is_err(), i == 2, "{s}");
    }
}

#[test]
fn recent_events_keep_the_last_few_without_information_reports() {
    let mut c1 = machine("c1", Role::Control);
    let info = NodeInfo {
        id: "w1".into(),
        status: Status::Standby,
        listen: vec![],
        meta: "a=1".into(),
        stats: Stats::default(),
    };
    c1.handle_link_up(T0, link(10, peer("w1", Role::Worker, &[])), true);
    c1.handle_job_event(
        at(1),
        EventMsg {
            node: "w1".into(),
            class: NODE_EVENT_CLASS.into(),
            task: None,
            event: WireEvent::Info(info),
        },
    );
    for i in 0..4 {
        c1.handle_job_event(
            at(2 + i),
            class_event("w1", "v", Some(i), WireEvent::TaskStarted),
        );
    }
    let kept: Vec<(u64, Option<u64>)> = c1
        .recent_events()
        .into_iter()
        .map(|(t, e)| (t, e.task))
        .collect();
    assert_eq!(
        kept,
        [
            (1_000_003, Some(1)),
            (1_000_004, Some(2)),
            (1_000_005, Some(3))
        ]
    );
    // The information report shows in the node table.
    let rows = c1.local_rows();
    assert_eq!(
        rows[1],
        NodeRow {
            id: "w1".into(),
            role: "worker".into(),
            status: "standby".into(),
            owner: "c1".into(),
            proxies: vec!["c1".into()],
            remote: "tcp:10.0.0.2:5000".into(),
            listen: vec![],
            meta: "a=1".into(),
            rtt_us: None,
        }
    );
}

#[test]
fn the_node_table_lists_links_with_their_round_trips_and_asks_linked_members() {
    let mut c1 = two_members();
    c1.handle_rtt("c2", 2, Duration::from_micros(250));
    let c3 = member("c3", 9);
    c1.handle_gossip(at(1), "c2", 2, &[member("c2", 7), c3]);
    drain(&mut c1);
    let rows = c1.local_rows();
    assert_eq!(
        rows.iter()
            .map(|r| (r.id.as_str(), r.owner.as_str(), r.rtt_us))
            .collect::<Vec<_>>(),
        [("c1", "c1", None), ("c2", "c2", Some(250))]
    );
    assert_eq!(
        c1.table_sources(),
        (vec![("c2".to_owned(), 2)], vec!["c3".to_owned()])
    );
}

#[test]
fn routing_goes_local_direct_via_the_control_link_or_via_the_owner() {
    let mut w = machine("w1", Role::Worker);
    assert_eq!(w.route("w1", 0), RouteStep::Local);
    assert_eq!(w.route("w9", 0), RouteStep::Unknown);
    w.handle_link_up(T0, link(1, peer("c1", Role::Control, &[])), true);
    assert_eq!(
        w.route("w9", 0),
        RouteStep::Via {
            via: "c1".into(),
            hops: 0,
            fan_out: false
        }
    );
    let c1 = two_members();
    let theirs = worker_of_c2(&c1);
    assert_eq!(
        c1.route(&theirs, 0),
        RouteStep::Via {
            via: "c2".into(),
            hops: 1,
            fan_out: true
        }
    );
    // Forwarded once already: not again.
    assert_eq!(c1.route(&theirs, 1), RouteStep::Unknown);
    assert_eq!(c1.fan_out("c2"), Vec::<String>::new());
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
        w.handle_redirect("").map_err(|e| e.code),
        Err("bad_request".into())
    );
    assert_eq!(
        w.handle_redirect("http://x").map_err(|e| e.code),
        Err("invalid_scheme".into())
    );
    assert_eq!(w.handle_redirect("nkcluster://10.0.0.2:1972"), Ok(()));
    w.connector_mut().start(T0);
    assert_eq!(
        w.connector_mut().poll_action(),
        Some(crate::connector::ConnectorAction::Dial(
            crate::url::parse_url("nkcluster://10.0.0.2:1972").expect("url")
        ))
    );
}

#[test]
fn shutting_down_leaves_then_closes_every_link_and_dials_nothing_more() {
    let mut c1 = two_members();
    c1.handle_link_up(T0, link(10, peer("w1", Role::Worker, &[])), true);
    drain(&mut c1);
    c1.handle_shutdown();
    let out = drain(&mut c1);
    let Output::Gossip { link: 2, view } = &out[0] else {
        panic!("the leave goes out first: {out:?}");
    };
    assert_eq!(view[0].status, MemberStatus::Left);
    assert_eq!(
        out[1..],
        [
            Output::Close {
                link: 2,
                reason: "node shutting down".into()
            },
            Output::Close {
                link: 10,
                reason: "node shutting down".into()
            },
        ]
    );
    c1.handle_gossip(at(1), "c2", 2, &[member("c2", 7), member("c3", 9)]);
    assert!(drain(&mut c1).is_empty(), "no link, nothing to dial");
}

#[test]
fn a_second_link_between_two_members_is_unlisted() {
    let mut c1 = machine("c1", Role::Control);
    // c2 dialed us; then we dialed c2: the link the smaller id (c1) dialed stays.
    c1.handle_link_up(T0, link(2, peer("c2", Role::Control, &[])), true);
    let ours = PeerSummary {
        dialer: true,
        ..peer("c2", Role::Control, &[])
    };
    c1.handle_link_up(T0, link(3, ours), true);
    let out = drain(&mut c1);
    assert!(out.contains(&Output::Unlisted { link: 2 }), "{out:?}");
    assert_eq!(c1.link_of("c2"), Some(&3));
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
    assert!(
        matches!(
            c1.handle_request(T0, "w1", Role::Worker, adopt.clone()),
            Dispatch::Shell(ShellWork::Handler { ref class, .. }) if class == "nkcluster.adopt"
        ),
        "a worker cannot ask for an adoption: only a registered handler could serve it"
    );
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
        },
    );
    let to = std::path::PathBuf::from("/srv/files/a/b.txt");
    let tmp = std::path::PathBuf::from("/srv/files/a/b.txt.part");
    assert_eq!(
        out.ops,
        vec![
            FileOp::Create { tmp: tmp.clone() },
            FileOp::Append {
                tmp: tmp.clone(),
                data,
            },
            FileOp::Rename {
                tmp: tmp.clone(),
                to: to.clone()
            },
        ]
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
