//! The proxy machine's decisions: hand-offs, retries, redials, ring settle.
use super::*;

fn m(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn drain(p: &mut Proxies) -> Vec<Action> {
    core::iter::from_fn(|| p.poll_action()).collect()
}

/// Workers that `owner` owns in the ring over `members`.
fn owned_by(owner: &str, members: &[&str], n: usize) -> Vec<String> {
    let r = ring::place(64, &m(members)).expect("ring");
    (0..)
        .map(|i| format!("w{i}"))
        .filter(|w| r.owner_of(w) == Some(owner))
        .take(n)
        .collect()
}

#[test]
fn an_owned_worker_stays_and_a_foreign_one_is_handed_over() {
    let mut p = Proxies::new("c1", 64);
    p.set_members(&m(&["c1", "c2"]));
    let mine = owned_by("c1", &["c1", "c2"], 1).remove(0);
    let theirs = owned_by("c2", &["c1", "c2"], 2);
    p.handle_worker_up(&mine, true);
    assert_eq!(drain(&mut p), []);
    p.handle_worker_up(&theirs[0], true);
    p.handle_worker_up(&theirs[1], false);
    assert_eq!(
        drain(&mut p),
        [
            Action::Adopt {
                worker: theirs[0].clone(),
                owner: "c2".into()
            },
            Action::Redirect {
                worker: theirs[1].clone(),
                owner: "c2".into()
            },
        ]
    );
    assert_eq!(p.moving_to(&theirs[0]), Some("c2"));
    assert_eq!(p.moving_to(&mine), None);
    // Adoption succeeded: release. A repeated member set does not repeat anything.
    p.handle_adopted(&theirs[0], "c2", true);
    p.set_members(&m(&["c2", "c1"]));
    assert_eq!(
        drain(&mut p),
        [Action::Release {
            worker: theirs[0].clone(),
            owner: "c2".into()
        }]
    );
}

#[test]
fn a_failed_adoption_falls_back_to_a_redirect_and_stale_outcomes_are_ignored() {
    let mut p = Proxies::new("c1", 64);
    p.set_members(&m(&["c1", "c2"]));
    let w = owned_by("c2", &["c1", "c2"], 1).remove(0);
    p.handle_worker_up(&w, true);
    drain(&mut p);
    p.handle_adopted(&w, "c9", false); // not the hand-off in progress
    assert_eq!(drain(&mut p), []);
    p.handle_adopted(&w, "c2", false);
    assert_eq!(
        drain(&mut p),
        [Action::Redirect {
            worker: w.clone(),
            owner: "c2".into()
        }]
    );
    p.handle_worker_down(Instant::ZERO, &w, Vec::new());
    p.handle_adopted(&w, "c2", true);
    assert_eq!(drain(&mut p), []);
}

#[test]
fn a_silent_owner_is_retried_after_the_delay_unless_the_ring_moves_on() {
    let mut p = Proxies::new("c1", 64);
    p.set_retry_after(Duration::from_millis(500));
    p.set_members(&m(&["c1", "c2"]));
    let w = owned_by("c2", &["c1", "c2"], 1).remove(0);
    p.handle_worker_up(&w, false);
    drain(&mut p);
    p.handle_owner_silent(Instant::from_millis(100), &w, "c9"); // stale
    assert_eq!(p.poll_timeout(), None);
    p.handle_owner_silent(Instant::from_millis(100), &w, "c2");
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(600)));
    p.handle_timeout(Instant::from_millis(599));
    assert_eq!(drain(&mut p), []);
    p.handle_timeout(Instant::from_millis(600));
    assert_eq!(
        drain(&mut p),
        [Action::Redirect {
            worker: w.clone(),
            owner: "c2".into()
        }]
    );
    assert_eq!(p.poll_timeout(), None);
    // Silent again, then c2 leaves the ring: we own it again, no retry.
    p.handle_owner_silent(Instant::from_millis(700), &w, "c2");
    p.set_members(&m(&["c1"]));
    assert_eq!(p.poll_timeout(), None);
    p.handle_timeout(Instant::from_millis(5_000));
    assert_eq!(drain(&mut p), []);
}

