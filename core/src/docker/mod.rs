//! Docker containers, the built-in job class `nkcluster.docker`: its wire types (what an
//! admin client sends a node and hears back) and its decisions, deterministic and
//! unit-tested: what may be run ([`RunSpec::validate`], the port and volume syntax), the
//! name and labels a node gives its containers ([`container_name`], [`labels`],
//! [`resolve_target`], [`owned`]), what a container's state change means for its task
//! ([`Supervision`]: a state for each engine event, the task's reason once it exited),
//! the limit on containers per node ([`ContainerTable`]), which error code an engine
//! failure is ([`classify`]) and the CPU figure of `stats` ([`cpu_percent`]). The tokio
//! shell (`nkcluster::docker`) makes the engine calls (through `bollard`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::message::RemoteError;

/// The class name.
pub const CLASS: &str = "nkcluster.docker";
/// The label naming the node that started a container.
pub const LABEL_NODE: &str = "nkcluster.node";
/// The label naming the task that runs a container.
pub const LABEL_TASK: &str = "nkcluster.task";
/// Grace between SIGTERM and SIGKILL when the caller names none (the engine's own).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Longest grace a caller may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(600);
/// Containers (running tasks) a node runs at most.
pub const DEFAULT_MAX_CONTAINERS: usize = 32;
/// Lines `logs` returns at most.
pub const MAX_TAIL_LINES: u32 = 10_000;

fn bad(msg: impl Into<String>) -> RemoteError {
    RemoteError::new(ErrorCode::BadRequest, msg)
}

/// A published port: `host` on the node to `container` in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Port on the node.
    pub host: u16,
    /// Port in the container.
    pub container: u16,
    /// UDP instead of TCP.
    pub udp: bool,
}

impl PortMap {
    /// `8080:80` or `5353:53/udp`.
    pub fn parse(s: &str) -> Result<Self, RemoteError> {
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, false),
            Some((p, "udp")) => (p, true),
            Some(_) => return Err(bad(format!("port {s:?}: the protocol is tcp or udp"))),
            None => (s, false),
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(format!(
                "port {s:?}: HOST:CONTAINER[/udp], ports 1-65535"
            ))),
        };
        let Some((h, c)) = ports.split_once(':') else {
            return Err(bad(format!("port {s:?}: HOST:CONTAINER[/udp]")));
        };
        Ok(PortMap {
            host: port(h)?,
            container: port(c)?,
            udp: proto,
        })
    }

    /// The engine's key of the container side: `80/tcp`.
    pub fn container_key(&self) -> String {
        format!(
            "{}/{}",
            self.container,
            if self.udp { "udp" } else { "tcp" }
        )
    }
}

/// A directory of the node mounted in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute path on the node.
    pub host: String,
    /// Absolute path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// `/srv/data:/data` or `/srv/data:/data:ro`.
    pub fn parse(s: &str) -> Result<Self, RemoteError> {
        let mut parts = s.split(':');
        let (Some(h), Some(c)) = (parts.next(), parts.next()) else {
            return Err(bad(format!("volume {s:?}: HOST:CONTAINER[:ro]")));
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(o) => return Err(bad(format!("volume {s:?}: unknown mode {o:?}"))),
        };
        if parts.next().is_some() {
            return Err(bad(format!("volume {s:?}: HOST:CONTAINER[:ro]")));
        }
        let v = Volume {
            host: h.to_owned(),
            container: c.to_owned(),
            read_only,
        };
        v.validate()?;
        Ok(v)
    }

    fn validate(&self) -> Result<(), RemoteError> {
        for p in [&self.host, &self.container] {
            if !p.starts_with('/') || p.contains(':') || p.contains('\0') {
                return Err(bad(format!("volume path {p:?}: absolute, without ':'")));
            }
        }
        Ok(())
    }

    /// The engine's bind: `/srv/data:/data:ro`.
    pub fn bind(&self) -> String {
        let mode = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{mode}", self.host, self.container)
    }
}

/// A container task's specification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Image (present in the node's engine: nothing is pulled).
    pub image: String,
    /// Command and arguments (the image's own when empty).
    pub command: Vec<String>,
    /// Variables set in the container.
    pub env: Vec<(String, String)>,
    /// Published ports.
    pub ports: Vec<PortMap>,
    /// Mounted directories.
    pub volumes: Vec<Volume>,
    /// Grace between SIGTERM and SIGKILL on a stop, milliseconds ([`DEFAULT_GRACE`] when
    /// `None`).
    pub grace_ms: Option<u64>,
    /// Keep the container once its task ended (removed by default).
    pub keep: bool,
}

impl RunSpec {
    /// A spec of `image`, nothing else set.
    pub fn new(image: impl Into<String>) -> Self {
        RunSpec {
            image: image.into(),
            ..Default::default()
        }
    }

