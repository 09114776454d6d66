//! A node that gives up connecting must report it through `Node::fatal`, however early it
//! gives up. `nkcluster node` exits 3 only through that future; a lost report (a regression
//! once: `watch::Sender::send` with no receiver drops the value) leaves the process running.
//!
//! This runs the node in-process (on real loopback sockets) so that the ordering is
//! deterministic: on a current-thread runtime the connector runs, and gives up, before
//! anything has polled `fatal()`, which happens by chance in the multi-threaded CLI when
//! the first round fails fast.

use std::time::Duration;

use nkcluster::config::NodeConfig;
use nkcluster::node::{Env, Node, NodeEvent};
use nkcluster_core::url::parse_url_list;

/// A loopback port with nobody listening on it (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

#[tokio::test]
async fn a_give_up_before_anyone_waits_is_still_reported() {
    let mut cfg = NodeConfig::new("w1");
    cfg.control = false;
    cfg.key_iterations = 2;
    cfg.cluster_addr =
        parse_url_list(&format!("nkcluster://127.0.0.1:{}", closed_port())).expect("valid url");
    cfg.backoff.max_attempts = Some(1);
    let env = Env {
        seed: Some(1),
        ..Env::real()
    };
    let node = Node::start(cfg, env).await.expect("node starts");
    let mut events = node.subscribe();
    // Let the connector run its only round and give up.
    let gave_up = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::GaveUp { code }) => return code,
                Ok(_) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("the connector gives up after one round");
    assert_eq!(gave_up, "no_connections");
    // Only now does anyone ask; the give-up must not have been lost.
    let fatal = tokio::time::timeout(Duration::from_secs(5), node.fatal())
        .await
        .expect("Node::fatal reports the earlier give-up");
    assert_eq!(fatal.code, "no_connections");
}
