//! What a link driver decides around one [`Connection`]: the commands the application
//! queues for it, which callers wait for which request, the commands held while the
//! transport is backed up (their deadlines keep running), and who hears what when the
//! link ends. The shell's driver only moves bytes, time and commands; `R` is its handle
//! of a waiting caller (a one-shot channel in the daemon).
//!
//! Every caller gets exactly one outcome: the peer's reply, `timeout` (its deadline
//! passed, queued or sent), or the link's failure.
//!
//! It also counts, through the link's [`Meter`], every request when its outcome is known:
//! ours (sent) from the command to the outcome its caller gets, the peer's (served) from
//! its arrival to our answer, with the time the shell gives.

use std::collections::VecDeque;

use bytes::Bytes;
use smol_str::SmolStr;

use crate::conn::{Connection, RequestError, RequestId};
use crate::membership::MemberInfo;
use crate::seqmap::SeqMap;
use crate::telemetry::{Meter, ReqSide};
use crate::time::Instant;

mod pending;
use pending::{Pending, Table};

/// Commands held at most while the transport is backed up (then callers wait, within
/// their deadlines, to be queued).
pub const HELD_MAX: usize = 1024;
/// Stop taking new commands while this much output waits for the socket.
pub const WRITE_HIGH_WATER: usize = 4 * 1024 * 1024;

/// What the application asks of a link.
#[derive(Debug)]
pub enum Command<R> {
    /// Send a request; its outcome goes to `reply`.
    Request {
        /// Class name (inline when short: no allocation per request).
        class: SmolStr,
        /// Payload.
        body: Bytes,
        /// When the caller asked: the request's duration (its metrics) counts from here,
        /// time spent queued for the link included.
        asked: Instant,
        /// When the caller stops waiting: time spent queued for the link counts too.
        deadline: Instant,
        /// Where the outcome goes.
        reply: R,
    },
    /// Tell the peer something and want no answer ([`Connection::notify`]: one way on
    /// a link of protocol 5 or newer, else a request whose answer is dropped). Given up
    /// once `deadline` passes while it waits for the link.
    Notice {
        /// Class name.
        class: SmolStr,
        /// Payload.
        body: Bytes,
        /// When it is no longer worth sending.
        deadline: Instant,
    },
    /// Send our membership view (control links).
    Gossip(Vec<MemberInfo>),
    /// Close in order because the peer's proxy moved to control node `to`: our pending
    /// requests end `proxy_moved`.
    Handoff {
        /// The new owner.
        to: String,
    },
    /// Close in order.
    Close {
        /// Told to the peer.
        reason: String,
    },
}

/// A caller and the outcome it gets.
pub type Outcome<R> = (R, Result<Bytes, RequestError>);

/// The driver's bookkeeping for one link. See the module docs.
#[derive(Debug)]
pub struct Pump<R> {
    /// Our requests in flight, by the tag the connection hands back with each outcome
    /// (see [`pending`]).
    pending: Table<R>,
    /// With when each was taken (a request's time counts from there).
    held: VecDeque<(Instant, Command<R>)>,
    /// The peer's requests answered later (not from inside the handler): their class
    /// and arrival (bounded by the connection's limit on the peer's requests in
    /// flight). A request answered at once is counted at once and never kept here.
    serving: SeqMap<u64, (SmolStr, Instant)>,
    meter: Meter,
}

impl<R> Default for Pump<R> {
    fn default() -> Self {
        Self::with_meter(Meter::detached())
    }
}

impl<R> Pump<R> {
    /// Nothing queued or pending; counts go nowhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing queued or pending; counts go to `meter`.
    pub fn with_meter(meter: Meter) -> Self {
        Pump {
            pending: Table::default(),
            held: VecDeque::new(),
            serving: SeqMap::new(),
            meter,
        }
    }

