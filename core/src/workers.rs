//! What a control node remembers about the workers whose events it hears: the job
//! classes that have seen each worker (they hear its node-level news, `not_connected`
//! included), its last status and its last information report. Bounded: a worker whose
//! link is gone is forgotten after `forget_after` (its classes were told
//! `not_connected`), and at most `max_workers` are remembered (the longest-gone is
//! forgotten first; a new worker beyond the limit is not remembered). Each worker's set
//! of classes is bounded too (`max_classes`): an event of one more class is refused with
//! [`TooManyClasses`] (see [`Workers::check_class`]).
//!
//! `I` is the information report's type (the shell's).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rpds::RedBlackTreeSetSync;
use thiserror::Error;

use crate::time::Instant;

/// The class name of node-level events (status, information).
pub const NODE_CLASS: &str = "nkcluster";

/// Limits of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkersConfig {
    /// Workers remembered at once.
    pub max_workers: usize,
    /// A worker whose link is gone is forgotten after this long.
    pub forget_after: Duration,
    /// Distinct job classes one worker may send events of.
    pub max_classes: usize,
}

/// A worker sent an event of one class more than it may (`too_many_classes`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("too_many_classes: {worker} already sent events of {max} classes")]
pub struct TooManyClasses {
    /// The worker.
    pub worker: String,
    /// The limit.
    pub max: usize,
}

impl TooManyClasses {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        "too_many_classes"
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            max_workers: 100_000,
            forget_after: Duration::from_secs(600),
            max_classes: 64,
        }
    }
}

/// What an event says about its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerNews<'a, I> {
    /// A class's own event (task events included).
    Class(&'a str),
    /// The worker's status changed.
    Status(&'a str),
    /// Other node-level news (no change to what is remembered).
    Node,
    /// The worker's information report (with its status).
    Info {
        /// The status it reports.
        status: &'a str,
        /// The report.
        info: I,
    },
}

/// How a gone worker was last seen: what its last link said (what `nodes` lists of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastSeen {
    /// Transport and remote address of its last link.
    pub remote: String,
    /// Its listen URLs.
    pub listen: Vec<String>,
    /// Its metadata.
    pub meta: String,
}

/// A gone worker as the book remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneWorker<'a, I> {
    /// Its id.
    pub id: &'a str,
    /// Its link is gone since.
    pub since: Instant,
    /// What its last link said.
    pub seen: &'a LastSeen,
    /// Its last information report.
    pub info: Option<&'a I>,
}

#[derive(Debug, Clone)]
struct Worker<I> {
    classes: BTreeSet<String>,
    status: String,
    info: Option<I>,
    /// Set while its link is gone. Boxed: most workers remembered are linked, and a
    /// linked one's record should not keep room for it.
    gone: Option<Box<Gone>>,
}

/// A worker's link is gone: since when, and what that link said.
#[derive(Debug, Clone)]
struct Gone {
    since: Instant,
    seen: LastSeen,
}

/// The book. See the module docs.
#[derive(Debug)]
pub struct Workers<I> {
    config: WorkersConfig,
    /// Each record boxed: the map's nodes keep room for up to eleven entries, and an
    /// entry is then a pointer, not a whole record (with its information report).
    workers: BTreeMap<String, Box<Worker<I>>>,
    /// The gone workers by the time their link ended (oldest first): forgetting and
    /// making room look at the front only.
    gone: BTreeSet<(Instant, String)>,
    /// The gone workers' ids, as a persistent set (a routing snapshot shares it).
    lost: RedBlackTreeSetSync<String>,
    /// Counts changes of `lost`.
    changes: u64,
}

impl<I: Clone> Workers<I> {
    /// An empty book.
    pub fn new(config: WorkersConfig) -> Self {
        Workers {
            config,
            workers: BTreeMap::new(),
            gone: BTreeSet::new(),
            lost: RedBlackTreeSetSync::new_sync(),
            changes: 0,
        }
    }

    /// Whether `worker` may send an event of `class`: a class it has sent before, or one
    /// more while it has fewer than `max_classes`.
    pub fn check_class(&self, worker: &str, class: &str) -> Result<(), TooManyClasses> {
        match self.workers.get(worker) {
            Some(w) if w.classes.len() >= self.config.max_classes && !w.classes.contains(class) => {
                Err(TooManyClasses {
                    worker: worker.to_owned(),
                    max: self.config.max_classes,
                })
            }
            _ => Ok(()),
        }
    }

