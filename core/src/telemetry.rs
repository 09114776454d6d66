//! What a node counts for its metrics, and the rules of counting: requests sent and
//! served by job class and outcome with a latency histogram, handshakes by transport,
//! side and outcome, link failures by reason, bytes in and out per transport, file
//! transfers received. (What a node holds now, and the events a worker dropped, are the
//! node machine's [`Gauges`](crate::node::Gauges).)
//!
//! Counting is cheap and lock-free where it happens often: every counter is an atomic
//! indexed by fixed enums (transport, side, outcome: `ok` or one of the known
//! [`ErrorCode`](crate::error::ErrorCode)s, `other` for any code this version does not
//! know). The one open-ended label, the job class, is interned in a shared table once per
//! link and class (a link's [`Meter`] remembers its classes), never per request.
//!
//! Label values a peer chooses are capped: at most [`LABEL_VALUES_MAX`] classes are
//! named; a class beyond them, or one longer than [`LABEL_LEN_MAX`] or with a character
//! outside `[A-Za-z0-9_.:/-]`, counts as [`OTHER`]. So a peer cannot make the metrics
//! grow without bound.
//!
//! The shell reads everything with [`Telemetry::report`] and names it for Prometheus.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::KNOWN;
use crate::transfers::{FileOp, PartOutcome, Received};
use crate::url::Transport;

/// Distinct values a capped label takes at most (then [`OTHER`]).
pub const LABEL_VALUES_MAX: usize = 64;
/// The longest label value kept as it is (longer ones are [`OTHER`]).
pub const LABEL_LEN_MAX: usize = 64;
/// The label value of everything not named.
pub const OTHER: &str = "other";
/// The latency histogram's upper bounds, microseconds: 16 buckets from 100 µs to 10 s
/// (and `+Inf`).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Buckets counted: one per bound, and `+Inf`.
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;
/// Outcomes counted: `ok`, every known error code, `other`.
pub const OUTCOMES: usize = KNOWN.len() + 2;
/// Classes one link remembers itself; beyond them it asks the shared table every time.
const LINK_CLASSES_MAX: usize = 2 * LABEL_VALUES_MAX;
// A link's tally names its class, outcome and bucket with a byte each.
const _: () = assert!(LINK_CLASSES_MAX <= 256 && OUTCOMES <= 256 && BUCKETS <= 256);

/// Whether `value` may be a label value as it is (length and characters).
pub fn label_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= LABEL_LEN_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// The outcome of a request or a handshake as an index: `ok`, a known error code, or
/// `other`.
#[inline]
pub fn outcome_index(result: Result<(), &str>) -> usize {
    match result {
        Ok(()) => 0,
        Err(code) => KNOWN
            .iter()
            .position(|c| c.as_str() == code)
            .map_or(OUTCOMES - 1, |i| i + 1),
    }
}

/// The label value of an outcome index.
pub fn outcome_label(index: usize) -> &'static str {
    match index {
        0 => "ok",
        i => KNOWN.get(i - 1).map_or(OTHER, |c| c.as_str()),
    }
}

/// Which end of a request a count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReqSide {
    /// We sent it and waited for the outcome.
    Sent,
    /// A peer sent it and we answered.
    Served,
}

impl ReqSide {
    /// The label value: `sent` or `served`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReqSide::Sent => "sent",
            ReqSide::Served => "served",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Which end of a connection a handshake count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkSide {
    /// We dialed.
    Dialer,
    /// We accepted.
    Listener,
}

impl LinkSide {
    /// The label value: `dialer` or `listener`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkSide::Dialer => "dialer",
            LinkSide::Listener => "listener",
        }
    }
}

/// The transport of a link's remote label (`tls:10.0.0.1:1973`).
pub fn transport_of_remote(remote: &str) -> Option<Transport> {
    let name = remote.split(':').next().unwrap_or_default();
    Transport::ALL.into_iter().find(|t| t.as_str() == name)
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Tcp => 0,
        Transport::Tls => 1,
        Transport::Ws => 2,
        Transport::Wss => 3,
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// A duration in whole microseconds (saturating).
#[inline]
fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX)
}

