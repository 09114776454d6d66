//! The node machine as a control member and as a linked node: links, views, mesh dials,
//! hand-offs, workers' events and subscribers, the node table, routing, shutdown.

use super::*;
use crate::error::ErrorCode;

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
            // The news only: our record and c3's (c2's view brought nothing about c2).
            Output::Gossip {
                link: 2,
                view: vec![c1.view()[0].clone(), c1.view()[2].clone()]
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

fn ask(id: u64, link: u64, class: &str, body: &[u8], timeout_s: u64) -> Output<u64> {
    Output::Ask {
        id,
        link,
        class: class.into(),
        body: Bytes::copy_from_slice(body),
        timeout: Duration::from_secs(timeout_s),
    }
}

fn handoff(worker: &str, step: HandoffStep, code: Option<&str>) -> Output<u64> {
    Output::Event(NodeEvent::Handoff {
        worker: worker.into(),
        owner: "c2".into(),
        step,
        code: code.map(str::to_owned),
    })
}

#[test]
fn a_worker_the_ring_gives_away_is_redirected_once_its_owner_answers() {
    let mut c1 = machine("c1", Role::Control);
    let w = {
        let probe = two_members();
        worker_of_c2(&probe)
    };
    // Linked alone: c1 owns everything.
    c1.handle_link_up(T0, link(10, peer(&w, Role::Worker, &[])), true);
    drain(&mut c1);
    // c2 joins: its owner is probed first (the worker has no listener).
    let c2 = peer("c2", Role::Control, &[]);
    c1.handle_link_up(at(1), link(2, c2), true);
    c1.handle_gossip(at(1), "c2", 2, &[member("c2", 7)]);
    let probe = |id| ask(id, 2, "nkcluster.echo", b"", 15);
    assert_eq!(drain(&mut c1).last(), Some(&probe(1)));
    // c2 does not answer: the worker stays, and the probe is tried again later.
    c1.handle_answer(at(2), 1, Err(ErrorCode::Timeout));
    assert_eq!(
        drain(&mut c1),
        vec![handoff(&w, HandoffStep::OwnerSilent, Some("timeout"))]
    );
    assert_eq!(c1.poll_timeout(), Some(at(5_002)));
    c1.handle_timeout(at(5_002));
    assert_eq!(drain(&mut c1), vec![probe(2)]);
    // It answers: the worker is told c2's URLs; whatever it says, our link closes and
    // pending requests end `proxy_moved`.
    c1.handle_answer(at(5_003), 2, Ok(()));
    assert_eq!(
        drain(&mut c1),
        vec![ask(
            3,
            10,
            "nkcluster.redirect",
            b"nkcluster://c2:1972;transport=tcp",
            3
        )]
    );
    c1.handle_answer(at(5_004), 3, Err(ErrorCode::ConnectionFailed));
    assert_eq!(
        drain(&mut c1),
        vec![
            handoff(
                &w,
                HandoffStep::RedirectUnacknowledged,
                Some("connection_failed")
            ),
            Output::Release {
                worker: w.clone(),
                to: "c2".into(),
                links: vec![10],
            }
        ]
    );
    // A stale answer changes nothing.
    c1.handle_answer(at(5_005), 3, Ok(()));
    assert_eq!(drain(&mut c1), vec![]);
}

#[test]
fn a_listening_worker_is_adopted_by_its_owner_and_a_failure_falls_back_to_a_redirect() {
    let mut c1 = two_members();
    let w = worker_of_c2(&c1);
    c1.handle_link_up(
        at(3),
        link(11, peer(&w, Role::Worker, &["nkcluster://all:9000"])),
        true,
    );
    let adopt = crate::cluster::ClusterRequest::Adopt(crate::cluster::AdoptRequest {
        worker: w.clone(),
        urls: vec!["nkcluster://10.0.0.9:9000;transport=tcp".into()],
    })
    .encode()
    .expect("encode")
    .1;
    assert_eq!(drain(&mut c1)[0], ask(1, 2, "nkcluster.adopt", &adopt, 10));
    c1.handle_answer(at(4), 1, Ok(()));
    assert_eq!(
        drain(&mut c1),
        vec![Output::Release {
            worker: w.clone(),
            to: "c2".into(),
            links: vec![11],
        }]
    );

    let mut c1 = two_members();
    c1.handle_link_up(
        T0,
        link(11, peer(&w, Role::Worker, &["nkcluster://10.0.0.5:9000"])),
        true,
    );
    drain(&mut c1);
    c1.handle_answer(at(1), 1, Err(ErrorCode::WrongNode));
    assert_eq!(
        drain(&mut c1),
        vec![
            handoff(&w, HandoffStep::AdoptFailed, Some("wrong_node")),
            ask(2, 2, "nkcluster.echo", b"", 15),
        ]
    );
}

#[test]
fn a_step_waits_for_a_joining_owner_and_gives_up_after_its_timeout() {
    // c2 is in the view (gossip through c3) but not linked yet.
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(3, peer("c3", Role::Control, &[])), true);
    let members = [member("c3", 8), member("c2", 7)];
    let w = {
        let mut probe = machine("c1", Role::Control);
        probe.handle_link_up(T0, link(3, peer("c3", Role::Control, &[])), true);
        probe.handle_gossip(T0, "c3", 3, &members);
        (0..200)
            .map(|i| format!("w{i}"))
            .find(|w| {
                probe
                    .proxies
                    .as_ref()
                    .is_some_and(|p| p.owner_of(w) == "c2")
            })
            .expect("a worker of c2")
    };
    c1.handle_link_up(T0, link(10, peer(&w, Role::Worker, &[])), true);
    c1.handle_gossip(at(1), "c3", 3, &members);
    let out = drain(&mut c1);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Ask { .. })),
        "no probe before c2 is linked: {out:?}"
    );
    // c2 links: the probe goes out at once.
    c1.handle_link_up(at(2), link(2, peer("c2", Role::Control, &[])), true);
    assert!(drain(&mut c1).contains(&ask(1, 2, "nkcluster.echo", b"", 15)));

    // Another run: c2 never links; after the probe's timeout the owner counts as silent.
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(3, peer("c3", Role::Control, &[])), true);
    c1.handle_link_up(T0, link(10, peer(&w, Role::Worker, &[])), true);
    c1.handle_gossip(at(1), "c3", 3, &members);
    drain(&mut c1);
    let silent = handoff(&w, HandoffStep::OwnerSilent, Some("not_connected"));
    c1.handle_timeout(at(15_000));
    assert!(!drain(&mut c1).contains(&silent));
    c1.handle_timeout(at(15_001));
    assert!(drain(&mut c1).contains(&silent));
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
    // `nodes` keeps listing it, `not_connected`, with when it was last seen.
    assert_eq!(
        c1.local_rows()[1],
        NodeRow {
            id: "w1".into(),
            role: "worker".into(),
            status: "not_connected".into(),
            owner: "c1".into(),
            proxies: Vec::new(),
            remote: w.remote.clone(),
            listen: w.listen.clone(),
            meta: String::new(),
            rtt_us: None,
            last_seen_ms: Some(1_000_002),
            figures: None,
        }
    );
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
        stats: Stats {
            cpu_percent: 50.0,
            mem_used: 2_048,
            time_ms: 1_000_001,
            ..Stats::default()
        },
        modules: vec![],
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
    // The information report shows in the node table, its figures included.
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
            last_seen_ms: None,
            figures: Some(crate::table::NodeFigures {
                cpu_permille: 500,
                mem_used_bytes: 2_048,
                sampled_ms: 1_000_001,
                ..Default::default()
            }),
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
fn shutting_down_leaves_then_closes_every_link_and_dials_nothing_more() {
    let mut c1 = two_members();
    // A worker c1 owns: leaving would give it to c2, but a stop starts no hand-off on
    // links it closes at once (a graceful stop hands workers over before).
    let ours = worker_of(&c1, "c1");
    c1.handle_link_up(T0, link(10, peer(&ours, Role::Worker, &[])), true);
    drain(&mut c1);
    c1.handle_shutdown(T0);
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
fn the_last_gossip_of_a_leaving_member_does_not_bring_it_back() {
    let mut c1 = two_members();
    // c2 leaves: a third member told us first; then c2's own last gossip arrives on
    // its link. It used to count as a link-up (c2 came up, left again, and was dialed).
    let left = MemberInfo {
        incarnation: 1,
        status: MemberStatus::Left,
        ..member("c2", 7)
    };
    c1.handle_gossip(at(1), "c2", 2, std::slice::from_ref(&left));
    let first = drain(&mut c1);
    c1.handle_gossip(at(2), "c2", 2, &[left]);
    assert_eq!(
        first[0],
        Output::Event(NodeEvent::Member {
            id: "c2".into(),
            change: "left"
        })
    );
    assert_eq!(drain(&mut c1), vec![]);
    assert_eq!(c1.members(), ["c1"]);
}

#[test]
fn a_restarted_member_replaces_the_link_of_its_previous_run() {
    let mut c1 = machine("c1", Role::Control);
    // We dialed c2's first run; c2 crashed silently (the link lingers) and its new run
    // dialed us: the dialer rule alone would keep the dead link and drop every new one.
    let first_run = PeerSummary {
        dialer: true,
        ..peer("c2", Role::Control, &[])
    };
    c1.handle_link_up(T0, link(2, first_run), true);
    drain(&mut c1);
    let second_run = PeerSummary {
        instance: 2,
        ..peer("c2", Role::Control, &[])
    };
    c1.handle_link_up(T0, link(3, second_run), true);
    // The old link is probed first (see `identity`); silent, it is closed and replaced.
    let out = drain(&mut c1);
    assert!(
        matches!(out[..], [Output::Ask { id: 1, link: 2, .. }]),
        "{out:?}"
    );
    c1.handle_answer(at(5000), 1, Err(ErrorCode::Timeout));
    let out = drain(&mut c1);
    assert!(
        out.contains(&Output::Close {
            link: 2,
            reason: "replaced by a new run of c2".into()
        }),
        "{out:?}"
    );
    assert_eq!(c1.link_of("c2"), Some(&3));
}

#[test]
fn only_a_redirect_is_a_planned_hand_off_step() {
    use HandoffStep as S;
    let all = [
        S::Redirected,
        S::AdoptFailed,
        S::OwnerSilent,
        S::NoDialableUrl,
        S::RedirectUnacknowledged,
    ];
    let trouble: Vec<bool> = all.iter().map(|s| s.is_trouble()).collect();
    assert_eq!(trouble, [false, true, true, true, true]);
    assert_eq!(S::Redirected.describe(), "proxy moved (worker redirected)");
    // Every step says something of its own.
    let texts: BTreeSet<&str> = all.iter().map(|s| s.describe()).collect();
    assert_eq!(texts.len(), all.len());
}
