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
//! - a higher `generation` (the member's start time, set by its shell) wins: a restart
//!   (a member that hears of an earlier run of its own with a higher generation, its
//!   wall clock having been set back, takes the next generation above it);
//! - then a higher `incarnation`: only a member raises its own, to refute a false `Down`
//!   or to announce its leave;
//! - then status precedence `Left > Down > Alive`.
//!
//! An explicit [`leave`](Membership::leave) is gossiped as `Left` with a higher
//! incarnation, so peers drop the member at once instead of waiting for failure
//! detection. Left and removed members are remembered as tombstones for `remove_after`
//! so that stale gossip cannot bring them back (a live link from the member does).

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
    /// A control member dials the entries of its `cluster_addr` that no member linked to
    /// it announces this often (see the node machine's seed rounds).
    pub seeds_every: Duration,
    /// Gossip goes out at most this often: news that comes within it waits and goes in
    /// the next gossip, together (zero: after every input that brought news). When a
    /// link change reaches every member at nearly the same time (a join storm, a split),
    /// each member's news otherwise went out one record at a time to every link.
    pub gossip_every: Duration,
    /// How long the ring waits after a change of the live members before it is placed
    /// again, so that the changes of a join storm or a split make one placement (and one
    /// round of hand-offs) instead of one each. Zero: at once (the default, so a crash
    /// moves its workers without delay). See [`crate::proxy`].
    pub ring_settle: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            remove_after: Duration::from_secs(30),
            max_members: 1024,
            redial_every: Duration::from_secs(2),
            seeds_every: Duration::from_secs(10),
            ring_settle: Duration::ZERO,
            gossip_every: Duration::ZERO,
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
    /// No gossip goes out before this (see [`MembershipConfig::gossip_every`]).
    gossip_next: Option<Instant>,
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
            gossip_next: None,
            changed: BTreeSet::new(),
            dial_now: std::collections::BTreeSet::new(),
            redial_at: None,
        }
    }

    /// Records of other members held (alive, down, left or removed tombstones): at most
    /// `max_members`.
    pub fn records(&self) -> usize {
        self.others.len()
    }

    /// The settings.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
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
        let info = MemberInfo {
            status: Status::Alive,
            ..info
        };
        match self.others.get_mut(&id) {
            Some(r) => {
                let was_alive = !r.removed && r.info.status == Status::Alive;
                let before = r.info.clone();
                r.linked = true;
                // A link proves the member is alive in the run it announced; a removed
                // member is back whatever its generation (its clock may have gone back
                // across a restart: tombstones only stop stale gossip).
                if info.generation >= r.info.generation || r.removed {
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
                    self.events.push_back(MemberEvent::Up(id.clone()));
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
                self.events.push_back(MemberEvent::Up(id.clone()));
            }
        }
        // Only now is it news (see above): what the next gossip carries.
        self.changed.insert(id);
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
        // A record of an earlier run of ours that outranks this one: our wall clock was
        // set back across the restart. Nobody would take this run for alive (the old
        // record wins every merge), so it becomes the next generation.
        if self.me.status == Status::Alive && info.generation > self.me.generation {
            self.me.generation = info.generation + 1;
            self.me.incarnation = 0;
            self.gossip_due = true;
            return;
        }
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
        let gossip = self.gossip_next.filter(|_| self.gossip_due);
        [removal, self.redial_at, gossip]
            .into_iter()
            .flatten()
            .min()
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

    /// When the view changed since the last call (and, with `gossip_every`, the last
    /// gossip is that long ago): the news, to send to every linked
    /// member: our own record first, then the records that changed since the last gossip
    /// (a new link gets the whole [`view`](Self::view) instead). Receivers merge whatever
    /// records come, so a change costs one record per member, not a whole view (with 128
    /// members joining at once, whole views made the join storm O(n^4)).
    #[must_use]
    pub fn poll_gossip(&mut self, now: Instant) -> Option<Vec<MemberInfo>> {
        if !self.gossip_due || self.gossip_next.is_some_and(|t| now < t) {
            return None;
        }
        self.gossip_due = false;
        let every = self.config.gossip_every;
        self.gossip_next = (!every.is_zero()).then(|| now + every);
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
mod tests;
