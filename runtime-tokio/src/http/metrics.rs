//! `/metrics`: the node's figures in the Prometheus text format (`prometheus-client`).
//! Each scrape reads the node's counters and gauges once and encodes them through a
//! [`Collector`]; the names follow Prometheus's conventions (`nkcluster_` prefix, units in
//! names, `_total` on counters, which the encoder appends). README's "Metrics" lists
//! them.

use std::fmt;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use nkcluster_core::node::Gauges;
use nkcluster_core::telemetry::TelemetryReport;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::net::TokioNet;
use crate::node::Node;

/// The content type of the text format (OpenMetrics, which Prometheus reads).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(super) fn routes(node: Node<TokioNet>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(node)
}

async fn scrape(State(node): State<Node<TokioNet>>) -> impl IntoResponse {
    let figures = Figures {
        gauges: node.gauges().await,
        telemetry: node.telemetry(),
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(figures))
}

/// The text of one scrape.
fn render(figures: Figures) -> String {
    let mut registry = Registry::with_prefix("nkcluster");
    registry.register_collector(Box::new(figures));
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut body, &registry);
    body
}

/// One scrape's figures.
#[derive(Debug)]
struct Figures {
    gauges: Gauges,
    telemetry: TelemetryReport,
}

type Labels = Vec<(&'static str, String)>;

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Writes one metric family of `kind` whose samples are `rows`.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (l, v) in rows {
        let e = m.encode_family(&l)?;
        sample(e, kind, v)?;
    }
    Ok(())
}

/// Writes one metric without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    sample(m, kind, v)
}

fn sample(mut e: MetricEncoder, kind: MetricType, v: u64) -> fmt::Result {
    match kind {
        MetricType::Counter => e.encode_counter::<NoLabelSet, u64, u64>(&v, None),
        _ => e.encode_gauge(&v),
    }
}

