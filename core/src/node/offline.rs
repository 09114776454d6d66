//! Where a worker's own events go: on its first control link, or, while it has none, into
//! its bounded buffer ([`crate::outbox`]), so that its tasks keep working through an
//! outage. Whenever its events start going to another control link (the first, a
//! reconnection, a new owner), that link is told where the worker stands: its status,
//! each running task (`task_running`), its information; the buffered events (with an
//! `events_lost` count per class that lost some) go out before anything newer.

use super::*;

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
                let Some((_, l)) = self.links.first_control() else {
                    let present =
                        ev.class == NODE_EVENT_CLASS || matches!(ev.event, WireEvent::TaskRunning);
                    if !present {
                        let _ = self.outbox.push(ev);
                    }
                    return;
                };
                let (link, conn_id) = (l.handle.clone(), l.conn_id);
                // What was kept goes first: everything on the ordered path is newer.
                if !self.outbox.is_empty() {
                    for kept in self.outbox.drain(&self.settings.me) {
                        self.out.push_back(Output::Notify {
                            link: link.clone(),
                            request: ClusterRequest::JobEvent(kept),
                        });
                    }
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
    pub(super) fn announce_if_moved(&mut self) {
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

    /// Events kept while we have no control link, and how many were dropped and not
    /// told yet (a worker).
    pub fn buffered_events(&self) -> (usize, u64) {
        (self.outbox.len(), self.outbox.lost())
    }
}
