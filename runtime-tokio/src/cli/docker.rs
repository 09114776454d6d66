//! `nkcluster docker run|ps|stop|kill|rm|logs|stats`: Docker containers on a node
//! through the `nkcluster.docker` class (see [`crate::docker`]). A container is named by
//! its name, its id, or the id of the task that runs it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::AdminArgs;
use super::admin::{admin_error, admin_link, emit};
use crate::docker::{
    CLASS, DockerClass, DockerReply, DockerRequest, PortMap, RunSpec, Volume, grace,
};

/// `nkcluster docker`.
#[derive(Debug, Subcommand)]
pub enum DockerCmd {
    /// Run a container as a task of its own (prints its task id and container name).
    Run(Box<RunArgs>),
    /// List the node's containers (those it started, running or not).
    Ps {
        /// Node id.
        node: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop a container (SIGTERM, SIGKILL after the grace) and remove it.
    Stop {
        /// Node id.
        node: String,
        /// Container name or id, or task id.
        container: String,
        /// Grace before SIGKILL, milliseconds (default: the one given at run, or 10 s).
        #[arg(long)]
        grace_ms: Option<u64>,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// SIGKILL a container (its task ends; the container is removed unless kept).
    Kill {
        /// Node id.
        node: String,
        /// Container name or id, or task id.
        container: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a container (`--force`: even running).
    Rm {
        /// Node id.
        node: String,
        /// Container name or id, or task id.
        container: String,
        /// Kill it first when it runs.
        #[arg(long)]
        force: bool,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the last lines of a container's output (stdout and stderr).
    Logs {
        /// Node id.
        node: String,
        /// Container name or id, or task id.
        container: String,
        /// How many lines.
        #[arg(long, default_value_t = 100)]
        lines: u32,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One sample of a container's CPU and memory use.
    Stats {
        /// Node id.
        node: String,
        /// Container name or id, or task id.
        container: String,
        /// Connection options.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `nkcluster docker run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Node id.
    pub node: String,
    /// Image (present on the node: nothing is pulled).
    pub image: String,
    /// A variable for the container, `NAME=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A published port, `HOST:CONTAINER[/udp]` (repeatable).
    #[arg(long = "publish", short = 'p', value_name = "HOST:CONTAINER")]
    pub ports: Vec<String>,
    /// A directory of the node mounted, `/HOST:/CONTAINER[:ro]` (repeatable).
    #[arg(long = "volume", short = 'v', value_name = "HOST:CONTAINER")]
    pub volumes: Vec<String>,
    /// Grace between SIGTERM and SIGKILL when stopping, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// Keep the container when its task ends (removed by default).
    #[arg(long)]
    pub keep: bool,
    /// The command and its arguments (after `--`; the image's own when none).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Connection options.
    #[command(flatten)]
    pub admin: AdminArgs,
}

const T: Duration = Duration::from_secs(70);

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("nkcluster: {e}");
    ExitCode::from(2)
}

fn spec(a: &RunArgs) -> Result<RunSpec, ExitCode> {
    let mut env = Vec::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(usage(format!("--env takes NAME=VALUE, not {kv:?}")));
        };
        env.push((k.to_owned(), v.to_owned()));
    }
    let ports = a
        .ports
        .iter()
        .map(|p| PortMap::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(e.message))?;
    let volumes = a
        .volumes
        .iter()
        .map(|v| Volume::parse(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(e.message))?;
    let spec = RunSpec {
        image: a.image.clone(),
        command: a.command.clone(),
        env,
        ports,
        volumes,
        grace_ms: Some(a.grace_ms),
        keep: a.keep,
    };
    spec.validate().map_err(|e| usage(e.message))?;
    Ok(spec)
}

fn unexpected(node: &str) -> ExitCode {
    eprintln!("nkcluster: {node}: unexpected reply");
    ExitCode::from(1)
}

/// `nkcluster docker ...`.
pub(super) async fn run_docker(cmd: DockerCmd) -> ExitCode {
    match cmd {
        DockerCmd::Run(a) => run(*a).await,
        DockerCmd::Ps { node, admin } => {
            request(&admin, &node, DockerRequest::List, T, |r| match r {
                DockerReply::List(list) => {
                    let mut lines = vec![format!(
                        "{:<13} {:<25} {:<6} {:<9} {:<20} IMAGE",
                        "ID", "NAME", "TASK", "STATE", "STATUS"
                    )];
                    for c in &list {
                        let task = c.task.map_or("-".to_owned(), |t| t.to_string());
                        lines.push(format!(
                            "{:<13} {:<25} {:<6} {:<9} {:<20} {}",
                            c.id, c.name, task, c.state, c.status, c.image
                        ));
                    }
                    if list.is_empty() {
                        lines.push("(none)".into());
                    }
                    let v = serde_json::json!(
                        list.iter()
                            .map(|c| serde_json::json!({
                                "id": c.id, "name": c.name, "task": c.task, "image": c.image,
                                "state": c.state, "status": c.status,
                            }))
                            .collect::<Vec<_>>()
                    );
                    Some((v, lines.join("\n")))
                }
                _ => None,
            })
            .await
        }
        DockerCmd::Stop {
            node,
            container,
            grace_ms,
            admin,
        } => {
            let wait = grace(grace_ms.or(Some(u64::MAX))) + T;
            let req = DockerRequest::Stop {
                target: container.clone(),
                grace_ms,
            };
            request(&admin, &node, req, wait, |r| match r {
                DockerReply::Stopped(reason) => Some((
                    serde_json::json!({"node": node, "container": container, "reason": reason}),
                    format!("{container} {reason}"),
                )),
                _ => None,
            })
            .await
        }
        DockerCmd::Kill {
            node,
            container,
            admin,
        } => {
            let req = DockerRequest::Kill {
                target: container.clone(),
            };
            done(&admin, &node, req, &format!("{container} killed")).await
        }
        DockerCmd::Rm {
            node,
            container,
            force,
            admin,
        } => {
            let req = DockerRequest::Remove {
                target: container.clone(),
                force,
            };
            done(&admin, &node, req, &format!("{container} removed")).await
        }
        DockerCmd::Logs {
            node,
            container,
            lines,
            admin,
        } => {
            let req = DockerRequest::Logs {
                target: container,
                lines,
            };
            request(&admin, &node, req, T, |r| match r {
                DockerReply::Logs(l) => Some((serde_json::json!(l), l.join("\n"))),
                _ => None,
            })
            .await
        }
        DockerCmd::Stats {
            node,
            container,
            admin,
        } => {
            let req = DockerRequest::Stats { target: container };
            request(&admin, &node, req, T, |r| match r {
                DockerReply::Stats(s) => Some((
                    serde_json::json!({
                        "cpu_percent": s.cpu_percent, "mem_bytes": s.mem_bytes,
                        "mem_limit": s.mem_limit, "pids": s.pids,
                    }),
                    format!(
                        "cpu {:.1}% mem {} / {} bytes pids {}",
                        s.cpu_percent, s.mem_bytes, s.mem_limit, s.pids
                    ),
                )),
                _ => None,
            })
            .await
        }
    }
}

async fn run(a: RunArgs) -> ExitCode {
    let spec = match spec(&a) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let (n, _) = match admin_link(&a.admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let opts = crate::node::RequestOptions {
        timeout: T,
        exclusive: false,
    };
    // The image first: `image_not_found` (or `docker_unavailable`) before any task.
    let check = DockerRequest::Check {
        image: spec.image.clone(),
    };
    let r = match n
        .job_request::<DockerClass>(&a.node, CLASS, &check, opts)
        .await
    {
        Ok(_) => n.start_task::<DockerClass>(&a.node, CLASS, &spec, T).await,
        Err(e) => Err(e),
    };
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r {
        Ok((task, Some(DockerReply::Accepted { container }))) => emit(
            &a.admin,
            serde_json::json!({"node": a.node, "task": task, "container": container}),
            &format!("task {task} container {container}"),
        ),
        Ok(_) => unexpected(&a.node),
        Err(e) => admin_error(&a.node, &e),
    }
}

async fn done(admin: &AdminArgs, node: &str, req: DockerRequest, text: &str) -> ExitCode {
    request(admin, node, req, T, |r| match r {
        DockerReply::Done => Some((serde_json::json!({"node": node, "done": true}), text.into())),
        _ => None,
    })
    .await
}

async fn request(
    admin: &AdminArgs,
    node: &str,
    req: DockerRequest,
    timeout: Duration,
    show: impl FnOnce(DockerReply) -> Option<(serde_json::Value, String)>,
) -> ExitCode {
    let (n, _) = match admin_link(admin).await {
        Ok(l) => l,
        Err(c) => return c,
    };
    let opts = crate::node::RequestOptions {
        timeout,
        exclusive: false,
    };
    let r = n.job_request::<DockerClass>(node, CLASS, &req, opts).await;
    n.shutdown_and_wait(Duration::from_secs(1)).await;
    match r.map(show) {
        Ok(Some((v, text))) => emit(admin, v, &text),
        Ok(None) => unexpected(node),
        Err(e) => admin_error(node, &e),
    }
}
