//! The lifecycle commands: `join` and `connect` (the no-discovery mode: an operator
//! links what discovery would have), `remove` (forget a dead worker everywhere).

use std::process::ExitCode;
use std::time::Duration;

use super::AdminArgs;
use super::admin::{admin_error, admin_link, emit};
use crate::node::{CLASS_DIAL, CLASS_REMOVE, DialRequest, RemoveReport, RemoveRequest};

/// How long a dial by hand may take (discovery, connect, handshake).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a removal may take (the node table, then every member).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `class` to the control node `--addr` reaches and returns its answer.
async fn ask_control(
    args: &AdminArgs,
    class: &str,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<(bytes::Bytes, String), ExitCode> {
    let (node, control) = admin_link(args).await?;
    let r = node.request(&control, class, body, timeout).await;
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(b) => Ok((b, control)),
        Err(e) => Err(admin_error(&control, &e)),
    }
}

/// `join URL` (`control`) or `connect URL`: the control node dials it; prints the node
/// that answered.
pub(super) async fn run_dial(args: AdminArgs, url: String, control: bool) -> ExitCode {
    let body = match postcard::to_allocvec(&DialRequest {
        url: url.clone(),
        control,
    }) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    let (reply, via) = match ask_control(&args, CLASS_DIAL, body, DIAL_TIMEOUT).await {
        Ok(r) => r,
        Err(c) => return c,
    };
    let peer = String::from_utf8_lossy(&reply).into_owned();
    let text = if control {
        format!("{via} joined the control cluster of {peer}")
    } else {
        format!("{via} connected worker {peer}; its proxy moves to its owner")
    };
    emit(
        &args,
        serde_json::json!({"via": via, "node": peer, "url": url}),
        &text,
    )
}

/// `remove NODE [--force]`: every control member forgets it.
pub(super) async fn run_remove(args: AdminArgs, node: String, force: bool) -> ExitCode {
    let req = RemoveRequest {
        node: node.clone(),
        force,
        local: false,
    };
    let body = match postcard::to_allocvec(&req) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    let (reply, via) = match ask_control(&args, CLASS_REMOVE, body, REMOVE_TIMEOUT).await {
        Ok(r) => r,
        Err(c) => return c,
    };
    let report: RemoveReport = match postcard::from_bytes(&reply) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nkcluster: malformed answer from {via}: {e}");
            return ExitCode::from(1);
        }
    };
    for m in &report.incomplete {
        eprintln!("nkcluster: {m} did not answer; it may still list {node}");
    }
    let text = format!(
        "removed {node} (forgotten at {})",
        if report.forgotten_at.is_empty() {
            "no control node: nobody listed it".to_owned()
        } else {
            report.forgotten_at.join(", ")
        }
    );
    let code = emit(
        &args,
        serde_json::json!({
            "node": node, "forgotten_at": report.forgotten_at, "incomplete": report.incomplete,
        }),
        &text,
    );
    if report.incomplete.is_empty() {
        code
    } else {
        ExitCode::from(5)
    }
}
