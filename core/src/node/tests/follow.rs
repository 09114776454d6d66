//! The dashboard's live feed: which outputs are followed by a cluster event, and that
//! nothing changes while following is off.

use super::*;
use crate::dashboard::FeedItem;

fn feed(outputs: &[Output<u64>]) -> Vec<FeedItem> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ClusterEvent(item) => Some(item.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_worker_linking_changing_status_and_going_is_followed_right_after_each_output() {
    let mut c1 = machine("c1", Role::Control);
    c1.set_follow(true);
    let w = peer("w1", Role::Worker, &[]);
    c1.handle_link_up(T0, link(10, w.clone()), true);
    let out = drain(&mut c1);
    // The cluster event comes right after the output that told of it.
    let up = out
        .iter()
        .position(|o| *o == link_up_event(&w))
        .expect("link up");
    assert_eq!(
        out[up + 1],
        Output::ClusterEvent(FeedItem::NodeUp {
            node: "w1".into(),
            role: "worker".into(),
            transport: "tcp".into(),
        })
    );
    // An admin client is not a node: nothing to follow when it links or goes.
    let admin = peer("admin-1", Role::Admin, &[]);
    c1.handle_link_up(T0, link(20, admin.clone()), true);
    c1.handle_link_down(
        at(1),
        LinkGone {
            conn_id: 20,
            summary: admin,
            remote_ip: None,
            error: None,
        },
    );
    assert_eq!(feed(&drain(&mut c1)), vec![]);
    c1.handle_job_event(at(2), status_event("w1", Status::Standby));
    assert_eq!(
        feed(&drain(&mut c1)),
        vec![FeedItem::StatusChanged {
            node: "w1".into(),
            status: "standby".into(),
        }]
    );
    c1.handle_link_down(
        at(3),
        LinkGone {
            conn_id: 10,
            summary: w,
            remote_ip: None,
            error: Some(ConnError::PeerClosed("stopping".into())),
        },
    );
    assert_eq!(
        feed(&drain(&mut c1)),
        vec![
            FeedItem::StatusChanged {
                node: "w1".into(),
                status: "not_connected".into(),
            },
            FeedItem::NodeDown {
                node: "w1".into(),
                code: Some("peer_closed".into()),
            },
        ]
    );
}

#[test]
fn members_joining_and_leaving_and_a_proxy_moving_are_followed() {
    let mut c1 = machine("c1", Role::Control);
    c1.set_follow(true);
    let c2 = peer("c2", Role::Control, &["nkcluster://c2:1972"]);
    c1.handle_link_up(T0, link(2, c2), true);
    c1.handle_gossip(T0, "c2", 2, &[member("c2", 7)]);
    assert_eq!(
        feed(&drain(&mut c1)),
        vec![
            FeedItem::NodeUp {
                node: "c2".into(),
                role: "control".into(),
                transport: "tcp".into(),
            },
            FeedItem::MemberJoined {
                member: "c2".into()
            },
        ]
    );
    // c2 leaves on purpose (its view says so).
    c1.handle_gossip(
        at(1),
        "c2",
        2,
        &[MemberInfo {
            status: MemberStatus::Left,
            incarnation: 1,
            ..member("c2", 7)
        }],
    );
    assert_eq!(
        feed(&drain(&mut c1)),
        vec![FeedItem::MemberLeft {
            member: "c2".into(),
            how: "left".into(),
        }]
    );
}

#[test]
fn a_worker_served_here_but_owned_by_another_member_is_followed_when_it_moves() {
    let mut c1 = two_members();
    c1.set_follow(true);
    let w = worker_of_c2(&c1);
    c1.handle_link_up(T0, link(10, peer(&w, Role::Worker, &[])), true);
    let out = drain(&mut c1);
    assert!(feed(&out).contains(&FeedItem::NodeUp {
        node: w.clone(),
        role: "worker".into(),
        transport: "tcp".into(),
    }));
    // The hand-off: c2 answers its probe and the worker its redirect; then our proxy is
    // released, which the feed tells right after.
    let mut out = out;
    for step in 1..=3 {
        let Some(ask) = out.iter().find_map(|o| match o {
            Output::Ask { id, .. } => Some(*id),
            _ => None,
        }) else {
            break;
        };
        c1.handle_answer(at(step), ask, Ok(()));
        out = drain(&mut c1);
    }
    let released = out
        .iter()
        .position(|o| matches!(o, Output::Release { .. }))
        .expect("released");
    assert_eq!(
        out[released + 1],
        Output::ClusterEvent(FeedItem::ProxyMoved {
            node: w,
            to: "c2".into(),
        })
    );
}

#[test]
fn following_off_adds_nothing() {
    let mut c1 = machine("c1", Role::Control);
    c1.handle_link_up(T0, link(10, peer("w1", Role::Worker, &[])), true);
    c1.handle_job_event(at(2), status_event("w1", Status::Standby));
    assert_eq!(feed(&drain(&mut c1)), vec![]);
}

#[test]
fn a_worker_follows_its_own_status() {
    let mut w = machine("w1", Role::Worker);
    w.set_follow(true);
    assert!(
        w.handle_state_call(&JobCall::SetStatus(Status::Standby))
            .is_some_and(|r| r.is_ok())
    );
    assert_eq!(
        feed(&drain(&mut w)),
        vec![FeedItem::StatusChanged {
            node: "w1".into(),
            status: "standby".into(),
        }]
    );
}
