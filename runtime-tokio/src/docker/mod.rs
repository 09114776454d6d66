//! The built-in job class `nkcluster.docker`: Docker containers on a node. A task
//! creates and starts a container (labelled with the node and the task, named
//! [`container_name`]), follows its engine events and ends when it exits, with its exit
//! code; requests list the node's containers, stop (SIGTERM, SIGKILL after a grace, then
//! removal), kill, remove, read logs and stats. Every daemon node registers it (next to
//! `nkcluster.os`); a library user registers [`DockerClass`] to have it.
//!
//! Its decisions (what may run, names and labels, what a state change means for the
//! task, the container limit, error codes) are the core's ([`nkcluster_core::docker`]);
//! this makes the engine calls ([`engine`]). Only admin and control peers reach it: a
//! worker's requests are refused by the node machine before any class sees them. Each
//! action is logged with who asked
//! ([`nkcluster_core::audit`]).

mod engine;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

pub use nkcluster_core::docker::*;

use crate::jobs::{JobClass, TaskCtx, TaskStart};
use engine::Engine;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;
use nkcluster_core::status::Status;

/// What a container task shares with the class (stop requests, status changes).
struct Shared {
    /// Its state.
    sup: Mutex<Supervision>,
    /// A stop asked for, with its grace.
    stop: watch::Sender<Option<Duration>>,
    /// The task's reason once it ended.
    done: watch::Sender<Option<String>>,
    grace: Duration,
}

impl Shared {
    /// Asks the task to stop with `grace` (the first stop counts).
    fn ask_stop(&self, grace: Duration) {
        if lock(&self.sup).stop_asked() {
            self.stop.send_replace(Some(grace));
        }
    }
}

type Table = Arc<Mutex<ContainerTable<Arc<Shared>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `nkcluster.docker` class (see the module docs).
pub struct DockerClass {
    node: Arc<str>,
    table: Table,
    engine: Arc<Engine>,
}

impl DockerClass {
    /// The class of node `node_id`, at most [`DEFAULT_MAX_CONTAINERS`] containers.
    pub fn new(node_id: &str) -> Self {
        Self::with_limit(node_id, DEFAULT_MAX_CONTAINERS)
    }

    /// The class with at most `max` container tasks.
    pub fn with_limit(node_id: &str, max: usize) -> Self {
        DockerClass {
            node: Arc::from(node_id),
            table: Arc::new(Mutex::new(ContainerTable::new(
                max,
                nkcluster_core::docker::CONTAINER_WORDS,
            ))),
            engine: Arc::new(Engine::new()),
        }
    }

    /// The request's answer (on the runtime).
    async fn serve(&self, req: DockerRequest) -> Result<DockerReply, RemoteError> {
        let node = &*self.node;
        let found = match req.target() {
            Some(t) => Some(self.engine.owned(node, &resolve_target(node, t)?).await?),
            None => None,
        };
        let name = found.as_ref().map(|f| f.name.clone()).unwrap_or_default();
        match req {
            DockerRequest::List => self.engine.list(node).await.map(DockerReply::List),
            DockerRequest::Check { image } => self
                .engine
                .check_image(&image)
                .await
                .map(DockerReply::Image),
            DockerRequest::Logs { lines, .. } => self
                .engine
                .logs(&name, lines.min(MAX_TAIL_LINES))
                .await
                .map(DockerReply::Logs),
            DockerRequest::Stats { .. } => self.engine.stats(&name).await.map(DockerReply::Stats),
            DockerRequest::Kill { .. } => self.engine.kill(&name).await.map(|()| DockerReply::Done),
            DockerRequest::Remove { force, .. } => self
                .engine
                .try_remove(&name, force)
                .await
                .map(|()| DockerReply::Done),
            DockerRequest::Stop { grace_ms, .. } => {
                let task = found.as_ref().and_then(|f| f.task);
                let shared = task.and_then(|t| lock(&self.table).entry(t).cloned());
                match shared {
                    // A task of ours: its supervisor stops, then removes it.
                    Some(shared) => {
                        let grace = grace_ms.map_or(shared.grace, |ms| grace(Some(ms)));
                        shared.ask_stop(grace);
                        let mut done = shared.done.subscribe();
                        let wait = grace + Duration::from_secs(30);
                        let r = tokio::time::timeout(wait, done.wait_for(|d| d.is_some()))
                            .await
                            .ok()
                            .and_then(|r| r.ok().and_then(|d| d.clone()));
                        Ok(DockerReply::Stopped(r.unwrap_or_else(|| "stopping".into())))
                    }
                    // One without a task here (left by an earlier run of the node).
                    None => {
                        let grace = grace(grace_ms);
                        if found.as_ref().is_some_and(|f| f.running) {
                            self.engine.stop(&name, grace).await?;
                        }
                        let code = self.engine.exit_code(&name).await;
                        self.engine.try_remove(&name, true).await?;
                        Ok(DockerReply::Stopped(code.map_or_else(
                            || "stopped".to_owned(),
                            |c| format!("stopped: exit {c}"),
                        )))
                    }
                }
            }
        }
    }
}

/// Runs `f` on the runtime from a blocking thread (the class's requests are served on
/// tokio's blocking pool).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RemoteError> {
    let h = tokio::runtime::Handle::try_current()
        .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))?;
    Ok(h.block_on(f))
}

impl JobClass for DockerClass {
    type Request = DockerRequest;
    type Reply = DockerReply;
    type Spec = RunSpec;
    type Command = ();
    type Event = DockerEvent;

    fn request(&self, req: DockerRequest) -> Result<DockerReply, RemoteError> {
        block_on(self.serve(req))?
    }

