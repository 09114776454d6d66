//! The node's side of the dashboard: the cluster changes the machine describes
//! ([`Output::ClusterEvent`], stamped here with the wall clock, kept in a bounded
//! [`Feed`] and broadcast live), and the [`ClusterView`] built from the machine's members
//! and ring and the node table gathered over the mesh. What the view and the feed say is
//! decided in [`nkcluster_core::dashboard`].

use super::*;
use nkcluster_core::dashboard::{ClusterView, Feed, FeedEntry, FeedItem};

/// Feed entries kept for a page that opens later.
const FEED_KEEP: usize = 200;
/// Live entries queued for a slow reader before it misses some.
const FEED_QUEUE: usize = 256;

/// The feed: the latest entries, the live broadcast, and the last view gathered (what
/// the next one is compared with).
pub(super) struct Following {
    feed: Mutex<Feed>,
    live: super::event_feed::LazyBroadcast<FeedEntry>,
    /// Views gathered so far (numbers them in the order they were started).
    views: AtomicU64,
    /// The newest view gathered, and its number.
    last_view: Mutex<Option<(u64, ClusterView)>>,
}

impl Following {
    pub(super) fn new() -> Self {
        Following {
            feed: Mutex::new(Feed::new(FEED_KEEP)),
            live: super::event_feed::LazyBroadcast::new(FEED_QUEUE),
            views: AtomicU64::new(0),
            last_view: Mutex::new(None),
        }
    }
}

impl<N: Net> Inner<N> {
    /// A cluster change the machine described: kept, and broadcast when someone listens
    /// (its entry, with its line for people, is made for listeners only).
    pub(super) fn record_cluster_event(&self, item: FeedItem) {
        let at_ms = self.clock.wall_now_ns() / 1_000_000;
        let live = {
            let mut feed = lock(&self.following.feed);
            let seq = feed.next_seq();
            debug!(node = %self.config.node_id, seq, "{item}");
            let live = self
                .following
                .live
                .has_receivers()
                .then(|| FeedEntry::new(seq, at_ms, item.clone()));
            feed.push(at_ms, item);
            live
        };
        if let Some(entry) = live {
            // A listener gone since is fine.
            self.following.live.send(entry);
        }
    }

    /// A view gathered (number `n`): what changed elsewhere since the newest one before
    /// it goes to the feed, and it becomes the newest (a view that finished after a
    /// newer one is not compared: it would tell old news again).
    fn compare_view(&self, n: u64, view: &ClusterView) {
        let changes = {
            let mut last = lock(&self.following.last_view);
            match &*last {
                Some((m, _)) if *m > n => return,
                Some((_, before)) => {
                    let changes = view.changes_since(before);
                    *last = Some((n, view.clone()));
                    changes
                }
                None => {
                    *last = Some((n, view.clone()));
                    return;
                }
            }
        };
        for item in changes {
            self.record_cluster_event(item);
        }
    }
}

impl<N: Net> Node<N> {
    /// The cluster as this node sees it: on a control node, the members, their share of
    /// the ring and the node table of the whole cluster (asked over the mesh, like
    /// [`cluster_nodes`](Self::cluster_nodes)); elsewhere, this node's own links. What
    /// changed at other members since the view gathered before goes to the feed of
    /// cluster changes (see [`ClusterView::changes_since`]).
    pub async fn cluster_view(&self) -> ClusterView {
        let n = self.inner.following.views.fetch_add(1, Ordering::Relaxed);
        let (report, members, ring) = if self.inner.is_control() {
            let report = self.inner.cluster_rows().await;
            let (members, ring) = self
                .inner
                .ask(|b, _| (b.members(), b.shared_ring()))
                .await
                .unwrap_or_default();
            (report, members, ring)
        } else {
            let rows = self
                .inner
                .ask(|b, _| b.local_rows())
                .await
                .unwrap_or_default();
            let report = NodesReport {
                rows,
                incomplete: Vec::new(),
            };
            (report, Vec::new(), None)
        };
        let view = ClusterView::new(self.node_id(), &members, ring.as_deref(), report);
        self.inner.compare_view(n, &view);
        view
    }

    /// The latest cluster changes this node saw, oldest first (at most a few hundred).
    pub fn recent_cluster_events(&self) -> Vec<FeedEntry> {
        lock(&self.inner.following.feed).recent()
    }

    /// Cluster changes from now on (a reader that falls behind misses the oldest: see
    /// [`broadcast::error::RecvError::Lagged`]).
    pub fn subscribe_cluster_events(&self) -> broadcast::Receiver<FeedEntry> {
        self.inner.following.live.subscribe()
    }
}
