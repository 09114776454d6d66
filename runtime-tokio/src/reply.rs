//! Where one request's outcome goes: a one-shot slot that the link's task fills and the
//! caller awaits, in place of `tokio::sync::oneshot` on the request path.
//!
//! Every request of the application makes one (`Node::request` and the like), so its
//! cost is paid per request at both ends of a pipelined link: tokio's one-shot channel
//! spent about 650 instructions per request (callgrind), a good part of it in the
//! runtime's cooperative budget (a thread-local read and a restore guard at every poll
//! of the receiver). Here the slot is a state word, a mutex-guarded value and an
//! [`AtomicWaker`]: the receiver's first poll registers its task, the sender stores the
//! value, marks the slot and wakes that task, the receiver's next poll takes the value.
//! The receiver does not count against tokio's budget: it is ready only once the link
//! answered, which takes a wake-up of its own.
//!
//! A sender dropped without sending closes the slot: the receiver gets [`RecvError`]
//! (for a request, the link's failure). A receiver dropped first makes
//! [`Sender::send`] give the value back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Nothing sent yet.
const EMPTY: u8 = 0;
/// The value is in the slot.
const SENT: u8 = 1;
/// The sender went without sending.
const CLOSED: u8 = 2;

struct Slot<T> {
    state: AtomicU8,
    value: Mutex<Option<T>>,
    waker: AtomicWaker,
}

/// The filling end (the link's task keeps it with the request).
pub struct Sender<T> {
    /// `None` once sent.
    slot: Option<Arc<Slot<T>>>,
}

/// The waiting end (the caller).
pub struct Receiver<T> {
    slot: Arc<Slot<T>>,
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
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: AtomicU8::new(EMPTY),
        value: Mutex::new(None),
        waker: AtomicWaker::new(),
    });
    (
        Sender {
            slot: Some(slot.clone()),
        },
        Receiver { slot },
    )
}

impl<T> Slot<T> {
    fn value(&self) -> std::sync::MutexGuard<'_, Option<T>> {
        // Every change is one store or take: a panic elsewhere leaves it whole.
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the slot `state` and wakes the receiver's task.
    fn finish(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.waker.wake();
    }
}

impl<T> Sender<T> {
    /// Fills the slot and wakes the receiver; the value comes back if the receiver is
    /// gone.
    ///
    /// # Errors
    /// `value`, when the receiver was dropped.
    pub fn send(mut self, value: T) -> Result<(), T> {
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

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish(CLOSED);
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reply::Sender")
            .field("sent", &self.slot.is_none())
            .finish()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reply::Receiver")
            .field("state", &self.slot.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = &self.slot;
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

    #[tokio::test]
    async fn a_value_sent_before_or_after_the_wait_arrives() {
        let (tx, rx) = channel::<u32>();
        assert_eq!(tx.send(7), Ok(()));
        assert_eq!(rx.await, Ok(7));

        let (tx, rx) = channel::<u32>();
        let waiting = tokio::spawn(rx);
        tokio::task::yield_now().await;
        assert_eq!(tx.send(8), Ok(()));
        assert_eq!(waiting.await.expect("task"), Ok(8));
    }

    #[tokio::test]
    async fn a_sender_gone_without_sending_closes_the_slot() {
        let (tx, rx) = channel::<u32>();
        let waiting = tokio::spawn(rx);
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiting.await.expect("task"), Err(RecvError));
    }

    #[test]
    fn a_receiver_gone_gives_the_value_back() {
        let (tx, rx) = channel::<u32>();
        drop(rx);
        assert_eq!(tx.send(9), Err(9));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_value_arrives_across_threads() {
        let mut waits = Vec::new();
        let mut senders = Vec::new();
        for i in 0..1000u32 {
            let (tx, rx) = channel();
            waits.push(tokio::spawn(rx));
            senders.push((i, tx));
        }
        tokio::spawn(async move {
            for (i, tx) in senders {
                let _ = tx.send(i);
            }
        });
        for (i, w) in waits.into_iter().enumerate() {
            assert_eq!(w.await.expect("task"), Ok(i as u32));
        }
    }
}
