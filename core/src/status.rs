//! Node status and the tasks a worker runs: the original's seven states and their
//! transitions, as a deterministic machine.
//!
//! A worker's own states are `launching` (starting), `ready` (takes tasks), `standby`
//! (alive, takes no new task), `stopping` (tasks are told to stop; becomes `stopped` by
//! itself when the last task ends) and `stopped`. A control node's view of a worker adds
//! `connecting` (dialing it) and `not_connected` (no link). Requests and commands work in
//! every connected state; new tasks only start in `ready`.
//!
//! Every change is an [`StatusEvent::Changed`]: the shell sends the `node_status` event to
//! the control side first, then calls each running task's `status` callback, in that
//! order.
//!
//! ```
//! use nkcluster_core::status::{NodeStatus, Status, StatusEvent};
//! let mut s = NodeStatus::new();
//! s.handle_started();
//! s.task_started(1, "demo").unwrap();
//! s.set_status(Status::Stopped).unwrap();
//! assert_eq!(s.status(), Status::Stopping); // waits for the task
//! s.task_stopped(1);
//! assert_eq!(s.status(), Status::Stopped);
//! let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
//! assert_eq!(ev, [
//!     StatusEvent::Changed(Status::Ready),
//!     StatusEvent::Changed(Status::Stopping),
//!     StatusEvent::Changed(Status::Stopped),
//! ]);
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The original's node states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Starting.
    Launching,
    /// A control node is trying to reach the worker.
    Connecting,
    /// Takes requests and tasks.
    Ready,
    /// Alive; takes requests, no new task.
    Standby,
    /// Tasks are told to stop; becomes `stopped` when the last ends.
    Stopping,
    /// Alive, stopped: requests only.
    Stopped,
    /// No link to the worker.
    NotConnected,
}

impl Status {
    /// Every state, in the original's order.
    pub const ALL: [Status; 7] = [
        Status::Launching,
        Status::Connecting,
        Status::Ready,
        Status::Standby,
        Status::Stopping,
        Status::Stopped,
        Status::NotConnected,
    ];

    /// The snake_case name (`not_connected`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Launching => "launching",
            Status::Connecting => "connecting",
            Status::Ready => "ready",
            Status::Standby => "standby",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::NotConnected => "not_connected",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status change or a task was refused. No variant changes the status or the task
/// table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatusError {
    /// Tasks only start in `ready`.
    #[error("node_not_ready: the node is {0}")]
    NodeNotReady(Status),
    /// A worker cannot be set to a state only a control node's view has.
    #[error("invalid_status: {0} cannot be set on a node")]
    InvalidStatus(Status),
    /// The task id is in use.
    #[error("already_started: task {0} exists")]
    AlreadyStarted(u64),
    /// Too many tasks.
    #[error("too_many_tasks: limit {0}")]
    TooManyTasks(usize),
}

impl StatusError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            StatusError::NodeNotReady(_) => "node_not_ready",
            StatusError::InvalidStatus(_) => "invalid_status",
            StatusError::AlreadyStarted(_) => "already_started",
            StatusError::TooManyTasks(_) => "too_many_tasks",
        }
    }
}

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusEvent {
    /// The status changed: send `node_status`, then call every task's `status`.
    Changed(Status),
}

/// A worker's status and its running tasks (id → class).
#[derive(Debug)]
pub struct NodeStatus {
    status: Status,
    tasks: BTreeMap<u64, String>,
    max_tasks: usize,
    /// The next id [`start_task`](NodeStatus::start_task) hands out.
    next_id: u64,
    events: VecDeque<StatusEvent>,
}

