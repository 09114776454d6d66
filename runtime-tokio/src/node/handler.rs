//! The node's own request classes (routing, hand-offs, the node table, events, jobs),
//! then the registered handlers: where a peer's request is dispatched.

use super::*;

/// Answers the node's own request classes, then the registered handlers.
pub(super) struct NodeHandler<N: Net> {
    pub(super) inner: Arc<Inner<N>>,
}

impl<N: Net> RequestHandler for NodeHandler<N> {
    fn handle(&self, peer: &str, class: &str, body: Bytes, responder: Responder) -> Answer {
        let req = match ClusterRequest::decode(class, &body) {
            // Not the cluster's: a registered handler's.
            None => return Answer::Now(self.inner.handlers.call(class, body)),
            Some(Err(e)) => return Answer::Now(Err(RemoteError::new(e.code(), e.to_string()))),
            Some(Ok(req)) => req,
        };
        let control = self.inner.is_control();
        match req {
            // This node's own links only (what other control nodes gather).
            ClusterRequest::LocalNodes => Answer::Now(encode(&self.inner.peek(|b| b.local_rows()))),
            // Only a node linked here can receive the stream.
            ClusterRequest::Subscribe(req) if control => Answer::Now(
                self.inner
                    .with_brain(|b, _| b.handle_subscribe(&req))
                    .map(|()| Bytes::new())
                    .map_err(|e| RemoteError::new(e.code(), e.to_string())),
            ),
            // A member's event for our whole-cluster subscribers.
            ClusterRequest::EventStream(ev) if control => {
                self.inner.with_brain(|b, _| b.handle_member_event(&ev));
                Answer::Now(Ok(Bytes::new()))
            }
            ClusterRequest::Call(req) => Answer::Now(self.inner.handlers.call_function(&req)),
            ClusterRequest::SpawnCall(req) => {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || {
                    responder.reply(inner.handlers.call_function(&req));
                });
                Answer::Later
            }
            // A class's request and command callbacks may take a while: they run on the
            // blocking pool, so the link (pings, other requests) never waits.
            ClusterRequest::Job(JobCall::SendFile(part)) => {
                self.inner.write_file_part(peer, part, responder);
                Answer::Later
            }
            ClusterRequest::Job(call @ (JobCall::Request { .. } | JobCall::Command { .. })) => {
                let inner = self.inner.clone();
                let peer = peer.to_owned();
                tokio::task::spawn_blocking(move || responder.reply(inner.job_call(&peer, call)));
                Answer::Later
            }
            ClusterRequest::Job(call) => Answer::Now(self.inner.job_call(peer, call)),
            ClusterRequest::JobEvent(ev) if control => {
                self.inner.with_brain(|b, now| b.handle_job_event(now, ev));
                Answer::Now(Ok(Bytes::new()))
            }
            ClusterRequest::Route(req) if control => self.route(req, responder),
            ClusterRequest::Adopt(req) if control => {
                tokio::spawn(adopt(self.inner.clone(), req, responder));
                Answer::Later
            }
            ClusterRequest::Redirect(text) if !control => {
                let r = self.inner.with_brain(|b, _| b.handle_redirect(&text));
                if r.is_ok() {
                    info!(node = %self.inner.config.node_id, to = %text, "told to reconnect to our proxy's owner");
                }
                Answer::Now(r.map(|()| Bytes::new()))
            }
            ClusterRequest::RecentEvents { local: true } if control => {
                Answer::Now(encode(&self.inner.peek(|b| b.recent_events())))
            }
            ClusterRequest::RecentEvents { local: false } if control => {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    responder.reply(encode(&inner.cluster_recent_events().await));
                });
                Answer::Later
            }
            // The whole cluster: ours plus every control member's, gathered over the mesh.
            ClusterRequest::Nodes => self.node_table(None, responder),
            ClusterRequest::NodeInfo(id) => self.node_table(Some(id), responder),
            // A request this node's role does not serve.
            _ => Answer::Now(self.inner.handlers.call(class, body)),
        }
    }
}

impl<N: Net> NodeHandler<N> {
    /// A request routed through us: over a dedicated connection when asked and we hold
    /// the target's link, otherwise queued now (in arrival order) where routing says.
    fn route(&self, req: RouteRequest, responder: Responder) -> Answer {
        let node = Node::from_inner(self.inner.clone());
        let timeout = Duration::from_millis(req.timeout_ms);
        let remote = |e: RequestError| match e {
            RequestError::Remote(r) => r,
            e => RemoteError::new(e.code(), e.to_string()),
        };
        if req.exclusive && self.inner.peek(|b| b.links().is_linked(&req.node)) {
            let opts = RequestOptions {
                timeout,
                exclusive: true,
            };
            tokio::spawn(async move {
                let r = node
                    .request_with(&req.node, &req.class, req.body, opts)
                    .await;
                responder.reply(r.map_err(remote));
            });
            return Answer::Later;
        }
        let routed = node.route_enqueue(
            &req.node,
            &req.class,
            req.body,
            timeout,
            req.hops,
            req.exclusive,
        );
        tokio::spawn(async move {
            let r = node.route_finish(&req.node, routed, timeout).await;
            responder.reply(r.map_err(remote));
        });
        Answer::Later
    }

    /// The node table (or one row of it), gathered from every member.
    fn node_table(&self, want: Option<String>, responder: Responder) -> Answer {
        let inner = self.inner.clone();
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
}
