//! Unit tests of the connector: dial order, backoff, redirects, adoptions.

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
    assert!(
        c.handle_served_by("10.0.0.3".parse().expect("ip")),
        "mid-dial: the shell is told (it abandons the dial if its transport is not up)"
    );
    // The dial was past its transport: it is reported as usual.
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
    assert!(
        !c.handle_served_by("10.0.0.3".parse().expect("ip")),
        "linked: nothing to interrupt"
    );
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

/// The round after an adoption that ended a round: the usual delay after the loss
/// (not a grown backoff), then the adopter last.
fn next_round_puts_the_adopter_last(c: &mut Connector, lost: Instant) {
    c.handle_links_lost(lost);
    let t = lost + Duration::from_millis(100);
    assert_eq!(
        c.poll_timeout(),
        Some(t),
        "the initial delay: failures reset"
    );
    c.handle_timeout(t);
    assert_eq!(
        dial_order(c, t, "", 3),
        [
            Some("tcp:10.0.0.1:1".into()),
            Some("tcp:10.0.0.2:2".into()),
            Some("tcp:10.0.0.3:3".into()),
        ]
    );
}

#[test]
fn an_adoption_mid_dial_ends_the_round_once_the_shell_abandons_the_dial() {
    // We dial 10.0.0.1 (say, an address we cannot reach: the connect would time
    // out); 10.0.0.3 adopts us meanwhile.
    let mut c = Connector::new(urls(ABC), cfg(None));
    c.start(Instant::ZERO);
    assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
    assert!(c.handle_served_by("10.0.0.3".parse().expect("ip")));
    assert_eq!(c.poll_action(), None, "the dial is the shell's to stop");
    c.handle_dial_abandoned(Instant::from_millis(4));
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    assert_eq!(c.poll_action(), None, "10.0.0.2 is not dialed");
    // A late report of the abandoned dial changes nothing.
    c.handle_dial_failed(Instant::from_millis(5), "no_connections", "timed out", 0);
    c.handle_linked(Instant::from_millis(5));
    assert_eq!(c.poll_action(), None);
    // The adopter is lost: a new round at the usual delay, the adopter last.
    next_round_puts_the_adopter_last(&mut c, Instant::from_millis(1000));
}

#[test]
fn an_adoption_mid_dial_ends_the_round_at_the_dials_failure() {
    // The dial was past its transport (its handshake was refused): reported as a
    // failure, it ends the round instead of going on to the next entry.
    let mut c = Connector::new(urls(ABC), cfg(None));
    c.start(Instant::ZERO);
    assert_eq!(dial(&mut c).as_deref(), Some("tcp:10.0.0.1:1"));
    assert!(c.handle_served_by("10.0.0.3".parse().expect("ip")));
    c.handle_dial_failed(Instant::ZERO, "unauthorized", "refused", 0);
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    assert_eq!(c.poll_action(), None);
    next_round_puts_the_adopter_last(&mut c, Instant::from_millis(1000));
    // An abandonment the connector did not ask for changes nothing.
    c.handle_dial_abandoned(Instant::from_millis(1100));
    assert_eq!(dial(&mut c), None, "the dial in flight goes on");
}

#[test]
fn an_adoption_while_resolving_or_waiting_ends_the_round_at_once() {
    let mut c = Connector::new(urls(ABC), cfg(None));
    c.start(Instant::ZERO);
    assert!(matches!(c.poll_action(), Some(ConnectorAction::Resolve(_))));
    assert!(c.handle_served_by("10.0.0.3".parse().expect("ip")));
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    // The resolution's late answer is dropped: nothing is dialed.
    let found = urls(ABC)
        .into_iter()
        .map(|u| Ok(vec![Candidate::as_written(u)]))
        .collect();
    c.handle_resolved(Instant::ZERO, found, KEEP);
    assert_eq!(c.poll_action(), None);
    next_round_puts_the_adopter_last(&mut c, Instant::from_millis(1000));
    // That round fails: a backoff wait, cut short by an adoption; failures are
    // reset.
    c.handle_dial_failed(Instant::from_millis(1100), "no_connections", "", 0);
    assert_eq!(c.failures(), 1);
    assert!(c.poll_timeout().is_some());
    assert!(c.handle_served_by("10.0.0.2".parse().expect("ip")));
    assert_eq!(c.poll_timeout(), None, "no wait left");
    assert_eq!(c.poll_action(), Some(ConnectorAction::WaitWhileLinked));
    assert_eq!(c.failures(), 0);
    c.handle_timeout(Instant::from_millis(5000));
    assert_eq!(c.poll_action(), None, "the wait's late end is dropped");
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
    assert!(!c.handle_served_by("10.0.0.1".parse().expect("ip")));
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
