//! Sending to any node (the core's routing decision, then the link), connecting by hand
//! and exclusive connections.

use super::*;

impl<N: Net> Node<N> {
    /// This node's own status.
    pub fn status(&self) -> Status {
        self.inner.view().status()
    }

    /// Sends a request to any node of the cluster, wherever its proxy lives: this node
    /// itself, a node linked here, or (on a control node) a node linked to another
    /// control member, through the member that owns its ring partition (over the mesh).
    /// A node nobody holds ends `unknown_node`.
    pub async fn send(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.route(node, class, body, timeout, 0).await
    }

    /// [`send`](Self::send) with options: `exclusive` sends the request over a dedicated
    /// connection to the node, opened by whichever node holds its link (this one, or the
    /// control node serving it), when the node listens; otherwise over its main link.
    pub async fn send_with(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        opts: RequestOptions,
    ) -> Result<Bytes, RequestError> {
        if !opts.exclusive {
            return self.send(node, class, body, opts.timeout).await;
        }
        if self.inner.view().is_linked(node) {
            return self.request_with(node, class, body, opts).await;
        }
        let routed = self.route_enqueue(node, class, body, opts.timeout, 0, true);
        self.route_finish(node, routed, opts.timeout).await
    }

    pub(super) async fn route(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
        hops: u8,
    ) -> Result<Bytes, RequestError> {
        let routed = self.route_enqueue(node, class, body, timeout, hops, false);
        self.route_finish(node, routed, timeout).await
    }

    /// The synchronous half of routing: answers at once, or queues the request on the
    /// right link now, so that requests routed one after the other leave in that order
    /// (a file's parts, pipelined).
    pub(super) fn route_enqueue(
        &self,
        node: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
        hops: u8,
        exclusive: bool,
    ) -> Routed {
        use nkcluster_core::routing::RouteStep;
        let inner = &self.inner;
        let step = inner.view().route(node, hops);
        let (via, hops, fallback) = match step {
            RouteStep::Local => {
                // Served like a peer's request, by ourselves.
                let (responder, rx) = Responder::local();
                let role = inner.identity.role;
                return match inner.serve(None, node, role, class, body, responder) {
                    Answer::Now(r) => Routed::Done(r.map_err(RequestError::Remote)),
                    Answer::Later => Routed::Local(rx),
                };
            }
            RouteStep::Direct => return Routed::Direct(inner.enqueue(node, class, body, timeout)),
            RouteStep::Unknown => return Routed::Done(Err(unknown_node(node))),
            RouteStep::NotConnected => return Routed::Done(Err(RequestError::NotConnected)),
            RouteStep::Via { via, hops, fan_out } => (via, hops, fan_out),
        };
        let req = RouteRequest {
            node: node.to_owned(),
            class: class.into(),
            body,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            hops,
            exclusive,
        };
        let body = match encode_body(&req) {
            Ok(b) => b,
            Err(e) => return Routed::Done(Err(e)),
        };
        let rx = inner.enqueue(&via, CLASS_ROUTE, body.clone(), timeout);
        Routed::Forwarded {
            rx,
            body,
            owner: via,
            fallback,
        }
    }

    /// The asynchronous half: waits for the answer; a control node whose owner did not
    /// hold the node asks the other members once each.
    pub(super) async fn route_finish(
        &self,
        node: &str,
        routed: Routed,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + timeout;
        let (r, body, owner) = match routed {
            Routed::Done(r) => return r,
            Routed::Local(rx) => {
                return match tokio::time::timeout_at(deadline, rx).await {
                    Err(_) => Err(RequestError::Timeout),
                    Ok(Ok(r)) => r.map_err(RequestError::Remote),
                    Ok(Err(_)) => Err(RequestError::ConnectionFailed),
                };
            }
            Routed::Direct(rx) => return wait_reply(rx, deadline).await,
            Routed::Forwarded {
                rx,
                body,
                owner,
                fallback,
            } => {
                let r = wait_reply(rx, deadline).await;
                if !fallback {
                    return r;
                }
                (r, body, owner)
            }
        };
        let unknown = || unknown_node(node);
        if !matches!(&r, Err(RequestError::Remote(e)) if e.code == ErrorCode::UnknownNode) {
            return r;
        }
        // Not at its owner (a hand-off in flight, or views that disagree for a moment):
        // ask the other members once each.
        let others = inner.view().fan_out(&owner);
        for m in others {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self.request(&m, CLASS_ROUTE, body.clone(), left).await;
            if !matches!(&r, Err(RequestError::Remote(e)) if e.code == ErrorCode::UnknownNode) {
                return r;
            }
        }
        Err(unknown())
    }

