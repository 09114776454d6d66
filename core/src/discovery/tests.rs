//! Exact-output tests of the discovery decisions.

use super::*;
use crate::url::parse_url;

fn naptr(order: u16, preference: u16, flags: &str, services: &str, repl: &str) -> NaptrRecord {
    NaptrRecord {
        order,
        preference,
        flags: flags.into(),
        services: services.into(),
        replacement: repl.into(),
    }
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port,
        target: target.into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn labels(r: Result<Vec<Candidate>, DiscoveryError>) -> Vec<String> {
    r.expect("candidates")
        .iter()
        .map(Candidate::label)
        .collect()
}

fn start(url: &str) -> Resolution {
    Resolution::new(parse_url(url).expect("url"), 7)
}

#[test]
fn srv_names_follow_the_original() {
    let names: Vec<String> = Transport::ALL
        .iter()
        .map(|t| srv_name(*t, "c.test"))
        .collect();
    assert_eq!(
        names,
        [
            "_nk._tcp.c.test",
            "_nks._tcp.c.test",
            "_nk._ws.c.test",
            "_nks._ws.c.test"
        ]
    );
}

#[test]
fn naptr_answers_go_by_order_then_preference_and_only_known_s_services() {
    let records = [
        naptr(20, 10, "S", "NK+D2T", "_nk._tcp.c.test."),
        naptr(10, 50, "s", "nks+d2t", "_nks._tcp.c.test."),
        naptr(10, 20, "S", "NKS+D2W", "_nks._ws.c.test"),
        naptr(5, 1, "A", "NK+D2T", "a.c.test."),
        naptr(5, 1, "S", "SIP+D2T", "_sip._tcp.c.test."),
        naptr(5, 1, "S", "NK+D2W", "."),
        naptr(30, 1, "S", "NK+D2W", "_nk._ws.c.test."),
        naptr(31, 1, "S", "NK+D2W", "_nk._ws.c.test."),
    ];
    assert_eq!(
        naptr_targets(&records),
        vec![
            ("_nks._ws.c.test".to_owned(), Transport::Wss),
            ("_nks._tcp.c.test".to_owned(), Transport::Tls),
            ("_nk._tcp.c.test".to_owned(), Transport::Tcp),
            ("_nk._ws.c.test".to_owned(), Transport::Ws),
        ]
    );
}

#[test]
fn srv_records_go_by_priority_then_weight_with_the_injected_randomness() {
    let records = [
        srv(20, 0, 3, "late.test."),
        srv(10, 10, 1, "light.test."),
        srv(10, 90, 2, "heavy.test."),
        srv(10, 0, 9, "."),
    ];
    let order = |seed: u64| -> Vec<u16> {
        order_srv(&records, &mut SplitMix::new(seed))
            .iter()
            .map(|r| r.port)
            .collect()
    };
    // Priority 10 before 20, the "no service" target dropped.
    for seed in 0..50 {
        let o = order(seed);
        assert_eq!(o.len(), 3);
        assert_eq!(o[2], 3, "seed {seed}");
    }
    // The weight decides which goes first: the heavy one most of the time.
    let heavy_first = (0..1000).filter(|s| order(*s)[0] == 2).count();
    assert_eq!(heavy_first, 905);
    assert_eq!(order(0), [2, 1, 3]);
    // All weights zero: the answer's order.
    let zeros = [srv(1, 0, 1, "a."), srv(1, 0, 2, "b.")];
    let o: Vec<u16> = order_srv(&zeros, &mut SplitMix::new(3))
        .iter()
        .map(|r| r.port)
        .collect();
    assert_eq!(o, [1, 2]);
    // A zero weight goes before the weighted ones in the running list: it is chosen
    // only when the random number is 0.
    let mixed = [srv(1, 5, 1, "a."), srv(1, 0, 2, "b.")];
    let zero_first = (0..600)
        .filter(|s| order_srv(&mixed, &mut SplitMix::new(*s))[0].port == 2)
        .count();
    assert_eq!(zero_first, 91);
}

#[test]
fn shuffle_is_a_permutation_fixed_by_the_seed() {
    let mut a: Vec<u32> = (0..6).collect();
    shuffle(&mut a, 1);
    assert_eq!(a, [0, 1, 3, 2, 4, 5]);
    let mut b: Vec<u32> = (0..6).collect();
    shuffle(&mut b, 1);
    assert_eq!(a, b);
    let mut c: Vec<u32> = (0..6).collect();
    shuffle(&mut c, 2);
    assert_ne!(a, c);
    c.sort_unstable();
    assert_eq!(c, [0, 1, 2, 3, 4, 5]);
    let mut empty: Vec<u32> = Vec::new();
    shuffle(&mut empty, 1);
    assert!(empty.is_empty());
}

#[test]
fn an_ip_literal_needs_no_lookup() {
    let r = start("nkcluster://10.0.0.1:5;transport=tls");
    assert_eq!(r.next_query(), None);
    let found = r.finish().expect("found");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].label(), "tls:10.0.0.1:5");
    assert_eq!(found[0].addr, Some("10.0.0.1:5".parse().expect("addr")));
}

#[test]
fn a_name_with_a_port_resolves_a_and_aaaa_only() {
    let mut r = start("nkcluster://ctl.test:7000;transport=ws;password=p");
    assert_eq!(r.next_query(), Some(Query::Ip("ctl.test".into())));
    r.handle_answer(Answer::Ip(vec![ip("10.0.0.1"), ip("::1")]));
    assert_eq!(r.next_query(), None);
    let found = r.finish().expect("found");
    assert_eq!(
        found.iter().map(Candidate::label).collect::<Vec<_>>(),
        [
            "ws:ctl.test:7000@10.0.0.1:7000",
            "ws:ctl.test:7000@[::1]:7000"
        ]
    );
    // The entry's parameters stay; the host is the name (TLS checks it).
    assert_eq!(found[0].url.password.as_deref(), Some("p"));
    assert_eq!(found[0].url.host, Host::Name("ctl.test".into()));
}

