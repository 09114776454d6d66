//! Job classes over real sockets (a control node and a worker in process, TCP on
//! loopback): requests, tasks, commands, events, node status, and the original's
//! acceptance behaviours for them (DESIGN §6).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nkcluster::jobs::{
    JobClass, JobClasses, JobEvent, NodeJobEvent, TaskCtx, TaskStart, WireEvent,
};
use nkcluster::net::TokioNet;
use nkcluster::node::{Handlers, Node, RequestOptions};
use nkcluster_core::RequestError;
use nkcluster_core::message::RemoteError;
use nkcluster_core::status::Status;
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{Relay, config, port_of};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

const T: Duration = Duration::from_secs(5);

/// A gate a registered function waits on.
static GATE: std::sync::LazyLock<(Mutex<bool>, std::sync::Condvar)> =
    std::sync::LazyLock::new(|| (Mutex::new(false), std::sync::Condvar::new()));
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    Echo(String),
    SleepMs(u64),
    Panic,
}

#[derive(Debug, Serialize, Deserialize)]
enum Cmd {
    Emit(String),
    Finish,
    Fail(String),
    Crash,
}

enum Ctl {
    Finish,
    Fail(String),
    Crash,
}

type TaskMap = HashMap<u64, (TaskCtx<String>, mpsc::UnboundedSender<Ctl>)>;
type Heard = Vec<(String, Option<u64>, JobEvent<String>)>;

#[derive(Default)]
struct Tasks {
    map: Mutex<TaskMap>,
}

/// The test class: requests, tasks driven by commands, status echoed as events, and the
/// control side's callback recording what it hears.
#[derive(Clone, Default)]
struct Probe {
    tasks: Arc<Tasks>,
    heard: Arc<Mutex<Heard>>,
}

impl JobClass for Probe {
    type Request = Req;
    type Reply = String;
    type Spec = String;
    type Command = Cmd;
    type Event = String;

    fn request(&self, req: Req) -> Result<String, RemoteError> {
        match req {
            Req::Echo(s) => Ok(s),
            Req::SleepMs(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok("slept".into())
            }
            Req::Panic => panic!("request exploded"),
        }
    }

