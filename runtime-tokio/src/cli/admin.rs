//! The admin commands: an admin client links to a control node (`--addr`) and asks it
//! for the node table, events, or operations on any node of the cluster.
//!
//! Exit codes: 0 done, 1 no control node reached or the operation failed, 2 a local
//! problem (bad arguments, an unreadable local file), 4 unknown node, 5 a control member
//! did not answer (the answer may be incomplete).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{AdminArgs, env};
use crate::config::NodeConfig;
use crate::net::TokioNet;
use crate::node::{Node, NodeRow, NodesReport};

/// Exit code when a control member did not answer.
const EXIT_INCOMPLETE: u8 = 5;

/// An admin client linked to a control node (exit code on failure).
pub(super) async fn admin_link(args: &AdminArgs) -> Result<(Node<TokioNet>, String), ExitCode> {
    admin_link_with(args, None).await
}

/// [`admin_link`] with request handlers of the client's own (an event stream printer).
async fn admin_link_with(
    args: &AdminArgs,
    handlers: Option<crate::node::Handlers>,
) -> Result<(Node<TokioNet>, String), ExitCode> {
    let mut c = NodeConfig::new(format!("admin-{}", std::process::id()));
    c.admin = true;
    c.control = false;
    c.cluster_name = args.cluster_name.clone();
    c.password = args.password.clone();
    c.key_iterations = crate::config::check_key_iterations(args.key_iterations).map_err(|e| {
        eprintln!("nkcluster: invalid key_iterations: {e}");
        ExitCode::from(2)
    })?;
    let node = Node::start_with(c, env(), handlers).await.map_err(|e| {
        eprintln!("nkcluster: {e}");
        ExitCode::from(1)
    })?;
    match node.connect(&args.addr).await {
        Ok(p) => Ok((node, p.node_id)),
        Err(e) => {
            cannot_reach(&args.addr, &e);
            Err(ExitCode::from(1))
        }
    }
}

/// The message when no control node answered, with what to try.
fn cannot_reach(addr: &str, e: &crate::node::ConnectError) {
    eprintln!("nkcluster: cannot reach a control node at {addr}: {e}");
    if e.code == "no_connections" {
        eprintln!(
            "nkcluster: point the command at a running control node with --addr URL \
             (or NKCLUSTER_ADDR), e.g. --addr 'nkcluster://10.0.0.1:1973;transport=tls'"
        );
    }
}

/// A failed admin request: the message, and exit 4 for an unknown node, 5 when a control
/// member did not answer (the answer may be incomplete), 1 otherwise.
pub(super) fn admin_error(target: &str, e: &nkcluster_core::RequestError) -> ExitCode {
    eprintln!("nkcluster: {target}: {e}");
    ExitCode::from(match e.code() {
        "unknown_node" => 4,
        "incomplete" => EXIT_INCOMPLETE,
        _ => 1,
    })
}

