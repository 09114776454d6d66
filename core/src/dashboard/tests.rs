//! The dashboard's view and feed, with exact outputs.

use super::*;
use crate::ring::place;
use crate::table::NodesReport;

fn row(id: &str, role: &str, status: &str, owner: &str, remote: &str) -> NodeRow {
    NodeRow {
        id: id.into(),
        role: role.into(),
        status: status.into(),
        owner: owner.into(),
        proxies: Vec::new(),
        remote: remote.into(),
        listen: Vec::new(),
        meta: String::new(),
        rtt_us: None,
        last_seen_ms: None,
        figures: None,
    }
}

#[test]
fn the_view_shares_the_ring_counts_workers_and_names_transports() {
    let members = vec!["c1".to_owned(), "c2".to_owned()];
    let ring = place(4, &members).expect("two members place");
    let figures = NodeFigures {
        cpu_permille: 125,
        ..Default::default()
    };
    let report = NodesReport {
        rows: vec![
            NodeRow {
                figures: Some(figures),
                ..row("c1", "control", "ready", "c1", "-")
            },
            NodeRow {
                rtt_us: Some(180),
                ..row("c2", "control", "ready", "c2", "tls:127.0.0.1:1972")
            },
            row("w1", "worker", "standby", "c2", "ws:127.0.0.1:40000"),
            row("w2", "worker", "ready", "c2", "tcp:127.0.0.1:40001"),
            NodeRow {
                last_seen_ms: Some(7),
                ..row("w3", "worker", "not_connected", "c1", "tcp:127.0.0.1:40002")
            },
        ],
        incomplete: vec!["c3".into()],
    };
    let view = ClusterView::new("c1", &members, Some(&ring), report);
    let owners: Vec<&str> = (0..4).map(|p| ring.owner(p).expect("owned")).collect();
    let share = |m: &str| u32::try_from(owners.iter().filter(|o| **o == m).count()).expect("small");
    assert_eq!(share("c1") + share("c2"), 4);
    assert_eq!(
        view.members,
        vec![
            MemberView {
                id: "c1".into(),
                partitions: share("c1"),
                // w3 is lost: not served.
                workers: 0,
            },
            MemberView {
                id: "c2".into(),
                partitions: share("c2"),
                workers: 2,
            },
        ]
    );
    assert_eq!(view.partitions, 4);
    assert_eq!(view.incomplete, vec!["c3".to_owned()]);
    let transports: Vec<(&str, &str)> = view
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.transport.as_str()))
        .collect();
    assert_eq!(
        transports,
        [
            ("c1", "-"),
            ("c2", "tls"),
            ("w1", "ws"),
            ("w2", "tcp"),
            ("w3", "tcp")
        ]
    );
    assert_eq!(view.nodes[0].figures, Some(figures));
    assert_eq!(view.nodes[1].rtt_us, Some(180));
    assert_eq!(view.nodes[4].last_seen_ms, Some(7));
}

#[test]
fn a_lone_member_owns_the_whole_ring() {
    let me = vec!["solo".to_owned()];
    let ring = place(8, &me).expect("one member places");
    let view = ClusterView::new("solo", &me, Some(&ring), NodesReport::default());
    assert_eq!(
        view.members,
        vec![MemberView {
            id: "solo".into(),
            partitions: 8,
            workers: 0,
        }]
    );
}

#[test]
fn a_node_that_is_not_a_member_has_no_ring() {
    let view = ClusterView::new(
        "w1",
        &[],
        None,
        NodesReport {
            rows: vec![row("w1", "worker", "ready", "w1", "-")],
            incomplete: Vec::new(),
        },
    );
    assert_eq!(view.partitions, 0);
    assert_eq!(view.members, vec![]);
    assert_eq!(view.nodes.len(), 1);
}

#[test]
fn the_feed_numbers_entries_and_keeps_the_latest() {
    let mut feed = Feed::new(2);
    let items = [
        FeedItem::MemberJoined {
            member: "c2".into(),
        },
        FeedItem::StatusChanged {
            node: "w1".into(),
            status: "standby".into(),
        },
        FeedItem::ProxyMoved {
            node: "w1".into(),
            to: "c2".into(),
        },
    ];
    assert_eq!(feed.next_seq(), 1);
    let seqs: Vec<u64> = items
        .iter()
        .zip(1_000..)
        .map(|(item, at_ms)| feed.push(at_ms, item.clone()))
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(feed.next_seq(), 4);
    assert_eq!(
        feed.recent(),
        [
            FeedEntry {
                seq: 2,
                at_ms: 1_001,
                text: "w1 is standby".into(),
                item: items[1].clone(),
            },
            FeedEntry {
                seq: 3,
                at_ms: 1_002,
                text: "w1's proxy moved to c2".into(),
                item: items[2].clone(),
            },
        ]
    );
    assert_eq!(
        FeedEntry::new(7, 9, items[0].clone()).text,
        "member c2 joined"
    );
    let mut none_kept = Feed::new(0);
    assert_eq!(none_kept.push(5, items[0].clone()), 1);
    assert_eq!(none_kept.recent(), vec![]);
}