    fn task(&self, ctx: TaskCtx<String>, spec: String) -> Result<TaskStart<String>, RemoteError> {
        if spec == "refuse" {
            return Err(RemoteError::new("bad_spec", "refused by the class"));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.tasks
            .map
            .lock()
            .map_err(|_| RemoteError::new("poisoned", "x"))?
            .insert(ctx.id(), (ctx, tx));
        let run = async move {
            match rx.recv().await {
                Some(Ctl::Finish) | None => Ok(()),
                Some(Ctl::Fail(r)) => Err(r),
                Some(Ctl::Crash) => panic!("task exploded"),
            }
        };
        Ok(TaskStart {
            reply: Some(format!("started {spec}")),
            run: Box::pin(run),
        })
    }

    fn command(&self, task: u64, cmd: Cmd) -> Result<String, RemoteError> {
        let map = self
            .tasks
            .map
            .lock()
            .map_err(|_| RemoteError::new("poisoned", "x"))?;
        let (ctx, tx) = map
            .get(&task)
            .ok_or_else(|| RemoteError::new("task_not_found", "gone"))?;
        match cmd {
            Cmd::Emit(s) => ctx.send(&s),
            Cmd::Finish => {
                let _ = tx.send(Ctl::Finish);
            }
            Cmd::Fail(r) => {
                let _ = tx.send(Ctl::Fail(r));
            }
            Cmd::Crash => {
                let _ = tx.send(Ctl::Crash);
            }
        }
        Ok("ok".into())
    }

    fn status(&self, task: u64, status: Status) {
        if let Ok(map) = self.tasks.map.lock()
            && let Some((ctx, tx)) = map.get(&task)
        {
            ctx.send(&format!("status:{status}"));
            // A well-behaved task stops when the node is stopping.
            if status == Status::Stopping {
                let _ = tx.send(Ctl::Finish);
            }
        }
    }

    fn event(&self, node: &str, task: Option<u64>, event: JobEvent<String>) {
        if let Ok(mut h) = self.heard.lock() {
            h.push((node.to_owned(), task, event));
        }
    }
}

/// A class that implements nothing: every call gets the trait's typed defaults.
struct Bare;

impl JobClass for Bare {
    type Request = ();
    type Reply = ();
    type Spec = ();
    type Command = ();
    type Event = ();
}

struct Cluster {
    control: Node<TokioNet>,
    worker: Node<TokioNet>,
    events: broadcast::Receiver<NodeJobEvent>,
    probe: Probe,
    relay: Relay,
    /// The worker's second entry: nothing listens there until a test opens it.
    spare: u16,
    /// c1's listener.
    target: std::net::SocketAddr,
}

fn handlers(id: &str, probe: &Probe) -> Option<Handlers> {
    let mut h = Handlers::builtin(id);
    h.set_classes(
        JobClasses::new()
            .register("probe", probe.clone())
            .register("bare", Bare),
    );
    // Blocks until the test opens the gate (see spawn_call_does_not_hold_up_the_link).
    h.insert_function("wait_gate", |_| {
        let (open, cv) = &*GATE;
        let mut g = open
            .lock()
            .map_err(|_| RemoteError::new("poisoned", "gate"))?;
        while !*g {
            g = cv
                .wait(g)
                .map_err(|_| RemoteError::new("poisoned", "gate"))?;
        }
        Ok("passed".into())
    });
    Some(h)
}

fn env() -> nkcluster::node::Env<TokioNet> {
    nkcluster::node::Env::real()
}

/// c1 and w1 (through a relay that can cut the path; a second path can be opened at
/// `spare`), w1 linked and ready.
async fn cluster() -> Cluster {
    let probe = Probe::default();
    let control = Node::start_with(
        config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp"),
        env(),
        handlers("c1", &probe),
    )
    .await
    .expect("control");
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&control, Transport::Tcp)));
    let relay = Relay::start(target).await;
    let mut w = config("w1", false, "");
    // Through the relay; its second entry is a port where nothing listens yet (the list
    // is tried in a shuffled order: it must not reach c1 another way), and where a second
    // path opens once the relay is cut.
    let spare = nkcluster_tests::free_port();
    w.cluster_addr = nkcluster_core::url::parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp, nkcluster://127.0.0.1:{spare};transport=tcp",
        relay.addr().port(),
    ))
    .expect("url");
    w.backoff.initial = Duration::from_millis(50);
    let mut events = control.job_events();
    let worker = Node::start_with(w, env(), handlers("w1", &probe))
        .await
        .expect("worker");
    next(&mut events, "w1 reports ready", |e| {
        e.node == "w1" && e.event == WireEvent::NodeStatus(Status::Ready)
    })
    .await;
    Cluster {
        control,
        worker,
        events,
        probe,
        relay,
        spare,
        target,
    }
}

/// The next event satisfying `pred` (others are skipped), within [`DEADLINE`].
async fn next(
    rx: &mut broadcast::Receiver<NodeJobEvent>,
    what: &str,
    pred: impl Fn(&NodeJobEvent) -> bool,
) -> NodeJobEvent {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("waiting for {what}: {e}"),
            Err(_) => panic!("waiting for {what}: nothing within {DEADLINE:?}"),
        }
    }
}

/// The next `n` events about w1 (node-level or `probe`, not information reports), as
/// short strings.
async fn take(rx: &mut broadcast::Receiver<NodeJobEvent>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        // Information reports come and go on their own schedule: not counted.
        let e = next(rx, "w1 events", |e| {
            e.node == "w1" && !matches!(e.event, WireEvent::Info(_))
        })
        .await;
        out.push(match e.event {
            WireEvent::User(b) => format!(
                "user:{}",
                postcard::from_bytes::<String>(&b).unwrap_or_default()
            ),
            WireEvent::TaskStarted => "task_started".into(),
            WireEvent::TaskStopped(r) => format!("task_stopped:{r}"),
            WireEvent::NodeStatus(s) => format!("node_status:{s}"),
            WireEvent::TaskRunning => "task_running".into(),
            WireEvent::EventsLost(n) => format!("events_lost:{n}"),
            WireEvent::Info(_) => continue,
        });
    }
    out
}

