//! Drives one [`Connection`] over one transport ([`LinkIo`]): reads into the machine, writes what it
//! transmits, arms its timer, forwards application commands. No decisions are made here:
//! the loop only moves bytes, time and commands between the socket and the core.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nkcluster_core::conn::{Connection, Event};
use nkcluster_core::handshake::Role;
use nkcluster_core::lanes::{Moved, PACE, turn_ends_after};
use nkcluster_core::link_end::{self, Drain, LastSteps};
use nkcluster_core::message::RemoteError;
use nkcluster_core::pump::{Accept, Outcome, Pump};
use tokio::sync::oneshot;

use crate::answers::LateAnswers;
pub use crate::answers::{Answer, RequestHandler, Responder};

use crate::clock::Clock;
use crate::linkio::{Incoming, LinkIo};

/// Read buffer: none between frames (the transport reads into scratch space and keeps
/// only what arrived, see [`Connection::read_room`]); while a frame is under way, room
/// for what it still needs and `READ_BUF_MIN` of the next, between these bounds (a run
/// of bulk chunks takes one read each). An idle link holds no read buffer.
const READ_BUF_MIN: usize = 4 * 1024;
const READ_BUF_MAX: usize = 1024 * 1024;
/// Commands (or late answers) taken in one wake-up, so that they leave in one write.
const BATCH: usize = 256;

/// Where a request's outcome goes.
pub type Reply = crate::reply::Sender;

/// What the application asks of a connection (see [`nkcluster_core::pump::Command`]).
pub type Command = nkcluster_core::pump::Command<Reply>;

impl crate::cmdq::Expiring for Command {
    fn deadline(&self) -> Option<nkcluster_core::Instant> {
        nkcluster_core::pump::Command::deadline(self)
    }

    fn is_due(&self, now: nkcluster_core::Instant) -> bool {
        nkcluster_core::pump::Command::is_due(self, now)
    }
}

/// Receives the connection's events that the driver does not consume itself.
pub trait EventSink: Send + 'static {
    /// The handshake succeeded (or the link ended: `Event::Closed`).
    fn on_event(&mut self, conn: &Connection, event: &Event);

    /// After the events of one input: a signal to wait for before writing, once, then
    /// taking the late answers and commands queued by then (an accepted link's proof
    /// then leaves in one write with what its node sends on a link up, such as a
    /// worker's `placed` notice; a worker's answer to it with its first status and
    /// info). `None` (the default): write at once.
    fn take_hold(&mut self) -> Option<oneshot::Receiver<()>> {
        None
    }
}

/// What the link's task does after a wake-up's work, once the wake-up itself is gone.
enum After {
    Nothing,
    /// Its turn on the runtime is over: yield.
    Yield,
    /// A command was taken: the others already queued join it.
    TakeQueued,
}

/// What woke the link's task.
enum Wake {
    /// The task's turn on the runtime is over (after bulk work, see
    /// `nkcluster_core::lanes::turn_ends_after`); what it queued is written.
    TurnOver,
    Late(u64, Result<Bytes, RemoteError>),
    /// A command taken while the transport is backed up: held, its deadline watched.
    Hold(Command),
    /// The transport has room again: the held commands go first.
    Unhold,
    Read(Incoming),
    ReadError(String),
    IoError(String),
    Command(Command),
    CommandsClosed,
    Timer,
    /// A command due sooner than the ones the timer was armed for came to the queue:
    /// re-armed for it.
    Due,
    Flushed,
    /// The transport took what was queued: the next bulk chunk may go.
    Pull,
}

