//! What a control node does for the cluster: workers' events and subscribers, membership
//! and hand-off outcomes, the node table and recent events.

use super::*;

impl<N: Net> Inner<N> {
    /// Control side: an event from a worker we serve (or from ourselves).
    pub(super) fn handle_job_event(&self, ev: EventMsg) {
        use nkcluster_core::workers::{NODE_CLASS, WorkerNews};
        let news = match &ev.event {
            _ if ev.class != NODE_CLASS => WorkerNews::Class(&ev.class),
            WireEvent::NodeStatus(s) => WorkerNews::Status(s.as_str()),
            WireEvent::Info(i) => WorkerNews::Info {
                status: i.status.as_str(),
                info: i.clone(),
            },
            // Other node-level events go to every class that has seen the node.
            _ => WorkerNews::Node,
        };
        let targets = lock(&self.workers).handle_event(self.clock.now(), &ev.node, news);
        for class in &targets {
            if let Ok(c) = self.handlers.classes.get(class) {
                c.event(&ev.node, ev.task, &ev.event);
            }
        }
        if !matches!(ev.event, WireEvent::Info(_)) {
            let now_ms = self.clock.wall_now_ns() / 1_000_000;
            lock(&self.events_book).record(now_ms, ev.clone());
        }
        let _ = self.job_events.send(NodeJobEvent {
            node: ev.node,
            class: ev.class,
            task: ev.task,
            event: ev.event,
        });
    }

