//! The dashboard's model: the cluster as one control node sees it ([`ClusterView`]: the
//! members and how the ring's partitions are shared among them, the node table with
//! each node's owner, transport, round trip and machine figures) and the live feed of
//! what happens ([`FeedItem`]s: nodes up and down, status changes, proxies moving,
//! members joining and leaving), the latest of them kept in a bounded [`Feed`].
//!
//! Pure: the shell gathers the inputs (the machine's members and ring, the node table
//! merged from every member, the machine's [`Output::ClusterEvent`]s stamped with the
//! wall clock) and serves the results as JSON; what the page shows is decided here. The
//! machine sees first hand what happens to this node, its links and its workers; what
//! happens at other members reaches the feed when a view gathered later differs from the
//! one before ([`ClusterView::changes_since`]).
//!
//! [`Output::ClusterEvent`]: crate::node::Output::ClusterEvent

use std::collections::VecDeque;

use serde::Serialize;

use crate::ring::Ring;
use crate::table::{NodeFigures, NodeRow, NodesReport};

#[cfg(test)]
mod tests;

/// The cluster as one control node sees it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The node serving the view.
    pub node: String,
    /// The ring's partitions (0 on a node that is not a control member).
    pub partitions: u32,
    /// The live control members, sorted, with their share of the ring (how many
    /// partitions each owns; which ones is spread by hashing and not shown: thousands
    /// of them make no picture).
    pub members: Vec<MemberView>,
    /// One row per node, sorted by id.
    pub nodes: Vec<NodeView>,
    /// Members that did not answer: the nodes they serve may be missing.
    pub incomplete: Vec<String>,
}

/// A live control member and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Member id.
    pub id: String,
    /// Partitions it owns.
    pub partitions: u32,
    /// Workers whose proxy it holds.
    pub workers: u32,
}

/// One row of the dashboard's node table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// `control` or `worker`.
    pub role: String,
    /// Its status.
    pub status: String,
    /// The control node holding its proxy (a control node: itself).
    pub owner: String,
    /// The transport of the link to it (`tcp`, `tls`, `ws`, `wss`), `-` for the node
    /// serving the view.
    pub transport: String,
    /// Transport and remote address of that link.
    pub remote: String,
    /// Latest round trip of that link, microseconds.
    pub rtt_us: Option<u64>,
    /// Its latest machine figures.
    pub figures: Option<NodeFigures>,
    /// A lost worker: when it was last seen, Unix ms.
    pub last_seen_ms: Option<u64>,
}

impl ClusterView {
    /// The view served by `me`: the live `members` (sorted), the `ring` they share (a
    /// control member's; `None` elsewhere) and the node table gathered from every member.
    pub fn new(me: &str, members: &[String], ring: Option<&Ring>, report: NodesReport) -> Self {
        let nodes: Vec<NodeView> = report.rows.into_iter().map(NodeView::from).collect();
        let members = members
            .iter()
            .map(|id| MemberView {
                id: id.clone(),
                partitions: ring.map_or(0, |r| u32::try_from(r.load(id)).unwrap_or(u32::MAX)),
                workers: u32::try_from(
                    nodes
                        .iter()
                        .filter(|n| {
                            n.role == "worker" && n.owner == *id && n.last_seen_ms.is_none()
                        })
                        .count(),
                )
                .unwrap_or(u32::MAX),
            })
            .collect();
        ClusterView {
            node: me.to_owned(),
            partitions: ring.map_or(0, Ring::partitions),
            members,
            nodes,
            incomplete: report.incomplete,
        }
    }
}

impl ClusterView {
    /// What changed since `before` (an older view served by the same node) that this
    /// node did not see first hand, as feed items: the machine already told of its own
    /// workers, of links to it and of members joining and leaving (see
    /// [`crate::node::Output::ClusterEvent`]); a change elsewhere (a worker another member
    /// serves changed status, appeared, was forgotten or moved between two other
    /// members; another control node changed status) only shows in the gathered table.
    /// In node id order.
    pub fn changes_since(&self, before: &ClusterView) -> Vec<FeedItem> {
        let me = self.node.as_str();
        let old = |id: &str| before.nodes.iter().find(|n| n.id == id);
        let elsewhere = |n: &NodeView| n.id != me && n.owner != me;
        let mut out = Vec::new();
        for new in &self.nodes {
            let Some(was) = old(&new.id) else {
                if new.role == "worker" && elsewhere(new) {
                    out.push(FeedItem::NodeUp {
                        node: new.id.clone(),
                        role: new.role.clone(),
                        transport: new.transport.clone(),
                    });
                }
                continue;
            };
            if !elsewhere(new) || !elsewhere(was) {
                continue;
            }
            if new.owner != was.owner && new.role == "worker" {
                out.push(FeedItem::ProxyMoved {
                    node: new.id.clone(),
                    to: new.owner.clone(),
                });
            }
            if new.status != was.status {
                out.push(FeedItem::StatusChanged {
                    node: new.id.clone(),
                    status: new.status.clone(),
                });
            }
        }
        for was in &before.nodes {
            let gone = !self.nodes.iter().any(|n| n.id == was.id);
            if gone && was.role == "worker" && elsewhere(was) {
                out.push(FeedItem::NodeDown {
                    node: was.id.clone(),
                    code: None,
                });
            }
        }
        out
    }
}

