//! Control-plane membership: which control nodes exist and which are alive, as a sans-IO
//! state machine (issue 4 groundwork; the node does not drive it yet).
//!
//! Control nodes form a full mesh. Each keeps a view of every member it has heard of:
//! `(generation, incarnation, status, listen URLs)`. Direct links are the failure
//! detector: a link that dies (missed pings, see [`crate::conn`]) marks the member
//! [`Status::Down`] at once and, after `remove_after`, removes it. Views travel between
//! members as gossip and merge by a total order, so every member converges to the same
//! view once links are stable:
//!
//! - a higher `generation` (the member's start time, set by its shell) wins: a restart;
//! - then a higher `incarnation`: only a member raises its own, to refute a false `Down`
//!   or to announce its leave;
//! - then status precedence `Left > Down > Alive`.
//!
//! An explicit [`leave`](Membership::leave) is gossiped as `Left` with a higher
//! incarnation, so peers drop the member at once instead of waiting for failure
//! detection. Left and removed members are remembered as tombstones for `remove_after`
//! so that stale gossip cannot bring them back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Instant;

/// A member's status in a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Reachable.
    Alive,
    /// Observed dead (its link died); removed after `remove_after`.
    Down,
    /// Left on purpose.
    Left,
}

/// One member as views describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: String,
    /// Start time of the member's current run (wall ms); a restart raises it.
    pub generation: u64,
    /// Raised only by the member itself (refutation, leave).
    pub incarnation: u64,
    /// Status.
    pub status: Status,
    /// Listen URLs, to dial it.
    pub listen: Vec<String>,
}

impl MemberInfo {
    fn rank(&self) -> (u64, u64, Status) {
        (self.generation, self.incarnation, self.status)
    }
}

/// What changed, for the shell (dial, update the ring, move proxies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member became alive (first seen, back from down, or restarted).
    Up(String),
    /// A member is observed dead.
    Down(String),
    /// A member left on purpose.
    Left(String),
    /// A down member was removed after `remove_after`.
    Removed(String),
}

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// A down member is removed after this long; tombstones are kept as long.
    pub remove_after: Duration,
    /// Most members a view may hold (gossip beyond it is ignored).
    pub max_members: usize,
    /// Unlinked members (down ones included) are dialed again this often.
    pub redial_every: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            remove_after: Duration::from_secs(30),
            max_members: 1024,
            redial_every: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    info: MemberInfo,
    linked: bool,
    /// Down or left since (for removal and tombstone expiry).
    since: Option<Instant>,
    removed: bool,
}

/// The membership machine of one control node.
#[derive(Debug)]
pub struct Membership {
    me: MemberInfo,
    others: BTreeMap<String, Record>,
    config: MembershipConfig,
    events: VecDeque<MemberEvent>,
    gossip_due: bool,
    /// Members whose record changed since the last gossip (what the next one carries).
    changed: BTreeSet<String>,
    /// Members to dial now (see [`Membership::poll_dial`]).
    dial_now: std::collections::BTreeSet<String>,
    /// When every unlinked member is dialed again; `None` while nobody needs it.
    redial_at: Option<Instant>,
}

impl Membership {
    /// A view holding only ourselves, alive.
    pub fn new(id: &str, generation: u64, listen: Vec<String>, config: MembershipConfig) -> Self {
        Membership {
            me: MemberInfo {
                id: id.to_owned(),
                generation,
                incarnation: 0,
                status: Status::Alive,
                listen,
            },
            others: BTreeMap::new(),
            config,
            events: VecDeque::new(),
            gossip_due: false,
            changed: BTreeSet::new(),
            dial_now: std::collections::BTreeSet::new(),
            redial_at: None,
        }
    }

    /// Ids of the alive members, ourselves included, sorted: the ring's input.
    pub fn live(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .others
            .values()
            .filter(|r| !r.removed && r.info.status == Status::Alive)
            .map(|r| r.info.id.clone())
            .collect();
        if self.me.status == Status::Alive {
            v.push(self.me.id.clone());
        }
        v.sort();
        v
    }

