//! What the shell reads between two inputs without asking the machine: a copy of what
//! routing and the node's public getters need (the link table, the ring, the workers
//! being redialed, the members, the status), taken by the machine's owner after an input
//! that changed any of it ([`NodeMachine::snapshot_stamp`] says when) and published to
//! the request path, which must not wait for the owner on every request.
//!
//! Taking one costs O(members): the link table and the set of redialed workers are
//! persistent structures shared with the machine, the ring is shared.
//!
//! A snapshot answers exactly what the machine would have answered when it was taken:
//! [`Snapshot::route`] and [`NodeMachine::route`] build the same [`RouteView`] and call
//! the same [`route`].

use std::sync::Arc;

use rpds::RedBlackTreeSetSync;

use crate::handshake::Role;
use crate::links::LinkTable;
use crate::ring::Ring;
use crate::routing::{RouteStep, RouteView, route};
use crate::status::Status;

use super::{Link, NodeMachine};
use crate::proxy::Proxies;

/// Changes when anything a [`Snapshot`] holds changes (compare two stamps; taking one is
/// cheap, taking a snapshot is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStamp {
    links: u64,
    proxies: u64,
    members: u64,
    workers: u64,
    status: Status,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Snapshot<H> {
    me: String,
    is_control: bool,
    status: Status,
    members: Vec<String>,
    links: LinkTable<Link<H>>,
    ring: Option<Arc<Ring>>,
    reconnecting: RedBlackTreeSetSync<String>,
    lost: RedBlackTreeSetSync<String>,
}

impl<H: Clone> Snapshot<H> {
    /// Where a request for `node`, forwarded `hops` times already, goes next (as
    /// [`NodeMachine::route`] said when the snapshot was taken).
    pub fn route(&self, node: &str, hops: u8) -> RouteStep {
        let owner = self.is_control.then(|| {
            self.ring
                .as_deref()
                .and_then(|r| r.owner_of(node))
                .unwrap_or(&self.me)
        });
        let view = RouteView {
            me: &self.me,
            is_control: self.is_control,
            target_linked: self.links.is_linked(node),
            control_link: self.links.first_control().map(|(id, _)| id),
            owner,
            target_reconnecting: self.reconnecting.contains(node),
            target_lost: self.lost.contains(node),
        };
        route(&view, node, hops)
    }

    /// The members to ask, in order, when `owner` did not hold a node.
    pub fn fan_out(&self, owner: &str) -> Vec<String> {
        crate::routing::fan_out(&self.members, &self.me, owner)
    }

    /// The shell's handle of the link serving `peer` (its first), if linked.
    pub fn link_of(&self, peer: &str) -> Option<&H> {
        self.links.first(peer).map(|l| &l.handle)
    }

    /// The link table (round trips as of the snapshot).
    pub fn links(&self) -> &LinkTable<Link<H>> {
        &self.links
    }

    /// Whether `peer` has a link.
    pub fn is_linked(&self, peer: &str) -> bool {
        self.links.is_linked(peer)
    }

    /// How many links have peers of `role`.
    pub fn count_role(&self, role: Role) -> usize {
        self.links.count_role(role)
    }

    /// Control members: the alive members, ourselves included, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        self.status
    }
}

impl<H: Clone> NodeMachine<H> {
    /// Changes whenever the [`snapshot`](Self::snapshot) would.
    pub fn snapshot_stamp(&self) -> SnapshotStamp {
        SnapshotStamp {
            links: self.links.changes(),
            proxies: self.proxies.as_ref().map_or(0, |p| p.changes()),
            members: self.member_changes,
            workers: self.workers.changes(),
            status: self.status(),
        }
    }

    /// A copy of what routing and the getters read (see the module docs).
    pub fn snapshot(&self) -> Snapshot<H> {
        Snapshot {
            me: self.settings.me.clone(),
            is_control: self.proxies.is_some(),
            status: self.status(),
            members: self.members(),
            links: self.links.clone(),
            ring: self.proxies.as_ref().and_then(|p| p.shared_ring()),
            reconnecting: self
                .proxies
                .as_ref()
                .map(Proxies::reconnecting)
                .unwrap_or_default(),
            lost: self.workers.lost(),
        }
    }
}
