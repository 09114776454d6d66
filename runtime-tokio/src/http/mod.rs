//! The daemon's HTTP listener (option `http`, off by default): Prometheus metrics at
//! `/metrics` ([`metrics`]) and the dashboard at `/` ([`dashboard`]). One listener per
//! node; it lives as long as the node and stops with it.

use std::net::SocketAddr;

use tracing::{info, warn};

use crate::net::TokioNet;
use crate::node::Node;

mod dashboard;
mod metrics;

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve http on {addr}: {error}")]
pub struct HttpError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    pub error: std::io::Error,
}

/// Binds `addr` and serves the node's pages on it until the node shuts down; returns the
/// bound address (the port is chosen by the OS when `addr`'s is 0).
pub async fn serve(node: Node<TokioNet>, addr: SocketAddr) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| HttpError { addr, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| HttpError { addr, error })?;
    let app = axum::Router::new()
        .merge(metrics::routes(node.clone()))
        .merge(dashboard::routes(node.clone()));
    let stopped = node.stopped();
    let node_id = node.node_id().to_owned();
    info!(node = %node_id, http = %bound, "serving http: /metrics and the dashboard");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await;
        if let Err(e) = served {
            warn!(node = %node_id, http = %bound, error = %e, "http listener failed");
        }
    });
    Ok(bound)
}
