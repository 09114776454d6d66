//! Membership's decisions: links, views, refutations, removal, redials.

use super::*;

fn info(id: &str, generation: u64, incarnation: u64, status: Status) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        generation,
        incarnation,
        status,
        listen: vec![format!("nkcluster://{id}:1972")],
    }
}

fn events(m: &mut Membership) -> Vec<MemberEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn cfg() -> MembershipConfig {
    MembershipConfig {
        remove_after: Duration::from_secs(10),
        ..Default::default()
    }
}

#[test]
fn links_make_members_alive_and_gossip_spreads_them() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    let t = Instant::ZERO;
    a.handle_link_up(t, info("b", 1, 0, Status::Alive));
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    // b tells a about c, whom a has no link to yet: a should dial it.
    a.handle_view(
        t,
        &[
            info("b", 1, 0, Status::Alive),
            info("c", 1, 0, Status::Alive),
        ],
    );
    assert_eq!(events(&mut a), [MemberEvent::Up("c".into())]);
    assert_eq!(a.live(), ["a", "b", "c"]);
    assert_eq!(
        a.to_dial()
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    let g = a.poll_gossip(Instant::ZERO).expect("view changed");
    assert_eq!(
        g.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(a.poll_gossip(Instant::ZERO), None);
}

#[test]
fn a_view_that_brings_no_news_is_not_gossiped_back() {
    // The shell feeds every received view's sender record through handle_link_up:
    // gossiping after each one would echo between members forever.
    let mut a = Membership::new("a", 1, vec![], cfg());
    let t = Instant::ZERO;
    a.handle_link_up(t, info("b", 1, 0, Status::Alive));
    assert!(
        a.poll_gossip(Instant::ZERO).is_some(),
        "a new member is news"
    );
    let view = [info("b", 1, 0, Status::Alive), a.me().clone()];
    for _ in 0..3 {
        a.handle_link_up(t, view[0].clone());
        a.handle_view(t, &view);
        assert_eq!(a.poll_gossip(Instant::ZERO), None);
    }
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    // A refutation (higher incarnation) is news again, and the gossip carries the
    // news only: our record, then b's (not c's, which did not change).
    a.handle_view(t, &[info("c", 1, 0, Status::Alive)]);
    let _ = a.poll_gossip(Instant::ZERO);
    a.handle_link_up(t, info("b", 1, 1, Status::Alive));
    let g = a.poll_gossip(Instant::ZERO).expect("news");
    assert_eq!(
        g.iter()
            .map(|i| (i.id.as_str(), i.incarnation))
            .collect::<Vec<_>>(),
        [("a", 0), ("b", 1)]
    );
    assert_eq!(a.view().len(), 3, "the whole view still has c");
    // Views from b that bring nothing new do not put b in the next gossip: news about d
    // carries our record and d's only (it carried every sender heard from before, so a
    // crash at 128 members sent 128-record views to everybody).
    for _ in 0..3 {
        a.handle_link_up(t, info("b", 1, 1, Status::Alive));
    }
    assert_eq!(a.poll_gossip(Instant::ZERO), None);
    a.handle_view(t, &[info("d", 1, 0, Status::Alive)]);
    let g = a.poll_gossip(Instant::ZERO).expect("news");
    assert_eq!(
        g.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["a", "d"]
    );
}

#[test]
fn a_dead_link_marks_down_then_removes_after_the_delay() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
    let _ = events(&mut a);
    a.handle_link_down(Instant::from_millis(1000), "b");
    assert_eq!(events(&mut a), [MemberEvent::Down("b".into())]);
    assert_eq!(a.live(), ["a"]);
    // A down member's record is still in the view, as is ours.
    assert_eq!(a.record("b"), Some(&info("b", 1, 0, Status::Down)));
    assert_eq!(a.record("a"), Some(a.me()));
    assert_eq!(a.record("z"), None);
    // Still dialed: after a partition heals only a new link brings it back.
    assert_eq!(a.to_dial().len(), 1);
    // Redial rounds (every 2 s) come before the removal at 11 s.
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(3_000)));
    a.handle_timeout(Instant::from_millis(10_999));
    assert_eq!(events(&mut a), []);
    a.handle_timeout(Instant::from_millis(11_000));
    assert_eq!(events(&mut a), [MemberEvent::Removed("b".into())]);
    assert_eq!(a.record("b"), None);
    assert!(a.view().iter().all(|r| r.id != "b"));
    // Removed: no more redials; the tombstone expires after another period.
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(12_999)));
    a.handle_timeout(Instant::from_millis(12_999));
    assert_eq!(a.poll_dial(), []);
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(21_000)));
    a.handle_timeout(Instant::from_millis(21_000));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn an_unreachable_member_known_by_gossip_goes_down() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_view(Instant::ZERO, &[info("c", 1, 0, Status::Alive)]);
    let _ = events(&mut a);
    a.handle_dial_failed(Instant::from_millis(5), "c");
    assert_eq!(events(&mut a), [MemberEvent::Down("c".into())]);
    assert_eq!(a.live(), ["a"]);
    // A linked member is not marked down by a failed extra dial.
    a.handle_link_up(Instant::from_millis(6), info("b", 1, 0, Status::Alive));
    let _ = events(&mut a);
    a.handle_dial_failed(Instant::from_millis(7), "b");
    assert_eq!(events(&mut a), []);
}

