//! Where one request's outcome goes: a one-shot slot that the link's task fills and the
//! caller awaits, in place of `tokio::sync::oneshot` on the request path.
//!
//! Every request of the application makes one (`Node::request` and the like), so its
//! cost is paid per request at both ends of a pipelined link: tokio's one-shot channel
//! spent about 650 instructions per request (callgrind), a good part of it in the
//! runtime's cooperative budget (a thread-local read and a restore guard at every poll
//! of the receiver). Here the slot is a state word, a mutex-guarded value and an
//! [`AtomicWaker`]: the receiver's first poll registers its task, the sender stores the
//! value, marks the slot and wakes that task, the receiver's next poll takes the value
//! (once the sender is gone, the slot is the receiver's alone: no lock, no atomic but
//! the count's check).
//! The receiver does not count against tokio's budget: it is ready only once the link
//! answered, which takes a wake-up of its own.
//!
//! A sender dropped without sending closes the slot: the receiver gets [`RecvError`]
//! (for a request, the link's failure). A receiver dropped first makes
//! [`Sender::send`] give the value back.
//!
//! Slots are reused: a receiver dropped once the sender is gone (its outcome taken, the
//! usual end of a request) puts its emptied slot on its thread's free list (at most
//! [`POOL_MAX`] slots, about 100 bytes each), where the thread's next [`channel`] takes
//! it, so a request allocates and frees nothing for its reply. A slot in use anywhere
//! else (a receiver dropped while its request is in flight) is freed as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use std::cell::RefCell;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use nkcluster_core::conn::RequestError;

/// What a slot carries: a request's outcome.
pub type Outcome = Result<Bytes, RequestError>;

/// Emptied slots a thread keeps for its next requests.
pub const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Arc<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// Nothing sent yet.
const EMPTY: u8 = 0;
/// The value is in the slot.
const SENT: u8 = 1;
/// The sender went without sending.
const CLOSED: u8 = 2;

struct Slot {
    state: AtomicU8,
    value: Mutex<Option<Outcome>>,
    waker: AtomicWaker,
}

/// The filling end (the link's task keeps it with the request).
pub struct Sender {
    /// `None` once sent.
    slot: Option<Arc<Slot>>,
}

/// The waiting end (the caller).
pub struct Receiver {
    /// `None` once dropped (taken to be reused or freed).
    slot: Option<Arc<Slot>>,
}

/// The sender went without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reply slot's sender went without sending")
    }
}

impl std::error::Error for RecvError {}

/// A new slot's two ends.
pub fn channel() -> (Sender, Receiver) {
    let slot = POOL
        .try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            Arc::new(Slot {
                state: AtomicU8::new(EMPTY),
                value: Mutex::new(None),
                waker: AtomicWaker::new(),
            })
        });
    (
        Sender {
            slot: Some(slot.clone()),
        },
        Receiver { slot: Some(slot) },
    )
}

impl Slot {
    fn value(&self) -> std::sync::MutexGuard<'_, Option<Outcome>> {
        // Every change is one store or take: a panic elsewhere leaves it whole.
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the slot `state` and wakes the receiver's task.
    fn finish(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.waker.wake();
    }
}

impl Sender {
    /// Fills the slot and wakes the receiver; the value comes back if the receiver is
    /// gone.
    ///
    /// # Errors
    /// `value`, when the receiver was dropped.
    pub fn send(mut self, value: Outcome) -> Result<(), Outcome> {
        let Some(slot) = self.slot.take() else {
            return Err(value);
        };
        if Arc::strong_count(&slot) == 1 {
            return Err(value);
        }
        *slot.value() = Some(value);
        slot.finish(SENT);
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish(CLOSED);
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reply::Sender")
            .field("sent", &self.slot.is_none())
            .finish()
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reply::Receiver")
            .field(
                "state",
                &self.slot.as_ref().map(|s| s.state.load(Ordering::Relaxed)),
            )
            .finish()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        // The sender is gone (it filled or closed the slot, and holds it no more), the
        // usual end of a request: the slot is ours alone, emptied and put back for this
        // thread's next request. Otherwise (dropped while the request is in flight) it
        // is let go.
        if let Some(s) = Arc::get_mut(&mut slot) {
            s.empty();
            pool(slot);
        }
    }
}

impl Slot {
    /// Empties a slot that is ours alone, for reuse: its value (if not taken), its
    /// state, a task registered after the wake (it then found the slot filled).
    ///
    /// `Arc::get_mut` found it unique with an acquiring read of its count, as `Arc`'s
    /// own drop does before it frees: everything the sender did to the slot (its value,
    /// its state, its wake) comes before the emptying, and a slot never polled cannot
    /// go back to the pool filled. No lock is taken: the slot is ours alone.
    fn empty(&mut self) -> Option<Outcome> {
        *self.state.get_mut() = EMPTY;
        self.waker = AtomicWaker::new();
        self.value
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Puts an emptied slot that is ours alone on this thread's free list (at most
/// [`POOL_MAX`]).
fn pool(slot: Arc<Slot>) {
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(slot);
        }
    });
}

