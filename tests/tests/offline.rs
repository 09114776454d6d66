//! A worker keeps working while disconnected (a control node and a worker in process,
//! TCP on loopback through relays that cut the path): its task's events are kept while
//! it has no control link and arrive when it links again, after `events_lost` for those
//! its buffer dropped; `tasks` lists the task again and the class hears `task_running`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nkcluster::jobs::{
    JobClass, JobClasses, JobEvent, NodeJobEvent, TaskCtx, TaskStart, WireEvent,
};
use nkcluster::net::TokioNet;
use nkcluster::node::{Handlers, Node, NodeEvent};
use nkcluster_core::message::RemoteError;
use nkcluster_core::url::Transport;
use nkcluster_tests::inproc::{Relay, config, port_of, wait_event};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(30);

/// A class whose tasks run until stopped; the test sends their events through the task's
/// context (as a task working on its own would), and the control side records what its
/// `event` callback hears.
#[derive(Clone, Default)]
struct Ticker {
    ctx: Arc<Mutex<Option<TaskCtx<String>>>>,
    heard: Arc<Mutex<Vec<JobEvent<String>>>>,
}

impl JobClass for Ticker {
    type Request = ();
    type Reply = ();
    type Spec = ();
    type Command = ();
    type Event = String;

    fn task(&self, ctx: TaskCtx<String>, _spec: ()) -> Result<TaskStart<()>, RemoteError> {
        if let Ok(mut c) = self.ctx.lock() {
            *c = Some(ctx);
        }
        Ok(TaskStart {
            reply: None,
            run: Box::pin(std::future::pending()),
        })
    }

    fn event(&self, _node: &str, _task: Option<u64>, event: JobEvent<String>) {
        if let Ok(mut h) = self.heard.lock() {
            h.push(event);
        }
    }
}

impl Ticker {
    fn emit(&self, s: &str) {
        let ctx = self.ctx.lock().ok().and_then(|c| c.clone());
        ctx.expect("the task runs").send(&s.to_owned());
    }
}

fn handlers(id: &str, class: &Ticker) -> Option<Handlers> {
    let mut h = Handlers::builtin(id);
    h.set_classes(JobClasses::new().register("ticker", class.clone()));
    Some(h)
}

fn env() -> nkcluster::node::Env<TokioNet> {
    nkcluster::node::Env::real()
}

/// Where the worker stands (`node_status`, `task_running`): told to a new control link at
/// once, while the kept class events wait until that control node says it serves the
/// worker at its owner (`Placed`, see `core/src/node/offline.rs`). The two streams are
/// each in order; how they interleave depends on which of the link's first messages the
/// worker handles first.
fn is_standing(e: &str) -> bool {
    e.starts_with("node_status:") || e.starts_with("task_running:")
}

/// `got` holds exactly the kept events `kept` and the standing events `standing`, each
/// stream in its order.
fn assert_streams(got: &[String], kept: &[String], standing: &[String]) {
    let (got_standing, got_kept): (Vec<&String>, Vec<&String>) =
        got.iter().partition(|e| is_standing(e));
    assert_eq!(
        got_kept,
        kept.iter().collect::<Vec<_>>(),
        "kept events, in {got:?}"
    );
    assert_eq!(
        got_standing,
        standing.iter().collect::<Vec<_>>(),
        "where w1 stands, in {got:?}"
    );
}

/// The next `n` events of w1 (not information reports), as short strings.
async fn take(rx: &mut broadcast::Receiver<NodeJobEvent>, n: usize) -> Vec<String> {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        let e = match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => panic!("waiting for w1's events: {e}; got {out:?}"),
            Err(_) => panic!("waiting for w1's events: only {out:?} within {DEADLINE:?}"),
        };
        if e.node != "w1" {
            continue;
        }
        out.push(match e.event {
            WireEvent::User(b) => format!(
                "user:{}",
                postcard::from_bytes::<String>(&b).unwrap_or_default()
            ),
            WireEvent::TaskStarted => "task_started".into(),
            WireEvent::TaskStopped(r) => format!("task_stopped:{r}"),
            WireEvent::NodeStatus(s) => format!("node_status:{s}"),
            WireEvent::TaskRunning => format!("task_running:{}", e.task.unwrap_or(0)),
            WireEvent::EventsLost(n) => format!("events_lost:{n}"),
            WireEvent::Info(_) => continue,
        });
    }
    out
}

