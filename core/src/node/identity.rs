//! Identity: one node id, one process. A link that authenticates for an id already
//! linked from another run of that id (another handshake `instance`) is held while the
//! old link is probed (see [`crate::mesh`] for the rule): an old link that answers keeps
//! the id and the new link is closed `duplicate_node_id`; an old link that is silent,
//! fails or goes down first is closed and the new link takes its place. The probe is an
//! [`Output::Ask`] (`nkcluster.echo`) answered with [`NodeMachine::handle_answer`].
//!
//! And a control node only dials a worker at URLs the worker announced
//! ([`worker_dial_urls`]), and keeps the link only if the expected worker answered there
//! ([`check_dialed_worker`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::*;
use crate::error::ErrorCode;
use crate::mesh::{ProbeVerdict, SameId, after_probe, duplicate_reason, same_id};
use crate::message::RemoteError;

/// A new link waiting for the probe of the old link of its id.
#[derive(Debug)]
struct Waiting<H> {
    link: Link<H>,
    old_conn: u64,
}

/// Links held for a probe, and links dropped by the identity rule.
#[derive(Debug)]
pub(super) struct Held<H> {
    /// New links waiting for the probe of an old link, by probe id.
    probes: BTreeMap<u64, Waiting<H>>,
    /// Links refused as duplicates: they speak for nobody, and when they end no peer is
    /// lost.
    refused: BTreeSet<u64>,
    /// Old links replaced by a new run: when they end, no peer is lost.
    replaced: BTreeSet<u64>,
}

impl<H> Default for Held<H> {
    fn default() -> Self {
        Held {
            probes: BTreeMap::new(),
            refused: BTreeSet::new(),
            replaced: BTreeSet::new(),
        }
    }
}

impl<H: Clone> NodeMachine<H> {
    /// A listed link authenticated: `Some(link)` when it may go into the table now (no
    /// other run of its id is linked, or the old link was known dead and is replaced);
    /// `None` when it is held while the old link is probed.
    pub(super) fn check_identity(&mut self, link: Link<H>) -> Option<Link<H>> {
        if !matches!(link.summary.role, Role::Control | Role::Worker) {
            return Some(link);
        }
        let peer = link.summary.node_id.clone();
        let instance = link.summary.instance;
        let Some(old) = self
            .links
            .links_of(&peer)
            .find(|l| {
                l.summary.instance != instance
                    && matches!(l.summary.role, Role::Control | Role::Worker)
            })
            .cloned()
        else {
            return Some(link);
        };
        // A link in the table is not known dead: a closed one left it, and one silent
        // past its idle timeout is closed by its connection (its link-down then lets a
        // held link in at once).
        match same_id(old.summary.instance, instance, false) {
            SameId::SameRun => Some(link),
            SameId::Replace => {
                self.replace_old(&old);
                Some(link)
            }
            SameId::Probe => {
                let id = self.steps.next_ask_id();
                self.out.push_back(Output::Ask {
                    id,
                    link: old.handle.clone(),
                    class: "nkcluster.echo".into(),
                    body: Bytes::new(),
                    timeout: self.settings.handoff.identity,
                });
                self.held.probes.insert(
                    id,
                    Waiting {
                        link,
                        old_conn: old.conn_id,
                    },
                );
                None
            }
        }
    }

    /// The answer to an identity probe `id`; `false` when `id` is not one.
    pub(super) fn identity_answer(&mut self, now: Instant, id: u64, answered: bool) -> bool {
        let Some(w) = self.held.probes.remove(&id) else {
            return false;
        };
        let peer = w.link.summary.node_id.clone();
        let old = self.links.link(&peer, w.old_conn).cloned();
        match (after_probe(answered), old) {
            (ProbeVerdict::RefuseNew, Some(old)) => {
                self.held.refused.insert(w.link.conn_id);
                self.out.push_back(Output::Close {
                    link: w.link.handle,
                    reason: duplicate_reason(&peer),
                });
                self.out
                    .push_back(Output::Event(NodeEvent::DuplicateRefused {
                        peer,
                        remote: w.link.summary.remote,
                        linked: old.summary.remote,
                    }));
            }
            (ProbeVerdict::ReplaceOld, Some(old)) => {
                self.replace_old(&old);
                self.handle_link_up(now, w.link, true);
            }
            // The old link left meanwhile (its link-down let the held one in already,
            // or does so now).
            (_, None) => self.handle_link_up(now, w.link, true),
        }
        true
    }

    /// Closes `old`, a link of a run of its id that is gone, and takes it out of the
    /// table (its link-down later is not the peer's loss: the new run replaces it).
    fn replace_old(&mut self, old: &Link<H>) {
        self.links.remove(&old.summary.node_id, old.conn_id);
        self.held.replaced.insert(old.conn_id);
        self.out.push_back(Output::Close {
            link: old.handle.clone(),
            reason: format!("replaced by a new run of {}", old.summary.node_id),
        });
        self.out.push_back(Output::Event(NodeEvent::Replaced {
            peer: old.summary.node_id.clone(),
            remote: old.summary.remote.clone(),
        }));
    }