/// Sends `class` to `target` through the control node the admin client reached; prints
/// errors and maps them to exit codes (4: unknown node).
async fn admin_send(
    args: &AdminArgs,
    target: &str,
    class: &str,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<bytes::Bytes, ExitCode> {
    let (node, _) = admin_link(args).await?;
    let r = node.send(target, class, body, timeout).await;
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    r.map_err(|e| admin_error(target, &e))
}

/// Prints `value` as JSON, or `text` otherwise.
pub(super) fn emit(args: &AdminArgs, value: serde_json::Value, text: &str) -> ExitCode {
    if args.json {
        outln!("{value}");
    } else if !text.is_empty() {
        outln!("{text}");
    }
    ExitCode::SUCCESS
}

/// One event as a line of text or JSON.
fn event_line(ev: &crate::jobs::EventMsg, json: bool) -> String {
    use crate::jobs::WireEvent;
    let (kind, detail) = match &ev.event {
        WireEvent::User(b) => (
            "event",
            crate::os::event_json(&ev.class, b)
                .or_else(|| crate::docker::event_json(&ev.class, b))
                .unwrap_or_else(|| serde_json::json!({ "bytes": b.len() })),
        ),
        WireEvent::TaskStarted => ("task_started", serde_json::Value::Null),
        WireEvent::TaskStopped(r) => ("task_stopped", serde_json::json!(r)),
        WireEvent::NodeStatus(s) => ("node_status", serde_json::json!(s)),
        WireEvent::TaskRunning => ("task_running", serde_json::Value::Null),
        WireEvent::EventsLost(n) => ("events_lost", serde_json::json!(n)),
        WireEvent::Info(i) => (
            "info",
            serde_json::json!({
                "status": i.status,
                "meta": i.meta,
                "cpu_percent": i.stats.cpu_percent,
                "mem_used": i.stats.mem_used,
                "mem_total": i.stats.mem_total,
            }),
        ),
    };
    if json {
        serde_json::json!({
            "node": ev.node, "class": ev.class, "task": ev.task, "event": kind, "detail": detail,
        })
        .to_string()
    } else {
        let task = ev.task.map(|t| format!(" task {t}")).unwrap_or_default();
        let detail = if detail.is_null() {
            String::new()
        } else {
            format!(" {detail}")
        };
        format!("{:<12} {:<12}{task} {kind}{detail}", ev.node, ev.class)
    }
}

pub(super) async fn run_events(args: AdminArgs, follow: bool) -> ExitCode {
    if !follow {
        return run_recent_events(args).await;
    }
    let json = args.json;
    let mut h = crate::node::Handlers::builtin("admin");
    h.insert(crate::node::CLASS_EVENT_STREAM, move |body| {
        if let Ok(ev) = postcard::from_bytes::<crate::jobs::EventMsg>(&body) {
            outln!("{}", event_line(&ev, json));
        }
        Ok(bytes::Bytes::new())
    });
    let (node, control) = match admin_link_with(&args, Some(h)).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let req = crate::node::SubscribeRequest {
        subscriber: node.node_id().to_owned(),
        fanout: true,
    };
    let Ok(body) = postcard::to_allocvec(&req) else {
        return ExitCode::from(1);
    };
    if let Err(e) = node
        .request(
            &control,
            crate::node::CLASS_SUBSCRIBE,
            body.into(),
            Duration::from_secs(10),
        )
        .await
    {
        return admin_error(&control, &e);
    }
    eprintln!("following the events of the cluster through {control}; Ctrl-C to stop");
    let mut events = node.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            e = events.recv() => match e {
                Ok(crate::node::NodeEvent::LinkDown { peer, .. }) if peer == control => {
                    eprintln!("nkcluster: the link to {control} ended");
                    node.shutdown();
                    return ExitCode::from(1);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                _ => {}
            },
        }
    }
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    ExitCode::SUCCESS
}

pub(super) async fn run_set_status(args: AdminArgs, node: String, status: String) -> ExitCode {
    let Some(st) = nkcluster_core::status::Status::parse(&status) else {
        eprintln!("nkcluster: unknown status {status:?} (ready, standby, stopping, stopped)");
        return ExitCode::from(2);
    };
    let (n, _) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = n.set_status(&node, st, Duration::from_secs(10)).await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(()) => emit(
            &args,
            serde_json::json!({"node": node, "status": st.as_str()}),
            &format!("{node}: {st}"),
        ),
        Err(e) => admin_error(&node, &e),
    }
}

pub(super) async fn run_tasks(args: AdminArgs, node: String, class: Option<String>) -> ExitCode {
    let (n, _) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = n
        .get_tasks(&node, class.as_deref(), Duration::from_secs(10))
        .await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(tasks) => {
            let mut lines = vec![format!("{:<8} CLASS", "TASK")];
            lines.extend(tasks.iter().map(|(id, c)| format!("{id:<8} {c}")));
            if tasks.is_empty() {
                lines.push("(none)".into());
            }
            let text = lines.join("\n");
            let v = serde_json::json!(
                tasks
                    .iter()
                    .map(|(id, c)| serde_json::json!({"task": id, "class": c}))
                    .collect::<Vec<_>>()
            );
            emit(&args, v, &text)
        }
        Err(e) => admin_error(&node, &e),
    }
}

