//! Node proxies on a real multi-process cluster (loopback): 3 control nodes and 5 workers
//! converge to one proxy per worker at its ring owner; a 4th control node joins and only
//! the workers whose partition moved are re-homed; a control node is killed and its
//! workers are re-homed to the survivors. In process: a request pending at the old proxy
//! ends `proxy_moved` when its worker is handed over.
//!
//! Workers all dial c1 first, so some start at the wrong control node: w1, w2 listen
//! (their owner dials them: adoption), w3..w5 do not (they are redirected). With these
//! names the ring over c1..c3 places w1 and w3 at c2, so both paths are taken.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_core::ring;
use nkcluster_tests::poll::poll_until;
use nkcluster_tests::{Daemon, has, nkcluster_bin, run_with_deadline};
use serde_json::Value;

/// The node table as control node `port` answers it.
fn nodes(port: u16) -> Vec<Value> {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args([
        "nodes",
        "--json",
        "--addr",
        &format!("nkcluster://127.0.0.1:{port}"),
    ]);
    let out = run_with_deadline(&mut cmd, Duration::from_secs(30));
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["nodes"].as_array().cloned())
        .unwrap_or_default()
}

/// worker -> (owner, proxies) from one node table.
fn placement(rows: &[Value]) -> BTreeMap<String, (String, Vec<String>)> {
    rows.iter()
        .filter(|r| r["role"] == "worker")
        .map(|r| {
            let proxies = nkcluster_tests::string_list(&r["proxies"]);
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                (r["owner"].as_str().unwrap_or("").to_owned(), proxies),
            )
        })
        .collect()
}

/// Where the ring over `controls` places each worker.
fn expected(controls: &[&str], workers: &[&str]) -> BTreeMap<String, String> {
    let members: Vec<String> = controls.iter().map(|c| (*c).to_owned()).collect();
    let r = ring::place(ring::PARTITIONS_DEFAULT, &members).expect("ring");
    workers
        .iter()
        .map(|w| ((*w).to_owned(), r.owner_of(w).unwrap_or("").to_owned()))
        .collect()
}

/// Polls every control node in `ports` until each lists every worker with exactly one
/// proxy, at its ring owner over `controls`. Returns the placement. Panics with the last
/// tables after `limit`.
fn converged(
    ports: &[u16],
    controls: &[&str],
    workers: &[&str],
    limit: Duration,
) -> BTreeMap<String, String> {
    let want = expected(controls, workers);
    poll_until(
        "one proxy per worker, at its owner",
        limit,
        Duration::from_millis(200),
        || {
            let tables: Vec<_> = ports.iter().map(|p| placement(&nodes(*p))).collect();
            let ok = tables.iter().all(|t| {
                t.len() == workers.len()
                    && want.iter().all(|(w, owner)| {
                        t.get(w).is_some_and(|(o, proxies)| {
                            o == owner && proxies == &vec![owner.clone()]
                        })
                    })
            });
            if ok {
                Ok(want.clone())
            } else {
                Err(format!("wanted {want:?}\ntables {tables:?}"))
            }
        },
    )
}