    /// The most classes one worker has sent events of (a table the peer makes grow).
    pub fn most_classes(&self) -> usize {
        self.workers
            .values()
            .map(|w| w.classes.len())
            .max()
            .unwrap_or(0)
    }

    /// An event from `worker`: returns the classes to hand it to (the event's own class;
    /// for node-level news, every class that has seen the worker). A class beyond
    /// `max_classes` (see [`check_class`](Self::check_class)) is not remembered.
    pub fn handle_event(
        &mut self,
        now: Instant,
        worker: &str,
        news: WorkerNews<'_, I>,
    ) -> Vec<String> {
        self.forget(now);
        if !self.workers.contains_key(worker) && !self.make_room() {
            // Not remembered: a class event still reaches its class.
            return match news {
                WorkerNews::Class(c) => vec![c.to_owned()],
                _ => Vec::new(),
            };
        }
        let w = self.workers.entry(worker.to_owned()).or_insert_with(|| {
            Box::new(Worker {
                classes: BTreeSet::new(),
                status: "ready".to_owned(),
                info: None,
                gone: None,
            })
        });
        if let Some(g) = w.gone.take() {
            self.gone.remove(&(g.since, worker.to_owned()));
            self.lost.remove_mut(worker);
            self.changes += 1;
        }
        match news {
            WorkerNews::Class(c) => {
                if w.classes.len() < self.config.max_classes {
                    w.classes.insert(c.to_owned());
                }
                vec![c.to_owned()]
            }
            WorkerNews::Status(s) => {
                s.clone_into(&mut w.status);
                w.classes.iter().cloned().collect()
            }
            WorkerNews::Node => w.classes.iter().cloned().collect(),
            WorkerNews::Info { status, info } => {
                status.clone_into(&mut w.status);
                w.info = Some(info);
                w.classes.iter().cloned().collect()
            }
        }
    }