#[test]
fn every_item_reads_as_one_line() {
    let lines: Vec<String> = [
        FeedItem::NodeUp {
            node: "w1".into(),
            role: "worker".into(),
            transport: "tls".into(),
        },
        FeedItem::NodeDown {
            node: "w1".into(),
            code: None,
        },
        FeedItem::NodeDown {
            node: "w1".into(),
            code: Some("idle_timeout".into()),
        },
        FeedItem::StatusChanged {
            node: "w1".into(),
            status: "standby".into(),
        },
        FeedItem::ProxyMoved {
            node: "w1".into(),
            to: "c2".into(),
        },
        FeedItem::MemberJoined {
            member: "c2".into(),
        },
        FeedItem::MemberLeft {
            member: "c2".into(),
            how: "down".into(),
        },
    ]
    .iter()
    .map(FeedItem::text)
    .collect();
    assert_eq!(
        lines,
        [
            "w1 (worker) linked over tls",
            "w1 unlinked",
            "w1 unlinked: idle_timeout",
            "w1 is standby",
            "w1's proxy moved to c2",
            "member c2 joined",
            "member c2 down",
        ]
    );
}

fn view(me: &str, rows: Vec<NodeRow>) -> ClusterView {
    ClusterView::new(
        me,
        &[],
        None,
        NodesReport {
            rows,
            incomplete: Vec::new(),
        },
    )
}

#[test]
fn changes_elsewhere_are_told_and_first_hand_ones_are_not() {
    let before = view(
        "c1",
        vec![
            row("c1", "control", "ready", "c1", "-"),
            row("c2", "control", "ready", "c2", "tcp:10.0.0.2:1972"),
            row("w1", "worker", "ready", "c2", "tcp:10.0.0.9:5000"),
            row("w2", "worker", "ready", "c1", "tcp:10.0.0.8:5000"),
            row("w3", "worker", "ready", "c2", "tcp:10.0.0.7:5000"),
            row("w4", "worker", "ready", "c2", "tcp:10.0.0.6:5000"),
            row("w5", "worker", "ready", "c2", "tcp:10.0.0.5:5000"),
        ],
    );
    let after = view(
        "c1",
        vec![
            // Our own status: told first hand.
            row("c1", "control", "standby", "c1", "-"),
            // Another control node's status: only the table shows it.
            row("c2", "control", "standby", "c2", "tcp:10.0.0.2:1972"),
            // c3 joined: first hand (the mesh); its workers are news.
            row("c3", "control", "ready", "c3", "tcp:10.0.0.3:1972"),
            // A worker served elsewhere changed status and moved to another member.
            row("w1", "worker", "standby", "c3", "tcp:10.0.0.9:5000"),
            // Ours: told first hand.
            row("w2", "worker", "stopping", "c1", "tcp:10.0.0.8:5000"),
            // Moved to us: told first hand (its link came up here).
            row("w3", "worker", "standby", "c1", "tcp:10.0.0.7:5000"),
            // w4 was forgotten; w5 is unchanged; w6 is new, at c3.
            row("w5", "worker", "ready", "c2", "tcp:10.0.0.5:5000"),
            row("w6", "worker", "ready", "c3", "wss:10.0.0.4:5000"),
        ],
    );
    assert_eq!(
        after.changes_since(&before),
        vec![
            FeedItem::StatusChanged {
                node: "c2".into(),
                status: "standby".into(),
            },
            FeedItem::ProxyMoved {
                node: "w1".into(),
                to: "c3".into(),
            },
            FeedItem::StatusChanged {
                node: "w1".into(),
                status: "standby".into(),
            },
            FeedItem::NodeUp {
                node: "w6".into(),
                role: "worker".into(),
                transport: "wss".into(),
            },
            FeedItem::NodeDown {
                node: "w4".into(),
                code: None,
            },
        ]
    );
    assert_eq!(after.changes_since(&after), vec![]);
}