#[test]
fn a_name_that_does_not_resolve_is_an_error_naming_the_entry() {
    let mut r = start("nkcluster://gone.test:7000");
    r.handle_answer(Answer::NotFound);
    assert_eq!(
        r.finish(),
        Err(DiscoveryError::NotFound {
            entry: "gone.test:7000".into(),
            name: "gone.test".into()
        })
    );
    let mut r = start("nkcluster://slow.test:7000");
    r.handle_answer(Answer::Failed("timed out".into()));
    let e = r.finish().expect_err("failed");
    assert_eq!(e.code(), "dns_failed");
    assert_eq!(
        e.to_string(),
        "dns_failed: slow.test:7000: A/AAAA slow.test: timed out"
    );
    assert_eq!(
        DiscoveryError::NotFound {
            entry: "e".into(),
            name: "n".into()
        }
        .to_string(),
        "unresolved: e: no address for n"
    );
}

#[test]
fn a_transport_without_a_port_resolves_its_srv_record() {
    let mut r = start("nkcluster://c.test;transport=wss");
    assert_eq!(r.next_query(), Some(Query::Srv("_nks._ws.c.test".into())));
    r.handle_answer(Answer::Srv(vec![
        srv(2, 0, 2002, "b.c.test."),
        srv(1, 0, 2001, "a.c.test."),
    ]));
    assert_eq!(r.next_query(), Some(Query::Ip("a.c.test".into())));
    r.handle_answer(Answer::Ip(vec![ip("10.0.0.1")]));
    assert_eq!(r.next_query(), Some(Query::Ip("b.c.test".into())));
    r.handle_answer(Answer::NotFound);
    assert_eq!(r.next_query(), None);
    assert_eq!(labels(r.finish()), ["wss:a.c.test:2001@10.0.0.1:2001"]);
    // No SRV record: the host itself, at the transport's port.
    let mut r = start("nkcluster://c.test;transport=tls");
    assert_eq!(r.next_query(), Some(Query::Srv("_nks._tcp.c.test".into())));
    r.handle_answer(Answer::NotFound);
    assert_eq!(r.next_query(), Some(Query::Ip("c.test".into())));
    r.handle_answer(Answer::Ip(vec![ip("10.0.0.9")]));
    assert_eq!(labels(r.finish()), ["tls:c.test:1973@10.0.0.9:1973"]);
}

#[test]
fn a_bare_name_goes_naptr_then_srv_then_addresses() {
    let mut r = start("nkcluster://cluster.test");
    assert_eq!(r.next_query(), Some(Query::Naptr("cluster.test".into())));
    r.handle_answer(Answer::Naptr(vec![
        naptr(20, 10, "S", "NK+D2T", "_nk._tcp.cluster.test."),
        naptr(10, 10, "S", "NKS+D2T", "_nks._tcp.cluster.test."),
    ]));
    assert_eq!(
        r.next_query(),
        Some(Query::Srv("_nks._tcp.cluster.test".into()))
    );
    r.handle_answer(Answer::Srv(vec![srv(1, 0, 1973, "ctl1.cluster.test.")]));
    assert_eq!(
        r.next_query(),
        Some(Query::Srv("_nk._tcp.cluster.test".into()))
    );
    // A failed lookup does not hide what the others found.
    r.handle_answer(Answer::Failed("servfail".into()));
    assert_eq!(r.next_query(), Some(Query::Ip("ctl1.cluster.test".into())));
    r.handle_answer(Answer::Ip(vec![ip("127.0.0.1")]));
    assert_eq!(r.next_query(), None);
    assert_eq!(
        labels(r.finish()),
        ["tls:ctl1.cluster.test:1973@127.0.0.1:1973"]
    );
}

#[test]
fn a_bare_name_without_naptr_records_is_dialed_at_the_default_port() {
    let mut r = start("nkcluster://plain.test");
    r.handle_answer(Answer::NotFound);
    assert_eq!(r.next_query(), Some(Query::Ip("plain.test".into())));
    r.handle_answer(Answer::Ip(vec![ip("10.0.0.3")]));
    assert_eq!(labels(r.finish()), ["tcp:plain.test:1972@10.0.0.3:1972"]);
    // An answer of the wrong kind counts as none.
    let mut r = start("nkcluster://plain.test");
    r.handle_answer(Answer::Ip(vec![ip("10.0.0.3")]));
    assert_eq!(r.next_query(), Some(Query::Ip("plain.test".into())));
    r.handle_answer(Answer::NotFound);
    assert_eq!(r.next_query(), None);
    r.handle_answer(Answer::NotFound);
    assert!(r.finish().is_err());
}

#[test]
fn candidates_compare_by_address_when_resolved() {
    let url = |s: &str| parse_url(s).expect("url");
    let a = Candidate {
        url: url("nkcluster://a.test:1"),
        addr: Some("10.0.0.1:1".parse().expect("addr")),
    };
    let b = Candidate {
        url: url("nkcluster://b.test:1"),
        addr: Some("10.0.0.1:1".parse().expect("addr")),
    };
    assert!(a.same_endpoint(&b));
    let c = Candidate::as_written(url("nkcluster://a.test:1"));
    assert_eq!(c.addr, None);
    assert_eq!(c.label(), "tcp:a.test:1");
    assert!(!a.same_endpoint(&Candidate::as_written(url("nkcluster://b.test:1"))));
    assert!(c.same_endpoint(&a));
}
