//! The workload that gives the request and event invariants something to check: every
//! live control node is a client issuing requests for random workers through the
//! cluster's routing (see [`super::routing`]), each with its own deadline:
//!
//! - a job request of class `sim.work`, which the worker's shell serves after a service
//!   time drawn from the seed (some longer than the deadline: those end `timeout`);
//! - a task of class `sim.task`, which the worker's machine starts (`task_started`) and
//!   which ends by itself after a while (`task_stopped`): events its proxy must hear;
//!   while it runs it sends an event of its own every `task_events_every` (numbered in
//!   the order tasks send them), linked or not: a disconnected worker keeps them;
//! - a status change of the worker (`standby`, `ready`), a node event too.
//!
//! Workers serve these as the daemon's job classes would, without I/O. Targets include
//! workers that are down or not started: a client cannot know, and those requests must
//! end with a typed error like any other.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use nkcluster_core::cluster::{
    ClusterRequest, EventMsg, JobCall, TaskStarted, WireEvent, encode_answer,
};
use nkcluster_core::conn::RequestError;
use nkcluster_core::error::ErrorCode;
use nkcluster_core::handshake::Role;
use nkcluster_core::message::RemoteError;
use nkcluster_core::node::ShellWork;
use nkcluster_core::status::Status;
use rand::Rng;

use super::routing::{ReplyTo, Route};
use super::world::{ConnId, Ev, NodeIdx, World};

/// The job class whose requests take a service time (body: milliseconds, as text).
pub const CLASS_WORK: &str = "sim.work";
/// The job class whose tasks run for a while (body: milliseconds, as text).
pub const CLASS_TASK: &str = "sim.task";

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Each live control node issues a request this often on average (uniform between
    /// zero and twice this).
    pub every: Duration,
    /// Deadlines, drawn uniformly in this range.
    pub timeout: (Duration, Duration),
    /// Service time of a `sim.work` request, drawn uniformly in this range.
    pub service: (Duration, Duration),
    /// How long a task runs, drawn uniformly in this range.
    pub task_for: (Duration, Duration),
    /// Of every 100 requests: how many start a task, how many change a status (the
    /// rest are `sim.work` requests).
    pub tasks_percent: u32,
    /// See `tasks_percent`.
    pub status_percent: u32,
    /// The workers requests are for.
    pub targets: Vec<String>,
    /// A running task sends an event this often (`None`: never).
    pub task_events_every: Option<Duration>,
}

/// Counts of what the clients saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Requests issued.
    pub issued: u64,
    /// Ended with an answer.
    pub ok: u64,
    /// Ended with an error, by code.
    pub errors: BTreeMap<String, u64>,
}

impl WorkloadStats {
    /// One line: issued, ok, and each error code's count.
    pub fn summary(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        format!(
            "requests {} (ok {}; {})",
            self.issued,
            self.ok,
            if errors.is_empty() {
                "no errors".to_owned()
            } else {
                errors.join(", ")
            }
        )
    }
}

/// The workload's state in the world.
#[derive(Debug, Default)]
pub struct Workload {
    config: Option<WorkloadConfig>,
    /// Routed requests in progress, by id.
    pub(super) routes: BTreeMap<u64, Route>,
    next_route: u64,
    next_client: u64,
    /// No new request is issued (the end of a run drains what is in flight).
    paused: bool,
    /// What the clients saw.
    pub stats: WorkloadStats,
    /// Task events sent so far (their numbers).
    task_events: u64,
    /// When `Some`, every task event sent, with its worker and whether the worker had no
    /// control link then (a scenario's record; off by default: runs at scale send many).
    pub emitted: Option<Vec<(String, EventMsg, bool)>>,
}

impl Workload {
    pub(super) fn next_route(&mut self) -> u64 {
        self.next_route += 1;
        self.next_route
    }

    /// Node `idx` went down: its routes are void.
    pub(super) fn node_down(&mut self, idx: NodeIdx) {
        self.routes.retain(|_, r| r.node() != idx);
    }

    pub(super) fn client_done(&mut self, _id: u64, result: &Result<Bytes, RequestError>) {
        match result {
            Ok(_) => self.stats.ok += 1,
            Err(e) => *self.stats.errors.entry(e.code().to_owned()).or_default() += 1,
        }
    }
}