/// The histogram bucket of a duration of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|b| *b < us)
}

/// Whether a duration of `us` microseconds falls in `bucket` (`bucket_of(us) == bucket`,
/// with two comparisons instead of a search).
#[inline]
fn in_bucket(bucket: usize, us: u64) -> bool {
    let above_lower = bucket == 0 || LATENCY_BOUNDS_US.get(bucket - 1).is_some_and(|b| *b < us);
    above_lower && LATENCY_BOUNDS_US.get(bucket).is_none_or(|b| us <= *b)
}

/// A latency histogram over [`LATENCY_BOUNDS_US`].
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: zeros(),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let us = micros(took);
        self.add(bucket_of(us), 1, us);
    }

    /// Counts `n` observations of bucket `bucket` whose durations add up to `sum_us`.
    fn add(&self, bucket: usize, n: u64, sum_us: u64) {
        self.buckets[bucket].fetch_add(n, Relaxed);
        // A request answered at once took no time: nothing to add.
        if sum_us > 0 {
            self.sum_us.fetch_add(sum_us, Relaxed);
        }
    }

    /// What it counted so far.
    pub fn read(&self) -> HistogramCounts {
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        HistogramCounts {
            count: buckets.iter().sum(),
            buckets,
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

/// A histogram's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramCounts {
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    pub buckets: [u64; BUCKETS],
    /// Observations.
    pub count: u64,
    /// Their sum, microseconds.
    pub sum_us: u64,
}

impl HistogramCounts {
    /// Each bucket's upper bound in seconds (`f64::MAX` last, which the encoder writes
    /// `+Inf`) and its own count (not cumulative: the encoder sums them into
    /// Prometheus's `le` buckets).
    pub fn by_bound(&self) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let le = LATENCY_BOUNDS_US
                    .get(i)
                    .map_or(f64::MAX, |us| *us as f64 / 1e6);
                (le, *n)
            })
            .collect()
    }
}

/// The counters of one job class (shared by every link that saw it).
#[derive(Debug)]
pub struct ClassCounters {
    outcomes: [[AtomicU64; OUTCOMES]; 2],
    durations: [Histogram; 2],
}

impl Default for ClassCounters {
    fn default() -> Self {
        ClassCounters {
            outcomes: [zeros(), zeros()],
            durations: Default::default(),
        }
    }
}

impl ClassCounters {
    /// Counts one request of this class that ended after `took`.
    pub fn count(&self, side: ReqSide, result: Result<(), &str>, took: Duration) {
        let us = micros(took);
        self.add(side.index(), outcome_index(result), bucket_of(us), 1, us);
    }

    /// Counts `n` requests of one side, outcome and duration bucket, whose durations add
    /// up to `sum_us`.
    fn add(&self, side: usize, outcome: usize, bucket: usize, n: u64, sum_us: u64) {
        self.outcomes[side][outcome].fetch_add(n, Relaxed);
        self.durations[side].add(bucket, n, sum_us);
    }
}

/// Requests a link counted and has not yet added to the shared counters: all of one
/// class (an index into the link's remembered classes), side, outcome and duration
/// bucket, so that a run of alike requests (a pipelined link's) costs one addition per
/// counter, not one per request (each an atomic read-modify-write on a counter the
/// node's other links and its metrics share). 16 bytes; `n == 0`: none.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    sum_us: u64,
    n: u32,
    class: u8,
    side: u8,
    outcome: u8,
    bucket: u8,
}

