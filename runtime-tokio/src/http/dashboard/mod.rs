//! The dashboard: a static page (`/`, `/app.js`, `/style.css`, embedded in the binary)
//! that shows the cluster as this node sees it, from `/api/cluster` (the
//! [`ClusterView`](nkcluster_core::dashboard::ClusterView) as JSON) and `/api/events`
//! (the live feed of cluster changes, as server-sent events: the kept entries first,
//! then each new one). No authentication: serve it on loopback or a trusted network.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use nkcluster_core::dashboard::FeedEntry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tracing::warn;

use crate::net::TokioNet;
use crate::node::Node;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Pages following the live feed at once; one more is refused (`503`) until one closes.
const MAX_WATCHERS: usize = 64;
/// Views gathered at once (each asks every member over the mesh); one more is refused
/// (`503`: the page tries again at its next refresh).
const MAX_GATHERS: usize = 8;

/// What the dashboard's handlers share.
#[derive(Clone)]
struct Dashboard {
    node: Node<TokioNet>,
    watchers: Arc<Semaphore>,
    gathers: Arc<Semaphore>,
}

pub(super) fn routes(node: Node<TokioNet>) -> Router {
    let state = Dashboard {
        node,
        watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
        gathers: Arc::new(Semaphore::new(MAX_GATHERS)),
    };
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/api/cluster", get(cluster))
        .route("/api/events", get(events))
        .with_state(state)
}

/// A static file, with headers that keep the page to its own files.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; object-src 'none'; base-uri 'none'"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn json(body: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn cluster(State(d): State<Dashboard>) -> Response {
    let Ok(_gathering) = d.gathers.try_acquire() else {
        warn!(node = %d.node.node_id(), max = MAX_GATHERS,
              "refused a cluster view: too many are being gathered");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many views being gathered",
        )
            .into_response();
    };
    let view = d.node.cluster_view().await;
    match serde_json::to_string(&view) {
        Ok(body) => json(body),
        Err(e) => {
            warn!(node = %d.node.node_id(), error = %e, "cannot encode the cluster view");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn events(State(d): State<Dashboard>) -> Response {
    let Ok(permit) = d.watchers.clone().try_acquire_owned() else {
        warn!(node = %d.node.node_id(), max = MAX_WATCHERS,
              "refused a dashboard page: too many follow the live feed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many pages follow the live feed",
        )
            .into_response();
    };
    // Subscribed before the kept entries are read: none falls in between (the ones in
    // both are skipped by number).
    let live = d.node.subscribe_cluster_events();
    let tail = Tail {
        kept: d.node.recent_cluster_events().into(),
        live,
        last_seq: 0,
        stopped: Box::pin(d.node.stopped()),
        _permit: permit,
    };
    Sse::new(feed_stream(tail))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One page's position in the feed.
struct Tail {
    kept: VecDeque<FeedEntry>,
    live: broadcast::Receiver<FeedEntry>,
    last_seq: u64,
    /// The stream ends when the node stops (the listener's orderly stop waits for it).
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    _permit: OwnedSemaphorePermit,
}

fn feed_stream(tail: Tail) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures_util::stream::unfold(tail, |mut t| async move {
        if let Some(entry) = t.kept.pop_front() {
            t.last_seq = entry.seq;
            return Some((Ok(entry_event(&entry)), t));
        }
        loop {
            tokio::select! {
                () = &mut t.stopped => return None,
                r = t.live.recv() => match r {
                    Ok(entry) if entry.seq <= t.last_seq => {}
                    Ok(entry) => {
                        t.last_seq = entry.seq;
                        return Some((Ok(entry_event(&entry)), t));
                    }
                    // The page missed some: it reloads the view.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let missed = Event::default().event("lagged").data(n.to_string());
                        return Some((Ok(missed), t));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

fn entry_event(entry: &FeedEntry) -> Event {
    // A FeedEntry is plain strings and numbers: encoding cannot fail.
    let data = serde_json::to_string(entry).unwrap_or_default();
    Event::default()
        .event("feed")
        .id(entry.seq.to_string())
        .data(data)
}
