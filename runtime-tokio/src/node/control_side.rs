//! What a control node does for the cluster over the mesh: queuing requests on links,
//! gathering the node table and the recent events from every member.

use super::*;

impl<N: Net> Inner<N> {
    /// Queues a request on `peer`'s link now (in call order) and returns where its
    /// outcome will arrive.
    pub(super) fn enqueue(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<crate::reply::Receiver, RequestError> {
        let commands = self
            .view()
            .link_of(peer)
            .cloned()
            .ok_or(RequestError::NotConnected)?;
        let (tx, rx) = crate::reply::channel();
        let asked = self.clock.now();
        commands
            .try_send(Command::Request {
                class: class.into(),
                body,
                asked,
                deadline: asked + timeout,
                reply: tx,
            })
            .map_err(|e| match e {
                cmdq::TrySendError::Full(_) => RequestError::TooManyPending,
                cmdq::TrySendError::Closed(_) => RequestError::ConnectionFailed,
            })?;
        Ok(rx)
    }

    /// Rows of the whole cluster: ours, plus each alive control member's own rows asked
    /// over the mesh (in parallel, each within `GATHER_TIMEOUT`; a member that does not
    /// answer is listed from our view only, and named in `incomplete`). A node listed by
    /// several control nodes appears once.
    pub(super) async fn cluster_rows(self: &Arc<Self>) -> NodesReport {
        let Some((mut rows, (members, mut incomplete))) =
            self.ask(|b, _| (b.local_rows(), b.table_sources())).await
        else {
            return NodesReport::default();
        };
        let mut asks = tokio::task::JoinSet::new();
        let asked = self.clock.now();
        let deadline = asked + GATHER_TIMEOUT;
        for (id, commands) in members {
            asks.spawn(async move {
                let (tx, rx) = crate::reply::channel();
                let cmd = Command::Request {
                    class: CLASS_LOCAL_NODES.into(),
                    body: Bytes::new(),
                    asked,
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
        let mut answers = Vec::new();
        while let Some(r) = asks.join_next().await {
            match r {
                Ok((member, Some(theirs))) => answers.push((member, theirs)),
                Ok((member, None)) => incomplete.push(member),
                Err(_) => {}
            }
        }
        if !answers.is_empty() {
            let merged = self
                .ask(move |b, _| {
                    for (member, theirs) in answers {
                        b.merge_rows(&mut rows, &member, theirs);
                    }
                    rows
                })
                .await;
            rows = merged.unwrap_or_default();
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
        let members = self
            .ask(|b, _| b.table_sources().0)
            .await
            .unwrap_or_default();
        let mut asks = tokio::task::JoinSet::new();
        for (m, _) in members {
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
        self.ask(move |b, _| b.merged_events(theirs_all))
            .await
            .unwrap_or_default()
    }
}
