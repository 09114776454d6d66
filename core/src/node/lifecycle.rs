//! A node's lifecycle as operators drive it: joining a control cluster or connecting a
//! listening worker by hand (the no-discovery mode: without `cluster_addr` nothing is
//! dialed), and removing a node whose link is lost (the original's
//! `nkcluster_nodes:stop(NodeId)`).
//!
//! `remove` goes through the control node the admin reached: it checks the whole node
//! table ([`check_removal`]: a connected node is refused without `force`), then every
//! control member forgets the node ([`NodeMachine::handle_forget`]).

use super::*;
use crate::cluster::{DialRequest, RemoveRequest};
use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::table::NodeRow;

/// Why a removal is refused by the node table, before any member forgets anything.
pub fn check_removal(rows: &[NodeRow], node: &str, force: bool) -> Result<(), RemoteError> {
    let Some(row) = rows.iter().find(|r| r.id == node) else {
        return Err(RemoteError::new(
            ErrorCode::UnknownNode,
            format!("no node {node:?} is known in the cluster"),
        ));
    };
    if row.role == Role::Control.as_str() {
        return Err(RemoteError::new(
            ErrorCode::BadRequest,
            format!("{node} is a control node: stop it (it leaves the cluster by itself)"),
        ));
    }
    if !row.is_lost() && !force {
        return Err(RemoteError::new(
            ErrorCode::NodeConnected,
            format!(
                "{node} is connected ({}, at {}): remove it with --force",
                row.status, row.owner
            ),
        ));
    }
    Ok(())
}

impl<H: Clone> NodeMachine<H> {
    /// Forgets worker `node` here (a member's part of a removal): it leaves the book of
    /// workers (its row, its classes), the lost workers being redialed, and, with
    /// `force`, its links are closed (otherwise a worker linked here is refused with
    /// `node_connected`). Returns whether this node knew it.
    pub fn handle_forget(&mut self, node: &str, force: bool) -> Result<bool, RemoteError> {
        let linked: Vec<&Link<H>> = self
            .links
            .links_of(node)
            .filter(|l| l.summary.role != Role::Admin)
            .collect();
        if linked.iter().any(|l| l.summary.role == Role::Control) || node == self.me() {
            return Err(RemoteError::new(
                ErrorCode::BadRequest,
                format!("{node} is a control node: stop it (it leaves the cluster by itself)"),
            ));
        }
        if !linked.is_empty() && !force {
            return Err(RemoteError::new(
                ErrorCode::NodeConnected,
                format!("{node} is linked to {}: remove it with --force", self.me()),
            ));
        }
        let handles: Vec<H> = linked.iter().map(|l| l.handle.clone()).collect();
        // Forgotten first: the links' ends then find nothing to mark lost.
        let mut known = self.workers.remove(node);
        if let Some(p) = &mut self.proxies {
            known |= p.forget(node);
        }
        known |= !handles.is_empty();
        for link in handles {
            self.out.push_back(Output::Close {
                link,
                reason: "removed by an operator".into(),
            });
        }
        Ok(known)
    }

    /// Dispatch of the lifecycle requests: admin clients (and members, for a removal's
    /// local part) at a control node.
    pub(super) fn lifecycle_request(&mut self, role: Role, req: ClusterRequest) -> Dispatch {
        let forbidden = |what: &str| {
            Dispatch::Answer(Err(RemoteError::new(
                ErrorCode::Forbidden,
                format!("{what} is asked of a control node by an admin client"),
            )))
        };
        match req {
            _ if !self.is_control() => forbidden("this request"),
            ClusterRequest::Dial(DialRequest { url, control }) => {
                if role != Role::Admin {
                    return forbidden("dialing a node");
                }
                match crate::url::parse_url(&url) {
                    Ok(url) => Dispatch::Shell(ShellWork::Dial { url, control }),
                    Err(e) => Dispatch::Answer(Err(RemoteError::new(e.code(), e.to_string()))),
                }
            }
            ClusterRequest::Remove(RemoveRequest { node, force, local }) => match (local, role) {
                (true, Role::Control | Role::Admin) => Dispatch::Answer(
                    self.handle_forget(&node, force)
                        .and_then(|known| encode(&known)),
                ),
                (false, Role::Admin) => Dispatch::Shell(ShellWork::Remove { node, force }),
                _ => forbidden("removing a node"),
            },
            other => Dispatch::Answer(Err(RemoteError::new(
                ErrorCode::InternalError,
                format!("{other:?} is not a lifecycle request"),
            ))),
        }
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<bytes::Bytes, RemoteError> {
    postcard::to_allocvec(v)
        .map(bytes::Bytes::from)
        .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))
}
