//! The system under test: a control node and a worker node linked over loopback TCP; the
//! worker's callers send `nkcluster.echo` requests to the control node.

use std::time::Duration;

use bytes::Bytes;
use nkcluster::config::NodeConfig;
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Node};
use nkcluster_core::url::parse_url_list;

use crate::drive::Echo;

/// A caller's handle: the worker node (its clones share the link).
#[derive(Clone)]
pub struct Nk {
    worker: Node<TokioNet>,
    control: Node<TokioNet>,
}

impl Nk {
    /// Starts both nodes and waits for their link.
    pub async fn start() -> Nk {
        let env = || Env::real();
        let mut c = NodeConfig::new("c1");
        c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp").expect("url");
        let control = Node::start(c, env()).await.expect("c1");
        let port = control.listen_addrs()[0].1.port();
        let mut w = NodeConfig::new("w1");
        w.control = false;
        w.cluster_addr =
            parse_url_list(&format!("nkcluster://127.0.0.1:{port};transport=tcp")).expect("url");
        let worker = Node::start(w, env()).await.expect("w1");
        let mut ev = worker.subscribe();
        while worker.peers().is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(10), ev.recv()).await;
        }
        Nk { worker, control }
    }

    /// Stops both nodes.
    pub fn shutdown(&self) {
        self.worker.shutdown();
        self.control.shutdown();
    }
}

impl Echo for Nk {
    async fn echo(&mut self, body: Bytes) {
        let r = self
            .worker
            .request("c1", "nkcluster.echo", body, Duration::from_secs(30))
            .await
            .expect("reply");
        std::hint::black_box(r);
    }
}
