//! What a control member decides for the cluster: membership changes (gossip, mesh
//! dials), proxy hand-offs, the workers' events (their classes, the event book and its
//! subscribers) and the node table.

use super::handoff::Step;
use super::*;
use crate::cluster::SubscribeRequest;
use crate::events::TooManySubscribers;
use crate::membership::MemberEvent;
use crate::proxy::Action;
use crate::table::NodeRow;
use crate::url::{Host, parse_url};
use crate::workers::WorkerNews;

/// Why a subscription was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The subscriber has no link here to receive the stream.
    #[error("not_connected: {0} is not linked here")]
    NotLinked(String),
    /// The subscriber limit is reached.
    #[error(transparent)]
    TooMany(#[from] TooManySubscribers),
}

impl SubscribeError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            SubscribeError::NotLinked(_) => "not_connected",
            SubscribeError::TooMany(_) => "too_many_subscribers",
        }
    }
}

impl<H: Clone> NodeMachine<H> {
    /// Drains the membership machine: member changes as events, our view to every
    /// control link when it has news, dials of members not linked yet (one at a time
    /// each, none while stopping), and the live members to the proxies.
    pub(super) fn after_membership(&mut self, now: Instant) {
        let Some(m) = &mut self.membership else {
            return;
        };
        let events: Vec<MemberEvent> = std::iter::from_fn(|| m.poll_event()).collect();
        let gossip = m.poll_gossip(now);
        let to_dial = m.poll_dial();
        // The live set changes only with news (a record changed: there is gossip to send)
        // or a member event; it is read once at first. No copy of it, and no ring, for
        // gossip that brought nothing new.
        let mut live_moved = false;
        if !events.is_empty() || gossip.is_some() || self.member_changes == 0 {
            let live = m.live();
            if live != self.live {
                self.live = live;
                self.member_changes += 1;
                live_moved = true;
            }
        }
        for e in events {
            let (id, change) = match e {
                MemberEvent::Up(id) => (id, "up"),
                MemberEvent::Down(id) => (id, "down"),
                MemberEvent::Left(id) => (id, "left"),
                MemberEvent::Removed(id) => (id, "removed"),
            };
            self.out
                .push_back(Output::Event(NodeEvent::Member { id, change }));
        }
        if let Some(view) = gossip {
            for (_, l) in self.links.control_links() {
                self.out.push_back(Output::Gossip {
                    link: l.handle.clone(),
                    view: view.clone(),
                });
            }
        }
        for member in to_dial {
            if self.stopping || !self.mesh_dialing.insert(member.id.clone()) {
                continue;
            }
            // A member announced on every interface is not dialable from here: it dials
            // us (and the address its link reaches us from goes into the view).
            let urls = member
                .listen
                .iter()
                .filter(|u| parse_url(u).is_ok_and(|u| u.host != Host::All))
                .cloned()
                .collect();
            self.out.push_back(Output::DialMember {
                id: member.id,
                urls,
            });
        }
        if !self.stopping
            && let Some(p) = &mut self.proxies
        {
            if live_moved {
                p.members_changed(now, &self.live);
            }
            self.after_proxies(now);
        }
    }

    /// Drains the proxy machine's hand-offs: adoptions and redirects become steps (see
    /// [`handoff`](super::handoff)), releases and redials outputs.
    pub(super) fn after_proxies(&mut self, now: Instant) {
        let Some(p) = &mut self.proxies else { return };
        let actions: Vec<Action> = std::iter::from_fn(|| p.poll_action()).collect();
        for a in actions {
            match a {
                Action::Adopt { worker, owner } => {
                    let urls = self.dialable_urls(&worker);
                    self.start_step(
                        now,
                        Step::Adopt {
                            worker,
                            owner,
                            urls,
                        },
                    );
                }
                Action::Redirect { worker, owner } => {
                    // The owner's URLs as the mesh knows them (`all` already replaced by
                    // the address it was reached at).
                    let announced = self
                        .membership
                        .as_ref()
                        .and_then(|m| m.record(&owner))
                        .map(|r| r.listen.as_slice())
                        .unwrap_or_default();
                    let urls = crate::url::reachable_at(announced, None);
                    self.start_step(
                        now,
                        Step::Probe {
                            worker,
                            owner,
                            urls,
                        },
                    );
                }
                Action::Release { worker, owner } => {
                    let out = self.release(&worker, &owner);
                    self.out.push_back(out);
                }
                Action::Redial { .. } if self.stopping => {}
                Action::Redial { worker, urls } => {
                    self.out.push_back(Output::Redial { worker, urls });
                }
            }
        }
    }

