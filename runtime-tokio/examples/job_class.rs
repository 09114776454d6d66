//! A job class end to end: a control node and a worker in one process (real TCP on
//! loopback). The `counter` class answers requests (`Add`), runs a task that counts and
//! sends an event per tick, takes commands (`Get`, `Finish`), and hears status changes.
//!
//! Run: `cargo run -p nkcluster --example job_class`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nkcluster::config::NodeConfig;
use nkcluster::jobs::{JobClass, JobClasses, JobEvent, TaskCtx, TaskStart, WireEvent};
use nkcluster::net::TokioNet;
use nkcluster::node::{Env, Handlers, Node, RequestOptions};
use nkcluster_core::message::RemoteError;
use nkcluster_core::status::Status;
use nkcluster_core::url::parse_url_list;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    Add(u64, u64),
}

#[derive(Debug, Serialize, Deserialize)]
enum Cmd {
    Get,
    Finish,
}

#[derive(Debug, Serialize, Deserialize)]
struct Spec {
    every_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Ev {
    Tick(u64),
    Status(String),
}

/// One running counter: its count, its "finish" switch, its event sender.
type Running = (Arc<AtomicU64>, Option<oneshot::Sender<()>>, TaskCtx<Ev>);

/// Worker-side state: the running counters by task id.
#[derive(Default)]
struct Counter {
    tasks: Mutex<std::collections::HashMap<u64, Running>>,
}

impl JobClass for Counter {
    type Request = Req;
    type Reply = u64;
    type Spec = Spec;
    type Command = Cmd;
    type Event = Ev;

    fn request(&self, req: Req) -> Result<u64, RemoteError> {
        match req {
            Req::Add(a, b) => Ok(a + b),
        }
    }

    fn task(&self, ctx: TaskCtx<Ev>, spec: Spec) -> Result<TaskStart<u64>, RemoteError> {
        let count = Arc::new(AtomicU64::new(0));
        let (finish, mut finished) = oneshot::channel();
        self.tasks
            .lock()
            .map_err(|_| RemoteError::new("poisoned", "state"))?
            .insert(ctx.id(), (count.clone(), Some(finish), ctx.clone()));
        let run = async move {
            let mut every = tokio::time::interval(Duration::from_millis(spec.every_ms));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                        ctx.send(&Ev::Tick(n));
                    }
                    _ = &mut finished => return Ok(()),
                }
            }
        };
        Ok(TaskStart {
            reply: Some(0),
            run: Box::pin(run),
        })
    }

    fn command(&self, task: u64, cmd: Cmd) -> Result<u64, RemoteError> {
        let mut tasks = self
            .tasks
            .lock()
            .map_err(|_| RemoteError::new("poisoned", "state"))?;
        let (count, finish, _) = tasks
            .get_mut(&task)
            .ok_or_else(|| RemoteError::new("task_not_found", "no such counter"))?;
        let n = count.load(Ordering::Relaxed);
        if let Cmd::Finish = cmd
            && let Some(f) = finish.take()
        {
            let _ = f.send(());
        }
        Ok(n)
    }

    fn status(&self, task: u64, status: Status) {
        if let Ok(tasks) = self.tasks.lock()
            && let Some((_, _, ctx)) = tasks.get(&task)
        {
            ctx.send(&Ev::Status(status.to_string()));
        }
    }

    fn event(&self, node: &str, task: Option<u64>, event: JobEvent<Ev>) {
        println!("  [control] {node} task {task:?}: {event:?}");
    }
}

fn env() -> Env<TokioNet> {
    Env::real()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let classes = || JobClasses::new().register("counter", Counter::default());
    let handlers = |id: &str| {
        let mut h = Handlers::builtin(id);
        h.set_classes(classes());
        Some(h)
    };
    let mut c = NodeConfig::new("c1");
    c.listen = parse_url_list("nkcluster://127.0.0.1:0;transport=tcp")?;
    let control = Node::start_with(c, env(), handlers("c1")).await?;
    let port = control.listen_addrs()[0].1.port();
    let mut w = NodeConfig::new("w1");
    w.control = false;
    w.listen = Vec::new();
    w.cluster_addr = parse_url_list(&format!("nkcluster://127.0.0.1:{port};transport=tcp"))?;
    let mut events = control.job_events();
    let worker = Node::start_with(w, env(), handlers("w1")).await?;
    // Wait for the worker's first status report (it is linked and ready).
    while let Ok(e) = events.recv().await {
        if e.node == "w1" && matches!(e.event, WireEvent::NodeStatus(_)) {
            break;
        }
    }
    let t = Duration::from_secs(5);
    let sum = control
        .job_request::<Counter>(
            "w1",
            "counter",
            &Req::Add(2, 3),
            RequestOptions {
                timeout: t,
                exclusive: false,
            },
        )
        .await?;
    println!("request Add(2, 3) = {sum}");
    let (task, reply) = control
        .start_task::<Counter>("w1", "counter", &Spec { every_ms: 20 }, t)
        .await?;
    println!("task {task} started, immediate reply {reply:?}");
    // Let it tick three times (the events say so).
    let mut ticks = 0;
    while ticks < 3 {
        if let Ok(e) = events.recv().await
            && e.task == Some(task)
            && matches!(e.event, WireEvent::User(_))
        {
            ticks += 1;
        }
    }
    control.set_status("w1", Status::Standby, t).await?;
    let n = control
        .command::<Counter>("w1", "counter", task, &Cmd::Finish, t)
        .await?;
    println!("finished the task at count {n}");
    // Until the task's end is reported.
    while let Ok(e) = events.recv().await {
        if e.task == Some(task) && matches!(e.event, WireEvent::TaskStopped(_)) {
            break;
        }
    }
    println!("tasks now: {:?}", control.get_tasks("w1", None, t).await?);
    worker.shutdown_and_wait(Duration::from_secs(2)).await;
    control.shutdown_and_wait(Duration::from_secs(2)).await;
    Ok(())
}