/// File transfers received, see [`Telemetry::file_started`] and the next ones.
#[derive(Debug, Default)]
struct FileCounters {
    started: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// Everything a node counts. Shared (`Arc`) by the node and its links.
#[derive(Debug)]
pub struct Telemetry {
    /// Job classes by name (capped), then [`OTHER`].
    classes: Mutex<BTreeMap<String, Arc<ClassCounters>>>,
    /// By transport, side, outcome.
    handshakes: [[[AtomicU64; OUTCOMES]; 2]; 4],
    /// By reason (an error code).
    link_failures: [AtomicU64; OUTCOMES],
    bytes_in: [AtomicU64; 4],
    bytes_out: [AtomicU64; 4],
    files: FileCounters,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            classes: Mutex::new(BTreeMap::new()),
            handshakes: std::array::from_fn(|_| [zeros(), zeros()]),
            link_failures: zeros(),
            bytes_in: zeros(),
            bytes_out: zeros(),
            files: FileCounters::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Telemetry {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of job class `class`, or of [`OTHER`] when it may not be named (see
    /// the module docs).
    pub fn class(&self, class: &str) -> Arc<ClassCounters> {
        let mut classes = lock(&self.classes);
        let named = label_ok(class)
            && (classes.contains_key(class) || classes.len() < LABEL_VALUES_MAX)
            && class != OTHER;
        let key = if named { class } else { OTHER };
        if let Some(c) = classes.get(key) {
            return c.clone();
        }
        let c = Arc::new(ClassCounters::default());
        classes.insert(key.to_owned(), c.clone());
        c
    }

    /// A handshake over `transport` ended: authenticated (`Ok`) or failed with an error
    /// code.
    pub fn handshake(&self, transport: Transport, side: LinkSide, result: Result<(), &str>) {
        self.handshakes[transport_index(transport)][side as usize][outcome_index(result)]
            .fetch_add(1, Relaxed);
    }

    /// An authenticated link ended with error code `reason`: a failure, unless the peer
    /// closed it in order (`peer_closed`). A link we closed has no error: the caller
    /// does not call this.
    pub fn link_ended(&self, reason: &str) {
        if reason != "peer_closed" {
            self.link_failures[outcome_index(Err(reason))].fetch_add(1, Relaxed);
        }
    }

    /// `n` bytes arrived over `transport`.
    pub fn bytes_in(&self, transport: Transport, n: usize) {
        self.bytes_in[transport_index(transport)].fetch_add(n as u64, Relaxed);
    }

    /// `n` bytes left over `transport`.
    pub fn bytes_out(&self, transport: Transport, n: usize) {
        self.bytes_out[transport_index(transport)].fetch_add(n as u64, Relaxed);
    }

    /// The receiver decided on a part of `len` bytes: a transfer started when the part
    /// creates its `.part` file (a first part, or a restart from zero), it is done when
    /// the file is whole, it failed when the part is refused; a taken part's bytes count.
    pub fn file_part(&self, outcome: &PartOutcome, len: usize) {
        if outcome
            .ops
            .iter()
            .any(|op| matches!(op, FileOp::Create { .. }))
        {
            self.files.started.fetch_add(1, Relaxed);
        }
        match &outcome.result {
            Ok(received) => {
                self.files.bytes.fetch_add(len as u64, Relaxed);
                if matches!(received, Received::File { .. }) {
                    self.files.done.fetch_add(1, Relaxed);
                }
            }
            Err(_) => self.file_failed(),
        }
    }

    /// Performing a transfer's file operations failed.
    pub fn file_failed(&self) {
        self.files.failed.fetch_add(1, Relaxed);
    }

    /// Everything counted so far, in a fixed order; counts that are zero are left out
    /// (except bytes: every transport is listed).
    pub fn report(&self) -> TelemetryReport {
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        for (class, c) in lock(&self.classes).iter() {
            for side in [ReqSide::Sent, ReqSide::Served] {
                for (i, n) in c.outcomes[side.index()].iter().enumerate() {
                    let count = n.load(Relaxed);
                    if count > 0 {
                        requests.push(RequestCount {
                            class: class.clone(),
                            side,
                            outcome: outcome_label(i),
                            count,
                        });
                    }
                }
                let h = c.durations[side.index()].read();
                if h.count > 0 {
                    durations.push((class.clone(), side, h));
                }
            }
        }
        let mut handshakes = Vec::new();
        for t in Transport::ALL {
            for side in [LinkSide::Dialer, LinkSide::Listener] {
                for (i, n) in self.handshakes[transport_index(t)][side as usize]
                    .iter()
                    .enumerate()
                {
                    let count = n.load(Relaxed);
                    if count > 0 {
                        handshakes.push(HandshakeCount {
                            transport: t.as_str(),
                            side,
                            outcome: outcome_label(i),
                            count,
                        });
                    }
                }
            }
        }
        let link_failures = self
            .link_failures
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (outcome_label(i), n))
            })
            .collect();
        let per_transport = |a: &[AtomicU64; 4]| {
            Transport::ALL
                .iter()
                .map(|t| (t.as_str(), a[transport_index(*t)].load(Relaxed)))
                .collect()
        };
        TelemetryReport {
            requests,
            durations,
            handshakes,
            link_failures,
            bytes_in: per_transport(&self.bytes_in),
            bytes_out: per_transport(&self.bytes_out),
            files: FileCounts {
                started: self.files.started.load(Relaxed),
                done: self.files.done.load(Relaxed),
                failed: self.files.failed.load(Relaxed),
                bytes: self.files.bytes.load(Relaxed),
            },
        }
    }
}

