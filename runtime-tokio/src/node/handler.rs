//! Serving a peer's request (or one this node makes to itself): the brain dispatches the
//! cluster's requests with the peer's id and role; this carries out what it hands to the
//! shell (callbacks, files, machine figures, other nodes). Other classes go to the
//! registered handlers.

use super::*;
use nkcluster_core::node::{Dispatch, ShellWork};

/// Answers the node's own request classes, then the registered handlers.
pub(super) struct NodeHandler<N: Net> {
    pub(super) inner: Arc<Inner<N>>,
}

impl<N: Net> RequestHandler for NodeHandler<N> {
    fn handle(
        &self,
        peer: &str,
        role: Role,
        class: &str,
        body: Bytes,
        responder: Responder,
    ) -> Answer {
        self.inner.serve(peer, role, class, body, responder)
    }
}

impl<N: Net> Inner<N> {
    /// Serves one request of `class` from `peer` (authenticated as `role`).
    pub(super) fn serve(
        self: &Arc<Self>,
        peer: &str,
        role: Role,
        class: &str,
        body: Bytes,
        responder: Responder,
    ) -> Answer {
        let req = match ClusterRequest::decode(class, &body) {
            // Not the cluster's: a registered handler's.
            None => return Answer::Now(self.handlers.call(class, body)),
            Some(Err(e)) => return Answer::Now(Err(RemoteError::new(e.code(), e.to_string()))),
            Some(Ok(req)) => req,
        };
        let redirect = match &req {
            ClusterRequest::Redirect(urls) => Some(urls.clone()),
            _ => None,
        };
        match self.with_brain(|b, now| b.handle_request(now, peer, role, req)) {
            Dispatch::Answer(r) => {
                if let (Some(to), Ok(_)) = (redirect, &r) {
                    info!(node = %self.config.node_id, to = %to, "told to reconnect to our proxy's owner");
                }
                Answer::Now(r)
            }
            Dispatch::Shell(work) => self.perform_work(peer, work, responder),
        }
    }

    /// Carries out what the brain handed to the shell: at once when it is quick, on the
    /// blocking pool when a callback may take a while (the link never waits), in a task
    /// of its own when it asks other nodes.
    fn perform_work(self: &Arc<Self>, peer: &str, work: ShellWork, responder: Responder) -> Answer {
        fn blocking(
            responder: Responder,
            f: impl FnOnce() -> Result<Bytes, RemoteError> + Send + 'static,
        ) -> Answer {
            tokio::task::spawn_blocking(move || responder.reply(f()));
            Answer::Later
        }
        let inner = self.clone();
        match work {
            ShellWork::Call {
                req,
                blocking: false,
            } => Answer::Now(self.handlers.call_function(&req)),
            ShellWork::Call { req, .. } => {
                blocking(responder, move || inner.handlers.call_function(&req))
            }
            ShellWork::ClassRequest { class, body } => blocking(responder, move || {
                inner.handlers.classes().get(&class)?.request(&body)
            }),
            ShellWork::Command { class, task, body } => blocking(responder, move || {
                inner.handlers.classes().get(&class)?.command(task, &body)
            }),
            ShellWork::StartTask { class, body, id } => {
                Answer::Now(self.start_task(&class, &body, id))
            }
            ShellWork::StopTask(id) => Answer::Now(self.stop_task(id)),
            ShellWork::GetInfo if self.net.real_threads() => blocking(responder, move || {
                let stats = inner.measure();
                encode(&inner.peek(|b| b.node_info(stats)))
            }),
            ShellWork::GetInfo => {
                let stats = self.measure();
                Answer::Now(encode(&self.peek(|b| b.node_info(stats))))
            }
            ShellWork::SendFile(part) => {
                self.write_file_part(peer, part, responder);
                Answer::Later
            }
            ShellWork::Route(req) => self.route(req, responder),
            ShellWork::Adopt(req) => {
                tokio::spawn(adopt(inner, req, responder));
                Answer::Later
            }
            ShellWork::Nodes { one } => {
                tokio::spawn(async move {
                    let report = inner.cluster_rows().await;
                    let r = match one {
                        None => encode(&report),
                        Some(id) => report.into_row(&id).and_then(|row| encode(&row)),
                    };
                    responder.reply(r);
                });
                Answer::Later
            }
            ShellWork::Handler { class, body } => Answer::Now(self.handlers.call(&class, body)),
            ShellWork::RecentEvents => {
                tokio::spawn(async move {
                    responder.reply(encode(&inner.cluster_recent_events().await));
                });
                Answer::Later
            }
        }
    }

    /// A request routed through us: over a dedicated connection when asked and we hold
    /// the target's link, otherwise queued now (in arrival order) where routing says.
    fn route(self: &Arc<Self>, req: RouteRequest, responder: Responder) -> Answer {
        let node = Node::from_inner(self.clone());
        let timeout = Duration::from_millis(req.timeout_ms);
        let remote = |e: RequestError| match e {
            RequestError::Remote(r) => r,
            e => RemoteError::new(e.code(), e.to_string()),
        };
        if req.exclusive && self.peek(|b| b.links().is_linked(&req.node)) {
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
}
