//! The connector of a node with `cluster_addr`: which control node to dial next, when to
//! wait, when to give up. Sans-IO: the shell dials what [`ConnectorAction::Dial`] names,
//! keeps the link while it lasts, and reports back.
//!
//! - A round starts by resolving its entries again ([`ConnectorAction::Resolve`]: the
//!   shell runs a [`Resolution`](crate::discovery::Resolution) per entry, so DNS changes
//!   are followed), then tries the candidates one at a time: a redirect received from a
//!   control node first (once, in its order), then every address of every `cluster_addr`
//!   entry in one list shuffled with the randomness the shell injects, except that the
//!   control node that served us last goes last (if it died or hangs, the others are
//!   tried before it); one that served us without being in the list (a redirect took us
//!   there) is tried after the list. A control node that adopted us (dialed us, see
//!   [`Connector::handle_served_by`]) serves us from then on: its addresses go last
//!   instead. An entry that did not resolve is skipped (the shell logs its error).
//! - A round in which every entry failed is followed by a backoff delay (exponential,
//!   with the jitter the shell injects); when the attempt budget is spent the connector
//!   gives up with the most telling error of the last round.
//! - Without `cluster_addr` nothing is dialed: the connector stays idle, except that a
//!   redirect is followed once (after our links end); then it is idle again and the node
//!   waits to be dialed (`connect`, or its owner's redial).
//! - A control node that adopts us while a round is under way ends the round: it serves
//!   us, so the connector waits while it lasts instead of going on. The shell is told to
//!   interrupt what it does ([`Connector::handle_served_by`] returns `true`): a resolution
//!   or a wait between rounds stops at once; a dial whose transport is not up yet is
//!   abandoned ([`Connector::handle_dial_abandoned`]); a dial past that is reported as
//!   usual (a failure then ends the round too). Without this, a dial to a node that will
//!   never answer (say, a redirect's address on a network we are not on) would hold the
//!   connector for a whole connect timeout after the adopter is lost.
//! - After a link that authenticated, the shell waits while any control link lasts (a
//!   control node may have adopted us over a link it dialed), then reports the loss: the
//!   next round starts at once after a redirect, otherwise after the initial backoff delay
//!   (a peer that drops us right after the handshake cannot make us spin).
//!
//! ```
//! use nkcluster_core::Instant;
//! use nkcluster_core::backoff::BackoffConfig;
//! use nkcluster_core::connector::{Connector, ConnectorAction};
//! use nkcluster_core::discovery::Candidate;
//! use nkcluster_core::url::parse_url_list;
//! let urls = parse_url_list("nkcluster://10.0.0.1").unwrap();
//! let mut c = Connector::new(urls.clone(), BackoffConfig::default());
//! c.start(Instant::ZERO);
//! assert_eq!(c.poll_action(), Some(ConnectorAction::Resolve(urls.clone())));
//! let found = Candidate::as_written(urls[0].clone());
//! c.handle_resolved(Instant::ZERO, vec![Ok(vec![found.clone()])], 0);
//! assert_eq!(c.poll_action(), Some(ConnectorAction::Dial(found)));
//! ```

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::backoff::{Backoff, BackoffConfig};
use crate::discovery::{Candidate, DiscoveryError, shuffle};
use crate::time::Instant;
use crate::url::ClusterUrl;

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorAction {
    /// Resolve these entries (one [`Resolution`](crate::discovery::Resolution) each),
    /// log the errors, and report every outcome, in this order, with
    /// [`handle_resolved`](Connector::handle_resolved).
    Resolve(Vec<ClusterUrl>),
    /// Dial this candidate and run the link; report with
    /// [`handle_dial_failed`](Connector::handle_dial_failed) or
    /// [`handle_linked`](Connector::handle_linked).
    Dial(Candidate),
    /// Wait until no control link is left, then call
    /// [`handle_links_lost`](Connector::handle_links_lost).
    WaitWhileLinked,
    /// Stop trying: the attempt budget is spent.
    GiveUp {
        /// Code of the most telling failure of the last round.
        code: String,
        /// Its detail.
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not started, or given up.
    Idle,
    /// Waiting for the round's entries to resolve: the first `n` are the redirect's.
    Resolving(usize),
    /// Trying the round's entries; the current one is being dialed.
    Dialing,
    /// Between rounds, until the instant.
    Waiting(Instant),
    /// A link authenticated; waiting for the shell to report its loss.
    Linked,
    /// Gave up.
    Done,
}

/// The connector's state. See the module docs.
#[derive(Debug)]
pub struct Connector {
    entries: Vec<ClusterUrl>,
    backoff_config: BackoffConfig,
    backoff: Backoff,
    redirect: Vec<ClusterUrl>,
    last_served: Option<Candidate>,
    /// The address of a control node that adopted us after our last dial (it dialed us):
    /// the node serving us now, so its candidates go last.
    adopted_by: Option<IpAddr>,
    /// A control node adopted us while the current dial was in flight: the round ends
    /// at the dial's next report.
    adopted_mid_dial: bool,
    round: VecDeque<Candidate>,
    dialing: Option<Candidate>,
    last_error: (String, String),
    state: State,
    actions: VecDeque<ConnectorAction>,
}

fn no_connections() -> (String, String) {
    (
        "no_connections".to_owned(),
        "no url could be reached".to_owned(),
    )
}

impl Connector {
    /// A connector for `entries` (the node's `cluster_addr`).
    pub fn new(entries: Vec<ClusterUrl>, backoff: BackoffConfig) -> Self {
        Connector {
            entries,
            backoff: Backoff::new(backoff.clone()),
            backoff_config: backoff,
            redirect: Vec::new(),
            last_served: None,
            adopted_by: None,
            adopted_mid_dial: false,
            round: VecDeque::new(),
            dialing: None,
            last_error: no_connections(),
            state: State::Idle,
            actions: VecDeque::new(),
        }
    }

    /// Starts the first round.
    pub fn start(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.start_round(now);
        }
    }

    /// A control node told us to reconnect to `urls` (our proxy's owner): they are tried
    /// first in the next round. An empty list is ignored.
    ///
    /// Without `cluster_addr` the connector is idle (nothing is dialed by itself): it
    /// then waits for our links to end and follows the redirect once; returns `true`
    /// when it was idle and has this to do now (the shell runs it).
    pub fn handle_redirect(&mut self, urls: Vec<ClusterUrl>) -> bool {
        if urls.is_empty() {
            return false;
        }
        self.redirect = urls;
        if self.state == State::Idle && self.entries.is_empty() {
            self.state = State::Linked;
            self.actions.push_back(ConnectorAction::WaitWhileLinked);
            return true;
        }
        false
    }

    /// A control node at `ip` linked to us by dialing us (it adopted us: our proxy moved
    /// to it). It serves us now, so the next round tries its addresses last, like those
    /// of a node we dialed ourselves: if it died or hangs, the others are tried first.
    /// Without this, the node we dialed before the adoption (alive, most likely) would
    /// go last, and the one that just vanished might be dialed first and held us for a
    /// whole connect timeout.
    ///
    /// A redirect not followed yet is dropped: the hand-off it was part of is done (the
    /// owner adopted us, or another control node did since), and once that node's link
    /// ends, dialing its target first would dial the node just lost.
    ///
    /// A round under way ends: returns `true` when the shell must interrupt what it does
    /// for the connector (see the module docs). While resolving or waiting, the round
    /// ends at once ([`ConnectorAction::WaitWhileLinked`] is next); while dialing, at the
    /// dial's next report.
    #[must_use]
    pub fn handle_served_by(&mut self, ip: IpAddr) -> bool {
        self.adopted_by = Some(ip);
        self.redirect.clear();
        match self.state {
            State::Resolving(_) | State::Waiting(_) => {
                self.end_round_served();
                true
            }
            State::Dialing => {
                self.adopted_mid_dial = true;
                true
            }
            State::Idle | State::Linked | State::Done => false,
        }
    }

    /// The shell abandoned the current dial before its transport was up, because
    /// [`handle_served_by`](Self::handle_served_by) asked: the round ends.
    pub fn handle_dial_abandoned(&mut self, _now: Instant) {
        if self.state == State::Dialing && self.adopted_mid_dial {
            self.end_round_served();
        }
    }

    /// A control node serves us (it adopted us): no more dialing this round, wait while
    /// it lasts.
    fn end_round_served(&mut self) {
        self.dialing = None;
        self.round.clear();
        self.adopted_mid_dial = false;
        self.backoff.reset();
        self.state = State::Linked;
        self.actions.push_back(ConnectorAction::WaitWhileLinked);
    }

    /// Whether the connector has nothing to do and nothing to wait for (no
    /// `cluster_addr`, or not started): a listening node waits to be dialed.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && self.actions.is_empty()
    }

    /// The round's entries resolved: `results` in the order of
    /// [`ConnectorAction::Resolve`]'s list; `random` shuffles the candidates.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        results: Vec<Result<Vec<Candidate>, DiscoveryError>>,
        random: u64,
    ) {
        let State::Resolving(redirects) = self.state else {
            return;
        };
        let mut first = Vec::new();
        let mut listed = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(found) if i < redirects => first.extend(found),
                Ok(found) => listed.extend(found),
                Err(e) => {
                    if self.last_error.0 == "no_connections" {
                        self.last_error = (e.code().to_owned(), e.to_string());
                    }
                }
            }
        }
        shuffle(&mut listed, random);
        let served = self.last_served.clone();
        let dialed_last = |c: &Candidate| served.as_ref().is_some_and(|s| s.same_endpoint(c));
        // The node that served us last goes last: the one that adopted us when one did
        // (any of its addresses), otherwise the one we dialed. When the one we dialed is
        // not in our list (a redirect took us there), it is tried after the list: our
        // seeds may all be down while it is back.
        // An adoption counts for the round after it only: one heard while this round
        // dials (even before the shell reports the dial's link) counts for the next.
        let adopted_by = self.adopted_by.take();
        let is_served = |c: &Candidate| match adopted_by {
            Some(ip) => c.addr.is_some_and(|a| a.ip() == ip),
            None => dialed_last(c),
        };
        let served_listed = listed.iter().any(dialed_last);
        let served_extra = served.clone().filter(|_| !served_listed);
        let (last, rest): (Vec<Candidate>, Vec<Candidate>) =
            listed.into_iter().partition(is_served);
        self.round = first
            .into_iter()
            .chain(rest)
            .chain(last)
            .chain(served_extra)
            .collect();
        self.state = State::Dialing;
        // Nothing resolved: the round is over at once (`random` picks the jitter).
        self.next_dial(now, random);
    }

    /// The dial of the current entry failed (nothing answered, the transport or the
    /// handshake failed). `random` picks the backoff jitter when the round is over.
    pub fn handle_dial_failed(&mut self, now: Instant, code: &str, detail: &str, random: u64) {
        if self.state != State::Dialing {
            return;
        }
        // An answer that refused us says more than a silence.
        if code != "no_connections" || self.last_error.0 == "no_connections" {
            self.last_error = (code.to_owned(), detail.to_owned());
        }
        if self.adopted_mid_dial {
            self.end_round_served();
            return;
        }
        self.dialing = None;
        self.next_dial(now, random);
    }

    /// The current entry's link authenticated.
    pub fn handle_linked(&mut self, _now: Instant) {
        if self.state != State::Dialing {
            return;
        }
        self.last_served = self.dialing.take();
        self.adopted_mid_dial = false;
        self.round.clear();
        self.backoff.reset();
        self.state = State::Linked;
        self.actions.push_back(ConnectorAction::WaitWhileLinked);
    }

    /// No control link is left: start again, at once after a redirect, otherwise after
    /// the initial backoff delay.
    pub fn handle_links_lost(&mut self, now: Instant) {
        if self.state != State::Linked {
            return;
        }
        if self.redirect.is_empty() && self.entries.is_empty() {
            // No cluster_addr: we wait to be dialed.
            self.state = State::Idle;
        } else if self.redirect.is_empty() {
            self.state = State::Waiting(now + self.backoff_config.initial);
        } else {
            self.start_round(now);
        }
    }

    /// Advances time: a wait between rounds ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Waiting(until) = self.state
            && now >= until
        {
            self.start_round(now);
        }
    }

    /// Next thing to do.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<ConnectorAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting(t) => Some(t),
            _ => None,
        }
    }

    /// Failed rounds in a row.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    fn start_round(&mut self, _now: Instant) {
        let redirect = core::mem::take(&mut self.redirect);
        let n = redirect.len();
        let entries = redirect
            .into_iter()
            .chain(self.entries.iter().cloned())
            .collect();
        self.round.clear();
        self.last_error = no_connections();
        self.state = State::Resolving(n);
        self.actions.push_back(ConnectorAction::Resolve(entries));
    }

    fn next_dial(&mut self, now: Instant, random: u64) {
        if let Some(c) = self.round.pop_front() {
            self.dialing = Some(c.clone());
            self.actions.push_back(ConnectorAction::Dial(c));
            return;
        }
        if self.entries.is_empty() {
            // A redirect followed without cluster_addr: we wait to be dialed.
            self.state = State::Idle;
            return;
        }
        match self.backoff.on_failure(random) {
            Some(delay) => self.state = State::Waiting(now + delay),
            None => {
                self.state = State::Done;
                let (code, detail) = self.last_error.clone();
                self.actions
                    .push_back(ConnectorAction::GiveUp { code, detail });
            }
        }
    }
}

#[cfg(test)]
mod tests;