    /// Members we have no direct link to and that have not left: the shell dials them
    /// (full mesh), and keeps redialing down ones until they are removed, since only a
    /// link proves a member alive again after a partition heals.
    pub fn to_dial(&self) -> Vec<&MemberInfo> {
        self.others
            .values()
            .filter(|r| !r.removed && !r.linked && r.info.status != Status::Left)
            .map(|r| &r.info)
            .collect()
    }

    /// Our own record.
    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    /// A direct link to a control node authenticated.
    pub fn handle_link_up(&mut self, _now: Instant, info: MemberInfo) {
        if info.id == self.me.id {
            return;
        }
        let id = info.id.clone();
        self.changed.insert(id.clone());
        let info = MemberInfo {
            status: Status::Alive,
            ..info
        };
        match self.others.get_mut(&id) {
            Some(r) => {
                let was_alive = !r.removed && r.info.status == Status::Alive;
                let before = r.info.clone();
                r.linked = true;
                // A link proves the member is alive in the run it announced.
                if info.generation >= r.info.generation {
                    let incarnation = if info.generation == r.info.generation {
                        info.incarnation.max(r.info.incarnation)
                    } else {
                        info.incarnation
                    };
                    r.info = MemberInfo {
                        incarnation,
                        ..info
                    };
                    r.since = None;
                    r.removed = false;
                }
                if !was_alive && r.info.status == Status::Alive {
                    self.events.push_back(MemberEvent::Up(id));
                }
                // Only news is gossiped: the shell calls this for every view a linked
                // member sends, and an unconditional gossip would echo forever.
                if was_alive && r.info == before {
                    return;
                }
            }
            None => {
                if self.others.len() >= self.config.max_members {
                    return;
                }
                self.others.insert(
                    id.clone(),
                    Record {
                        info,
                        linked: true,
                        since: None,
                        removed: false,
                    },
                );
                self.events.push_back(MemberEvent::Up(id));
            }
        }
        self.gossip_due = true;
    }

    /// A direct link to `id` died: the member is down from our point of view.
    pub fn handle_link_down(&mut self, now: Instant, id: &str) {
        let Some(r) = self.others.get_mut(id) else {
            return;
        };
        r.linked = false;
        if !r.removed && r.info.status == Status::Alive {
            r.info.status = Status::Down;
            r.since = Some(now);
            self.events.push_back(MemberEvent::Down(id.to_owned()));
            self.gossip_due = true;
            self.changed.insert(id.to_owned());
        }
        self.arm_redial(now);
    }

    /// Dialing `id` failed and we have no link to it: in a full mesh that is our own
    /// observation that it is unreachable, so an alive member becomes down (and keeps
    /// being dialed until it is removed).
    pub fn handle_dial_failed(&mut self, now: Instant, id: &str) {
        let Some(r) = self.others.get_mut(id) else {
            return;
        };
        if !r.linked && !r.removed && r.info.status == Status::Alive {
            r.info.status = Status::Down;
            r.since = Some(now);
            self.events.push_back(MemberEvent::Down(id.to_owned()));
            self.gossip_due = true;
            self.changed.insert(id.to_owned());
        }
        self.arm_redial(now);
    }

    /// Merges a view received from another member.
    pub fn handle_view(&mut self, now: Instant, view: &[MemberInfo]) {
        for info in view.iter().take(self.config.max_members) {
            if info.id == self.me.id {
                self.refute(info);
                continue;
            }
            self.merge(now, info);
        }
    }

    fn refute(&mut self, info: &MemberInfo) {
        // Someone believes we are down (or gone) in our current run: raise our
        // incarnation above theirs, alive, and say so.
        if self.me.status == Status::Alive
            && info.generation == self.me.generation
            && info.status != Status::Alive
            && info.incarnation >= self.me.incarnation
        {
            self.me.incarnation = info.incarnation + 1;
            self.gossip_due = true;
        }
    }

