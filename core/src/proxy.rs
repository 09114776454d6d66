//! Node proxies, as seen by one control node: which of the workers linked here it should
//! serve (it owns their ring partition) and how to hand the others to their owner.
//!
//! The machine knows the live control members (from [`membership`](crate::membership))
//! and the workers linked here; it computes the ring with [`ring::place`] and, for every
//! worker whose owner is another member, emits one hand-off [`Action`]:
//!
//! - [`Action::Adopt`]: the worker listens, so the owner is asked to dial it; when the
//!   owner reports success ([`Proxies::handle_adopted`]) the machine emits
//!   [`Action::Release`] (close our link; our pending requests end `proxy_moved`). If the
//!   owner cannot reach it, the machine falls back to a redirect.
//! - [`Action::Redirect`]: the worker has no reachable listener: it is told to reconnect
//!   to the owner, and our link is closed.
//!
//! A hand-off in progress is not repeated; a ring change that makes this node the owner
//! again cancels it.
//!
//! With a *ring settle* delay ([`Proxies::set_ring_settle`]), a change of the live members
//! ([`Proxies::members_changed`]) is placed only once the delay has passed since the
//! first change not placed yet: the changes in between (a join storm, both halves of a
//! split) make one placement and one round of hand-offs. The first member set is placed
//! at once (there is no ring to keep until then). Once every control node sees the same live members, each worker has
//! exactly one owner, and each non-owner hands it over: one proxy per worker.
//!
//! ```
//! use nkcluster_core::proxy::{Action, Proxies};
//! let mut p = Proxies::new("c1", 64);
//! p.set_members(&["c1".to_owned()]);
//! p.handle_worker_up("w1", false);
//! assert_eq!(p.poll_action(), None); // c1 alone owns everything
//! p.set_members(&["c1".to_owned(), "c2".to_owned()]);
//! // Whatever c2 now owns is handed over.
//! while let Some(a) = p.poll_action() {
//!     assert!(matches!(a, Action::Redirect { ref owner, .. } if owner == "c2"));
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rpds::RedBlackTreeSetSync;
use std::time::Duration;

use crate::ring::{self, Ring};
use crate::time::Instant;

/// What the shell must do for a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `owner` (over the mesh) to dial `worker`'s listen URLs and serve it; report
    /// the outcome with [`Proxies::handle_adopted`].
    Adopt {
        /// The worker.
        worker: String,
        /// Its owner.
        owner: String,
    },
    /// Tell `worker` to reconnect to `owner`, then close our link with it (pending
    /// requests end `proxy_moved`).
    Redirect {
        /// The worker.
        worker: String,
        /// Its owner.
        owner: String,
    },
    /// `owner` serves `worker` now: close our link with it (pending requests end
    /// `proxy_moved`).
    Release {
        /// The worker.
        worker: String,
        /// Its owner.
        owner: String,
    },
    /// We own `worker`, it listens and its link is gone: dial it at `urls`; report a
    /// failure with [`Proxies::handle_redial_failed`] (a success shows as the worker's
    /// link coming up).
    Redial {
        /// The worker.
        worker: String,
        /// Where it listens (as reached before).
        urls: Vec<String>,
    },
}

/// A worker we own whose link is gone, redialed until it is back.
#[derive(Debug)]
struct Lost {
    urls: Vec<String>,
    since: Instant,
    retry_at: Option<Instant>,
    /// Failed redials in a row (the backoff doubles with each).
    failures: u32,
}

/// The longest wait between two redials of a lost worker.
pub const REDIAL_MAX_DEFAULT: Duration = Duration::from_secs(30);

/// How long a lost worker is redialed before the control node stops (it may be gone
/// for good; it reconnects by itself when it comes back).
pub const REDIAL_FOR_DEFAULT: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Held {
    dialable: bool,
    /// Its ring partition (computed once: the partition count does not change).
    partition: u32,
    moving_to: Option<String>,
    /// The owner did not answer: the redirect is tried again at this instant.
    retry_at: Option<Instant>,
}

/// How long after an owner did not answer a redirect is tried again.
pub const RETRY_DEFAULT: Duration = Duration::from_secs(5);

