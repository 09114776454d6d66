//! Seed rounds: a control member dials the `cluster_addr` entries that neither it nor a
//! member linked to it announces.

use super::*;
use crate::url::parse_url_list;

fn seed_dials(m: &mut NodeMachine<u64>) -> Vec<Output<u64>> {
    drain(m)
        .into_iter()
        .filter(|o| matches!(o, Output::DialMember { .. }))
        .collect()
}

#[test]
fn a_seed_no_linked_member_announces_is_dialed_each_round_one_dial_at_a_time() {
    let mut s = settings("c1", Role::Control);
    s.cluster_addr =
        parse_url_list("nkcluster://c2:1972, nkcluster://c3:1972, nkcluster://c1:1972")
            .expect("seeds");
    let mut c1 = NodeMachine::new(s);
    c1.start(T0);
    // Linked to c2 only (the connector's first seed): c2 and c1 itself are known.
    c1.handle_link_up(
        T0,
        link(2, peer("c2", Role::Control, &["nkcluster://c2:1972"])),
        true,
    );
    drain(&mut c1);
    assert_eq!(c1.poll_timeout(), Some(at(10_000)), "the first round");
    c1.handle_timeout(at(10_000));
    let c3 = Output::DialMember {
        id: "seed:tcp:c3:1972".into(),
        // As written (no transport): the shell's discovery sees what to look up.
        urls: vec!["nkcluster://c3:1972".into()],
    };
    assert_eq!(seed_dials(&mut c1), vec![c3.clone()]);
    // The next round while that dial runs starts no second one.
    c1.handle_timeout(at(20_000));
    assert_eq!(seed_dials(&mut c1), vec![]);
    // The dial ended without a link: a seed is not a member, nothing else changes; the
    // next round dials it again.
    c1.handle_mesh_dial_done(at(20_500), "seed:tcp:c3:1972", true, false);
    assert_eq!(drain(&mut c1), vec![]);
    c1.handle_timeout(at(30_000));
    assert_eq!(seed_dials(&mut c1), vec![c3]);
    // Once c3 is linked, a round dials nothing.
    c1.handle_mesh_dial_done(at(30_100), "seed:tcp:c3:1972", true, true);
    c1.handle_link_up(
        at(30_100),
        link(3, peer("c3", Role::Control, &["nkcluster://c3:1972"])),
        true,
    );
    drain(&mut c1);
    c1.handle_timeout(at(40_000));
    assert_eq!(seed_dials(&mut c1), vec![]);
    // A stopping member dials nothing.
    c1.handle_shutdown(at(41_000));
    drain(&mut c1);
    c1.handle_timeout(at(60_000));
    assert_eq!(seed_dials(&mut c1), vec![]);
}

#[test]
fn workers_have_no_seed_rounds() {
    let mut s = settings("w1", Role::Worker);
    s.cluster_addr = parse_url_list("nkcluster://c2:1972").expect("seeds");
    let mut w = NodeMachine::new(s);
    w.start(T0);
    drain(&mut w);
    assert_eq!(w.poll_timeout(), None);
}
