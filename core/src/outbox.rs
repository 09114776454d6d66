//! A worker's events while it has no control link: its tasks keep running and what they
//! send is kept here, in order, until the next control link (any owner) takes it.
//! Bounded by a count and a size: when either is reached the oldest events are dropped
//! and counted per class, and the next link hears, for each class that lost some, one
//! `events_lost(count)` before the events that were kept.
//!
//! Only class events are kept (a task's own events, `task_started`, `task_stopped`).
//! Node-level news (status, information) and `task_running` describe the present, which
//! the next link is told anew, so they are not kept (see
//! [`NodeMachine::handle_own_event`](crate::node::NodeMachine::handle_own_event)).

use std::collections::{BTreeMap, VecDeque};

use crate::cluster::{EventMsg, WireEvent};

/// Limits of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Events kept at most (0: none is kept; losses are still counted and told).
    pub max_events: usize,
    /// Their size at most, bytes (see [`weight`]).
    pub max_bytes: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_events: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What an event weighs in the buffer: its variable parts plus a fixed overhead.
pub fn weight(ev: &EventMsg) -> usize {
    const OVERHEAD: usize = 64;
    let body = match &ev.event {
        WireEvent::User(b) => b.len(),
        WireEvent::TaskStopped(r) => r.len(),
        _ => 0,
    };
    OVERHEAD + ev.class.len() + body
}

/// The buffer. See the module docs.
#[derive(Debug, Default)]
pub struct Outbox {
    config: OutboxConfig,
    events: VecDeque<(usize, EventMsg)>,
    bytes: usize,
    /// Dropped events per class, not told yet.
    lost: BTreeMap<String, u64>,
}

impl Outbox {
    /// An empty buffer.
    pub fn new(config: OutboxConfig) -> Self {
        Outbox {
            config,
            ..Default::default()
        }
    }

    /// Keeps `ev` (the newest), dropping the oldest until it fits; an event that cannot
    /// fit alone is dropped itself. Returns how many events were dropped.
    pub fn push(&mut self, ev: EventMsg) -> u64 {
        let w = weight(&ev);
        if self.config.max_events == 0 || w > self.config.max_bytes {
            self.count_lost(&ev.class);
            return 1;
        }
        let mut dropped = 0;
        while self.events.len() >= self.config.max_events
            || self.bytes.saturating_add(w) > self.config.max_bytes
        {
            let Some((old_w, old)) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old_w;
            self.count_lost(&old.class);
            dropped += 1;
        }
        self.bytes += w;
        self.events.push_back((w, ev));
        dropped
    }

    fn count_lost(&mut self, class: &str) {
        match self.lost.get_mut(class) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.lost.insert(class.to_owned(), 1);
            }
        }
    }

    /// Whether there is nothing to tell (no event kept, none lost).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.lost.is_empty()
    }

    /// Events kept now.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Their size, bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events dropped and not told yet, every class together.
    pub fn lost(&self) -> u64 {
        self.lost.values().sum()
    }

    /// Everything to tell a new link, in order: `events_lost(count)` of node `me` for each
    /// class that lost events (by class name), then the kept events, oldest first. The
    /// buffer is empty afterwards.
    pub fn drain(&mut self, me: &str) -> Vec<EventMsg> {
        let mut out = Vec::with_capacity(self.lost.len() + self.events.len());
        for (class, n) in std::mem::take(&mut self.lost) {
            out.push(EventMsg {
                node: me.to_owned(),
                class,
                task: None,
                event: WireEvent::EventsLost(n),
            });
        }
        out.extend(self.events.drain(..).map(|(_, ev)| ev));
        self.bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn user(class: &str, task: u64, n: u8) -> EventMsg {
        EventMsg {
            node: "w1".into(),
            class: class.into(),
            task: Some(task),
            event: WireEvent::User(Bytes::from(vec![n])),
        }
    }

    fn lost(class: &str, n: u64) -> EventMsg {
        EventMsg {
            node: "w1".into(),
            class: class.into(),
            task: None,
            event: WireEvent::EventsLost(n),
        }
    }

    #[test]
    fn events_are_kept_in_order_and_drained_once() {
        let mut o = Outbox::new(OutboxConfig::default());
        assert!(o.is_empty());
        assert_eq!(o.push(user("video", 1, 1)), 0);
        assert_eq!(o.push(user("audio", 2, 2)), 0);
        assert_eq!((o.len(), o.bytes(), o.lost()), (2, 2 * (64 + 5 + 1), 0));
        assert_eq!(o.drain("w1"), [user("video", 1, 1), user("audio", 2, 2)]);
        assert!(o.is_empty());
        assert_eq!((o.len(), o.bytes()), (0, 0));
        assert_eq!(o.drain("w1"), []);
    }

    #[test]
    fn when_full_the_oldest_are_dropped_and_counted_per_class() {
        let mut o = Outbox::new(OutboxConfig {
            max_events: 3,
            max_bytes: 1 << 20,
        });
        for (i, class) in ["video", "audio", "video", "video", "audio"]
            .into_iter()
            .enumerate()
        {
            let dropped = o.push(user(class, 1, i as u8));
            assert_eq!(dropped, u64::from(i >= 3), "push {i}");
        }
        assert_eq!((o.len(), o.lost()), (3, 2));
        // One `events_lost` per class that lost events (by name), then the kept events.
        assert_eq!(
            o.drain("w1"),
            [
                lost("audio", 1),
                lost("video", 1),
                user("video", 1, 2),
                user("video", 1, 3),
                user("audio", 1, 4),
            ]
        );
        assert!(o.is_empty());
    }

    #[test]
    fn the_size_limit_drops_the_oldest_and_an_event_too_big_alone_is_lost() {
        let one = weight(&user("video", 1, 0));
        let mut o = Outbox::new(OutboxConfig {
            max_events: 100,
            max_bytes: 2 * one,
        });
        assert_eq!(o.push(user("video", 1, 0)), 0);
        assert_eq!(o.push(user("video", 1, 1)), 0);
        assert_eq!(o.push(user("video", 1, 2)), 1);
        assert_eq!(o.bytes(), 2 * one);
        let big = EventMsg {
            event: WireEvent::User(Bytes::from(vec![0; 2 * one])),
            ..user("video", 1, 9)
        };
        assert_eq!(o.push(big), 1);
        assert_eq!(
            o.drain("w1"),
            [lost("video", 2), user("video", 1, 1), user("video", 1, 2)]
        );
    }

    #[test]
    fn a_buffer_of_zero_keeps_nothing_but_still_counts() {
        let mut o = Outbox::new(OutboxConfig {
            max_events: 0,
            max_bytes: 1 << 20,
        });
        assert_eq!(o.push(user("video", 1, 0)), 1);
        assert_eq!(o.push(user("video", 1, 1)), 1);
        assert!(!o.is_empty());
        assert_eq!(o.drain("w1"), [lost("video", 2)]);
    }
}
