//! Links coming and going, and what arrives on control links (views, round trips).

use super::*;
use crate::conn::ConnError;

/// An authenticated link that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkGone {
    /// Unique id of the connection.
    pub conn_id: u64,
    /// The peer.
    pub summary: PeerSummary,
    /// IP address the link reached.
    pub remote_ip: Option<IpAddr>,
    /// Why it ended; `None` when we closed it.
    pub error: Option<ConnError>,
}

impl<H: Clone> NodeMachine<H> {
    /// A peer authenticated on connection `conn_id`. A `listed` link goes into the link
    /// table (an exclusive connection is not listed: it serves one request).
    ///
    /// A new control peer gets our view at once; a worker whose events now go to this
    /// link tells it where it stands (see `announce_if_moved`); a worker
    /// linked to a control member is one of its proxies (which may hand it over).
    ///
    /// A listed link for a node id already linked from another run of it is held first
    /// while the old link is probed (see [`identity`](super::identity)).
    pub fn handle_link_up(&mut self, now: Instant, link: Link<H>, listed: bool) {
        let link = if listed {
            match self.check_identity(link) {
                Some(l) => l,
                None => return,
            }
        } else {
            link
        };
        let summary = link.summary.clone();
        // A control node that dialed a worker adopted it: it serves the worker now, so
        // the worker's connector tries it last after a loss (see
        // `Connector::handle_served_by`), and a round of dials under way ends.
        if listed
            && summary.role == Role::Control
            && !summary.dialer
            && self.settings.role == Role::Worker
            && let Some(ip) = link.remote_ip
            && self.connector.handle_served_by(ip)
        {
            self.out.push_back(Output::InterruptConnector);
        }
        if listed {
            if summary.role == Role::Control
                && let Some(m) = &self.membership
            {
                self.out.push_back(Output::Gossip {
                    link: link.handle.clone(),
                    view: m.view(),
                });
            }
            if let Some(dropped) = self.links.add(&summary.node_id, link) {
                // Two control members both dialed: both ends keep the link the smaller
                // id dialed; the other closes once its requests are done.
                self.out.push_back(Output::Unlisted {
                    link: dropped.handle,
                });
            }
        }
        if summary.role == Role::Control {
            self.announce_if_moved(now);
        }
        if summary.role == Role::Worker && self.proxies.is_some() {
            let dialable = !self.dialable_urls(&summary.node_id).is_empty();
            if let Some(p) = &mut self.proxies {
                p.handle_worker_up(&summary.node_id, dialable);
            }
            self.after_proxies(now);
            self.tell_placed(&summary.node_id);
        }
        if listed {
            self.steps_linked(now, &summary.node_id);
        }
        self.out.push_back(Output::Event(NodeEvent::LinkUp {
            peer: summary.node_id,
            role: summary.role,
            remote: summary.remote,
            dialer: summary.dialer,
        }));
    }

    /// An authenticated link ended. When it was the peer's last: a worker's proxy marks
    /// it gone (its classes hear `not_connected`; a listening worker whose link failed is
    /// redialed), a control member's link loss goes to membership; a worker whose events
    /// now go to another control link tells it where it stands.
    pub fn handle_link_down(&mut self, now: Instant, gone: LinkGone) {
        if self.identity_link_down(&gone) {
            return;
        }
        let conn_id = gone.conn_id;
        self.link_down(now, gone);
        self.identity_old_gone(now, conn_id);
    }

    fn link_down(&mut self, now: Instant, gone: LinkGone) {
        let peer = gone.summary.node_id.as_str();
        let last = self.links.remove(peer, gone.conn_id).last;
        if last && gone.summary.role == Role::Worker && self.proxies.is_some() {
            // A link that failed (not one the worker closed in order) to a worker that
            // listens: the owner redials it.
            let urls = match &gone.error {
                Some(e) if !matches!(e, ConnError::PeerClosed(_)) => {
                    crate::url::reachable_at(&gone.summary.listen, gone.remote_ip)
                }
                _ => Vec::new(),
            };
            // A worker we handed over (or that another member owns and serves) is its
            // new proxy's now: forgotten here, not lost.
            let handed_over = self
                .proxies
                .as_ref()
                .is_some_and(|p| p.moving_to(peer).is_some());
            if let Some(p) = &mut self.proxies {
                p.handle_worker_down(now, peer, urls);
            }
            if handed_over {
                self.workers.remove(peer);
            } else {
                let seen = crate::workers::LastSeen {
                    remote: gone.summary.remote.clone(),
                    listen: gone.summary.listen.clone(),
                    meta: self
                        .workers
                        .info(peer)
                        .map_or_else(|| gone.summary.meta.clone(), |i| i.meta.clone()),
                };
                self.worker_gone(now, peer, seen);
            }
            self.after_proxies(now);
        }
        if last
            && gone.summary.role == Role::Control
            && let Some(m) = &mut self.membership
        {
            m.handle_link_down(now, peer);
            self.after_membership(now);
        }
        if gone.summary.role == Role::Control {
            self.announce_if_moved(now);
        }
        // The file transfers the peer started end with its last link.
        if last {
            let ops = self.transfers.handle_link_closed(now, peer);
            if !ops.is_empty() {
                self.out.push_back(Output::FileOps(ops));
            }
        }
        self.out.push_back(Output::Event(NodeEvent::LinkDown {
            peer: gone.summary.node_id,
            remote: gone.summary.remote,
            code: gone.error.as_ref().map(|e| e.code().to_owned()),
        }));
    }

    /// A membership view arrived on control link `conn_id` from `peer`. The sender's own
    /// record comes first and the link proves it alive; a sender listening on `all` is
    /// dialable where this link reached it, and that address goes into the view so that
    /// every member can dial it.
    pub fn handle_gossip(&mut self, now: Instant, peer: &str, conn_id: u64, view: &[MemberInfo]) {
        let Some(m) = &mut self.membership else {
            return;
        };
        let Some(link) = self.links.link(peer, conn_id) else {
            return;
        };
        if link.summary.role != Role::Control {
            return;
        }
        // Only the sender's record is rewritten (the rest is merged as it came, without a
        // copy of the view).
        let rest = match view.first().filter(|r| r.id == peer) {
            Some(sender) => {
                let mut sender = sender.clone();
                sender.listen = crate::url::reachable_at(&sender.listen, link.remote_ip);
                // The link proves a sender alive unless it says it is leaving (its last
                // gossip, on its way out: as a link-up it made the member come up and
                // leave again, and dialed it).
                if sender.status == crate::membership::Status::Alive {
                    m.handle_link_up(now, sender.clone());
                }
                m.handle_view(now, std::slice::from_ref(&sender));
                &view[1..]
            }
            None => view,
        };
        m.handle_view(now, rest);
        self.after_membership(now);
    }

    /// A ping round trip was measured on a link.
    pub fn handle_rtt(&mut self, peer: &str, conn_id: u64, rtt: Duration) {
        if let Some(l) = self.links.link(peer, conn_id) {
            l.rtt.set(rtt);
        }
    }

    /// A mesh dial asked by [`Output::DialMember`] ended: `linked` when a link to the
    /// member is up, `tried` when some URL was dialed.
    pub fn handle_mesh_dial_done(&mut self, now: Instant, member: &str, tried: bool, linked: bool) {
        self.mesh_dialing.remove(member);
        if member.starts_with(seeds::SEED_PREFIX) {
            return; // a seed, not a member: its link brought news, if any
        }
        if tried && !linked && !self.stopping {
            if let Some(m) = &mut self.membership {
                m.handle_dial_failed(now, member);
            }
            self.after_membership(now);
        }
    }
}
