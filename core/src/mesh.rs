//! Rules of links between nodes with ids: which node id may hold a link, and which of two
//! links between the same two control members to keep.
//!
//! **Identity.** A node id names one process at a time. When a link authenticates for
//! an id that is already linked from another run (another handshake `instance`), the
//! old link decides ([`same_id`]): a link already known dead is replaced at once; a live
//! one is probed first (an echo request with a short deadline). If the old link answers,
//! the id is in use by a live process and the new link is refused ([`after_probe`]):
//! closed with the stable code `duplicate_node_id`, which its dialer reports and backs
//! off from like an authentication refusal. If the old link is silent or fails, it
//! belonged to a run that is gone (a node killed and started again): it is closed and
//! the new link replaces it. So a restarted node replaces its own old link within the
//! probe deadline (at once when its old socket was closed), and an impostor reusing a
//! live id does not get in. Links of the same run follow the rules below.
//!
//! **One link per pair of control members.** Control nodes form a full mesh, and both
//! ends of a pair may dial at the same moment (each learns of the other from gossip, or
//! one dials its `cluster_addr` while the other dials the member it just learned of).
//! One link per pair is kept: the one dialed by the smaller node id. Both ends apply the
//! same rule to the same two links, so they keep the same one without talking about it.
//! A link from another run of the peer never reaches this rule: the identity rule above
//! has settled it first (the old link is gone, or the new one refused); should one get
//! here anyway, the new run's link is kept.

/// What to do with a link that authenticated for a node id already linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameId {
    /// The same run of the peer: both links are weighed as usual (one per pair of control
    /// members, every link of a worker).
    SameRun,
    /// Another run, and the old link is known dead: the new link replaces it now.
    Replace,
    /// Another run, and the old link may be alive: hold the new link and probe the old.
    Probe,
}

/// A link of `new_instance` authenticated for an id linked with `old_instance`;
/// `old_dead` when the old link is known dead (closed, or silent past its idle timeout).
pub fn same_id(old_instance: u64, new_instance: u64, old_dead: bool) -> SameId {
    if old_instance == new_instance {
        SameId::SameRun
    } else if old_dead {
        SameId::Replace
    } else {
        SameId::Probe
    }
}

/// How the probe of the old link settles a held new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// The old link answered: its process lives, and the new link is refused with
    /// `duplicate_node_id`.
    RefuseNew,
    /// The old link did not answer in time (or failed): it is closed and the new link
    /// takes its place.
    ReplaceOld,
}

/// The probe of the old link `answered` in time, or not.
pub fn after_probe(answered: bool) -> ProbeVerdict {
    if answered {
        ProbeVerdict::RefuseNew
    } else {
        ProbeVerdict::ReplaceOld
    }
}

/// The reason a refused duplicate link is closed with; its dialer recognises it with
/// [`is_duplicate_refusal`].
pub fn duplicate_reason(node: &str) -> String {
    format!(
        "{}: node id {node} is already linked from another process",
        DUPLICATE_NODE_ID
    )
}

/// The stable code of a link refused because its node id is in use by a live process.
pub const DUPLICATE_NODE_ID: &str = "duplicate_node_id";

/// Whether a link that ended with `error` was refused as a duplicate node id (the dialer
/// then backs off as after an authentication refusal instead of redialing at once).
pub fn is_duplicate_refusal(error: Option<&crate::conn::ConnError>) -> bool {
    matches!(error, Some(crate::conn::ConnError::PeerClosed(r)) if r.starts_with(DUPLICATE_NODE_ID))
}

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
/// The new link replaces the old one when it was dialed by the smaller id and the old one
/// was not, otherwise the old stays; a link of another run of the peer (settled by
/// [`same_id`] before this) is kept.
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
    fn another_run_of_an_id_is_probed_unless_its_old_link_is_dead() {
        assert_eq!(same_id(7, 7, false), SameId::SameRun);
        assert_eq!(same_id(7, 7, true), SameId::SameRun);
        assert_eq!(same_id(7, 8, true), SameId::Replace);
        assert_eq!(same_id(7, 8, false), SameId::Probe);
        assert_eq!(
            crate::error::ErrorCode::DuplicateNodeId.as_str(),
            DUPLICATE_NODE_ID
        );
        assert_eq!(after_probe(true), ProbeVerdict::RefuseNew);
        assert_eq!(after_probe(false), ProbeVerdict::ReplaceOld);
    }

    #[test]
    fn a_refused_duplicate_is_recognised_by_its_close_reason() {
        use crate::conn::ConnError;
        let r = duplicate_reason("w1");
        assert_eq!(
            r,
            "duplicate_node_id: node id w1 is already linked from another process"
        );
        assert!(is_duplicate_refusal(Some(&ConnError::PeerClosed(r))));
        assert!(!is_duplicate_refusal(Some(&ConnError::PeerClosed(
            "node shutting down".into()
        ))));
        assert!(!is_duplicate_refusal(Some(&ConnError::TransportClosed(
            "duplicate_node_id".into()
        ))));
        assert!(!is_duplicate_refusal(None));
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
