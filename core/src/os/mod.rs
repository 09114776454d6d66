//! OS processes, the built-in job class `nkcluster.os`: its wire types (what an admin
//! client sends a node and hears back) and its decisions, deterministic and unit-tested:
//! the restart policy ([`RestartPolicy::decide`]), the stop sequence ([`Stopper`]: SIGTERM
//! to the process group, SIGKILL after a grace), the bounded output buffer
//! ([`OutputRing`]), the limit on processes per node ([`ProcTable`]), how a command with
//! resource limits is launched ([`Command::launch_argv`]) and the text of an exit
//! ([`ExitStatus::describe`]). The tokio shell (`nkcluster::os`) spawns the processes,
//! reads their pipes, sends the signals and sleeps where these say.

mod output;

pub use output::{OutputRing, Stream};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::time::Instant;

/// The class name.
pub const CLASS: &str = "nkcluster.os";
/// Grace between SIGTERM and SIGKILL when the caller names none.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Longest grace a caller may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(600);
/// Output kept per process when the caller names no size (bytes, both streams).
pub const DEFAULT_BUFFER_BYTES: u64 = 256 * 1024;
/// Largest output buffer a caller may ask for.
pub const MAX_BUFFER_BYTES: u64 = 16 * 1024 * 1024;
/// Processes (tasks and `exec`s together) a node runs at most.
pub const DEFAULT_MAX_PROCESSES: usize = 64;
/// `exec` timeout when the caller names none.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `exec` timeout.
pub const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(3600);
/// Output an `exec` returns at most, per stream (the rest is cut, `truncated`).
pub const MAX_EXEC_OUTPUT: u64 = 1024 * 1024;
/// Longest backoff between restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Optional resource limits of the started process (`setrlimit`, applied before the
/// command runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time, seconds (`RLIMIT_CPU`, soft and hard: SIGKILL once spent).
    pub cpu_secs: Option<u64>,
    /// Address space, bytes (`RLIMIT_AS`: allocations beyond it fail).
    pub mem_bytes: Option<u64>,
}

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Program and arguments (the program is looked up in `PATH`).
    pub argv: Vec<String>,
    /// Variables added to (or replacing in) the node's environment.
    pub env: Vec<(String, String)>,
    /// Working directory (the node's own when `None`).
    pub cwd: Option<String>,
    /// Resource limits.
    pub limits: Limits,
}

fn bad(msg: impl Into<String>) -> RemoteError {
    RemoteError::new(ErrorCode::BadRequest, msg)
}

impl Command {
    /// A command of `argv`, nothing else set.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Command {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// `bad_request` unless it can be run: a program, no NUL byte anywhere, variable
    /// names without `=`, non-zero limits.
    pub fn validate(&self) -> Result<(), RemoteError> {
        if self.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(bad("no program to run"));
        }
        let nul = |s: &String| s.contains('\0');
        if self.argv.iter().any(nul)
            || self.env.iter().any(|(k, v)| nul(k) || nul(v))
            || self.cwd.as_ref().is_some_and(nul)
        {
            return Err(bad("a NUL byte in the command"));
        }
        if let Some((k, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('='))
        {
            return Err(bad(format!("invalid variable name {k:?}")));
        }
        if self.limits.cpu_secs == Some(0) || self.limits.mem_bytes == Some(0) {
            return Err(bad("a limit of zero"));
        }
        Ok(())
    }

    /// Whether a variable of the node's own environment is left out of the command's:
    /// the node's `NKCLUSTER_*` settings (its passwords among them) are the node's, not
    /// the command's (a caller passes what the command needs in [`env`](Self::env)).
    pub fn strips_inherited(name: &str) -> bool {
        name.starts_with("NKCLUSTER_")
    }

    /// The argv actually started: `argv` itself, or with limits, through `/bin/sh`
    /// setting them (`ulimit -t` seconds, `-v` KiB) and then `exec`ing the command with
    /// its arguments untouched (`"$@"`): the command replaces the shell, so its pid is
    /// the one started and its exit is the command's.
    pub fn launch_argv(&self) -> Vec<String> {
        let mut sets = Vec::new();
        if let Some(s) = self.limits.cpu_secs {
            sets.push(format!("ulimit -t {s}"));
        }
        if let Some(b) = self.limits.mem_bytes {
            sets.push(format!("ulimit -v {}", b.div_ceil(1024)));
        }
        if sets.is_empty() {
            return self.argv.clone();
        }
        sets.push("exec \"$@\"".into());
        let mut v = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            sets.join(" && "),
            "nkcluster-os".to_owned(),
        ];
        v.extend(self.argv.iter().cloned());
        v
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal of this number ended it.
    Signal(i32),
}