pub(super) async fn run_meta(
    args: AdminArgs,
    node: String,
    action: Option<String>,
    margs: Vec<String>,
) -> ExitCode {
    let (n, _) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let t = Duration::from_secs(10);
    let r = match action.as_deref() {
        None => n.get_meta(&node, t).await,
        Some("update") => n.update_meta(&node, &margs.join(", "), t).await,
        Some("remove") => {
            let names: Vec<&str> = margs.iter().map(String::as_str).collect();
            n.remove_meta(&node, &names, t).await
        }
        Some(other) => {
            eprintln!("nkcluster: meta: unknown action {other:?} (update, remove)");
            return ExitCode::from(2);
        }
    };
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(m) => emit(&args, serde_json::json!({"node": node, "meta": m}), &m),
        Err(e) => admin_error(&node, &e),
    }
}

pub(super) async fn run_send_file(
    args: AdminArgs,
    node: String,
    local: PathBuf,
    remote: String,
) -> ExitCode {
    use std::io::IsTerminal;
    // A local file that cannot be read is our problem, not the node's: say so first.
    if let Err(e) = std::fs::File::open(&local).and_then(|f| f.metadata()) {
        eprintln!("nkcluster: cannot read local file {}: {e}", local.display());
        return ExitCode::from(2);
    }
    let (n, _) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    // A progress bar with rate and ETA when stderr is a terminal; nothing otherwise.
    let bar = (std::io::stderr().is_terminal() && !args.json).then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "[{bar:25}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>-");
        indicatif::ProgressBar::new(0).with_style(style)
    });
    let started = std::time::Instant::now();
    let opts = crate::node::SendFileOptions {
        timeout: Duration::from_secs(60),
        retry: nkcluster_core::file_send::Retry::default(),
    };
    let r = n
        .send_file_with(&node, &local, &remote, opts, |sent, total| {
            if let Some(bar) = &bar {
                let first = bar.length() != Some(total);
                bar.set_length(total);
                bar.set_position(sent);
                if first {
                    // A resumed transfer starts far along: the rate counts from here.
                    bar.reset_eta();
                }
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            let size = report.total;
            let resumed = if report.resumed_from > 0 {
                format!(" (resumed at {})", report.resumed_from)
            } else {
                String::new()
            };
            emit(
                &args,
                serde_json::json!({"node": node, "path": remote, "bytes": size, "seconds": secs,
                                   "sent": report.sent, "resumed_from": report.resumed_from,
                                   "exclusive": report.exclusive, "attempts": report.attempts}),
                &format!("{node}:{remote}: {size} bytes in {secs:.2} s{resumed}"),
            )
        }
        Err(e) => admin_error(&node, &e),
    }
}