#[test]
fn new_members_are_dialed_at_once_and_unlinked_ones_every_round() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
    a.handle_view(Instant::ZERO, &[info("c", 1, 0, Status::Alive)]);
    // c is news without a link: dial it now; b is linked.
    let ids = |v: Vec<MemberInfo>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(a.poll_dial()), ["c"]);
    assert_eq!(a.poll_dial(), []);
    // The dial fails; the next round is 2 s after the member was learned.
    a.handle_dial_failed(Instant::from_millis(100), "c");
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(2_000)));
    a.handle_timeout(Instant::from_millis(1_999));
    assert_eq!(a.poll_dial(), []);
    a.handle_timeout(Instant::from_millis(2_000));
    assert_eq!(ids(a.poll_dial()), ["c"]);
    assert_eq!(a.poll_timeout(), Some(Instant::from_millis(4_000)));
    // Once linked, no more rounds are needed.
    a.handle_link_up(Instant::from_millis(2_100), info("c", 1, 0, Status::Alive));
    a.handle_timeout(Instant::from_millis(4_000));
    assert_eq!(a.poll_dial(), []);
    assert_eq!(a.poll_timeout(), None, "nothing down, nothing to redial");
}

#[test]
fn explicit_leave_is_adopted_at_once() {
    let mut b = Membership::new("b", 1, vec![], cfg());
    b.leave();
    let g = b.poll_gossip(Instant::ZERO).expect("leave is gossiped");
    assert_eq!(g[0].status, Status::Left);
    assert_eq!(g[0].incarnation, 1);
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
    let _ = events(&mut a);
    a.handle_view(Instant::from_millis(5), &g);
    assert_eq!(events(&mut a), [MemberEvent::Left("b".into())]);
    assert_eq!(a.live(), ["a"]);
    // Stale gossip saying b is alive (older incarnation) does not resurrect it.
    a.handle_view(Instant::from_millis(6), &[info("b", 1, 0, Status::Alive)]);
    assert_eq!(events(&mut a), []);
    assert_eq!(a.live(), ["a"]);
}

#[test]
fn a_member_refutes_a_false_down() {
    let mut b = Membership::new("b", 7, vec![], cfg());
    b.handle_view(Instant::ZERO, &[info("b", 7, 0, Status::Down)]);
    let g = b.poll_gossip(Instant::ZERO).expect("refutation");
    assert_eq!((g[0].status, g[0].incarnation), (Status::Alive, 1));
    // Peers that had b down take it back.
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_view(Instant::ZERO, &[info("b", 7, 0, Status::Down)]);
    assert_eq!(a.live(), ["a"]);
    a.handle_view(Instant::ZERO, &g);
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    assert_eq!(a.live(), ["a", "b"]);
}

#[test]
fn hearsay_does_not_override_a_live_link() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 1, 0, Status::Alive));
    let _ = events(&mut a);
    a.handle_view(Instant::ZERO, &[info("b", 1, 0, Status::Down)]);
    assert_eq!(events(&mut a), []);
    assert_eq!(a.live(), ["a", "b"]);
}

#[test]
fn a_restart_replaces_the_old_run() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 1, 5, Status::Alive));
    a.handle_link_down(Instant::from_millis(1), "b");
    let _ = events(&mut a);
    a.handle_link_up(Instant::from_millis(2), info("b", 2, 0, Status::Alive));
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    // Gossip about the old run is now stale.
    a.handle_view(Instant::from_millis(3), &[info("b", 1, 9, Status::Down)]);
    assert_eq!(a.live(), ["a", "b"]);
}

proptest::proptest! {
    #[test]
    fn merging_is_order_independent(
        reports in proptest::collection::vec(
            (0usize..3, 1u64..4, 0u64..4, 0u8..3), 0..12),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let ids = ["b", "c", "d"];
        let reports: Vec<MemberInfo> = reports
            .into_iter()
            .map(|(i, g, inc, st)| {
                let status = [Status::Alive, Status::Down, Status::Left][st as usize];
                info(ids[i], g, inc, status)
            })
            .collect();
        let mut shuffled = reports.clone();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut a = Membership::new("a", 1, vec![], cfg());
        let mut b = Membership::new("a", 1, vec![], cfg());
        for r in &reports { a.handle_view(Instant::ZERO, std::slice::from_ref(r)); }
        for r in &shuffled { b.handle_view(Instant::ZERO, std::slice::from_ref(r)); }
        proptest::prop_assert_eq!(a.view(), b.view());
        proptest::prop_assert_eq!(a.live(), b.live());
    }
}