    fn task(
        &self,
        ctx: TaskCtx<DockerEvent>,
        spec: RunSpec,
    ) -> Result<TaskStart<DockerReply>, RemoteError> {
        spec.validate()?;
        let task = ctx.id();
        let name = container_name(&self.node, task);
        let shared = Arc::new(Shared {
            sup: Mutex::new(Supervision::new()),
            stop: watch::channel(None).0,
            done: watch::channel(None).0,
            grace: spec.grace(),
        });
        lock(&self.table).admit(task, shared.clone())?;
        let run = Run {
            node: self.node.clone(),
            engine: self.engine.clone(),
            table: self.table.clone(),
            name: name.clone(),
            task,
            keep: spec.keep,
            armed: true,
        };
        info!(node = %self.node, task, container = %name, image = %spec.image,
              command = ?spec.command, "container task accepted");
        Ok(TaskStart {
            reply: Some(DockerReply::Accepted { container: name }),
            run: Box::pin(supervise(run, ctx, spec, shared)),
        })
    }

    fn status(&self, task: u64, status: Status) {
        if matches!(status, Status::Stopping | Status::Stopped) {
            if let Some(shared) = lock(&self.table).entry(task).cloned() {
                shared.ask_stop(shared.grace);
            }
        }
    }
}

/// A container task's resources: its table entry is released when it ends; an aborted
/// task (the generic `stop_task`, the node shutting down) leaves no running container.
struct Run {
    node: Arc<str>,
    engine: Arc<Engine>,
    table: Table,
    name: String,
    task: u64,
    keep: bool,
    /// Not ended through [`supervise`]'s end: clean up on drop.
    armed: bool,
}

impl Drop for Run {
    fn drop(&mut self) {
        lock(&self.table).release(self.task);
        if !self.armed {
            return;
        }
        // Done before the drop returns: a node shutting down drops its tasks and then
        // exits. On a thread of its own with a client of its own (this runtime may be
        // going away); bounded by the engine calls' deadlines.
        let (name, keep) = (self.name.clone(), self.keep);
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let engine = Engine::new();
                if keep {
                    let _ = engine.kill(&name).await;
                } else {
                    engine.remove(&name, true).await;
                }
            });
        });
        let _ = cleanup.join();
        let what = if keep { "killed" } else { "removed" };
        info!(node = %self.node, task = self.task, container = %self.name,
              "container task aborted: container {what}");
    }
}

/// Aborts a helper task of a container task when dropped (with the task's body, when it
/// is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A container task's body: creates and starts the container, sends its state changes,
/// stops it when asked, and ends with its exit (`exit 3`, `stopped: exit 143`); the
/// container is then removed unless the spec keeps it.
async fn supervise(
    mut run: Run,
    ctx: TaskCtx<DockerEvent>,
    spec: RunSpec,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let (node, name, task) = (run.node.clone(), run.name.clone(), run.task);
    let reason = match supervise_inner(&run, &ctx, &spec, &shared).await {
        Ok(r) => r,
        Err(e) => format!("{}: {}", e.code, e.message),
    };
    if !spec.keep {
        run.engine.remove(&name, true).await;
    }
    run.armed = false;
    info!(node = %node, task, container = %name, reason = %reason, "container task ended");
    shared.done.send_replace(Some(reason.clone()));
    Err(reason)
}

async fn supervise_inner(
    run: &Run,
    ctx: &TaskCtx<DockerEvent>,
    spec: &RunSpec,
    shared: &Arc<Shared>,
) -> Result<String, RemoteError> {
    let (engine, name) = (&run.engine, &run.name);
    // The engine's events of the container, followed from before its creation.
    let events = engine.events(name).await?;
    let follow = AbortOnDrop({
        let (ctx, shared) = (ctx.clone(), shared.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(action) = events.next().await {
                let changed = lock(&shared.sup).on_engine_event(&action);
                if let Some(state) = changed {
                    ctx.send(&DockerEvent::State(state));
                }
            }
        })
    });
    let id = match engine.run(&run.node, run.task, name, spec).await {
        Ok(id) => id,
        Err(e) => {
            drop(follow);
            return Err(e);
        }
    };
    lock(&shared.sup).started();
    info!(node = %run.node, task = run.task, container = %name, id = %id, "container started");
    ctx.send(&DockerEvent::Started {
        id,
        name: name.clone(),
    });
    // A stop asked (before or after the start) is performed beside the wait.
    let stopper = AbortOnDrop({
        let (engine, name) = (engine.clone(), name.clone());
        let mut stop = shared.stop.subscribe();
        tokio::spawn(async move {
            let grace = match stop.wait_for(|s| s.is_some()).await {
                Ok(g) => g.unwrap_or(DEFAULT_GRACE),
                Err(_) => return,
            };
            if let Err(e) = engine.stop(&name, grace).await {
                warn!(container = %name, error = %e, "cannot stop a container");
            }
        })
    });
    let exit = engine.wait(name).await;
    drop((stopper, follow));
    let Some((code, oom)) = exit else {
        return Ok("container gone".to_owned());
    };
    ctx.send(&DockerEvent::Exited(code));
    let mut sup = lock(&shared.sup);
    if oom {
        sup.on_engine_event("oom");
    }
    Ok(sup.exited(code))
}

/// An event of this class as JSON for `nkcluster events` (`None`: another class's, or
/// one that does not decode).
pub fn event_json(class: &str, body: &[u8]) -> Option<serde_json::Value> {
    if class != CLASS {
        return None;
    }
    Some(match postcard::from_bytes::<DockerEvent>(body).ok()? {
        DockerEvent::Started { id, name } => {
            serde_json::json!({"started": {"id": id, "name": name}})
        }
        DockerEvent::State(s) => serde_json::json!({"state": s.as_str()}),
        DockerEvent::Exited(code) => serde_json::json!({"exited": code}),
    })
}
