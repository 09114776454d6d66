//! The shell around the core node machine: feeding it inputs, draining its outputs and
//! performing them (sending on links and hand-off requests, spawning dials, running job
//! class callbacks, reporting), and its timer. Nothing is decided here.

use super::*;

impl<N: Net> Inner<N> {
    /// Whether this node is a control member.
    pub(super) fn is_control(&self) -> bool {
        self.config.control && !self.config.admin
    }

    /// Reads the brain (no input, so no outputs).
    pub(super) fn peek<R>(&self, f: impl FnOnce(&NodeMachine<Pump>) -> R) -> R {
        f(&lock(&self.brain))
    }

    /// Feeds the brain one input and takes its outputs (to perform once the lock is
    /// released).
    pub(super) fn step<R>(
        &self,
        f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> R,
    ) -> (R, Vec<Output<Pump>>) {
        let mut brain = lock(&self.brain);
        let r = f(&mut brain, self.clock.now());
        let out = std::iter::from_fn(|| brain.poll_output()).collect();
        (r, out)
    }

    /// Feeds the brain one input and performs what it decides.
    pub(super) fn with_brain<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut NodeMachine<Pump>, nkcluster_core::Instant) -> R,
    ) -> R {
        let (r, out) = self.step(f);
        self.perform_all(out);
        r
    }

    pub(super) fn perform_all(self: &Arc<Self>, out: Vec<Output<Pump>>) {
        for o in out {
            self.perform(o);
        }
        // Any input may have moved the brain's next deadline.
        self.brain_timer.notify_one();
    }

    /// Performs one output of the brain.
    fn perform(self: &Arc<Self>, o: Output<Pump>) {
        let me = &self.config.node_id;
        match o {
            Output::Gossip { link, view } => {
                let _ = link.try_send(Command::Gossip(view));
            }
            Output::Notify { link, request } => {
                if let Some(cmd) = self.notify_command(&request) {
                    let _ = link.try_send(cmd);
                }
            }
            Output::DialMember { id, urls } => {
                debug!(node = %me, member = %id, "dialing control member (mesh)");
                tokio::spawn(mesh_dial(self.clone(), id, urls));
            }
            Output::Ask {
                id,
                link,
                class,
                body,
                timeout,
            } => {
                let inner = self.clone();
                let (reply, rx) = oneshot::channel();
                let cmd = Command::Request {
                    class,
                    body,
                    deadline: self.clock.now() + timeout,
                    reply,
                };
                tokio::spawn(async move {
                    let sent = link.send(cmd).await.is_ok();
                    let r = match rx.await {
                        Ok(r) if sent => r.map(|_| ()),
                        _ => Err(RequestError::ConnectionFailed),
                    };
                    let r = r.map_err(|e| ErrorCode::parse(e.code()));
                    inner.with_brain(|b, now| b.handle_answer(now, id, r));
                });
            }
            Output::Release { worker, to, links } => {
                info!(node = %me, worker = %worker, to = %to, "proxy moved");
                for l in links {
                    let _ = l.try_send(Command::Handoff { to: to.clone() });
                }
            }
            Output::Redial { worker, urls } => {
                debug!(node = %me, worker = %worker, reason = "its link failed and it listens",
                       "redialing the worker");
                tokio::spawn(redial(self.clone(), worker, urls));
            }
            Output::Close { link, reason } => {
                let _ = link.try_send(Command::Close { reason });
            }
            // Dropping our sender: the link closes once its requests are done.
            Output::Unlisted { link } => {
                debug!(node = %me, "two links with one control member: keeping the one the smaller id dialed");
                drop(link);
            }
            Output::ClassEvent { class, event } => {
                if let Ok(c) = self.handlers.classes().get(&class) {
                    c.event(&event.node, event.task, &event.event);
                }
            }
            Output::TaskStatus {
                class,
                task,
                status,
            } => {
                if let Ok(c) = self.handlers.classes().get(&class) {
                    c.status(task, status);
                }
            }
            Output::JobEvent(ev) => {
                let _ = self.job_events.send(NodeJobEvent {
                    node: ev.node,
                    class: ev.class,
                    task: ev.task,
                    event: ev.event,
                });
            }
            Output::OwnEvent(ev) => {
                let _ = self.events_out.send(ev);
            }
            Output::ReportInfo => self.send_info(),
            Output::Event(e) => {
                match &e {
                    NodeEvent::Member { id, change } => {
                        info!(node = %me, member = %id, change, "membership")
                    }
                    NodeEvent::StatusChanged { status } => {
                        info!(node = %me, status = %status, "node status")
                    }
                    NodeEvent::Handoff {
                        worker,
                        owner,
                        step,
                        code,
                    } => {
                        let code = code.as_deref().unwrap_or("-");
                        use nkcluster_core::node::HandoffStep as S;
                        match step {
                            S::Redirected => {
                                info!(node = %me, worker = %worker, to = %owner, "proxy moved (worker redirected)")
                            }
                            S::AdoptFailed => {
                                warn!(node = %me, worker = %worker, owner = %owner, code, "owner could not adopt the worker; redirecting it")
                            }
                            S::OwnerSilent => {
                                warn!(node = %me, worker = %worker, owner = %owner, code, "owner does not answer; the worker stays here for now")
                            }
                            S::NoDialableUrl => {
                                warn!(node = %me, worker = %worker, owner = %owner, "cannot redirect the worker: its owner announced no address a worker could dial; the worker stays here")
                            }
                            S::RedirectUnacknowledged => {
                                warn!(node = %me, worker = %worker, owner = %owner, code, "redirect not acknowledged; closing anyway")
                            }
                        }
                    }
                    _ => {}
                }
                self.emit(e);
            }
        }
    }

    /// A request nobody waits for, as a link command.
    pub(super) fn notify_command(&self, request: &ClusterRequest) -> Option<Command> {
        let (class, body) = request.encode().ok()?;
        let (reply, _) = oneshot::channel();
        Some(Command::Request {
            class: class.to_owned(),
            body,
            deadline: self.clock.now() + GATHER_TIMEOUT,
            reply,
        })
    }
}

/// Calls the brain's `handle_timeout` when it is due (membership removals and redial
/// rounds, hand-off retries, forgetting gone workers).
pub(super) async fn brain_timer<N: Net>(inner: Arc<Inner<N>>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        let next = inner.peek(NodeMachine::poll_timeout);
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(inner.clock.to_tokio(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => inner.with_brain(|b, now| b.handle_timeout(now)),
            _ = inner.brain_timer.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Takes our events, in order, to the brain, which sends them to the control node
/// holding our proxy (a control member hears its own). Sending waits for room on the
/// link, so events are never reordered.
pub(super) async fn forward_events<N: Net>(
    inner: Arc<Inner<N>>,
    mut rx: mpsc::UnboundedReceiver<EventMsg>,
) {
    while let Some(ev) = rx.recv().await {
        let ((), out) = inner.step(|b, now| b.handle_own_event(now, ev));
        for o in out {
            match o {
                Output::Notify { link, request } => {
                    if let Some(cmd) = inner.notify_command(&request) {
                        let _ = link.send(cmd).await;
                    }
                }
                o => inner.perform_all(vec![o]),
            }
        }
    }
}
