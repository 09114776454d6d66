//! The `nkcluster` command: `node` runs a daemon, `dev` runs a local quick-start cluster.
//!
//! Exit codes: 0 on a clean stop, 2 for a configuration error, 3 when a node gives up
//! connecting to its cluster (`--connect-attempts` spent; the log says why). The admin
//! commands' codes are listed in [`admin`].
//!
//! - [`daemon`]: `node` and `dev`.
//! - [`admin`]: the admin client commands.
//! - [`proc`]: `exec` and `proc` (OS processes on a node).
//! - [`load`]: `load`, code over the wire (WebAssembly).
//! - [`docker`]: `docker` (Docker containers on a node).

/// Prints a line on stdout; a closed stdout (`nkcluster events | head -1`) ends the
/// command quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod admin;
mod daemon;
mod docker;
mod lifecycle;
pub mod load;
mod proc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{NodeConfig, RawOptions};
use crate::net::TokioNet;
use crate::node::Env;
use admin::{run_admin, run_call, run_events, run_meta, run_send_file, run_set_status, run_tasks};
use daemon::{run_dev, run_node};

/// nkcluster: clusters of control and worker nodes that run jobs.
#[derive(Debug, Parser)]
#[command(name = "nkcluster", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Cmd,
    /// Log lines as text (`key=value` fields) or as one JSON object per line (the
    /// fields at the top level: node, peer, remote (transport:address), code, ...).
    #[arg(long, global = true, env = "NKCLUSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written (stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO target: message key=value ...`
    Text,
    /// `{"timestamp":..,"level":"INFO","message":..,"node":..,..}`
    Json,
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
    /// Set a node's status: ready, standby, stopping or stopped.
    SetStatus {
        /// Node id.
        node: String,
        /// New status: `ready` (takes tasks), `standby` (runs its tasks, takes no new
        /// ones), `stopping` (its tasks are told to stop; `stopped` once they have),
        /// `stopped` (the same, as one step).
        #[arg(value_parser = ["ready", "standby", "stopping", "stopped"])]
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
    /// Print the cluster's job events (task_started, task_stopped, node_status and the
    /// classes' own): the recent ones, or with `--follow` as they happen.
    Events {
        /// Keep streaming until interrupted.
        #[arg(long)]
        follow: bool,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the control node reached by `--addr` join the control cluster at a URL
    /// (no-discovery mode: without `cluster_addr` nothing is dialed by itself).
    Join {
        /// A control node of the cluster to join (discovery looks up what it leaves out).
        url: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the cluster dial a listening worker at a URL; its proxy then moves to its
    /// owner (no-discovery mode).
    Connect {
        /// The worker's listen URL.
        url: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Forget a worker whose link is lost (`not_connected`) at every control node; a
    /// connected one is refused unless `--force` (its links are then closed).
    Remove {
        /// Node id.
        node: String,
        /// Remove it even while it is connected.
        #[arg(long)]
        force: bool,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Load a WebAssembly module (`.wasm`, or `.wat` text) on a node as the function
    /// `--name` (then `call NODE NAME ARGS…`).
    Load(load::LoadArgs),
    /// Call a named function on a node (built in: `node`, `echo`) and print its result.
    #[command(allow_negative_numbers = true)]
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
    /// Run a command on a node to completion: prints its output, exits with its code.
    Exec(Box<proc::ExecArgs>),
    /// OS processes on a node: start, stop, list, logs.
    #[command(subcommand)]
    Proc(proc::ProcCmd),
    /// Docker containers on a node: run, ps, stop, kill, rm, logs, stats.
    #[command(subcommand)]
    Docker(docker::DockerCmd),
}

/// How the admin commands reach a control node.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Control node URL(s), tried in order (default: dev1 of the quick start, then a
    /// daemon on its default listener on this host).
    #[arg(
        long,
        env = "NKCLUSTER_ADDR",
        default_value = "nkcluster://127.0.0.1:1972;transport=tcp, nkcluster://127.0.0.1;transport=tls"
    )]
    pub addr: String,
    /// Password.
    #[arg(long, env = "NKCLUSTER_PASSWORD", hide_env_values = true, default_value = crate::config::DEFAULT_PASSWORD)]
    pub password: String,
    /// Cluster name.
    #[arg(long, env = "NKCLUSTER_CLUSTER_NAME", default_value = crate::config::DEFAULT_CLUSTER)]
    pub cluster_name: String,
    /// PBKDF2 rounds of the password key (the cluster's `key_iterations`).
    #[arg(long, env = "NKCLUSTER_KEY_ITERATIONS", default_value_t = nkcluster_core::auth::KEY_ITERATIONS)]
    pub key_iterations: u32,
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
    /// Cluster name [default: nkcluster].
    #[arg(long, env = "NKCLUSTER_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Password of the cluster [default: nkcluster]: the control cluster's secret, which
    /// control members and admin clients prove (a worker proves --worker-password).
    #[arg(long, env = "NKCLUSTER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The workers' secret: workers prove it, control nodes accept it for the worker
    /// role only [default: --password, which then lets any worker act as control or
    /// admin].
    #[arg(long, env = "NKCLUSTER_WORKER_PASSWORD", hide_env_values = true)]
    pub worker_password: Option<String>,
    /// Listen URLs, e.g. `nkcluster://all:1972;transport=tcp`; an empty string: no
    /// listener [default: nkcluster://all;transport=tls (port 1973)].
    #[arg(long, env = "NKCLUSTER_LISTEN")]
    pub listen: Option<String>,
    /// Control nodes to connect to [default: none]. A name is resolved by DNS discovery
    /// (no port nor transport: NAPTR then SRV; a transport: SRV; a port: A/AAAA) and all
    /// addresses are tried one at a time in a shuffled order.
    #[arg(long, env = "NKCLUSTER_CLUSTER_ADDR")]
    pub cluster_addr: Option<String>,
    /// The one name server discovery asks, `HOST:PORT` with an IP as host [default: the
    /// system's configuration].
    #[arg(long, env = "NKCLUSTER_DNS_SERVER")]
    pub dns_server: Option<String>,
    /// Whether this node has the control role (`true` or `false`; the original's name
    /// `is_control` works too: `--is-control`, `NKCLUSTER_IS_CONTROL`) [default: true].
    #[arg(
        long,
        env = "NKCLUSTER_CONTROL",
        alias = "is-control",
        alias = "is_control"
    )]
    pub control: Option<bool>,
    /// Metadata, e.g. `core;group=g1;master, m2;a=1` [default: none].
    #[arg(long, env = "NKCLUSTER_META")]
    pub meta: Option<String>,
    /// Give up (exit 3) after this many rounds of failed connection attempts
    /// [default: never].
    #[arg(long, env = "NKCLUSTER_CONNECT_ATTEMPTS")]
    pub connect_attempts: Option<u32>,
    /// Ping interval in milliseconds [default: 5000].
    #[arg(long, env = "NKCLUSTER_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Idle timeout in milliseconds (the link dies when nothing arrives for this long)
    /// [default: 15000].
    #[arg(long, env = "NKCLUSTER_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Maximum frame body in bytes [default: 8388608].
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
    /// Maximum intermediate certificates when verifying [default: unlimited].
    #[arg(long, env = "NKCLUSTER_TLS_DEPTH")]
    pub tls_depth: Option<u8>,
    /// Ring partitions (a power of two, default 4096; all control nodes must agree).
    #[arg(long, env = "NKCLUSTER_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Control nodes: membership gossip at most this often, in milliseconds (news in
    /// between goes together) [default: 0, at once].
    #[arg(long, env = "NKCLUSTER_GOSSIP_EVERY_MS")]
    pub gossip_every_ms: Option<u64>,
    /// Control nodes: place member changes on the ring this many milliseconds after the
    /// first one (changes in between make one placement) [default: 0, at once].
    #[arg(long, env = "NKCLUSTER_RING_SETTLE_MS")]
    pub ring_settle_ms: Option<u64>,
    /// Accepted connections that may be authenticating at once (default 1024); the
    /// excess is refused at accept.
    #[arg(long, env = "NKCLUSTER_MAX_HANDSHAKES")]
    pub max_handshakes: Option<usize>,
    /// The same, from one source address (default 256).
    #[arg(long, env = "NKCLUSTER_MAX_HANDSHAKES_PER_SOURCE")]
    pub max_handshakes_per_source: Option<usize>,
    /// Where received files land; paths outside it are refused [default: ./files].
    #[arg(long, env = "NKCLUSTER_FILES_DIR")]
    pub files_dir: Option<String>,
    /// A file transfer that receives nothing for this long ends (its `.part` file is
    /// removed, its slot freed) [default: 60000].
    #[arg(long, env = "NKCLUSTER_TRANSFER_IDLE_MS")]
    pub transfer_idle_ms: Option<u64>,
    /// How far below requests a file's bulk threads run: `idle` (SCHED_IDLE: requests
    /// first, but a transfer nearly stops while the node's CPUs are busy), `low` (nice
    /// 10: a transfer keeps a share of busy CPUs) or `normal` [default: idle].
    #[arg(long, env = "NKCLUSTER_BULK_PRIORITY")]
    pub bulk_priority: Option<String>,
    /// Events a worker keeps while it has no control link (its tasks keep running; on
    /// the next link they are sent, after `events_lost` for the oldest dropped beyond
    /// this) [default: 10000; 0: none kept].
    #[arg(long, env = "NKCLUSTER_EVENT_BUFFER")]
    pub event_buffer: Option<usize>,
    /// PBKDF2 rounds deriving the password keys; every node of the cluster and its
    /// admin clients must use the same [default: 600000; at least 1000].
    #[arg(long, env = "NKCLUSTER_KEY_ITERATIONS")]
    pub key_iterations: Option<u32>,
    /// Fuel each call of a module loaded with `nkcluster load` may burn, about one unit
    /// per WebAssembly instruction; a call that runs out ends with `out_of_fuel`
    /// [default: 50000000].
    #[arg(long, env = "NKCLUSTER_WASM_FUEL")]
    pub wasm_fuel: Option<u64>,
    /// Serve HTTP at `IP:PORT`: Prometheus metrics at `/metrics`, the dashboard at `/`
    /// [default: off].
    #[arg(long, env = "NKCLUSTER_HTTP")]
    pub http: Option<String>,
}