fn opts(timeout: Duration) -> RequestOptions {
    RequestOptions {
        timeout,
        exclusive: false,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, RequestError>) -> String {
    match r {
        Err(e) => e.code().to_owned(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_reply_time_out_and_report_typed_errors() {
    let c = cluster().await;
    let r = c
        .control
        .job_request::<Probe>("w1", "probe", &Req::Echo("hi".into()), opts(T))
        .await;
    assert_eq!(r, Ok("hi".to_owned()));
    // A request that takes 200 ms with a 100 ms timeout ends `timeout`.
    let r = c
        .control
        .job_request::<Probe>(
            "w1",
            "probe",
            &Req::SleepMs(200),
            opts(Duration::from_millis(100)),
        )
        .await;
    assert_eq!(r, Err(RequestError::Timeout));
    // Typed errors.
    assert_eq!(
        code(
            c.control
                .job_request::<Probe>("w1", "nosuch", &Req::Echo("x".into()), opts(T))
                .await
        ),
        "unknown_class"
    );
    assert_eq!(
        code(
            c.control
                .job_request::<Probe>("w9", "probe", &Req::Echo("x".into()), opts(T))
                .await
        ),
        "unknown_node"
    );
    assert_eq!(
        code(
            c.control
                .job_request::<Bare>("w1", "bare", &(), opts(T))
                .await
        ),
        "unknown_request"
    );
    assert_eq!(
        code(c.control.start_task::<Bare>("w1", "bare", &(), T).await),
        "unknown_request"
    );
    // A callback that panics is reported with its message; the worker keeps running.
    match c
        .control
        .job_request::<Probe>("w1", "probe", &Req::Panic, opts(T))
        .await
    {
        Err(RequestError::Remote(e)) => {
            assert_eq!(e.code, "callback_panicked");
            assert!(e.to_string().contains("request exploded"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let r = c
        .control
        .job_request::<Probe>("w1", "probe", &Req::Echo("still here".into()), opts(T))
        .await;
    assert_eq!(r, Ok("still here".to_owned()));
    c.worker.shutdown();
    c.control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_start_take_commands_send_events_and_stop_with_a_reason() {
    let mut c = cluster().await;
    let ctl = &c.control;
    // Start: an id, the immediate reply, and task_started.
    let (id, reply) = ctl
        .start_task::<Probe>("w1", "probe", &"a".to_owned(), T)
        .await
        .expect("started");
    assert_eq!(reply.as_deref(), Some("started a"));
    assert_eq!(take(&mut c.events, 1).await, ["task_started"]);
    // Commands reply; events arrive in order.
    for s in ["one", "two"] {
        let r = ctl
            .command::<Probe>("w1", "probe", id, &Cmd::Emit(s.into()), T)
            .await;
        assert_eq!(r.as_deref(), Ok("ok"));
    }
    assert_eq!(take(&mut c.events, 2).await, ["user:one", "user:two"]);
    assert_eq!(
        ctl.get_tasks("w1", Some("probe"), T).await,
        Ok(vec![(id, "probe".to_owned())])
    );
    // A killed task: task_stopped with its reason, later commands task_not_found.
    ctl.stop_task("w1", id, T).await.expect("stopped");
    assert_eq!(take(&mut c.events, 1).await, ["task_stopped:stopped"]);
    assert_eq!(
        code(
            ctl.command::<Probe>("w1", "probe", id, &Cmd::Emit("x".into()), T)
                .await
        ),
        "task_not_found"
    );
    // A task that ends by itself, one that fails, one that crashes.
    for (cmd, reason) in [
        (Cmd::Finish, "normal".to_owned()),
        (Cmd::Fail("disk full".into()), "disk full".to_owned()),
        (Cmd::Crash, "panic: task exploded".to_owned()),
    ] {
        let (id, _) = ctl
            .start_task::<Probe>("w1", "probe", &"b".to_owned(), T)
            .await
            .expect("started");
        ctl.command::<Probe>("w1", "probe", id, &cmd, T)
            .await
            .expect("command");
        assert_eq!(
            take(&mut c.events, 2).await,
            ["task_started".to_owned(), format!("task_stopped:{reason}")]
        );
    }
    // The caller's own ids: a second task with a running id is `already_started`.
    let (own, _) = ctl
        .start_task_with::<Probe>("w1", "probe", &"own".to_owned(), Some(1000), T)
        .await
        .expect("started");
    assert_eq!(own, 1000);
    assert_eq!(take(&mut c.events, 1).await, ["task_started"]);
    assert_eq!(
        code(
            ctl.start_task_with::<Probe>("w1", "probe", &"again".to_owned(), Some(1000), T)
                .await
        ),
        "already_started"
    );
    ctl.stop_task("w1", own, T).await.expect("stop");
    assert_eq!(take(&mut c.events, 1).await, ["task_stopped:stopped"]);
    // A class that refuses the spec: the error reaches the caller, no task remains.
    assert_eq!(
        code(
            ctl.start_task::<Probe>("w1", "probe", &"refuse".to_owned(), T)
                .await
        ),
        "bad_spec"
    );
    assert_eq!(ctl.get_tasks("w1", None, T).await, Ok(vec![]));
    // The control side's callback heard the class's events.
    let heard = c.probe.heard.lock().map(|h| h.len()).unwrap_or(0);
    assert!(heard >= 8, "the class event callback ran {heard} times");
    c.worker.shutdown();
    c.control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_are_ordered_and_gate_new_tasks() {
    let mut c = cluster().await;
    let ctl = &c.control;
    let (id, _) = ctl
        .start_task::<Probe>("w1", "probe", &"s".to_owned(), T)
        .await
        .expect("started");
    assert_eq!(take(&mut c.events, 1).await, ["task_started"]);
    // standby: the node event, then each task's status callback; new tasks refused.
    ctl.set_status("w1", Status::Standby, T)
        .await
        .expect("standby");
    assert_eq!(
        take(&mut c.events, 2).await,
        ["node_status:standby", "user:status:standby"]
    );
    match ctl
        .start_task::<Probe>("w1", "probe", &"x".to_owned(), T)
        .await
    {
        Err(RequestError::Remote(e)) => {
            assert_eq!(e.code, "node_not_ready");
            assert!(e.to_string().contains("standby"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Requests and commands still work.
    let r = ctl
        .job_request::<Probe>("w1", "probe", &Req::Echo("ok".into()), opts(T))
        .await;
    assert_eq!(r.as_deref(), Ok("ok"));
    ctl.command::<Probe>("w1", "probe", id, &Cmd::Emit("cmd".into()), T)
        .await
        .expect("command in standby");
    assert_eq!(take(&mut c.events, 1).await, ["user:cmd"]);
    // ready restores.
    ctl.set_status("w1", Status::Ready, T).await.expect("ready");
    assert_eq!(
        take(&mut c.events, 2).await,
        ["node_status:ready", "user:status:ready"]
    );
    // stopped: through stopping, the task is told and ends, then stopped.
    ctl.set_status("w1", Status::Stopped, T)
        .await
        .expect("stop");
    assert_eq!(
        take(&mut c.events, 4).await,
        [
            "node_status:stopping",
            "user:status:stopping",
            "task_stopped:normal",
            "node_status:stopped"
        ]
    );
    assert_eq!(c.worker.status(), Status::Stopped);
    ctl.set_status("w1", Status::Ready, T).await.expect("ready");
    assert_eq!(take(&mut c.events, 1).await, ["node_status:ready"]);
    c.worker.shutdown();
    c.control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_tells_the_classes_not_connected_then_ready_again() {
    let mut c = cluster().await;
    let ctl = &c.control;
    // The class must have seen the worker.
    let (id, _) = ctl
        .start_task::<Probe>("w1", "probe", &"l".to_owned(), T)
        .await
        .expect("started");
    assert_eq!(take(&mut c.events, 1).await, ["task_started"]);
    c.relay.cut();
    let _second = Relay::start_at(c.spare, c.target).await;
    next(&mut c.events, "not_connected", |e| {
        e.node == "w1" && e.event == WireEvent::NodeStatus(Status::NotConnected)
    })
    .await;
    // The worker relinks by itself; its task kept running.
    next(&mut c.events, "ready again", |e| {
        e.node == "w1" && e.event == WireEvent::NodeStatus(Status::Ready)
    })
    .await;
    let heard: Vec<String> = c
        .probe
        .heard
        .lock()
        .map(|h| {
            h.iter()
                .filter_map(|(_, _, e)| match e {
                    JobEvent::NodeStatus(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        heard.ends_with(&["not_connected".to_owned(), "ready".to_owned()]),
        "the class callback heard {heard:?}"
    );
    let r = ctl
        .command::<Probe>("w1", "probe", id, &Cmd::Emit("back".into()), T)
        .await;
    assert_eq!(r.as_deref(), Ok("ok"));
    c.worker.shutdown();
    c.control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_data_registry_and_info() {
    let c = cluster().await;
    let ctl = &c.control;
    // Metadata: update appends tokens, updating a token replaces its options, remove
    // restores the original.
    let original = ctl.get_meta("w1", T).await.expect("meta");
    assert_eq!(original, "");
    let m = ctl
        .update_meta("w1", "core;group=g1;master, m2;a=1", T)
        .await
        .expect("update");
    assert_eq!(m, "core;group=g1;master, m2;a=1");
    let m = ctl
        .update_meta("w1", "core;group=g2", T)
        .await
        .expect("update");
    assert_eq!(m, "core;group=g2, m2;a=1");
    let m = ctl
        .remove_meta("w1", &["core", "m2"], T)
        .await
        .expect("remove");
    assert_eq!(m, original);
    assert_eq!(
        code(ctl.update_meta("w1", ";;;", T).await),
        "syntax_error",
        "a malformed token list is refused"
    );
    // Data registry.
    assert_eq!(code(ctl.get_data("w1", "k", T).await), "not_found");
    ctl.put_data("w1", "k", bytes::Bytes::from_static(b"v1"), T)
        .await
        .expect("put");
    assert_eq!(ctl.get_data("w1", "k", T).await.as_deref(), Ok(&b"v1"[..]));
    ctl.put_data("w1", "k", bytes::Bytes::from_static(b"v2"), T)
        .await
        .expect("overwrite");
    assert_eq!(ctl.get_data("w1", "k", T).await.as_deref(), Ok(&b"v2"[..]));
    ctl.del_data("w1", "k", T).await.expect("del");
    assert_eq!(code(ctl.get_data("w1", "k", T).await), "not_found");
    // Info: status, metadata and machine figures.
    let info = ctl.get_info("w1", T).await.expect("info");
    assert_eq!(info.id, "w1");
    assert_eq!(info.status, Status::Ready);
    assert!(
        info.stats.mem_total > 0 && info.stats.time_ms > 0,
        "{info:?}"
    );
    assert!(!info.stats.os.is_empty(), "{info:?}");
    c.worker.shutdown();
    c.control.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_intact_and_a_bad_checksum_is_refused() {
    use nkcluster::jobs::{FilePart, JobCall};
    use nkcluster::node::CLASS_JOB;
    use nkcluster_tests::{TempDir, XorShift};

    let c = cluster().await;
    let ctl = &c.control;
    let dir = TempDir::new("jobs-files");
    let mut rng = XorShift::new(7);
    // 500 B (one message) and 2 MiB (1 MiB parts), compared byte for byte on the worker's
    // side (the same machine's file system here).
    for size in [500usize, 2 * 1024 * 1024 + 17] {
        let data: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
        let local = dir.path().join(format!("in-{size}"));
        std::fs::write(&local, &data).expect("write");
        let remote = dir.path().join(format!("out-{size}"));
        let mut parts = 0;
        let n = ctl
            .send_file("w1", &local, &remote.display().to_string(), T, |_, _| {
                parts += 1
            })
            .await
            .expect("sent");
        assert_eq!(n, size as u64);
        assert_eq!(parts, size.div_ceil(1024 * 1024));
        assert_eq!(std::fs::read(&remote).expect("arrived"), data);
    }
    // A wrong checksum: refused, and nothing appears.
    let remote = dir.path().join("bad").display().to_string();
    let part = FilePart {
        path: remote.clone(),
        offset: 0,
        total: 3,
        data: bytes::Bytes::from_static(b"abc"),
        sha256: Some([0; 32]),
    };
    let body = bytes::Bytes::from(postcard::to_allocvec(&JobCall::SendFile(part)).expect("enc"));
    assert_eq!(
        code(ctl.send("w1", CLASS_JOB, body, T).await),
        "checksum_mismatch"
    );
    assert!(!std::path::Path::new(&remote).exists());
    assert!(!std::path::Path::new(&format!("{remote}.part")).exists());
    // A part out of order is refused.
    let part = FilePart {
        path: remote.clone(),
        offset: 10,
        total: 20,
        data: bytes::Bytes::from_static(b"x"),
        sha256: None,
    };
    let body = bytes::Bytes::from(postcard::to_allocvec(&JobCall::SendFile(part)).expect("enc"));
    assert_eq!(code(ctl.send("w1", CLASS_JOB, body, T).await), "bad_offset");
    // Transfers that never finish hold open files: at most 64 at once.
    let start = |i: usize| {
        let part = FilePart {
            path: dir.path().join(format!("open-{i}")).display().to_string(),
            offset: 0,
            total: 10,
            data: bytes::Bytes::from_static(b"x"),
            sha256: None,
        };
        bytes::Bytes::from(postcard::to_allocvec(&JobCall::SendFile(part)).expect("enc"))
    };
    for i in 0..64 {
        ctl.send("w1", CLASS_JOB, start(i), T)
            .await
            .expect("started");
    }
    assert_eq!(
        code(ctl.send("w1", CLASS_JOB, start(64), T).await),
        "too_many_transfers"
    );
    // Subscribing is for admin clients and control members: a worker is refused.
    let sub = nkcluster::node::SubscribeRequest {
        subscriber: "nobody".into(),
        fanout: true,
    };
    let body = bytes::Bytes::from(postcard::to_allocvec(&sub).expect("enc"));
    assert_eq!(
        code(
            c.worker
                .request("c1", nkcluster::node::CLASS_SUBSCRIBE, body, T)
                .await
        ),
        "forbidden"
    );
    c.worker.shutdown();
    c.control.shutdown();
}

/// A `spawn_call` that blocks (until the gate opens) does not hold up the link: a `call`
/// on the same link answers meanwhile (otherwise it would time out, and the gate would
/// never open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_call_does_not_hold_up_the_link() {
    let c = cluster().await;
    let ctl = c.control.clone();
    let slow = tokio::spawn(async move { ctl.spawn_call("w1", "wait_gate", &[], T).await });
    let r = c.control.call("w1", "node", &[], T).await;
    assert_eq!(r.as_deref(), Ok("w1"));
    assert!(!slow.is_finished());
    {
        let (open, cv) = &*GATE;
        *open.lock().expect("gate") = true;
        cv.notify_all();
    }
    assert_eq!(slow.await.expect("join").as_deref(), Ok("passed"));
    c.worker.shutdown();
    c.control.shutdown();
}
