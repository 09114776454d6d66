//! A control node's event distribution: who subscribed to the events it hears (an admin
//! client following the whole cluster, or another member streaming on its behalf), and
//! the last events kept for `events` without `--follow`, merged across members by time.
//! Bounded: at most `max_subscribers`, the last `keep` events.

use std::collections::{BTreeMap, VecDeque};

/// Limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsConfig {
    /// Events kept.
    pub keep: usize,
    /// Subscribers at once.
    pub max_subscribers: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            keep: 200,
            max_subscribers: 1024,
        }
    }
}

/// Why a subscription was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too_many_subscribers: at most {max} subscribers at once")]
pub struct TooManySubscribers {
    /// The limit.
    pub max: usize,
}

/// Subscribers and recent events of one control node. `E` is the event type.
#[derive(Debug)]
pub struct Events<E> {
    config: EventsConfig,
    /// Subscriber -> wants the whole cluster's events (its own member fans out).
    subscribers: BTreeMap<String, bool>,
    recent: VecDeque<(u64, E)>,
}

impl<E: Clone> Events<E> {
    /// No subscribers, no events.
    pub fn new(config: EventsConfig) -> Self {
        Events {
            config,
            subscribers: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// `id` subscribes; `fanout`: it wants every member's events (the answering member
    /// subscribes to the others on its behalf). Subscribing again replaces the wish.
    pub fn subscribe(&mut self, id: &str, fanout: bool) -> Result<(), TooManySubscribers> {
        if !self.subscribers.contains_key(id)
            && self.subscribers.len() >= self.config.max_subscribers
        {
            return Err(TooManySubscribers {
                max: self.config.max_subscribers,
            });
        }
        self.subscribers.insert(id.to_owned(), fanout);
        Ok(())
    }

    /// `id` is gone (its link ended): no more events for it.
    pub fn unsubscribe(&mut self, id: &str) {
        self.subscribers.remove(id);
    }

    /// Who gets an event: every subscriber for one we heard ourselves, only whole-cluster
    /// subscribers for one a member streamed to us (`from_member`).
    pub fn targets(&self, from_member: bool) -> Vec<String> {
        self.subscribers
            .iter()
            .filter(|(_, fanout)| !from_member || **fanout)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// How many subscribers there are.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// How many events are kept now.
    pub fn recent_len(&self) -> usize {
        self.recent.len()
    }

    /// The limits.
    pub fn config(&self) -> EventsConfig {
        self.config
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// An event heard at wall time `time_ms`: kept among the last `keep`.
    pub fn record(&mut self, time_ms: u64, event: E) {
        if self.config.keep == 0 {
            return;
        }
        if self.recent.len() >= self.config.keep {
            self.recent.pop_front();
        }
        self.recent.push_back((time_ms, event));
    }

    /// The events kept, oldest first.
    pub fn recent(&self) -> Vec<(u64, E)> {
        self.recent.iter().cloned().collect()
    }

    /// Ours merged with the members' (`theirs`), oldest first, the last `keep`; events of
    /// one node keep their order when their times are equal.
    pub fn merged(&self, theirs: Vec<(u64, E)>) -> Vec<(u64, E)> {
        let mut all = self.recent();
        all.extend(theirs);
        all.sort_by_key(|(t, _)| *t);
        let skip = all.len().saturating_sub(self.config.keep);
        all.drain(..skip);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(keep: usize, max: usize) -> Events<&'static str> {
        Events::new(EventsConfig {
            keep,
            max_subscribers: max,
        })
    }

    #[test]
    fn member_events_go_to_whole_cluster_subscribers_only() {
        let mut e = events(10, 2);
        assert_eq!(e.subscribe("admin-1", true), Ok(()));
        assert_eq!(e.subscribe("c2", false), Ok(()));
        assert_eq!(
            e.subscribe("admin-2", true),
            Err(TooManySubscribers { max: 2 })
        );
        assert_eq!(
            e.subscribe("c2", true),
            Ok(()),
            "a new wish replaces the old"
        );
        assert_eq!(e.targets(false), ["admin-1", "c2"]);
        e.subscribe("c2", false).expect("again");
        assert_eq!(e.targets(true), ["admin-1"]);
        e.unsubscribe("admin-1");
        assert_eq!(e.targets(true), Vec::<String>::new());
        assert!(e.has_subscribers());
    }

    #[test]
    fn the_last_events_are_kept_and_merged_by_time() {
        let mut e = events(3, 1);
        for (t, ev) in [(1, "a"), (5, "b"), (7, "c"), (9, "d")] {
            e.record(t, ev);
        }
        assert_eq!(e.recent(), [(5, "b"), (7, "c"), (9, "d")]);
        assert_eq!(
            e.merged(vec![(6, "x"), (10, "y")]),
            [(7, "c"), (9, "d"), (10, "y")]
        );
        assert_eq!(e.merged(vec![(7, "z")]), [(7, "c"), (7, "z"), (9, "d")]);
    }
}
