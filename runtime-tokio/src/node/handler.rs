//! The node's own request classes (routing, hand-offs, the node table, events, jobs),
//! then the registered handlers: where a peer's request is dispatched.

use super::*;

/// Answers the node's own request classes, then the registered handlers.
pub(super) struct NodeHandler<N: Net> {
    pub(super) inner: Arc<Inner<N>>,
}

impl<N: Net> RequestHandler for NodeHandler<N> {
    fn handle(&self, peer: &str, class: &str, body: Bytes, responder: Responder) -> Answer {
        match class {
            // This node's own links only (what other control nodes gather).
            CLASS_LOCAL_NODES => Answer::Now(encode(&self.inner.node_rows())),
            CLASS_SUBSCRIBE if self.inner.membership.is_some() => {
                match postcard::from_bytes::<SubscribeRequest>(&body) {
                    // Only a node linked here can receive the stream.
                    Ok(req) if !lock(&self.inner.peers).contains_key(&req.subscriber) => {
                        Answer::Now(Err(RemoteError::new(
                            "not_connected",
                            format!("{} is not linked here", req.subscriber),
                        )))
                    }
                    Ok(req) => {
                        self.inner.subscribe(req);
                        Answer::Now(Ok(Bytes::new()))
                    }
                    Err(e) => Answer::Now(Err(RemoteError::new("bad_request", e.to_string()))),
                }
            }
            // A member's event for our whole-cluster subscribers.
            CLASS_EVENT_STREAM if self.inner.membership.is_some() => {
                self.inner.publish(&body, true);
                Answer::Now(Ok(Bytes::new()))
            }
            CLASS_SPAWN_CALL => {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || {
                    responder.reply(inner.handlers.call(CLASS_SPAWN_CALL, body));
                });
                Answer::Later
            }
            CLASS_JOB => match postcard::from_bytes::<JobCall>(&body) {
                Err(e) => Answer::Now(Err(RemoteError::new("bad_request", format!("job: {e}")))),
                // A class's request and command callbacks may take a while: they run on
                // the blocking pool, so the link (pings, other requests) never waits.
                Ok(JobCall::SendFile(part)) => {
                    self.inner.write_file_part(peer, part, responder);
                    Answer::Later
                }
                Ok(call @ (JobCall::Request { .. } | JobCall::Command { .. })) => {
                    let inner = self.inner.clone();
                    let peer = peer.to_owned();
                    tokio::task::spawn_blocking(move || {
                        responder.reply(inner.job_call(&peer, call))
                    });
                    Answer::Later
                }
                Ok(call) => Answer::Now(self.inner.job_call(peer, call)),
            },
            CLASS_JOB_EVENT if self.inner.membership.is_some() => Answer::Now(
                postcard::from_bytes::<EventMsg>(&body)
                    .map_err(|e| RemoteError::new("bad_request", format!("event: {e}")))
                    .map(|ev| {
                        self.inner.handle_job_event(ev);
                        Bytes::new()
                    }),
            ),
            CLASS_ROUTE if self.inner.membership.is_some() => {
                let req: RouteRequest = match postcard::from_bytes(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return Answer::Now(Err(RemoteError::new(
                            "bad_request",
                            format!("route: {e}"),
                        )));
                    }
                };
                let node = Node::from_inner(self.inner.clone());
                let timeout = Duration::from_millis(req.timeout_ms);
                if req.exclusive && lock(&self.inner.peers).contains_key(&req.node) {
                    // We hold the target's link: a dedicated connection from here.
                    let opts = RequestOptions {
                        timeout,
                        exclusive: true,
                    };
                    tokio::spawn(async move {
                        let r = node
                            .request_with(&req.node, &req.class, req.body, opts)
                            .await;
                        responder.reply(r.map_err(|e| match e {
                            RequestError::Remote(r) => r,
                            e => RemoteError::new(e.code(), e.to_string()),
                        }));
                    });
                    return Answer::Later;
                }
                // Queued now, in arrival order; answered when the reply comes.
                let routed = node.route_enqueue(
                    &req.node,
                    &req.class,
                    req.body,
                    timeout,
                    req.hops,
                    req.exclusive,
                );
                tokio::spawn(async move {
                    let r =
                        node.route_finish(&req.node, routed, timeout)
                            .await
                            .map_err(|e| match e {
                                RequestError::Remote(r) => r,
                                e => RemoteError::new(e.code(), e.to_string()),
                            });
                    responder.reply(r);
                });
                Answer::Later
            }
            CLASS_ADOPT if self.inner.proxies.is_some() => {
                let req: AdoptRequest = match postcard::from_bytes(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return Answer::Now(Err(RemoteError::new(
                            "bad_request",
                            format!("adopt: {e}"),
                        )));
                    }
                };
                tokio::spawn(adopt(self.inner.clone(), req, responder));
                Answer::Later
            }
            CLASS_REDIRECT if self.inner.membership.is_none() => {
                let text = String::from_utf8_lossy(&body);
                match nkcluster_core::url::parse_url_list(&text) {
                    Ok(urls) if urls.is_empty() => Answer::Now(Err(RemoteError::new(
                        "bad_request",
                        "a redirect needs at least one URL",
                    ))),
                    Ok(urls) => {
                        info!(node = %self.inner.config.node_id, to = %text, "told to reconnect to our proxy's owner");
                        lock(&self.inner.connector).handle_redirect(urls);
                        Answer::Now(Ok(Bytes::new()))
                    }
                    Err(e) => Answer::Now(Err(RemoteError::new(e.code(), e.to_string()))),
                }
            }
            CLASS_RECENT_EVENTS if self.inner.membership.is_some() => {
                if body.as_ref() == b"local" {
                    let recent: Vec<(u64, EventMsg)> =
                        lock(&self.inner.recent).iter().cloned().collect();
                    return Answer::Now(encode(&recent));
                }
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    responder.reply(encode(&inner.cluster_recent_events().await));
                });
                Answer::Later
            }
            // The whole cluster: ours plus every control member's, gathered over the mesh.
            CLASS_NODES | CLASS_NODE_INFO => {
                let inner = self.inner.clone();
                let want =
                    (class == CLASS_NODE_INFO).then(|| String::from_utf8_lossy(&body).into_owned());
                tokio::spawn(async move {
                    let report = inner.cluster_rows().await;
                    let r = match want {
                        None => encode(&report),
                        Some(id) => match report.rows.into_iter().find(|r| r.id == id) {
                            Some(row) => encode(&row),
                            None if !report.incomplete.is_empty() => Err(RemoteError::new(
                                "incomplete",
                                format!(
                                    "no node {id:?} among the answers, but {} did not answer: the list is incomplete",
                                    report.incomplete.join(", ")
                                ),
                            )),
                            None => Err(RemoteError::new(
                                "unknown_node",
                                format!("no node {id:?} is known in the cluster"),
                            )),
                        },
                    };
                    responder.reply(r);
                });
                Answer::Later
            }
            _ => Answer::Now(self.inner.handlers.call(class, body)),
        }
    }
}
