//! Performing the class's decisions: spawning a command in its own process group,
//! reading its pipes into the output buffer, the stop sequence's signals, restarts after
//! their backoff, and `exec` to completion.

use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tracing::{info, warn};

use super::{Entry, OsEvent, Shared, Table, lock};
use crate::jobs::TaskCtx;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::message::RemoteError;
use nkcluster_core::os::{
    AfterExit, Command, ExecResult, ExecSpec, ExitStatus, MAX_EXEC_OUTPUT, ProcSpec, StopSignal,
    Stopper, Stream,
};
use nkcluster_core::time::Instant;

/// The core's clock for the stop sequence: time since the first use.
fn origin() -> tokio::time::Instant {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

fn now() -> Instant {
    let nanos = origin().elapsed().as_nanos();
    Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn to_tokio(t: Instant) -> tokio::time::Instant {
    origin() + t.since_origin()
}

/// Removes a process from the table when dropped (its task ended or was aborted).
pub(super) struct Release {
    pub(super) table: Table,
    pub(super) key: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        lock(&self.table).release(self.key);
    }
}

/// SIGKILLs a process group when dropped, unless its leader was reaped: an aborted task
/// (the generic `stop_task`, the node shutting down) leaves no process behind.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal(pid, Signal::SIGKILL);
        }
    }
}

/// Sends `sig` to process group `pgid` (gone already: nothing to do).
fn signal(pgid: u32, sig: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return;
    }
    if let Err(e) = killpg(Pid::from_raw(raw), sig) {
        if e != nix::errno::Errno::ESRCH {
            warn!(pgid, signal = ?sig, error = %e, "cannot signal process group");
        }
    }
}

/// Starts `cmd` in a process group of its own, stdin closed, stdout and stderr piped.
pub(super) fn spawn(cmd: &Command) -> Result<Child, RemoteError> {
    let argv = cmd.launch_argv();
    let mut c = tokio::process::Command::new(&argv[0]);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(Command::strips_inherited) {
            c.env_remove(k);
        }
    }
    c.args(&argv[1..])
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(d) = &cmd.cwd {
        c.current_dir(d);
    }
    c.spawn().map_err(|e| {
        RemoteError::new(
            ErrorCode::SpawnFailed,
            format!("cannot start {:?}: {e}", cmd.argv[0]),
        )
    })
}

fn exit_status(s: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match s {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            (None, None) => ExitStatus::Code(-1),
        },
        Err(_) => ExitStatus::Code(-1),
    }
}

/// Reads one pipe into the task's buffer (and, when streaming, sends each line).
async fn read_into<R: tokio::io::AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    shared: Arc<Shared>,
    ctx: Option<TaskCtx<OsEvent>>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let lines = lock(&shared.ring).push(stream, &buf[..n]);
        if let Some(ctx) = &ctx {
            for line in lines {
                ctx.send(&OsEvent::Line { stream, line });
            }
        }
    }
    let last = lock(&shared.ring).finish(stream);
    if let (Some(ctx), Some(line)) = (&ctx, last) {
        ctx.send(&OsEvent::Line { stream, line });
    }
}

