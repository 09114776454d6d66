//! The link table: which authenticated links a node has, per peer, and which one serves
//! what. A peer may have several links (an exclusive connection from a control node, a
//! hand-off in flight); requests go on the first. Between two control members only one
//! link is kept (see [`crate::mesh`]). `L` is the shell's handle of a link; the table
//! reads what it needs through [`LinkInfo`].
//!
//! The table is a persistent map: a copy (what the node's owner publishes for the request
//! path after every change) shares everything with the original and costs O(1); a
//! change costs O(log n), whatever the number of copies alive.

use rpds::{RedBlackTreeMapSync, RedBlackTreeSetSync};

use crate::handshake::Role;
use crate::mesh::{KeepLink, MeshLink, duplicate_link};

/// What the table needs to know of a link.
pub trait LinkInfo {
    /// Unique id of the connection.
    fn conn_id(&self) -> u64;
    /// The peer's authenticated role.
    fn role(&self) -> Role;
    /// Whether we dialed it.
    fn dialer(&self) -> bool;
    /// The peer's run (its handshake instance).
    fn instance(&self) -> u64;
}

/// What [`LinkTable::remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The link was in the table.
    pub listed: bool,
    /// No link to that peer is left.
    pub last: bool,
}

/// One peer's links, by connection id (the oldest connection first).
type PeerLinks<L> = RedBlackTreeMapSync<u64, L>;

/// The table. See the module docs.
#[derive(Debug, Clone)]
pub struct LinkTable<L> {
    me: String,
    me_control: bool,
    links: RedBlackTreeMapSync<String, PeerLinks<L>>,
    /// The peers with a control link: what [`control_links`](Self::control_links) walks
    /// (a control node's gossip goes to a hundred members, not to its thousands of
    /// workers' links).
    control_peers: RedBlackTreeSetSync<String>,
    /// Links per role (control, worker, admin).
    per_role: [usize; 3],
    /// Counts links added and removed.
    changes: u64,
}

fn mesh_link(l: &impl LinkInfo) -> MeshLink {
    MeshLink {
        dialed_by_me: l.dialer(),
        instance: l.instance(),
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Control => 0,
        Role::Worker => 1,
        Role::Admin => 2,
    }
}

impl<L: LinkInfo + Clone> LinkTable<L> {
    /// An empty table of node `me` (a control member when `me_control`).
    pub fn new(me: &str, me_control: bool) -> Self {
        LinkTable {
            me: me.to_owned(),
            me_control,
            links: RedBlackTreeMapSync::new_sync(),
            control_peers: RedBlackTreeSetSync::new_sync(),
            per_role: [0; 3],
            changes: 0,
        }
    }

    /// Adds an authenticated link to `peer`. Returns the link dropped under the
    /// one-link-per-pair rule between control members (the new one or the one it
    /// replaces; the shell closes it once idle), or `None`.
    #[must_use]
    pub fn add(&mut self, peer: &str, link: L) -> Option<L> {
        self.changes += 1;
        // A copy of a peer's links shares its tree: O(1).
        let mut links = self
            .links
            .get(peer)
            .cloned()
            .unwrap_or_else(RedBlackTreeMapSync::new_sync);
        let control = if self.me_control && link.role() == Role::Control {
            links.values().find(|l| l.role() == Role::Control).cloned()
        } else {
            None
        };
        let dropped = match control {
            Some(old) => match duplicate_link(&self.me, peer, mesh_link(&old), mesh_link(&link)) {
                KeepLink::New => {
                    // One control link for another: the counts stay.
                    links.remove_mut(&old.conn_id());
                    links.insert_mut(link.conn_id(), link);
                    Some(old)
                }
                KeepLink::Old => Some(link),
            },
            None => {
                self.per_role[role_index(link.role())] += 1;
                if link.role() == Role::Control {
                    self.control_peers.insert_mut(peer.to_owned());
                }
                links.insert_mut(link.conn_id(), link);
                None
            }
        };
        self.links.insert_mut(peer.to_owned(), links);
        dropped
    }

