//! Where a worker's own events go: on its first control link, or, while it has none, into
//! its bounded buffer ([`crate::outbox`]), so that its tasks keep working through an
//! outage. Whenever its events start going to another control link (the first, a
//! reconnection, a new owner), that link is told where the worker stands: its status,
//! each running task (`task_running`), its information; the buffered events (with an
//! `events_lost` count per class that lost some) go out before anything newer.
//!
//! Kept events go to the worker's owner, not to whichever control node it reached first
//! (that one may be about to hand it over): on a new control link the worker keeps its
//! class events until the control node says it serves the worker at its ring owner
//! ([`ClusterRequest::Placed`]), then sends what it kept, in order, on that link. If no
//! such word comes within [`PLACED_WAIT`] (a control node that cannot hand it over, or
//! one that does not send it), the worker sends them where it is.

use super::*;

/// How long a worker on a new control link waits to hear it is at its owner before its
/// kept events go out on that link anyway.
pub const PLACED_WAIT: Duration = Duration::from_secs(10);

impl<H: Clone> NodeMachine<H> {
    /// One of our own events, taken from the ordered path of [`Output::OwnEvent`]s: a
    /// control member hears it itself, an admin client runs no jobs, a worker sends it on
    /// its first control link after what it kept while it had none; with no control link
    /// a worker keeps a class event in its buffer (the oldest are dropped when it is full)
    /// and drops node-level news and `task_running`, which the next link is told anew.
    pub fn handle_own_event(&mut self, now: Instant, ev: EventMsg) {
        match self.settings.role {
            Role::Admin => {}
            Role::Control => self.handle_job_event(now, ev),
            Role::Worker => {
                let present =
                    ev.class == NODE_EVENT_CLASS || matches!(ev.event, WireEvent::TaskRunning);
                let Some((_, l)) = self.links.first_control() else {
                    if !present {
                        self.events_dropped += self.outbox.push(ev);
                    }
                    return;
                };
                let (link, conn_id) = (l.handle.clone(), l.conn_id);
                if self.placed != Some(conn_id) {
                    // Not known to be at our owner yet: where we stand is told at once,
                    // class events wait behind what was kept.
                    if !present {
                        self.events_dropped += self.outbox.push(ev);
                        return;
                    }
                } else {
                    // What was kept goes first: everything on the ordered path is newer.
                    self.send_kept(&link);
                }
                // The link's first status is told when it comes up; the same status
                // queued before (at start) is not told twice on one link.
                if let (NODE_EVENT_CLASS, WireEvent::NodeStatus(s)) = (ev.class.as_str(), &ev.event)
                {
                    if self.status_told == Some((conn_id, *s)) {
                        return;
                    }
                    self.status_told = Some((conn_id, *s));
                }
                self.out.push_back(Output::Notify {
                    link,
                    request: ClusterRequest::JobEvent(ev),
                });
            }
        }
    }

    /// A worker whose events now go to another control link than the last one told
    /// (its first link, a reconnection, a new owner linked with a smaller id, the old
    /// owner's link gone) tells it where it stands, on the ordered path: its status, then
    /// `task_running` for each running task, then its information. Extra links that do
    /// not carry our events (exclusive ones, a second control node) change nothing.
    pub(super) fn announce_if_moved(&mut self, now: Instant) {
        if self.settings.role != Role::Worker {
            return;
        }
        let Some((_, l)) = self.links.first_control() else {
            return;
        };
        if self.announced == Some(l.conn_id) {
            return;
        }
        self.announced = Some(l.conn_id);
        // Class events wait until this link is known to be our owner's.
        self.placed = None;
        self.placed_wait_until = Some(now + PLACED_WAIT);
        self.own_node_event(WireEvent::NodeStatus(self.status.status()));
        let running: Vec<(u64, String)> = self
            .status
            .tasks(None)
            .into_iter()
            .map(|(id, c)| (id, c.to_owned()))
            .collect();
        for (task, class) in running {
            self.out.push_back(Output::OwnEvent(EventMsg {
                node: self.settings.me.clone(),
                class,
                task: Some(task),
                event: WireEvent::TaskRunning,
            }));
        }
        self.out.push_back(Output::ReportInfo);
    }

    /// Our control node `from` says it serves us at our ring owner: if it is where our
    /// events go, what we kept goes out there now, and later events follow directly.
    pub(super) fn handle_placed(&mut self, from: &str) {
        let Some((peer, l)) = self.links.first_control() else {
            return;
        };
        if peer != from || self.placed == Some(l.conn_id) {
            return;
        }
        let (link, conn_id) = (l.handle.clone(), l.conn_id);
        self.placed = Some(conn_id);
        self.placed_wait_until = None;
        self.send_kept(&link);
    }

    /// No word from our owner within [`PLACED_WAIT`]: what we kept goes where we are.
    pub(super) fn placed_timeout(&mut self, now: Instant) {
        if self.placed_wait_until.is_none_or(|t| now < t) {
            return;
        }
        self.placed_wait_until = None;
        if let Some((_, l)) = self.links.first_control() {
            let (link, conn_id) = (l.handle.clone(), l.conn_id);
            self.placed = Some(conn_id);
            self.send_kept(&link);
        }
    }

    /// Sends what was kept, in order, on `link` (`events_lost` first per class).
    fn send_kept(&mut self, link: &H) {
        if self.outbox.is_empty() {
            return;
        }
        for kept in self.outbox.drain(&self.settings.me) {
            self.out.push_back(Output::Notify {
                link: link.clone(),
                request: ClusterRequest::JobEvent(kept),
            });
        }
    }

    /// A control member: a worker linked here that it serves at its ring owner hears so
    /// (a worker about to be handed over does not).
    pub(super) fn tell_placed(&mut self, worker: &str) {
        let Some(p) = &self.proxies else { return };
        if p.owner_of(worker) != self.settings.me || p.moving_to(worker).is_some() {
            return;
        }
        if let Some(link) = self.link_of(worker).cloned() {
            self.out.push_back(Output::Notify {
                link,
                request: ClusterRequest::Placed,
            });
        }
    }

    /// Events kept while we have no control link, and how many were dropped and not
    /// told yet (a worker).
    pub fn buffered_events(&self) -> (usize, u64) {
        (self.outbox.len(), self.outbox.lost())
    }
}