impl Default for NodeStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeStatus {
    /// A node that is `launching`, with room for 100,000 tasks.
    pub fn new() -> Self {
        NodeStatus {
            status: Status::Launching,
            tasks: BTreeMap::new(),
            max_tasks: 100_000,
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Start-up is done: `launching` becomes `ready`.
    pub fn handle_started(&mut self) {
        if self.status == Status::Launching {
            self.change(Status::Ready);
        }
    }

    /// Asks for `to`. `stopping` and `stopped` both mean "stop": the node goes through
    /// `stopping` and reaches `stopped` when no task is left (at once if there is none).
    /// `connecting` and `not_connected` are a control node's view, never a node's own.
    pub fn set_status(&mut self, to: Status) -> Result<(), StatusError> {
        match to {
            Status::Connecting | Status::NotConnected | Status::Launching => {
                Err(StatusError::InvalidStatus(to))
            }
            Status::Ready | Status::Standby => {
                if self.status != to {
                    self.change(to);
                }
                Ok(())
            }
            Status::Stopping | Status::Stopped => {
                if !matches!(self.status, Status::Stopping | Status::Stopped) {
                    self.change(Status::Stopping);
                }
                self.maybe_stopped();
                Ok(())
            }
        }
    }

    /// Starts a task of `class`: the caller's own id, or the next free one (ids callers
    /// chose themselves are skipped). Only in `ready`; `already_started` when `id` runs.
    pub fn start_task(&mut self, id: Option<u64>, class: &str) -> Result<u64, StatusError> {
        let id = match id {
            Some(id) => id,
            None => {
                while self.tasks.contains_key(&self.next_id) {
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                }
                self.next_id
            }
        };
        self.task_started(id, class)?;
        if id == self.next_id {
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
        Ok(id)
    }

    /// Registers a new task: only in `ready`.
    pub fn task_started(&mut self, id: u64, class: &str) -> Result<(), StatusError> {
        if self.status != Status::Ready {
            return Err(StatusError::NodeNotReady(self.status));
        }
        if self.tasks.contains_key(&id) {
            return Err(StatusError::AlreadyStarted(id));
        }
        if self.tasks.len() >= self.max_tasks {
            return Err(StatusError::TooManyTasks(self.max_tasks));
        }
        self.tasks.insert(id, class.into());
        Ok(())
    }

    /// A task ended (for any reason). Returns its class if it was known.
    pub fn task_stopped(&mut self, id: u64) -> Option<String> {
        let class = self.tasks.remove(&id);
        self.maybe_stopped();
        class
    }

    /// Running tasks, all or those of `class`, by id.
    pub fn tasks(&self, class: Option<&str>) -> Vec<(u64, &str)> {
        self.tasks
            .iter()
            .filter(|(_, c)| class.is_none_or(|k| k == c.as_str()))
            .map(|(id, c)| (*id, c.as_str()))
            .collect()
    }

    /// The class of task `id`.
    pub fn task_class(&self, id: u64) -> Option<&str> {
        self.tasks.get(&id).map(String::as_str)
    }

    /// Next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<StatusEvent> {
        self.events.pop_front()
    }

    fn maybe_stopped(&mut self) {
        if self.status == Status::Stopping && self.tasks.is_empty() {
            self.change(Status::Stopped);
        }
    }

    fn change(&mut self, to: Status) {
        self.status = to;
        self.events.push_back(StatusEvent::Changed(to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_allocated_skipping_ids_callers_chose() {
        let mut n = NodeStatus::new();
        n.handle_started();
        assert_eq!(n.start_task(Some(2), "a"), Ok(2));
        assert_eq!(n.start_task(None, "a"), Ok(1));
        assert_eq!(n.start_task(None, "b"), Ok(3));
        assert_eq!(
            n.start_task(Some(3), "b"),
            Err(StatusError::AlreadyStarted(3))
        );
        assert_eq!(n.tasks(None), [(1, "a"), (2, "a"), (3, "b")]);
        let _ = n.task_stopped(1);
        // Ids are not reused while the counter moves on.
        assert_eq!(n.start_task(None, "c"), Ok(4));
        n.set_status(Status::Standby).expect("standby");
        assert_eq!(
            n.start_task(None, "c"),
            Err(StatusError::NodeNotReady(Status::Standby))
        );
    }

    fn drain(s: &mut NodeStatus) -> Vec<Status> {
        std::iter::from_fn(|| s.poll_event())
            .map(|StatusEvent::Changed(x)| x)
            .collect()
    }

    fn ready() -> NodeStatus {
        let mut s = NodeStatus::new();
        assert_eq!(s.status(), Status::Launching);
        assert_eq!(
            s.task_started(1, "c"),
            Err(StatusError::NodeNotReady(Status::Launching))
        );
        s.handle_started();
        assert_eq!(drain(&mut s), [Status::Ready]);
        s
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::NotConnected.to_string(), "not_connected");
        assert_eq!(Status::parse("bogus"), None);
    }

    #[test]
    fn standby_refuses_new_tasks_and_ready_restores() {
        let mut s = ready();
        s.task_started(1, "a").expect("ready takes tasks");
        s.set_status(Status::Standby).expect("standby");
        assert_eq!(drain(&mut s), [Status::Standby]);
        let e = s.task_started(2, "a").expect_err("refused");
        assert_eq!(e, StatusError::NodeNotReady(Status::Standby));
        assert_eq!(e.code(), "node_not_ready");
        // The running task is untouched.
        assert_eq!(s.tasks(None), [(1, "a")]);
        s.set_status(Status::Standby).expect("again");
        assert_eq!(drain(&mut s), [], "no change, no event");
        s.set_status(Status::Ready).expect("ready");
        assert_eq!(drain(&mut s), [Status::Ready]);
        s.task_started(2, "b").expect("ready again");
        assert_eq!(s.tasks(Some("b")), [(2, "b")]);
        assert_eq!(s.task_started(2, "b"), Err(StatusError::AlreadyStarted(2)));
    }

    #[test]
    fn stopped_goes_through_stopping_and_waits_for_the_last_task() {
        let mut s = ready();
        s.task_started(1, "a").expect("task");
        s.task_started(2, "a").expect("task");
        s.set_status(Status::Stopped).expect("stop");
        assert_eq!(s.status(), Status::Stopping);
        assert_eq!(
            s.task_started(3, "a"),
            Err(StatusError::NodeNotReady(Status::Stopping))
        );
        assert_eq!(s.task_stopped(1).as_deref(), Some("a"));
        assert_eq!(s.status(), Status::Stopping);
        assert_eq!(s.task_stopped(9), None);
        assert_eq!(s.task_stopped(2).as_deref(), Some("a"));
        assert_eq!(drain(&mut s), [Status::Stopping, Status::Stopped]);
        s.set_status(Status::Ready).expect("restart");
        assert_eq!(drain(&mut s), [Status::Ready]);
    }

    #[test]
    fn stopping_with_no_task_still_reports_both_steps() {
        let mut s = ready();
        s.set_status(Status::Stopping).expect("stop");
        assert_eq!(drain(&mut s), [Status::Stopping, Status::Stopped]);
        s.set_status(Status::Stopped).expect("idempotent");
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn view_only_states_cannot_be_set() {
        let mut s = ready();
        for v in [Status::Connecting, Status::NotConnected, Status::Launching] {
            assert_eq!(s.set_status(v), Err(StatusError::InvalidStatus(v)));
        }
        assert_eq!(drain(&mut s), []);
    }
}