    /// The link's meter (the shell counts bytes with it).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Adds the requests counted since the last call to the node's shared counters
    /// ([`Meter::publish`]). Counts of [`answered`](Self::answered) and of the peer's
    /// requests are tallied, not published: the driver calls this before it hands those
    /// outcomes to their callers and before it writes its answers, once for a run of
    /// them. The other calls that return outcomes publish before they return.
    pub fn publish_counts(&mut self) {
        self.meter.publish();
    }

    /// Counts one of our requests that ended (taken at `since`, sent or not), and gives
    /// its outcome back.
    #[inline]
    fn sent_done(
        &mut self,
        class: &str,
        since: Instant,
        now: Instant,
        outcome: Outcome<R>,
    ) -> Outcome<R> {
        let result = match &outcome.1 {
            Ok(_) => Ok(()),
            Err(e) => Err(e.code()),
        };
        self.meter.count(
            class,
            ReqSide::Sent,
            result,
            now.saturating_duration_since(since),
        );
        outcome
    }

    /// The peer's request `id` of `class`, which arrived at `now`, is answered later
    /// (counted then, see [`served`](Self::served)).
    pub fn serving(&mut self, now: Instant, id: u64, class: SmolStr) {
        self.serving.insert(id, (class, now));
    }

    /// We answer the peer's request `id`, kept by [`serving`](Self::serving): `Ok` or
    /// an error code.
    pub fn served(&mut self, now: Instant, id: u64, result: Result<(), &str>) {
        if let Some((class, since)) = self.serving.remove(&id) {
            self.meter.count(
                &class,
                ReqSide::Served,
                result,
                now.saturating_duration_since(since),
            );
        }
    }

    /// We answer the peer's request of `class` in the turn it arrived (its handler
    /// answered at once): counted now, with no time taken, and never kept.
    #[inline]
    pub fn served_at_once(&mut self, class: &str, result: Result<(), &str>) {
        self.meter
            .count(class, ReqSide::Served, result, std::time::Duration::ZERO);
    }

    /// Whether the driver takes new commands now: once authenticated, and unless the
    /// transport is backed up (`queued` bytes wait for the socket); otherwise they are
    /// held (up to [`HELD_MAX`]) or left in the caller's queue.
    pub fn accepts(&self, established: bool, queued: usize) -> Accept {
        if !established {
            Accept::Wait
        } else if queued < WRITE_HIGH_WATER {
            if self.held.is_empty() {
                Accept::Send
            } else {
                Accept::Unhold
            }
        } else if self.held.len() < HELD_MAX {
            Accept::Hold
        } else {
            Accept::Wait
        }
    }

    /// Hands a command to the connection; an outcome that is known at once (its time
    /// went waiting for the link, or the connection refused it) is returned.
    #[must_use]
    pub fn submit(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        cmd: Command<R>,
    ) -> Option<Outcome<R>> {
        let done = self.submit_taken(conn, now, now, cmd);
        if done.is_some() {
            self.meter.publish();
        }
        done
    }

    /// [`submit`](Self::submit) of a command taken at `since`.
    fn submit_taken(
        &mut self,
        conn: &mut Connection,
        since: Instant,
        now: Instant,
        cmd: Command<R>,
    ) -> Option<Outcome<R>> {
        match cmd {
            Command::Request {
                class,
                body,
                asked,
                deadline,
                reply,
            } => {
                // Counted from the ask (a command taken late, or held, waited since then).
                let since = since.min(asked);
                let left = deadline.saturating_duration_since(now);
                if left.is_zero() {
                    // Its whole time went waiting for the link.
                    let timeout = (reply, Err(RequestError::Timeout));
                    return Some(self.sent_done(&class, since, now, timeout));
                }
                let bulk = crate::lanes::is_bulk_request(&class, &body);
                match conn.request_tagged(now, &class, body, left, self.pending.next_tag()) {
                    Ok(RequestId(id)) => {
                        self.pending.insert(Pending {
                            id,
                            reply,
                            class,
                            since,
                            bulk,
                        });
                        None
                    }
                    Err(e) => Some(self.sent_done(&class, since, now, (reply, Err(e)))),
                }
            }
            Command::Notice {
                class,
                body,
                deadline,
            } => {
                let left = deadline.saturating_duration_since(now);
                // Nobody waits for a notice: one too late, or that the link refuses,
                // is dropped. Sent as a request (an older peer), its answer finds no
                // caller here and is dropped too.
                if !left.is_zero() {
                    let _ = conn.notify(now, &class, body, left);
                }
                None
            }
            Command::Gossip(view) => {
                conn.send_gossip(view);
                None
            }
            Command::Close { reason } => {
                conn.close(&reason);
                None
            }
            Command::Handoff { to } => {
                conn.close_with(
                    &format!("proxy moved to {to}"),
                    RequestError::ProxyMoved { to },
                );
                None
            }
        }
    }

