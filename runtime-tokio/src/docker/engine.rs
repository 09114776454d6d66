//! The Docker engine's API through `bollard`: one client per class, connected on first
//! use over the engine's Unix socket (`DOCKER_HOST=unix://…`, else
//! `/var/run/docker.sock`) with the API version negotiated (the engine may be older than
//! bollard's default). Every failure becomes a typed error ([`classify`]); every call but
//! the long ones (waiting for an exit, following events) has a deadline.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StatsOptions, StopContainerOptions,
    WaitContainerOptions,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::Mutex;

use nkcluster_core::docker::{
    ContainerInfo, LABEL_NODE, RunSpec, StatsInfo, classify, cpu_percent, grace_secs, labels,
    owned, task_of,
};
use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;

/// Deadline of an ordinary call (create, start, inspect, list, logs, ...).
const CALL: Duration = Duration::from_secs(60);
/// The client's own deadline: long, since waiting for an exit and following events last
/// as long as the container (the ordinary calls have [`CALL`]).
const CLIENT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A bollard error as a typed error.
pub(super) fn error(e: BollardError) -> RemoteError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => RemoteError::new(classify(Some(status_code), &message), message),
        other => {
            let msg = other.to_string();
            RemoteError::new(classify(None, &msg), format!("the Docker engine: {msg}"))
        }
    }
}

/// A container as [`Engine::owned`] finds it.
pub(super) struct Found {
    /// Its name (without the leading `/`).
    pub(super) name: String,
    /// The task that runs it, from its label.
    pub(super) task: Option<u64>,
    /// Whether it runs.
    pub(super) running: bool,
}

/// The class's engine client.
pub(super) struct Engine {
    client: Mutex<Option<Docker>>,
}

async fn deadline<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, RemoteError> {
    match tokio::time::timeout(CALL, f).await {
        Ok(r) => r.map_err(error),
        Err(_) => Err(RemoteError::new(
            ErrorCode::DockerUnavailable,
            format!(
                "the Docker engine did not answer {what} in {} s",
                CALL.as_secs()
            ),
        )),
    }
}

impl Engine {
    pub(super) fn new() -> Self {
        Engine {
            client: Mutex::new(None),
        }
    }

    /// The client, connected (and its version negotiated) on first use; a failure is
    /// `docker_unavailable` and the next call tries again.
    pub(super) async fn client(&self) -> Result<Docker, RemoteError> {
        let mut c = self.client.lock().await;
        if let Some(d) = &*c {
            return Ok(d.clone());
        }
        let unavailable = |m: String| {
            RemoteError::new(
                ErrorCode::DockerUnavailable,
                format!("no Docker engine: {m}"),
            )
        };
        let d = Docker::connect_with_unix_defaults()
            .map_err(|e| unavailable(e.to_string()))?
            .with_timeout(CLIENT);
        let d = match tokio::time::timeout(Duration::from_secs(10), d.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(unavailable(e.to_string())),
            Err(_) => return Err(unavailable("no answer in 10 s".into())),
        };
        *c = Some(d.clone());
        Ok(d)
    }

    /// The image's id (`image_not_found` when the engine has none of that name).
    pub(super) async fn check_image(&self, image: &str) -> Result<String, RemoteError> {
        let d = self.client().await?;
        let i = deadline("an image inspection", d.inspect_image(image)).await?;
        Ok(i.id.unwrap_or_default())
    }