    /// `bad_request` unless it can be run: an image name without spaces or NUL bytes, no
    /// NUL byte anywhere, variable names without `=`, valid ports (each host port once)
    /// and absolute volume paths.
    pub fn validate(&self) -> Result<(), RemoteError> {
        if self.image.is_empty()
            || self
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad(format!("invalid image name {:?}", self.image)));
        }
        let nul = |s: &String| s.contains('\0');
        if self.command.iter().any(nul) || self.env.iter().any(|(k, v)| nul(k) || nul(v)) {
            return Err(bad("a NUL byte in the command"));
        }
        if let Some((k, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('='))
        {
            return Err(bad(format!("invalid variable name {k:?}")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.host == 0 || p.container == 0 {
                return Err(bad("port 0"));
            }
            if !seen.insert((p.host, p.udp)) {
                return Err(bad(format!("host port {} published twice", p.host)));
            }
        }
        for v in &self.volumes {
            v.validate()?;
        }
        Ok(())
    }

    /// Its grace.
    pub fn grace(&self) -> Duration {
        grace(self.grace_ms)
    }

    /// Its variables as the engine takes them: `NAME=VALUE`.
    pub fn env_list(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// A grace in milliseconds as a duration: the default when `None`, at most
/// [`MAX_GRACE`].
pub fn grace(ms: Option<u64>) -> Duration {
    ms.map_or(DEFAULT_GRACE, Duration::from_millis)
        .min(MAX_GRACE)
}

/// A grace as the engine's stop takes it: whole seconds, rounded up.
pub fn grace_secs(grace: Duration) -> i32 {
    i32::try_from(grace.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// The name node `node` gives the container of task `task`: `nkcluster-<node>-<task>`,
/// the node id's characters the engine does not take in a name replaced by `_`.
pub fn container_name(node: &str, task: u64) -> String {
    let node: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("nkcluster-{node}-{task}")
}

/// The labels of node `node`'s container of task `task`.
pub fn labels(node: &str, task: u64) -> Vec<(String, String)> {
    vec![
        (LABEL_NODE.to_owned(), node.to_owned()),
        (LABEL_TASK.to_owned(), task.to_string()),
    ]
}

/// The container a caller of node `node` names: a task id (digits only) is the task's
/// container ([`container_name`]), anything else a container name or id as given.
pub fn resolve_target(node: &str, target: &str) -> Result<String, RemoteError> {
    if target.is_empty() || target.contains(['/', '\0', '?', '#', ' ']) {
        return Err(bad(format!("invalid container {target:?}")));
    }
    Ok(match target.parse::<u64>() {
        Ok(task) if target.bytes().all(|b| b.is_ascii_digit()) => container_name(node, task),
        _ => target.to_owned(),
    })
}

/// Whether a container with `labels` is node `node`'s (a node acts on its own containers
/// only: `container_not_found` for any other).
pub fn owned<'a>(node: &str, mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    labels.any(|(k, v)| k == LABEL_NODE && v == node)
}

/// The task id in a container's labels.
pub fn task_of<'a>(mut labels: impl Iterator<Item = (&'a str, &'a str)>) -> Option<u64> {
    labels
        .find(|(k, _)| *k == LABEL_TASK)
        .and_then(|(_, v)| v.parse().ok())
}

/// The error code of an engine failure: no HTTP status (no socket, refused, timed out)
/// is `docker_unavailable`; a 404 is `image_not_found` or `container_not_found` by its
/// message; anything else `docker_error`.
pub fn classify(status: Option<u16>, message: &str) -> ErrorCode {
    let m = message.to_ascii_lowercase();
    match status {
        None => ErrorCode::DockerUnavailable,
        Some(404) if m.contains("image") => ErrorCode::ImageNotFound,
        Some(404) => ErrorCode::ContainerNotFound,
        Some(_) if m.contains("client version") && m.contains("too new") => {
            ErrorCode::DockerUnavailable
        }
        Some(_) => ErrorCode::DockerError,
    }
}

/// The state of a task's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Being created and started.
    Creating,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// A stop was asked; it has not exited yet.
    Stopping,
    /// It exited.
    Exited,
    /// It was removed.
    Removed,
}

impl State {
    /// `creating`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Removed => "removed",
        }
    }
}

/// One container task's state as its supervisor follows it: engine events move it
/// ([`on_engine_event`](Self::on_engine_event)), a stop asked marks it
/// ([`stop_asked`](Self::stop_asked)), its exit gives the task's reason
/// ([`exited`](Self::exited)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervision {
    state: State,
    stopping: bool,
    oom: bool,
}

