//! Stopping: the connector's fatal error, a graceful leave that hands workers over first,
//! and the close of every link.

use super::*;

impl<N: Net> Node<N> {
    /// Resolves when the node must stop (its connector gave up).
    pub async fn fatal(&self) -> Fatal {
        let mut rx = self.inner.fatal.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// [`shutdown`](Self::shutdown), then waits (at most `limit`) until every connection
    /// has written its last messages (the leave notice, the close) and ended.
    ///
    /// A control node leaves gracefully first: it tells the members it leaves, then hands
    /// every worker it serves to the worker's new owner while the mesh is still up (for at
    /// most half of `limit`), and only then closes its links.
    pub async fn shutdown_and_wait(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        self.leave_and_hand_off(limit / 2).await;
        let mut running = self.inner.running.subscribe();
        self.shutdown();
        let _ = tokio::time::timeout_at(deadline, running.wait_for(|n| *n == 0)).await;
    }

    /// A control node leaving: gossips its leave, so that the ring moves every partition to
    /// the other members, and waits (at most `limit`) until its workers have been handed
    /// over (adopted by their new owners or redirected to them).
    pub(super) async fn leave_and_hand_off(&self, limit: Duration) {
        let inner = &self.inner;
        if !inner.is_control() {
            return;
        }
        if inner.ask(|b, now| b.leave(now)).await.is_none() {
            return;
        }
        if inner.view().members().is_empty() {
            return; // nobody to hand the workers to
        }
        let holds_workers = || inner.view().count_role(Role::Worker) > 0;
        let mut events = inner.events.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        while holds_workers() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                    info!(node = %inner.config.node_id, "leaving with workers not yet handed over; they reconnect on their own");
                    return;
                }
                Ok(_) => {}
            }
        }
        info!(node = %inner.config.node_id, "every worker handed over; leaving");
    }

    /// Closes every link in order and stops listening and dialing.
    pub fn shutdown(&self) {
        // A control node leaves explicitly: peers drop it at once, without waiting for
        // failure detection. The view goes out before the close on every link.
        let _ = self.inner.shutdown.send(true);
        self.inner.tell(|b, now| b.handle_shutdown(now));
    }

    /// Resolves once the node has been told to shut down (at once if it has).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}
