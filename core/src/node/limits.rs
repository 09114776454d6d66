//! The size of every table a peer can make grow, against its limit: what metrics and the
//! simulator's `bounded_tables` invariant read. Each limit is the one the table enforces
//! itself (a peer's input beyond it is refused or makes room), so a size above it is a
//! bug.

use super::*;
use crate::ring::Ring;

/// One table's size and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    /// The table.
    pub table: &'static str,
    /// Entries (bytes for the data registry) held now.
    pub len: usize,
    /// Its limit.
    pub max: usize,
}

impl<H: Clone> NodeMachine<H> {
    /// The size of every bounded table, in a fixed order: membership records (control
    /// members), workers remembered, event subscribers, recent events, open file
    /// transfers, data registry bytes, events buffered while disconnected, the job
    /// classes of the worker that has sent events of the most, loaded modules.
    pub fn table_sizes(&self) -> Vec<TableSize> {
        let mut v = Vec::with_capacity(9);
        if let Some(m) = &self.membership {
            v.push(TableSize {
                table: "membership records",
                len: m.records(),
                max: m.config().max_members,
            });
        }
        let events = self.events.config();
        v.extend([
            TableSize {
                table: "workers remembered",
                len: self.workers.len(),
                max: self.settings.workers.max_workers,
            },
            TableSize {
                table: "event subscribers",
                len: self.events.subscriber_count(),
                max: events.max_subscribers,
            },
            TableSize {
                table: "recent events",
                len: self.events.recent_len(),
                max: events.keep,
            },
            TableSize {
                table: "open file transfers",
                len: self.transfers.open(),
                max: self.settings.transfers.max_open,
            },
            TableSize {
                table: "data registry bytes",
                len: self.data.size(),
                max: self.data.limit(),
            },
            TableSize {
                table: "buffered events",
                len: self.outbox.len(),
                max: self.settings.outbox.max_events,
            },
            TableSize {
                table: "classes of one worker",
                len: self.workers.most_classes(),
                max: self.settings.workers.max_classes,
            },
            TableSize {
                table: "loaded modules",
                len: self.modules.len(),
                max: self.modules.config().max_modules,
            },
        ]);
        v
    }

    /// Control members: the ring this node routes and hands off by (`None` on other
    /// nodes, and on a member that has been alone since it started: it owns everything
    /// without one).
    pub fn ring(&self) -> Option<&Ring> {
        self.proxies.as_ref().and_then(Proxies::ring)
    }
}
