//! The built-in job class `nkcluster.os`: OS processes on a node. A task runs a command
//! in its own process group and supervises it (restarts, stop with SIGTERM then SIGKILL,
//! output kept in a bounded buffer); the `exec` request runs one to completion. Every
//! daemon node (`nkcluster node`, `nkcluster dev`) registers it ([`daemon_handlers`]);
//! a library user registers [`OsClass`] to have it.
//!
//! Its decisions (restart policy, stop sequence, output buffer, process limit) are the
//! core's ([`nkcluster_core::os`]); this spawns, reads pipes, signals and waits. Only
//! admin and control peers reach it: a worker's requests are refused by the node machine
//! before any class sees them. Each action is logged with who asked
//! ([`nkcluster_core::audit`]).

mod run;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

pub use nkcluster_core::os::*;

use crate::jobs::{JobClass, JobClasses, TaskCtx, TaskStart};
use crate::node::Handlers;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;
use nkcluster_core::status::Status;

/// The built-in handlers of a daemon node: [`Handlers::builtin`], this class and
/// `nkcluster.docker` ([`crate::docker`]).
pub fn daemon_handlers(node_id: &str) -> Handlers {
    let mut h = Handlers::builtin(node_id);
    h.set_classes(
        JobClasses::new()
            .register(CLASS, OsClass::new(node_id))
            .register(
                crate::docker::CLASS,
                crate::docker::DockerClass::new(node_id),
            ),
    );
    h
}

/// A process task as the table keeps it.
pub(crate) struct Entry {
    argv: Vec<String>,
    shared: Arc<Shared>,
}

/// What a process task shares with the class (commands, status changes, `list`).
pub(crate) struct Shared {
    /// A stop asked for, with its grace.
    stop: watch::Sender<Option<Duration>>,
    /// The task's reason once it ended.
    done: watch::Sender<Option<String>>,
    /// Its output.
    ring: Mutex<OutputRing>,
    /// (pid, restarts, state) for `list`.
    now: Mutex<(Option<u32>, u32, &'static str)>,
    grace: Duration,
}

impl Shared {
    /// Asks the task to stop with `grace` (the first stop asked counts).
    fn ask_stop(&self, grace: Duration) {
        self.stop.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(grace);
            }
            first
        });
    }
}

type Table = Arc<Mutex<ProcTable<Entry>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `nkcluster.os` class (see the module docs).
pub struct OsClass {
    node: Arc<str>,
    table: Table,
    next_exec: AtomicU64,
}

impl OsClass {
    /// The class of node `node_id`, at most [`DEFAULT_MAX_PROCESSES`] processes.
    pub fn new(node_id: &str) -> Self {
        Self::with_limit(node_id, DEFAULT_MAX_PROCESSES)
    }

    /// The class with at most `max` processes (tasks and `exec`s).
    pub fn with_limit(node_id: &str, max: usize) -> Self {
        OsClass {
            node: Arc::from(node_id),
            table: Arc::new(Mutex::new(ProcTable::new(
                max,
                nkcluster_core::os::PROC_WORDS,
            ))),
            next_exec: AtomicU64::new(1 << 63),
        }
    }

    fn shared(&self, task: u64) -> Result<Arc<Shared>, RemoteError> {
        nkcluster_core::os::process(&lock(&self.table), task).map(|e| e.shared.clone())
    }
}

/// Runs `f` on the runtime from a blocking thread (the class's requests and commands are
/// served on tokio's blocking pool).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RemoteError> {
    let h = tokio::runtime::Handle::try_current()
        .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))?;
    Ok(h.block_on(f))
}

impl JobClass for OsClass {
    type Request = OsRequest;
    type Reply = OsReply;
    type Spec = ProcSpec;
    type Command = OsCommand;
    type Event = OsEvent;

