//! The node's background tasks: mesh dialing, dialing a worker to adopt or redial it,
//! periodic reports, and the connector that performs the core connector's plan.

use super::*;

/// Dials a control member we learned of (full mesh) or a seed, trying `urls` in order
/// (each through discovery: a seed may be a name to look up), and stays linked while the
/// link lasts; then tells the machine how it went.
pub(super) async fn mesh_dial<N: Net>(inner: Arc<Inner<N>>, member: String, urls: Vec<String>) {
    let mut linked = false;
    let mut tried = false;
    let mut candidates = Vec::new();
    for url in urls.iter().filter_map(|u| parse_url(u).ok()) {
        let label = url.written_label();
        match inner.resolve(url).await {
            Ok(found) => candidates.extend(found),
            Err(e) => {
                tried = true;
                warn!(node = %inner.config.node_id, member = %member, entry = %label,
                      code = e.code(), error = %e, "cannot resolve member url");
            }
        }
    }
    for c in candidates {
        let url = &c.url;
        if inner.stopping() {
            break;
        }
        if inner.view().is_linked(&member) {
            linked = true;
            break;
        }
        tried = true;
        match inner.dial_to(url, c.addr).await {
            Ok((remote, ready)) => {
                let keys = inner.keys_for(None);
                let outcome = run_connection(
                    inner.clone(),
                    ready,
                    Side::Dialer,
                    keys,
                    remote,
                    LinkExtras::default(),
                )
                .await;
                linked |= outcome.authenticated;
                break;
            }
            Err((code, e)) => {
                warn!(node = %inner.config.node_id, member = %member, url = %c.label(), transport = transport_field(&c.label()),
                      code, error = %e, "cannot reach member");
            }
        }
    }
    inner.tell(move |b, now| b.handle_mesh_dial_done(now, &member, tried, linked));
}

/// Reports our information periodically (it also goes out on every status or metadata
/// change, and when a control link comes up); a periodic report that says nothing new
/// is left out, up to one in `INFO_REFRESH` (see [`nkcluster_core::info_report`]).
pub(super) async fn report_info<N: Net>(inner: Arc<Inner<N>>) {
    if inner.config.admin {
        return;
    }
    let mut stop = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INFO_EVERY) => inner.send_periodic_info(),
            _ = stop.changed() => return,
        }
    }
}

/// Hand-off, at the new owner: dial the worker (unless already linked) and answer once
/// it is linked here.
pub(super) async fn adopt<N: Net>(inner: Arc<Inner<N>>, req: AdoptRequest, responder: Responder) {
    let r = dial_worker(&inner, &req.worker, &req.urls).await;
    if r.is_ok() {
        info!(node = %inner.config.node_id, worker = %req.worker, "adopted worker");
    }
    responder.reply(r.map(|()| Bytes::new()));
}

/// At the owner, for a listening worker whose link failed: dial it (what the proxy
/// machine's `Redial` asks); a failure is reported so the machine retries later.
pub(super) async fn redial<N: Net>(inner: Arc<Inner<N>>, worker: String, urls: Vec<String>) {
    match dial_worker(&inner, &worker, &urls).await {
        Ok(()) => {
            info!(node = %inner.config.node_id, worker = %worker, "worker redialed after its link failed")
        }
        Err(e) => {
            debug!(node = %inner.config.node_id, worker = %worker, code = %e.code, error = %e.message,
                   "redial failed; trying again later");
            inner.tell(move |b, now| b.handle_redial_failed(now, &worker));
        }
    }
}

/// Dials `worker` at `urls` (unless it is linked here already) until one link to it
/// authenticates.
async fn dial_worker<N: Net>(
    inner: &Arc<Inner<N>>,
    worker: &str,
    urls: &[String],
) -> Result<(), RemoteError> {
    if inner.view().is_linked(worker) {
        return Ok(());
    }
    // Only URLs the worker announced, and only the expected worker on them.
    let urls = worker_dial_urls(urls)?;
    let mut last = RemoteError::new(
        ErrorCode::NoConnections,
        "the worker announced no reachable URL",
    );
    for url in urls {
        let (remote, ready) = match inner.dial(&url).await {
            Ok(r) => r,
            Err((code, e)) => {
                last = RemoteError::new(code, e);
                continue;
            }
        };
        let keys = inner.keys_for(None);
        let remote_ip = nkcluster_core::url::ip_of_remote(&remote);
        let expect = Some((worker.to_owned(), url.clone()));
        match spawn_dialed_expecting(inner, ready, keys, remote, expect).await {
            // The same check the link made (it closed a wrong peer unlisted).
            Ok(Ok(p)) => match check_dialed_worker(worker, &url, &p, remote_ip) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
            Ok(Err(e)) => last = RemoteError::new(e.code(), e.to_string()),
            Err(_) => {}
        }
    }
    Err(last)
}

