//! A link's command queue: a bounded many-senders, one-receiver channel whose storage
//! exists only while it holds commands.
//!
//! A tokio `mpsc` channel allocates its first block of 32 slots when it is made and
//! keeps it for its whole life: about 2.5 KiB per link for a queue that is empty almost
//! always on an idle link (issue 15, point 6). Here the queue is a `VecDeque` behind a
//! mutex, given back by [`Receiver::shrink`] when it is empty (the link calls it at its
//! timer wake-ups: a busy link empties and refills its queue all the time, and giving
//! the storage back at every emptying made it regrow over and over); the channel itself
//! is one small allocation.
//! Senders that find it full wait for room ([`Sender::send`]) or are told so
//! ([`Sender::try_send`]); when the receiver goes, senders are told the channel is
//! closed; when every sender goes, the receiver drains what is queued, then sees the end.
//!
//! The queue also keeps the earliest deadline among its values ([`Expiring`]): a link
//! that takes no commands for a while (backed up, or still in its handshake) wakes when
//! the first queued one is due and ends it there ([`Receiver::poll_due`],
//! [`Receiver::take_due`]), instead of leaving its caller to wait for the link.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use nkcluster_core::Instant;

/// A queued value's deadline: when it stops being worth sending.
pub trait Expiring {
    /// Its deadline, if it has one.
    fn deadline(&self) -> Option<Instant>;
    /// Whether its time is up at `now`.
    fn is_due(&self, now: Instant) -> bool;
}

struct State<T> {
    queue: VecDeque<T>,
    /// The earliest deadline among the values queued since [`Receiver::take_due`] last
    /// looked at all of them: never later than the earliest queued now (the values
    /// taken since may have held it), so a wake-up at it is never late, at worst early.
    earliest: Option<Instant>,
    /// The receiver takes nothing for now and wants to hear only of a value due before
    /// `earliest` ([`Receiver::poll_due`]), not of every one.
    watching_due: bool,
    /// What [`Receiver::earliest`] last told the receiver.
    told: Option<Instant>,
    /// The receiver, waiting for a command (or for the last sender to go).
    rx_waker: Option<Waker>,
    /// Senders waiting for room.
    tx_wakers: Vec<Waker>,
    senders: usize,
    /// The receiver is gone.
    rx_gone: bool,
}