#[test]
fn views_converge_whatever_the_delivery_order() {
    // Every permutation of three conflicting reports about b ends in the same record.
    let reports = [
        info("b", 1, 0, Status::Alive),
        info("b", 1, 0, Status::Down),
        info("b", 1, 1, Status::Alive),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let mut finals = Vec::new();
    for o in orders {
        let mut a = Membership::new("a", 1, vec![], cfg());
        for i in o {
            a.handle_view(Instant::ZERO, std::slice::from_ref(&reports[i]));
        }
        finals.push(a.view());
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    assert_eq!(finals[0][1].incarnation, 1);
    assert_eq!(finals[0][1].status, Status::Alive);
}

#[test]
fn a_run_started_with_its_clock_set_back_takes_the_generation_above_the_old_one() {
    // b's earlier run started at wall ms 9,000 and is known down; b restarts with its
    // clock set back, at "8,000".
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 9_000, 2, Status::Alive));
    a.handle_link_down(Instant::from_millis(10), "b");
    let _ = (events(&mut a), a.poll_gossip(Instant::ZERO));
    let mut b = Membership::new("b", 8_000, info("b", 0, 0, Status::Alive).listen, cfg());
    // The new run's link does not outrank the old run's record at a.
    a.handle_link_up(Instant::from_millis(20), info("b", 8_000, 0, Status::Alive));
    assert_eq!(a.live(), ["a"]);
    // a's view (sent on the new link) tells b of its old run: b outranks it.
    b.handle_view(Instant::from_millis(20), &a.view());
    assert_eq!(b.me(), &info("b", 9_001, 0, Status::Alive));
    let g = b.poll_gossip(Instant::ZERO).expect("news");
    assert_eq!(g[0], info("b", 9_001, 0, Status::Alive));
    a.handle_link_up(Instant::from_millis(21), g[0].clone());
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    assert_eq!(a.live(), ["a", "b"]);
}

#[test]
fn a_live_link_brings_a_removed_member_back_whatever_its_generation() {
    let mut a = Membership::new("a", 1, vec![], cfg());
    a.handle_link_up(Instant::ZERO, info("b", 9_000, 0, Status::Alive));
    let _ = events(&mut a);
    a.handle_link_down(Instant::from_millis(1_000), "b");
    a.handle_timeout(Instant::from_millis(11_000));
    assert_eq!(
        events(&mut a),
        [
            MemberEvent::Down("b".into()),
            MemberEvent::Removed("b".into())
        ]
    );
    // Stale gossip of the removed run does not bring it back; a link from a run with a
    // lower generation (its clock set back) does.
    a.handle_view(
        Instant::from_millis(12_000),
        &[info("b", 9_000, 0, Status::Alive)],
    );
    assert_eq!(a.live(), ["a"]);
    a.handle_link_up(
        Instant::from_millis(12_000),
        info("b", 8_000, 0, Status::Alive),
    );
    assert_eq!(events(&mut a), [MemberEvent::Up("b".into())]);
    assert_eq!(a.live(), ["a", "b"]);
}

#[test]
fn with_gossip_every_news_within_the_interval_goes_out_together() {
    let ms = Duration::from_millis;
    let t0 = Instant::ZERO;
    let mut a = Membership::new(
        "a",
        1,
        vec![],
        MembershipConfig {
            gossip_every: ms(100),
            ..cfg()
        },
    );
    let ids = |g: Vec<MemberInfo>| g.into_iter().map(|i| i.id).collect::<Vec<_>>();
    // After a quiet time, news goes at once.
    a.handle_link_up(t0, info("b", 1, 0, Status::Alive));
    assert_eq!(
        a.poll_gossip(t0).map(ids),
        Some(vec!["a".into(), "b".into()])
    );
    // News within the interval waits for it, and goes together.
    a.handle_view(t0 + ms(10), &[info("c", 1, 0, Status::Alive)]);
    assert_eq!(a.poll_gossip(t0 + ms(10)), None);
    a.handle_view(t0 + ms(50), &[info("d", 1, 0, Status::Alive)]);
    assert_eq!(a.poll_gossip(t0 + ms(50)), None);
    assert_eq!(a.poll_timeout(), Some(t0 + ms(100)));
    assert_eq!(
        a.poll_gossip(t0 + ms(100)).map(ids),
        Some(vec!["a".into(), "c".into(), "d".into()])
    );
    // Nothing new: no gossip, and no timer for it.
    assert_eq!(a.poll_gossip(t0 + ms(300)), None);
    assert_eq!(a.poll_timeout(), Some(t0 + ms(10) + cfg().redial_every));
    a.handle_link_down(t0 + ms(500), "b");
    assert_eq!(
        a.poll_gossip(t0 + ms(500)).map(ids),
        Some(vec!["a".into(), "b".into()])
    );
}