#[test]
fn a_lost_listening_worker_is_redialed_at_once_then_periodically_until_back() {
    let mut p = Proxies::new("c1", 64);
    p.set_retry_after(Duration::from_millis(500));
    p.set_redial_for(Duration::from_secs(2));
    p.set_members(&m(&["c1"]));
    let urls = vec!["nkcluster://10.0.0.9:1972;transport=tcp".to_owned()];
    p.handle_worker_up("w1", true);
    p.handle_worker_down(Instant::ZERO, "w1", urls.clone());
    let redial = Action::Redial {
        worker: "w1".into(),
        urls: urls.clone(),
    };
    assert_eq!(drain(&mut p), std::slice::from_ref(&redial));
    assert!(p.is_reconnecting("w1"));
    assert!(p.reconnecting().contains("w1"));
    p.handle_redial_failed(Instant::from_millis(100), "w1");
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(600)));
    p.handle_timeout(Instant::from_millis(600));
    assert_eq!(drain(&mut p), [redial]);
    // Back (it reconnected, or our dial worked): no more redials.
    p.handle_worker_up("w1", true);
    assert!(!p.is_reconnecting("w1"));
    assert!(!p.reconnecting().contains("w1"));
    p.handle_redial_failed(Instant::from_millis(700), "w1");
    assert_eq!(p.poll_timeout(), None);
    // Lost for longer than redial_for: given up.
    p.handle_worker_down(Instant::from_millis(1_000), "w1", urls.clone());
    drain(&mut p);
    p.handle_redial_failed(Instant::from_millis(3_000), "w1");
    assert!(!p.is_reconnecting("w1"));
    assert!(!p.reconnecting().contains("w1"));
    // A worker that does not listen, or that another member owns, is not redialed.
    p.handle_worker_down(Instant::ZERO, "w2", Vec::new());
    assert_eq!(drain(&mut p), []);
    p.set_members(&m(&["c1", "c2"]));
    let theirs = owned_by("c2", &["c1", "c2"], 1).remove(0);
    p.handle_worker_down(Instant::ZERO, &theirs, urls.clone());
    assert_eq!(drain(&mut p), []);
    // A lost worker whose partition moves is left to its new owner.
    let mine = owned_by("c1", &["c1", "c2"], 1).remove(0);
    p.handle_worker_down(Instant::ZERO, &mine, urls);
    drain(&mut p);
    assert!(p.is_reconnecting(&mine));
    assert!(p.reconnecting().contains(&mine));
    p.set_members(&m(&["c2"]));
    assert!(!p.is_reconnecting(&mine));
    assert!(!p.reconnecting().contains(&mine));
}

#[test]
fn redials_back_off_doubling_up_to_the_maximum_and_a_removed_worker_is_left_alone() {
    let mut p = Proxies::new("c1", 64);
    p.set_retry_after(Duration::from_millis(500));
    p.set_redial_max(Duration::from_millis(3_000));
    p.set_members(&m(&["c1"]));
    let urls = vec!["nkcluster://10.0.0.9:1972;transport=tcp".to_owned()];
    p.handle_worker_up("w1", true);
    p.handle_worker_down(Instant::ZERO, "w1", urls.clone());
    let redial = Action::Redial {
        worker: "w1".into(),
        urls,
    };
    // At once, then 0.5 s, 1 s, 2 s, 3 s, 3 s after each failure.
    assert_eq!(drain(&mut p), std::slice::from_ref(&redial));
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..5 {
        p.handle_redial_failed(Instant::from_millis(now), "w1");
        let due = p.poll_timeout().expect("a redial is due");
        waits.push(due.as_nanos() / 1_000_000 - now);
        now = due.as_nanos() / 1_000_000;
        p.handle_timeout(due);
        assert_eq!(drain(&mut p), std::slice::from_ref(&redial));
    }
    assert_eq!(waits, [500, 1_000, 2_000, 3_000, 3_000]);
    // Back, then lost again: the backoff starts over.
    p.handle_worker_up("w1", true);
    p.handle_worker_down(Instant::from_millis(now), "w1", redial_urls(&redial));
    drain(&mut p);
    p.handle_redial_failed(Instant::from_millis(now), "w1");
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(now + 500)));
    // Removed by an operator: no more redials, requests no longer wait for it.
    assert!(p.forget("w1"));
    assert!(!p.forget("w1"));
    assert!(!p.is_reconnecting("w1") && !p.reconnecting().contains("w1"));
    assert_eq!(p.poll_timeout(), None);
}

fn redial_urls(a: &Action) -> Vec<String> {
    match a {
        Action::Redial { urls, .. } => urls.clone(),
        _ => Vec::new(),
    }
}