/// Cuts `relay` and waits until the worker knows its link is gone (its events are kept
/// from then on) and the control node has told the class `not_connected`.
async fn cut(
    relay: &Relay,
    worker: &mut broadcast::Receiver<NodeEvent>,
    events: &mut broadcast::Receiver<NodeJobEvent>,
) {
    relay.cut();
    wait_event(
        worker,
        "w1 loses its link",
        |e| matches!(e, NodeEvent::LinkDown { peer, .. } if peer == "c1"),
    )
    .await;
    assert_eq!(take(events, 1).await, ["node_status:not_connected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_worker_keeps_its_events_and_tells_them_on_its_next_link() {
    let ticker = Ticker::default();
    let control = Node::start_with(
        config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp"),
        env(),
        handlers("c1", &ticker),
    )
    .await
    .expect("control");
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port_of(&control, Transport::Tcp)));
    // Three paths to c1, one open at a time: each outage cuts one and opens the next.
    let first = Relay::start(target).await;
    let spares = [nkcluster_tests::free_port(), nkcluster_tests::free_port()];
    let mut w = config("w1", false, "");
    w.cluster_addr = nkcluster_core::url::parse_url_list(&format!(
        "nkcluster://127.0.0.1:{};transport=tcp, nkcluster://127.0.0.1:{};transport=tcp, \
         nkcluster://127.0.0.1:{};transport=tcp",
        first.addr().port(),
        spares[0],
        spares[1],
    ))
    .expect("url");
    w.backoff.initial = Duration::from_millis(50);
    w.event_buffer = 5;
    let mut events = control.job_events();
    let worker = Node::start_with(w, env(), handlers("w1", &ticker))
        .await
        .expect("worker");
    let mut worker_events = worker.subscribe();
    assert_eq!(take(&mut events, 1).await, ["node_status:ready"]);
    let (id, _) = control
        .start_task::<Ticker>("w1", "ticker", &(), T)
        .await
        .expect("started");
    ticker.emit("linked");
    assert_eq!(take(&mut events, 2).await, ["task_started", "user:linked"]);

    // Outage 1: three events, within the buffer.
    cut(&first, &mut worker_events, &mut events).await;
    for s in ["a1", "a2", "a3"] {
        ticker.emit(s);
    }
    let second = Relay::start_at(spares[0], target).await;
    let standing = ["node_status:ready".to_owned(), format!("task_running:{id}")];
    assert_streams(
        &take(&mut events, 5).await,
        &[
            "user:a1".to_owned(),
            "user:a2".to_owned(),
            "user:a3".to_owned(),
        ],
        &standing,
    );
    assert_eq!(
        control.get_tasks("w1", None, T).await,
        Ok(vec![(id, "ticker".to_owned())])
    );

    // Outage 2: eight events, three beyond the buffer: the oldest are dropped and told.
    cut(&second, &mut worker_events, &mut events).await;
    for n in 1..=8 {
        ticker.emit(&format!("b{n}"));
    }
    let _third = Relay::start_at(spares[1], target).await;
    let kept = [
        "events_lost:3",
        "user:b4",
        "user:b5",
        "user:b6",
        "user:b7",
        "user:b8",
    ];
    let kept: Vec<String> = kept.into_iter().map(str::to_owned).collect();
    let got = take(&mut events, 8).await;
    assert_streams(&got, &kept, &standing);
    assert_eq!(
        control.get_tasks("w1", None, T).await,
        Ok(vec![(id, "ticker".to_owned())])
    );
    // The class's own callback heard the same, in the same order.
    let heard: Vec<JobEvent<String>> = ticker.heard.lock().map(|h| h.clone()).unwrap_or_default();
    let tail: Vec<String> = heard[heard.len() - 8..]
        .iter()
        .map(|e| match e {
            JobEvent::EventsLost(n) => format!("events_lost:{n}"),
            JobEvent::User(s) => format!("user:{s}"),
            JobEvent::NodeStatus(s) => format!("node_status:{s}"),
            JobEvent::TaskRunning => format!("task_running:{id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(tail, got, "the class heard {heard:?}");
    worker.shutdown();
    control.shutdown();
}