    /// Closing our links with `worker`, whose proxy moved to `to`.
    pub(super) fn release(&self, worker: &str, to: &str) -> Output<H> {
        Output::Release {
            worker: worker.to_owned(),
            to: to.to_owned(),
            links: self
                .links
                .links_of(worker)
                .map(|l| l.handle.clone())
                .collect(),
        }
    }

    /// The outcome of an adoption: `ok` when the owner now holds a link to the worker.
    pub fn handle_adopted(&mut self, now: Instant, worker: &str, owner: &str, ok: bool) {
        if let Some(p) = &mut self.proxies {
            p.handle_adopted(worker, owner, ok);
        }
        self.after_proxies(now);
    }

    /// The owner of a redirect did not answer its probe: the worker stays here and the
    /// redirect is retried later.
    pub fn handle_owner_silent(&mut self, now: Instant, worker: &str, owner: &str) {
        if let Some(p) = &mut self.proxies {
            p.handle_owner_silent(now, worker, owner);
        }
    }

    /// An [`Output::Redial`] failed: tried again later.
    pub fn handle_redial_failed(&mut self, now: Instant, worker: &str) {
        if let Some(p) = &mut self.proxies {
            p.handle_redial_failed(now, worker);
        }
    }

    /// Control side: an event of a node we serve (or our own). Its classes hear it, it
    /// is kept among the recent events (information reports are not), the API hears it,
    /// and so does every subscriber (those no longer linked are dropped).
    pub fn handle_job_event(&mut self, now: Instant, ev: EventMsg) {
        let news = match &ev.event {
            _ if ev.class != NODE_EVENT_CLASS => WorkerNews::Class(&ev.class),
            WireEvent::NodeStatus(s) => WorkerNews::Status(s.as_str()),
            WireEvent::Info(i) => WorkerNews::Info {
                status: i.status.as_str(),
                info: i.clone(),
            },
            // Other node-level events go to every class that has seen the node.
            _ => WorkerNews::Node,
        };
        let classes = self.workers.handle_event(now, &ev.node, news);
        for class in classes {
            self.out.push_back(Output::ClassEvent {
                class,
                event: ev.clone(),
            });
        }
        if !matches!(ev.event, WireEvent::Info(_)) {
            let wall_ms = self.wall_ms(now);
            self.events.record(wall_ms, ev.clone());
        }
        self.publish(&ev, false);
        self.out.push_back(Output::JobEvent(ev));
    }

    /// Control side: an event another member streamed to us, for our whole-cluster
    /// subscribers.
    pub fn handle_member_event(&mut self, ev: &EventMsg) {
        self.publish(ev, true);
    }

    fn publish(&mut self, ev: &EventMsg, from_member: bool) {
        for s in self.events.targets(from_member) {
            match self.links.first(&s) {
                Some(l) => self.out.push_back(Output::Notify {
                    link: l.handle.clone(),
                    request: ClusterRequest::EventStream(ev.clone()),
                }),
                None => self.events.unsubscribe(&s),
            }
        }
    }

    /// Control side: a node linked here subscribes to the events we hear; a
    /// whole-cluster subscriber (`fanout`) makes us subscribe to every other member.
    pub fn handle_subscribe(&mut self, req: &SubscribeRequest) -> Result<(), SubscribeError> {
        if !self.links.is_linked(&req.subscriber) {
            return Err(SubscribeError::NotLinked(req.subscriber.clone()));
        }
        self.events.subscribe(&req.subscriber, req.fanout)?;
        if !req.fanout {
            return Ok(());
        }
        let me = self.settings.me.clone();
        for m in self.members() {
            if let Some(link) = self.link_of(&m).filter(|_| m != me) {
                self.out.push_back(Output::Notify {
                    link: link.clone(),
                    request: ClusterRequest::Subscribe(SubscribeRequest {
                        subscriber: me.clone(),
                        fanout: false,
                    }),
                });
            }
        }
        Ok(())
    }

    /// Control side: a worker's last link dropped: every class that has seen it hears
    /// `not_connected`, and it is forgotten after a while.
    pub(super) fn worker_gone(
        &mut self,
        now: Instant,
        worker: &str,
        seen: crate::workers::LastSeen,
    ) {
        if self.workers.status(worker).is_none() {
            return;
        }
        self.handle_job_event(
            now,
            EventMsg {
                node: worker.to_owned(),
                class: NODE_EVENT_CLASS.into(),
                task: None,
                event: WireEvent::NodeStatus(Status::NotConnected),
            },
        );
        self.workers.handle_worker_gone(now, worker, seen);
    }

