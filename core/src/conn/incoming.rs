//! A link's requests and replies as they arrive from the peer, by either decoder (the
//! hot one of `message::hot` or the generic one): the peer's request becomes an event
//! unless it is one too many or a duplicate; a reply ends our pending request.

use std::time::Duration;

use bytes::Bytes;
use smol_str::SmolStr;

use super::{Connection, Event, RequestError, RequestId};
use crate::message::{Message, RemoteError, Reply};

impl Connection {
    /// The peer's request `id`: an event for the application, unless it is one too many
    /// or a duplicate (answered with an error at once).
    pub(super) fn on_request(&mut self, id: u64, timeout_ms: u32, class: SmolStr, body: Bytes) {
        // Kept unless one too many or a duplicate (one lookup: a new id, past the last,
        // is a push).
        let full = self.incoming.len() >= self.limits.max_incoming_requests as usize;
        if full || self.incoming.try_insert(id, ()).is_err() {
            let why = if self.incoming.contains_key(&id) {
                RemoteError::new(
                    "duplicate_request",
                    format!("request {id} is already running"),
                )
            } else {
                RemoteError::new("busy", "too many requests in flight")
            };
            self.send(&Message::Reply(Reply {
                id,
                result: Err(why),
            }));
            return;
        }
        self.events.push_back(Event::Request {
            id,
            class,
            body,
            timeout: Duration::from_millis(u64::from(timeout_ms)),
        });
    }

    /// The peer's answer to our request `id` (counted late when it is not pending).
    pub(super) fn on_reply(&mut self, id: u64, result: Result<Bytes, RemoteError>) {
        match self.pending.remove(id) {
            Some(_) => {
                self.events.push_back(Event::Reply {
                    id: RequestId(id),
                    result: result.map_err(RequestError::Remote),
                });
            }
            None => self.stats.late_replies += 1,
        }
    }
}