    /// Control side: a new subscriber (and, for a whole-cluster one, our subscriptions to
    /// every other member).
    pub(super) fn subscribe(self: &Arc<Self>, req: SubscribeRequest) -> Result<(), RemoteError> {
        lock(&self.events_book)
            .subscribe(&req.subscriber, req.fanout)
            .map_err(|e| RemoteError::new("too_many_subscribers", e.to_string()))?;
        if !req.fanout {
            return Ok(());
        }
        let me = self.config.node_id.clone();
        let members: Vec<String> = self
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| *m != me)
            .collect();
        let body = match postcard::to_allocvec(&SubscribeRequest {
            subscriber: me,
            fanout: false,
        }) {
            Ok(b) => Bytes::from(b),
            Err(e) => return Err(RemoteError::new("internal_error", e.to_string())),
        };
        for m in members {
            let _ = self.fire(&m, CLASS_SUBSCRIBE, body.clone());
        }
        Ok(())
    }

    /// Sends an encoded event to our subscribers (only whole-cluster ones for a member's
    /// event); drops subscribers that are gone.
    pub(super) fn publish(&self, body: &Bytes, members_only: bool) {
        let targets = lock(&self.events_book).targets(members_only);
        for s in targets {
            if !self.fire(&s, CLASS_EVENT_STREAM, body.clone()) {
                lock(&self.events_book).unsubscribe(&s);
            }
        }
    }

    /// Queues a request on `peer`'s link now (in call order) and returns where its
    /// outcome will arrive.
    pub(super) fn enqueue(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<oneshot::Receiver<Result<Bytes, RequestError>>, RequestError> {
        let commands = lock(&self.peers)
            .first(peer)
            .map(|l| l.commands.clone())
            .ok_or(RequestError::NotConnected)?;
        let (tx, rx) = oneshot::channel();
        commands
            .try_send(Command::Request {
                class: class.to_owned(),
                body,
                deadline: self.clock.now() + timeout,
                reply: tx,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => RequestError::TooManyPending,
                mpsc::error::TrySendError::Closed(_) => RequestError::ConnectionFailed,
            })?;
        Ok(rx)
    }

    /// Queues a request to `peer` without waiting for its reply; false when not linked.
    pub(super) fn fire(&self, peer: &str, class: &str, body: Bytes) -> bool {
        !matches!(
            self.enqueue(peer, class, body, GATHER_TIMEOUT),
            Err(RequestError::NotConnected)
        )
    }

    /// Control side: a worker's last link dropped: every class that has seen it hears
    /// `not_connected`.
    pub(super) fn worker_gone(&self, worker: &str) {
        let known = lock(&self.workers).status(worker).is_some();
        if known {
            self.handle_job_event(EventMsg {
                node: worker.to_owned(),
                class: "nkcluster".into(),
                task: None,
                event: WireEvent::NodeStatus(Status::NotConnected),
            });
            lock(&self.workers).handle_worker_gone(self.clock.now(), worker);
        }
    }

    pub(super) fn after_membership(self: &Arc<Self>) {
        let Some(m) = &self.membership else { return };
        let (events, gossip, to_dial) = {
            let mut m = lock(m);
            let events: Vec<MemberEvent> = std::iter::from_fn(|| m.poll_event()).collect();
            (events, m.poll_gossip(), m.poll_dial())
        };
        for e in events {
            let (id, change) = match e {
                MemberEvent::Up(id) => (id, "up"),
                MemberEvent::Down(id) => (id, "down"),
                MemberEvent::Left(id) => (id, "left"),
                MemberEvent::Removed(id) => (id, "removed"),
            };
            info!(node = %self.config.node_id, member = %id, change, "membership");
            self.emit(NodeEvent::Member { id, change });
        }
        if let Some(view) = gossip {
            for (_, l) in lock(&self.peers).control_links() {
                let _ = l.commands.try_send(Command::Gossip(view.clone()));
            }
        }
        for member in to_dial {
            if self.stopping() || !lock(&self.mesh_dialing).insert(member.id.clone()) {
                continue;
            }
            tokio::spawn(mesh_dial(self.clone(), member));
        }
        self.membership_timer.notify_one();
        if let Some(p) = &self.proxies
            && !self.stopping()
        {
            let live = lock(m).live();
            lock(p).set_members(&live);
            self.after_proxies();
        }
    }

    /// Carries out the proxy machine's hand-offs.
    pub(super) fn after_proxies(self: &Arc<Self>) {
        let Some(p) = &self.proxies else { return };
        let actions: Vec<Action> = {
            let mut p = lock(p);
            std::iter::from_fn(|| p.poll_action()).collect()
        };
        for a in actions {
            match a {
                Action::Adopt { worker, owner } => {
                    debug!(node = %self.config.node_id, worker = %worker, owner = %owner, reason = "ring owner is elsewhere; the worker listens",
                           "asking the owner to adopt the worker");
                    tokio::spawn(ask_adopt(self.clone(), worker, owner));
                }
                Action::Redirect { worker, owner } => {
                    debug!(node = %self.config.node_id, worker = %worker, owner = %owner, reason = "ring owner is elsewhere",
                           "handing the worker over by redirect");
                    tokio::spawn(redirect(self.clone(), worker, owner));
                }
                Action::Release { worker, owner } => {
                    info!(node = %self.config.node_id, worker = %worker, to = %owner, "proxy moved");
                    self.release(&worker, &owner);
                }
                Action::Redial { worker, urls } => {
                    if self.stopping() {
                        continue;
                    }
                    debug!(node = %self.config.node_id, worker = %worker, reason = "its link failed and it listens",
                           "redialing the worker");
                    tokio::spawn(redial(self.clone(), worker, urls));
                }
            }
        }
    }

    /// Closes our links with `worker`; requests pending on them end `proxy_moved`.
    pub(super) fn release(&self, worker: &str, to: &str) {
        let links: Vec<mpsc::Sender<Command>> = lock(&self.peers)
            .links_of(worker)
            .iter()
            .map(|l| l.commands.clone())
            .collect();
        for c in links {
            let _ = c.try_send(Command::Handoff { to: to.to_owned() });
        }
    }

    /// Listen URLs of `peer` we could dial, with `all` replaced by the address its link
    /// came from.
    pub(super) fn dialable_urls(&self, peer: &str) -> Vec<String> {
        let peers = lock(&self.peers);
        let Some(l) = peers.first(peer) else {
            return Vec::new();
        };
        nkcluster_core::url::reachable_at(&l.summary.listen, l.remote_ip)
    }

    /// Rows of the whole cluster: ours, plus each alive control member's own rows asked
    /// over the mesh (in parallel, each within `GATHER_TIMEOUT`; a member that does not
    /// answer is listed from our view only, and named in `incomplete`). A node listed by
    /// several control nodes appears once.
    pub(super) async fn cluster_rows(self: &Arc<Self>) -> NodesReport {
        let mut rows = self.node_rows();
        let me = &self.config.node_id;
        let live: Vec<String> = self
            .membership
            .as_ref()
            .map(|m| lock(m).live())
            .unwrap_or_default();
        let (members, mut incomplete): (Vec<(String, mpsc::Sender<Command>)>, Vec<String>) = {
            let peers = lock(&self.peers);
            let linked: Vec<(String, mpsc::Sender<Command>)> = peers
                .control_links()
                .map(|(id, l)| (id.to_owned(), l.commands.clone()))
                .collect();
            // Alive members we have no link to cannot be asked.
            let unlinked = live
                .iter()
                .filter(|m| *m != me && !linked.iter().any(|(id, _)| id == *m))
                .cloned()
                .collect();
            (linked, unlinked)
        };
        let mut asks = tokio::task::JoinSet::new();
        let deadline = self.clock.now() + GATHER_TIMEOUT;
        for (id, commands) in members {
            asks.spawn(async move {
                let (tx, rx) = oneshot::channel();
                let cmd = Command::Request {
                    class: CLASS_LOCAL_NODES.to_owned(),
                    body: Bytes::new(),
                    deadline,
                    reply: tx,
                };
                if commands.send(cmd).await.is_err() {
                    return (id, None);
                }
                let rows = match rx.await {
                    Ok(Ok(b)) => postcard::from_bytes::<Vec<NodeRow>>(&b).ok(),
                    _ => None,
                };
                (id, rows)
            });
        }
        while let Some(r) = asks.join_next().await {
            let (member, theirs) = match r {
                Ok((member, Some(theirs))) => (member, theirs),
                Ok((member, None)) => {
                    incomplete.push(member);
                    continue;
                }
                Err(_) => continue,
            };
            let owner_of = |w: &str| {
                self.proxies
                    .as_ref()
                    .map(|p| lock(p).owner_of(w).to_owned())
            };
            nkcluster_core::table::merge(&mut rows, &member, theirs, owner_of);
        }
        incomplete.sort();
        if !incomplete.is_empty() {
            warn!(node = %self.config.node_id, members = %incomplete.join(", "),
                  "control members did not answer; the node table is incomplete");
        }
        NodesReport { rows, incomplete }
    }

    /// The job events heard last by every control member we are linked to and by us,
    /// oldest first (members that do not answer within `GATHER_TIMEOUT` are left out).
    pub(super) async fn cluster_recent_events(self: &Arc<Self>) -> Vec<(u64, EventMsg)> {
        let mut theirs_all: Vec<(u64, EventMsg)> = Vec::new();
        let members: Vec<String> = lock(&self.peers)
            .control_links()
            .map(|(id, _)| id.to_owned())
            .collect();
        let mut asks = tokio::task::JoinSet::new();
        for m in members {
            let rx = self.enqueue(
                &m,
                CLASS_RECENT_EVENTS,
                Bytes::from_static(b"local"),
                GATHER_TIMEOUT,
            );
            asks.spawn(wait_reply(rx, tokio::time::Instant::now() + GATHER_TIMEOUT));
        }
        while let Some(r) = asks.join_next().await {
            if let Ok(Ok(b)) = r
                && let Ok(theirs) = postcard::from_bytes::<Vec<(u64, EventMsg)>>(&b)
            {
                theirs_all.extend(theirs);
            }
        }
        lock(&self.events_book).merged(theirs_all)
    }

    pub(super) fn node_rows(&self) -> Vec<NodeRow> {
        let me = &self.config.node_id;
        let mut rows = vec![NodeRow {
            id: me.clone(),
            role: self.identity.role.as_str().into(),
            status: lock(&self.status).status().as_str().into(),
            owner: me.clone(),
            proxies: Vec::new(),
            remote: "-".into(),
            listen: self.identity.listen.clone(),
            meta: lock(&self.meta).to_string(),
            rtt_us: None,
        }];
        let table = lock(&self.peers);
        let mut ids: Vec<&str> = table.iter().map(|(id, _)| id).collect();
        ids.dedup();
        for id in ids {
            // One row per node (its first link); admin clients are not nodes.
            let Some(l) = table
                .links_of(id)
                .iter()
                .find(|l| l.summary.role != Role::Admin)
            else {
                continue;
            };
            let book = lock(&self.workers);
            let status = book
                .status(&l.summary.node_id)
                .unwrap_or("ready")
                .to_owned();
            let meta = book
                .info(&l.summary.node_id)
                .map_or_else(|| l.summary.meta.clone(), |i| i.meta.clone());
            drop(book);
            rows.push(NodeRow {
                id: l.summary.node_id.clone(),
                role: l.summary.role.as_str().into(),
                status,
                owner: if l.summary.role == Role::Control {
                    l.summary.node_id.clone()
                } else {
                    me.clone()
                },
                proxies: if l.summary.role == Role::Control {
                    Vec::new()
                } else {
                    vec![me.clone()]
                },
                remote: l.summary.remote.clone(),
                listen: l.summary.listen.clone(),
                meta,
                rtt_us: Some(l.rtt_us.load(Ordering::Relaxed)).filter(|us| *us > 0),
            });
        }
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows
    }
}
