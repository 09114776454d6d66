//! `/metrics`: the node's figures in the Prometheus text format (`prometheus-client`).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::net::TokioNet;
use crate::node::Node;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) fn routes(node: Node<TokioNet>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(node)
}

async fn scrape(State(node): State<Node<TokioNet>>) -> impl IntoResponse {
    let mut registry = Registry::with_prefix("nkcluster");
    let members = Gauge::<i64>::default();
    members.set(i64::try_from(node.members().len()).unwrap_or(i64::MAX));
    registry.register("members", "Live control members this node sees", members);
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut body, &registry);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}