impl Default for Supervision {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervision {
    /// A container being created.
    pub fn new() -> Self {
        Supervision {
            state: State::Creating,
            stopping: false,
            oom: false,
        }
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a stop was asked.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// The engine started it.
    pub fn started(&mut self) {
        if self.state == State::Creating {
            self.state = State::Running;
        }
    }

    /// A stop was asked (a stop command, the node stopping): `true` the first time (the
    /// shell then stops the container), `false` when it was asked already or it has
    /// ended.
    pub fn stop_asked(&mut self) -> bool {
        if self.stopping || matches!(self.state, State::Exited | State::Removed) {
            return false;
        }
        self.stopping = true;
        if matches!(self.state, State::Running | State::Paused) {
            self.state = State::Stopping;
        }
        true
    }

    /// An engine event of the container (its action: `start`, `die`, `pause`, `oom`,
    /// ...): the new state when it changed (then sent as an event of the task).
    pub fn on_engine_event(&mut self, action: &str) -> Option<State> {
        let next = match action {
            "start" | "restart" | "unpause" if self.stopping => State::Stopping,
            "start" | "restart" | "unpause" => State::Running,
            "pause" => State::Paused,
            "die" => State::Exited,
            "destroy" => State::Removed,
            "oom" => {
                self.oom = true;
                return None;
            }
            _ => return None,
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        Some(next)
    }

    /// It exited with `code`: the task's reason (its `task_stopped`): `exit 3`,
    /// `stopped: exit 143`, `exit 137 (out of memory)`.
    pub fn exited(&mut self, code: i64) -> String {
        self.state = State::Exited;
        let mut r = format!("exit {code}");
        if self.oom {
            r.push_str(" (out of memory)");
        }
        if self.stopping {
            r = format!("stopped: {r}");
        }
        r
    }
}

/// A node's container tasks, by task id, at most `max` (`too_many_containers`).
pub type ContainerTable<H> = crate::slots::Slots<H>;

/// How [`ContainerTable`] names its entries.
pub const CONTAINER_WORDS: crate::slots::SlotWords = crate::slots::SlotWords {
    one: "container task",
    many: "containers",
    full: ErrorCode::TooManyContainers,
};

/// CPU use between two samples, percent of one CPU (200 = two CPUs busy): the
/// container's CPU time delta over the system's, times the CPUs online. `0` when the
/// system's time did not move (the first sample).
pub fn cpu_percent(cpu: u64, precpu: u64, system: u64, presystem: u64, cpus: u32) -> f64 {
    let d_cpu = cpu.saturating_sub(precpu) as f64;
    let d_sys = system.saturating_sub(presystem) as f64;
    if d_sys <= 0.0 {
        return 0.0;
    }
    d_cpu / d_sys * f64::from(cpus.max(1)) * 100.0
}

/// A request of the class (a container is named by [`resolve_target`]'s rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DockerRequest {
    /// The node's containers (running or not): those labelled with its id.
    List,
    /// Whether the engine has `image` (`image_not_found` otherwise).
    Check {
        /// Image name.
        image: String,
    },
    /// Stops a container (SIGTERM, SIGKILL after the grace) and removes it; the reply
    /// comes when it ended.
    Stop {
        /// Container name or id, or task id.
        target: String,
        /// Grace, milliseconds (the task's own, or [`DEFAULT_GRACE`], when `None`).
        grace_ms: Option<u64>,
    },
    /// SIGKILLs a container (its task then ends).
    Kill {
        /// Container name or id, or task id.
        target: String,
    },
    /// Removes a container (`force`: even running).
    Remove {
        /// Container name or id, or task id.
        target: String,
        /// Kill it first when it runs.
        force: bool,
    },
    /// The last lines of a container's output.
    Logs {
        /// Container name or id, or task id.
        target: String,
        /// How many (at most [`MAX_TAIL_LINES`]).
        lines: u32,
    },
    /// One sample of a container's resource use.
    Stats {
        /// Container name or id, or task id.
        target: String,
    },
}

impl DockerRequest {
    /// The container it names, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            DockerRequest::List | DockerRequest::Check { .. } => None,
            DockerRequest::Stop { target, .. }
            | DockerRequest::Kill { target }
            | DockerRequest::Remove { target, .. }
            | DockerRequest::Logs { target, .. }
            | DockerRequest::Stats { target } => Some(target),
        }
    }
}

/// One container of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Id (12 characters).
    pub id: String,
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// The engine's state (`running`, `exited`, ...).
    pub state: String,
    /// The engine's status text (`Up 3 seconds`).
    pub status: String,
    /// The task running it (from its label).
    pub task: Option<u64>,
}

/// One sample of a container's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsInfo {
    /// CPU, percent of one CPU ([`cpu_percent`]).
    pub cpu_percent: f64,
    /// Memory used, bytes.
    pub mem_bytes: u64,
    /// Memory limit, bytes.
    pub mem_limit: u64,
    /// Processes in it.
    pub pids: u64,
}

/// A reply of the class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DockerReply {
    /// A task was accepted: its container's name (created and started by the task).
    Accepted {
        /// Container name.
        container: String,
    },
    /// The node's containers.
    List(Vec<ContainerInfo>),
    /// The image is there: its id.
    Image(String),
    /// The container stopped and was removed: how it ended (a task's reason).
    Stopped(String),
    /// Done.
    Done,
    /// The last lines of output, oldest first.
    Logs(Vec<String>),
    /// A sample of resource use.
    Stats(StatsInfo),
}

/// An event of a container task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DockerEvent {
    /// The container was created and started: its id.
    Started {
        /// Container id.
        id: String,
        /// Container name.
        name: String,
    },
    /// Its state changed.
    State(State),
    /// It exited with this code.
    Exited(i64),
}

#[cfg(test)]
mod tests;