    fn merge(&mut self, now: Instant, info: &MemberInfo) {
        let before = self.events.len();
        self.merge_record(now, info);
        let came_up = self
            .events
            .iter()
            .skip(before)
            .any(|e| *e == MemberEvent::Up(info.id.clone()));
        if let Some(r) = self.others.get(&info.id)
            && !r.linked
            && !r.removed
            && r.info.status != Status::Left
        {
            // News of a member we have no link to: dial it now if it just came up, and in
            // any case on the next redial round.
            if came_up {
                self.dial_now.insert(info.id.clone());
            }
            self.arm_redial(now);
        }
    }

    fn arm_redial(&mut self, now: Instant) {
        if self.redial_at.is_none() {
            self.redial_at = Some(now + self.config.redial_every);
        }
    }

    fn merge_record(&mut self, now: Instant, info: &MemberInfo) {
        match self.others.get_mut(&info.id) {
            None => {
                if self.others.len() >= self.config.max_members {
                    return;
                }
                let alive = info.status == Status::Alive;
                self.others.insert(
                    info.id.clone(),
                    Record {
                        info: info.clone(),
                        linked: false,
                        since: (!alive).then_some(now),
                        removed: false,
                    },
                );
                if alive {
                    self.events.push_back(MemberEvent::Up(info.id.clone()));
                }
                self.gossip_due = true;
                self.changed.insert(info.id.clone());
            }
            Some(r) => {
                if info.rank() <= r.info.rank() {
                    return;
                }
                // Our own live link outranks hearsay that the member is down in the same
                // run; the member itself will refute it.
                if r.linked && info.status == Status::Down && info.generation == r.info.generation {
                    return;
                }
                let before = (!r.removed).then_some(r.info.status);
                r.info = info.clone();
                r.removed = false;
                r.since = (info.status != Status::Alive).then_some(now);
                let id = info.id.clone();
                match (before, info.status) {
                    (Some(Status::Alive), Status::Alive) => {}
                    (_, Status::Alive) => self.events.push_back(MemberEvent::Up(id)),
                    (Some(Status::Alive), Status::Down) => {
                        self.events.push_back(MemberEvent::Down(id))
                    }
                    (b, Status::Left) if b != Some(Status::Left) => {
                        self.events.push_back(MemberEvent::Left(id))
                    }
                    _ => {}
                }
                self.gossip_due = true;
                self.changed.insert(info.id.clone());
            }
        }
    }

    /// We leave: peers drop us at once when they get the next gossip.
    pub fn leave(&mut self) {
        if self.me.status != Status::Left {
            self.me.status = Status::Left;
            self.me.incarnation += 1;
            self.gossip_due = true;
        }
    }

    /// Removes down members and expires tombstones.
    pub fn handle_timeout(&mut self, now: Instant) {
        let after = self.config.remove_after;
        let mut expired = Vec::new();
        for (id, r) in self.others.iter_mut() {
            let Some(since) = r.since else { continue };
            if now.saturating_duration_since(since) < after {
                continue;
            }
            if !r.removed {
                r.removed = true;
                r.since = Some(now);
                if r.info.status == Status::Down {
                    self.events.push_back(MemberEvent::Removed(id.clone()));
                }
            } else {
                expired.push(id.clone());
            }
        }
        for id in expired {
            self.others.remove(&id);
        }
        if self.redial_at.is_some_and(|t| now >= t) {
            let ids: Vec<String> = self.to_dial().iter().map(|i| i.id.clone()).collect();
            self.redial_at = (!ids.is_empty()).then(|| now + self.config.redial_every);
            self.dial_now.extend(ids);
        }
    }

    /// Members to dial now: newly learned members without a link, and every unlinked
    /// member when a redial round is due. Each comes out once per round.
    #[must_use]
    pub fn poll_dial(&mut self) -> Vec<MemberInfo> {
        let ids = core::mem::take(&mut self.dial_now);
        ids.iter()
            .filter_map(|id| self.others.get(id))
            .filter(|r| !r.removed && !r.linked && r.info.status != Status::Left)
            .map(|r| r.info.clone())
            .collect()
    }

