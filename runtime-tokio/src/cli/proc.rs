//! `nkcluster exec` and `nkcluster proc start|stop|list|logs`: OS processes on a node
//! through the `nkcluster.os` class (see [`crate::os`]).
//!
//! `exec` prints the command's stdout and stderr and exits with its code (128 + the
//! signal when a signal ended it, 124 when it ran past `--timeout-ms`); its own failures
//! use the admin codes (1, 2, 4).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::AdminArgs;
use super::admin::{admin_error, admin_link, emit};
use crate::os::{
    CLASS, Command, ExecSpec, Limits, OsClass, OsCommand, OsReply, OsRequest, ProcSpec,
    RestartMode, RestartPolicy,
};

/// Exit code of `exec` when the command ran past its timeout.
const EXIT_TIMEOUT: u8 = 124;

/// What to run, as `exec` and `proc start` take it.
#[derive(Debug, Args)]
pub struct CommandArgs {
    /// A variable for the command, `NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory on the node.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// CPU time limit, seconds.
    #[arg(long)]
    pub cpu_secs: Option<u64>,
    /// Memory (address space) limit, bytes.
    #[arg(long)]
    pub mem_bytes: Option<u64>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

impl CommandArgs {
    fn command(&self) -> Result<Command, ExitCode> {
        let mut env = Vec::new();
        for kv in &self.env {
            let Some((k, v)) = kv.split_once('=') else {
                eprintln!("nkcluster: --env takes NAME=VALUE, not {kv:?}");
                return Err(ExitCode::from(2));
            };
            env.push((k.to_owned(), v.to_owned()));
        }
        Ok(Command {
            argv: self.argv.clone(),
            env,
            cwd: self.cwd.as_ref().map(|p| p.display().to_string()),
            limits: Limits {
                cpu_secs: self.cpu_secs,
                mem_bytes: self.mem_bytes,
            },
        })
    }
}

/// `nkcluster exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Node id.
    pub node: String,
    /// Kill the command (its whole process group) after this many milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// What to run.
    #[command(flatten)]
    pub cmd: CommandArgs,
    /// Connection options.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `nkcluster proc`.
#[derive(Debug, Subcommand)]
pub enum ProcCmd {
    /// Start a command as a task of its own (prints its task id and pid).
    Start(Box<StartArgs>),
    /// Stop a process task: SIGTERM to its process group, SIGKILL after the grace.
    Stop {
        /// Node id.
        node: String,
        /// Task id.
        task: u64,
        /// Grace before SIGKILL, milliseconds (default: the one given at start).
        #[arg(long)]
        grace_ms: Option<u64>,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the process tasks of a node.
    List {
        /// Node id.
        node: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the last lines of a process task's output (stdout and stderr).
    Logs {
        /// Node id.
        node: String,
        /// Task id.
        task: u64,
        /// How many lines.
        #[arg(long, default_value_t = 100)]
        lines: u32,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `nkcluster proc start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Node id.
    pub node: String,
    /// Restart policy: never, on-failure, always.
    #[arg(long, default_value = "never", value_parser = ["never", "on-failure", "always"])]
    pub restart: String,
    /// Restarts at most (after the first run).
    #[arg(long, default_value_t = 3)]
    pub max_restarts: u32,
    /// Wait before the first restart, milliseconds (doubled each time, up to 5 min).
    #[arg(long, default_value_t = 1000)]
    pub backoff_ms: u64,
    /// Grace between SIGTERM and SIGKILL when stopping, milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// Output kept for `proc logs`, bytes (at most 16 MiB).
    #[arg(long, default_value_t = nkcluster_core::os::DEFAULT_BUFFER_BYTES)]
    pub buffer_bytes: u64,
    /// Also send each output line as an event (see `nkcluster events`).
    #[arg(long)]
    pub stream: bool,
    /// What to run.
    #[command(flatten)]
    pub cmd: CommandArgs,
    /// Connection options.
    #[command(flatten)]
    pub admin: AdminArgs,
}

const T: Duration = Duration::from_secs(10);

/// `nkcluster exec`.
pub(super) async fn run_exec(a: ExecArgs) -> ExitCode {
    let command = match a.cmd.command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (n, _) = match admin_link(&a.admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let req = OsRequest::Exec(ExecSpec {
        command,
        timeout_ms: Some(a.timeout_ms),
    });
    let opts = crate::node::RequestOptions {
        timeout: Duration::from_millis(a.timeout_ms) + T,
        exclusive: false,
    };
    let r = n.job_request::<OsClass>(&a.node, CLASS, &req, opts).await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(OsReply::Exec(res)) => {
            if a.admin.json {
                let v = serde_json::json!({
                    "node": a.node,
                    "status": res.status.describe(),
                    "code": res.status.shell_code(),
                    "stdout": String::from_utf8_lossy(&res.stdout),
                    "stderr": String::from_utf8_lossy(&res.stderr),
                    "truncated": res.truncated,
                });
                emit(&a.admin, v, "");
            } else {
                let _ = std::io::stdout().write_all(&res.stdout);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(&res.stderr);
                if res.truncated {
                    eprintln!("nkcluster: output truncated");
                }
            }
            ExitCode::from(u8::try_from(res.status.shell_code()).unwrap_or(255))
        }
        Ok(_) => unexpected(&a.node),
        Err(e) if e.code() == "exec_timeout" => {
            eprintln!("nkcluster: {}: {e}", a.node);
            ExitCode::from(EXIT_TIMEOUT)
        }
        Err(e) => admin_error(&a.node, &e),
    }
}

fn unexpected(node: &str) -> ExitCode {
    eprintln!("nkcluster: {node}: unexpected reply");
    ExitCode::from(1)
}

/// `nkcluster proc ...`.
pub(super) async fn run_proc(cmd: ProcCmd) -> ExitCode {
    match cmd {
        ProcCmd::Start(a) => start(*a).await,
        ProcCmd::Stop {
            node,
            task,
            grace_ms,
            admin,
        } => {
            let grace = nkcluster_core::os::grace(grace_ms.or(Some(u64::MAX)));
            let c = OsCommand::Stop { grace_ms };
            command(&admin, &node, task, c, grace + T, |r| match r {
                OsReply::Stopped(reason) => Some((
                    serde_json::json!({"node": node, "task": task, "reason": reason}),
                    format!("task {task} {reason}"),
                )),
                _ => None,
            })
            .await
        }
        ProcCmd::Logs {
            node,
            task,
            lines,
            admin,
        } => {
            command(
                &admin,
                &node,
                task,
                OsCommand::Tail { lines },
                T,
                |r| match r {
                    OsReply::Tail(l) => Some((serde_json::json!(l), l.join("\n"))),
                    _ => None,
                },
            )
            .await
        }
        ProcCmd::List { node, admin } => list(&admin, &node).await,
    }
}

async fn start(a: StartArgs) -> ExitCode {
    let command = match a.cmd.command() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let spec = ProcSpec {
        command,
        restart: RestartPolicy {
            mode: RestartMode::parse(&a.restart).unwrap_or_default(),
            max_restarts: a.max_restarts,
            backoff_ms: a.backoff_ms,
        },
        grace_ms: Some(a.grace_ms),
        stream_lines: a.stream,
        buffer_bytes: Some(a.buffer_bytes),
    };
    let (n, _) = match admin_link(&a.admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = n.start_task::<OsClass>(&a.node, CLASS, &spec, T).await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok((task, Some(OsReply::Started { pid }))) => emit(
            &a.admin,
            serde_json::json!({"node": a.node, "task": task, "pid": pid}),
            &format!("task {task} pid {pid}"),
        ),
        Ok(_) => unexpected(&a.node),
        Err(e) => admin_error(&a.node, &e),
    }
}

async fn command(
    admin: &AdminArgs,
    node: &str,
    task: u64,
    cmd: OsCommand,
    timeout: Duration,
    show: impl FnOnce(OsReply) -> Option<(serde_json::Value, String)>,
) -> ExitCode {
    let (n, _) = match admin_link(admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let r = n.command::<OsClass>(node, CLASS, task, &cmd, timeout).await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r.map(show) {
        Ok(Some((v, text))) => emit(admin, v, &text),
        Ok(None) => unexpected(node),
        Err(e) => admin_error(node, &e),
    }
}

async fn list(admin: &AdminArgs, node: &str) -> ExitCode {
    let (n, _) = match admin_link(admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let opts = crate::node::RequestOptions {
        timeout: T,
        exclusive: false,
    };
    let r = n
        .job_request::<OsClass>(node, CLASS, &OsRequest::List, opts)
        .await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok(OsReply::List(procs)) => {
            let mut lines = vec![format!(
                "{:<8} {:<8} {:<9} {:<11} COMMAND",
                "TASK", "PID", "RESTARTS", "STATE"
            )];
            for p in &procs {
                let pid = p.pid.map_or("-".to_owned(), |p| p.to_string());
                lines.push(format!(
                    "{:<8} {:<8} {:<9} {:<11} {}",
                    p.task,
                    pid,
                    p.restarts,
                    p.state,
                    p.argv.join(" ")
                ));
            }
            if procs.is_empty() {
                lines.push("(none)".into());
            }
            let v = serde_json::json!(
                procs
                    .iter()
                    .map(|p| serde_json::json!({
                        "task": p.task, "pid": p.pid, "restarts": p.restarts,
                        "state": p.state, "argv": p.argv,
                    }))
                    .collect::<Vec<_>>()
            );
            emit(admin, v, &lines.join("\n"))
        }
        Ok(_) => unexpected(node),
        Err(e) => admin_error(node, &e),
    }
}
