//! Rules of the control mesh's links. Control nodes form a full mesh, and both ends of a
//! pair may dial at the same moment (each learns of the other from gossip, or one dials
//! its `cluster_addr` while the other dials the member it just learned of). One link per
//! pair is kept: the one dialed by the smaller node id. Both ends apply the same rule to
//! the same two links, so they keep the same one without talking about it.
//!
//! Except across a restart: a link from another run of the peer (another handshake
//! `instance`) is replaced by the new one whoever dialed it. The old link belongs to a run
//! that is gone (a crashed peer's link lingers until its idle timeout); keeping it made
//! the restarted member's every dial bounce (up, then down at once) until that timeout.
//! The restarted end has no old link, so both ends keep the new one.

/// Which of two links between the same two control nodes to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepLink {
    /// The link that was there first.
    Old,
    /// The link that just authenticated.
    New,
}

/// One link between two control nodes, as [`duplicate_link`] weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshLink {
    /// Whether this end dialed it.
    pub dialed_by_me: bool,
    /// The peer's run, as its handshake announced it.
    pub instance: u64,
}

/// A second link between control nodes `me` and `peer` authenticated while `old` was up.
/// The new link replaces the old one when the peer announced another run on it (it
/// restarted), or when it was dialed by the smaller id and the old one was not;
/// otherwise the old stays.
pub fn duplicate_link(me: &str, peer: &str, old: MeshLink, new: MeshLink) -> KeepLink {
    if old.instance != new.instance {
        return KeepLink::New;
    }
    let preferred = |dialed_by_me: bool| dialed_by_me == (me < peer);
    if preferred(new.dialed_by_me) && !preferred(old.dialed_by_me) {
        KeepLink::New
    } else {
        KeepLink::Old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(me: &str, peer: &str, old: bool, new: bool) -> KeepLink {
        let l = |dialed_by_me| MeshLink {
            dialed_by_me,
            instance: 7,
        };
        duplicate_link(me, peer, l(old), l(new))
    }

    #[test]
    fn both_ends_keep_the_link_the_smaller_id_dialed() {
        // c1 dialed link A, c2 dialed link B. c1 sees A as old (it dialed it), B new.
        assert_eq!(dup("c1", "c2", true, false), KeepLink::Old);
        // c2 sees the same two links from the other end: A (not dialed by c2) came
        // first at c2 too, or second; either way c2 keeps A.
        assert_eq!(dup("c2", "c1", false, true), KeepLink::Old);
        assert_eq!(dup("c2", "c1", true, false), KeepLink::New);
        assert_eq!(dup("c1", "c2", false, true), KeepLink::New);
        // Two links dialed from the same end: the first stays.
        assert_eq!(dup("c1", "c2", true, true), KeepLink::Old);
        assert_eq!(dup("c2", "c1", true, true), KeepLink::Old);
    }

    #[test]
    fn a_link_from_a_new_run_of_the_peer_replaces_the_old_one() {
        // c2 restarted (run 8) and dialed c1, which still holds the link it dialed to
        // c2's run 7: by the dialer rule c1 would keep the dead link.
        let old = MeshLink {
            dialed_by_me: true,
            instance: 7,
        };
        let new = MeshLink {
            dialed_by_me: false,
            instance: 8,
        };
        assert_eq!(duplicate_link("c1", "c2", old, new), KeepLink::New);
        assert_eq!(duplicate_link("c2", "c1", old, new), KeepLink::New);
    }
}
