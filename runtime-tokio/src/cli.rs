//! The `nkcluster` command: `node` runs a daemon, `dev` runs a local quick-start cluster.
//!
//! Exit codes: 0 on a clean stop, 2 for a configuration error, 3 when a node gives up
//! connecting to its cluster (`--connect-attempts` spent; the log says why).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nkcluster_core::url::parse_url_list;
use tracing::{error, info};

use crate::config::{NodeConfig, RawOptions};
use crate::net::TokioNet;
use crate::node::{Env, Node, NodeRow};

/// nkcluster: clusters of control and worker nodes that run jobs.
#[derive(Debug, Parser)]
#[command(name = "nkcluster", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node daemon.
    Node(Box<NodeArgs>),
    /// Run a local quick-start cluster on loopback until interrupted.
    Dev(DevArgs),
    /// List the nodes a control node knows (admin client).
    Nodes(AdminArgs),
    /// Show one node (admin client).
    NodeInfo {
        /// Node id.
        id: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a node's status: ready, standby, stopped (stopping waits for its tasks).
    SetStatus {
        /// Node id.
        node: String,
        /// New status.
        status: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List a node's running tasks.
    Tasks {
        /// Node id.
        node: String,
        /// Only this job class.
        #[arg(long)]
        class: Option<String>,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a node's metadata, or change it: `meta N update "tok;a=1, t2"`,
    /// `meta N remove tok t2`.
    Meta {
        /// Node id.
        node: String,
        /// `update` or `remove` (none: show).
        action: Option<String>,
        /// Tokens to update, or names to remove.
        args: Vec<String>,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a local file to a node (checked with SHA-256 there).
    SendFile {
        /// Node id.
        node: String,
        /// Local file.
        local: PathBuf,
        /// Path on the node.
        remote: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the cluster's job events (task_started, task_stopped, node_status, info and
    /// the classes' own) as they happen; without `--follow`, each node's status.
    Events {
        /// Keep streaming until interrupted.
        #[arg(long)]
        follow: bool,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Call a named function on a node (built in: `node`, `echo`) and print its result.
    Call {
        /// Node id (any node of the cluster; routed to it through its control node).
        node: String,
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<String>,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How the admin commands reach a control node.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Control node URL(s), tried in order (default: dev1 of the quick start).
    #[arg(
        long,
        env = "NKCLUSTER_ADDR",
        default_value = "nkcluster://127.0.0.1:1972;transport=tcp"
    )]
    pub addr: String,
    /// Password.
    #[arg(long, env = "NKCLUSTER_PASSWORD", hide_env_values = true, default_value = crate::config::DEFAULT_PASSWORD)]
    pub password: String,
    /// Cluster name.
    #[arg(long, env = "NKCLUSTER_CLUSTER_NAME", default_value = crate::config::DEFAULT_CLUSTER)]
    pub cluster_name: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `nkcluster node` (the original's names; flags > environment > file).
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML file with any of the options below (snake_case keys).
    #[arg(long, env = "NKCLUSTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (default: the host name).
    #[arg(long, env = "NKCLUSTER_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster name (default `nkcluster`).
    #[arg(long, env = "NKCLUSTER_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Password (default `nkcluster`).
    #[arg(long, env = "NKCLUSTER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Listen URLs, e.g. `nkcluster://all:1972;transport=tcp` (default
    /// `nkcluster://all;transport=tls`, as in the original; an empty string: no listener).
    #[arg(long, env = "NKCLUSTER_LISTEN")]
    pub listen: Option<String>,
    /// Control nodes to connect to, tried in order.
    #[arg(long, env = "NKCLUSTER_CLUSTER_ADDR")]
    pub cluster_addr: Option<String>,
    /// Whether this node has the control role (`true` or `false`).
    #[arg(long, env = "NKCLUSTER_CONTROL")]
    pub control: Option<bool>,
    /// Metadata, e.g. `core;group=g1;master, m2;a=1`.
    #[arg(long, env = "NKCLUSTER_META")]
    pub meta: Option<String>,
    /// Give up (exit 3) after this many rounds of failed connection attempts.
    #[arg(long, env = "NKCLUSTER_CONNECT_ATTEMPTS")]
    pub connect_attempts: Option<u32>,
    /// Ping interval in milliseconds.
    #[arg(long, env = "NKCLUSTER_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Idle timeout in milliseconds (the link dies when nothing arrives for this long).
    #[arg(long, env = "NKCLUSTER_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Maximum frame body in bytes.
    #[arg(long, env = "NKCLUSTER_MAX_FRAME")]
    pub max_frame: Option<u32>,
    /// PEM certificate (chain) for TLS listeners (default: a generated self-signed one).
    #[arg(long, env = "NKCLUSTER_TLS_CERTFILE")]
    pub tls_certfile: Option<String>,
    /// PEM private key of the certificate (PKCS#8; encrypted needs --tls-password).
    #[arg(long, env = "NKCLUSTER_TLS_KEYFILE")]
    pub tls_keyfile: Option<String>,
    /// PEM CA certificates used to verify servers (with --tls-verify true).
    #[arg(long, env = "NKCLUSTER_TLS_CACERTFILE")]
    pub tls_cacertfile: Option<String>,
    /// Password of an encrypted key file.
    #[arg(long, env = "NKCLUSTER_TLS_PASSWORD", hide_env_values = true)]
    pub tls_password: Option<String>,
    /// Verify server certificates when dialing (`true` or `false`, default false).
    #[arg(long, env = "NKCLUSTER_TLS_VERIFY")]
    pub tls_verify: Option<bool>,
    /// Maximum intermediate certificates when verifying.
    #[arg(long, env = "NKCLUSTER_TLS_DEPTH")]
    pub tls_depth: Option<u8>,
    /// Ring partitions (a power of two, default 64; all control nodes must agree).
    #[arg(long, env = "NKCLUSTER_PARTITIONS")]
    pub partitions: Option<u32>,
}

impl NodeArgs {
    fn raw(&self) -> RawOptions {
        RawOptions {
            cluster_name: self.cluster_name.clone(),
            node_id: self.node_id.clone(),
            password: self.password.clone(),
            listen: self.listen.clone(),
            cluster_addr: self.cluster_addr.clone(),
            control: self.control,
            meta: self.meta.clone(),
            connect_attempts: self.connect_attempts,
            ping_interval_ms: self.ping_interval_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            max_frame: self.max_frame,
            tls_certfile: self.tls_certfile.clone(),
            tls_keyfile: self.tls_keyfile.clone(),
            tls_cacertfile: self.tls_cacertfile.clone(),
            tls_password: self.tls_password.clone(),
            tls_verify: self.tls_verify,
            partitions: self.partitions,
            tls_depth: self.tls_depth,
        }
    }

    /// Merges file, environment and flags into a config.
    pub fn load(&self) -> Result<NodeConfig, crate::config::ConfigError> {
        let file = match &self.config {
            Some(p) => RawOptions::from_file(p)?,
            None => RawOptions::default(),
        };
        file.overlay(self.raw()).build(&default_node_id())
    }
}

/// Options of `nkcluster dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// dev1 listens here; dev2 and dev3 on the next ports, ten apart.
    #[arg(long, default_value_t = 1972)]
    pub base_port: u16,
}

fn default_node_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NKCLUSTER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons log at info; admin commands print their own results and errors.
    init_logs(match cli.command {
        Cmd::Node(_) | Cmd::Dev(_) => "info",
        Cmd::Nodes(_)
        | Cmd::NodeInfo { .. }
        | Cmd::Call { .. }
        | Cmd::SetStatus { .. }
        | Cmd::Tasks { .. }
        | Cmd::Meta { .. }
        | Cmd::SendFile { .. }
        | Cmd::Events { .. } => "off",
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nkcluster: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        match cli.command {
            Cmd::Node(args) => run_node(*args).await,
            Cmd::Dev(args) => run_dev(args).await,
            Cmd::Nodes(admin) => run_admin(admin, None).await,
            Cmd::NodeInfo { id, admin } => run_admin(admin, Some(id)).await,
            Cmd::Call {
                node,
                function,
                args,
                admin,
            } => run_call(admin, node, function, args).await,
            Cmd::SetStatus {
                node,
                status,
                admin,
            } => run_set_status(admin, node, status).await,
            Cmd::Tasks { node, class, admin } => run_tasks(admin, node, class).await,
            Cmd::Events { follow, admin } => run_events(admin, follow).await,
            Cmd::Meta {
                node,
                action,
                args,
                admin,
            } => run_meta(admin, node, action, args).await,
            Cmd::SendFile {
                node,
                local,
                remote,
                admin,
            } => run_send_file(admin, node, local, remote).await,
        }
    })
}

async fn run_node(args: NodeArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(2);
        }
    };
    info!(node = %config.node_id, cluster = %config.cluster_name, control = config.control,
          "starting node");
    let node = match Node::start(config, env()).await {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    tokio::select! {
        f = node.fatal() => {
            error!(code = %f.code, "{f}");
            ExitCode::from(3)
        }
        _ = tokio::signal::ctrl_c() => {
            info!("interrupted, shutting down");
            node.shutdown_and_wait(Duration::from_secs(3)).await;
            ExitCode::SUCCESS
        }
    }
}

/// Connects to a control node as an admin client and prints its node table (or one row).
/// Exit 1 when the control node cannot be reached or refuses us, 4 for an unknown node.
/// An admin client linked to a control node (exit code on failure).
async fn admin_link(args: &AdminArgs) -> Result<(Node<TokioNet>, String), ExitCode> {
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
    let node = Node::start_with(c, env(), handlers).await.map_err(|e| {
        eprintln!("nkcluster: {e}");
        ExitCode::from(1)
    })?;
    match node.connect(&args.addr).await {
        Ok(p) => Ok((node, p.node_id)),
        Err(e) => {
            eprintln!(
                "nkcluster: cannot reach a control node at {}: {e}",
                args.addr
            );
            Err(ExitCode::from(1))
        }
    }
}

/// A failed admin request: the message, and exit 4 for an unknown node, 1 otherwise.
fn admin_error(target: &str, e: &nkcluster_core::RequestError) -> ExitCode {
    eprintln!("nkcluster: {target}: {e}");
    ExitCode::from(if e.code() == "unknown_node" { 4 } else { 1 })
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
fn emit(args: &AdminArgs, value: serde_json::Value, text: &str) -> ExitCode {
    if args.json {
        println!("{value}");
    } else if !text.is_empty() {
        println!("{text}");
    }
    ExitCode::SUCCESS
}

/// One event as a line of text or JSON.
fn event_line(ev: &crate::jobs::EventMsg, json: bool) -> String {
    use crate::jobs::WireEvent;
    let (kind, detail) = match &ev.event {
        WireEvent::User(b) => ("event", serde_json::json!({ "bytes": b.len() })),
        WireEvent::TaskStarted => ("task_started", serde_json::Value::Null),
        WireEvent::TaskStopped(r) => ("task_stopped", serde_json::json!(r)),
        WireEvent::NodeStatus(s) => ("node_status", serde_json::json!(s)),
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

async fn run_events(args: AdminArgs, follow: bool) -> ExitCode {
    if !follow {
        // A snapshot: each node's status, as events would report it.
        return run_admin(args, None).await;
    }
    let json = args.json;
    let mut h = crate::node::Handlers::builtin("admin");
    h.insert(crate::node::CLASS_EVENT_STREAM, move |body| {
        if let Ok(ev) = postcard::from_bytes::<crate::jobs::EventMsg>(&body) {
            println!("{}", event_line(&ev, json));
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

async fn run_set_status(args: AdminArgs, node: String, status: String) -> ExitCode {
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

async fn run_tasks(args: AdminArgs, node: String, class: Option<String>) -> ExitCode {
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
            let text = tasks
                .iter()
                .map(|(id, c)| format!("{id:<8} {c}"))
                .collect::<Vec<_>>()
                .join("\n");
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

async fn run_meta(
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

async fn run_send_file(args: AdminArgs, node: String, local: PathBuf, remote: String) -> ExitCode {
    use std::io::{IsTerminal, Write};
    let (n, _) = match admin_link(&args).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let bar = std::io::stderr().is_terminal() && !args.json;
    let started = std::time::Instant::now();
    let r = n
        .send_file(
            &node,
            &local,
            &remote,
            Duration::from_secs(60),
            |sent, total| {
                if bar {
                    let pct = (sent * 100).checked_div(total).unwrap_or(100);
                    let filled = usize::try_from(pct / 4).unwrap_or(25);
                    let mut e = std::io::stderr();
                    let _ = write!(
                        e,
                        "\r[{:<25}] {pct:>3}% {:.1}/{:.1} MiB",
                        "#".repeat(filled),
                        sent as f64 / 1048576.0,
                        total as f64 / 1048576.0
                    );
                    let _ = e.flush();
                }
            },
        )
        .await;
    if bar {
        eprintln!();
    }
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(size) => {
            let secs = started.elapsed().as_secs_f64();
            emit(
                &args,
                serde_json::json!({"node": node, "path": remote, "bytes": size, "seconds": secs}),
                &format!("{node}:{remote}: {size} bytes in {secs:.2} s"),
            )
        }
        Err(e) => admin_error(&node, &e),
    }
}

async fn run_call(args: AdminArgs, node: String, function: String, fargs: Vec<String>) -> ExitCode {
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
                println!("{v}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn run_admin(args: AdminArgs, id: Option<String>) -> ExitCode {
    let mut c = NodeConfig::new(format!("admin-{}", std::process::id()));
    c.admin = true;
    c.control = false;
    c.cluster_name = args.cluster_name.clone();
    c.password = args.password.clone();
    let node = match Node::start(c, env()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(1);
        }
    };
    let peer = match node.connect(&args.addr).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "nkcluster: cannot reach a control node at {}: {e}",
                args.addr
            );
            return ExitCode::from(1);
        }
    };
    let timeout = Duration::from_secs(10);
    let (class, body) = match &id {
        None => (crate::node::CLASS_NODES, bytes::Bytes::new()),
        Some(id) => (crate::node::CLASS_NODE_INFO, bytes::Bytes::from(id.clone())),
    };
    let reply = node.request(&peer.node_id, class, body, timeout).await;
    node.shutdown();
    let reply = match reply {
        Ok(r) => r,
        Err(e) if e.code() == "unknown_node" => {
            eprintln!("nkcluster: {e}");
            return ExitCode::from(4);
        }
        Err(e) => {
            eprintln!("nkcluster: {} did not answer: {e}", peer.node_id);
            return ExitCode::from(1);
        }
    };
    let rows: Vec<NodeRow> = match &id {
        None => postcard::from_bytes(&reply).map_err(|e| e.to_string()),
        Some(_) => postcard::from_bytes(&reply)
            .map(|r| vec![r])
            .map_err(|e| e.to_string()),
    }
    .unwrap_or_else(|e| {
        eprintln!("nkcluster: malformed answer from {}: {e}", peer.node_id);
        Vec::new()
    });
    if args.json {
        let text = match &id {
            None => serde_json::to_string_pretty(&rows),
            Some(_) => serde_json::to_string_pretty(&rows.first()),
        };
        match text {
            Ok(t) => println!("{t}"),
            Err(e) => {
                eprintln!("nkcluster: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_rows(&rows);
    }
    ExitCode::SUCCESS
}

fn print_rows(rows: &[NodeRow]) {
    println!(
        "{:<12} {:<8} {:<8} {:<10} {:<24} META",
        "ID", "ROLE", "STATUS", "OWNER", "REMOTE"
    );
    for r in rows {
        println!(
            "{:<12} {:<8} {:<8} {:<10} {:<24} {}",
            r.id, r.role, r.status, r.owner, r.remote, r.meta
        );
    }
}

fn env() -> Env<TokioNet> {
    Env {
        net: TokioNet,
        seed: None,
        wall_origin_ns: None,
    }
}

async fn run_dev(args: DevArgs) -> ExitCode {
    let dev1 = format!("nkcluster://127.0.0.1:{};transport=tcp", args.base_port);
    // Workers know every control node, so losing one never strands them.
    let controls = (0..3u16)
        .map(|k| {
            format!(
                "nkcluster://127.0.0.1:{};transport=tcp",
                args.base_port + 10 * k
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for i in 1..=5u16 {
        let mut c = NodeConfig::new(format!("dev{i}"));
        c.control = i <= 3;
        c.listen = if c.control {
            let port = args.base_port + 10 * (i - 1);
            match parse_url_list(&format!("nkcluster://127.0.0.1:{port};transport=tcp")) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("nkcluster dev: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            Vec::new()
        };
        if i > 3 {
            c.cluster_addr = parse_url_list(&controls).unwrap_or_default();
        } else if i > 1 {
            c.cluster_addr = parse_url_list(&dev1).unwrap_or_default();
        }
        let listen = c.listen.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        match Node::start(c, env()).await {
            Ok(n) => {
                println!(
                    "dev{i}  {:<8} {}",
                    if i <= 3 { "control" } else { "worker" },
                    if listen.is_empty() {
                        "(no listener)".into()
                    } else {
                        listen.join(", ")
                    }
                );
                nodes.push(n);
            }
            Err(e) => {
                eprintln!("nkcluster dev: dev{i}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Wait until the cluster has converged, then print the node table.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    let members = ["dev1", "dev2", "dev3"].map(String::from);
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members);
    // Converged: every control node sees the three members, and every worker is linked
    // to exactly one control node, its ring owner (its one proxy).
    let converged = |nodes: &[Node<TokioNet>]| {
        nodes[..3].iter().all(|n| n.members() == members)
            && nodes[3..].iter().all(|w| {
                let owner = ring.as_ref().and_then(|r| r.owner_of(w.node_id()));
                let holders: Vec<&str> = nodes[..3]
                    .iter()
                    .filter(|c| c.peers().iter().any(|p| p.node_id == w.node_id()))
                    .map(|c| c.node_id())
                    .collect();
                holders.len() == 1 && owner == Some(holders[0])
            })
    };
    while !converged(&nodes) && tokio::time::Instant::now() < deadline {
        // Any node event may complete convergence.
        let any = futures_util::future::select_all(events.iter_mut().map(|e| Box::pin(e.recv())));
        let _ = tokio::time::timeout_at(deadline, any).await;
    }
    if !converged(&nodes) {
        eprintln!("nkcluster dev: the cluster did not converge within 30 s (see the log)");
    }
    println!();
    print_rows(&nodes[0].cluster_nodes().await);
    println!("\nrunning; Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    for n in &nodes {
        n.shutdown_and_wait(Duration::from_secs(3)).await;
    }
    ExitCode::SUCCESS
}