    /// When `handle_timeout` must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let removal = self
            .others
            .values()
            .filter_map(|r| r.since)
            .min()
            .map(|s| s + self.config.remove_after);
        match (removal, self.redial_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next change for the shell.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// The record of `id` as [`view`](Self::view) has it (ourselves included; not a
    /// removed member), without copying the view.
    pub fn record(&self, id: &str) -> Option<&MemberInfo> {
        if id == self.me.id {
            return Some(&self.me);
        }
        self.others.get(id).filter(|r| !r.removed).map(|r| &r.info)
    }

    /// The whole view now (ourselves first, tombstones included), whether or not it
    /// changed: for a newly linked member.
    pub fn view(&self) -> Vec<MemberInfo> {
        let mut v = vec![self.me.clone()];
        v.extend(
            self.others
                .values()
                .filter(|r| !r.removed)
                .map(|r| r.info.clone()),
        );
        v
    }

    /// When the view changed since the last call: the news, to send to every linked
    /// member: our own record first, then the records that changed since the last gossip
    /// (a new link gets the whole [`view`](Self::view) instead). Receivers merge whatever
    /// records come, so a change costs one record per member, not a whole view (with 128
    /// members joining at once, whole views made the join storm O(n^4)).
    #[must_use]
    pub fn poll_gossip(&mut self) -> Option<Vec<MemberInfo>> {
        if !self.gossip_due {
            return None;
        }
        self.gossip_due = false;
        let mut v = vec![self.me.clone()];
        let changed = std::mem::take(&mut self.changed);
        v.extend(
            changed
                .iter()
                .filter_map(|id| self.others.get(id))
                .filter(|r| !r.removed)
                .map(|r| r.info.clone()),
        );
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, generation: u64, incarnation: u64, status: Status) -> MemberInfo {
        MemberInfo {
            id: id.into(),
            generation,
            incarnation,
            status,
            listen: vec![format!("nkcluster://{id}:1972")],
        }
    }

    fn events(m: &mut Membership) -> Vec<MemberEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    fn cfg() -> MembershipConfig {
        MembershipConfig {
            remove_after: Duration::from_secs(10),
            ..Default::default()
        }
    }

    #[test]
    fn links_make_members_alive_and_gossip_spreads_them() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        let t = Instant::ZERO;
        a.handle_link_up(t, info("b", 1, 0, Status::Alive));
        assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
        // b tells a about c, whom a has no link to yet: a should dial it.
        a.handle_view(
            t,
            &[
                info("b", 1, 0, Status::Alive),
                info("c", 1, 0, Status::Alive),
            ],
        );
        assert_eq!(events(&mut a), [MemberEvent::Up("c".into())]);
        assert_eq!(a.live(), ["a", "b", "c"]);
        assert_eq!(
            a.to_dial()
                .iter()
                .map(|i| i.id.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        let g = a.poll_gossip().expect("view changed");
        assert_eq!(
            g.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(a.poll_gossip(), None);
    }

    #[test]
    fn a_view_that_brings_no_news_is_not_gossiped_back() {
        // The shell feeds every received view's sender record through handle_link_up:
        // gossiping after each one would echo between members forever.
        let mut a = Membership::new("a", 1, vec![], cfg());
        let t = Instant::ZERO;
        a.handle_link_up(t, info("b", 1, 0, Status::Alive));
        assert!(a.poll_gossip().is_some(), "a new member is news");
        let view = [info("b", 1, 0, Status::Alive), a.me().clone()];
        for _ in 0..3 {
            a.handle_link_up(t, view[0].clone());
            a.handle_view(t, &view);
            assert_eq!(a.poll_gossip(), None);
        }
        assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
        // A refutation (higher incarnation) is news again, and the gossip carries the
        // news only: our record, then b's (not c's, which did not change).
        a.handle_view(t, &[info("c", 1, 0, Status::Alive)]);
        let _ = a.poll_gossip();
        a.handle_link_up(t, info("b", 1, 1, Status::Alive));
        let g = a.poll_gossip().expect("news");
        assert_eq!(
            g.iter()
                .map(|i| (i.id.as_str(), i.incarnation))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 1)]
        );
        assert_eq!(a.view().len(), 3, "the whole view still has c");
    }

    #[test]
    fn a_dead_link_marks_down_then_removes_after_the_delay() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
        let _ = events(&mut a);
        a.handle_link_down(Instant::from_millis(1000), "b");
        assert_eq!(events(&mut a), [MemberEvent::Down("b".into())]);
        assert_eq!(a.live(), ["a"]);
        // A down member's record is still in the view, as is ours.
        assert_eq!(a.record("b"), Some(&info("b", 1, 0, Status::Down)));
        assert_eq!(a.record("a"), Some(a.me()));
        assert_eq!(a.record("z"), None);
        // Still dialed: after a partition heals only a new link brings it back.
        assert_eq!(a.to_dial().len(), 1);
        // Redial rounds (every 2 s) come before the removal at 11 s.
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(3_000)));
        a.handle_timeout(Instant::from_millis(10_999));
        assert_eq!(events(&mut a), []);
        a.handle_timeout(Instant::from_millis(11_000));
        assert_eq!(events(&mut a), [MemberEvent::Removed("b".into())]);
        assert_eq!(a.record("b"), None);
        assert!(a.view().iter().all(|r| r.id != "b"));
        // Removed: no more redials; the tombstone expires after another period.
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(12_999)));
        a.handle_timeout(Instant::from_millis(12_999));
        assert_eq!(a.poll_dial(), []);
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(21_000)));
        a.handle_timeout(Instant::from_millis(21_000));
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn an_unreachable_member_known_by_gossip_goes_down() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_view(Instant::ZERO, &[info("c", 1, 0, Status::Alive)]);
        let _ = events(&mut a);
        a.handle_dial_failed(Instant::from_millis(5), "c");
        assert_eq!(events(&mut a), [MemberEvent::Down("c".into())]);
        assert_eq!(a.live(), ["a"]);
        // A linked member is not marked down by a failed extra dial.
        a.handle_link_up(Instant::from_millis(6), info("b", 1, 0, Status::Alive));
        let _ = events(&mut a);
        a.handle_dial_failed(Instant::from_millis(7), "b");
        assert_eq!(events(&mut a), []);
    }

    #[test]
    fn new_members_are_dialed_at_once_and_unlinked_ones_every_round() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
        a.handle_view(Instant::ZERO, &[info("c", 1, 0, Status::Alive)]);
        // c is news without a link: dial it now; b is linked.
        let ids = |v: Vec<MemberInfo>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(a.poll_dial()), ["c"]);
        assert_eq!(a.poll_dial(), []);
        // The dial fails; the next round is 2 s after the member was learned.
        a.handle_dial_failed(Instant::from_millis(100), "c");
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(2_000)));
        a.handle_timeout(Instant::from_millis(1_999));
        assert_eq!(a.poll_dial(), []);
        a.handle_timeout(Instant::from_millis(2_000));
        assert_eq!(ids(a.poll_dial()), ["c"]);
        assert_eq!(a.poll_timeout(), Some(Instant::from_millis(4_000)));
        // Once linked, no more rounds are needed.
        a.handle_link_up(Instant::from_millis(2_100), info("c", 1, 0, Status::Alive));
        a.handle_timeout(Instant::from_millis(4_000));
        assert_eq!(a.poll_dial(), []);
        assert_eq!(a.poll_timeout(), None, "nothing down, nothing to redial");
    }

    #[test]
    fn explicit_leave_is_adopted_at_once() {
        let mut b = Membership::new("b", 1, vec![], cfg());
        b.leave();
        let g = b.poll_gossip().expect("leave is gossiped");
        assert_eq!(g[0].status, Status::Left);
        assert_eq!(g[0].incarnation, 1);
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
        let _ = events(&mut a);
        a.handle_view(Instant::from_millis(5), &g);
        assert_eq!(events(&mut a), [MemberEvent::Left("b".into())]);
        assert_eq!(a.live(), ["a"]);
        // Stale gossip saying b is alive (older incarnation) does not resurrect it.
        a.handle_view(Instant::from_millis(6), &[info("b", 1, 0, Status::Alive)]);
        assert_eq!(events(&mut a), []);
        assert_eq!(a.live(), ["a"]);
    }

    #[test]
    fn a_member_refutes_a_false_down() {
        let mut b = Membership::new("b", 7, vec![], cfg());
        b.handle_view(Instant::ZERO, &[info("b", 7, 0, Status::Down)]);
        let g = b.poll_gossip().expect("refutation");
        assert_eq!((g[0].status, g[0].incarnation), (Status::Alive, 1));
        // Peers that had b down take it back.
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_view(Instant::ZERO, &[info("b", 7, 0, Status::Down)]);
        assert_eq!(a.live(), ["a"]);
        a.handle_view(Instant::ZERO, &g);
        assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
        assert_eq!(a.live(), ["a", "b"]);
    }

    #[test]
    fn hearsay_does_not_override_a_live_link() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
        let _ = events(&mut a);
        a.handle_view(Instant::ZERO, &[info("b", 1, 0, Status::Down)]);
        assert_eq!(events(&mut a), []);
        assert_eq!(a.live(), ["a", "b"]);
    }

    #[test]
    fn a_restart_replaces_the_old_run() {
        let mut a = Membership::new("a", 1, vec![], cfg());
        a.handle_link_up(Instant::ZERO, info("b", 1, 5, Status::Alive));
        a.handle_link_down(Instant::from_millis(1), "b");
        let _ = events(&mut a);
        a.handle_link_up(Instant::from_millis(2), info("b", 2, 0, Status::Alive));
        assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
        // Gossip about the old run is now stale.
        a.handle_view(Instant::from_millis(3), &[info("b", 1, 9, Status::Down)]);
        assert_eq!(a.live(), ["a", "b"]);
    }

    proptest::proptest! {
        #[test]
        fn merging_is_order_independent(
            reports in proptest::collection::vec(
                (0usize..3, 1u64..4, 0u64..4, 0u8..3), 0..12),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let ids = ["b", "c", "d"];
            let reports: Vec<MemberInfo> = reports
                .into_iter()
                .map(|(i, g, inc, st)| {
                    let status = [Status::Alive, Status::Down, Status::Left][st as usize];
                    info(ids[i], g, inc, status)
                })
                .collect();
            let mut shuffled = reports.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut a = Membership::new("a", 1, vec![], cfg());
            let mut b = Membership::new("a", 1, vec![], cfg());
            for r in &reports { a.handle_view(Instant::ZERO, std::slice::from_ref(r)); }
            for r in &shuffled { b.handle_view(Instant::ZERO, std::slice::from_ref(r)); }
            proptest::prop_assert_eq!(a.view(), b.view());
            proptest::prop_assert_eq!(a.live(), b.live());
        }
    }

    #[test]
    fn views_converge_whatever_the_delivery_order() {
        // Every permutation of three conflicting reports about b ends in the same record.
        let reports = [
            info("b", 1, 0, Status::Alive),
            info("b", 1, 0, Status::Down),
            info("b", 1, 1, Status::Alive),
        ];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut finals = Vec::new();
        for o in orders {
            let mut a = Membership::new("a", 1, vec![], cfg());
            for i in o {
                a.handle_view(Instant::ZERO, std::slice::from_ref(&reports[i]));
            }
            finals.push(a.view());
        }
        assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
        assert_eq!(finals[0][1].incarnation, 1);
        assert_eq!(finals[0][1].status, Status::Alive);
    }
}
