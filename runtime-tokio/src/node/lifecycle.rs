//! Joining, connecting and removing nodes by hand (what the core's
//! [`lifecycle`](nkcluster_core::node) decides; this dials and gathers).

use super::*;
use nkcluster_core::cluster::{CLASS_REMOVE, RemoveReport, RemoveRequest};
use nkcluster_core::node::check_removal;

/// How long each member may take to forget a removed node.
const REMOVE_TIMEOUT: Duration = GATHER_TIMEOUT;

impl<N: Net> Inner<N> {
    /// Dials `url` (through discovery) until a node authenticates there; answers its id.
    /// `control`: a control node is expected (`join`: the views then merge and the mesh
    /// links the rest); otherwise a worker (`connect`: the proxy machinery hands it to its
    /// owner). A node of the other role answers `wrong_node` (its link stays: it is
    /// served like any other).
    pub(super) async fn dial_by_hand(
        self: &Arc<Self>,
        url: ClusterUrl,
        control: bool,
    ) -> Result<Bytes, RemoteError> {
        let label = url.written_label();
        let candidates = self
            .resolve(url)
            .await
            .map_err(|e| RemoteError::new(e.code(), format!("{label}: {e}")))?;
        let mut last = RemoteError::new(
            ErrorCode::NoConnections,
            format!("{label}: no address to dial"),
        );
        for c in candidates {
            let (remote, ready) = match self.dial_to(&c.url, c.addr).await {
                Ok(r) => r,
                Err((code, e)) => {
                    last = RemoteError::new(code, format!("{}: {e}", c.label()));
                    continue;
                }
            };
            let keys = self.keys_for(Some(&c.url));
            match spawn_dialed(self, ready, keys, remote).await {
                Ok(Ok(p)) if (p.role == Role::Control) == control => {
                    info!(node = %self.config.node_id, peer = %p.node_id, url = %c.label(), transport = transport_field(&c.label()),
                          "dialed by an operator");
                    return Ok(Bytes::from(p.node_id));
                }
                Ok(Ok(p)) => {
                    return Err(RemoteError::new(
                        ErrorCode::WrongNode,
                        format!(
                            "{} answered at {} as a {} node, not a {} node",
                            p.node_id,
                            c.label(),
                            p.role.as_str(),
                            if control { "control" } else { "worker" }
                        ),
                    ));
                }
                Ok(Err(e)) => last = RemoteError::new(e.code(), e.to_string()),
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Removes `node` from every control member: refused by the gathered node table
    /// when it is connected (without `force`) or unknown; then every member forgets it.
    pub(super) async fn remove_everywhere(
        self: &Arc<Self>,
        node: String,
        force: bool,
    ) -> Result<Bytes, RemoteError> {
        let report = self.cluster_rows().await;
        if let Err(e) = check_removal(&report.rows, &node, force) {
            if e.code == ErrorCode::UnknownNode && !report.incomplete.is_empty() {
                return report.into_row(&node).map(|_| Bytes::new());
            }
            return Err(e);
        }
        let members = self
            .ask(|b, _| b.table_sources())
            .await
            .ok_or_else(stopped)?;
        let body = encode_answer(&RemoveRequest {
            node: node.clone(),
            force,
            local: true,
        })?;
        let mut asks = tokio::task::JoinSet::new();
        let deadline = tokio::time::Instant::now() + REMOVE_TIMEOUT;
        for (m, _) in members.0 {
            let rx = self.enqueue(&m, CLASS_REMOVE, body.clone(), REMOVE_TIMEOUT);
            asks.spawn(async move { (m, wait_reply(rx, deadline).await) });
        }
        let mut out = RemoveReport {
            incomplete: members.1,
            ..Default::default()
        };
        let me = self.config.node_id.clone();
        let forget = node.clone();
        match self.ask(move |b, _| b.handle_forget(&forget, force)).await {
            Some(Ok(true)) => out.forgotten_at.push(me),
            Some(Ok(false)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(stopped()),
        }
        while let Some(r) = asks.join_next().await {
            let Ok((m, r)) = r else { continue };
            match r.map(|b| postcard::from_bytes::<bool>(&b)) {
                Ok(Ok(true)) => out.forgotten_at.push(m),
                Ok(Ok(false)) => {}
                Ok(Err(_)) | Err(_) => out.incomplete.push(m),
            }
        }
        out.forgotten_at.sort();
        out.incomplete.sort();
        info!(node = %self.config.node_id, removed = %node, at = ?out.forgotten_at,
              "node removed by an operator");
        encode_answer(&out)
    }
}