    /// A link ended. `true` when the identity rule had held or dropped it (nothing else
    /// to do); otherwise links held for a probe of this one are let in after its
    /// link-down is handled ([`identity_old_gone`](Self::identity_old_gone)).
    pub(super) fn identity_link_down(&mut self, gone: &LinkGone) -> bool {
        if self.held.refused.remove(&gone.conn_id) || self.held.replaced.remove(&gone.conn_id) {
            self.out.push_back(Output::Event(NodeEvent::LinkDown {
                peer: gone.summary.node_id.clone(),
                remote: gone.summary.remote.clone(),
                code: gone.error.as_ref().map(|e| e.code().to_owned()),
            }));
            return true;
        }
        let held = self
            .held
            .probes
            .iter()
            .find(|(_, w)| w.link.conn_id == gone.conn_id)
            .map(|(id, _)| *id);
        if let Some(id) = held {
            self.held.probes.remove(&id);
            return true;
        }
        false
    }

    /// Old link `conn_id` is down: the links held for its probe come in now.
    pub(super) fn identity_old_gone(&mut self, now: Instant, conn_id: u64) {
        let ids: Vec<u64> = self
            .held
            .probes
            .iter()
            .filter(|(_, w)| w.old_conn == conn_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(w) = self.held.probes.remove(&id) {
                self.handle_link_up(now, w.link, true);
            }
        }
    }
}

/// The URLs an adoption (or a redial) may dial for a worker: those of `urls` (the
/// worker's own announcement, as its old proxy knows it) that name a host to dial.
/// None left: `no_connections`.
pub fn worker_dial_urls(urls: &[String]) -> Result<Vec<ClusterUrl>, RemoteError> {
    let mut out: Vec<ClusterUrl> = Vec::new();
    for u in urls.iter().filter_map(|u| crate::url::parse_url(u).ok()) {
        if u.host != crate::url::Host::All && !out.contains(&u) {
            out.push(u);
        }
    }
    if out.is_empty() {
        return Err(RemoteError::new(
            ErrorCode::NoConnections,
            "the worker announced no reachable URL",
        ));
    }
    Ok(out)
}

/// After dialing worker `worker` at `dialed` (an adoption or a redial), whether the peer
/// that authenticated there, `peer` (reached at `remote_ip`), is that worker: a worker by
/// role, with that id, that announced the URL it was reached at (its listen URLs, `all`
/// replaced by the address reached). Anything else is closed unlisted: no proxy for a
/// wrong node.
pub fn check_dialed_worker(
    worker: &str,
    dialed: &ClusterUrl,
    peer: &PeerSummary,
    remote_ip: Option<IpAddr>,
) -> Result<(), RemoteError> {
    if peer.node_id != worker {
        return Err(RemoteError::new(
            ErrorCode::WrongNode,
            format!(
                "{} answered at {dialed}, where worker {worker} was expected",
                peer.node_id
            ),
        ));
    }
    if peer.role != Role::Worker {
        return Err(RemoteError::new(
            ErrorCode::WrongNode,
            format!(
                "{worker} answered at {dialed} as a {} node, not a worker",
                peer.role.as_str()
            ),
        ));
    }
    let same = |u: &ClusterUrl| {
        u.transport == dialed.transport
            && u.host == dialed.host
            && u.port == dialed.port
            && u.path == dialed.path
    };
    let announced = crate::url::reachable_at(&peer.listen, remote_ip);
    if !announced
        .iter()
        .filter_map(|u| crate::url::parse_url(u).ok())
        .any(|u| same(&u))
    {
        return Err(RemoteError::new(
            ErrorCode::Forbidden,
            format!("worker {worker} did not announce {dialed} (it announced: {announced:?})"),
        ));
    }
    Ok(())
}

/// After opening an exclusive connection to `node` (known here as a `role` node), whether
/// the peer that authenticated there, `peer`, is that node. The request waits for this
/// check: a listen URL may be answered by another node (a restarted address, an
/// impostor holding the worker secret), which must not receive the request.
pub fn check_exclusive_peer(node: &str, role: Role, peer: &PeerSummary) -> Result<(), RemoteError> {
    if peer.node_id != node || peer.role != role {
        return Err(RemoteError::new(
            ErrorCode::WrongNode,
            format!(
                "{} ({}) answered at a listen URL of {node} ({}); the request was not sent",
                peer.node_id,
                peer.role.as_str(),
                role.as_str()
            ),
        ));
    }
    Ok(())
}

impl<H: Clone> NodeMachine<H> {
    /// Dispatches a cluster request that arrived on connection `conn_id` (see
    /// [`handle_request`](Self::handle_request)). A link held while the old link of its
    /// id is probed, or refused as a duplicate, speaks for nobody yet: its requests are
    /// refused `duplicate_node_id` (an impostor cannot send events in the id's name while
    /// the probe runs).
    pub fn handle_request_on(
        &mut self,
        now: Instant,
        conn_id: u64,
        from: &str,
        role: Role,
        req: ClusterRequest,
    ) -> Dispatch {
        let refused = self.held.refused.contains(&conn_id)
            || self.held.probes.values().any(|w| w.link.conn_id == conn_id);
        if refused {
            return Dispatch::Answer(Err(RemoteError::new(
                ErrorCode::DuplicateNodeId,
                format!("node id {from} is linked from another process; this link is not admitted"),
            )));
        }
        self.handle_request(now, from, role, req)
    }
}