    fn request(&self, req: OsRequest) -> Result<OsReply, RemoteError> {
        match req {
            OsRequest::List => {
                let t = lock(&self.table);
                let list = t
                    .iter()
                    .filter(|(k, _)| k >> 63 == 0)
                    .map(|(task, e)| {
                        let (pid, restarts, state) = *lock(&e.shared.now);
                        ProcInfo {
                            task,
                            pid,
                            argv: e.argv.clone(),
                            restarts,
                            state: state.to_owned(),
                        }
                    })
                    .collect();
                Ok(OsReply::List(list))
            }
            OsRequest::Exec(spec) => {
                spec.command.validate()?;
                let key = self.next_exec.fetch_add(1, Ordering::Relaxed) | (1 << 63);
                let table = self.table.clone();
                let node = self.node.clone();
                block_on(run::exec(node, table, key, spec))?.map(OsReply::Exec)
            }
        }
    }

    fn task(
        &self,
        ctx: TaskCtx<OsEvent>,
        spec: ProcSpec,
    ) -> Result<TaskStart<OsReply>, RemoteError> {
        spec.validate()?;
        let shared = Arc::new(Shared {
            stop: watch::channel(None).0,
            done: watch::channel(None).0,
            ring: Mutex::new(OutputRing::new(spec.buffer_bytes())),
            now: Mutex::new((None, 0, "running")),
            grace: spec.grace(),
        });
        let key = ctx.id();
        lock(&self.table).admit(
            key,
            Entry {
                argv: spec.command.argv.clone(),
                shared: shared.clone(),
            },
        )?;
        let release = run::Release {
            table: self.table.clone(),
            key,
        };
        let child = match run::spawn(&spec.command) {
            Ok(c) => c,
            Err(e) => {
                drop(release);
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        lock(&shared.now).0 = Some(pid);
        info!(node = %self.node, task = key, pid, argv = ?spec.command.argv,
              restart = ?spec.restart.mode, "process started");
        ctx.send(&OsEvent::Spawned { pid, attempt: 0 });
        let node = self.node.clone();
        Ok(TaskStart {
            reply: Some(OsReply::Started { pid }),
            run: Box::pin(run::supervise(node, ctx, spec, child, shared, release)),
        })
    }

    fn command(&self, task: u64, cmd: OsCommand) -> Result<OsReply, RemoteError> {
        let shared = self.shared(task)?;
        match cmd {
            OsCommand::Tail { lines } => Ok(OsReply::Tail(lock(&shared.ring).tail(lines as usize))),
            OsCommand::Stop { grace_ms } => {
                let grace = grace_ms.map_or(shared.grace, |ms| nkcluster_core::os::grace(Some(ms)));
                shared.ask_stop(grace);
                let mut done = shared.done.subscribe();
                // It ends within the grace (SIGKILL then); a little more for the exit to
                // be reaped.
                let wait = grace + Duration::from_secs(5);
                let r = block_on(async move {
                    tokio::time::timeout(wait, done.wait_for(|d| d.is_some()))
                        .await
                        .ok()
                        .and_then(|r| r.ok().and_then(|d| d.clone()))
                })?;
                Ok(OsReply::Stopped(r.unwrap_or_else(|| "stopping".into())))
            }
        }
    }

    fn status(&self, task: u64, status: Status) {
        if matches!(status, Status::Stopping | Status::Stopped) {
            if let Ok(shared) = self.shared(task) {
                shared.ask_stop(shared.grace);
            }
        }
    }
}

/// An event of this class as JSON for `nkcluster events` (`None`: another class's, or
/// one that does not decode).
pub fn event_json(class: &str, body: &[u8]) -> Option<serde_json::Value> {
    if class != CLASS {
        return None;
    }
    let stream = |s: Stream| match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    Some(match postcard::from_bytes::<OsEvent>(body).ok()? {
        OsEvent::Spawned { pid, attempt } => {
            serde_json::json!({"spawned": {"pid": pid, "attempt": attempt}})
        }
        OsEvent::Exited(s) => serde_json::json!({"exited": s.describe()}),
        OsEvent::Restarting { attempt, after_ms } => {
            serde_json::json!({"restarting": {"attempt": attempt, "after_ms": after_ms}})
        }
        OsEvent::Line { stream: s, line } => serde_json::json!({stream(s): line}),
    })
}