fn readers(
    child: &mut Child,
    shared: &Arc<Shared>,
    ctx: Option<TaskCtx<OsEvent>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut v = Vec::new();
    if let Some(out) = child.stdout.take() {
        v.push(tokio::spawn(read_into::<ChildStdout>(
            out,
            Stream::Stdout,
            shared.clone(),
            ctx.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        v.push(tokio::spawn(read_into::<ChildStderr>(
            err,
            Stream::Stderr,
            shared.clone(),
            ctx,
        )));
    }
    v
}

/// Waits for the child's exit, performing a stop when one is asked: `(status, stopped)`.
async fn wait_exit(
    child: &mut Child,
    pgid: u32,
    stop: &mut tokio::sync::watch::Receiver<Option<Duration>>,
    shared: &Shared,
) -> (ExitStatus, bool) {
    let mut stopper: Option<Stopper> = None;
    let mut stop_open = true;
    loop {
        // A stop asked before we started waiting counts too.
        if stopper.is_none() {
            if let Some(grace) = *stop.borrow_and_update() {
                let mut s = Stopper::new(grace);
                if let Some(sig) = s.begin(now()) {
                    lock(&shared.now).2 = "stopping";
                    send(pgid, sig);
                }
                stopper = Some(s);
            }
        }
        let deadline = stopper.as_ref().and_then(Stopper::deadline);
        tokio::select! {
            st = child.wait() => return (exit_status(st), stopper.is_some()),
            r = stop.changed(), if stopper.is_none() && stop_open => {
                stop_open = r.is_ok();
            }
            _ = tokio::time::sleep_until(deadline.map_or_else(origin, to_tokio)), if deadline.is_some() => {
                if let Some(sig) = stopper.as_mut().and_then(|s| s.poll(now())) {
                    send(pgid, sig);
                }
            }
        }
    }
}

fn send(pgid: u32, sig: StopSignal) {
    signal(
        pgid,
        match sig {
            StopSignal::Term => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        },
    );
}

/// A process task's body: runs the child to its exit, restarts it as the policy says,
/// stops it when asked; ends with the task's reason (the exit code or signal).
pub(super) async fn supervise(
    node: Arc<str>,
    ctx: TaskCtx<OsEvent>,
    spec: ProcSpec,
    mut child: Child,
    shared: Arc<Shared>,
    release: Release,
) -> Result<(), String> {
    let _release = release;
    let mut stop = shared.stop.subscribe();
    let mut restarts = 0u32;
    let task = ctx.id();
    let reason = loop {
        let pgid = child.id().unwrap_or(0);
        let mut guard = GroupGuard(Some(pgid));
        let pipes = readers(&mut child, &shared, spec.stream_lines.then(|| ctx.clone()));
        let (status, stopped) = wait_exit(&mut child, pgid, &mut stop, &shared).await;
        // Whatever of its group is left goes with it (and the pipes close).
        signal(pgid, Signal::SIGKILL);
        guard.0 = None;
        for p in pipes {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        ctx.send(&OsEvent::Exited(status));
        info!(node = %node, task, pid = pgid, status = %status.describe(), stopped, "process exited");
        match spec.restart.decide(status, restarts, stopped) {
            AfterExit::End(reason) => break reason,
            AfterExit::Restart { attempt, after } => {
                *lock(&shared.now) = (None, restarts, "restarting");
                ctx.send(&OsEvent::Restarting {
                    attempt,
                    after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                });
                let stopped_meanwhile = tokio::select! {
                    _ = tokio::time::sleep(after) => false,
                    r = stop.wait_for(|s| s.is_some()) => r.is_ok(),
                };
                if stopped_meanwhile {
                    break format!("stopped: {} before restart {attempt}", status.describe());
                }
                restarts = attempt;
                child = match spawn(&spec.command) {
                    Ok(c) => c,
                    Err(e) => break format!("{}: {}", e.code, e.message),
                };
                let pid = child.id().unwrap_or(0);
                *lock(&shared.now) = (Some(pid), restarts, "running");
                info!(node = %node, task, pid, attempt, "process restarted");
                ctx.send(&OsEvent::Spawned { pid, attempt });
            }
        }
    };
    shared.done.send_replace(Some(reason.clone()));
    Err(reason)
}

/// Reads a pipe to its end, keeping at most [`MAX_EXEC_OUTPUT`] bytes: (bytes, cut).
async fn read_all<R: tokio::io::AsyncRead + Unpin>(mut pipe: R) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = (MAX_EXEC_OUTPUT as usize).saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (out, cut)
}

/// `exec`: runs a command to completion (its group SIGKILLed at the timeout:
/// `exec_timeout`), counted against the node's process limit while it runs.
pub(super) async fn exec(
    node: Arc<str>,
    table: Table,
    key: u64,
    spec: ExecSpec,
) -> Result<ExecResult, RemoteError> {
    let shared = Arc::new(Shared {
        stop: tokio::sync::watch::channel(None).0,
        done: tokio::sync::watch::channel(None).0,
        ring: std::sync::Mutex::new(nkcluster_core::os::OutputRing::new(0)),
        now: std::sync::Mutex::new((None, 0, "running")),
        grace: Duration::ZERO,
    });
    lock(&table).admit(
        key,
        Entry {
            argv: spec.command.argv.clone(),
            shared,
        },
    )?;
    let _release = Release { table, key };
    let mut child = spawn(&spec.command)?;
    let pgid = child.id().unwrap_or(0);
    let mut guard = GroupGuard(Some(pgid));
    info!(node = %node, pid = pgid, argv = ?spec.command.argv, "exec started");
    let out = child.stdout.take().map(|p| tokio::spawn(read_all(p)));
    let err = child.stderr.take().map(|p| tokio::spawn(read_all(p)));
    let timeout = spec.timeout();
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => exit_status(s),
        Err(_) => {
            signal(pgid, Signal::SIGKILL);
            return Err(RemoteError::new(
                ErrorCode::ExecTimeout,
                format!(
                    "{:?} still ran after {} ms (killed)",
                    spec.command.argv[0],
                    timeout.as_millis()
                ),
            ));
        }
    };
    signal(pgid, Signal::SIGKILL);
    guard.0 = None;
    let collect = |h: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
        match h {
            Some(h) => tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => Default::default(),
        }
    };
    let (stdout, cut_out) = collect(out).await;
    let (stderr, cut_err) = collect(err).await;
    info!(node = %node, pid = pgid, status = %status.describe(), "exec ended");
    Ok(ExecResult {
        status,
        stdout,
        stderr,
        truncated: cut_out || cut_err,
    })
}