fn ms(body: &[u8]) -> Option<Duration> {
    std::str::from_utf8(body)
        .ok()?
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

impl World {
    /// Starts the workload: every live control node begins issuing requests.
    pub fn start_workload(&mut self, config: WorkloadConfig) {
        self.workload.config = Some(config);
        self.workload.paused = false;
        let controls: Vec<NodeIdx> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].machine.is_control())
            .collect();
        for c in controls {
            self.schedule_client(c);
        }
    }

    /// No new requests (those in flight go on); `resume` goes on issuing.
    pub fn pause_workload(&mut self, paused: bool) {
        let was = self.workload.paused;
        self.workload.paused = paused;
        if was && !paused {
            let controls: Vec<NodeIdx> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].alive && self.nodes[*i].machine.is_control())
                .collect();
            for c in controls {
                self.schedule_client(c);
            }
        }
    }

    /// A control node that (re)started joins the clients.
    pub(super) fn client_started(&mut self, idx: NodeIdx) {
        if self.workload.config.is_some() && self.nodes[idx].machine.is_control() {
            self.schedule_client(idx);
        }
    }

    fn schedule_client(&mut self, idx: NodeIdx) {
        let Some(every) = self.workload.config.as_ref().map(|c| c.every) else {
            return;
        };
        let wait = Duration::from_micros(
            self.rng
                .random_range(0..=u64::try_from(every.as_micros() * 2).unwrap_or(u64::MAX)),
        );
        let at = self.now + wait;
        let run = self.nodes[idx].run;
        self.schedule(at, Ev::Client { node: idx, run });
    }

    /// Control node `idx` (in run `run`) issues its next request.
    pub(super) fn client_request(&mut self, idx: NodeIdx, run: u64) {
        if !self.nodes[idx].alive || self.nodes[idx].run != run || self.workload.paused {
            return;
        }
        let Some(cfg) = self.workload.config.clone() else {
            return;
        };
        self.schedule_client(idx);
        if cfg.targets.is_empty() {
            return;
        }
        let target = cfg.targets[self.rng.random_range(0..cfg.targets.len())].clone();
        let timeout = self.draw(cfg.timeout);
        let pick = self.rng.random_range(0..100);
        let call = if pick < cfg.tasks_percent {
            JobCall::Task {
                class: CLASS_TASK.into(),
                body: Bytes::from(self.draw(cfg.task_for).as_millis().to_string()),
                id: None,
            }
        } else if pick < cfg.tasks_percent + cfg.status_percent {
            let to = if self.rng.random_range(0..2) == 0 {
                Status::Standby
            } else {
                Status::Ready
            };
            JobCall::SetStatus(to)
        } else {
            JobCall::Request {
                class: CLASS_WORK.into(),
                body: Bytes::from(self.draw(cfg.service).as_millis().to_string()),
            }
        };
        let Ok((class, body)) = ClusterRequest::Job(call).encode() else {
            return;
        };
        self.workload.next_client += 1;
        let api = self.workload.next_client;
        self.workload.stats.issued += 1;
        let at = self.now;
        self.checks
            .requests
            .client_issued(api, (idx, &self.nodes[idx].id), &target, at, timeout);
        self.start_route(
            idx,
            (&target, class, body),
            timeout,
            0,
            ReplyTo::Client(api),
        );
    }

    fn draw(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        let span = u64::try_from(hi.saturating_sub(lo).as_micros()).unwrap_or(u64::MAX);
        lo + Duration::from_micros(self.rng.random_range(0..=span))
    }

    /// Shell work for a job call on end `conn` (request `rid`) of `node`: `sim.work`
    /// requests are answered after their service time, `sim.task` tasks start; other
    /// work is not simulated (a typed error).
    pub(super) fn serve_job(
        &mut self,
        (conn, rid): (ConnId, u64),
        node: NodeIdx,
        work: ShellWork,
    ) -> Option<Result<Bytes, RemoteError>> {
        let bad = |what: &str| {
            Some(Err(RemoteError::new(
                ErrorCode::UnknownRequest,
                format!("{what} is not simulated by the core-only driver"),
            )))
        };
        match work {
            ShellWork::ClassRequest { class, body } if class == CLASS_WORK => {
                let Some(service) = ms(&body) else {
                    return Some(Err(RemoteError::new(ErrorCode::BadRequest, "service ms")));
                };
                let at = self.now + service;
                self.schedule(
                    at,
                    Ev::Answer {
                        conn,
                        rid,
                        result: Ok(body),
                    },
                );
                None
            }
            ShellWork::StartTask { class, body, id } if class == CLASS_TASK => {
                let Some(runs) = ms(&body) else {
                    return Some(Err(RemoteError::new(ErrorCode::BadRequest, "task ms")));
                };
                let task = match self.nodes[node].machine.start_task(id, &class) {
                    Ok(task) => task,
                    Err(e) => return Some(Err(e)),
                };
                let at = self.now + runs;
                let run = self.nodes[node].run;
                self.schedule(at, Ev::TaskEnd { node, run, task });
                if let Some(every) = self
                    .workload
                    .config
                    .as_ref()
                    .and_then(|c| c.task_events_every)
                {
                    self.schedule_tick((node, run), task, every);
                }
                Some(encode_answer(&TaskStarted { task, reply: None }))
            }
            ShellWork::ClassRequest { class, .. } | ShellWork::StartTask { class, .. } => {
                Some(Err(RemoteError::new(
                    ErrorCode::UnknownClass,
                    format!("no class {class} in the core-only simulator"),
                )))
            }
            ShellWork::StopTask(task) => {
                if self.nodes[node].machine.handle_task_ended(task, "stopped") {
                    Some(Ok(Bytes::new()))
                } else {
                    Some(Err(RemoteError::new(
                        ErrorCode::TaskNotFound,
                        format!("no task {task} runs here"),
                    )))
                }
            }
            ShellWork::Call { .. } => bad("a call"),
            ShellWork::Command { .. } => bad("a task command"),
            ShellWork::SendFile(..) => bad("a file"),
            ShellWork::FileStatus(_) => bad("a file status"),
            ShellWork::Adopt(_) => bad("an adoption"),
            ShellWork::Nodes { .. } => bad("the node table"),
            ShellWork::RecentEvents => bad("the recent events"),
            ShellWork::Dial { .. } => bad("a dial by hand"),
            ShellWork::Remove { .. } => bad("a removal"),
            ShellWork::Load { .. } => bad("a module load"),
            ShellWork::Handler { class, .. } => bad(&format!("handler class {class}")),
            ShellWork::GetInfo | ShellWork::Route(_) => bad("this work here"),
        }
    }

    /// A served job request is done: its answer goes out on `conn`.
    pub(super) fn answer(&mut self, conn: ConnId, rid: u64, result: Result<Bytes, RemoteError>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !self.nodes[c.node].alive {
            return;
        }
        c.conn.reply(rid, result);
        self.flush(conn);
    }

    /// Starts a `sim.task` task on worker `idx` that runs until its node stops and sends
    /// an event every `every` (as a task started by the node's own API would): its id.
    pub fn start_ticking_task(&mut self, idx: NodeIdx, every: Duration) -> Result<u64, String> {
        let task = self.nodes[idx]
            .machine
            .start_task(None, CLASS_TASK)
            .map_err(|e| e.to_string())?;
        self.after_input(idx);
        let run = self.nodes[idx].run;
        self.schedule_tick((idx, run), task, every);
        Ok(task)
    }

    fn schedule_tick(&mut self, (node, run): (NodeIdx, u64), task: u64, every: Duration) {
        let at = self.now + every;
        self.schedule(
            at,
            Ev::TaskTick {
                node,
                run,
                task,
                every,
            },
        );
    }

    /// Task `task` of node `idx`'s run `run` sends its next event, if it still runs: on
    /// the node's ordered path of own events (its machine sends it, or keeps it while the
    /// node has no control link).
    pub(super) fn task_tick(&mut self, (idx, run): (NodeIdx, u64), task: u64, every: Duration) {
        let n = &self.nodes[idx];
        if !n.alive || n.run != run || n.machine.task_class(task) != Some(CLASS_TASK) {
            return;
        }
        self.workload.task_events += 1;
        let ev = EventMsg {
            node: n.id.clone(),
            class: CLASS_TASK.into(),
            task: Some(task),
            event: WireEvent::User(Bytes::from(self.workload.task_events.to_string())),
        };
        let offline =
            n.identity.role == Role::Worker && n.machine.links().first_control().is_none();
        if let Some(log) = &mut self.workload.emitted {
            log.push((n.id.clone(), ev.clone(), offline));
        }
        let now = self.clock(idx);
        self.nodes[idx].machine.handle_own_event(now, ev);
        self.after_input(idx);
        self.schedule_tick((idx, run), task, every);
    }

    /// Task `task` of node `idx`'s run `run` ends by itself.
    pub(super) fn task_ended(&mut self, idx: NodeIdx, run: u64, task: u64) {
        if !self.nodes[idx].alive || self.nodes[idx].run != run {
            return;
        }
        self.nodes[idx].machine.handle_task_ended(task, "normal");
        self.after_input(idx);
    }
}