impl Collector for Figures {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let (g, t) = (&self.gauges, &self.telemetry);
        let e = &mut enc;
        family(
            e,
            "links",
            "Authenticated links by transport and the peer's role",
            Gauge,
            g.links
                .iter()
                .map(|(tr, role, n)| (labels([("transport", tr), ("role", role)]), *n)),
        )?;
        family(
            e,
            "members",
            "Control members in this node's membership view, by state",
            Gauge,
            g.members.iter().map(|(s, n)| (labels([("state", s)]), *n)),
        )?;
        single(
            e,
            "partitions",
            "Ring partitions in all",
            Gauge,
            g.partitions,
        )?;
        single(
            e,
            "partitions_owned",
            "Ring partitions this node owns",
            Gauge,
            g.partitions_owned,
        )?;
        single(
            e,
            "proxies",
            "Workers whose proxy this node is",
            Gauge,
            g.proxies,
        )?;
        family(
            e,
            "workers",
            "Workers this control node remembers, by last known status",
            Gauge,
            g.workers.iter().map(|(s, n)| (labels([("status", s)]), *n)),
        )?;
        family(
            e,
            "tasks",
            "Tasks running on this node, by job class",
            Gauge,
            g.tasks.iter().map(|(c, n)| (labels([("class", c)]), *n)),
        )?;
        single(
            e,
            "event_queue_drops",
            "Events a disconnected worker dropped from its full buffer",
            Counter,
            g.events_dropped,
        )?;
        family(
            e,
            "requests",
            "Requests on links, by job class, side (sent, served) and outcome (ok or an error code)",
            Counter,
            t.requests.iter().map(|r| {
                (
                    labels([
                        ("class", &r.class),
                        ("side", r.side.as_str()),
                        ("outcome", r.outcome),
                    ]),
                    r.count,
                )
            }),
        )?;
        {
            let mut m = e.encode_descriptor(
                "request_duration_seconds",
                "Time from a request to its outcome (sent) or from its arrival to our answer (served)",
                None,
                MetricType::Histogram,
            )?;
            for (class, side, h) in &t.durations {
                let l = labels([("class", class), ("side", side.as_str())]);
                m.encode_family(&l)?.encode_histogram::<NoLabelSet>(
                    h.sum_us as f64 / 1e6,
                    h.count,
                    &h.by_bound(),
                    None,
                )?;
            }
        }
        family(
            e,
            "handshakes",
            "Connection handshakes by transport, side (dialer, listener) and outcome (ok or an error code)",
            Counter,
            t.handshakes.iter().map(|h| {
                (
                    labels([
                        ("transport", h.transport),
                        ("side", h.side.as_str()),
                        ("outcome", h.outcome),
                    ]),
                    h.count,
                )
            }),
        )?;
        family(
            e,
            "link_failures",
            "Authenticated links that ended with an error, by reason (not closed in order)",
            Counter,
            t.link_failures
                .iter()
                .map(|(r, n)| (labels([("reason", r)]), *n)),
        )?;
        family(
            e,
            "bytes_received",
            "Bytes received on links, by transport",
            Counter,
            t.bytes_in
                .iter()
                .map(|(tr, n)| (labels([("transport", tr)]), *n)),
        )?;
        family(
            e,
            "bytes_sent",
            "Bytes sent on links, by transport",
            Counter,
            t.bytes_out
                .iter()
                .map(|(tr, n)| (labels([("transport", tr)]), *n)),
        )?;
        let f = t.files;
        family(
            e,
            "file_transfers",
            "Files received: transfers started, done (whole and verified), failed",
            Counter,
            [
                ("started", f.started),
                ("done", f.done),
                ("failed", f.failed),
            ]
            .into_iter()
            .map(|(o, n)| (labels([("outcome", o)]), n)),
        )?;
        single(
            e,
            "file_received_bytes",
            "Bytes of file parts received",
            Counter,
            f.bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use nkcluster_core::telemetry::{LinkSide, ReqSide, Telemetry};
    use nkcluster_core::url::Transport;

    use super::*;

    #[test]
    fn a_scrape_names_every_figure_for_prometheus() {
        let t = Telemetry::new();
        t.class("echo")
            .count(ReqSide::Sent, Ok(()), std::time::Duration::from_millis(2));
        t.handshake(Transport::Tcp, LinkSide::Dialer, Ok(()));
        t.bytes_in(Transport::Tcp, 42);
        let gauges = Gauges {
            links: vec![("tcp", "control", 2)],
            members: vec![("alive", 3)],
            partitions: 64,
            partitions_owned: 22,
            ..Gauges::default()
        };
        let text = render(Figures {
            gauges,
            telemetry: t.report(),
        });
        for line in [
            "nkcluster_links{transport=\"tcp\",role=\"control\"} 2",
            "nkcluster_members{state=\"alive\"} 3",
            "nkcluster_partitions 64",
            "nkcluster_partitions_owned 22",
            "nkcluster_proxies 0",
            "nkcluster_event_queue_drops_total 0",
            "nkcluster_requests_total{class=\"echo\",side=\"sent\",outcome=\"ok\"} 1",
            "nkcluster_request_duration_seconds_count{class=\"echo\",side=\"sent\"} 1",
            "nkcluster_request_duration_seconds_bucket{le=\"0.001\",class=\"echo\",side=\"sent\"} 0",
            "nkcluster_request_duration_seconds_bucket{le=\"0.0025\",class=\"echo\",side=\"sent\"} 1",
            "nkcluster_request_duration_seconds_bucket{le=\"0.005\",class=\"echo\",side=\"sent\"} 1",
            "nkcluster_request_duration_seconds_bucket{le=\"+Inf\",class=\"echo\",side=\"sent\"} 1",
            "nkcluster_handshakes_total{transport=\"tcp\",side=\"dialer\",outcome=\"ok\"} 1",
            "nkcluster_bytes_received_total{transport=\"tcp\"} 42",
            "nkcluster_bytes_sent_total{transport=\"wss\"} 0",
            "nkcluster_file_transfers_total{outcome=\"started\"} 0",
            "nkcluster_file_received_bytes_total 0",
            "# TYPE nkcluster_request_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