struct Shared<T> {
    cap: usize,
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the queue consistent (every change is
        // one push or pop): carry on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; cloned for each sender.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side (the link's task).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`Sender::try_send`] did not queue the value (which it gives back).
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// [`Sender::send`] found the receiver gone (the value is given back).
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and every sender is gone.
    Disconnected,
}

/// A channel holding at most `cap` values (at least one).
pub fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        cap: cap.max(1),
        state: Mutex::new(State {
            queue: VecDeque::new(),
            earliest: None,
            watching_due: false,
            told: None,
            rx_waker: None,
            tx_wakers: Vec::new(),
            senders: 1,
            rx_gone: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T: Expiring> Sender<T> {
    /// Queues `value` now, or says why not.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut s = self.shared.lock();
        if s.rx_gone {
            return Err(TrySendError::Closed(value));
        }
        if s.queue.len() >= self.shared.cap {
            return Err(TrySendError::Full(value));
        }
        let sooner = match value.deadline() {
            Some(d) if s.earliest.is_none_or(|e| d < e) => {
                s.earliest = Some(d);
                true
            }
            _ => false,
        };
        s.queue.push_back(value);
        let waker = if s.watching_due && !sooner {
            None
        } else {
            s.rx_waker.take()
        };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Queues `value`, waiting for room; fails when the receiver is gone.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut value = Some(value);
        poll_fn(|cx| {
            let Some(v) = value.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.try_send(v) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Closed(v)) => Poll::Ready(Err(SendError(v))),
                Err(TrySendError::Full(v)) => {
                    let mut s = self.shared.lock();
                    // Room may have come between the two locks: try again at once.
                    if s.queue.len() < self.shared.cap || s.rx_gone {
                        cx.waker().wake_by_ref();
                    } else if !s.tx_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        s.tx_wakers.push(cx.waker().clone());
                    }
                    value = Some(v);
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl<T> Sender<T> {
    /// Whether both are senders of the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().rx_gone
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        let waker = if s.senders == 0 {
            s.rx_waker.take()
        } else {
            None
        };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("cmdq::Sender").finish_non_exhaustive()
    }
}

impl<T: Expiring> Receiver<T> {
    /// For a receiver that takes nothing for now: ready when a value due sooner than
    /// every one queued when it last asked for the [`earliest`](Self::earliest) deadline
    /// came since (its timer is armed for a later one). Otherwise it waits, woken by a
    /// value queued later only if that value is due before every one already queued
    /// (not by each value, as [`poll_recv`](Self::poll_recv) is).
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.shared.lock();
        if s.earliest.is_some_and(|e| s.told.is_none_or(|t| e < t)) {
            return Poll::Ready(());
        }
        s.watching_due = true;
        if !s.rx_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.rx_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The earliest deadline among the queued values, or one earlier (see
    /// [`take_due`](Self::take_due)); remembered as told, so that
    /// [`poll_due`](Self::poll_due) waits for one sooner than it.
    pub fn earliest(&mut self) -> Option<Instant> {
        let mut s = self.shared.lock();
        s.told = s.earliest;
        s.told
    }

    /// Takes out the values whose time is up at `now` ([`Expiring::is_due`]), the others
    /// kept in order; only when the earliest deadline known has come (else nothing is
    /// looked at). The queue's earliest deadline is then exact again.
    pub fn take_due(&mut self, now: Instant) -> Vec<T> {
        let mut s = self.shared.lock();
        if s.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut due = Vec::new();
        let mut kept = VecDeque::with_capacity(s.queue.len());
        for v in s.queue.drain(..) {
            if v.is_due(now) {
                due.push(v);
            } else {
                kept.push_back(v);
            }
        }
        s.earliest = kept.iter().filter_map(Expiring::deadline).min();
        s.queue = kept;
        let waiting = if due.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut s.tx_wakers)
        };
        drop(s);
        // Room for what was taken: every waiting sender tries again.
        waiting.into_iter().for_each(Waker::wake);
        due
    }
}

impl<T> Receiver<T> {
    /// The next value, or `None` once every sender is gone and the queue is empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.take() {
            Ok(v) => Poll::Ready(Some(v)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                let mut s = self.shared.lock();
                s.watching_due = false;
                // A value (or the last sender's drop) may have come since `take`.
                if !s.queue.is_empty() || s.senders == 0 {
                    cx.waker().wake_by_ref();
                } else if !s.rx_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.rx_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// The next value, waiting for it; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next value if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.take()
    }

    /// Moves up to `max` queued values to the back of `into`, under one lock (a link
    /// takes every command queued by its callers in one go, rather than one lock per
    /// command that every caller contends on); how many it moved. When `into` is empty
    /// and the whole queue fits, the two swap storage: nothing is copied under the lock.
    pub fn try_recv_many(&mut self, into: &mut VecDeque<T>, max: usize) -> usize {
        let mut s = self.shared.lock();
        let n = s.queue.len().min(max);
        if n == 0 {
            return 0;
        }
        if into.is_empty() && n == s.queue.len() {
            std::mem::swap(&mut s.queue, into);
        } else {
            into.extend(s.queue.drain(..n));
        }
        let waiting = std::mem::take(&mut s.tx_wakers);
        drop(s);
        // Room for `n`: every waiting sender tries again (those that lose wait again).
        waiting.into_iter().for_each(Waker::wake);
        n
    }

    /// Gives back the storage of an emptied `into` of
    /// [`try_recv_many`](Self::try_recv_many), when the queue is empty and holds less: the
    /// next commands do not regrow it.
    pub fn give_back(&mut self, mut storage: VecDeque<T>) {
        storage.clear();
        let mut s = self.shared.lock();
        if s.queue.is_empty() && s.queue.capacity() < storage.capacity() {
            std::mem::swap(&mut s.queue, &mut storage);
        }
        drop(s);
    }

    /// Gives the queue's storage back if it is empty (an idle link holds none).
    pub fn shrink(&mut self) {
        let mut s = self.shared.lock();
        if s.queue.is_empty() && s.queue.capacity() > 0 {
            s.queue = VecDeque::new();
        }
    }

    fn take(&mut self) -> Result<T, TryRecvError> {
        let mut s = self.shared.lock();
        let Some(v) = s.queue.pop_front() else {
            return Err(if s.senders == 0 {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        };
        let waiting = std::mem::take(&mut s.tx_wakers);
        drop(s);
        // Room for one: every waiting sender tries again (those that lose wait again).
        waiting.into_iter().for_each(Waker::wake);
        Ok(v)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.rx_gone = true;
        let queued = std::mem::take(&mut s.queue);
        let waiting = std::mem::take(&mut s.tx_wakers);
        drop(s);
        // Dropped outside the lock: a queued value's drop may run code of its own.
        drop(queued);
        waiting.into_iter().for_each(Waker::wake);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("cmdq::Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A test value is its own deadline, in milliseconds.
    impl Expiring for i32 {
        fn deadline(&self) -> Option<Instant> {
            u64::try_from(*self).ok().map(Instant::from_millis)
        }

        fn is_due(&self, now: Instant) -> bool {
            self.deadline().is_some_and(|d| d <= now)
        }
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Counts its wake-ups.
    struct Counting(AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn due_values_are_taken_out_in_place_and_the_earliest_deadline_is_kept() {
        let (tx, mut rx) = channel(8);
        for v in [500, 100, 300, 200] {
            tx.try_send(v).expect("room");
        }
        assert_eq!(rx.earliest(), Some(ms(100)));
        assert_eq!(rx.take_due(ms(99)), Vec::<i32>::new());
        assert_eq!(rx.take_due(ms(150)), vec![100]);
        assert_eq!(rx.earliest(), Some(ms(200)), "exact again after a look");
        // Taking the earliest leaves it known (early, never late) until the next look.
        assert_eq!(rx.try_recv(), Ok(500));
        assert_eq!(rx.try_recv(), Ok(300));
        assert_eq!(rx.earliest(), Some(ms(200)));
        assert_eq!(rx.take_due(ms(250)), vec![200]);
        assert_eq!(rx.earliest(), None);
        // A value without a deadline is never due.
        tx.try_send(-1).expect("room");
        assert_eq!(rx.earliest(), None);
        assert_eq!(rx.take_due(ms(u64::MAX / 2_000_000)), Vec::<i32>::new());
        assert_eq!(rx.try_recv(), Ok(-1));
    }

    #[test]
    fn a_receiver_watching_for_due_values_is_woken_only_by_a_sooner_one() {
        let (tx, mut rx) = channel(8);
        let count = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::SeqCst);
        // Nothing told yet: a queued deadline is news.
        tx.try_send(400).expect("room");
        assert_eq!(rx.poll_due(&mut cx), Poll::Ready(()));
        // Told (its timer armed for 400 at the latest): no news until something sooner.
        assert_eq!(rx.earliest(), Some(ms(400)));
        assert_eq!(rx.poll_due(&mut cx), Poll::Pending);
        tx.try_send(500).expect("room");
        assert_eq!(woken(), 0, "due later than what is queued");
        tx.try_send(200).expect("room");
        assert_eq!(woken(), 1, "due sooner");
        assert_eq!(rx.poll_due(&mut cx), Poll::Ready(()));
        assert_eq!(rx.earliest(), Some(ms(200)));
        assert_eq!(rx.poll_due(&mut cx), Poll::Pending);
        // Taking values again: every value wakes the receiver.
        let mut got = VecDeque::new();
        rx.try_recv_many(&mut got, 8);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.try_send(900).expect("room");
        assert_eq!(woken(), 2);
    }

    #[tokio::test]
    async fn due_values_taken_out_make_room_for_waiting_senders() {
        let (tx, mut rx) = channel(2);
        tx.try_send(100).expect("room");
        tx.try_send(900).expect("room");
        let sender = tokio::spawn(async move { tx.send(800).await });
        tokio::task::yield_now().await;
        assert_eq!(rx.take_due(ms(100)), vec![100]);
        sender.await.expect("sender").expect("sent");
        assert_eq!(rx.try_recv(), Ok(900));
        assert_eq!(rx.try_recv(), Ok(800));
    }

    #[test]
    fn values_come_out_in_order_and_the_end_follows_the_last_sender() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.try_send(1).expect("room");
        tx2.try_send(2).expect("room");
        assert_eq!(rx.try_recv(), Ok(1));
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_full_queue_refuses_and_a_gone_receiver_closes() {
        let (tx, rx) = channel(2);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
    }

    #[test]
    fn an_emptied_queue_keeps_its_storage_until_shrunk() {
        let (tx, mut rx) = channel(8);
        tx.try_send(1).expect("room");
        let cap = tx.shared.lock().queue.capacity();
        assert!(cap > 0);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.shared.lock().queue.capacity(), cap);
        tx.try_send(2).expect("room");
        rx.shrink();
        assert_eq!(tx.shared.lock().queue.capacity(), cap, "not empty");
        assert_eq!(rx.try_recv(), Ok(2));
        rx.shrink();
        assert_eq!(tx.shared.lock().queue.capacity(), 0);
    }

    #[test]
    fn values_are_taken_many_at_once_in_order_up_to_the_bound() {
        let (tx, mut rx) = channel(8);
        for v in 1..=5 {
            tx.try_send(v).expect("room");
        }
        let mut got = VecDeque::new();
        assert_eq!(rx.try_recv_many(&mut got, 3), 3);
        assert_eq!(got, [1, 2, 3]);
        // Appended after what is there.
        assert_eq!(rx.try_recv_many(&mut got, 8), 2);
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert_eq!(rx.try_recv_many(&mut got, 8), 0);
        // An empty `into` and a queue that fits: the storage is swapped, the queue left
        // with `into`'s (here none).
        let mut fresh = VecDeque::new();
        tx.try_send(6).expect("room");
        assert_eq!(rx.try_recv_many(&mut fresh, 8), 1);
        assert_eq!(fresh, [6]);
        assert_eq!(tx.shared.lock().queue.capacity(), 0);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn values_taken_many_at_once_make_room_for_waiting_senders() {
        let (tx, mut rx) = channel(2);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        let sender = tokio::spawn(async move { tx.send(3).await });
        tokio::task::yield_now().await;
        let mut got = VecDeque::new();
        assert_eq!(rx.try_recv_many(&mut got, 8), 2);
        sender.await.expect("sender").expect("sent");
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(got, [1, 2]);
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_and_the_receiver_for_values() {
        let (tx, mut rx) = channel(1);
        tx.try_send(1).expect("room");
        let sender = tokio::spawn(async move {
            tx.send(2).await.expect("sent");
            tx.send(3).await.expect("sent");
        });
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
        sender.await.expect("sender");
    }

    #[tokio::test]
    async fn a_waiting_sender_learns_the_receiver_went() {
        let (tx, rx) = channel(1);
        tx.try_send(1).expect("room");
        let sender = tokio::spawn(async move { tx.send(2).await });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(sender.await.expect("sender"), Err(SendError(2)));
    }
}