    /// `worker`'s last link here ended (`seen`: what that link said): it is listed
    /// `not_connected` until it comes back or is forgotten; returns whether it is
    /// remembered (then its classes must hear `not_connected`, through
    /// [`handle_event`](Self::handle_event) with that status, before this call).
    pub fn handle_worker_gone(&mut self, now: Instant, worker: &str, seen: LastSeen) -> bool {
        self.forget(now);
        match self.workers.get_mut(worker) {
            Some(w) => {
                if let Some(g) = w.gone.replace(Box::new(Gone { since: now, seen })) {
                    self.gone.remove(&(g.since, worker.to_owned()));
                }
                self.gone.insert((now, worker.to_owned()));
                self.lost.insert_mut(worker.to_owned());
                self.changes += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets `worker` at once (removed by an operator, or served elsewhere now);
    /// returns whether it was remembered.
    pub fn remove(&mut self, worker: &str) -> bool {
        match self.workers.remove(worker) {
            Some(w) => {
                if let Some(g) = &w.gone {
                    self.gone.remove(&(g.since, worker.to_owned()));
                    self.lost.remove_mut(worker);
                    self.changes += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Whether `worker` is remembered with its link gone.
    pub fn is_gone(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|w| w.gone.is_some())
    }

    /// The ids of the gone workers, as a persistent set: a copy costs O(1).
    pub fn lost(&self) -> RedBlackTreeSetSync<String> {
        self.lost.clone()
    }

    /// How many times the set of gone workers has changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The gone workers still remembered, by id.
    pub fn gone(&self) -> impl Iterator<Item = GoneWorker<'_, I>> {
        self.workers.iter().filter_map(|(id, w)| {
            let g = w.gone.as_deref()?;
            Some(GoneWorker {
                id,
                since: g.since,
                seen: &g.seen,
                info: w.info.as_ref(),
            })
        })
    }

    /// Forgets workers gone for longer than `forget_after`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.forget(now);
    }

    /// When the next gone worker will be forgotten.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gone
            .first()
            .map(|(t, _)| *t + self.config.forget_after)
    }

    /// `worker`'s last known status.
    pub fn status(&self, worker: &str) -> Option<&str> {
        self.workers.get(worker).map(|w| w.status.as_str())
    }

    /// `worker`'s last information report.
    pub fn info(&self, worker: &str) -> Option<&I> {
        self.workers.get(worker)?.info.as_ref()
    }

    /// Every worker remembered, in id order: its last known status, and whether its link
    /// is gone.
    pub fn statuses(&self) -> impl Iterator<Item = (&str, bool)> {
        self.workers
            .values()
            .map(|w| (w.status.as_str(), w.gone.is_some()))
    }

    /// Workers remembered now.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether no worker is remembered.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    fn forget(&mut self, now: Instant) {
        let after = self.config.forget_after;
        while let Some((t, _)) = self.gone.first() {
            if now.saturating_duration_since(*t) < after {
                break;
            }
            if let Some((_, id)) = self.gone.pop_first() {
                self.workers.remove(&id);
                self.lost.remove_mut(&id);
                self.changes += 1;
            }
        }
    }

    /// Room for one more: forgets the longest-gone worker when full; false when every
    /// remembered worker is linked.
    fn make_room(&mut self) -> bool {
        if self.workers.len() < self.config.max_workers {
            return true;
        }
        match self.gone.pop_first() {
            Some((_, id)) => {
                self.workers.remove(&id);
                self.lost.remove_mut(&id);
                self.changes += 1;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> LastSeen {
        LastSeen::default()
    }

    fn book(max: usize) -> Workers<u32> {
        Workers::new(WorkersConfig {
            max_workers: max,
            forget_after: Duration::from_secs(10),
            max_classes: 3,
        })
    }

    #[test]
    fn a_worker_sends_events_of_at_most_max_classes() {
        let t = Instant::ZERO;
        let mut b = book(10);
        // An unknown worker may start with any class.
        assert_eq!(b.check_class("w1", "a"), Ok(()));
        for c in ["a", "b", "c"] {
            assert_eq!(b.check_class("w1", c), Ok(()));
            assert_eq!(
                b.handle_event(t, "w1", WorkerNews::Class(c)),
                vec![c.to_owned()]
            );
        }
        assert_eq!(b.most_classes(), 3);
        // A known class still passes; a fourth is refused.
        assert_eq!(b.check_class("w1", "b"), Ok(()));
        let e = b.check_class("w1", "d").expect_err("a fourth class");
        assert_eq!(
            (e.code(), e.to_string()),
            (
                "too_many_classes",
                "too_many_classes: w1 already sent events of 3 classes".to_owned()
            )
        );
        // Another worker is not affected.
        assert_eq!(b.check_class("w2", "d"), Ok(()));
        // Even unchecked, the set does not grow past the limit.
        let _ = b.handle_event(t, "w1", WorkerNews::Class("d"));
        assert_eq!(b.most_classes(), 3);
        assert_eq!(b.handle_event(t, "w1", WorkerNews::Node).len(), 3);
    }

    #[test]
    fn a_worker_back_and_gone_again_is_forgotten_from_its_last_loss() {
        let t = Instant::from_millis;
        let mut b = book(10);
        b.handle_event(t(0), "w1", WorkerNews::Class("video"));
        b.handle_event(t(0), "w2", WorkerNews::Class("video"));
        assert!(b.handle_worker_gone(t(1_000), "w1", seen()));
        assert!(b.handle_worker_gone(t(2_000), "w2", seen()));
        assert_eq!(b.poll_timeout(), Some(t(11_000)));
        // w1 is back, then gone again later: only its last loss counts.
        b.handle_event(t(3_000), "w1", WorkerNews::Node);
        assert_eq!(b.poll_timeout(), Some(t(12_000)));
        assert!(b.handle_worker_gone(t(4_000), "w1", seen()));
        b.handle_timeout(t(12_000));
        assert_eq!(
            (b.len(), b.status("w2"), b.status("w1")),
            (1, None, Some("ready"))
        );
        assert_eq!(b.poll_timeout(), Some(t(14_000)));
        b.handle_timeout(t(14_000));
        assert!(b.is_empty());
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn node_news_reaches_every_class_that_has_seen_the_worker() {
        let mut b = book(10);
        let t = Instant::ZERO;
        assert_eq!(
            b.handle_event(t, "w1", WorkerNews::Status("ready")),
            Vec::<String>::new()
        );
        assert_eq!(
            b.handle_event(t, "w1", WorkerNews::Class("video")),
            ["video"]
        );
        assert_eq!(
            b.handle_event(t, "w1", WorkerNews::Class("audio")),
            ["audio"]
        );
        assert_eq!(
            b.handle_event(t, "w1", WorkerNews::Status("standby")),
            ["audio", "video"]
        );
        assert_eq!(b.status("w1"), Some("standby"));
        assert_eq!(
            b.handle_event(
                t,
                "w1",
                WorkerNews::Info {
                    status: "ready",
                    info: 7
                }
            ),
            ["audio", "video"]
        );
        assert_eq!((b.status("w1"), b.info("w1")), (Some("ready"), Some(&7)));
        assert_eq!(
            b.handle_event(t, "w1", WorkerNews::Node),
            ["audio", "video"]
        );
        assert_eq!(b.status("w1"), Some("ready"));
    }

    #[test]
    fn gone_workers_are_forgotten_after_the_delay_unless_they_come_back() {
        let mut b = book(10);
        let _ = b.handle_event(Instant::ZERO, "w1", WorkerNews::Class("c"));
        let _ = b.handle_event(Instant::ZERO, "w2", WorkerNews::Class("c"));
        assert!(b.handle_worker_gone(Instant::from_millis(1_000), "w1", seen()));
        assert!(!b.handle_worker_gone(Instant::from_millis(1_000), "w9", seen()));
        assert!(b.handle_worker_gone(Instant::from_millis(2_000), "w2", seen()));
        assert_eq!(b.poll_timeout(), Some(Instant::from_millis(11_000)));
        // w2 comes back (any event): it stays.
        let _ = b.handle_event(
            Instant::from_millis(3_000),
            "w2",
            WorkerNews::Status("ready"),
        );
        b.handle_timeout(Instant::from_millis(11_000));
        assert_eq!((b.status("w1"), b.status("w2")), (None, Some("ready")));
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn the_book_is_bounded_and_forgets_the_longest_gone_first() {
        let mut b = book(2);
        let _ = b.handle_event(Instant::ZERO, "w1", WorkerNews::Class("c"));
        let _ = b.handle_event(Instant::ZERO, "w2", WorkerNews::Class("c"));
        // Full of linked workers: a third is not remembered, its class still hears it.
        assert_eq!(
            b.handle_event(Instant::ZERO, "w3", WorkerNews::Class("d")),
            ["d"]
        );
        assert_eq!(
            b.handle_event(Instant::ZERO, "w3", WorkerNews::Status("ready")),
            Vec::<String>::new()
        );
        assert_eq!(b.len(), 2);
        let _ = b.handle_worker_gone(Instant::from_millis(1), "w2", seen());
        let _ = b.handle_worker_gone(Instant::from_millis(2), "w1", seen());
        let _ = b.handle_event(Instant::from_millis(3), "w3", WorkerNews::Class("d"));
        assert_eq!(
            (b.status("w1"), b.status("w2"), b.status("w3")),
            (Some("ready"), None, Some("ready"))
        );
    }

    #[test]
    fn gone_workers_are_listed_with_their_last_link_until_removed() {
        let mut b = book(10);
        let t = Instant::from_millis;
        let _ = b.handle_event(t(0), "w1", WorkerNews::Class("c"));
        let _ = b.handle_event(t(0), "w2", WorkerNews::Class("c"));
        let last = LastSeen {
            remote: "tcp:127.0.0.1:5000".into(),
            listen: vec!["nkcluster://127.0.0.1:5001".into()],
            meta: "gpu".into(),
        };
        assert!(b.handle_worker_gone(t(1_000), "w2", last.clone()));
        assert!(b.is_gone("w2") && !b.is_gone("w1") && !b.is_gone("w9"));
        assert!(b.lost().contains("w2") && b.lost().size() == 1);
        assert_eq!(
            b.gone().collect::<Vec<_>>(),
            [GoneWorker {
                id: "w2",
                since: t(1_000),
                seen: &last,
                info: None
            }]
        );
        // Removed: forgotten at once, and its forgetting timer with it.
        let before = b.changes();
        assert!(b.remove("w2"));
        assert!(!b.remove("w2"));
        assert_eq!((b.lost().size(), b.changes()), (0, before + 1));
        assert_eq!((b.gone().count(), b.poll_timeout(), b.len()), (0, None, 1));
        // A linked worker can be removed too (the caller decides).
        assert!(b.remove("w1"));
        assert!(b.is_empty());
    }
}
