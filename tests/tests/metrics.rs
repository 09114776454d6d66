//! `/metrics` (issue 14): what a node counts and holds, scraped over HTTP with a raw
//! socket and parsed from the Prometheus text. In process (real sockets, a relay to pause
//! and cut the link) for exact request outcomes; the quick start as a real process for
//! what an operator sees.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use nkcluster::node::{Handlers, NodeEvent};
use nkcluster_core::RequestError;
use nkcluster_core::telemetry::ReqSide;
use nkcluster_core::url::{Transport, parse_url_list};
use nkcluster_tests::inproc::{Relay, TestNode, config, port_of, start, start_with, wait_event};
use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{nkcluster_bin, quick_start, run_with_deadline};

/// One scrape: series (name and labels, as written) to value.
type Scrape = BTreeMap<String, f64>;

/// GETs `/metrics` at `addr` over a plain socket and parses the samples.
fn scrape(addr: SocketAddr) -> (Scrape, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let mut samples = Scrape::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some((series, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            samples.insert(series.to_owned(), v);
        }
    }
    (samples, body.to_owned())
}

/// Scrapes until `ok` holds for the samples (or the deadline passes: then panics with the
/// last text).
fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    poll_until(
        what,
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let (s, text) = scrape(addr);
            if ok(&s) { Ok(s) } else { Err(text) }
        },
    )
}

/// [`scrape_until`] off the runtime's threads (the node serving the page runs on them).
async fn scrape_when(
    addr: SocketAddr,
    what: &'static str,
    ok: impl Fn(&Scrape) -> bool + Send + 'static,
) -> Scrape {
    tokio::task::spawn_blocking(move || scrape_until(addr, what, ok))
        .await
        .expect("scrape")
}

fn get(s: &Scrape, series: &str) -> f64 {
    s.get(series).copied().unwrap_or(0.0)
}

