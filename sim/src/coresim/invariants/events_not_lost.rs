//! No task or job event is lost beyond what the design documents: a worker's event goes
//! to its proxy on its first control link (with none, it is kept in a bounded buffer and
//! sent on the next link, the oldest dropped and counted beyond the limit;
//! [`NodeMachine::handle_own_event`]). So every event a worker sends on a link is heard by
//! the control node at the other end, in the order sent, once; only a link that ends may
//! lose what was in flight on it. (What a disconnected worker kept is checked end to end
//! by the [`offline`](crate::coresim::offline) scenario.)
//!
//! Checked as events are heard (one heard out of order, twice, or never sent), and on
//! every tick: an event sent on a link whose two ends are both still open must be heard
//! within [`DELIVERY_MAX`] (a link that holds its writes longer is closed by its
//! idle timeout, and then its events are lost with it).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use nkcluster_core::Instant;
use nkcluster_core::cluster::EventMsg;

use super::{Found, Violation};
use crate::coresim::world::ConnId;

#[cfg(doc)]
use nkcluster_core::node::NodeMachine;

/// This invariant's name.
pub const NAME: &str = "events_not_lost";

/// How long an event sent on a link that stays open at both ends may take to be heard
/// (held writes end with the link's idle timeout; a lossy link delays each write by a
/// few retransmission timeouts at most).
pub const DELIVERY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Sent {
    /// The reading end.
    peer: ConnId,
    /// The sender's id.
    worker: String,
    events: VecDeque<(Instant, EventMsg)>,
}

/// The events in flight, by the writing end of their link. See the module docs.
#[derive(Debug, Default)]
pub struct EventBook {
    sent: BTreeMap<ConnId, Sent>,
    /// What was found.
    pub(super) found: Found,
    /// Events heard as they should be.
    pub heard: u64,
    /// Events lost with a link that ended (documented).
    pub lost_with_link: u64,
    /// When `Some`, every event heard as it should be, with the control node that heard
    /// it (a scenario's record; off by default).
    pub log: Option<Vec<(String, EventMsg)>>,
}

fn describe(ev: &EventMsg) -> String {
    let what = match &ev.event {
        nkcluster_core::cluster::WireEvent::Info(i) => format!("info({})", i.status.as_str()),
        e => format!("{e:?}"),
    };
    match ev.task {
        Some(t) => format!("{} task {t} {what}", ev.class),
        None => format!("{} {what}", ev.class),
    }
}

impl EventBook {
    /// Worker `ev.node` sent `ev` on end `conn` (whose reader is `peer`) at `at`.
    pub fn sent(&mut self, (conn, peer): (ConnId, ConnId), ev: EventMsg, at: Instant) {
        let s = self.sent.entry(conn).or_insert_with(|| Sent {
            peer,
            worker: ev.node.clone(),
            events: VecDeque::new(),
        });
        s.events.push_back((at, ev));
    }

    /// Control node `me` heard `ev` from the link whose writing end is `from`.
    pub fn heard(&mut self, from: ConnId, me: &str, ev: &EventMsg, at: Instant) {
        let front = self.sent.get_mut(&from).and_then(|s| s.events.pop_front());
        match front {
            Some((_, sent)) if sent == *ev => {
                self.heard += 1;
                if let Some(log) = &mut self.log {
                    log.push((me.to_owned(), sent));
                }
            }
            Some((when, sent)) => {
                let later = self
                    .sent
                    .get(&from)
                    .is_some_and(|s| s.events.iter().any(|(_, e)| e == ev));
                self.found.add(Violation::new(
                    NAME,
                    &[&ev.node, me],
                    at,
                    format!(
                        "{me} heard {} from {}, but {} was sent before it on that link (at {:.3} s) and {}",
                        describe(ev),
                        ev.node,
                        describe(&sent),
                        when.since_origin().as_secs_f64(),
                        if later {
                            "was skipped (lost on a live link)"
                        } else {
                            "comes after it (reordered)"
                        }
                    ),
                ));
            }
            None => self.found.add(Violation::new(
                NAME,
                &[&ev.node, me],
                at,
                format!(
                    "{me} heard {} from {} on a link where nothing was sent and not yet heard (heard twice?)",
                    describe(ev),
                    ev.node
                ),
            )),
        }
    }

    /// End `id` (whose other end is `peer`) left the world: it hears nothing more, so
    /// what was sent to it is lost with the link; what it sent is lost too once the
    /// other end is gone.
    pub fn conn_removed(&mut self, id: ConnId, peer: ConnId, peer_open: bool) {
        if let Some(s) = self.sent.remove(&peer) {
            self.lost_with_link += s.events.len() as u64;
        }
        if !peer_open && let Some(s) = self.sent.remove(&id) {
            self.lost_with_link += s.events.len() as u64;
        }
    }

    /// Events older than [`DELIVERY_MAX`] at `at` on links open at both ends. `end(id)`:
    /// the node of end `id` and whether its peer end is open, when `id` is open.
    pub fn overdue<'a>(&mut self, at: Instant, end: impl Fn(ConnId) -> Option<(&'a str, bool)>) {
        let mut late = Vec::new();
        for (id, s) in &self.sent {
            let Some((when, ev)) = s.events.front() else {
                continue;
            };
            if *when + DELIVERY_MAX >= at {
                continue;
            }
            let reader = end(s.peer).map(|(n, _)| n);
            if let (Some((_, true)), Some(reader)) = (end(*id), reader) {
                late.push(Violation::new(
                    NAME,
                    &[&s.worker, reader],
                    at,
                    format!(
                        "{} sent {} at {:.3} s on a link still open at both ends, and {reader} has not heard it",
                        s.worker,
                        describe(ev),
                        when.since_origin().as_secs_f64()
                    ),
                ));
            }
        }
        for v in late {
            self.found.add(v);
        }
        // Links whose ends are both gone hold nothing anyone will hear.
        self.sent
            .retain(|id, s| end(*id).is_some() || end(s.peer).is_some());
    }
}