/// Performs the core [`Connector`](nkcluster_core::connector::Connector)'s plan: dials
/// the entry it names and runs the link while it lasts, waits while any control link is
/// up, sleeps between rounds, gives up when it says so.
pub(super) async fn connector<N: Net>(inner: Arc<Inner<N>>) {
    use nkcluster_core::connector::ConnectorAction;
    let mut stop = inner.shutdown.subscribe();
    loop {
        if inner.stopping() {
            return;
        }
        // Taken with the timeout in one job of the machine's owner: when there is
        // nothing left to do the task ends there, and a redirect handled after it
        // starts a new one (Output::RunConnector).
        let me = inner.clone();
        // The interruption signal is subscribed to in the same job: an interruption
        // decided after this action was taken is heard (Output::InterruptConnector).
        let Some((action, timeout, mut interrupted)) = inner
            .ask(move |b, _| {
                let c = b.connector_mut();
                let (action, timeout) = (c.poll_action(), c.poll_timeout());
                if action.is_none() && timeout.is_none() {
                    me.connector_running.store(false, Ordering::SeqCst);
                }
                (action, timeout, me.connector_interrupt.subscribe())
            })
            .await
        else {
            return;
        };
        match action {
            Some(ConnectorAction::Resolve(entries)) => {
                let found = tokio::select! {
                    found = resolve_all(&inner, entries) => found,
                    // A control node adopted us: the connector dropped this round.
                    _ = interrupted.changed() => continue,
                    _ = stop.changed() => return,
                };
                let random = inner.random_u64();
                inner.tell(move |b, now| b.connector_mut().handle_resolved(now, found, random));
            }
            Some(ConnectorAction::Dial(c)) => {
                let dialed = tokio::select! {
                    dialed = dial_candidate(&inner, &c) => dialed,
                    _ = interrupted.changed() => {
                        debug!(node = %inner.config.node_id, url = %c.label(),
                               "dial abandoned: a control node adopted us meanwhile");
                        inner.tell(|b, now| b.connector_mut().handle_dial_abandoned(now));
                        continue;
                    }
                    _ = stop.changed() => return,
                };
                // Past its transport a dial is not abandoned: the link's handshake is
                // bounded by its own deadline, and a link that authenticated is the
                // machine's (it must end through the link's own close).
                let outcome = match dialed {
                    Ok((remote, ready)) => run_dialed(&inner, &c, remote, ready).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => inner.tell(|b, now| b.connector_mut().handle_linked(now)),
                    Err((code, detail)) => {
                        let random = inner.random_u64();
                        inner.tell(move |b, now| {
                            b.connector_mut()
                                .handle_dial_failed(now, &code, &detail, random)
                        });
                    }
                }
            }
            Some(ConnectorAction::WaitWhileLinked) => {
                // A control node that adopted us (it dialed us) serves us now.
                let mut events = inner.events.subscribe();
                while inner.view().count_role(Role::Control) > 0 {
                    tokio::select! {
                        _ = events.recv() => {}
                        _ = stop.changed() => return,
                    }
                }
                inner.tell(|b, now| b.connector_mut().handle_links_lost(now));
            }
            Some(ConnectorAction::GiveUp { code, detail }) => {
                let attempts = inner
                    .ask(|b, _| b.connector_mut().failures())
                    .await
                    .unwrap_or_default();
                warn!(node = %inner.config.node_id, code = %code, error = %detail,
                      attempts, "giving up connecting to the cluster");
                inner.emit(NodeEvent::GaveUp { code: code.clone() });
                // send_replace: the value must stay even if nobody is waiting yet.
                inner.fatal.send_replace(Some(Fatal { code, detail }));
                return;
            }
            None => {
                let Some(t) = timeout else {
                    return; // nothing left to do
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(inner.clock.to_tokio(t)) => {}
                    // A control node adopted us: the wait is over.
                    _ = interrupted.changed() => continue,
                    _ = stop.changed() => return,
                }
                inner.tell(|b, now| b.connector_mut().handle_timeout(now));
            }
        }
    }
}