pub(super) async fn run_call(
    args: AdminArgs,
    node: String,
    function: String,
    fargs: Vec<String>,
) -> ExitCode {
    let req = crate::node::CallRequest {
        function: function.clone(),
        args: fargs,
    };
    let Ok(body) = postcard::to_allocvec(&req) else {
        return ExitCode::from(1);
    };
    let r = admin_send(
        &args,
        &node,
        crate::node::CLASS_CALL,
        body.into(),
        Duration::from_secs(10),
    )
    .await;
    match r {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            if args.json {
                let v = serde_json::json!({ "node": node, "function": function, "result": text });
                outln!("{v}");
            } else {
                outln!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Prints the cluster's node table (or one row). Exit 1 when no control node can be
/// reached, 4 for an unknown node, 5 when a control member did not answer (the table may
/// miss the nodes it serves).
pub(super) async fn run_admin(args: AdminArgs, id: Option<String>) -> ExitCode {
    let (node, control) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let timeout = Duration::from_secs(10);
    let (class, body) = match &id {
        None => (crate::node::CLASS_NODES, bytes::Bytes::new()),
        Some(id) => (crate::node::CLASS_NODE_INFO, bytes::Bytes::from(id.clone())),
    };
    let reply = node.request(&control, class, body, timeout).await;
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) if matches!(e.code(), "unknown_node" | "incomplete") => {
            return admin_error(id.as_deref().unwrap_or(&control), &e);
        }
        Err(e) => {
            eprintln!("nkcluster: {control} did not answer: {e}");
            return ExitCode::from(1);
        }
    };
    let malformed = |e: postcard::Error| {
        eprintln!("nkcluster: malformed answer from {control}: {e}");
        ExitCode::from(1)
    };
    let report = match &id {
        None => match postcard::from_bytes::<NodesReport>(&reply) {
            Ok(r) => r,
            Err(e) => return malformed(e),
        },
        Some(_) => match postcard::from_bytes::<NodeRow>(&reply) {
            Ok(r) => NodesReport {
                rows: vec![r],
                incomplete: Vec::new(),
            },
            Err(e) => return malformed(e),
        },
    };
    for m in &report.incomplete {
        eprintln!("nkcluster: {m} did not answer; the list is incomplete");
    }
    if args.json {
        let text = match &id {
            None => serde_json::to_string_pretty(&serde_json::json!({
                "nodes": report.rows,
                "incomplete": report.incomplete,
            })),
            Some(_) => serde_json::to_string_pretty(&report.rows.first()),
        };
        match text {
            Ok(t) => outln!("{t}"),
            Err(e) => {
                eprintln!("nkcluster: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_rows(&report.rows, &report.incomplete);
    }
    if report.incomplete.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INCOMPLETE)
    }
}

/// Prints node rows as a table; members in `incomplete` are marked (they did not answer).
pub(super) fn print_rows(rows: &[NodeRow], incomplete: &[String]) {
    outln!(
        "{:<12} {:<8} {:<13} {:<10} {:<24} {:>8} META",
        "ID",
        "ROLE",
        "STATUS",
        "OWNER",
        "REMOTE",
        "RTT_MS"
    );
    for r in rows {
        let id = if incomplete.contains(&r.id) {
            format!("{}*", r.id)
        } else {
            r.id.clone()
        };
        let rtt = r
            .rtt_us
            .map_or_else(|| "-".to_owned(), |us| format!("{:.2}", us as f64 / 1000.0));
        // A lost worker: when it was last seen.
        let seen = r.last_seen_ms.map_or_else(String::new, |ms| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            format!(" (last seen {} s ago)", now.saturating_sub(ms) / 1000)
        });
        outln!(
            "{:<12} {:<8} {:<13} {:<10} {:<24} {:>8} {}{seen}",
            id,
            r.role,
            r.status,
            r.owner,
            r.remote,
            rtt,
            r.meta
        );
    }
    if rows.is_empty() {
        outln!("(none)");
    }
    if !incomplete.is_empty() {
        outln!("* did not answer: the nodes it serves may be missing");
    }
}

/// `events` without `--follow`: the cluster's recent job events, oldest first.
async fn run_recent_events(args: AdminArgs) -> ExitCode {
    let (node, control) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = node
        .request(
            &control,
            crate::node::CLASS_RECENT_EVENTS,
            bytes::Bytes::new(),
            Duration::from_secs(10),
        )
        .await;
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    let events: Vec<(u64, crate::jobs::EventMsg)> = match r.map(|b| postcard::from_bytes(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("nkcluster: malformed answer from {control}: {e}");
            return ExitCode::from(1);
        }
        Err(e) => return admin_error(&control, &e),
    };
    if args.json {
        for (ms, ev) in &events {
            let mut v: serde_json::Value =
                serde_json::from_str(&event_line(ev, true)).unwrap_or_default();
            v["time_ms"] = serde_json::json!(ms);
            outln!("{v}");
        }
        return ExitCode::SUCCESS;
    }
    outln!("{:<13} {:<12} {:<12} EVENT", "TIME_MS", "NODE", "CLASS");
    for (ms, ev) in &events {
        outln!("{ms:<13} {}", event_line(ev, false));
    }
    if events.is_empty() {
        outln!("(none)");
    }
    ExitCode::SUCCESS
}