#[test]
fn retries_due_together_come_out_redials_first_each_by_worker_and_leavers_drop_theirs() {
    let mut p = Proxies::new("c1", 64);
    p.set_retry_after(Duration::from_millis(500));
    p.set_members(&m(&["c1", "c2"]));
    let theirs = owned_by("c2", &["c1", "c2"], 3);
    let mine = owned_by("c1", &["c1", "c2"], 2);
    let urls = vec!["nkcluster://10.0.0.9:1972;transport=tcp".to_owned()];
    for w in &theirs {
        p.handle_worker_up(w, false);
    }
    for w in &mine {
        p.handle_worker_up(w, true);
        p.handle_worker_down(Instant::ZERO, w, urls.clone());
    }
    drain(&mut p);
    // Silent owner and failed redials at different instants, in reverse id order.
    p.handle_owner_silent(Instant::from_millis(30), &theirs[2], "c2");
    p.handle_owner_silent(Instant::from_millis(20), &theirs[1], "c2");
    p.handle_owner_silent(Instant::from_millis(10), &theirs[0], "c2");
    p.handle_redial_failed(Instant::from_millis(40), &mine[1]);
    p.handle_redial_failed(Instant::from_millis(50), &mine[0]);
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(510)));
    // A silent owner again: its deadline moves (the old one is gone).
    p.handle_owner_silent(Instant::from_millis(15), &theirs[0], "c2");
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(515)));
    // theirs[1] leaves: its deadline goes with it.
    p.handle_worker_down(Instant::from_millis(16), &theirs[1], Vec::new());
    p.handle_timeout(Instant::from_millis(514));
    assert_eq!(drain(&mut p), []);
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(515)));
    p.handle_timeout(Instant::from_millis(550));
    let mut redials = mine.clone();
    redials.sort();
    let mut redirects = [theirs[0].clone(), theirs[2].clone()];
    redirects.sort();
    let expected: Vec<Action> = redials
        .iter()
        .map(|w| Action::Redial {
            worker: w.clone(),
            urls: urls.clone(),
        })
        .chain(redirects.iter().map(|w| Action::Redirect {
            worker: w.clone(),
            owner: "c2".into(),
        }))
        .collect();
    assert_eq!(drain(&mut p), expected);
    assert_eq!(p.poll_timeout(), None);
    // A redial due again, then the worker is back: nothing left to do.
    p.handle_redial_failed(Instant::from_millis(600), &mine[0]);
    assert_eq!(p.poll_timeout(), Some(Instant::from_millis(1_600)));
    p.handle_worker_up(&mine[0], true);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn owning_again_cancels_a_hand_off_and_a_new_owner_restarts_it() {
    let mut p = Proxies::new("c1", 64);
    p.set_members(&m(&["c1"]));
    // A worker c2 would own next to c1, and c3 would own among c1, c3.
    let r12 = ring::place(64, &m(&["c1", "c2"])).expect("ring");
    let r123 = ring::place(64, &m(&["c1", "c2", "c3"])).expect("ring");
    let w = (0..)
        .map(|i| format!("w{i}"))
        .find(|w| r12.owner_of(w) == Some("c2") && r123.owner_of(w) == Some("c3"))
        .expect("such a worker");
    p.handle_worker_up(&w, false);
    assert_eq!(drain(&mut p), []);
    p.set_members(&m(&["c1", "c2"]));
    assert_eq!(
        drain(&mut p),
        [Action::Redirect {
            worker: w.clone(),
            owner: "c2".into()
        }]
    );
    p.set_members(&m(&["c1", "c2", "c3"]));
    assert_eq!(
        drain(&mut p),
        [Action::Redirect {
            worker: w.clone(),
            owner: "c3".into()
        }]
    );
    p.set_members(&m(&["c1"]));
    assert_eq!(drain(&mut p), []);
    assert_eq!(p.moving_to(&w), None);
    assert_eq!(p.owner_of(&w), "c1");
}

#[test]
fn with_agreeing_views_every_worker_has_exactly_one_owner_that_keeps_it() {
    let members = m(&["c1", "c2", "c3"]);
    let mut nodes: Vec<Proxies> = members.iter().map(|c| Proxies::new(c, 64)).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.set_members(&members);
        // Every worker linked everywhere (the worst case after a heal).
        for w in 0..30 {
            n.handle_worker_up(&format!("w{w}"), i % 2 == 0);
        }
    }
    for w in 0..30 {
        let w = format!("w{w}");
        let keepers = nodes.iter().filter(|n| n.moving_to(&w).is_none()).count();
        assert_eq!(keepers, 1, "{w}");
    }
}

#[test]
fn with_a_ring_settle_member_changes_are_placed_together_once_it_has_passed() {
    let t0 = Instant::ZERO;
    let ms = Duration::from_millis;
    let mut p = Proxies::new("c1", 64);
    p.set_ring_settle(ms(200));
    // The first member set is placed at once: there is no ring to keep.
    p.members_changed(t0, &m(&["c1"]));
    assert_eq!(p.placed_members(), ["c1"]);
    assert_eq!(p.poll_timeout(), None);
    let theirs = owned_by("c3", &["c1", "c2", "c3"], 1).remove(0);
    p.handle_worker_up(&theirs, false);
    assert_eq!(drain(&mut p), []);
    // Two changes within the delay: nothing moves until 200 ms after the first.
    p.members_changed(t0 + ms(10), &m(&["c1", "c2"]));
    p.members_changed(t0 + ms(100), &m(&["c1", "c2", "c3"]));
    assert_eq!(p.placed_members(), ["c1"]);
    assert_eq!(p.owner_of(&theirs), "c1");
    assert_eq!(p.poll_timeout(), Some(t0 + ms(210)));
    p.handle_timeout(t0 + ms(209));
    assert_eq!(drain(&mut p), []);
    p.handle_timeout(t0 + ms(210));
    assert_eq!(p.placed_members(), ["c1", "c2", "c3"]);
    assert_eq!(
        drain(&mut p),
        [Action::Redirect {
            worker: theirs.clone(),
            owner: "c3".into()
        }]
    );
    assert_eq!(p.poll_timeout(), None);
}
