//! A broadcast of a node's events that takes no memory until someone subscribes.
//!
//! A tokio broadcast channel allocates and fills its whole ring of slots when it is
//! made: a node's two event feeds (its node events and its job events, 4,096 slots
//! each) cost every node ~1.6 MiB at start, subscribed or not (the scale bench's 5,000
//! worker nodes in one process held 8.4 GiB before their first link). A tokio channel
//! with no receiver keeps nothing it is sent, so a channel made at the first
//! subscription delivers exactly what the eager one did: each receiver sees the events
//! sent after it subscribed, and events sent while nobody listens are dropped.

use std::sync::OnceLock;

use tokio::sync::broadcast;

/// A broadcast channel of `capacity` slots, made at the first [`subscribe`](Self::subscribe).
pub(crate) struct LazyBroadcast<T> {
    capacity: usize,
    sender: OnceLock<broadcast::Sender<T>>,
}

impl<T: Clone> LazyBroadcast<T> {
    /// No channel yet: nothing allocated.
    pub(crate) fn new(capacity: usize) -> Self {
        LazyBroadcast {
            capacity,
            sender: OnceLock::new(),
        }
    }

    /// A receiver of every event sent from now on (makes the channel if needed).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.sender
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Sends `value` to the current receivers; without any it is dropped (as a tokio
    /// channel without receivers drops it).
    pub(crate) fn send(&self, value: T) {
        if let Some(sender) = self.sender.get() {
            let _ = sender.send(value);
        }
    }

    /// Whether anyone could receive an event now (so a caller can skip building one).
    pub(crate) fn has_receivers(&self) -> bool {
        self.sender.get().is_some_and(|s| s.receiver_count() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_made_or_kept_until_a_subscription() {
        let feed = LazyBroadcast::<u32>::new(4);
        feed.send(1);
        assert!(feed.sender.get().is_none());
        assert!(!feed.has_receivers());
        let mut rx = feed.subscribe();
        assert!(feed.has_receivers());
        feed.send(2);
        feed.send(3);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty));
    }

    #[test]
    fn a_later_subscriber_sees_only_later_events_and_a_slow_one_lags() {
        let feed = LazyBroadcast::<u32>::new(2);
        let mut first = feed.subscribe();
        feed.send(1);
        let mut second = feed.subscribe();
        feed.send(2);
        feed.send(3);
        assert_eq!(second.try_recv(), Ok(2));
        assert_eq!(second.try_recv(), Ok(3));
        // The first missed one of its three: the ring holds two.
        assert_eq!(
            first.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        );
        assert_eq!(first.try_recv(), Ok(2));
        drop((first, second));
        assert!(!feed.has_receivers());
        feed.send(4);
        let mut third = feed.subscribe();
        assert_eq!(third.try_recv(), Err(broadcast::error::TryRecvError::Empty));
    }
}