/// The proxy bookkeeping of one control node.
#[derive(Debug)]
pub struct Proxies {
    me: String,
    partitions: u32,
    members: Vec<String>,
    ring: Option<Arc<Ring>>,
    workers: BTreeMap<String, Held>,
    lost: BTreeMap<String, Lost>,
    /// The `retry_at` of `workers` and of `lost`, by instant: what is due next is found
    /// in O(log n) instead of a pass over every worker held here (which every input of a
    /// control node holding thousands of workers paid).
    held_due: BTreeSet<(Instant, String)>,
    lost_due: BTreeSet<(Instant, String)>,
    actions: VecDeque<Action>,
    retry_after: Duration,
    redial_for: Duration,
    redial_max: Duration,
    /// The keys of `lost`, as a persistent set (a routing snapshot shares it).
    reconnecting: RedBlackTreeSetSync<String>,
    /// Counts changes of what routing reads (the ring, the workers being redialed).
    changes: u64,
    /// How long a member change waits before it is placed.
    ring_settle: Duration,
    /// Live members not placed yet, and when they will be.
    pending: Option<(Vec<String>, Instant)>,
}

impl Proxies {
    /// A machine for control node `me` with a ring of `partitions` (a power of two).
    pub fn new(me: &str, partitions: u32) -> Self {
        Proxies {
            me: me.into(),
            partitions,
            members: Vec::new(),
            ring: None,
            workers: BTreeMap::new(),
            lost: BTreeMap::new(),
            held_due: BTreeSet::new(),
            lost_due: BTreeSet::new(),
            actions: VecDeque::new(),
            retry_after: RETRY_DEFAULT,
            redial_for: REDIAL_FOR_DEFAULT,
            redial_max: REDIAL_MAX_DEFAULT,
            reconnecting: RedBlackTreeSetSync::new_sync(),
            changes: 0,
            ring_settle: Duration::ZERO,
            pending: None,
        }
    }

    /// Sets how long a change of the live members waits before it is placed (zero: at
    /// once).
    pub fn set_ring_settle(&mut self, settle: Duration) {
        self.ring_settle = settle;
    }

    /// The live control members changed (ourselves included), at `now`: they are placed
    /// at once without a settle delay or before the first placement, else when the delay
    /// since the first change not placed yet has passed ([`handle_timeout`]).
    ///
    /// [`handle_timeout`]: Self::handle_timeout
    pub fn members_changed(&mut self, now: Instant, live: &[String]) {
        if self.ring_settle.is_zero() || self.ring.is_none() {
            self.pending = None;
            self.set_members(live);
            return;
        }
        let due = self
            .pending
            .as_ref()
            .map_or(now + self.ring_settle, |(_, due)| *due);
        self.pending = Some((live.to_vec(), due));
    }

    /// The live members the ring was placed for (sorted).
    pub fn placed_members(&self) -> &[String] {
        &self.members
    }

    /// Sets how long a lost worker is redialed.
    pub fn set_redial_for(&mut self, redial_for: Duration) {
        self.redial_for = redial_for;
    }

    /// Sets the longest wait between two redials of a lost worker.
    pub fn set_redial_max(&mut self, redial_max: Duration) {
        self.redial_max = redial_max;
    }

    /// Sets how long after an owner did not answer a redirect is tried again (the
    /// shell uses its ping interval).
    pub fn set_retry_after(&mut self, retry_after: Duration) {
        self.retry_after = retry_after;
    }

    /// The live control members changed (ourselves included): recompute the ring and
    /// re-evaluate every worker held here.
    pub fn set_members(&mut self, live: &[String]) {
        let mut live = live.to_vec();
        live.sort();
        live.dedup();
        if live == self.members {
            return;
        }
        self.ring = ring::place(self.partitions, &live).map(Arc::new);
        self.members = live;
        self.changes += 1;
        // Lost workers now owned elsewhere are their new owner's to wait for.
        let me = self.me.clone();
        let ring = self.ring.clone();
        let lost_due = &mut self.lost_due;
        self.lost.retain(|w, l| {
            let keep = ring
                .as_ref()
                .and_then(|r| r.owner_of(w))
                .is_none_or(|o| o == me);
            if !keep && let Some(t) = l.retry_at {
                lost_due.remove(&(t, w.clone()));
            }
            keep
        });
        self.reconnecting = self.lost.keys().cloned().collect();
        let ids: Vec<String> = self.workers.keys().cloned().collect();
        for w in ids {
            self.evaluate(&w);
        }
    }