/// Runs the connection over `io` until it is closed and its last bytes are written;
/// `pump` keeps the callers waiting for our requests and counts requests and bytes with
/// its meter.
///
/// Commands wait until the handshake is done. When every command sender is gone the
/// connection closes as soon as no request of ours is pending ("closed when idle").
///
/// The transport, the machine, the command queue and the pump are borrowed: the caller's future
/// holds them once (an `async fn` keeps what it takes by value twice in its future, as
/// an argument and as the local it moves into, for as long as the link lives).
pub async fn drive(
    io: &mut dyn LinkIo,
    conn: &mut Connection,
    clock: Clock,
    commands: &mut crate::cmdq::Receiver<Command>,
    handler: &dyn RequestHandler,
    sink: &mut dyn EventSink,
    // Callers waiting for our requests, and commands held while the transport is backed
    // up (their deadlines keep running): the core's bookkeeping, and its counts.
    pump: &mut Pump<Reply>,
) {
    let mut now = clock.now();
    let mut wq: VecDeque<Bytes> = VecDeque::new();
    let mut wq_bytes = 0usize;
    let mut need_flush = false;
    let mut rbuf = BytesMut::new();
    let mut commands_open = true;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut write_failed = false;
    let mut linger: Option<nkcluster_core::Instant> = None;
    // The deadline the sleep is armed for.
    let mut armed: Option<nkcluster_core::Instant> = None;
    // The last wake-up's work ends the task's turn on the runtime (see `Wake::TurnOver`).
    let mut turn_over = false;
    // Closed by us in order (not by an error): worth waiting for the peer's close.
    let mut orderly = false;
    // Late answers of handlers. Unbounded, but the core caps the peer's requests in
    // flight (`max_incoming_requests`), so at most that many answers can be queued.
    // Made at the first request and dropped at a timer wake-up when no answer is owed
    // (an idle link holds no channel).
    let mut late: Option<Arc<LateAnswers>> = None;
    // The outcomes of one turn's replies, handed to their callers once their counts are
    // published (one publish per run, see `Pump::publish_counts`). Kept across turns;
    // given back with the link's idle storage.
    let mut ready: Vec<Outcome<Reply>> = Vec::new();

    loop {
        // Drain the machine.
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::Request {
                    id, class, body, ..
                } => {
                    let answers = late.get_or_insert_with(Default::default).clone();
                    let responder = Responder::for_link(id, answers);
                    let (peer, role) = conn
                        .peer()
                        .map_or(("", Role::Worker), |p| (p.node_id.as_str(), p.role));
                    match handler.handle(peer, role, &class, body, responder) {
                        // Counted at once: never kept in the pump's table.
                        Answer::Now(r) => {
                            pump.served_at_once(&class, outcome_code(&r));
                            conn.reply(id, r);
                        }
                        // Kept (class, arrival) until its answer comes back.
                        Answer::Later => pump.serving(now, id, class),
                    }
                }
                Event::Notice { class, body } => {
                    // Handled as a request whose answer goes nowhere.
                    let (peer, role) = conn
                        .peer()
                        .map_or(("", Role::Worker), |p| (p.node_id.as_str(), p.role));
                    let quiet = Responder::quiet();
                    let _ = handler.handle(peer, role, &class, body, quiet);
                }
                Event::Reply { id, tag, result } => {
                    if let Some(outcome) = pump.answered(now, id, tag, result) {
                        ready.push(outcome);
                    }
                }
                ev => {
                    if let Event::Closed(why) = &ev {
                        io.closing(why.as_ref());
                        orderly = why.is_none();
                    }
                    if let Event::Authenticated(_) = &ev {
                        io.authenticated();
                    }
                    sink.on_event(conn, &ev)
                }
            }
        }
        // The counts of this turn's replies and answers reach the node's counters before
        // their callers hear them and before the answers are written.
        pump.publish_counts();
        ready.drain(..).for_each(deliver);
        if let Some(mut hold) = sink.take_hold() {
            // Whatever the answer (the node may be gone): go on with what is queued. The
            // wait is bounded by the link's own next deadline (core's timer: a ping, a
            // request's timeout), so a node machine slow to answer never stalls the link
            // past it; the proof then leaves on its own. The link's one timer bounds it
            // (a second would be saved in the link's future: see the wait below).
            if let Some(d) = pump.poll_timeout(conn, now, None) {
                arm(sleep.as_mut(), &mut armed, clock, d);
                poll_fn(|cx| match Pin::new(&mut hold).poll(cx) {
                    Poll::Ready(_) => Poll::Ready(()),
                    Poll::Pending => sleep.as_mut().poll(cx),
                })
                .await;
            } else {
                let _ = hold.await;
            }
            now = clock.now();
            // The answers ready by then go first (a worker's answer to `placed`), then
            // the commands (its first status and info), in one write.
            if let Some(answers) = late.as_ref() {
                for _ in 0..BATCH {
                    match answers.pop() {
                        Some((id, r)) => reply(pump, conn, now, id, r),
                        None => break,
                    }
                }
            }
            for _ in 0..BATCH {
                if conn.is_closed() || !conn.is_established() {
                    break;
                }
                match commands.try_recv() {
                    Ok(cmd) => submit(pump, conn, now, cmd),
                    Err(_) => break,
                }
            }
            continue;
        }
        if pump.idle_close(commands_open, conn) {
            conn.close("idle");
            continue;
        }
        // The control lane at once, bulk as the transport takes it (a closed
        // connection writes everything it has left), taking turns with our small
        // requests.
        conn.note_small(now, pump.small_traffic());
        loop {
            let queued = if conn.is_closed() { 0 } else { wq_bytes };
            let Some(b) = conn.poll_transmit_paced(queued) else {
                break;
            };
            wq_bytes += b.len();
            wq.push_back(b);
        }
        // A keepalive was heard (on an idle link, its only traffic): the storage the
        // link's traffic left behind goes, the machine's, the pump's, the command
        // queue's and an unused queue of late answers (core decides when, see
        // `conn/trim.rs`; the answering end of an idle link has a timer wake-up only
        // once a minute).
        let release = conn.release_idle_storage();
        if release {
            pump.release_idle_storage();
            commands.shrink();
            ready = Vec::new();
            LateAnswers::drop_if_unused(&mut late);
        }
        let bulk_waits = conn.has_bulk();
        // Backpressure counts the bulk waiting in the machine too.
        let bulk_bytes = conn.bulk_bytes();
        if conn.is_closed() && (wq.is_empty() || write_failed) && !need_flush {
            break;
        }
        let established = conn.is_established();
        let closed = conn.is_closed();
        // Room for the next read: none between frames (an idle link gives its buffer
        // back), else what the current frame still needs, within bounds.
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            rbuf = BytesMut::new();
        }
        rbuf.reserve(conn.read_room(&rbuf, READ_BUF_MIN, READ_BUF_MAX));
        // The write queue's ring is given back with the link's other storage (core's
        // call, above), not at each emptying: a busy link would free and make it again
        // at every write.
        if release && wq.is_empty() && wq.capacity() > 0 {
            wq = VecDeque::new();
        }
        let timed = {
            let deadline = if closed {
                // Last writes to a peer that does not read must not hold the task forever.
                let d = *linger.get_or_insert_with(|| link_end::linger_until(clock.now()));
                Some(d)
            } else {
                // While the link takes no commands, the earliest deadline among those
                // left queued counts too (they end there, `Wake::Timer`).
                let watching = pump
                    .accepts(established, wq_bytes + bulk_bytes)
                    .watches_queue();
                // (The queue's lock only then: callers contend on it.)
                let queued = if watching { commands.earliest() } else { None };
                pump.poll_timeout(conn, now, queued)
            };
            if let Some(d) = deadline {
                arm(sleep.as_mut(), &mut armed, clock, d);
            }
            deadline.is_some()
        };

        // `wake` ends with this block, before the yields below: a value kept across two
        // awaits is saved in the link's future beside every other state, and that
        // future is what each link costs (`a_links_task_fits_fourteen_steps_of_128_bytes`).
        let mut after = After::Nothing;
        {
            let wake = {
                // The wait takes what it changes by reference and the rest by value (a
                // reference to a local would keep that local in the link's future too).
                let (io, pump, wq, wq_bytes, need_flush, rbuf, late, commands, mut sleep) = (
                    &mut *io,
                    &mut *pump,
                    &mut wq,
                    &mut wq_bytes,
                    &mut need_flush,
                    &mut rbuf,
                    &late,
                    &mut *commands,
                    sleep.as_mut(),
                );
                poll_fn(move |cx| {
                    // 1. Write as much as the transport takes, then flush. Room for the next
                    // bulk chunk is taken last (`pull`): reads, late answers and commands are
                    // looked at between any two chunks, so a small request or reply never waits
                    // for a run of bulk writes that the socket keeps accepting.
                    let mut pull = false;
                    if !wq.is_empty() {
                        let mut written = 0;
                        let r = io.poll_write_queue(cx, wq, &mut written);
                        *wq_bytes -= written;
                        // Written out on a link whose storage goes (core said so above): the
                        // ring goes now, not at the next turn (for an idle link, its next ping).
                        if release && wq.is_empty() {
                            *wq = VecDeque::new();
                        }
                        if written > 0 {
                            *need_flush = true;
                            pump.meter().bytes_out(written);
                        }
                        if let Poll::Ready(Err(e)) = r {
                            return Poll::Ready(Wake::IoError(e.to_string()));
                        }
                        pull = bulk_waits && *wq_bytes < PACE;
                    }
                    if wq.is_empty() && *need_flush {
                        match io.poll_flush(cx) {
                            Poll::Ready(Ok(())) => {
                                *need_flush = false;
                                if closed {
                                    return Poll::Ready(Wake::Flushed);
                                }
                            }
                            Poll::Ready(Err(e)) => {
                                return Poll::Ready(Wake::IoError(e.to_string()));
                            }
                            Poll::Pending => {}
                        }
                    }
                    if turn_over {
                        return Poll::Ready(Wake::TurnOver);
                    }
                    if closed {
                        if pull {
                            return Poll::Ready(Wake::Pull);
                        }
                        // Only the remaining writes matter now, until the linger deadline.
                        return match sleep.as_mut().poll(cx) {
                            Poll::Ready(()) => Poll::Ready(Wake::Timer),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                    // 2. Read.
                    match io.poll_read(cx, rbuf) {
                        Poll::Ready(Ok(inc)) => return Poll::Ready(Wake::Read(inc)),
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Wake::ReadError(read_error_text(&e)));
                        }
                        Poll::Pending => {}
                    }
                    // 3. Late answers, then commands: once authenticated, and unless the
                    // transport is backed up (then commands are held, up to a limit).
                    let accept = pump.accepts(established, *wq_bytes + bulk_bytes);
                    if matches!(accept, Accept::Send | Accept::Unhold)
                        && let Some(answers) = late.as_ref()
                        && let Poll::Ready((id, r)) = answers.poll_pop(cx)
                    {
                        return Poll::Ready(Wake::Late(id, r));
                    }
                    if accept == Accept::Unhold {
                        return Poll::Ready(Wake::Unhold);
                    }
                    if accept.watches_queue() && commands.poll_due(cx).is_ready() {
                        return Poll::Ready(Wake::Due);
                    }
                    if commands_open && matches!(accept, Accept::Send | Accept::Hold) {
                        match commands.poll_recv(cx) {
                            Poll::Ready(Some(c)) if accept == Accept::Send => {
                                return Poll::Ready(Wake::Command(c));
                            }
                            Poll::Ready(Some(c)) => return Poll::Ready(Wake::Hold(c)),
                            Poll::Ready(None) => return Poll::Ready(Wake::CommandsClosed),
                            Poll::Pending => {}
                        }
                    }
                    // 4. The next bulk chunk, once nothing above was ready.
                    if pull {
                        return Poll::Ready(Wake::Pull);
                    }
                    // 5. Timer.
                    if timed && sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                    Poll::Pending
                })
            }
            .await;

            now = clock.now();
            // The turn on the runtime ends after bulk work (see `turn_ends_after`), once
            // what it queued is written.
            turn_over = turn_ends_after(match &wake {
                Wake::Pull => Moved::BulkFrame,
                Wake::Read(Incoming::Bytes(n)) => Moved::Read(*n),
                Wake::Read(Incoming::Frame(b)) => Moved::Read(b.len()),
                _ => Moved::Other,
            });
            match wake {
                Wake::Read(Incoming::Bytes(n)) => {
                    pump.meter().bytes_in(n);
                    conn.handle_input_buf(now, &mut rbuf)
                }
                Wake::Read(Incoming::Frame(b)) => {
                    pump.meter().bytes_in(b.len());
                    conn.handle_frame_bytes(now, b)
                }
                Wake::Read(Incoming::Eof) => conn.handle_transport_closed(now, "eof"),
                Wake::Read(Incoming::Oversized(n)) => conn.handle_oversized_frame(now, n),
                // The read side failed (say, a text message on a websocket): the write side
                // may still work, so the close frame or close_notify still goes out.
                Wake::ReadError(e) => conn.handle_transport_closed(now, &e),
                Wake::Flushed | Wake::Pull | Wake::Due => {}
                // Other tasks run, and the runtime polls for I/O, before this one goes on.
                Wake::TurnOver => after = After::Yield,
                Wake::Late(id, r) => {
                    reply(pump, conn, now, id, r);
                    for _ in 1..BATCH {
                        match late.as_ref().and_then(|a| a.pop()) {
                            Some((id, r)) => reply(pump, conn, now, id, r),
                            None => break,
                        }
                    }
                }
                Wake::IoError(e) => {
                    write_failed = true;
                    need_flush = false;
                    wq.clear();
                    wq_bytes = 0;
                    // The peer may have closed in order just before our write failed: what it
                    // sent last (a leave notice, its close) may already be here. Read it first.
                    read_what_is_there(io, conn, &mut rbuf, now);
                    if !conn.is_closed() {
                        conn.handle_transport_closed(now, &e);
                    }
                }
                Wake::Command(cmd) => {
                    submit(pump, conn, now, cmd);
                    after = After::TakeQueued;
                }
                Wake::Hold(cmd) => pump.hold(now, cmd),
                Wake::Unhold => pump.unhold(conn, now).into_iter().for_each(deliver),
                Wake::CommandsClosed => commands_open = false,
                Wake::Timer if closed => {
                    write_failed = true;
                    break;
                }
                Wake::Timer => {
                    pump.expire(now).into_iter().for_each(deliver);
                    // Commands whose time went waiting in the queue (the link took none).
                    for cmd in commands.take_due(now) {
                        pump.expire_queued(now, cmd).into_iter().for_each(deliver);
                    }
                    conn.handle_timeout(now);
                    // The command queue's storage goes here rather than at each emptying
                    // (a busy link would reallocate it all the time); the timer wakes an
                    // idle link anyway (its next ping).
                    commands.shrink();
                    ready = Vec::new();
                    // No answer owed and none queued: the channel goes until the next
                    // request. Not sooner: a busy link would make and free one per request
                    // (an allocation with a block of slots each time); the timer wakes an idle
                    // link anyway (its next ping).
                    LateAnswers::drop_if_unused(&mut late);
                }
            }
        }
        match after {
            After::Nothing => {}
            // Other tasks run, and the runtime polls for I/O, before this one goes on.
            After::Yield => tokio::task::yield_now().await,
            After::TakeQueued => {
                // Every command already queued joins the one just taken, so they leave
                // in one write; they are taken in one go (one lock of the queue the
                // callers contend on). The link does not wait for more: a turn of the
                // runtime for the callers still running (a self-wake, so that they queue
                // theirs first) wakes the other worker on the multi-thread runtime at
                // every turn; on a machine where waking a thread on the other CPU costs
                // 15-35 µs that made pipelined requests slower and dearer (`protocol
                // --profile nk mt`: futex calls 13k -> 2-3k, context switches 14k ->
                // 2-3.5k, 460-650k -> 570k-1.02M req/s), and on the current-thread
                // runtime the callers run before the link anyway.
                take_queued(pump, conn, now, commands, BATCH - 1);
            }
        }
    }
    // Every caller gets an answer, even if the machine could not give one.
    pump.finish(clock.now()).into_iter().for_each(deliver);
    while let Some(ev) = conn.poll_event() {
        if let Event::Closed(why) = &ev {
            io.closing(why.as_ref());
        }
        if !matches!(
            ev,
            Event::Reply { .. } | Event::Request { .. } | Event::Notice { .. }
        ) {
            sink.on_event(conn, &ev);
        }
    }
    // The last waits are bounded by the link's one timer, re-armed (a timer of their own
    // would be saved in the link's future beside it).
    // The steps and their bounds are the core's (`link_end`).
    let last = LastSteps::after(write_failed, orderly);
    if last.shutdown {
        sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + link_end::SHUTDOWN_TIME);
        poll_fn(|cx| match io.poll_shutdown(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => sleep.as_mut().poll(cx),
        })
        .await;
    }
    if last.drain {
        // Wait for the peer's side to close (see `LinkIo::poll_drain`).
        sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + link_end::DRAIN_TIME);
        let mut drained = Drain::default();
        poll_fn(|cx| {
            loop {
                match io.poll_drain(cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        if !drained.go_on_after(n) {
                            return Poll::Ready(());
                        }
                    }
                    Poll::Pending => return sleep.as_mut().poll(cx),
                }
            }
        })
        .await;
    }
}

