//! A control member's seeds: the entries of its `cluster_addr`. Its connector dials them
//! one at a time until one links, then waits while any control link lasts, and the mesh
//! dials only members learned from views. So a member that linked to part of the
//! cluster never finds the rest: control nodes started at once can form two clusters
//! that never merge, and two sides that forgot each other during a long partition stay
//! apart.
//!
//! Seed rounds close that gap: every `seeds_every`, a control member dials each seed
//! that neither it nor any control member it is linked to announces. Once one link
//! crosses, views merge and the mesh links the rest. In a settled cluster whose seeds
//! are its members' URLs, a round dials nothing; a seed that is a DNS name never
//! matches, so it is dialed every round (a second link to a member closes at once).

use super::*;
use crate::url::{ClusterUrl, parse_url};

/// The id a seed's dial goes by (with the seed's label, without secrets).
pub(super) const SEED_PREFIX: &str = "seed:";

/// Whether two URLs name the same listener.
fn same_endpoint(a: &ClusterUrl, b: &ClusterUrl) -> bool {
    a.host == b.host && a.port == b.port && a.transport == b.transport
}

impl<H: Clone> NodeMachine<H> {
    /// A control member with seeds starts its rounds.
    pub(super) fn seeds_start(&mut self, now: Instant) {
        if let Some(m) = &self.membership {
            self.seed_round = Some(now + m.config().seeds_every);
        }
    }

    /// A seed round, when due.
    pub(super) fn seeds_timeout(&mut self, now: Instant) {
        let (Some(at), Some(m)) = (self.seed_round, &self.membership) else {
            return;
        };
        if at > now {
            return;
        }
        self.seed_round = Some(now + m.config().seeds_every);
        if self.stopping {
            return;
        }
        let mut known: Vec<ClusterUrl> = self
            .settings
            .listen
            .iter()
            .filter_map(|u| parse_url(u).ok())
            .collect();
        for (peer, _) in self.links.control_links() {
            known.extend(
                self.dialable_urls(peer)
                    .iter()
                    .filter_map(|u| parse_url(u).ok()),
            );
        }
        for seed in &self.settings.cluster_addr {
            if known.iter().any(|k| same_endpoint(k, seed)) {
                continue;
            }
            let id = format!("{SEED_PREFIX}{}", seed.remote_label());
            if self.mesh_dialing.insert(id.clone()) {
                self.out.push_back(Output::DialMember {
                    id,
                    // As written: the shell's discovery looks up what it left out.
                    urls: vec![seed.written_form()],
                });
            }
        }
    }
}
