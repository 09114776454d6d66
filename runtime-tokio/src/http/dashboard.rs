//! `/`: the dashboard, the cluster as this node sees it.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::net::TokioNet;
use crate::node::Node;

pub(super) fn routes(node: Node<TokioNet>) -> Router {
    Router::new().route("/", get(page)).with_state(node)
}

async fn page(State(node): State<Node<TokioNet>>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>nkcluster {id}</title><h1>nkcluster: {id}</h1>",
        id = node.node_id()
    ))
}