/// The sum of every sample of `name` whose labels contain all of `with`.
fn sum(s: &Scrape, name: &str, with: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| {
            (k.as_str() == name || k.starts_with(&format!("{name}{{")))
                && with.iter().all(|w| k.contains(w))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn wait_linked(node: &TestNode, peer: &str) {
    let mut events = node.subscribe();
    while !node.peers().iter().any(|p| p.node_id == peer) {
        wait_event(&mut events, "a link up", |e| {
            matches!(e, NodeEvent::LinkUp { .. })
        })
        .await;
    }
}

const CLASS: &str = "metrics.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_class_and_outcome_with_links_and_handshakes() {
    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let http = nkcluster::http::serve(c1.clone(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("http");
    // The worker reaches c1 through a relay that can hold and cut the link.
    let target = SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let mut w = config("w1", false, "");
    w.cluster_addr = parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        relay.addr().port()
    ))
    .expect("url");
    let mut handlers = Handlers::builtin("w1");
    handlers.insert(CLASS, Ok);
    let w1 = start_with(w, Some(handlers)).await;
    wait_linked(&c1, "w1").await;

    // What c1 holds: alone, it owns the whole ring and w1's proxy.
    let s = scrape_when(http, "w1's link and proxy", |s| {
        get(s, "nkcluster_proxies") == 1.0
    })
    .await;
    assert_eq!(
        get(&s, r#"nkcluster_links{transport="tcp",role="worker"}"#),
        1.0
    );
    assert_eq!(get(&s, r#"nkcluster_members{state="alive"}"#), 1.0);
    assert!(get(&s, "nkcluster_partitions") > 0.0);
    assert_eq!(
        get(&s, "nkcluster_partitions_owned"),
        get(&s, "nkcluster_partitions")
    );
    assert_eq!(
        get(
            &s,
            r#"nkcluster_handshakes_total{transport="tcp",side="listener",outcome="ok"}"#
        ),
        1.0
    );

    // Three answered, one refused by the worker, one past its deadline (the relay holds
    // it), one lost with the link (the relay is cut under it).
    let ask = |class: &'static str, ms: u64| {
        let c1 = c1.clone();
        async move {
            c1.request("w1", class, Bytes::new(), Duration::from_millis(ms))
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(ask(CLASS, 5_000).await, Ok(Bytes::new()));
    }
    let refused = ask("metrics.test.missing", 5_000).await;
    assert!(
        matches!(&refused, Err(RequestError::Remote(e)) if e.code.as_str() == "unknown_class"),
        "{refused:?}"
    );
    relay.pause();
    assert_eq!(ask(CLASS, 300).await, Err(RequestError::Timeout));
    let sent = |s: &Scrape| get(s, r#"nkcluster_bytes_sent_total{transport="tcp"}"#);
    let before = sent(&scrape_when(http, "bytes sent", |_| true).await);
    let lost = tokio::spawn(ask(CLASS, 10_000));
    // The request is on the wire (held by the relay) before the link is cut.
    let s = scrape_when(http, "the last request sent", move |s| sent(s) > before).await;
    let sent_before = sent(&s);
    relay.cut();
    assert_eq!(
        lost.await.expect("task"),
        Err(RequestError::ConnectionFailed)
    );

    let s = scrape_when(http, "the link failure", |s| {
        sum(s, "nkcluster_link_failures_total", &[]) >= 1.0
    })
    .await;
    let req = |outcome: &str| {
        get(
            &s,
            &format!(
                r#"nkcluster_requests_total{{class="{CLASS}",side="sent",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(req("ok"), 3.0);
    assert_eq!(req("timeout"), 1.0);
    assert_eq!(req("connection_failed"), 1.0);
    assert_eq!(
        get(
            &s,
            r#"nkcluster_requests_total{class="metrics.test.missing",side="sent",outcome="unknown_class"}"#
        ),
        1.0
    );
    // The histogram counts every outcome of the class once.
    let histogram = format!(r#"{{class="{CLASS}",side="sent"}}"#);
    assert_eq!(
        get(
            &s,
            &format!("nkcluster_request_duration_seconds_count{histogram}")
        ),
        5.0
    );
    assert_eq!(
        get(
            &s,
            &format!(
                r#"nkcluster_request_duration_seconds_bucket{{le="+Inf",class="{CLASS}",side="sent"}}"#
            )
        ),
        5.0
    );
    // The timeout took its 300 ms.
    assert!(
        get(
            &s,
            &format!("nkcluster_request_duration_seconds_sum{histogram}")
        ) >= 0.3
    );
    // The relay closed the sockets under both ends: c1 read the end of its stream.
    assert_eq!(
        sum(&s, "nkcluster_link_failures_total", &[]),
        1.0,
        "one link failed"
    );
    assert_eq!(
        get(
            &s,
            r#"nkcluster_link_failures_total{reason="transport_closed"}"#
        ),
        1.0
    );
    assert_eq!(
        sum(&s, "nkcluster_links", &[r#"role="worker""#]),
        0.0,
        "the link is gone"
    );
    assert!(get(&s, r#"nkcluster_bytes_received_total{transport="tcp"}"#) > 0.0);
    assert!(get(&s, r#"nkcluster_bytes_sent_total{transport="tcp"}"#) >= sent_before);

    // The worker counted what it served (the held and the lost one never reached it).
    let served: Vec<(String, &str, u64)> = w1
        .telemetry()
        .requests
        .into_iter()
        .filter(|r| r.side == ReqSide::Served && r.class.starts_with(CLASS))
        .map(|r| (r.class, r.outcome, r.count))
        .collect();
    assert_eq!(
        served,
        vec![
            (CLASS.to_owned(), "ok", 3),
            ("metrics.test.missing".to_owned(), "unknown_class", 1)
        ]
    );

    // A node that does not know the password fails its handshake at c1.
    let mut bad = config("w9", false, "");
    bad.password = "not the password".into();
    bad.cluster_addr = parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        target.port()
    ))
    .expect("url");
    let w9 = start(bad).await;
    let s = scrape_when(http, "the refused handshake", |s| {
        get(
            s,
            r#"nkcluster_handshakes_total{transport="tcp",side="listener",outcome="auth_failed"}"#,
        ) >= 1.0
    })
    .await;
    assert_eq!(
        get(
            &s,
            r#"nkcluster_handshakes_total{transport="tcp",side="listener",outcome="ok"}"#
        ),
        1.0
    );
    w9.shutdown();
    w1.shutdown();
    c1.shutdown();
}

#[test]
fn the_quick_start_serves_links_per_transport_and_ownership_on_each_control_node() {
    let (mut dev, base, http) = quick_start();
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], http + i)))
        .collect();
    // dev1 links to dev2 and dev3; the workers' two proxies are somewhere.
    let s1 = scrape_until(addrs[0], "dev1's mesh", |s| {
        get(s, r#"nkcluster_links{transport="tcp",role="control"}"#) == 2.0
            && get(s, r#"nkcluster_members{state="alive"}"#) == 3.0
    });
    let partitions = get(&s1, "nkcluster_partitions");
    assert!(partitions > 0.0);
    poll_until(
        "every partition owned and one proxy per worker",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let all: Vec<Scrape> = addrs.iter().map(|a| scrape(*a).0).collect();
            let owned: f64 = all
                .iter()
                .map(|s| get(s, "nkcluster_partitions_owned"))
                .sum();
            let proxies: f64 = all.iter().map(|s| get(s, "nkcluster_proxies")).sum();
            let worker_links: f64 = all
                .iter()
                .map(|s| sum(s, "nkcluster_links", &[r#"role="worker""#]))
                .sum();
            if owned == partitions && proxies == 2.0 && worker_links == 2.0 {
                Ok(())
            } else {
                Err(format!(
                    "owned {owned} of {partitions}, {proxies} proxies, {worker_links} worker links"
                ))
            }
        },
    );
    // An admin command through dev1: its handshake and its request are counted there.
    let (before, _) = scrape(addrs[0]);
    let addr = format!("nkcluster://127.0.0.1:{base}");
    let out = run_with_deadline(
        std::process::Command::new(nkcluster_bin())
            .args(["call", "dev4", "echo", "hi", "--addr", &addr]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    let served = |s: &Scrape| sum(s, "nkcluster_requests_total", &[r#"side="served""#]);
    let after = scrape_until(addrs[0], "the admin's request", |s| {
        served(s) > served(&before)
    });
    let ok = r#"nkcluster_handshakes_total{transport="tcp",side="listener",outcome="ok"}"#;
    assert_eq!(get(&after, ok), get(&before, ok) + 1.0);
    dev.signal("INT");
    assert!(dev.wait_exit(Duration::from_secs(30)).success());
}