impl NodeArgs {
    fn raw(&self) -> RawOptions {
        // The original's name for `control`, from the environment (the flag is an alias).
        let is_control = || {
            std::env::var("NKCLUSTER_IS_CONTROL")
                .ok()
                .and_then(|v| v.trim().parse::<bool>().ok())
        };
        RawOptions {
            cluster_name: self.cluster_name.clone(),
            node_id: self.node_id.clone(),
            password: self.password.clone(),
            worker_password: self.worker_password.clone(),
            listen: self.listen.clone(),
            cluster_addr: self.cluster_addr.clone(),
            control: self.control.or_else(is_control),
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
            gossip_every_ms: self.gossip_every_ms,
            ring_settle_ms: self.ring_settle_ms,
            tls_depth: self.tls_depth,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_source: self.max_handshakes_per_source,
            files_dir: self.files_dir.clone(),
            transfer_idle_ms: self.transfer_idle_ms,
            bulk_priority: self.bulk_priority.clone(),
            dns_server: self.dns_server.clone(),
            event_buffer: self.event_buffer,
            key_iterations: self.key_iterations,
            wasm_fuel: self.wasm_fuel,
            http: self.http.clone(),
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
    /// dev1 serves its dashboard and metrics on 127.0.0.1 at this port, dev2 and dev3 on
    /// the next two (0: no HTTP).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
}

fn default_node_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn init_logs(default: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // NKCLUSTER_LOG, else RUST_LOG, else the default; a filter that does not parse is
    // reported, not silently replaced.
    let (var, text) = match (std::env::var("NKCLUSTER_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("NKCLUSTER_LOG", v),
        (_, Ok(v)) => ("RUST_LOG", v),
        _ => ("", String::new()),
    };
    let filter = if var.is_empty() {
        EnvFilter::new(default)
    } else {
        EnvFilter::try_new(&text).unwrap_or_else(|e| {
            eprintln!(
                "nkcluster: invalid {var} filter {text:?}: {e}; logging at {default:?} instead \
                 (examples: info, debug, info,nkcluster=debug)"
            );
            EnvFilter::new(default)
        })
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => fmt.try_init(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons log at info; admin commands print their own results and errors.
    init_logs(
        match cli.command {
            Cmd::Node(_) | Cmd::Dev(_) => "info",
            Cmd::Nodes(_)
            | Cmd::NodeInfo { .. }
            | Cmd::Call { .. }
            | Cmd::SetStatus { .. }
            | Cmd::Tasks { .. }
            | Cmd::Meta { .. }
            | Cmd::SendFile { .. }
            | Cmd::Join { .. }
            | Cmd::Connect { .. }
            | Cmd::Remove { .. }
            | Cmd::Events { .. }
            | Cmd::Exec(_)
            | Cmd::Proc(_)
            | Cmd::Load(_)
            | Cmd::Docker(_) => "off",
        },
        cli.log_format,
    );
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
            Cmd::Load(args) => load::run_load(args).await,
            Cmd::Join { url, admin } => lifecycle::run_dial(admin, url, true).await,
            Cmd::Connect { url, admin } => lifecycle::run_dial(admin, url, false).await,
            Cmd::Remove { node, force, admin } => lifecycle::run_remove(admin, node, force).await,
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
            Cmd::Exec(a) => proc::run_exec(*a).await,
            Cmd::Proc(c) => proc::run_proc(c).await,
            Cmd::Docker(c) => docker::run_docker(c).await,
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

fn env() -> Env<TokioNet> {
    Env::real()
}