    /// Removes connection `conn_id` of `peer`.
    pub fn remove(&mut self, peer: &str, conn_id: u64) -> Removed {
        let Some(links) = self.links.get_mut(peer) else {
            return Removed {
                listed: false,
                last: true,
            };
        };
        let role = links.get(&conn_id).map(|l| l.role());
        let listed = links.remove_mut(&conn_id);
        let last = links.is_empty();
        if let Some(role) = role {
            self.per_role[role_index(role)] -= 1;
            self.changes += 1;
            if role == Role::Control && !links.values().any(|l| l.role() == Role::Control) {
                self.control_peers.remove_mut(peer);
            }
        }
        if last {
            self.links.remove_mut(peer);
        }
        Removed { listed, last }
    }

    /// How many times a link was added or removed: a copy taken at the same count
    /// lists the same links.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The link that serves `peer` (its oldest).
    pub fn first(&self, peer: &str) -> Option<&L> {
        self.links.get(peer)?.first().map(|(_, l)| l)
    }

    /// Connection `conn_id` of `peer`.
    pub fn link(&self, peer: &str, conn_id: u64) -> Option<&L> {
        self.links.get(peer)?.get(&conn_id)
    }

    /// Whether `peer` has a link.
    pub fn is_linked(&self, peer: &str) -> bool {
        self.links.contains_key(peer)
    }

    /// A link to a control node (a worker's or admin client's way into the cluster),
    /// the first by peer id.
    ///
    /// On the request path (routing asks it for every request a worker sends), so it
    /// walks down to the first entries without an iterator: an rpds iterator allocates
    /// its stack, twice here. The first control peer's first link is a control link
    /// (a peer's links share its role); the walk is the fallback if not.
    pub fn first_control(&self) -> Option<(&str, &L)> {
        let id = self.control_peers.first()?;
        match self.links.get(id).and_then(|links| links.first()) {
            Some((_, l)) if l.role() == Role::Control => Some((id.as_str(), l)),
            _ => self.control_links().next(),
        }
    }

    /// One link per control peer (its first control link), by peer id.
    pub fn control_links(&self) -> impl Iterator<Item = (&str, &L)> {
        self.control_peers.iter().filter_map(|id| {
            self.links
                .get(id)?
                .values()
                .find(|l| l.role() == Role::Control)
                .map(|l| (id.as_str(), l))
        })
    }

    /// How many links have peers of `role` (counted as they come and go: O(1)).
    pub fn count_role(&self, role: Role) -> usize {
        self.per_role[role_index(role)]
    }

    /// Every link of `peer`, the oldest first.
    pub fn links_of(&self, peer: &str) -> impl Iterator<Item = &L> {
        self.links.get(peer).into_iter().flat_map(|v| v.values())
    }