/// The name of a common signal (`SIG?` for others).
pub fn signal_name(n: i32) -> &'static str {
    match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "SIG?",
    }
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// `exit 3`, `signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match self {
            ExitStatus::Code(c) => format!("exit {c}"),
            ExitStatus::Signal(s) => format!("signal {s} ({})", signal_name(*s)),
        }
    }

    /// The exit code a shell would report: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match self {
            ExitStatus::Code(c) => *c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// When a process that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartMode {
    /// Never: its exit ends the task.
    #[default]
    Never,
    /// When it failed (an exit code other than 0, or a signal).
    OnFailure,
    /// Whenever it exits.
    Always,
}

impl RestartMode {
    /// `never`, `on-failure`, `always`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "never" => Some(Self::Never),
            "on-failure" => Some(Self::OnFailure),
            "always" => Some(Self::Always),
            _ => None,
        }
    }
}

/// The restart policy of a process task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// Restarts at most (after the first run).
    pub max_restarts: u32,
    /// Wait before the first restart, milliseconds; doubled each time, up to
    /// [`MAX_BACKOFF`].
    pub backoff_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Never,
            max_restarts: 3,
            backoff_ms: 1000,
        }
    }
}

/// What to do after the process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after `after`: restart number `attempt` (from 1).
    Restart {
        /// Which restart this is.
        attempt: u32,
        /// Wait first.
        after: Duration,
    },
    /// The task ends with this reason (its `task_stopped`).
    End(String),
}

impl RestartPolicy {
    /// After an exit with `status`, `restarts` restarts done so far; `stopping` when
    /// the exit was asked for (a stop, the node stopping): then it never restarts.
    pub fn decide(&self, status: ExitStatus, restarts: u32, stopping: bool) -> AfterExit {
        let text = status.describe();
        if stopping {
            return AfterExit::End(format!("stopped: {text}"));
        }
        let wants = match self.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => !status.success(),
            RestartMode::Always => true,
        };
        if !wants {
            return AfterExit::End(text);
        }
        if restarts >= self.max_restarts {
            return AfterExit::End(format!("{text} (gave up after {restarts} restarts)"));
        }
        let factor = 1u64 << restarts.min(20);
        let after = Duration::from_millis(self.backoff_ms.saturating_mul(factor)).min(MAX_BACKOFF);
        AfterExit::Restart {
            attempt: restarts + 1,
            after,
        }
    }
}

/// A process task's specification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcSpec {
    /// What to run.
    pub command: Command,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Grace between SIGTERM and SIGKILL, milliseconds ([`DEFAULT_GRACE`] when `None`).
    pub grace_ms: Option<u64>,
    /// Send each output line as an event ([`OsEvent::Line`]).
    pub stream_lines: bool,
    /// Output kept, bytes ([`DEFAULT_BUFFER_BYTES`] when `None`).
    pub buffer_bytes: Option<u64>,
}

/// A grace in milliseconds as a duration: the default when `None`, at most
/// [`MAX_GRACE`].
pub fn grace(ms: Option<u64>) -> Duration {
    ms.map_or(DEFAULT_GRACE, Duration::from_millis)
        .min(MAX_GRACE)
}

impl ProcSpec {
    /// `bad_request` unless it can run.
    pub fn validate(&self) -> Result<(), RemoteError> {
        self.command.validate()
    }

    /// Its grace.
    pub fn grace(&self) -> Duration {
        grace(self.grace_ms)
    }

    /// Its output buffer size (at most [`MAX_BUFFER_BYTES`]).
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
            .unwrap_or(DEFAULT_BUFFER_BYTES)
            .min(MAX_BUFFER_BYTES) as usize
    }
}

/// A one-shot command run to completion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// What to run.
    pub command: Command,
    /// Killed (its group, SIGKILL) after this, milliseconds ([`DEFAULT_EXEC_TIMEOUT`]
    /// when `None`, at most [`MAX_EXEC_TIMEOUT`]).
    pub timeout_ms: Option<u64>,
}

impl ExecSpec {
    /// Its timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout_ms
            .map_or(DEFAULT_EXEC_TIMEOUT, Duration::from_millis)
            .min(MAX_EXEC_TIMEOUT)
    }
}

