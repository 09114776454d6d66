//! Links: dialing, accepting (with admission limits), running one connection and
//! keeping the table of authenticated peers as links come and go.

use super::*;
use nkcluster_core::pump::Pump;
use nkcluster_core::telemetry::{LinkSide, Meter, transport_of_remote};

impl<N: Net> Inner<N> {
    pub(super) fn refused(&self, remote: &str, claimed: Option<String>, code: &str, detail: &str) {
        let claimed_peer = claimed.as_deref().unwrap_or("?");
        // A flood of refused connections from one address writes a few lines per
        // interval, then one with the count of those left out (debug lines).
        let source = nkcluster_core::url::ip_of_remote(remote)
            .map_or_else(|| remote.to_owned(), |ip| ip.to_string());
        let Some(line) = self.log_line(&source) else {
            debug!(node = %self.config.node_id, remote = %remote, transport = transport_field(remote), claimed_peer = %claimed_peer,
                   code = %code, error = %detail, "connection refused (left out)");
            self.emit(NodeEvent::HandshakeFailed {
                remote: remote.to_owned(),
                claimed,
                code: code.to_owned(),
            });
            return;
        };
        let more = line.suffix(&source);
        if nkcluster_core::conn_error::is_misconfiguration(code) {
            // Two nodes that disagree on a setting (or a wrong password): an error.
            error!(node = %self.config.node_id, remote = %remote, transport = transport_field(remote), claimed_peer = %claimed_peer,
                   code = %code, error = %detail, "connection refused{more}");
        } else {
            warn!(node = %self.config.node_id, remote = %remote, transport = transport_field(remote), claimed_peer = %claimed_peer,
                  code = %code, error = %detail, "connection refused{more}");
        }
        self.emit(NodeEvent::HandshakeFailed {
            remote: remote.to_owned(),
            claimed,
            code: code.to_owned(),
        });
    }

    /// The client TLS configuration for dialing `url` (made at its first use, kept).
    pub(super) fn client_tls(
        &self,
        url: &ClusterUrl,
    ) -> Result<Arc<rustls::ClientConfig>, transport::TransportError> {
        self.client_tls_for(url.tls.over(&self.config.tls))
    }

    /// Makes the client TLS configuration of the URLs that set no TLS option of their
    /// own (the node's options) at the node's start, so that its first TLS link does
    /// not wait for it (a provider, a verifier and a session cache; issue 15, point 7).
    /// A failure (a CA file that does not read) is left for a dial to report.
    pub(super) fn prepare_client_tls(&self) {
        let _ = self.client_tls_for(TlsOptions::default().over(&self.config.tls));
    }

    fn client_tls_for(
        &self,
        opts: TlsOptions,
    ) -> Result<Arc<rustls::ClientConfig>, transport::TransportError> {
        // Keyed by the options themselves: a look-up per dial formats nothing.
        if let Some(c) = lock(&self.client_tls).get(&opts) {
            return Ok(c.clone());
        }
        let c = transport::client_tls_with(&opts, &self.tls_crypto)?;
        lock(&self.client_tls).insert(opts, c.clone());
        Ok(c)
    }

    /// Connects to `url` and sets up its transport, within the connect and handshake
    /// deadlines. Returns the remote label (`tls:10.0.0.1:1973`) and the transport, or an
    /// error code (`no_connections` when nothing answered) and detail.
    pub(super) async fn dial(
        &self,
        url: &ClusterUrl,
    ) -> Result<(String, transport::Ready), (&'static str, String)> {
        self.dial_to(url, None).await
    }