impl Future for Receiver {
    type Output = Result<Outcome, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(slot) = this.slot.as_mut() else {
            return Poll::Ready(Err(RecvError));
        };
        // The sender is gone (the usual case once woken): the value, if it sent one,
        // is ours alone, taken without the lock, and the slot goes back to the pool at
        // once. (The count is read first: a plain load, where `get_mut` would lock it
        // for a moment at the first poll, while the sender is still there.)
        if Arc::strong_count(slot) == 1
            && let Some(s) = Arc::get_mut(slot)
        {
            let value = s.empty();
            if let Some(slot) = this.slot.take() {
                pool(slot);
            }
            return Poll::Ready(value.ok_or(RecvError));
        }
        if slot.state.load(Ordering::Acquire) == EMPTY {
            slot.waker.register(cx.waker());
            // Filled between the look and the registration: its wake may have missed us.
            if slot.state.load(Ordering::Acquire) == EMPTY {
                return Poll::Pending;
            }
        }
        // Sent: the value (taken once; a later poll finds it gone). Closed: nothing.
        Poll::Ready(slot.value().take().ok_or(RecvError))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u8) -> Outcome {
        Ok(Bytes::from(vec![n]))
    }

    fn pooled() -> usize {
        POOL.with(|p| p.borrow().len())
    }

    #[tokio::test]
    async fn a_value_sent_before_or_after_the_wait_arrives() {
        let (tx, rx) = channel();
        assert_eq!(tx.send(ok(7)), Ok(()));
        assert_eq!(rx.await, Ok(ok(7)));

        let (tx, rx) = channel();
        let waiting = tokio::spawn(rx);
        tokio::task::yield_now().await;
        assert_eq!(tx.send(ok(8)), Ok(()));
        assert_eq!(waiting.await.expect("task"), Ok(ok(8)));
    }

    #[tokio::test]
    async fn a_sender_gone_without_sending_closes_the_slot() {
        let (tx, rx) = channel();
        let waiting = tokio::spawn(rx);
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiting.await.expect("task"), Err(RecvError));
    }

    #[test]
    fn a_receiver_gone_gives_the_value_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(ok(9)), Err(ok(9)));
    }

    #[tokio::test]
    async fn a_slot_is_reused_once_both_ends_are_done_and_only_then() {
        // A thread of its own (this test's runtime): its pool starts empty.
        assert_eq!(pooled(), 0);
        let (tx, rx) = channel();
        let first = Arc::as_ptr(rx.slot.as_ref().expect("slot"));
        assert_eq!(tx.send(ok(1)), Ok(()));
        assert_eq!(rx.await, Ok(ok(1)));
        assert_eq!(pooled(), 1);
        // The next request takes it, empty.
        let (tx, rx) = channel();
        assert_eq!(Arc::as_ptr(rx.slot.as_ref().expect("slot")), first);
        assert_eq!(pooled(), 0);
        // Its caller stops waiting while the request is in flight: not reused.
        drop(rx);
        assert_eq!(pooled(), 0);
        assert_eq!(tx.send(ok(2)), Err(ok(2)));
        // A closed slot is reused too, and a filled one never read is emptied.
        let (tx, rx) = channel();
        drop(tx);
        assert_eq!(rx.await, Err(RecvError));
        let (tx, rx) = channel();
        assert_eq!(tx.send(ok(3)), Ok(()));
        drop(rx);
        assert_eq!(pooled(), 1);
        let (tx, rx) = channel();
        drop(tx);
        assert_eq!(rx.await, Err(RecvError));
        // At most POOL_MAX are kept.
        let ends: Vec<_> = (0..POOL_MAX + 3).map(|_| channel()).collect();
        for (tx, rx) in ends {
            drop(tx);
            drop(rx);
        }
        assert_eq!(pooled(), POOL_MAX);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_value_arrives_across_threads() {
        for _round in 0..3 {
            let mut waits = Vec::new();
            let mut senders = Vec::new();
            for i in 0..1000u32 {
                let (tx, rx) = channel();
                waits.push(tokio::spawn(rx));
                senders.push((i, tx));
            }
            tokio::spawn(async move {
                for (i, tx) in senders {
                    let _ = tx.send(Ok(Bytes::from(i.to_le_bytes().to_vec())));
                }
            });
            for (i, w) in waits.into_iter().enumerate() {
                let want = Bytes::from((i as u32).to_le_bytes().to_vec());
                assert_eq!(w.await.expect("task"), Ok(Ok(want)));
            }
        }
    }
}