/// What `exec` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (at most [`MAX_EXEC_OUTPUT`]).
    pub stdout: Vec<u8>,
    /// Its standard error (at most [`MAX_EXEC_OUTPUT`]).
    pub stderr: Vec<u8>,
    /// Output was cut.
    pub truncated: bool,
}

/// A request of the class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsRequest {
    /// Run a command to completion.
    Exec(ExecSpec),
    /// The processes running.
    List,
}

/// One running process task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcInfo {
    /// Task id.
    pub task: u64,
    /// Current pid (`None` while waiting to restart).
    pub pid: Option<u32>,
    /// The command's argv.
    pub argv: Vec<String>,
    /// Restarts so far.
    pub restarts: u32,
    /// `running`, `restarting` or `stopping`.
    pub state: String,
}

/// A command for a running process task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsCommand {
    /// Stop it (SIGTERM to its group, SIGKILL after the grace, milliseconds; the task's
    /// own when `None`); the reply comes when it ended.
    Stop {
        /// Grace, milliseconds.
        grace_ms: Option<u64>,
    },
    /// The last lines of its output.
    Tail {
        /// How many.
        lines: u32,
    },
}

/// A reply of the class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsReply {
    /// A task started this process.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// `exec`'s result.
    Exec(ExecResult),
    /// The running processes.
    List(Vec<ProcInfo>),
    /// The last lines of output, oldest first (both streams, in arrival order).
    Tail(Vec<String>),
    /// The process ended; the task's reason.
    Stopped(String),
}

/// An event of a process task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsEvent {
    /// The process (re)started.
    Spawned {
        /// Its pid.
        pid: u32,
        /// 0 the first time, then the restart number.
        attempt: u32,
    },
    /// The process exited.
    Exited(ExitStatus),
    /// It starts again after this many milliseconds.
    Restarting {
        /// Restart number.
        attempt: u32,
        /// Wait, milliseconds.
        after_ms: u64,
    },
    /// A line of output (only with [`ProcSpec::stream_lines`]).
    Line {
        /// Which stream.
        stream: Stream,
        /// The line, without its newline.
        line: String,
    },
}

/// A signal of the stop sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM, to the group.
    Term,
    /// SIGKILL, to the group.
    Kill,
}

/// The stop sequence of one process: SIGTERM to its group at once, SIGKILL when the
/// grace has passed and it still runs.
#[derive(Debug, Clone)]
pub struct Stopper {
    grace: Duration,
    kill_at: Option<Instant>,
    killed: bool,
}

impl Stopper {
    /// A sequence with `grace`.
    pub fn new(grace: Duration) -> Self {
        Stopper {
            grace,
            kill_at: None,
            killed: false,
        }
    }

    /// Begins (at `now`): SIGTERM the first time; nothing when it has begun already.
    /// A grace of zero kills at once.
    pub fn begin(&mut self, now: Instant) -> Option<StopSignal> {
        if self.kill_at.is_some() || self.killed {
            return None;
        }
        if self.grace.is_zero() {
            self.killed = true;
            return Some(StopSignal::Kill);
        }
        self.kill_at = Some(now + self.grace);
        Some(StopSignal::Term)
    }

    /// When [`poll`](Self::poll) should next be called (`None`: nothing pending).
    pub fn deadline(&self) -> Option<Instant> {
        if self.killed { None } else { self.kill_at }
    }

    /// SIGKILL once the grace has passed (once).
    pub fn poll(&mut self, now: Instant) -> Option<StopSignal> {
        match self.kill_at {
            Some(t) if now >= t && !self.killed => {
                self.killed = true;
                Some(StopSignal::Kill)
            }
            _ => None,
        }
    }
}

/// The processes of a node, by key (a task id, or an `exec`'s own), at most `max`
/// (`too_many_processes`).
pub type ProcTable<H> = crate::slots::Slots<H>;

/// How [`ProcTable`] names its entries.
pub const PROC_WORDS: crate::slots::SlotWords = crate::slots::SlotWords {
    one: "process",
    many: "processes",
    full: ErrorCode::TooManyProcesses,
};

/// The entry of process `key` in `table`, or `process_not_found`.
pub fn process<H>(table: &ProcTable<H>, key: u64) -> Result<&H, RemoteError> {
    table.entry(key).ok_or_else(|| {
        RemoteError::new(
            ErrorCode::ProcessNotFound,
            format!("no process task {key} runs here"),
        )
    })
}

#[cfg(test)]
mod tests;
