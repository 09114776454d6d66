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
    pub fn handle_served_by(&mut self, ip: IpAddr) {
        self.adopted_by = Some(ip);
        self.redirect.clear();
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
        self.dialing = None;
        self.next_dial(now, random);
    }

    /// The current entry's link authenticated.
    pub fn handle_linked(&mut self, _now: Instant) {
        if self.state != State::Dialing {
            return;
        }
        self.last_served = self.dialing.take();
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
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::url::{parse_url, parse_url_list};

    fn urls(s: &str) -> Vec<ClusterUrl> {
        parse_url_list(s).expect("urls")
    }

    fn cfg(max_attempts: Option<u32>) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts,
        }
    }

    /// A random value whose shuffle keeps lists of two and three in their order.
    const KEEP: u64 = 1;

    /// The next dial; a round's resolution is answered with the entries as written
    /// (kept in order).
    /// The next `n` dials, each of the first `n - 1` failing at `at` with `detail`.
    fn dial_order(c: &mut Connector, at: Instant, detail: &str, n: usize) -> Vec<Option<String>> {
        let mut order = vec![dial(c)];
        for _ in 1..n {
            c.handle_dial_failed(at, "no_connections", detail, 0);
            order.push(dial(c));
        }
        order
    }

    fn dial(c: &mut Connector) -> Option<String> {
        match c.poll_action() {
            Some(ConnectorAction::Resolve(urls)) => {
                let found = urls
                    .into_iter()
                    .map(|u| Ok(vec![Candidate::as_written(u)]))
                    .collect();
                c.handle_resolved(Instant::ZERO, found, KEEP);
                dial(c)
            }
            Some(ConnectorAction::Dial(u)) => Some(u.label()),
            None => None,
            Some(a) => panic!("expected a dial, got {a:?}"),
        }
    }

    #[test]
    fn every_round_resolves_again_and_shuffles_every_address_of_every_entry() {
        let list = urls("nkcluster://a.test:1, nkcluster://10.0.0.9:9, nkcluster://gone.test");
        let mut c = Connector::new(list.clone(), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(
            c.poll_action(),
            Some(ConnectorAction::Resolve(list.clone()))
        );
        assert_eq!(c.poll_action(), None);
        let at = |ip: &str| Candidate {
            url: parse_url("nkcluster://a.test:1").expect("url"),
            addr: Some(format!("{ip}:1").parse().expect("addr")),
        };
        let gone = DiscoveryError::NotFound {
            entry: "gone.test".into(),
            name: "gone.test".into(),
        };
        c.handle_resolved(
            Instant::ZERO,
            vec![
                Ok(vec![at("10.0.0.1"), at("10.0.0.2")]),
                Ok(vec![Candidate::as_written(list[1].clone())]),
                Err(gone.clone()),
            ],
            0,
        );
        // Random 0 moves the last of three first.
        let order = dial_order(&mut c, Instant::ZERO, "refused", 3);
        assert_eq!(
            order,
            [
                Some("tcp:10.0.0.9:9".into()),
                Some("tcp:a.test:1@10.0.0.1:1".into()),
                Some("tcp:a.test:1@10.0.0.2:1".into()),
            ]
        );
        // The round is over; the next one resolves again.
        c.handle_dial_failed(Instant::ZERO, "no_connections", "refused", 0);
        assert_eq!(c.poll_action(), None);
        let t = c.poll_timeout().expect("a backoff");
        c.handle_timeout(t);
        assert_eq!(
            c.poll_action(),
            Some(ConnectorAction::Resolve(list.clone()))
        );
        // Nothing resolves: the round fails at once, with the entry's error.
        c.handle_resolved(t, vec![Err(gone.clone())], 0);
        assert_eq!(c.poll_action(), None);
        assert_eq!(c.failures(), 2);
        assert_eq!(c.last_error.0, "unresolved");
        // Answers out of turn change nothing.
        c.handle_resolved(t, vec![Ok(vec![at("10.0.0.1")])], 0);
        assert_eq!(c.poll_action(), None);
    }

    const ABC: &str = "nkcluster://10.0.0.1:1, nkcluster://10.0.0.2:2, nkcluster://10.0.0.3:3";

    #[test]
    fn a_failed_round_backs_off_with_the_injected_jitter_then_tries_again() {
        let mut c = Connector::new(urls(ABC), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_dial_failed(Instant::ZERO, "no_connections", "refused", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.2:2"));
        c.handle_dial_failed(Instant::ZERO, "no_connections", "refused", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.3:3"));
        // The round is over: delay in [50, 100] ms; random 0 picks 50 ms.
        c.handle_dial_failed(Instant::from_millis(10), "no_connections", "refused", 0);
        assert_eq!(c.poll_action(), None);
        assert_eq!(c.poll_timeout(), Some(Instant::from_millis(60)));
        c.handle_timeout(Instant::from_millis(59));
        assert_eq!(c.poll_action(), None);
        c.handle_timeout(Instant::from_millis(60));
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        assert_eq!(c.failures(), 1);
    }

    #[test]
    fn after_a_link_the_node_that_served_goes_last_and_a_redirect_goes_first() {
        let mut c = Connector::new(urls(ABC), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_dial_failed(Instant::ZERO, "no_connections", "", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.2:2"));
        c.handle_linked(Instant::ZERO);
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        // Lost: the next round starts after the initial delay, served node last.
        c.handle_links_lost(Instant::from_millis(1000));
        assert_eq!(c.poll_timeout(), Some(Instant::from_millis(1100)));
        c.handle_timeout(Instant::from_millis(1100));
        let order = dial_order(&mut c, Instant::from_millis(1100), "", 3);
        assert_eq!(
            order,
            [
                Some("tcp:10.0.0.1:1".into()),
                Some("tcp:10.0.0.3:3".into()),
                Some("tcp:10.0.0.2:2".into())
            ]
        );
        c.handle_linked(Instant::from_millis(1100));
        let _ = c.poll_action();
        // A redirect is followed at once, before the list.
        c.handle_redirect(urls("nkcluster://10.0.0.9:9"));
        c.handle_links_lost(Instant::from_millis(2000));
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.9:9"));
        c.handle_dial_failed(Instant::from_millis(2000), "no_connections", "", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        // An empty redirect changes nothing.
        c.handle_redirect(Vec::new());
        assert!(c.redirect.is_empty());
    }

    #[test]
    fn a_node_reached_by_a_redirect_is_tried_after_the_list_once_it_served_us() {
        let mut c = Connector::new(urls("nkcluster://10.0.0.1:1"), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_linked(Instant::ZERO);
        let _ = c.poll_action();
        c.handle_redirect(urls("nkcluster://10.0.0.9:9"));
        c.handle_links_lost(Instant::from_millis(10));
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.9:9"));
        c.handle_linked(Instant::from_millis(10));
        let _ = c.poll_action();
        // The owner we were sent to is lost (it restarts; our seed is down): both are
        // tried, the seed first.
        c.handle_links_lost(Instant::from_millis(1000));
        c.handle_timeout(Instant::from_millis(1100));
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_dial_failed(Instant::from_millis(1100), "no_connections", "", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.9:9"));
        c.handle_dial_failed(Instant::from_millis(1100), "no_connections", "", 0);
        assert_eq!(c.poll_action(), None, "then a backoff");
    }

    #[test]
    fn a_node_that_adopted_us_is_tried_last_until_we_dial_one_ourselves() {
        let mut c = Connector::new(urls(ABC), cfg(None));
        c.start(Instant::ZERO);
        // We dial 10.0.0.1; 10.0.0.3 then adopts us (it dialed us, from its own port),
        // at once: its link is heard before the shell reports our dial's.
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_served_by("10.0.0.3".parse().expect("ip"));
        c.handle_linked(Instant::ZERO);
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        // The adopter is lost: it goes last, the node we dialed is tried in its turn.
        c.handle_links_lost(Instant::from_millis(1000));
        c.handle_timeout(Instant::from_millis(1100));
        let order = dial_order(&mut c, Instant::from_millis(1100), "", 3);
        assert_eq!(
            order,
            [
                Some("tcp:10.0.0.1:1".into()),
                Some("tcp:10.0.0.2:2".into()),
                Some("tcp:10.0.0.3:3".into()),
            ]
        );
        // We link to 10.0.0.3 by our own dial: from now on the last dialed goes last
        // again, the adoption is forgotten.
        c.handle_linked(Instant::from_millis(1100));
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        c.handle_links_lost(Instant::from_millis(2000));
        c.handle_timeout(Instant::from_millis(2100));
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_dial_failed(Instant::from_millis(2100), "no_connections", "", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.2:2"));
        c.handle_dial_failed(Instant::from_millis(2100), "no_connections", "", 0);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.3:3"));
    }

    #[test]
    fn an_adoption_drops_a_redirect_not_followed_yet() {
        // Redirected to 10.0.0.3 while linked to 10.0.0.1; 10.0.0.3 adopts us before our
        // link ends (a failed adoption fell back to the redirect, then a retry worked).
        let mut c = Connector::new(urls(ABC), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_linked(Instant::ZERO);
        let _ = c.poll_action();
        c.handle_redirect(urls("nkcluster://10.0.0.3:3"));
        c.handle_served_by("10.0.0.3".parse().expect("ip"));
        // 10.0.0.3 dies: it is not dialed first (the redirect), but last (the adopter).
        c.handle_links_lost(Instant::from_millis(1000));
        assert_eq!(
            c.poll_timeout(),
            Some(Instant::from_millis(1100)),
            "no redirect: the usual delay"
        );
        c.handle_timeout(Instant::from_millis(1100));
        let order = dial_order(&mut c, Instant::from_millis(1100), "", 3);
        assert_eq!(
            order,
            [
                Some("tcp:10.0.0.1:1".into()),
                Some("tcp:10.0.0.2:2".into()),
                Some("tcp:10.0.0.3:3".into()),
            ]
        );
    }

    #[test]
    fn after_a_redirect_an_adopter_goes_last_and_the_redirected_node_after_the_list() {
        // Served by 10.0.0.9 (a redirect), then adopted by 10.0.0.1 (in the list): the
        // adopter goes last, and the redirect's node is still tried after the list.
        let mut c = Connector::new(urls(ABC), cfg(None));
        c.start(Instant::ZERO);
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
        c.handle_linked(Instant::ZERO);
        let _ = c.poll_action();
        c.handle_redirect(urls("nkcluster://10.0.0.9:9"));
        c.handle_links_lost(Instant::from_millis(10));
        assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.9:9"));
        c.handle_linked(Instant::from_millis(10));
        let _ = c.poll_action();
        c.handle_served_by("10.0.0.1".parse().expect("ip"));
        c.handle_links_lost(Instant::from_millis(1000));
        c.handle_timeout(Instant::from_millis(1100));
        let order = dial_order(&mut c, Instant::from_millis(1100), "", 4);
        assert_eq!(
            order,
            [
                Some("tcp:10.0.0.2:2".into()),
                Some("tcp:10.0.0.3:3".into()),
                Some("tcp:10.0.0.1:1".into()),
                Some("tcp:10.0.0.9:9".into()),
            ]
        );
    }

    #[test]
    fn without_cluster_addr_only_a_redirect_is_followed_once_then_it_waits_to_be_dialed() {
        let mut c = Connector::new(Vec::new(), cfg(Some(1)));
        // Nothing is dialed by itself.
        c.start(Instant::ZERO);
        assert_eq!(c.poll_action(), Some(ConnectorAction::Resolve(Vec::new())));
        c.handle_resolved(Instant::ZERO, Vec::new(), KEEP);
        assert_eq!(
            (c.poll_action(), c.poll_timeout(), c.is_idle()),
            (None, None, true)
        );
        // Redirected: once our links end, the owner is dialed.
        let owner = urls("nkcluster://10.0.0.9:9");
        assert!(!c.handle_redirect(Vec::new()));
        assert!(c.handle_redirect(owner.clone()));
        assert!(!c.is_idle());
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        // A second redirect before the links end changes where, not what.
        assert!(!c.handle_redirect(owner.clone()));
        assert_eq!(c.poll_action(), None);
        c.handle_links_lost(Instant::ZERO);
        assert_eq!(dial(&mut c), Some("tcp:10.0.0.9:9".into()));
        // It fails: no backoff, no giving up, the node waits to be dialed.
        c.handle_dial_failed(Instant::ZERO, "no_connections", "refused", 0);
        assert_eq!(
            (c.poll_action(), c.poll_timeout(), c.is_idle()),
            (None, None, true)
        );
        // It links: once lost, the node waits again.
        assert!(c.handle_redirect(owner));
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        c.handle_links_lost(Instant::ZERO);
        assert_eq!(dial(&mut c), Some("tcp:10.0.0.9:9".into()));
        c.handle_linked(Instant::ZERO);
        assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
        c.handle_links_lost(Instant::from_millis(5));
        assert_eq!(
            (c.poll_action(), c.poll_timeout(), c.is_idle()),
            (None, None, true)
        );
    }

    #[test]
    fn gives_up_after_the_budget_with_the_most_telling_error() {
        let mut c = Connector::new(
            urls("nkcluster://10.0.0.1:1, nkcluster://10.0.0.2:2"),
            cfg(Some(2)),
        );
        c.start(Instant::ZERO);
        let _ = dial(&mut c);
        c.handle_dial_failed(Instant::ZERO, "auth_failed", "wrong password", 0);
        let _ = dial(&mut c);
        // A later silence does not hide the refusal.
        c.handle_dial_failed(Instant::ZERO, "no_connections", "refused", 0);
        let t = c.poll_timeout().expect("a backoff");
        c.handle_timeout(t);
        let _ = dial(&mut c);
        c.handle_dial_failed(t, "no_connections", "refused", 0);
        let _ = dial(&mut c);
        c.handle_dial_failed(t, "auth_failed", "wrong password", 0);
        assert_eq!(
            c.poll_action(),
            Some(ConnectorAction::GiveUp {
                code: "auth_failed".into(),
                detail: "wrong password".into()
            })
        );
        assert_eq!(c.poll_timeout(), None);
        // Nothing after giving up.
        c.handle_timeout(Instant::from_millis(10_000));
        assert_eq!(c.poll_action(), None);
    }
}
