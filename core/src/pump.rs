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
use pending::Pending;
use pending::Table;

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

impl<R> Command<R> {
    /// When the command stops being worth sending: a request's or a notice's deadline
    /// (the others have none). A link's command queue keeps the earliest of its
    /// commands' (see [`Pump::expire_queued`]).
    #[must_use]
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Command::Request { deadline, .. } | Command::Notice { deadline, .. } => Some(*deadline),
            Command::Gossip(_) | Command::Handoff { .. } | Command::Close { .. } => None,
        }
    }

    /// Whether the command's time is up at `now` (its deadline reached): a request
    /// then ends `timeout` without being sent, a notice is dropped.
    #[must_use]
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| d <= now)
    }
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

    /// A command whose time is up ([`Command::is_due`]) while it still waits in the
    /// caller's queue, where the driver left it (it takes none while the transport is
    /// backed up and the held commands are [`HELD_MAX`], or before the handshake ends:
    /// [`Accept::Wait`]): a request ends `timeout`, counted from its ask; a notice is
    /// dropped (`None`). Without this a request queued behind held ones with later
    /// deadlines, or behind a slow handshake, would wait for them and not for its own.
    #[must_use]
    pub fn expire_queued(&mut self, now: Instant, cmd: Command<R>) -> Option<Outcome<R>> {
        match cmd {
            Command::Request {
                class,
                asked,
                reply,
                ..
            } => {
                let done = self.sent_done(&class, asked, now, (reply, Err(RequestError::Timeout)));
                self.meter.publish();
                Some(done)
            }
            _ => None,
        }
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

    /// When the driver must wake next, as of `now`: the connection's own timer (its
    /// bulk lane's turns included), a held request's deadline, or `queued`: the earliest
    /// deadline among the commands left in the caller's queue, which counts only while
    /// the driver takes none ([`Accept::watches_queue`]; then what is due there ends at
    /// that wake-up, see [`expire_queued`](Self::expire_queued)).
    #[must_use]
    pub fn poll_timeout(
        &self,
        conn: &Connection,
        now: Instant,
        queued: Option<Instant>,
    ) -> Option<Instant> {
        let held = self
            .held
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Request { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .chain(queued)
            .min();
        let conn_t = match (conn.poll_timeout(), conn.turn_deadline(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (conn_t, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Our small requests (not on the bulk lane) since the last call: whether one is in
    /// flight, whether one was sent and whether one was answered, for the bulk lane's
    /// turns ([`crate::lanes::turns`]).
    #[must_use]
    #[inline]
    pub fn small_traffic(&mut self) -> crate::lanes::turns::SmallTraffic {
        let (sent, answered) = self.pending.small_seen();
        crate::lanes::turns::SmallTraffic {
            in_flight: self.pending.small() > 0,
            sent,
            answered,
        }
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

impl Accept {
    /// Whether the driver watches the deadlines of the commands it leaves queued: while
    /// it takes none ([`Accept::Wait`]). Otherwise it takes them as they come and
    /// watches them held or sent.
    #[must_use]
    pub fn watches_queue(self) -> bool {
        self == Accept::Wait
    }
}

#[cfg(test)]
mod tests;
