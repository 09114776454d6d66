//! Building a simulated cluster: the connection settings every run uses, each node's
//! settings (as a deployment would write them), and the nodes added to a world.

use std::time::Duration;

use nkcluster_core::backoff::BackoffConfig;
use nkcluster_core::conn::ConnectionConfig;
use nkcluster_core::handshake::Role;
use nkcluster_core::meta::Meta;
use nkcluster_core::node::{HandoffTimes, NodeSettings};
use nkcluster_core::ring::PARTITIONS_DEFAULT;
use nkcluster_core::url::parse_url_list;

/// The links' settings: pings every 2 s, a link silent for 6 s is dead.
pub fn connection_config() -> ConnectionConfig {
    ConnectionConfig {
        ping_interval: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(6),
        ..ConnectionConfig::default()
    }
}

/// The URL a node listens on (control nodes; its host is its id).
pub fn url_of(id: &str) -> String {
    format!("nkcluster://{id}:1972;transport=tcp")
}

/// Node `me`'s settings: control nodes listen, workers do not; `cluster_addr` lists the
/// control nodes it dials (comma separated; empty: none).
pub fn settings(me: &str, role: Role, cluster_addr: &str) -> Result<NodeSettings, String> {
    let conn = connection_config();
    Ok(NodeSettings {
        me: me.to_owned(),
        role,
        listen: if role == Role::Control {
            vec![url_of(me)]
        } else {
            Vec::new()
        },
        partitions: PARTITIONS_DEFAULT,
        wall_origin_ns: 0,
        membership: Default::default(),
        handoff_retry: conn.ping_interval,
        handoff: HandoffTimes {
            adopt: conn.connect_timeout + conn.handshake.timeout,
            probe: conn.idle_timeout,
            redirect: Duration::from_secs(3),
            identity: conn.handshake.timeout,
        },
        cluster_addr: if cluster_addr.is_empty() {
            Vec::new()
        } else {
            parse_url_list(cluster_addr).map_err(|e| e.to_string())?
        },
        backoff: BackoffConfig::default(),
        data_limit: 1 << 20,
        meta: Meta::default(),
        workers: Default::default(),
        events: Default::default(),
        files_dir: "/nonexistent".into(),
        transfers: Default::default(),
        outbox: Default::default(),
        modules: Default::default(),
    })
}