/// Sets the link's timer to `d`, unless it is armed for `d` already (`armed`): a reset
/// touches the shared timer wheel, and the usual deadline (the next ping) stays put
/// across many requests.
fn arm(
    sleep: Pin<&mut tokio::time::Sleep>,
    armed: &mut Option<nkcluster_core::Instant>,
    clock: Clock,
    d: nkcluster_core::Instant,
) {
    if *armed != Some(d) {
        sleep.reset(clock.to_tokio(d));
        *armed = Some(d);
    }
}

/// A read error for logs: a TLS peer that closed without `close_notify` simply closed
/// (rustls words it as an error with a documentation link).
fn read_error_text(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "eof (no TLS close_notify)".to_owned()
    } else {
        e.to_string()
    }
}

/// Tells a caller its request's outcome (ignored if it stopped waiting).
fn deliver((reply, result): Outcome<Reply>) {
    let _ = reply.send(result);
}

/// Answers the peer's request `id` (counted as served).
fn reply(
    pump: &mut Pump<Reply>,
    conn: &mut Connection,
    now: nkcluster_core::Instant,
    id: u64,
    result: Result<Bytes, RemoteError>,
) {
    pump.served(now, id, outcome_code(&result));
    conn.reply(id, result);
}

/// An answer's outcome as counted: `Ok` or its error code.
fn outcome_code(result: &Result<Bytes, RemoteError>) -> Result<(), &str> {
    result.as_ref().map(|_| ()).map_err(|e| e.code.as_str())
}

