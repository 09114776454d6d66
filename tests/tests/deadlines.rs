//! A request's timeout covers everything: a link whose peer stopped reading backs up,
//! stops taking requests, and a caller still gets `timeout` at its deadline instead of
//! waiting for the link to die (in process, real sockets through a pausable relay).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nkcluster::node::NodeEvent;
use nkcluster_core::RequestError;
use nkcluster_core::url::{Transport, parse_url_list};
use nkcluster_tests::inproc::{Relay, TestNode, config, port_of, start, wait_event};

/// Waits (with the suite's deadline) until `node` has a link to `peer`.
async fn wait_linked(node: &nkcluster_tests::inproc::TestNode, peer: &str) {
    let mut events = node.subscribe();
    while !node.peers().iter().any(|p| p.node_id == peer) {
        wait_event(&mut events, "a link up", |e| {
            matches!(e, NodeEvent::LinkUp { .. })
        })
        .await;
    }
}

/// Control node c1 and worker w1 linked through a relay (to pause), both with a long
/// idle timeout: only a request's own deadline can end it.
async fn linked_through_a_relay() -> (TestNode, TestNode, Relay) {
    let mut c = config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp");
    c.connection.idle_timeout = Duration::from_secs(120);
    let c1 = start(c).await;
    let target = SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let mut w = config("w1", false, "");
    w.connection.idle_timeout = Duration::from_secs(120);
    w.cluster_addr = parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        relay.addr().port()
    ))
    .expect("url");
    let w1 = start(w).await;
    wait_linked(&w1, "c1").await;
    (c1, w1, relay)
}

