//! How a link's incoming requests are answered: the handler interface a link's task calls
//! ([`RequestHandler`]), the [`Responder`] that answers now or later from any task, and
//! the queue ([`LateAnswers`]) that brings late answers back to the link's task.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use nkcluster_core::handshake::Role;
use nkcluster_core::message::RemoteError;
use tokio::sync::oneshot;

/// Answers the peer's requests. Quick handlers answer at once, inside the connection
/// task, with [`Responder::now`]; others return [`Answer::Later`] and answer through the [`Responder`] from a task
/// of their own, so a slow request never holds up the link.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request of `class` from the authenticated peer `peer` (its node id),
    /// whose role is `role`.
    fn handle(
        &self,
        peer: &str,
        role: Role,
        class: &str,
        body: Bytes,
        responder: Responder,
    ) -> Answer;
}

/// A handler's answer.
#[derive(Debug)]
pub enum Answer {
    /// The reply, now.
    Now(Result<Bytes, RemoteError>),
    /// The handler kept the [`Responder`] and will answer later.
    Later,
}

/// Answers one request later, from any task. Dropping it unanswered answers
/// `no_reply`, so the peer is never left waiting for its deadline.
#[derive(Debug)]
pub struct Responder {
    to: Option<ReplyTo>,
}

#[derive(Debug)]
enum ReplyTo {
    /// A peer's request on a link.
    Link { id: u64, late: Arc<LateAnswers> },
    /// A request this node made to itself.
    Local(oneshot::Sender<Result<Bytes, RemoteError>>),
}

impl Responder {
    /// A responder for the request `id` a peer sent on a link: its answer goes to the
    /// link's task through `late`.
    pub(crate) fn for_link(id: u64, late: Arc<LateAnswers>) -> Responder {
        Responder {
            to: Some(ReplyTo::Link { id, late }),
        }
    }

    /// A responder whose answer goes nowhere (a notice's).
    pub(crate) fn quiet() -> Responder {
        Responder { to: None }
    }

    /// A responder for a request this node makes to itself, and where its answer goes.
    pub fn local() -> (Responder, oneshot::Receiver<Result<Bytes, RemoteError>>) {
        let (tx, rx) = oneshot::channel();
        (
            Responder {
                to: Some(ReplyTo::Local(tx)),
            },
            rx,
        )
    }

    /// Sends the reply (ignored if the connection is gone).
    pub fn reply(mut self, result: Result<Bytes, RemoteError>) {
        self.send(result);
    }

    /// Answers at once (from inside [`RequestHandler::handle`]): the answer goes back
    /// with the returned [`Answer::Now`] and the responder is used up silently. Dropping
    /// it instead would also queue a `no_reply` for the link (ignored there, the request
    /// being answered), a wake-up of the link task for nothing on every request, which
    /// on a multi-thread runtime wakes another worker.
    pub fn now(mut self, result: Result<Bytes, RemoteError>) -> Answer {
        self.to = None;
        Answer::Now(result)
    }

    fn send(&mut self, result: Result<Bytes, RemoteError>) {
        match self.to.take() {
            Some(ReplyTo::Link { id, late }) => late.push(id, result),
            Some(ReplyTo::Local(tx)) => {
                let _ = tx.send(result);
            }
            None => {}
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // Used up (answered, or `now`): nothing to say, and no error to build.
        if self.to.is_none() {
            return;
        }
        self.send(Err(RemoteError::new(
            "no_reply",
            "the handler ended without answering",
        )));
    }
}

/// Where handlers' late answers come back to the link's task (the [`Responder`]s hold
/// it too): a queue with storage only while answers wait, and the task's waker. A tokio
/// unbounded channel allocates a block of 32 slots when it is made (about 2.3 KiB with
/// the channel), which a link that served one request kept until its next timer
/// wake-up: for the answering end of an idle link, a minute later (issue 15, point 6).
#[derive(Debug, Default)]
pub(crate) struct LateAnswers {
    queue: Mutex<VecDeque<(u64, Result<Bytes, RemoteError>)>>,
    waker: AtomicWaker,
}

impl LateAnswers {
    pub(crate) fn lock(&self) -> MutexGuard<'_, VecDeque<(u64, Result<Bytes, RemoteError>)>> {
        // Every change is one push or pop: a panic elsewhere leaves the queue whole.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an answer and wakes the link's task.
    pub(crate) fn push(&self, id: u64, result: Result<Bytes, RemoteError>) {
        self.lock().push_back((id, result));
        self.waker.wake();
    }

    /// The next answer, if one is queued; the storage goes once the queue is empty.
    pub(crate) fn pop(&self) -> Option<(u64, Result<Bytes, RemoteError>)> {
        let mut q = self.lock();
        let next = q.pop_front();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
        next
    }

    /// The next answer, or `Pending` with the task's waker registered.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<(u64, Result<Bytes, RemoteError>)> {
        self.waker.register(cx.waker());
        self.pop().map_or(Poll::Pending, Poll::Ready)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops the link's queue when no answer is owed (no responder holds it) and none
    /// waits: it is made again at the next request.
    pub(crate) fn drop_if_unused(late: &mut Option<Arc<LateAnswers>>) {
        if late
            .as_ref()
            .is_some_and(|a| Arc::strong_count(a) == 1 && a.is_empty())
        {
            *late = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_responder() -> (Responder, Arc<LateAnswers>) {
        let late = Arc::new(LateAnswers::default());
        let responder = Responder::for_link(7, late.clone());
        (responder, late)
    }

    #[test]
    fn an_answer_given_now_queues_nothing_for_the_link() {
        let (responder, late) = link_responder();
        let answer = responder.now(Ok(Bytes::from_static(b"pong")));
        assert!(matches!(answer, Answer::Now(Ok(b)) if b == Bytes::from_static(b"pong")));
        // The queue's handle went with the responder: nothing was queued, nothing will be.
        assert_eq!(Arc::strong_count(&late), 1);
        assert!(late.pop().is_none());
    }

    #[test]
    fn a_dropped_responder_answers_no_reply_through_the_link() {
        let (responder, late) = link_responder();
        drop(responder);
        let (id, r) = late.pop().expect("queued");
        assert_eq!(id, 7);
        assert_eq!(r.expect_err("an error").code.as_str(), "no_reply");
        // Emptied, it keeps no storage.
        assert!(late.pop().is_none() && late.lock().capacity() == 0);
    }

    #[test]
    fn the_late_queue_goes_only_when_no_answer_is_owed_or_waiting() {
        let (responder, late) = link_responder();
        let mut held = Some(late);
        // A responder still holds it: an answer is owed.
        LateAnswers::drop_if_unused(&mut held);
        assert!(held.is_some());
        // Answered (dropped: `no_reply` queued) and not yet taken: it waits.
        drop(responder);
        LateAnswers::drop_if_unused(&mut held);
        assert!(held.as_ref().is_some_and(|l| !l.is_empty()));
        // Taken: nothing owed, nothing waiting.
        assert!(held.as_ref().and_then(|l| l.pop()).is_some());
        LateAnswers::drop_if_unused(&mut held);
        assert!(held.is_none());
    }
}
