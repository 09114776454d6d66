//! Rules of the control mesh's links. Control nodes form a full mesh, and both ends of a
//! pair may dial at the same moment (each learns of the other from gossip, or one dials
//! its `cluster_addr` while the other dials the member it just learned of). One link per
//! pair is kept: the one dialed by the smaller node id. Both ends apply the same rule to
//! the same two links, so they keep the same one without talking about it.

/// Which of two links between the same two control nodes to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepLink {
    /// The link that was there first.
    Old,
    /// The link that just authenticated.
    New,
}

/// A second link between control nodes `me` and `peer` authenticated while `old` was up;
/// `*_dialed_by_me` says which end dialed each. The new link replaces the old one only
/// when it was dialed by the smaller id and the old one was not; otherwise the old stays.
pub fn duplicate_link(
    me: &str,
    peer: &str,
    old_dialed_by_me: bool,
    new_dialed_by_me: bool,
) -> KeepLink {
    let preferred = |dialed_by_me: bool| dialed_by_me == (me < peer);
    if preferred(new_dialed_by_me) && !preferred(old_dialed_by_me) {
        KeepLink::New
    } else {
        KeepLink::Old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_keep_the_link_the_smaller_id_dialed() {
        // c1 dialed link A, c2 dialed link B. c1 sees A as old (it dialed it), B new.
        assert_eq!(duplicate_link("c1", "c2", true, false), KeepLink::Old);
        // c2 sees the same two links from the other end: A (not dialed by c2) came
        // first at c2 too, or second; either way c2 keeps A.
        assert_eq!(duplicate_link("c2", "c1", false, true), KeepLink::Old);
        assert_eq!(duplicate_link("c2", "c1", true, false), KeepLink::New);
        assert_eq!(duplicate_link("c1", "c2", false, true), KeepLink::New);
        // Two links dialed from the same end: the first stays.
        assert_eq!(duplicate_link("c1", "c2", true, true), KeepLink::Old);
        assert_eq!(duplicate_link("c2", "c1", true, true), KeepLink::Old);
    }
}