#[test]
fn proxies_converge_rebalance_on_join_and_rehome_on_loss() {
    let fast = ["--ping-interval-ms", "200", "--idle-timeout-ms", "1000"];
    let (mut c1, p1) = Daemon::control("c1", &fast);
    let first = format!("nkcluster://127.0.0.1:{p1}");
    let mut with_addr = vec!["--cluster-addr", first.as_str()];
    with_addr.extend_from_slice(&fast);
    let (mut c2, p2) = Daemon::control("c2", &with_addr);
    let (mut c3, p3) = Daemon::control("c3", &with_addr);
    // The workers know c1 only: a `cluster_addr` list is tried in a shuffled order, and
    // this test needs every worker to start at c1 so that both hand-off paths are taken.
    let workers = ["w1", "w2", "w3", "w4", "w5"];
    let mut ws = Vec::new();
    for w in workers {
        let mut args = vec![
            "--node-id",
            w,
            "--control",
            "false",
            "--cluster-addr",
            first.as_str(),
        ];
        // w1, w2 listen, so their owner can dial them; the others do not.
        if w <= "w2" {
            args.extend_from_slice(&["--listen", "nkcluster://127.0.0.1:0"]);
        } else {
            args.extend_from_slice(&["--listen", ""]);
        }
        args.extend_from_slice(&fast);
        ws.push(Daemon::node(w, &args));
    }

    // 1. Convergence: one proxy per worker, at its owner, seen from every control node.
    let before = converged(
        &[p1, p2, p3],
        &["c1", "c2", "c3"],
        &workers,
        Duration::from_secs(30),
    );
    // Both hand-off paths were taken (everyone dialed c1 first): a listening worker
    // placed away from c1 was adopted (its owner dialed it), a worker without a listener
    // was redirected.
    let adopted = ["w1", "w2"].into_iter().find(|w| before[*w] != "c1");
    let redirected = ["w3", "w4", "w5"].into_iter().find(|w| before[*w] != "c1");
    let (Some(adopted), Some(redirected)) = (adopted, redirected) else {
        panic!(
            "the ring must place a listening and a non-listening worker away from c1: {before:?}"
        );
    };
    let i = workers
        .iter()
        .position(|w| *w == redirected)
        .expect("a worker");
    ws[i].wait_line_after(0, "the redirect", |l| l.contains("told to reconnect"));
    let owner = &before[adopted];
    let mut controls: BTreeMap<&str, &mut Daemon> = BTreeMap::new();
    controls.insert("c1", &mut c1);
    controls.insert("c2", &mut c2);
    controls.insert("c3", &mut c3);
    if let Some(d) = controls.get_mut(owner.as_str()) {
        d.wait_line_after(0, "the adoption", |l| {
            l.contains("adopted worker") && has(l, "worker", adopted)
        });
    }
    drop(controls);

    // 2. A fourth control node joins: exactly the workers whose partition moved go to
    // it, and the ring stays balanced.
    let (c4, p4) = Daemon::control("c4", &with_addr);
    let after = converged(
        &[p1, p2, p3, p4],
        &["c1", "c2", "c3", "c4"],
        &workers,
        Duration::from_secs(30),
    );
    let members3: Vec<String> = ["c1", "c2", "c3"].map(String::from).to_vec();
    let members4: Vec<String> = ["c1", "c2", "c3", "c4"].map(String::from).to_vec();
    let r3 = ring::place(ring::PARTITIONS_DEFAULT, &members3).expect("ring");
    let r4 = ring::place(ring::PARTITIONS_DEFAULT, &members4).expect("ring");
    let cap = (ring::PARTITIONS_DEFAULT as usize).div_ceil(members4.len());
    for m in &members4 {
        assert!(
            r4.load(m) <= cap,
            "{m} owns {} of {}",
            r4.load(m),
            ring::PARTITIONS_DEFAULT
        );
    }
    let moved: Vec<_> = workers
        .iter()
        .filter(|w| before[**w] != after[**w])
        .collect();
    let should: Vec<_> = workers
        .iter()
        .filter(|w| r3.owner_of(w) != r4.owner_of(w))
        .collect();
    assert_eq!(
        moved, should,
        "only workers whose partition moved are re-homed"
    );
    assert!(
        r3.moved(&r4) <= 2 * (ring::PARTITIONS_DEFAULT as usize / members4.len()),
        "a join moves at most twice the newcomer's share: {}",
        r3.moved(&r4)
    );

    // 3. c2 dies (SIGKILL): its workers are re-homed to the survivors.
    c2.kill();
    let rehomed = converged(
        &[p1, p3, p4],
        &["c1", "c3", "c4"],
        &workers,
        Duration::from_secs(30),
    );
    assert!(rehomed.values().all(|o| o != "c2"));
    drop((c1, c3, c4));
}

/// The old proxy never leaves a request hanging: a request pending at c1 for a worker
/// that stops answering (a paused network path) ends `proxy_moved` (naming c2) as soon
/// as c2 joins and takes the worker's partition, long before the request's own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_ends_pending_requests_with_proxy_moved() {
    use bytes::Bytes;
    use nkcluster::node::NodeEvent;
    use nkcluster_core::RequestError;
    use nkcluster_core::url::Transport;
    use nkcluster_tests::inproc::{Relay, config, port_of, start, url_of, wait_event};

    // A worker whose owner is c2 once c1 and c2 are both members.
    let pair = ["c1", "c2"].map(String::from).to_vec();
    let r = ring::place(ring::PARTITIONS_DEFAULT, &pair).expect("ring");
    let wid = (0..)
        .map(|i| format!("w{i}"))
        .find(|w| r.owner_of(w) == Some("c2"))
        .expect("such a worker");

    let mut c = config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp");
    // The pause must not kill the link by failure detection during the test.
    c.connection.idle_timeout = Duration::from_secs(60);
    let c1 = start(c).await;
    let mut events = c1.subscribe();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&c1, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let mut w = config(&wid, false, "");
    w.connection.idle_timeout = Duration::from_secs(60);
    w.cluster_addr = nkcluster_core::url::parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp",
        relay.addr().port()
    ))
    .expect("url");
    let worker = start(w).await;
    wait_event(
        &mut events,
        "the worker linked to c1",
        |e| matches!(e, NodeEvent::LinkUp { peer, .. } if *peer == wid),
    )
    .await;

    relay.pause();
    let c1b = c1.clone();
    let w2 = wid.clone();
    let t0 = Instant::now();
    let pending = tokio::spawn(async move {
        c1b.request(
            &w2,
            "nkcluster.echo",
            Bytes::from_static(b"x"),
            Duration::from_secs(60),
        )
        .await
    });
    let mut c = config("c2", true, "nkcluster://127.0.0.1:0;transport=tcp");
    c.cluster_addr =
        nkcluster_core::url::parse_url_list(&url_of(&c1, Transport::Tcp)).expect("url");
    let c2 = start(c).await;
    let r = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the pending request ended")
        .expect("task");
    assert_eq!(r, Err(RequestError::ProxyMoved { to: "c2".into() }));
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    worker.shutdown();
    c1.shutdown();
    c2.shutdown();
}
