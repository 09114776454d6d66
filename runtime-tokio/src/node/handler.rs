//! Serving a peer's request (or one this node makes to itself): the machine dispatches
//! the cluster's requests with the peer's id and role; this carries out what it hands to
//! the shell (callbacks, files, machine figures, other nodes). Other classes go to the
//! registered handlers.

use super::*;
use nkcluster_core::node::{Dispatch, ShellWork};

/// Answers the node's own request classes, then the registered handlers.
pub(super) struct NodeHandler<N: Net> {
    pub(super) inner: Arc<Inner<N>>,
    /// The connection it serves.
    pub(super) conn_id: u64,
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
        self.inner
            .serve(Some(self.conn_id), peer, role, class, body, responder)
    }
}

impl<N: Net> Inner<N> {
    /// Serves one request of `class` from `peer` (authenticated as `role`) on
    /// connection `conn` (`None`: our own request).
    pub(super) fn serve(
        self: &Arc<Self>,
        conn: Option<u64>,
        peer: &str,
        role: Role,
        class: &str,
        body: Bytes,
        responder: Responder,
    ) -> Answer {
        let req = match ClusterRequest::decode_bytes(class, &body) {
            // Not the cluster's: a registered handler's, if the peer's role may call it
            // (workers only those added for them).
            None => {
                if let Some(r) = self.handlers.call_as(class, role, body) {
                    return responder.now(r);
                }
                let (peer, class) = (peer.to_owned(), class.to_owned());
                self.tell(move |b, _| responder.reply(Err(b.refuse(&peer, role, &class))));
                return Answer::Later;
            }
            Some(Err(e)) => return responder.now(Err(RemoteError::new(e.code(), e.to_string()))),
            Some(Ok(req)) => req,
        };
        // Requests that act on the machine (processes, containers) are logged with who
        // asked, before dispatch (refused ones too).
        if let Some((class, what)) = nkcluster_core::audit::describe(&req) {
            info!(node = %self.config.node_id, peer = %peer, role = %role.as_str(), what = %what,
                  "{class} request");
        }
        let redirect = match &req {
            ClusterRequest::Redirect(urls) => Some(urls.clone()),
            _ => None,
        };
        // The machine dispatches it (in order with every other input), then the shell
        // carries out what it hands back.
        let inner = self.clone();
        let peer = peer.to_owned();
        self.tell(move |b, now| match match conn {
            Some(c) => b.handle_request_on(now, c, &peer, role, req),
            None => b.handle_request(now, &peer, role, req),
        } {
            Dispatch::Answer(r) => {
                if let (Some(to), Ok(_)) = (redirect, &r) {
                    info!(node = %inner.config.node_id, to = %to, "told to reconnect to our proxy's owner");
                }
                responder.reply(r);
            }
            Dispatch::Shell(work) => inner.perform_work(b, &peer, work, responder),
        });
        Answer::Later
    }

    /// Carries out what the machine handed to the shell (inside the owner's job, with
    /// the machine at hand): at once when it is quick, on the blocking pool when a
    /// callback may take a while (neither the link nor the owner waits), in a task of
    /// its own when it asks other nodes.
    fn perform_work(
        self: &Arc<Self>,
        b: &mut NodeMachine<Pump>,
        peer: &str,
        work: ShellWork,
        responder: Responder,
    ) {
        fn blocking(
            responder: Responder,
            f: impl FnOnce() -> Result<Bytes, RemoteError> + Send + 'static,
        ) {
            tokio::task::spawn_blocking(move || responder.reply(f()));
        }
        let inner = self.clone();
        match work {
            // A loaded module's call may burn its whole fuel: on the blocking pool too.
            ShellWork::Call {
                req,
                blocking: false,
            } if !self.handlers.is_loaded_function(&req.function) => {
                responder.reply(self.handlers.call_function(&req))
            }
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
                responder.reply(self.start_task(b, &class, &body, id))
            }
            ShellWork::StopTask(id) => responder.reply(self.stop_task(b, id)),
            ShellWork::GetInfo if self.net.real_threads() => {
                // Measured on the blocking pool, then described by the machine.
                tokio::spawn(async move {
                    let measuring = inner.clone();
                    let r = match tokio::task::spawn_blocking(move || measuring.measure()).await {
                        Ok(stats) => match inner.ask(move |b, _| b.node_info(stats)).await {
                            Some(info) => encode_answer(&info),
                            None => Err(stopped()),
                        },
                        Err(e) => Err(RemoteError::new(ErrorCode::InternalError, e.to_string())),
                    };
                    responder.reply(r);
                });
            }
            ShellWork::GetInfo => {
                let stats = self.measure();
                responder.reply(encode_answer(&b.node_info(stats)));
            }
            ShellWork::SendFile(part, hash) => {
                self.write_file_part(peer, worker_side::FileWork::Part(part, hash), responder);
            }
            ShellWork::FileStatus(q) => {
                self.write_file_part(peer, worker_side::FileWork::Status(q), responder);
            }
            ShellWork::Route(req) => self.route(req, responder),
            ShellWork::Adopt(req) => {
                tokio::spawn(adopt(inner, req, responder));
            }
            ShellWork::Nodes { one } => {
                tokio::spawn(async move {
                    let report = inner.cluster_rows().await;
                    let r = match one {
                        None => encode_answer(&report),
                        Some(id) => report.into_row(&id).and_then(|row| encode_answer(&row)),
                    };
                    responder.reply(r);
                });
            }
            ShellWork::Load { req, by } => self.load_module(b, req, by, responder),
            ShellWork::Handler { class, body } => responder.reply(self.handlers.call(&class, body)),
            ShellWork::Dial { url, control } => {
                tokio::spawn(async move {
                    responder.reply(inner.dial_by_hand(url, control).await);
                });
            }
            ShellWork::Remove { node, force } => {
                tokio::spawn(async move {
                    responder.reply(inner.remove_everywhere(node, force).await);
                });
            }
            ShellWork::RecentEvents => {
                tokio::spawn(async move {
                    responder.reply(encode_answer(&inner.cluster_recent_events().await));
                });
            }
        }
    }

    /// A request routed through us: over a dedicated connection when asked and we hold
    /// the target's link, otherwise queued now (in arrival order) where routing says.
    fn route(self: &Arc<Self>, req: RouteRequest, mut responder: Responder) {
        let node = Node::from_inner(self.clone());
        let timeout = Duration::from_millis(req.timeout_ms);
        let remote = |e: RequestError| match e {
            RequestError::Remote(r) => r,
            e => RemoteError::new(e.code(), e.to_string()),
        };
        if req.exclusive && self.view().is_linked(&req.node) {
            // A big file's part: its file's dedicated connection.
            let req = match self.route_file_part(req, responder) {
                Ok(()) => return,
                Err((req, r)) => {
                    responder = r;
                    req
                }
            };
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
            return;
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
    }
}

/// The error for a request that found the node stopped.
pub(super) fn stopped() -> RemoteError {
    RemoteError::new(ErrorCode::NoReply, "the node has stopped")
}