/// Resolves a round's entries (discovery), logging each entry that does not resolve.
async fn resolve_all<N: Net>(
    inner: &Arc<Inner<N>>,
    entries: Vec<ClusterUrl>,
) -> Vec<Result<Vec<Candidate>, DiscoveryError>> {
    let mut found = Vec::with_capacity(entries.len());
    for entry in entries {
        let label = entry.written_label();
        let r = inner.resolve(entry).await;
        match &r {
            Ok(cs) => {
                let cs: Vec<String> = cs.iter().map(Candidate::label).collect();
                debug!(node = %inner.config.node_id, entry = %label, candidates = ?cs,
                       "cluster_addr entry resolved");
            }
            Err(e) => {
                warn!(node = %inner.config.node_id, entry = %label, code = e.code(),
                      error = %e, "cluster_addr entry does not resolve");
                inner.emit(NodeEvent::ConnectFailed {
                    url: label,
                    error: e.to_string(),
                });
            }
        }
        found.push(r);
    }
    found
}

impl<N: Net> Inner<N> {
    /// Discovery's DNS: `dns_server`, or the system's configuration.
    fn dns(&self) -> Result<&dyn Dns, &DnsSetupError> {
        self.dns
            .get_or_init(|| {
                let dns = self.net.dns(self.config.dns_server);
                if let Err(e) = &dns {
                    warn!(node = %self.config.node_id, error = %e,
                          "no DNS for discovery: URLs with names will not resolve");
                }
                dns
            })
            .as_ref()
            .map(|d| d.as_ref())
    }

    /// Resolves one URL (see [`crate::discovery::resolve`]).
    pub(super) async fn resolve(&self, url: ClusterUrl) -> Result<Vec<Candidate>, DiscoveryError> {
        crate::discovery::resolve(self.dns(), url, self.random_u64()).await
    }
}

/// Dials a candidate and runs the link until it ends: `Ok` when it authenticated,
/// otherwise the failure's code and detail.
/// The transport part of a dial of `candidate`: connected, with its TLS or WebSocket
/// set up; a failure is logged and told to subscribers.
async fn dial_candidate<N: Net>(
    inner: &Arc<Inner<N>>,
    candidate: &Candidate,
) -> Result<(String, transport::Ready), (String, String)> {
    let url = &candidate.url;
    let label = candidate.label();
    debug!(node = %inner.config.node_id, url = %label, transport = transport_field(&label), "dialing cluster_addr entry");
    match inner.dial_to(url, candidate.addr).await {
        Ok(r) => Ok(r),
        Err((code, e)) => {
            warn!(node = %inner.config.node_id, url = %label, transport = transport_field(&label), code, error = %e, "connect failed");
            inner.emit(NodeEvent::ConnectFailed {
                url: label,
                error: e.clone(),
            });
            Err((code.to_owned(), e))
        }
    }
}

/// Runs the link of a dial of `candidate` whose transport is up, while it lasts: `Ok`
/// when it authenticated.
async fn run_dialed<N: Net>(
    inner: &Arc<Inner<N>>,
    candidate: &Candidate,
    remote: String,
    ready: transport::Ready,
) -> Result<(), (String, String)> {
    let label = candidate.label();
    let keys = inner.keys_for(Some(&candidate.url));
    let outcome = run_connection(
        inner.clone(),
        ready,
        Side::Dialer,
        keys,
        remote,
        LinkExtras::default(),
    )
    .await;
    // Our node id is linked from another live process: refused like a wrong password
    // (backoff grows, attempts count), with a line that says so.
    if nkcluster_core::mesh::is_duplicate_refusal(outcome.error.as_deref()) {
        let id = &inner.config.node_id;
        error!(node = %id, url = %label, transport = transport_field(&label), code = nkcluster_core::mesh::DUPLICATE_NODE_ID,
               "node id {id} is already linked from another process; choose another node id or stop the other process");
        let detail = format!("node id {id} is already linked from another process");
        return Err((nkcluster_core::mesh::DUPLICATE_NODE_ID.to_owned(), detail));
    }
    if outcome.authenticated {
        return Ok(());
    }
    // A refused handshake (say, a wrong password in this URL): the next entry.
    Err(outcome.error.map_or_else(
        || {
            (
                "closed".to_owned(),
                "the peer closed during the handshake".to_owned(),
            )
        },
        |e| (e.code().to_owned(), e.to_string()),
    ))
}