    /// [`dial`](Self::dial), at `addr` when discovery resolved the URL's host (the
    /// transport still names the host, for TLS).
    pub(super) async fn dial_to(
        &self,
        url: &ClusterUrl,
        addr: Option<SocketAddr>,
    ) -> Result<(String, transport::Ready), (&'static str, String)> {
        let client = if url.transport.is_tls() {
            Some(
                self.client_tls(url)
                    .map_err(|e| (e.code(), e.to_string()))?,
            )
        } else {
            None
        };
        let (host, port) = match addr {
            Some(a) => (a.ip().to_string(), a.port()),
            None => (url.host.to_string(), url.port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let limit = self.config.connection.connect_timeout;
        let (stream, addr) = match tokio::time::timeout(limit, self.net.connect(host, port)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(("no_connections", format!("{}: {e}", e.kind()))),
            Err(_) => {
                return Err((
                    "no_connections",
                    format!("connect timed out after {limit:?}"),
                ));
            }
        };
        // Plain TCP has nothing to set up: no future, no deadline to arm.
        if url.transport == Transport::Tcp {
            return Ok((
                format!("{}:{addr}", url.transport),
                transport::Ready::plain(stream),
            ));
        }
        let limit = self.config.connection.handshake.timeout;
        // Our hello leaves with the TLS handshake's last flight: one write fewer.
        let opening = nkcluster_core::conn::opens_with_transport(url.transport).then(|| {
            let nonce = self.nonce();
            transport::Opening {
                nonce,
                bytes: nkcluster_core::conn::dialer_opening(
                    nkcluster_core::conn::Framing::Stream,
                    &self.config.connection.handshake,
                    &self.identity,
                    nonce,
                ),
            }
        });
        // Boxed: the TLS and WebSocket handshakes' state is large; inline, it would make
        // every caller's future (`Node::connect`'s) that large, and every move of it a
        // copy of that much (issue 15, point 7).
        let setup = Box::pin(transport::dial(
            stream,
            url,
            client.as_ref(),
            self.config.connection.max_frame,
            opening,
        ));
        let done = match tokio::time::timeout(limit, setup).await {
            Ok(Ok(r)) => return Ok((format!("{}:{addr}", url.transport), r)),
            Ok(Err(e)) => (e.code(), e.to_string()),
            Err(_) => (
                "handshake_timeout",
                format!("no {} handshake within {limit:?}", url.transport),
            ),
        };
        // Someone answered, and the transport's own handshake failed.
        self.telemetry
            .handshake(url.transport, LinkSide::Dialer, Err(done.0));
        Err(done)
    }
}

pub(super) fn bind_addr(url: &ClusterUrl) -> Result<SocketAddr, String> {
    let ip = match &url.host {
        Host::All => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Host::Ip(ip) => *ip,
        Host::Name(n) if n.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        // A name is what peers dial: bind every interface, announce the name.
        Host::Name(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(SocketAddr::new(ip, url.port))
}

/// One unauthenticated connection's slot in the node's [`Admission`] counts, freed when
/// dropped.
pub(super) struct AdmissionTicket {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl AdmissionTicket {
    /// The slot, and until when the connection is held (its source is penalised for
    /// failed handshakes).
    pub(super) fn take(
        admission: &Arc<Mutex<Admission>>,
        now: nkcluster_core::Instant,
        ip: IpAddr,
    ) -> Result<(Self, Option<nkcluster_core::Instant>), Refusal> {
        let hold = lock(admission).admit(now, ip)?;
        let ticket = AdmissionTicket {
            admission: admission.clone(),
            ip,
        };
        Ok((ticket, hold))
    }

    /// The connection failed its handshake on a wrong proof: its source backs off.
    pub(super) fn auth_failed(&self, now: nkcluster_core::Instant) {
        lock(&self.admission).handle_auth_failure(now, self.ip);
    }
}

impl Drop for AdmissionTicket {
    fn drop(&mut self) {
        lock(&self.admission).release(self.ip);
    }
}

/// The secrets a connection may prove: the control cluster's and the workers'.
#[derive(Clone)]
pub(super) struct Keys {
    /// From `password`.
    pub(super) control: Key,
    /// From `worker_password` (`None`: the control key serves every role).
    pub(super) worker: Option<Key>,
}

/// What some connections bring beyond the transport and key.
#[derive(Default)]
pub(super) struct LinkExtras {
    /// An exclusive connection's own command channel (it is not listed as a peer link).
    pub(super) commands: Option<(cmdq::Sender<Command>, cmdq::Receiver<Command>)>,
    /// Told the handshake's outcome.
    pub(super) notify: Option<oneshot::Sender<Result<PeerSummary, ConnError>>>,
    /// An accepted connection's slot among the unauthenticated ones.
    pub(super) admission: Option<AdmissionTicket>,
    /// A worker dialed at a URL (an adoption, a redial): the peer must be that worker and
    /// have announced the URL ([`check_dialed_worker`]), or the link closes unlisted.
    pub(super) expect: Option<(String, ClusterUrl)>,
}

/// Outcome of one connection, as seen by its sink.
#[derive(Default)]
pub(super) struct LinkOutcome {
    /// The handshake succeeded.
    pub(super) authenticated: bool,
    /// Why the connection ended, if not by our own close. Boxed: set once, at the end,
    /// and the link's task keeps room for the outcome as long as it lives.
    pub(super) error: Option<Box<ConnError>>,
}

pub(super) struct LinkSink<N: Net> {
    inner: Arc<Inner<N>>,
    /// The transport, for the handshake counts (`None`: a remote label without one).
    transport: Option<Transport>,
    conn_id: u64,
    remote: String,
    dialer: bool,
    /// The link's command channel, handed to the machine at authentication.
    commands: Option<cmdq::Sender<Command>>,
    /// Listed in the link table (an exclusive connection is not: it serves one request).
    listed: bool,
    remote_ip: Option<IpAddr>,
    /// An accepted connection's slot among the unauthenticated ones (freed at
    /// authentication, or when the connection ends). Boxed: an authenticated link's
    /// task should not keep room for it.
    admission: Option<Box<AdmissionTicket>>,
    /// See [`LinkExtras::expect`] (boxed: rare, and large).
    expect: Option<Box<(String, ClusterUrl)>>,
    /// The peer was not the one expected: closed, never listed.
    rejected: bool,
    outcome: LinkOutcome,
    notify: Option<oneshot::Sender<Result<PeerSummary, ConnError>>>,
    /// The link is up: its next write waits for the machine (see
    /// [`EventSink::take_hold`]).
    hold_after_input: bool,
}

impl<N: Net> EventSink for LinkSink<N> {
    /// Once the link is up: the link's next write waits until the machine has taken
    /// every input of the read that brought the link up (the link up, and the requests
    /// that came with it: a worker's `placed`), with what it sends at once on them. So
    /// an accepted link's proof leaves with what the machine sends on a link up (a
    /// worker's `placed`, a member's gossip), and a worker's answer to `placed` with its
    /// first status and info (see [`Inner::perform_now`]), each in one write.
    fn take_hold(&mut self) -> Option<oneshot::Receiver<()>> {
        if !std::mem::take(&mut self.hold_after_input) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        // The machine's owner runs its jobs in the order they were queued: this one
        // comes after the inputs above.
        self.inner.submit(Box::new(move |_, _| {
            Some(Box::new(move || {
                let _ = tx.send(());
            }) as Then)
        }));
        Some(rx)
    }

    fn on_event(&mut self, conn: &Connection, event: &Event) {
        let me = &self.inner.config.node_id;
        match event {
            Event::Authenticated(p) => {
                self.outcome.authenticated = true;
                self.count_handshake(Ok(()));
                self.admission = None;
                info!(node = %me, peer = %p.node_id, role = p.role.as_str(), remote = %self.remote, transport = transport_field(&self.remote),
                      "link up");
                let summary = PeerSummary::new(p, &self.remote, self.dialer);
                if let Some((worker, dialed)) = self.expect.take().map(|e| *e)
                    && let Err(e) = check_dialed_worker(&worker, &dialed, &summary, self.remote_ip)
                {
                    warn!(node = %me, peer = %p.node_id, remote = %self.remote, transport = transport_field(&self.remote), expected = %worker,
                          code = %e.code, error = %e.message, "dialed a worker and another node answered; closing");
                    self.rejected = true;
                    if let Some(tx) = self.commands.take() {
                        let _ = tx.try_send(Command::Close {
                            reason: format!("{}: {}", e.code, e.message),
                        });
                    }
                    if let Some(n) = self.notify.take() {
                        let _ = n.send(Ok(summary));
                    }
                    return;
                }
                // Told once the link is listed and published: the caller may use it at
                // once.
                let told: Option<Then> = self.notify.take().map(|n| {
                    let summary = summary.clone();
                    Box::new(move || {
                        let _ = n.send(Ok(summary));
                    }) as Then
                });
                if let Some(handle) = self.commands.take() {
                    self.hold_after_input = true;
                    let link = Link {
                        conn_id: self.conn_id,
                        summary,
                        remote_ip: self.remote_ip,
                        rtt: Default::default(),
                        handle,
                    };
                    let listed = self.listed;
                    self.inner.submit(Box::new(move |b, now| {
                        b.handle_link_up(now, link, listed);
                        told
                    }));
                } else if let Some(told) = told {
                    told();
                }
            }
            Event::RttMeasured(rtt) => {
                if let Some(p) = conn.peer() {
                    let (id, peer, rtt) = (self.conn_id, p.node_id.clone(), *rtt);
                    self.inner.tell(move |b, _| b.handle_rtt(&peer, id, rtt));
                }
            }
            Event::Gossip(view) => {
                if let Some(p) = conn.peer() {
                    let (id, peer, view) = (self.conn_id, p.node_id.clone(), view.clone());
                    self.inner
                        .tell(move |b, now| b.handle_gossip(now, &peer, id, &view));
                }
            }
            Event::Closed(err) => {
                self.outcome.error = err.clone().map(Box::new);
                if let Some(n) = self.notify.take() {
                    let e = err
                        .clone()
                        .unwrap_or_else(|| ConnError::PeerClosed("closed".into()));
                    let _ = n.send(Err(e));
                }
                let claimed = conn.claimed_peer().map(str::to_owned);
                match (self.outcome.authenticated, conn.peer()) {
                    // Never listed: nothing for the machine.
                    (true, Some(_)) if self.rejected => {}
                    (true, Some(p)) => {
                        if let Some(e) = err {
                            self.inner.telemetry.link_ended(e.code());
                        }
                        let peer = p.node_id.clone();
                        match err {
                            // The peer closed in order (a stop, a hand-off, an admin client
                            // done with its command): news, not trouble.
                            Some(e)
                                if matches!(e, ConnError::PeerClosed(_))
                                    || p.role == Role::Admin =>
                            {
                                info!(node = %me, peer = %peer, remote = %self.remote, transport = transport_field(&self.remote), code = e.code(), error = %e, "link down")
                            }
                            Some(e) => {
                                warn!(node = %me, peer = %peer, remote = %self.remote, transport = transport_field(&self.remote),
                                             code = e.code(), error = %e, "link down")
                            }
                            None => {
                                info!(node = %me, peer = %peer, remote = %self.remote, transport = transport_field(&self.remote), "link closed")
                            }
                        }
                        let gone = LinkGone {
                            conn_id: self.conn_id,
                            summary: PeerSummary::new(p, &self.remote, self.dialer),
                            remote_ip: self.remote_ip,
                            error: err.clone(),
                        };
                        self.inner.tell(move |b, now| b.handle_link_down(now, gone));
                    }
                    _ => {
                        let code = err.as_ref().map_or("closed", |e| e.code());
                        if !self.outcome.authenticated {
                            self.count_handshake(Err(code));
                        }
                        if code == "auth_failed"
                            && let Some(t) = &self.admission
                        {
                            t.auth_failed(self.inner.clock.now());
                        }
                        let detail = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
                        self.inner.refused(&self.remote, claimed, code, &detail);
                    }
                }
            }
            _ => {}
        }
    }
}

impl<N: Net> LinkSink<N> {
    fn count_handshake(&self, result: Result<(), &str>) {
        let side = if self.dialer {
            LinkSide::Dialer
        } else {
            LinkSide::Listener
        };
        if let Some(t) = self.transport {
            self.inner.telemetry.handshake(t, side, result);
        }
    }
}

/// Runs a connection we dialed in a task of its own; resolves with its handshake's
/// outcome (an error when the task ended first).
pub(super) fn spawn_dialed<N: Net>(
    inner: &Arc<Inner<N>>,
    ready: transport::Ready,
    keys: Keys,
    remote: String,
) -> oneshot::Receiver<Result<PeerSummary, ConnError>> {
    spawn_dialed_expecting(inner, ready, keys, remote, None)
}

/// [`spawn_dialed`], expecting a given worker at a given URL (see
/// [`LinkExtras::expect`]).
pub(super) fn spawn_dialed_expecting<N: Net>(
    inner: &Arc<Inner<N>>,
    ready: transport::Ready,
    keys: Keys,
    remote: String,
    expect: Option<(String, ClusterUrl)>,
) -> oneshot::Receiver<Result<PeerSummary, ConnError>> {
    let (tx, rx) = oneshot::channel();
    let extras = LinkExtras {
        notify: Some(tx),
        expect,
        ..Default::default()
    };
    tokio::spawn(run_connection(
        inner.clone(),
        ready,
        Side::Dialer,
        keys,
        remote,
        extras,
    ));
    rx
}

/// Runs one connection over an established transport to completion.
///
/// Not an `async fn`: that would keep its arguments in the link's future twice (as
/// arguments and as the locals they move into) for the link's whole life. The setup
/// runs here, at once, and the future holds the link's state once (issue 15, point 6).
pub(super) fn run_connection<N: Net>(
    inner: Arc<Inner<N>>,
    ready: transport::Ready,
    side: Side,
    keys: Keys,
    remote: String,
    extras: LinkExtras,
) -> impl Future<Output = LinkOutcome> + Send + 'static {
    let LinkExtras {
        commands,
        notify,
        admission,
        expect,
    } = extras;
    let params = ConnectionParams {
        side,
        identity: inner.identity.clone(),
        key: keys.control,
        worker_key: keys.worker,
        nonce: ready
            .opening
            .as_ref()
            .map_or_else(|| inner.nonce(), |o| o.nonce),
        channel_binding: ready.binding,
        wall_origin_ns: inner.clock.wall_origin_ns(),
    };
    let mut io = ready.io;
    let mut config = inner.config.connection.clone();
    config.framing = io.framing();
    let mut conn = Connection::new(config, params, inner.clock.now());
    if let Some(o) = ready.opening {
        conn.opening_sent(&o.bytes);
    }
    // An exclusive connection brings its own channel and is not listed as a peer link.
    let (listed, tx, mut rx) = match commands {
        Some((tx, rx)) => (false, tx, rx),
        None => {
            let (tx, rx) = cmdq::channel(COMMAND_QUEUE);
            (true, tx, rx)
        }
    };
    let conn_id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let transport = transport_of_remote(&remote);
    // The link's bookkeeping, counting with its meter: made here and lent to the driver,
    // so that the link's task holds it once.
    let mut pump = Pump::with_meter(Meter::new(
        inner.telemetry.clone(),
        transport.unwrap_or(Transport::Tcp),
    ));
    let mut sink = LinkSink {
        inner: inner.clone(),
        transport,
        conn_id,
        remote_ip: nkcluster_core::url::ip_of_remote(&remote),
        admission: admission.map(Box::new),
        expect: expect.map(Box::new),
        rejected: false,
        remote,
        dialer: side == Side::Dialer,
        commands: Some(tx),
        listed,
        outcome: LinkOutcome::default(),
        notify,
        hold_after_input: false,
    };
    let handler = NodeHandler {
        inner: inner.clone(),
        conn_id,
    };
    async move {
        inner.running.send_modify(|n| *n += 1);
        let clock = inner.clock;
        drive(
            io.as_mut(),
            &mut conn,
            clock,
            &mut rx,
            &handler,
            &mut sink,
            &mut pump,
        )
        .await;
        inner.running.send_modify(|n| *n -= 1);
        sink.outcome
    }
}

/// Starts the task of a link we accepted, its transport up (`ticket`: its admission).
fn spawn_accepted_link<N: Net>(
    inner: Arc<Inner<N>>,
    ready: transport::Ready,
    remote: String,
    ticket: AdmissionTicket,
) {
    let keys = inner.keys_for(None);
    let extras = LinkExtras {
        admission: Some(ticket),
        ..Default::default()
    };
    tokio::spawn(run_connection(
        inner,
        ready,
        Side::Listener,
        keys,
        remote,
        extras,
    ));
}

pub(super) async fn accept_loop<N: Net>(
    inner: Arc<Inner<N>>,
    listener: N::Listener,
    url: ClusterUrl,
    tls: Option<Arc<ServerTls>>,
) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            r = inner.net.accept(&listener) => r,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                let now = inner.clock.now();
                let (ticket, hold) = match AdmissionTicket::take(&inner.admission, now, addr.ip()) {
                    Ok(t) => t,
                    Err(r) => {
                        drop(stream);
                        // One line per source per interval, with the count left out.
                        let source = addr.ip().to_string();
                        let remote = format!("{}:{addr}", url.transport);
                        match inner.log_line(&source) {
                            Some(line) => {
                                warn!(node = %inner.config.node_id, remote = %remote, transport = transport_field(&remote), code = r.code(),
                                      error = %r, "connection refused at accept{}", line.suffix(&source))
                            }
                            None => {
                                debug!(node = %inner.config.node_id, remote = %remote, transport = transport_field(&remote), code = r.code(),
                                       error = %r, "connection refused at accept (left out)")
                            }
                        }
                        continue;
                    }
                };
                if hold.is_none() && url.transport == Transport::Tcp {
                    // Plain TCP has nothing to set up: the link's own task at once, with no
                    // setup task before it (issue 15, point 7).
                    let remote = format!("{}:{addr}", url.transport);
                    spawn_accepted_link(
                        inner.clone(),
                        transport::Ready::plain(stream),
                        remote,
                        ticket,
                    );
                    continue;
                }
                let inner = inner.clone();
                let tls = tls.clone();
                let path = url.path.clone();
                let transport = url.transport;
                tokio::spawn(async move {
                    // A source penalised for failed handshakes waits (nothing is read).
                    if let Some(t) = hold {
                        tokio::time::sleep_until(inner.clock.to_tokio(t)).await;
                    }
                    let remote = format!("{transport}:{addr}");
                    let max = inner.config.connection.max_frame;
                    // The transport's own handshake (TLS, WebSocket upgrade) counts against
                    // the handshake deadline too: a silent peer cannot hold a task.
                    let limit = inner.config.connection.handshake.timeout;
                    // Boxed: the TLS and WebSocket handshakes' state is large, and only
                    // needed until the transport is up; inline, every link's task would
                    // keep room for it as long as the link lives (issue 15, point 6).
                    let setup = Box::pin(transport::accept(
                        stream,
                        transport,
                        tls.as_deref(),
                        &path,
                        max,
                    ));
                    let ready = match tokio::time::timeout(limit, setup).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => {
                            inner
                                .telemetry
                                .handshake(transport, LinkSide::Listener, Err(e.code()));
                            inner.refused(&remote, None, e.code(), &e.to_string());
                            return;
                        }
                        Err(_) => {
                            inner.telemetry.handshake(
                                transport,
                                LinkSide::Listener,
                                Err("handshake_timeout"),
                            );
                            let e = format!("no {transport} handshake within {limit:?}");
                            inner.refused(&remote, None, "handshake_timeout", &e);
                            return;
                        }
                    };
                    // The link in a task of its own: this one (and what it held for
                    // the setup) ends here.
                    spawn_accepted_link(inner, ready, remote, ticket);
                });
            }
            Err(e) => {
                // Out of descriptors and similar: keep serving, but do not spin.
                warn!(node = %inner.config.node_id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns.
    fn returned_size<F, A, B, C, D, E, G, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D, E, G) -> R,
    {
        size_of::<R>()
    }

    /// A link's task is its future and tokio's own 112 bytes (header, scheduler, id,
    /// stage tag, trailer), allocated in steps of 128 bytes: the future stays within 14
    /// steps (1,792 bytes), each byte past that costs every link 128 more. The 112 is
    /// measured: heaptrack of the idle bench's control process showed tokio's task
    /// cells one step bigger with a 1,816-byte link future than with 1,808 bytes (and
    /// `-Zprint-type-sizes` gives the cell as header 32, core 24 + the stage (the future
    /// and an 8-byte tag), trailer 48).
    #[test]
    fn a_links_task_fits_fourteen_steps_of_128_bytes() {
        let future = returned_size(run_connection::<crate::net::TokioNet>);
        assert!(future + 112 <= 14 * 128, "link future {future} bytes");
    }
}