/// Hands one application command to the machine.
fn submit(
    pump: &mut Pump<Reply>,
    conn: &mut Connection,
    now: nkcluster_core::Instant,
    cmd: Command,
) {
    if let Some(outcome) = pump.submit(conn, now, cmd) {
        deliver(outcome);
    }
}

/// Submits the commands queued now, at most `max`, taken in one go.
/// Once the connection is closed the rest go unsent, as if left in the queue: their
/// callers hear `connection_failed` when their reply slots are dropped. The queue's
/// storage, swapped out when all of it is taken, is given back to it.
fn take_queued(
    pump: &mut Pump<Reply>,
    conn: &mut Connection,
    now: nkcluster_core::Instant,
    commands: &mut crate::cmdq::Receiver<Command>,
    max: usize,
) {
    let mut taken = VecDeque::new();
    if conn.is_closed() {
        return;
    }
    commands.try_recv_many(&mut taken, max);
    while let Some(cmd) = taken.pop_front() {
        if conn.is_closed() {
            taken.clear();
            break;
        }
        submit(pump, conn, now, cmd);
    }
    // Nothing taken, no storage swapped out: nothing to give back (no second lock).
    if taken.capacity() > 0 {
        commands.give_back(taken);
    }
}

/// Feeds the machine whatever input is already readable, without waiting.
fn read_what_is_there(
    io: &mut dyn LinkIo,
    conn: &mut Connection,
    rbuf: &mut BytesMut,
    now: nkcluster_core::Instant,
) {
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    for _ in 0..64 {
        if conn.is_closed() {
            return;
        }
        rbuf.reserve(conn.read_room(rbuf, READ_BUF_MIN, READ_BUF_MAX));
        match io.poll_read(&mut cx, rbuf) {
            Poll::Ready(Ok(Incoming::Bytes(_))) => conn.handle_input_buf(now, rbuf),
            Poll::Ready(Ok(Incoming::Frame(b))) => conn.handle_frame_bytes(now, b),
            Poll::Ready(Ok(Incoming::Oversized(n))) => conn.handle_oversized_frame(now, n),
            Poll::Ready(Ok(Incoming::Eof)) | Poll::Ready(Err(_)) | Poll::Pending => return,
        }
    }
}