    /// Workers remembered by the control side.
    pub fn workers_known(&self) -> usize {
        self.workers.len()
    }

    /// The events kept here, oldest first (`(wall ms, event)`).
    pub fn recent_events(&self) -> Vec<(u64, EventMsg)> {
        self.events.recent()
    }

    /// Ours merged with the members' answers, oldest first.
    pub fn merged_events(&self, theirs: Vec<(u64, EventMsg)>) -> Vec<(u64, EventMsg)> {
        self.events.merged(theirs)
    }

    /// The rows of this node's own links, and its own: what `nodes` shows of it.
    pub fn local_rows(&self) -> Vec<NodeRow> {
        let me = &self.settings.me;
        let mut rows = vec![NodeRow {
            id: me.clone(),
            role: self.settings.role.as_str().into(),
            status: self.reported_status().as_str().into(),
            owner: me.clone(),
            proxies: Vec::new(),
            remote: "-".into(),
            listen: self.settings.listen.clone(),
            meta: self.meta.to_string(),
            rtt_us: None,
            last_seen_ms: None,
            // A control node's own reports are booked like a worker's.
            figures: self.figures_of(me),
        }];
        let mut ids: Vec<&str> = self.links.iter().map(|(id, _)| id).collect();
        ids.dedup();
        for id in ids {
            // One row per node (its first link); admin clients are not nodes.
            let Some(l) = self
                .links
                .links_of(id)
                .find(|l| l.summary.role != Role::Admin)
            else {
                continue;
            };
            let s = &l.summary;
            let control = s.role == Role::Control;
            rows.push(NodeRow {
                id: s.node_id.clone(),
                role: s.role.as_str().into(),
                status: self.workers.status(id).unwrap_or("ready").to_owned(),
                owner: if control {
                    s.node_id.clone()
                } else {
                    me.clone()
                },
                proxies: if control {
                    Vec::new()
                } else {
                    vec![me.clone()]
                },
                remote: s.remote.clone(),
                listen: s.listen.clone(),
                meta: self
                    .workers
                    .info(id)
                    .map_or_else(|| s.meta.clone(), |i| i.meta.clone()),
                rtt_us: l.rtt.us(),
                last_seen_ms: None,
                // A member's own answer carries its figures.
                figures: if control { None } else { self.figures_of(id) },
            });
        }
        // Workers whose link is lost, until they come back, are forgotten or removed.
        for g in self.workers.gone() {
            if self.links.is_linked(g.id) {
                continue;
            }
            rows.push(NodeRow {
                id: g.id.to_owned(),
                role: Role::Worker.as_str().into(),
                status: Status::NotConnected.as_str().into(),
                owner: me.clone(),
                proxies: Vec::new(),
                remote: g.seen.remote.clone(),
                listen: g.seen.listen.clone(),
                meta: g.seen.meta.clone(),
                rtt_us: None,
                last_seen_ms: Some(self.wall_ms(g.since)),
                figures: None,
            });
        }
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }

    /// `node`'s machine figures from its last information report booked here.
    fn figures_of(&self, node: &str) -> Option<crate::table::NodeFigures> {
        self.workers
            .info(node)
            .map(|i| crate::table::NodeFigures::of(&i.stats))
    }

    /// Whom to ask for the whole node table: the control members linked here (with
    /// their links), and the live members we cannot ask (not linked: the table will be
    /// incomplete without them).
    pub fn table_sources(&self) -> (Vec<(String, H)>, Vec<String>) {
        let linked: Vec<(String, H)> = self
            .links
            .control_links()
            .map(|(id, l)| (id.to_owned(), l.handle.clone()))
            .collect();
        let unlinked = self
            .members()
            .into_iter()
            .filter(|m| *m != self.settings.me && !linked.iter().any(|(id, _)| id == m))
            .collect();
        (linked, unlinked)
    }

    /// Merges member `member`'s answer into `rows` (see [`crate::table::merge`]); a
    /// worker held by several members is owned by its ring owner.
    pub fn merge_rows(&self, rows: &mut Vec<NodeRow>, member: &str, theirs: Vec<NodeRow>) {
        crate::table::merge(rows, member, theirs, |w| {
            self.proxies.as_ref().map(|p| p.owner_of(w).to_owned())
        });
    }
}