/// Requests of one class, side and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    /// Job class (or [`OTHER`]).
    pub class: String,
    /// Sent or served.
    pub side: ReqSide,
    /// `ok` or an error code.
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
}

/// Handshakes of one transport, side and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeCount {
    /// `tcp`, `tls`, `ws`, `wss`.
    pub transport: &'static str,
    /// Dialer or listener.
    pub side: LinkSide,
    /// `ok` or an error code.
    pub outcome: &'static str,
    /// How many.
    pub count: u64,
}

/// File transfers received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileCounts {
    /// Started (first part).
    pub started: u64,
    /// Complete and verified.
    pub done: u64,
    /// Failed.
    pub failed: u64,
    /// Bytes of parts written.
    pub bytes: u64,
}

/// What [`Telemetry::report`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryReport {
    /// Requests by class, side and outcome.
    pub requests: Vec<RequestCount>,
    /// Request durations by class and side.
    pub durations: Vec<(String, ReqSide, HistogramCounts)>,
    /// Handshakes by transport, side and outcome.
    pub handshakes: Vec<HandshakeCount>,
    /// Authenticated links that failed, by reason.
    pub link_failures: Vec<(&'static str, u64)>,
    /// Bytes received per transport.
    pub bytes_in: Vec<(&'static str, u64)>,
    /// Bytes sent per transport.
    pub bytes_out: Vec<(&'static str, u64)>,
    /// File transfers received.
    pub files: FileCounts,
}

/// One link's way into the [`Telemetry`]: its transport, and the classes it has seen
/// (so that a request costs a local lookup and a few atomic additions).
#[derive(Debug)]
pub struct Meter {
    telemetry: Arc<Telemetry>,
    transport: Transport,
    /// Scanned in order: a link sees few classes (capped at [`LINK_CLASSES_MAX`]), and a
    /// scan comparing lengths first costs less per request than hashing the name.
    classes: Vec<(String, Arc<ClassCounters>)>,
    /// Counted, not yet published (see [`Meter::publish`]).
    tally: Tally,
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Meter {
    /// The meter of a link over `transport`.
    pub fn new(telemetry: Arc<Telemetry>, transport: Transport) -> Self {
        Meter {
            telemetry,
            transport,
            classes: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// A meter whose counts nobody reads (tests, tools).
    pub fn detached() -> Self {
        Self::new(Arc::new(Telemetry::new()), Transport::Tcp)
    }

    /// The telemetry it counts into.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The counters of `class` (see [`Telemetry::class`]).
    pub fn class(&mut self, class: &str) -> Arc<ClassCounters> {
        if let Some((_, c)) = self.classes.iter().find(|(name, _)| name == class) {
            return c.clone();
        }
        let c = self.telemetry.class(class);
        if self.classes.len() < LINK_CLASSES_MAX {
            self.classes.push((class.to_owned(), c.clone()));
        }
        c
    }

    /// Counts one request of `class` that ended after `took` (see
    /// [`ClassCounters::count`]), with no handle on the counters kept: a request in
    /// flight keeps its class's name, not a counted reference, so none is taken and
    /// dropped per request.
    ///
    /// The count is tallied in the meter: it reaches the shared counters (what
    /// [`Telemetry::report`] reads) at the next [`publish`](Self::publish), or before a
    /// count of another class, side, outcome or duration bucket, or when the meter goes.
    /// The link's driver publishes before it hands an outcome to a caller and before it
    /// writes an answer, so nobody who heard of a request reads counts without it.
    ///
    /// Inlined into the link's driver (another crate): the usual count is a few
    /// comparisons there, and only another kind of count calls out.
    #[inline(always)]
    pub fn count(&mut self, class: &str, side: ReqSide, result: Result<(), &str>, took: Duration) {
        let us = micros(took);
        // The usual case: alike the run being tallied (a pipelined link's). Its bucket
        // is checked against the run's bounds, its class against the run's class only.
        let t = &mut self.tally;
        if t.n > 0
            && t.n < u32::MAX
            && usize::from(t.side) == side.index()
            && in_bucket(usize::from(t.bucket), us)
            && usize::from(t.outcome) == outcome_index(result)
            && self
                .classes
                .get(usize::from(t.class))
                .is_some_and(|(name, _)| crate::short_eq::same(name.as_bytes(), class.as_bytes()))
        {
            t.n += 1;
            t.sum_us = t.sum_us.saturating_add(us);
            return;
        }
        self.count_other(class, side, result, us);
    }

    /// [`count`](Self::count) of a request unlike the run being tallied (`us`: its
    /// duration in microseconds).
    #[inline(never)]
    fn count_other(&mut self, class: &str, side: ReqSide, result: Result<(), &str>, us: u64) {
        let (outcome, bucket) = (outcome_index(result), bucket_of(us));
        let i = match self.classes.iter().position(|(name, _)| name == class) {
            Some(i) => i,
            None => {
                let c = self.class(class);
                match self.classes.last() {
                    // Remembered now: tallied like the others.
                    Some((name, _)) if name == class => self.classes.len() - 1,
                    // Not remembered (the link saw too many classes): counted at once.
                    _ => return c.add(side.index(), outcome, bucket, 1, us),
                }
            }
        };
        let key = Tally {
            sum_us: 0,
            n: 0,
            // Below LINK_CLASSES_MAX, OUTCOMES and BUCKETS: each fits a byte.
            class: i as u8,
            side: side.index() as u8,
            outcome: outcome as u8,
            bucket: bucket as u8,
        };
        let t = &mut self.tally;
        let alike = (t.class, t.side, t.outcome, t.bucket)
            == (key.class, key.side, key.outcome, key.bucket);
        if t.n > 0 && alike && t.n < u32::MAX {
            t.n += 1;
            t.sum_us = t.sum_us.saturating_add(us);
            return;
        }
        self.publish();
        self.tally = Tally {
            sum_us: us,
            n: 1,
            ..key
        };
    }

    /// Adds what was counted since the last publish to the shared counters.
    pub fn publish(&mut self) {
        if self.tally.n == 0 {
            return;
        }
        let t = std::mem::take(&mut self.tally);
        if let Some((_, c)) = self.classes.get(usize::from(t.class)) {
            c.add(
                usize::from(t.side),
                usize::from(t.outcome),
                usize::from(t.bucket),
                u64::from(t.n),
                t.sum_us,
            );
        }
    }

    /// Forgets the classes it has seen and gives their storage back (an idle link's, see
    /// [`Pump::release_idle_storage`](crate::pump::Pump::release_idle_storage)): the
    /// next request of a class looks it up in the shared table again, once. What was
    /// counted is published first.
    pub fn release_classes(&mut self) {
        self.publish();
        self.classes = Vec::new();
    }

    /// Bytes of storage held by the remembered classes (for tests).
    #[must_use]
    pub fn storage_bytes(&self) -> usize {
        self.classes.capacity() * size_of::<(String, Arc<ClassCounters>)>()
            + self
                .classes
                .iter()
                .map(|(n, _)| n.capacity())
                .sum::<usize>()
    }

    /// `n` bytes arrived.
    pub fn bytes_in(&self, n: usize) {
        self.telemetry.bytes_in(self.transport, n);
    }

    /// `n` bytes left.
    pub fn bytes_out(&self, n: usize) {
        self.telemetry.bytes_out(self.transport, n);
    }
}

#[cfg(test)]
mod tests;
