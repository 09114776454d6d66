//! Following the cluster for the dashboard: when the shell asks for it
//! ([`NodeMachine::set_follow`]), every output that tells of a change the dashboard's
//! live feed shows (a node linked or unlinked, a status, a proxy moving, a member joining
//! or leaving) is followed at once by an [`Output::ClusterEvent`] describing it. Off by
//! default: a shell that serves no dashboard drains nothing more.

use std::sync::Arc;

use super::*;
use crate::dashboard::FeedItem;
use crate::ring::Ring;

impl<H: Clone> NodeMachine<H> {
    /// Whether to describe cluster changes as [`Output::ClusterEvent`]s (see the module
    /// docs).
    pub fn set_follow(&mut self, on: bool) {
        self.follow = on;
    }

    /// Control members: the ring the proxies place workers with (shared, not copied).
    pub fn shared_ring(&self) -> Option<Arc<Ring>> {
        self.proxies.as_ref().and_then(|p| p.shared_ring())
    }

    /// What `out`, just drained, tells the live feed, if anything. Read after the input
    /// that queued it: the link table already holds a new link and no longer a gone one.
    pub(super) fn feed_item(&self, out: &Output<H>) -> Option<FeedItem> {
        match out {
            Output::Event(NodeEvent::LinkUp {
                peer, role, remote, ..
            }) if *role != Role::Admin && self.links.links_of(peer).count() <= 1 => {
                Some(FeedItem::NodeUp {
                    node: peer.clone(),
                    role: role.as_str().to_owned(),
                    transport: remote.split_once(':').map_or("-", |(t, _)| t).to_owned(),
                })
            }
            // Admin clients are not nodes: a node is a member or a worker we heard of.
            Output::Event(NodeEvent::LinkDown { peer, code, .. })
                if !self.links.is_linked(peer) && self.is_known_node(peer) =>
            {
                Some(FeedItem::NodeDown {
                    node: peer.clone(),
                    code: code.clone(),
                })
            }
            Output::Event(NodeEvent::Member { id, change }) => Some(match *change {
                "up" => FeedItem::MemberJoined { member: id.clone() },
                how => FeedItem::MemberLeft {
                    member: id.clone(),
                    how: how.to_owned(),
                },
            }),
            Output::JobEvent(EventMsg {
                node,
                class,
                event: WireEvent::NodeStatus(s),
                ..
            }) if class == NODE_EVENT_CLASS => Some(FeedItem::StatusChanged {
                node: node.clone(),
                status: s.as_str().to_owned(),
            }),
            // A worker's own status change, as a worker (the control side hears it as a
            // job event instead).
            Output::Event(NodeEvent::StatusChanged { status }) if !self.is_control() => {
                Some(FeedItem::StatusChanged {
                    node: self.settings.me.clone(),
                    status: status.as_str().to_owned(),
                })
            }
            Output::Release { worker, to, .. } => Some(FeedItem::ProxyMoved {
                node: worker.clone(),
                to: to.clone(),
            }),
            _ => None,
        }
    }

    /// A worker's links are with control nodes; a control member knows nodes as members
    /// or as workers it heard.
    fn is_known_node(&self, peer: &str) -> bool {
        !self.is_control()
            || self.workers.status(peer).is_some()
            || self
                .membership
                .as_ref()
                .is_some_and(|m| m.record(peer).is_some())
    }
}
