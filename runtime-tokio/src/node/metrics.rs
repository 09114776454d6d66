//! What the node's metrics read: its counters ([`Telemetry`], shared with its links) and
//! what its machine holds now ([`Gauges`]).

use nkcluster_core::node::Gauges;
use nkcluster_core::telemetry::TelemetryReport;

use super::*;

impl<N: Net> Node<N> {
    /// Everything counted since the node started: requests, handshakes, link failures,
    /// bytes, file transfers.
    pub fn telemetry(&self) -> TelemetryReport {
        self.inner.telemetry.report()
    }

    /// What the node holds now: members, partitions, proxies, workers, links, tasks (all
    /// zero once the node is gone).
    pub async fn gauges(&self) -> Gauges {
        self.inner.ask(|b, _| b.gauges()).await.unwrap_or_default()
    }
}
