//! `nkcluster load NODE FILE --name N`: code over the wire. Sends a WebAssembly module
//! (a `.wasm` binary, or a `.wat` text module compiled here with the `wat` crate) to a
//! node, which validates, compiles and registers it as the function `N` (then
//! `nkcluster call NODE N ARGS…`). The calling convention is in [`crate::wasm`].
//!
//! Exit codes: 0 loaded, 1 refused or failed (`invalid_module`, `too_large`,
//! `too_many_modules`, `forbidden`, ...), 2 a local problem (unreadable file, text that
//! does not parse), 4 unknown node.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use nkcluster_core::cluster::CLASS_LOAD;
use nkcluster_core::modules::{LoadReply, LoadRequest};

use super::AdminArgs;
use super::admin::{admin_error, admin_link, emit};

/// How long a load may take (transfer, validation, compilation).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `nkcluster load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Node id (any node of the cluster; routed to it through its control node).
    pub node: String,
    /// The module: `.wasm` (binary) or `.wat` (text, compiled here).
    pub file: PathBuf,
    /// The function name it registers (what `nkcluster call` names).
    #[arg(long)]
    pub name: String,
    /// Connection options.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// The module's binary form: text (by its `.wat` extension, or bytes that are not a
/// binary module) is compiled.
pub fn module_bytes(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = file.extension().is_some_and(|e| e == "wat") || !bytes.starts_with(b"\0asm");
    if !text {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|b| b.into_owned())
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Runs `nkcluster load`.
pub async fn run_load(args: LoadArgs) -> ExitCode {
    let module = match module_bytes(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    let (node, _) = match admin_link(&args.admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let req = LoadRequest {
        name: args.name.clone(),
        module: module.into(),
        origin: node.node_id().to_owned(),
    };
    let body = match postcard::to_allocvec(&req) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    let r = node.send(&args.node, CLASS_LOAD, body, LOAD_TIMEOUT).await;
    node.shutdown_and_wait(Duration::from_secs(1)).await;
    let reply = match r {
        Ok(b) => b,
        Err(e) => return admin_error(&args.node, &e),
    };
    let reply: LoadReply = match postcard::from_bytes(&reply) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nkcluster: malformed answer from {}: {e}", args.node);
            return ExitCode::from(1);
        }
    };
    let m = &reply.module;
    let replaced = match reply.replaced {
        Some(v) => format!(", replacing version {v}"),
        None => String::new(),
    };
    emit(
        &args.admin,
        serde_json::json!({
            "node": args.node, "name": m.name, "version": m.version, "size": m.size,
            "sha256": m.sha256, "export": m.export, "replaced": reply.replaced,
        }),
        &format!(
            "{}: loaded {} version {} ({} bytes, runs export {}{replaced})",
            args.node, m.name, m.version, m.size, m.export
        ),
    )
}