    /// Connects to the first entry of `urls` (a `nkcluster://` list, tried in order) that
    /// authenticates, and keeps that link (it is listed in [`peers`](Self::peers)).
    /// Returns the peer reached, with the remote address and its transport
    /// (`tls:127.0.0.1:1973`). Errors: the URL list's own (`invalid_scheme`,
    /// `invalid_transport`, `syntax_error`), `no_connections` when nothing answered,
    /// otherwise the last entry's failure (`auth_failed`, `tls_error`, ...).
    pub async fn connect(&self, urls: &str) -> Result<PeerSummary, ConnectError> {
        let urls = nkcluster_core::url::parse_url_list(urls)
            .map_err(|e| ConnectError::new(e.code(), e.to_string()))?;
        let mut last = ConnectError::nothing_reached();
        for url in urls {
            let (remote, ready) = match self.inner.dial(&url).await {
                Ok(r) => r,
                Err((code, detail)) => {
                    last = last.then(ConnectError::new(code, detail));
                    continue;
                }
            };
            let keys = self.inner.keys_for(Some(&url));
            match spawn_dialed(&self.inner, ready, keys, remote).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(e)) => last = last.then(ConnectError::new(e.code(), e.to_string())),
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Like [`request`](Self::request), with options: `exclusive` opens a dedicated
    /// connection to the peer (to one of its listen URLs, authenticated like any other),
    /// sends the request over it and closes it once idle, so a long or large request does
    /// not share the main link. A peer without a listener is asked over its main link.
    pub async fn request_with(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        opts: RequestOptions,
    ) -> Result<Bytes, RequestError> {
        if !opts.exclusive {
            return self.request(peer, class, body, opts.timeout).await;
        }
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let tx = match self.dial_exclusive(peer, deadline, 1).await {
            Exclusive::Open(tx) => tx,
            // No exclusive connection is possible (no listener, or none reachable): the
            // original's "if possible" semantics, use the main link.
            Exclusive::NotDialed => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                return self.request(peer, class, body, left).await;
            }
            Exclusive::Failed(e) => return Err(e),
        };
        let (reply_tx, reply_rx) = crate::reply::channel();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = self.inner.clock.now();
        let _ = tx.try_send(Command::Request {
            class: class.into(),
            body,
            asked,
            deadline: asked + left,
            reply: reply_tx,
        });
        // Our sender goes now: once this request is answered, the driver sees no more
        // commands can come and closes the link.
        drop(tx);
        reply_rx
            .await
            .unwrap_or(Err(RequestError::ConnectionFailed))
    }

    /// Dials a dedicated connection to `peer` (linked here) at one of its listen URLs,
    /// authenticated like any other, and checks that `peer` is who answered there
    /// ([`check_exclusive_peer`]: another node listening at that URL gets nothing and is
    /// closed). Its command channel (room for `window` commands) closes the connection
    /// once dropped and idle.
    pub(super) async fn dial_exclusive(
        &self,
        peer: &str,
        deadline: tokio::time::Instant,
        window: usize,
    ) -> Exclusive {
        let Some((listen, ip, role)) = self
            .inner
            .view()
            .links()
            .first(peer)
            .map(|l| (l.summary.listen.clone(), l.remote_ip, l.summary.role))
        else {
            return Exclusive::Failed(RequestError::NotConnected);
        };
        let me = &self.inner.config.node_id;
        // Once a URL was dialed, why the last one failed.
        let mut last = None;
        // A peer listening on `all` is reachable where its main link reached it.
        for url in nkcluster_core::url::reachable_at(&listen, ip)
            .iter()
            .filter_map(|u| parse_url(u).ok())
        {
            let (remote, ready) = match tokio::time::timeout_at(deadline, self.inner.dial(&url))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err((code, e))) => {
                    warn!(node = %me, url = %url.remote_label(), transport = transport_field(&url.remote_label()), code, error = %e,
                          "exclusive connection failed");
                    continue;
                }
                Err(_) => return Exclusive::Failed(RequestError::Timeout),
            };
            let (tx, rx) = cmdq::channel(window.max(1));
            let (told_tx, told_rx) = oneshot::channel();
            let keys = self.inner.keys_for(None);
            let inner = self.inner.clone();
            let sender = tx.clone();
            tokio::spawn(async move {
                run_connection(
                    inner,
                    ready,
                    Side::Dialer,
                    keys,
                    remote,
                    LinkExtras {
                        commands: Some((sender, rx)),
                        notify: Some(told_tx),
                        ..Default::default()
                    },
                )
                .await;
            });
            let close = |reason: String| {
                let _ = tx.try_send(Command::Close { reason });
            };
            match tokio::time::timeout_at(deadline, told_rx).await {
                Ok(Ok(Ok(answered))) => match check_exclusive_peer(peer, role, &answered) {
                    Ok(()) => return Exclusive::Open(tx),
                    Err(e) => {
                        warn!(node = %me, url = %url.remote_label(), transport = transport_field(&url.remote_label()), expected = %peer,
                              answered = %answered.node_id, code = %e.code, error = %e.message,
                              "exclusive connection reached another node; closing");
                        close(format!("{}: {}", e.code, e.message));
                        last = Some(RequestError::Remote(e));
                    }
                },
                Ok(Ok(Err(e))) => {
                    warn!(node = %me, url = %url.remote_label(), transport = transport_field(&url.remote_label()), code = e.code(), error = %e,
                          "exclusive connection failed");
                    last = Some(RequestError::ConnectionFailed);
                }
                Ok(Err(_)) => last = Some(RequestError::ConnectionFailed),
                Err(_) => {
                    close("timeout".into());
                    return Exclusive::Failed(RequestError::Timeout);
                }
            }
        }
        last.map_or(Exclusive::NotDialed, Exclusive::Failed)
    }
}

/// What [`Node::dial_exclusive`] got.
pub(super) enum Exclusive {
    /// The connection, authenticated by the expected node: its command channel.
    Open(cmdq::Sender<Command>),
    /// No listen URL of the peer could be dialed.
    NotDialed,
    /// A URL was dialed but no connection to the peer came of it (or the peer is not
    /// linked here, or the deadline passed).
    Failed(RequestError),
}