    /// Holds a command taken at `now` while the transport is backed up.
    pub fn hold(&mut self, now: Instant, cmd: Command<R>) {
        self.held.push_back((now, cmd));
    }

    /// The transport has room again: the held commands go first, in order.
    #[must_use]
    pub fn unhold(&mut self, conn: &mut Connection, now: Instant) -> Vec<Outcome<R>> {
        let held = std::mem::take(&mut self.held);
        let done = held
            .into_iter()
            .filter_map(|(since, cmd)| self.submit_taken(conn, since, now, cmd))
            .collect();
        self.meter.publish();
        done
    }

    /// Held requests whose deadline has passed end `timeout`. For the driver's timer
    /// wake-ups: the request tables also give back the storage they no longer need
    /// (kept in between, see [`crate::seqmap`]).
    #[must_use]
    pub fn expire(&mut self, now: Instant) -> Vec<Outcome<R>> {
        self.pending.shrink();
        self.serving.shrink();
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.held.len());
        let mut expired = Vec::new();
        for (since, cmd) in self.held.drain(..) {
            match cmd {
                Command::Request {
                    asked,
                    deadline,
                    reply,
                    class,
                    ..
                } if deadline <= now => expired.push((since.min(asked), class, reply)),
                // A notice past its deadline is dropped (nobody waits for it).
                Command::Notice { deadline, .. } if deadline <= now => {}
                cmd => keep.push_back((since, cmd)),
            }
        }
        self.held = keep;
        for (since, class, reply) in expired {
            out.push(self.sent_done(&class, since, now, (reply, Err(RequestError::Timeout))));
        }
        self.meter.publish();
        out
    }

    /// The peer's answer to request `id` sent with `tag` (or the connection's
    /// `timeout`, its failure), from [`Event::Reply`](crate::conn::Event::Reply), for its
    /// caller: counted, not yet published (hand it over after
    /// [`publish_counts`](Self::publish_counts)). `None` for a request not sent by the
    /// pump (a notice sent as a request to an older peer).
    #[must_use]
    #[inline]
    pub fn answered(
        &mut self,
        now: Instant,
        id: RequestId,
        tag: u32,
        result: Result<Bytes, RequestError>,
    ) -> Option<Outcome<R>> {
        let p = self.pending.take(tag, id.0)?;
        Some(self.sent_done(&p.class, p.since, now, (p.reply, result)))
    }

    /// When the driver must wake next: the connection's own timer or a held request's
    /// deadline.
    #[must_use]
    pub fn poll_timeout(&self, conn: &Connection) -> Option<Instant> {
        let held = self
            .held
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Request { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min();
        match (conn.poll_timeout(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a command just taken should wait one turn of the runtime before it is
    /// sent, so that the commands of other callers running now join it in one write:
    /// only while small requests of ours are in flight (pipelining); a lone request
    /// leaves at once, and so does one that only has file parts in flight beside it
    /// (bulk-lane requests, [`crate::lanes::is_bulk_request`]): a transfer keeps parts in
    /// flight all along, and a turn of a runtime whose threads move its chunks was most
    /// of what a small request waited for during it.
    pub fn gather(&self) -> bool {
        self.pending.small() > 0
    }

    /// Gives back the storage of the empty maps and queue, and the meter's remembered
    /// classes, when the connection did ([`Connection::release_idle_storage`] returned
    /// `true`: a keepalive was heard, or the link is light). The requests in flight stay
    /// counted: each keeps its class's name, looked up again when its outcome is known.
    pub fn release_idle_storage(&mut self) {
        self.pending.shrink();
        self.serving.shrink();
        if self.held.is_empty() {
            self.held = VecDeque::new();
        }
        self.meter.release_classes();
    }

    /// Bytes of storage held by the maps, the queue and the meter's classes (for tests).
    #[must_use]
    pub fn storage_bytes(&self) -> usize {
        self.pending.capacity_bytes()
            + self.serving.capacity_bytes()
            + self.held.capacity() * size_of::<(Instant, Command<R>)>()
            + self.meter.storage_bytes()
    }

    /// Whether the link should close now because it is idle: nobody can queue more
    /// commands and none of our requests is pending ("closed when idle").
    pub fn idle_close(&self, commands_open: bool, conn: &Connection) -> bool {
        !commands_open && self.pending.is_empty() && conn.is_established()
    }

    /// The link is gone: every caller still waiting, pending or held, ends
    /// `connection_failed` (pending ones first, in request order); the peer's requests
    /// we had not answered count as served `connection_failed`.
    #[must_use]
    pub fn finish(&mut self, now: Instant) -> Vec<Outcome<R>> {
        let lost = || Err(RequestError::ConnectionFailed);
        let mut out = Vec::with_capacity(self.pending.len() + self.held.len());
        for p in self.pending.take_all() {
            out.push(self.sent_done(&p.class, p.since, now, (p.reply, lost())));
        }
        for (since, c) in std::mem::take(&mut self.held) {
            if let Command::Request {
                reply,
                class,
                asked,
                ..
            } = c
            {
                out.push(self.sent_done(&class, since.min(asked), now, (reply, lost())));
            }
        }
        for (_, (class, since)) in std::mem::take(&mut self.serving) {
            self.meter.count(
                &class,
                ReqSide::Served,
                Err("connection_failed"),
                now.saturating_duration_since(since),
            );
        }
        self.meter.publish();
        out
    }
}

/// What the driver does with the application's commands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Take them and send them.
    Send,
    /// Send the held ones first.
    Unhold,
    /// Take them but hold them (the transport is backed up).
    Hold,
    /// Leave them queued (not authenticated yet, or the held queue is full).
    Wait,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(deadline_ms: u64, reply: u32) -> Command<u32> {
        // Asked no earlier than taken (the tests below count from the take).
        Command::Request {
            class: "c".into(),
            body: Bytes::new(),
            asked: Instant::from_millis(deadline_ms),
            deadline: Instant::from_millis(deadline_ms),
            reply,
        }
    }

    #[test]
    fn empty_maps_and_queue_are_given_back_on_request_and_the_rest_kept() {
        let (mut a, _b) = crate::conn::tests::linked();
        let now = Instant::from_millis(10);
        let mut p = Pump::<u32>::new();
        p.serving(now, 1, "c".into());
        p.served(now, 1, Ok(()));
        p.hold(now, request(100, 1));
        assert_eq!(p.unhold(&mut a, now), vec![]);
        assert!(p.storage_bytes() > 0);
        p.release_idle_storage();
        // Our request is still pending: only its map is kept.
        assert_eq!(p.storage_bytes(), p.pending.capacity_bytes());
        assert_eq!(
            p.finish(now),
            vec![(1, Err(RequestError::ConnectionFailed))]
        );
        p.release_idle_storage();
        assert_eq!(p.storage_bytes(), 0);
    }

    #[test]
    fn the_meters_classes_go_with_the_idle_storage_and_come_back_on_use() {
        use crate::telemetry::{ClassCounters, Telemetry};
        use crate::url::Transport;

        let now = Instant::from_millis(10);
        let telemetry = std::sync::Arc::new(Telemetry::new());
        let mut p = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
        p.serving(now, 1, "info".into());
        p.served(now, 1, Ok(()));
        p.served_at_once("status", Ok(()));
        p.serving(now, 2, "status".into());
        // Four remembered classes' room (a Vec's first allocation) and the two names.
        let entry = size_of::<(String, std::sync::Arc<ClassCounters>)>();
        assert_eq!(p.meter.storage_bytes(), 4 * entry + 4 + 6);
        p.release_idle_storage();
        assert_eq!(p.meter.storage_bytes(), 0);
        // The request in flight is still counted under its class, once answered (looked
        // up again by its name).
        p.served(now, 2, Ok(()));
        assert_eq!(p.meter.storage_bytes(), 4 * entry + 6);
        p.serving(now, 3, "info".into());
        p.served(now, 3, Ok(()));
        assert_eq!(p.meter.storage_bytes(), 4 * entry + 6 + 4);
        let served = || -> Vec<(String, u64)> {
            telemetry
                .report()
                .requests
                .into_iter()
                .map(|c| (c.class, c.count))
                .collect()
        };
        // The last one is tallied until the driver publishes.
        assert_eq!(
            served(),
            vec![("info".to_owned(), 1), ("status".to_owned(), 2)]
        );
        p.publish_counts();
        assert_eq!(
            served(),
            vec![("info".to_owned(), 2), ("status".to_owned(), 2)]
        );
    }

    #[test]
    fn commands_are_taken_held_or_left_by_the_transport_backlog() {
        let mut p = Pump::<u32>::new();
        assert_eq!(p.accepts(false, 0), Accept::Wait);
        assert_eq!(p.accepts(true, 0), Accept::Send);
        assert_eq!(p.accepts(true, WRITE_HIGH_WATER), Accept::Hold);
        for i in 0..HELD_MAX {
            p.hold(Instant::ZERO, request(100, i as u32));
        }
        assert_eq!(p.accepts(true, WRITE_HIGH_WATER), Accept::Wait);
        assert_eq!(p.accepts(true, 0), Accept::Unhold);
    }

    #[test]
    fn held_requests_end_timeout_at_their_deadline_and_the_rest_connection_failed() {
        let mut p = Pump::<u32>::new();
        p.hold(Instant::ZERO, request(100, 1));
        p.hold(Instant::ZERO, Command::Gossip(Vec::new()));
        p.hold(Instant::ZERO, request(300, 2));
        p.hold(Instant::ZERO, request(200, 3));
        let ids = |v: Vec<Outcome<u32>>| -> Vec<(u32, Result<Bytes, RequestError>)> { v };
        assert_eq!(
            ids(p.expire(Instant::from_millis(200))),
            vec![
                (1, Err(RequestError::Timeout)),
                (3, Err(RequestError::Timeout))
            ]
        );
        assert_eq!(
            ids(p.finish(Instant::from_millis(200))),
            vec![(2, Err(RequestError::ConnectionFailed))]
        );
        assert_eq!(p.finish(Instant::from_millis(200)), vec![]);
    }

    #[test]
    fn a_request_whose_time_went_waiting_ends_timeout_without_being_sent() {
        let (mut a, _b) = crate::conn::tests::linked();
        let now = Instant::from_millis(10);
        let mut p = Pump::<u32>::new();
        let late = p.submit(&mut a, now + Duration::from_millis(5), request(0, 7));
        assert_eq!(late, Some((7, Err(RequestError::Timeout))));
        let in_time = Command::Request {
            class: "c".into(),
            body: Bytes::new(),
            asked: now,
            deadline: now + Duration::from_secs(1),
            reply: 8,
        };
        // A lone request leaves at once; once one is in flight, the next waits a turn
        // for the other callers' (pipelining).
        assert!(!p.gather());
        assert_eq!(p.submit(&mut a, now, in_time), None);
        assert!(p.gather());
        assert!(!p.idle_close(false, &a), "a request of ours is pending");
        assert_eq!(
            p.poll_timeout(&a)
                .map(|t| t <= now + Duration::from_secs(1)),
            Some(true)
        );
        assert_eq!(
            p.finish(now),
            vec![(8, Err(RequestError::ConnectionFailed))]
        );
        assert!(!p.gather());
        assert!(p.idle_close(false, &a));
        assert!(!p.idle_close(true, &a));
    }

    #[test]
    fn a_request_beside_file_parts_alone_leaves_at_once() {
        use crate::cluster::{CLASS_JOB, FilePart, JobCall, encode_body};
        let (mut a, _b) = crate::conn::tests::linked();
        let now = Instant::from_millis(10);
        let mut p = Pump::<u32>::new();
        let part = encode_body(&JobCall::SendFileBlake3(FilePart {
            path: "f".into(),
            offset: 0,
            total: 100,
            data: Bytes::from(vec![0u8; 100]),
            sha256: None,
        }))
        .expect("encodes");
        let req = |class: &str, body: Bytes, reply| Command::Request {
            class: class.into(),
            body,
            asked: now,
            deadline: now + Duration::from_secs(1),
            reply,
        };
        assert_eq!(p.submit(&mut a, now, req(CLASS_JOB, part.clone(), 1)), None);
        assert_eq!(p.submit(&mut a, now, req(CLASS_JOB, part, 2)), None);
        assert!(!p.gather(), "only file parts in flight");
        assert_eq!(p.submit(&mut a, now, req("c", Bytes::new(), 3)), None);
        assert!(p.gather(), "a small request in flight");
        assert_eq!(
            p.finish(now)
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(!p.gather());
    }

    #[test]
    fn every_outcome_is_counted_once_by_class_with_the_time_given() {
        use crate::conn::tests::pump as shuttle;
        use crate::message::RemoteError;
        use crate::telemetry::{RequestCount, Telemetry};
        use crate::url::Transport;

        let (mut a, mut b) = crate::conn::tests::linked();
        let telemetry = std::sync::Arc::new(Telemetry::new());
        let mut sender = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
        let mut server = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tcp));
        let t0 = Instant::from_millis(10);
        let req = |class: &str, reply| Command::Request {
            class: class.into(),
            body: Bytes::new(),
            asked: t0,
            deadline: t0 + Duration::from_secs(1),
            reply,
        };
        assert_eq!(sender.submit(&mut a, t0, req("echo", 1)), None);
        assert_eq!(sender.submit(&mut a, t0, req("echo", 2)), None);
        assert_eq!(sender.submit(&mut a, t0, req("slow", 3)), None);
        // A held one (taken at 4 ms) whose deadline passes, never sent.
        sender.hold(
            Instant::from_millis(4),
            Command::Request {
                class: "held".into(),
                body: Bytes::new(),
                asked: t0,
                deadline: t0,
                reply: 4,
            },
        );
        assert_eq!(sender.expire(t0), vec![(4, Err(RequestError::Timeout))]);
        shuttle(&mut a, &mut b, t0);
        let t1 = t0 + Duration::from_millis(3);
        let mut ids = Vec::new();
        while let Some(ev) = b.poll_event() {
            if let crate::conn::Event::Request { id, class, .. } = ev {
                server.serving(t0, id, class);
                ids.push(id);
            }
        }
        assert_eq!(ids, vec![1, 2, 3]);
        server.served(t1, 1, Ok(()));
        b.reply(1, Ok(Bytes::from_static(b"x")));
        let refused = RemoteError::new("forbidden", "no");
        server.served(t1, 2, Err(refused.code.as_str()));
        b.reply(2, Err(refused));
        // One answered in the turn it arrived: counted at once, with no time, never kept.
        server.served_at_once("echo", Ok(()));
        assert_eq!(server.serving.len(), 1);
        shuttle(&mut a, &mut b, t1);
        let mut outcomes = Vec::new();
        while let Some(ev) = a.poll_event() {
            if let crate::conn::Event::Reply { id, tag, result } = ev {
                outcomes.extend(
                    sender
                        .answered(t1, id, tag, result)
                        .map(|(r, res)| (r, res.is_ok())),
                );
            }
        }
        assert_eq!(outcomes, vec![(1, true), (2, false)]);
        // The link dies with "slow" pending at both ends.
        let t2 = t0 + Duration::from_millis(20);
        assert_eq!(
            sender.finish(t2),
            vec![(3, Err(RequestError::ConnectionFailed))]
        );
        assert_eq!(server.finish(t2), vec![]);
        let rc = |class: &str, side, outcome, count| RequestCount {
            class: class.into(),
            side,
            outcome,
            count,
        };
        let report = telemetry.report();
        assert_eq!(
            report.requests,
            vec![
                rc("echo", ReqSide::Sent, "ok", 1),
                rc("echo", ReqSide::Sent, "forbidden", 1),
                rc("echo", ReqSide::Served, "ok", 2),
                rc("echo", ReqSide::Served, "forbidden", 1),
                rc("held", ReqSide::Sent, "timeout", 1),
                rc("slow", ReqSide::Sent, "connection_failed", 1),
                rc("slow", ReqSide::Served, "connection_failed", 1),
            ]
        );
        let sums: Vec<(&str, ReqSide, u64, u64)> = report
            .durations
            .iter()
            .map(|(c, s, h)| (c.as_str(), *s, h.count, h.sum_us))
            .collect();
        assert_eq!(
            sums,
            vec![
                ("echo", ReqSide::Sent, 2, 6_000),
                ("echo", ReqSide::Served, 3, 6_000),
                ("held", ReqSide::Sent, 1, 6_000),
                ("slow", ReqSide::Sent, 1, 20_000),
                ("slow", ReqSide::Served, 1, 20_000),
            ]
        );
    }

    #[test]
    fn a_held_request_counts_from_its_ask() {
        use crate::conn::tests::pump as shuttle;
        use crate::telemetry::Telemetry;
        use crate::url::Transport;

        let (mut a, mut b) = crate::conn::tests::linked();
        let telemetry = std::sync::Arc::new(Telemetry::new());
        let mut p = Pump::<u32>::with_meter(Meter::new(telemetry.clone(), Transport::Tls));
        // Asked at 5 ms, taken by the link at 10 (held: the transport is backed up),
        // sent at 15, answered at 20: it took the caller 15 ms.
        let asked_at_5 = Command::Request {
            class: "c".into(),
            body: Bytes::new(),
            asked: Instant::from_millis(5),
            deadline: Instant::from_millis(1_000),
            reply: 1,
        };
        p.hold(Instant::from_millis(10), asked_at_5);
        assert_eq!(p.unhold(&mut a, Instant::from_millis(15)), vec![]);
        shuttle(&mut a, &mut b, Instant::from_millis(15));
        while let Some(ev) = b.poll_event() {
            if let crate::conn::Event::Request { id, .. } = ev {
                b.reply(id, Ok(Bytes::new()));
            }
        }
        shuttle(&mut a, &mut b, Instant::from_millis(15));
        let mut answered = Vec::new();
        while let Some(ev) = a.poll_event() {
            if let crate::conn::Event::Reply { id, tag, result } = ev {
                answered.extend(p.answered(Instant::from_millis(20), id, tag, result));
            }
        }
        assert_eq!(answered, vec![(1, Ok(Bytes::new()))]);
        // Handed over once published.
        assert_eq!(telemetry.report().durations, vec![]);
        p.publish_counts();
        let r = telemetry.report();
        assert_eq!(r.durations.len(), 1);
        assert_eq!(
            (r.durations[0].2.count, r.durations[0].2.sum_us),
            (1, 15_000)
        );
    }
}