impl From<NodeRow> for NodeView {
    fn from(row: NodeRow) -> Self {
        let transport = match row.remote.split_once(':') {
            Some((t, _)) => t.to_owned(),
            None => "-".to_owned(),
        };
        NodeView {
            id: row.id,
            role: row.role,
            status: row.status,
            owner: row.owner,
            transport,
            remote: row.remote,
            rtt_us: row.rtt_us,
            figures: row.figures,
            last_seen_ms: row.last_seen_ms,
        }
    }
}

/// Something that happened in the cluster: as the node machine saw it first hand, or as
/// two views told it ([`ClusterView::changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedItem {
    /// A node linked to us (its first link).
    NodeUp {
        /// The node.
        node: String,
        /// Its role.
        role: String,
        /// The link's transport.
        transport: String,
    },
    /// A node's last link with us ended.
    NodeDown {
        /// The node.
        node: String,
        /// The error's code (`idle_timeout`, `peer_closed`, ...); `None` when we closed it.
        code: Option<String>,
    },
    /// A node's status changed (a worker we serve, or ourselves).
    StatusChanged {
        /// The node.
        node: String,
        /// Its new status.
        status: String,
    },
    /// The proxy of a worker we served moved to its ring owner.
    ProxyMoved {
        /// The worker.
        node: String,
        /// Its new proxy.
        to: String,
    },
    /// A control member joined (or came back).
    MemberJoined {
        /// The member.
        member: String,
    },
    /// A control member left the live set.
    MemberLeft {
        /// The member.
        member: String,
        /// How: `down` (missed pings), `left` (on purpose) or `removed`.
        how: String,
    },
}

impl FeedItem {
    /// One line for people.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

/// The item's line for people (what [`FeedItem::text`] returns), written where asked: a
/// log line that is not printed costs nothing.
impl std::fmt::Display for FeedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedItem::NodeUp {
                node,
                role,
                transport,
            } => write!(f, "{node} ({role}) linked over {transport}"),
            FeedItem::NodeDown { node, code: None } => write!(f, "{node} unlinked"),
            FeedItem::NodeDown {
                node,
                code: Some(code),
            } => write!(f, "{node} unlinked: {code}"),
            FeedItem::StatusChanged { node, status } => write!(f, "{node} is {status}"),
            FeedItem::ProxyMoved { node, to } => write!(f, "{node}'s proxy moved to {to}"),
            FeedItem::MemberJoined { member } => write!(f, "member {member} joined"),
            FeedItem::MemberLeft { member, how } => write!(f, "member {member} {how}"),
        }
    }
}

/// A feed item as kept and served: numbered in order, stamped with the wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedEntry {
    /// Its number (1, 2, ...): a client that got the recent entries skips live ones it
    /// already has.
    pub seq: u64,
    /// When, Unix ms.
    pub at_ms: u64,
    /// One line for people.
    pub text: String,
    /// What happened.
    #[serde(flatten)]
    pub item: FeedItem,
}

/// The latest feed entries, at most `keep` (the oldest go first). An item is kept as it
/// came, numbered and stamped; its line for people is written when an entry is read
/// ([`recent`](Self::recent)), not for every item pushed (most are never read).
#[derive(Debug, Clone)]
pub struct Feed {
    keep: usize,
    entries: VecDeque<(u64, u64, FeedItem)>,
    next_seq: u64,
}

impl FeedEntry {
    /// Item `item`, numbered `seq`, which happened at `at_ms`.
    pub fn new(seq: u64, at_ms: u64, item: FeedItem) -> Self {
        FeedEntry {
            seq,
            at_ms,
            text: item.text(),
            item,
        }
    }
}

impl Feed {
    /// An empty feed keeping at most `keep` entries.
    pub fn new(keep: usize) -> Self {
        Feed {
            keep,
            entries: VecDeque::new(),
            next_seq: 1,
        }
    }

    /// The number the next item pushed gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records `item`, which happened at `at_ms`; returns its number.
    pub fn push(&mut self, at_ms: u64, item: FeedItem) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.keep == 0 {
            return seq;
        }
        while self.entries.len() >= self.keep {
            self.entries.pop_front();
        }
        self.entries.push_back((seq, at_ms, item));
        seq
    }

    /// The kept entries, oldest first.
    pub fn recent(&self) -> Vec<FeedEntry> {
        self.entries
            .iter()
            .map(|(seq, at_ms, item)| FeedEntry::new(*seq, *at_ms, item.clone()))
            .collect()
    }
}