    /// Workers linked here whose proxy we are (some may be on their way to their owner).
    pub fn held(&self) -> usize {
        self.workers.len()
    }

    /// The current ring (`None` before the first member set).
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_deref()
    }

    /// The current ring, shared (what a routing snapshot keeps).
    pub fn shared_ring(&self) -> Option<Arc<Ring>> {
        self.ring.clone()
    }

    /// How many times what routing reads (the ring, the workers being redialed) has
    /// changed: a snapshot taken at the same count is still exact.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The workers being redialed (see [`is_reconnecting`](Self::is_reconnecting)), as
    /// a persistent set: a copy costs O(1).
    pub fn reconnecting(&self) -> RedBlackTreeSetSync<String> {
        self.reconnecting.clone()
    }

    /// The control node that should serve `worker` (ourselves while there is no ring).
    pub fn owner_of(&self, worker: &str) -> &str {
        self.ring
            .as_deref()
            .and_then(|r| r.owner_of(worker))
            .unwrap_or(&self.me)
    }

    /// Whether `worker` is linked here and being handed over.
    pub fn moving_to(&self, worker: &str) -> Option<&str> {
        self.workers.get(worker)?.moving_to.as_deref()
    }

    /// A worker linked to us (its first link). `dialable`: it has a listen URL we could
    /// give to another control node.
    pub fn handle_worker_up(&mut self, worker: &str, dialable: bool) {
        if let Some(l) = self.lost.remove(worker) {
            self.unindex_lost(worker, l.retry_at);
            self.reconnecting.remove_mut(worker);
            self.changes += 1;
        }
        let held = Held {
            dialable,
            partition: ring::partition_of(worker, self.partitions),
            moving_to: None,
            retry_at: None,
        };
        if let Some(old) = self.workers.insert(worker.into(), held) {
            self.unindex_held(worker, old.retry_at);
        }
        self.evaluate(worker);
    }

    /// A worker's last link to us ended. `urls`: where it listens, as reached (empty:
    /// it does not listen). When we own it and it listens, it is redialed at once, then
    /// with backoff (the retry delay, doubled after every failure up to `redial_max`)
    /// for `redial_for`, until its link is back.
    pub fn handle_worker_down(&mut self, now: Instant, worker: &str, urls: Vec<String>) {
        if let Some(old) = self.workers.remove(worker) {
            self.unindex_held(worker, old.retry_at);
        }
        if urls.is_empty() || self.owner_of(worker) != self.me {
            return;
        }
        self.actions.push_back(Action::Redial {
            worker: worker.to_owned(),
            urls: urls.clone(),
        });
        let lost = Lost {
            urls,
            since: now,
            retry_at: None,
            failures: 0,
        };
        if let Some(old) = self.lost.insert(worker.to_owned(), lost) {
            self.unindex_lost(worker, old.retry_at);
        }
        self.reconnecting.insert_mut(worker.to_owned());
        self.changes += 1;
    }

    /// A redial of a lost worker failed: again after the backoff delay (the retry delay
    /// after the first failure, doubled after each next one, at most `redial_max`),
    /// unless it has been lost for `redial_for`.
    pub fn handle_redial_failed(&mut self, now: Instant, worker: &str) {
        let (retry_after, redial_for, max) = (self.retry_after, self.redial_for, self.redial_max);
        if let Some(l) = self.lost.get_mut(worker) {
            let before = l.retry_at;
            if now.saturating_duration_since(l.since) >= redial_for {
                self.lost.remove(worker);
                self.unindex_lost(worker, before);
                self.reconnecting.remove_mut(worker);
                self.changes += 1;
            } else {
                let doubled = retry_after.saturating_mul(1u32 << l.failures.min(20));
                l.failures = l.failures.saturating_add(1);
                let at = now + doubled.min(max.max(retry_after));
                l.retry_at = Some(at);
                self.unindex_lost(worker, before);
                self.lost_due.insert((at, worker.to_owned()));
            }
        }
    }

    /// Stops redialing `worker` (an operator removed it); returns whether it was being
    /// redialed.
    pub fn forget(&mut self, worker: &str) -> bool {
        match self.lost.remove(worker) {
            Some(l) => {
                self.unindex_lost(worker, l.retry_at);
                self.reconnecting.remove_mut(worker);
                self.changes += 1;
                true
            }
            None => false,
        }
    }

    /// Whether `worker` is ours, lost, and being redialed (requests to it fail
    /// `not_connected` meanwhile).
    pub fn is_reconnecting(&self, worker: &str) -> bool {
        self.lost.contains_key(worker)
    }

    /// The outcome of an [`Action::Adopt`]: `ok` when `owner` now holds a link to
    /// `worker`. Success releases our link; failure falls back to a redirect. Stale
    /// outcomes (the ring moved on meanwhile) are ignored.
    pub fn handle_adopted(&mut self, worker: &str, owner: &str, ok: bool) {
        let Some(h) = self.workers.get_mut(worker) else {
            return;
        };
        if h.moving_to.as_deref() != Some(owner) {
            return;
        }
        let (worker, owner) = (worker.into(), owner.into());
        self.actions.push_back(if ok {
            Action::Release { worker, owner }
        } else {
            Action::Redirect { worker, owner }
        });
    }

    /// The owner of a hand-off in progress did not answer (it may hang, or not be
    /// linked yet): the worker stays here, and the redirect is tried again after the
    /// retry delay unless the ring moves on first. Stale reports are ignored.
    pub fn handle_owner_silent(&mut self, now: Instant, worker: &str, owner: &str) {
        if let Some(h) = self.workers.get_mut(worker)
            && h.moving_to.as_deref() == Some(owner)
        {
            let (before, at) = (h.retry_at, now + self.retry_after);
            h.retry_at = Some(at);
            self.unindex_held(worker, before);
            self.held_due.insert((at, worker.to_owned()));
        }
    }

    /// Advances time: redirects and redials whose retry is due go out again.
    /// Redials first, then redirects, each by worker id.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((live, due)) = self.pending.take() {
            if now >= due {
                self.set_members(&live);
            } else {
                self.pending = Some((live, due));
            }
        }
        for worker in take_due(&mut self.lost_due, now) {
            if let Some(l) = self.lost.get_mut(&worker) {
                l.retry_at = None;
                self.actions.push_back(Action::Redial {
                    urls: l.urls.clone(),
                    worker,
                });
            }
        }
        for worker in take_due(&mut self.held_due, now) {
            if let Some(h) = self.workers.get_mut(&worker) {
                h.retry_at = None;
                if let Some(owner) = &h.moving_to {
                    self.actions.push_back(Action::Redirect {
                        owner: owner.clone(),
                        worker,
                    });
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next (O(log n)).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first = |s: &BTreeSet<(Instant, String)>| s.first().map(|(t, _)| *t);
        [
            first(&self.held_due),
            first(&self.lost_due),
            self.pending.as_ref().map(|(_, due)| *due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn unindex_held(&mut self, worker: &str, retry_at: Option<Instant>) {
        if let Some(t) = retry_at {
            self.held_due.remove(&(t, worker.to_owned()));
        }
    }

    fn unindex_lost(&mut self, worker: &str, retry_at: Option<Instant>) {
        if let Some(t) = retry_at {
            self.lost_due.remove(&(t, worker.to_owned()));
        }
    }

    /// Next hand-off to carry out.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn evaluate(&mut self, worker: &str) {
        let Some(h) = self.workers.get_mut(worker) else {
            return;
        };
        let owner = self
            .ring
            .as_deref()
            .and_then(|r| r.owner(h.partition))
            .unwrap_or(&self.me);
        if owner == self.me {
            h.moving_to = None;
            if let Some(t) = h.retry_at.take() {
                self.held_due.remove(&(t, worker.to_owned()));
            }
            return;
        }
        if h.moving_to.as_deref() == Some(owner) {
            return;
        }
        let owner = owner.to_owned();
        h.moving_to = Some(owner.clone());
        if let Some(t) = h.retry_at.take() {
            self.held_due.remove(&(t, worker.to_owned()));
        }
        let worker = worker.into();
        self.actions.push_back(if h.dialable {
            Action::Adopt { worker, owner }
        } else {
            Action::Redirect { worker, owner }
        });
    }
}

/// Removes the entries of `due` at or before `now`; returns their workers, sorted.
fn take_due(due: &mut BTreeSet<(Instant, String)>, now: Instant) -> Vec<String> {
    let mut workers = Vec::new();
    while let Some((t, _)) = due.first()
        && *t <= now
    {
        if let Some((_, w)) = due.pop_first() {
            workers.push(w);
        }
    }
    workers.sort();
    workers
}

#[cfg(test)]
mod tests;