/// `n` requests of 1 MiB each from `w1` to c1 with `timeout`, each in a task of its own.
fn flood(
    w1: &TestNode,
    n: usize,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<Result<Bytes, RequestError>>> {
    let big = Bytes::from(vec![7u8; 1 << 20]);
    (0..n)
        .map(|_| {
            let (w1, big) = (w1.clone(), big.clone());
            tokio::spawn(async move { w1.request("c1", "nkcluster.echo", big, timeout).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backed_up_link_costs_a_caller_its_timeout_not_more() {
    let (c1, w1, relay) = linked_through_a_relay().await;
    // c1 stops reading: w1's socket, then its output queue, back up, and its link stops
    // taking requests. Far more than fits is asked for, each 1 MiB.
    relay.pause();
    let flood = flood(&w1, 1500, Duration::from_secs(2));
    // Every one of them ends at its deadline, whether it was sent, queued in the link or
    // still waiting to be queued.
    let started = Instant::now();
    for f in flood {
        let r = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("a request outlived its deadline by far")
            .expect("task");
        assert_eq!(r, Err(RequestError::Timeout));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "2 s deadlines took {:?}",
        started.elapsed()
    );
    // A small request now: its 300 ms count from now, queue included.
    let t = Instant::now();
    let r = w1
        .request(
            "c1",
            "nkcluster.echo",
            Bytes::new(),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(r, Err(RequestError::Timeout));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    relay.cut();
    w1.shutdown();
    c1.shutdown();
}

/// A link that is backed up and holds as many requests as it may takes no more: the
/// next ones wait in its queue. One of them due long before the held ones still ends at
/// its own deadline, not at theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_queued_behind_held_ones_due_later_ends_at_its_own_deadline() {
    let (c1, w1, relay) = linked_through_a_relay().await;
    relay.pause();
    // What the socket and the link's output take, the link's held requests
    // (`HELD_MAX`, 1,024) and a few hundred more left in its queue (room for 1,024):
    // every one due in a minute.
    let flood = flood(&w1, 1400, Duration::from_secs(60));
    // Short requests one after the other: the first may still find room among the held
    // ones (the link takes the flood within milliseconds); the next ones wait in the
    // queue behind the flood, and each still ends at its own deadline.
    for _ in 0..4 {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            w1.request(
                "c1",
                "nkcluster.echo",
                Bytes::new(),
                Duration::from_millis(300),
            ),
        )
        .await
        .expect("a queued request waited for the held ones' deadline");
        assert_eq!(r, Err(RequestError::Timeout));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "a 300 ms request took {took:?}"
        );
    }
    // The link dies: every request of the flood ends, none left waiting.
    relay.cut();
    for f in flood {
        let r = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("a request outlived its link")
            .expect("task");
        assert_eq!(r, Err(RequestError::ConnectionFailed));
    }
    w1.shutdown();
    c1.shutdown();
}

/// An exclusive request routed through a control node: that control node, which holds
/// the worker's link, opens the dedicated connection to the worker (it listens), and the
/// reply comes back through the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_request_routed_through_a_control_node_gets_its_own_connection() {
    use nkcluster::node::RequestOptions;

    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let url = format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        port_of(&c1, Transport::Tcp)
    );
    let mut cev = c1.subscribe();
    // w1 listens (a dedicated connection can reach it), w3 does not; a2, an admin client
    // (workers may not route), asks through c1.
    let mut w = config("w1", false, "nkcluster://127.0.0.1:0;transport=tcp");
    w.cluster_addr = parse_url_list(&url).expect("url");
    let w1 = start(w).await;
    let mut wev = w1.subscribe();
    let mut w = config("w3", false, "");
    w.cluster_addr = parse_url_list(&url).expect("url");
    let w3 = start(w).await;
    let mut a = config("a2", false, "");
    a.admin = true;
    a.cluster_addr = parse_url_list(&url).expect("url");
    let a2 = start(a).await;
    // All linked, in any order.
    let linked = |c: &nkcluster_tests::inproc::TestNode| {
        let ids: Vec<String> = c.peers().into_iter().map(|p| p.node_id).collect();
        ["w1", "w3", "a2"]
            .iter()
            .all(|id| ids.contains(&(*id).to_owned()))
    };
    while !linked(&c1) {
        wait_event(&mut cev, "a link up at c1", |e| {
            matches!(e, NodeEvent::LinkUp { .. })
        })
        .await;
    }
    wait_linked(&a2, "c1").await;
    wait_linked(&w1, "c1").await;
    let body = Bytes::from_static(b"over a dedicated connection");
    let opts = RequestOptions {
        timeout: Duration::from_secs(10),
        exclusive: true,
    };
    let reply = a2
        .send_with("w1", "nkcluster.echo", body.clone(), opts)
        .await
        .expect("routed exclusive echo");
    assert_eq!(reply, body);
    // c1 dialed w1 for it (w1's main link was dialed by w1 itself).
    wait_event(
        &mut wev,
        "w1: a link c1 dialed",
        |e| matches!(e, NodeEvent::LinkUp { peer, dialer: false, .. } if peer == "c1"),
    )
    .await;
    // A worker that does not listen gets the request over its main link instead.
    wait_linked(&w3, "c1").await;
    let reply = a2
        .send_with("w3", "nkcluster.echo", body.clone(), opts)
        .await
        .expect("exclusive falls back to the main link");
    assert_eq!(reply, body);
    a2.shutdown();
    w3.shutdown();
    w1.shutdown();
    c1.shutdown();
}

/// The control node serving a listening worker redials it at once when their link fails
/// (here the only path the worker knows is cut for good, so only the redial can bring the
/// link back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_redials_a_listening_worker_whose_link_failed() {
    let c1 = start(config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp")).await;
    let target = SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let mut w = config("w1", false, "nkcluster://127.0.0.1:0;transport=tcp");
    w.cluster_addr = parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        relay.addr().port()
    ))
    .expect("url");
    let mut events = c1.subscribe();
    let w1 = start(w).await;
    wait_event(
        &mut events,
        "w1 linked through the relay",
        |e| matches!(e, NodeEvent::LinkUp { peer, dialer: false, .. } if peer == "w1"),
    )
    .await;
    relay.cut();
    wait_event(
        &mut events,
        "the link fails",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "w1"),
    )
    .await;
    wait_event(
        &mut events,
        "c1 dials w1 back",
        |e| matches!(e, NodeEvent::LinkUp { peer, dialer: true, .. } if peer == "w1"),
    )
    .await;
    let r = c1
        .send("w1", "nkcluster.node", Bytes::new(), Duration::from_secs(5))
        .await
        .expect("w1 answers over the new link");
    assert_eq!(r, Bytes::from_static(b"w1"));
    w1.shutdown();
    c1.shutdown();
}
