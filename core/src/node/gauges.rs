//! What a node holds now, for metrics: members by state, partitions and proxies owned,
//! workers by status, links by transport and role, tasks by class. Read between inputs
//! (a scrape), never counted on the hot path.

use std::collections::BTreeMap;

use super::*;
use crate::telemetry::{LABEL_VALUES_MAX, OTHER, label_ok};

/// See the module docs. Every list is sorted by its labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gauges {
    /// Control members: membership records by state (`alive`, `down`, `left`); empty on
    /// other nodes.
    pub members: Vec<(&'static str, u64)>,
    /// Ring partitions in all (control members; 0 otherwise).
    pub partitions: u64,
    /// Ring partitions this node owns (a control member alone, or before its first ring,
    /// owns them all).
    pub partitions_owned: u64,
    /// Workers whose proxy this node is.
    pub proxies: u64,
    /// Control members: the workers remembered, by last known status (`not_connected`
    /// while their link is gone; a status this version does not know is `other`).
    pub workers: Vec<(&'static str, u64)>,
    /// Authenticated links by transport and the peer's role.
    pub links: Vec<(&'static str, &'static str, u64)>,
    /// Running tasks by job class (at most [`LABEL_VALUES_MAX`] named, then `other`).
    pub tasks: Vec<(String, u64)>,
    /// A worker: events dropped from its bounded buffer since start (it was disconnected
    /// and the buffer was full); a counter.
    pub events_dropped: u64,
}

fn member_state(s: crate::membership::Status) -> &'static str {
    match s {
        crate::membership::Status::Alive => "alive",
        crate::membership::Status::Down => "down",
        crate::membership::Status::Left => "left",
    }
}

/// The transport of a link's remote label (`tls:10.0.0.1:1973`), or `other`.
fn transport_of(remote: &str) -> &'static str {
    crate::telemetry::transport_of_remote(remote).map_or(OTHER, |t| t.as_str())
}

impl<H: Clone> NodeMachine<H> {
    /// See [`Gauges`].
    pub fn gauges(&self) -> Gauges {
        let mut members = BTreeMap::new();
        if let Some(m) = &self.membership {
            for r in m.view() {
                *members.entry(member_state(r.status)).or_insert(0) += 1;
            }
        }
        let (partitions, partitions_owned, proxies) = match &self.proxies {
            Some(p) => {
                let all = u64::from(self.settings.partitions);
                let owned = p.ring().map_or(all, |r| r.load(&self.settings.me) as u64);
                (all, owned, p.held() as u64)
            }
            None => (0, 0, 0),
        };
        let mut workers = BTreeMap::new();
        if self.proxies.is_some() {
            for (status, gone) in self.workers.statuses() {
                let label = if gone {
                    Status::NotConnected.as_str()
                } else {
                    Status::parse(status).map_or(OTHER, Status::as_str)
                };
                *workers.entry(label).or_insert(0) += 1;
            }
        }
        let mut links = BTreeMap::new();
        for (_, l) in self.links.iter() {
            let key = (transport_of(&l.summary.remote), l.summary.role.as_str());
            *links.entry(key).or_insert(0) += 1;
        }
        let mut tasks: BTreeMap<String, u64> = BTreeMap::new();
        for (_, class) in self.status.tasks(None) {
            let named = label_ok(class)
                && (tasks.contains_key(class) || tasks.len() < LABEL_VALUES_MAX)
                && class != OTHER;
            let key = if named { class } else { OTHER };
            *tasks.entry(key.to_owned()).or_insert(0) += 1;
        }
        Gauges {
            members: members.into_iter().collect(),
            partitions,
            partitions_owned,
            proxies,
            workers: workers.into_iter().collect(),
            links: links.into_iter().map(|((t, r), n)| (t, r, n)).collect(),
            tasks: tasks.into_iter().collect(),
            events_dropped: self.events_dropped,
        }
    }
}