    /// Creates node `node`'s container `name` for task `task` and starts it: its id.
    pub(super) async fn run(
        &self,
        node: &str,
        task: u64,
        name: &str,
        spec: &RunSpec,
    ) -> Result<String, RemoteError> {
        let d = self.client().await?;
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.ports {
            bindings
                .entry(p.container_key())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(p.host.to_string()),
                });
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(spec.env_list()),
            labels: Some(labels(node, task).into_iter().collect()),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(|p| p.container_key()).collect()),
            host_config: Some(HostConfig {
                // A PID 1 of its own that forwards SIGTERM: a stop ends the command at
                // once, not after the whole grace.
                init: Some(true),
                binds: (!spec.volumes.is_empty())
                    .then(|| spec.volumes.iter().map(|v| v.bind()).collect()),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = deadline("a create", d.create_container(Some(opts), body)).await?;
        if let Err(e) = deadline("a start", d.start_container(name, None)).await {
            self.remove(name, true).await;
            return Err(e);
        }
        Ok(created.id)
    }

    /// Waits for the container to exit: its exit code and whether memory ran out
    /// (`None`: it is gone, or the engine went away).
    pub(super) async fn wait(&self, name: &str) -> Option<(i64, bool)> {
        let d = self.client().await.ok()?;
        let mut s = d.wait_container(name, None::<WaitContainerOptions>);
        let waited = match s.next().await {
            Some(Ok(r)) => Some(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        };
        // The inspection has the authoritative code and the out-of-memory flag.
        match deadline(
            "an inspection",
            d.inspect_container(name, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(i) => {
                let st = i.state.unwrap_or_default();
                match (st.exit_code, waited) {
                    (Some(c), _) => Some((c, st.oom_killed.unwrap_or(false))),
                    (None, Some(c)) => Some((c, false)),
                    (None, None) => None,
                }
            }
            Err(_) => waited.map(|c| (c, false)),
        }
    }

    /// The container's engine events (their actions: `start`, `die`, ...).
    pub(super) async fn events(
        &self,
        name: &str,
    ) -> Result<impl Stream<Item = String> + use<>, RemoteError> {
        let d = self.client().await?;
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("container".to_owned(), vec![name.to_owned()]),
        ]);
        let s = d.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        Ok(s.filter_map(|e| async move { e.ok().and_then(|m| m.action) }))
    }

    /// Stops it: SIGTERM, SIGKILL after `grace` (the engine's stop answers when it ended).
    pub(super) async fn stop(&self, name: &str, grace: Duration) -> Result<(), RemoteError> {
        let d = self.client().await?;
        let opts = StopContainerOptions {
            t: Some(grace_secs(grace)),
            signal: None,
        };
        match tokio::time::timeout(grace + CALL, d.stop_container(name, Some(opts))).await {
            Ok(r) => r.map_err(error),
            Err(_) => Err(RemoteError::new(
                ErrorCode::DockerUnavailable,
                "the Docker engine did not stop it in time",
            )),
        }
    }

    /// SIGKILLs it.
    pub(super) async fn kill(&self, name: &str) -> Result<(), RemoteError> {
        let d = self.client().await?;
        deadline(
            "a kill",
            d.kill_container(name, Some(KillContainerOptions::default())),
        )
        .await
    }

    /// Removes it (and its anonymous volumes), `force`: even running. Gone already: done.
    pub(super) async fn remove(&self, name: &str, force: bool) {
        if let Err(e) = self.try_remove(name, force).await {
            if e.code != ErrorCode::ContainerNotFound {
                tracing::warn!(container = %name, error = %e, "cannot remove a container");
            }
        }
    }

    /// Removes it, saying why not.
    pub(super) async fn try_remove(&self, name: &str, force: bool) -> Result<(), RemoteError> {
        let d = self.client().await?;
        let opts = RemoveContainerOptions {
            v: true,
            force,
            link: false,
        };
        match deadline("a removal", d.remove_container(name, Some(opts))).await {
            // Being removed already (by the supervisor of its task): done.
            Err(e) if e.message.contains("already in progress") => Ok(()),
            r => r,
        }
    }

    /// Container `target` if it is node `node`'s (`container_not_found` otherwise).
    pub(super) async fn owned(&self, node: &str, target: &str) -> Result<Found, RemoteError> {
        let d = self.client().await?;
        let i = deadline(
            "an inspection",
            d.inspect_container(target, None::<InspectContainerOptions>),
        )
        .await?;
        let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
        let pairs = || labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if !owned(node, pairs()) {
            return Err(RemoteError::new(
                ErrorCode::ContainerNotFound,
                format!("container {target} is not one of node {node}'s"),
            ));
        }
        let name = i.name.unwrap_or_default();
        Ok(Found {
            name: name.trim_start_matches('/').to_owned(),
            task: task_of(pairs()),
            running: i.state.and_then(|s| s.running).unwrap_or(false),
        })
    }

    /// Its exit code (`None` while it runs or when unknown).
    pub(super) async fn exit_code(&self, name: &str) -> Option<i64> {
        let d = self.client().await.ok()?;
        let i = deadline(
            "an inspection",
            d.inspect_container(name, None::<InspectContainerOptions>),
        )
        .await
        .ok()?;
        let st = i.state?;
        if st.running == Some(true) {
            return None;
        }
        st.exit_code
    }

    /// Node `node`'s containers (running or not), by name.
    pub(super) async fn list(&self, node: &str) -> Result<Vec<ContainerInfo>, RemoteError> {
        let d = self.client().await?;
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{LABEL_NODE}={node}")],
            )])),
            ..Default::default()
        };
        let list = deadline("a list", d.list_containers(Some(opts))).await?;
        let mut out: Vec<ContainerInfo> = list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                ContainerInfo {
                    id: c.id.unwrap_or_default().chars().take(12).collect(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_owned(),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    task: task_of(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The last `lines` lines of its output (stdout and stderr).
    pub(super) async fn logs(&self, name: &str, lines: u32) -> Result<Vec<String>, RemoteError> {
        let d = self.client().await?;
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let collect = async {
            let mut s = d.logs(name, Some(opts));
            let mut bytes = Vec::new();
            while let Some(chunk) = s.next().await {
                bytes.extend_from_slice(&chunk?.into_bytes());
            }
            Ok(bytes)
        };
        let bytes = deadline("a logs request", collect).await?;
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines as usize);
        Ok(all[from..].iter().map(|l| (*l).to_owned()).collect())
    }

    /// One sample of its resource use (the engine takes two, a second apart, for the CPU).
    pub(super) async fn stats(&self, name: &str) -> Result<StatsInfo, RemoteError> {
        let d = self.client().await?;
        let opts = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let sample = async {
            match d.stats(name, Some(opts)).next().await {
                Some(r) => r.map(Some),
                None => Ok(None),
            }
        };
        let s = deadline("a stats request", sample)
            .await?
            .ok_or_else(|| RemoteError::new(ErrorCode::DockerError, "the engine sent no sample"))?;
        let cpu = s.cpu_stats.unwrap_or_default();
        let pre = s.precpu_stats.unwrap_or_default();
        let total = |c: &bollard::models::ContainerCpuStats| {
            c.cpu_usage
                .as_ref()
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let mem = s.memory_stats.unwrap_or_default();
        Ok(StatsInfo {
            cpu_percent: cpu_percent(
                total(&cpu),
                total(&pre),
                cpu.system_cpu_usage.unwrap_or(0),
                pre.system_cpu_usage.unwrap_or(0),
                cpu.online_cpus.unwrap_or(1),
            ),
            mem_bytes: mem.usage.unwrap_or(0),
            mem_limit: mem.limit.unwrap_or(0),
            pids: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
        })
    }
}