    /// Every link, by peer id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &L)> {
        self.links
            .iter()
            .flat_map(|(id, v)| v.values().map(move |l| (id.as_str(), l)))
    }

    /// Empties the table (a node stopping): every link.
    pub fn take_all(&mut self) -> Vec<L> {
        self.changes += 1;
        let all = self.iter().map(|(_, l)| l.clone()).collect();
        self.links = RedBlackTreeMapSync::new_sync();
        self.control_peers = RedBlackTreeSetSync::new_sync();
        self.per_role = [0; 3];
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct L(u64, Role, bool);

    impl LinkInfo for L {
        fn conn_id(&self) -> u64 {
            self.0
        }
        fn role(&self) -> Role {
            self.1
        }
        fn dialer(&self) -> bool {
            self.2
        }
        fn instance(&self) -> u64 {
            1
        }
    }

    #[test]
    fn the_first_link_serves_and_the_last_removal_says_so() {
        let mut t = LinkTable::new("c1", true);
        assert_eq!(t.add("w1", L(1, Role::Worker, false)), None);
        // An exclusive link to the same worker is a second one.
        assert_eq!(t.add("w1", L(2, Role::Worker, true)), None);
        assert_eq!(t.first("w1"), Some(&L(1, Role::Worker, false)));
        assert_eq!(t.links_of("w1").count(), 2);
        assert_eq!(
            t.remove("w1", 1),
            Removed {
                listed: true,
                last: false
            }
        );
        assert_eq!(t.first("w1"), Some(&L(2, Role::Worker, true)));
        assert_eq!(t.count_role(Role::Worker), 1);
        assert_eq!(
            t.remove("w1", 9),
            Removed {
                listed: false,
                last: false
            }
        );
        assert_eq!(
            t.remove("w1", 2),
            Removed {
                listed: true,
                last: true
            }
        );
        assert!(!t.is_linked("w1"));
        assert_eq!(
            t.remove("w1", 2),
            Removed {
                listed: false,
                last: true
            }
        );
    }

    #[test]
    fn two_control_members_keep_one_link_and_a_worker_keeps_both() {
        let mut t = LinkTable::new("c2", true);
        assert_eq!(t.add("c1", L(1, Role::Control, true)), None);
        // c1 dialed too: c1 is the smaller id, its link is kept, ours is dropped.
        assert_eq!(
            t.add("c1", L(2, Role::Control, false)),
            Some(L(1, Role::Control, true))
        );
        assert_eq!(t.first("c1"), Some(&L(2, Role::Control, false)));
        assert_eq!(t.count_role(Role::Control), 1);
        // A worker linked to a control node twice (its main link and an exclusive one
        // the control node dialed) keeps both.
        let mut w = LinkTable::new("w1", false);
        assert_eq!(w.add("c1", L(1, Role::Control, true)), None);
        assert_eq!(w.add("c1", L(2, Role::Control, false)), None);
        assert_eq!(w.links_of("c1").count(), 2);
    }

    #[test]
    fn the_first_control_link_is_the_first_control_peers_first_control_link() {
        let mut t = LinkTable::new("w9", false);
        assert_eq!(t.first_control(), None);
        assert_eq!(t.add("c3", L(1, Role::Control, true)), None);
        assert_eq!(t.add("a0", L(2, Role::Admin, false)), None);
        assert_eq!(t.first_control(), Some(("c3", &L(1, Role::Control, true))));
        assert_eq!(t.add("c2", L(5, Role::Control, true)), None);
        assert_eq!(t.first_control(), Some(("c2", &L(5, Role::Control, true))));
        // A peer whose oldest link is not a control one (not seen in practice: a peer's
        // links share its role): its first control link, by the walk.
        assert_eq!(t.add("c1", L(3, Role::Admin, false)), None);
        assert_eq!(t.add("c1", L(4, Role::Control, true)), None);
        assert_eq!(t.first_control(), Some(("c1", &L(4, Role::Control, true))));
        t.remove("c1", 4);
        assert_eq!(t.first_control(), Some(("c2", &L(5, Role::Control, true))));
        t.remove("c2", 5);
        t.remove("c3", 1);
        assert_eq!(t.first_control(), None);
    }

    #[test]
    fn control_links_and_iteration_are_by_peer_id() {
        let mut t = LinkTable::new("w9", false);
        for (peer, l) in [
            ("c3", L(1, Role::Control, true)),
            ("a1", L(2, Role::Admin, false)),
            ("c1", L(3, Role::Control, true)),
        ] {
            assert_eq!(t.add(peer, l), None);
        }
        assert_eq!(t.first_control(), Some(("c1", &L(3, Role::Control, true))));
        let ids: Vec<&str> = t.control_links().map(|(id, _)| id).collect();
        assert_eq!(ids, ["c1", "c3"]);
        // A peer's second control link: one entry, its first; gone with its last one.
        assert_eq!(t.add("c3", L(4, Role::Control, false)), None);
        let links: Vec<(&str, u64)> = t.control_links().map(|(id, l)| (id, l.0)).collect();
        assert_eq!(links, [("c1", 3), ("c3", 1)]);
        t.remove("c3", 1);
        let links: Vec<(&str, u64)> = t.control_links().map(|(id, l)| (id, l.0)).collect();
        assert_eq!(links, [("c1", 3), ("c3", 4)]);
        t.remove("c3", 4);
        let ids: Vec<&str> = t.control_links().map(|(id, _)| id).collect();
        assert_eq!(ids, ["c1"]);
        assert_eq!(t.add("c3", L(1, Role::Control, true)), None);
        let all: Vec<u64> = t.iter().map(|(_, l)| l.0).collect();
        assert_eq!(all, [2, 3, 1]);
        assert_eq!(
            (t.count_role(Role::Control), t.count_role(Role::Admin)),
            (2, 1)
        );
        let copy = t.clone();
        assert_eq!(t.take_all().len(), 3);
        assert_eq!(t.first_control(), None);
        assert_eq!(t.count_role(Role::Control), 0);
        // A copy taken before is untouched (it shares, it does not alias).
        assert_eq!(copy.count_role(Role::Control), 2);
        assert_eq!(copy.iter().count(), 3);
    }
}
