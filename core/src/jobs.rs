//! Job classes: what users run on the cluster.
//!
//! A job class is a typed Rust trait ([`JobClass`]) registered by name at both ends
//! ([`JobClasses::register`]). At the worker it answers `request`s, starts long-lived
//! `task`s (which send events back and take `command`s) and hears `status` changes; at
//! the control node that holds the worker's proxy it receives the `event`s. Payloads are
//! serde types encoded with postcard.
//!
//! From any control node (the daemon's `Node`): `job_request`, `start_task`, `command`,
//! `set_status`, `get_tasks`, `stop_task`, and `job_events()` (every event of every
//! worker this node serves). Automatic events: `task_started`,
//! `task_stopped(reason)`, `node_status(status)`; when a worker's link drops, every class
//! that has seen an event from it gets `node_status(not_connected)`, and its status again
//! when it is back.
//!
//! The classes are runtime-agnostic: a task's body is any `Send` future, and its events
//! leave through the [`EventSender`] the shell gives (in order). The daemon's
//! `examples/job_class.rs` is a runnable example.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::status::Status;

/// The body of a task: runs until the task ends. `Ok(())` ends it `normal`; `Err(reason)`
/// with that reason; a panic with `panic: <message>`.
pub type TaskRun = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// What a class's `task` returns: an optional immediate reply and the task's body.
pub struct TaskStart<R> {
    /// Sent back to the caller with the task id.
    pub reply: Option<R>,
    /// Spawned by the node; the task lasts as long as this runs.
    pub run: TaskRun,
}

/// An event as the control side receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent<E> {
    /// Sent by a task.
    User(E),
    /// The task started.
    TaskStarted,
    /// The task ended, with its reason (`normal`, `stopped`, an error, `panic: ...`).
    TaskStopped(String),
    /// The worker's status changed (`not_connected` when its link dropped).
    NodeStatus(Status),
    /// The task is still running (re-announced when the worker links again, after the
    /// events it kept meanwhile).
    TaskRunning,
    /// This many of the class's events were lost while the worker was disconnected and
    /// its event buffer was full (the oldest were dropped).
    EventsLost(u64),
}

pub use crate::cluster::{EventMsg, FilePart, JobCall, NodeInfo, Stats, TaskStarted, WireEvent};

/// Where a node's own events go, in order (the shell's ordered path to the brain).
pub type EventSender = Arc<dyn Fn(EventMsg) + Send + Sync>;

/// An event as the daemon's `Node::job_events` delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeJobEvent {
    /// The worker it came from.
    pub node: String,
    /// Job class (`nkcluster` for node-level events).
    pub class: String,
    /// The task it concerns.
    pub task: Option<u64>,
    /// What happened (a class's own events still encoded).
    pub event: WireEvent,
}

/// Sends a task's events to the control side.
pub struct TaskCtx<E> {
    node: Arc<str>,
    id: u64,
    class: Arc<str>,
    tx: EventSender,
    _e: std::marker::PhantomData<fn(E)>,
}

impl<E> Clone for TaskCtx<E> {
    fn clone(&self) -> Self {
        TaskCtx {
            node: self.node.clone(),
            id: self.id,
            class: self.class.clone(),
            tx: self.tx.clone(),
            _e: std::marker::PhantomData,
        }
    }
}

impl<E: Serialize> TaskCtx<E> {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends an event to the control node holding the proxy, in order. While the worker
    /// has no control link it is kept in a bounded buffer and sent on the next link (when
    /// the buffer is full the oldest are dropped and the class hears `events_lost`).
    pub fn send(&self, event: &E) {
        if let Ok(b) = postcard::to_allocvec(event) {
            (self.tx)(EventMsg {
                node: self.node.to_string(),
                class: self.class.to_string(),
                task: Some(self.id),
                event: WireEvent::User(Bytes::from(b)),
            });
        }
    }
}

/// A job class. Every method has a default, so a class implements what it uses.
pub trait JobClass: Send + Sync + 'static {
    /// Request payload.
    type Request: Serialize + DeserializeOwned + Send;
    /// Reply payload (requests, commands, a task's immediate reply).
    type Reply: Serialize + DeserializeOwned + Send;
    /// Task specification.
    type Spec: Serialize + DeserializeOwned + Send;
    /// Command payload.
    type Command: Serialize + DeserializeOwned + Send;
    /// Event payload.
    type Event: Serialize + DeserializeOwned + Send;

    /// Worker: answers a request at once.
    fn request(&self, _req: Self::Request) -> Result<Self::Reply, RemoteError> {
        Err(RemoteError::new(
            ErrorCode::UnknownRequest,
            "this class takes no requests",
        ))
    }

    /// Worker: starts a task.
    fn task(
        &self,
        _ctx: TaskCtx<Self::Event>,
        _spec: Self::Spec,
    ) -> Result<TaskStart<Self::Reply>, RemoteError> {
        Err(RemoteError::new(
            ErrorCode::UnknownRequest,
            "this class has no tasks",
        ))
    }

    /// Worker: a command for running task `task`.
    fn command(&self, _task: u64, _cmd: Self::Command) -> Result<Self::Reply, RemoteError> {
        Err(RemoteError::new(
            ErrorCode::UnknownRequest,
            "this class takes no commands",
        ))
    }

    /// Worker: the node status changed (called once per running task of the class).
    fn status(&self, _task: u64, _status: Status) {}

    /// Control: an event from `node` (at the node holding its proxy).
    fn event(&self, _node: &str, _task: Option<u64>, _event: JobEvent<Self::Event>) {}
}

/// A class as the node dispatches to it: payloads still encoded, panics caught.
pub trait DynClass: Send + Sync {
    /// A request (`bad_request` when its body does not decode).
    fn request(&self, body: &[u8]) -> Result<Bytes, RemoteError>;
    /// Starts task `ids` = (node, task id, class): its encoded reply and its body.
    fn task(
        &self,
        ids: (Arc<str>, u64, Arc<str>),
        tx: EventSender,
        body: &[u8],
    ) -> Result<(Option<Bytes>, TaskRun), RemoteError>;
    /// A command for a running task.
    fn command(&self, task: u64, body: &[u8]) -> Result<Bytes, RemoteError>;
    /// The node's status changed (once per running task).
    fn status(&self, task: u64, status: Status);
    /// Control side: an event of `node` (a user event that does not decode is dropped).
    fn event(&self, node: &str, task: Option<u64>, event: &WireEvent);
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, RemoteError> {
    postcard::from_bytes(b).map_err(|e| RemoteError::new(ErrorCode::BadRequest, e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| RemoteError::new(ErrorCode::BadReply, e.to_string()))
}

/// Runs `f`, turning a panic into `callback_panicked` with its message.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, RemoteError>) -> Result<T, RemoteError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(RemoteError::new(
            ErrorCode::CallbackPanicked,
            panic_message(&*p),
        ))
    })
}

/// The message of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

struct Adapter<C>(C);

impl<C: JobClass> DynClass for Adapter<C> {
    fn request(&self, body: &[u8]) -> Result<Bytes, RemoteError> {
        let req = decode(body)?;
        guarded(|| self.0.request(req)).and_then(|r| encode(&r))
    }

    fn task(
        &self,
        (node, id, class): (Arc<str>, u64, Arc<str>),
        tx: EventSender,
        body: &[u8],
    ) -> Result<(Option<Bytes>, TaskRun), RemoteError> {
        let spec = decode(body)?;
        let ctx = TaskCtx {
            node,
            id,
            class,
            tx,
            _e: std::marker::PhantomData,
        };
        let start = guarded(|| self.0.task(ctx, spec))?;
        let reply = match start.reply {
            Some(r) => Some(encode(&r)?),
            None => None,
        };
        Ok((reply, start.run))
    }

    fn command(&self, task: u64, body: &[u8]) -> Result<Bytes, RemoteError> {
        let cmd = decode(body)?;
        guarded(|| self.0.command(task, cmd)).and_then(|r| encode(&r))
    }

    fn status(&self, task: u64, status: Status) {
        let _ = guarded(|| {
            self.0.status(task, status);
            Ok(())
        });
    }

    fn event(&self, node: &str, task: Option<u64>, event: &WireEvent) {
        let ev = match event {
            WireEvent::User(b) => match postcard::from_bytes(b) {
                Ok(e) => JobEvent::User(e),
                Err(_) => return,
            },
            WireEvent::TaskStarted => JobEvent::TaskStarted,
            WireEvent::TaskStopped(r) => JobEvent::TaskStopped(r.clone()),
            WireEvent::NodeStatus(s) => JobEvent::NodeStatus(*s),
            WireEvent::TaskRunning => JobEvent::TaskRunning,
            WireEvent::EventsLost(n) => JobEvent::EventsLost(*n),
            // Node information is for the control node itself, not the classes.
            WireEvent::Info(_) => return,
        };
        let _ = guarded(|| {
            self.0.event(node, task, ev);
            Ok(())
        });
    }
}

/// The job classes a node knows, by name.
#[derive(Clone, Default)]
pub struct JobClasses {
    map: HashMap<String, Arc<dyn DynClass>>,
}

impl std::fmt::Debug for JobClasses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl JobClasses {
    /// No classes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `class` under `name` (replacing any class of that name).
    pub fn register<C: JobClass>(mut self, name: &str, class: C) -> Self {
        self.map.insert(name.to_owned(), Arc::new(Adapter(class)));
        self
    }

    /// The class registered as `name` (`unknown_class` when none is).
    pub fn get(&self, name: &str) -> Result<&Arc<dyn DynClass>, RemoteError> {
        self.map.get(name).ok_or_else(|| {
            RemoteError::new(
                ErrorCode::UnknownClass,
                format!("no job class {name:?} is registered"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{AdoptRequest, CallRequest, RouteRequest, SubscribeRequest};
    use proptest::prelude::*;

    /// Every body a peer can send us is decoded from arbitrary bytes without a panic;
    /// what decodes re-encodes, and that encoding is a fixed point (decode, encode again:
    /// the same bytes), never longer than the input.
    fn decodes_or_refuses<T: serde::de::DeserializeOwned + Serialize>(b: &[u8]) {
        if let Ok(v) = postcard::from_bytes::<T>(b) {
            let once = postcard::to_allocvec(&v).expect("re-encode");
            assert!(once.len() <= b.len(), "{} > {}", once.len(), b.len());
            let back: T = postcard::from_bytes(&once).expect("decode own encoding");
            assert_eq!(postcard::to_allocvec(&back).expect("encode"), once);
        }
    }

    proptest! {
        #[test]
        fn peer_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            decodes_or_refuses::<JobCall>(&b);
            decodes_or_refuses::<EventMsg>(&b);
            decodes_or_refuses::<TaskStarted>(&b);
            decodes_or_refuses::<RouteRequest>(&b);
            decodes_or_refuses::<CallRequest>(&b);
            decodes_or_refuses::<AdoptRequest>(&b);
            decodes_or_refuses::<SubscribeRequest>(&b);
            decodes_or_refuses::<NodeInfo>(&b);
        }
    }

    #[test]
    fn a_claimed_huge_length_is_refused_without_allocating_it() {
        // GetTasks(Some(class)) whose class claims 2^62 bytes, then a part claiming 2^62.
        let mut b = vec![5u8, 1];
        b.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
        assert!(postcard::from_bytes::<JobCall>(&b).is_err());
        let part = FilePart {
            path: "p".into(),
            offset: 0,
            total: 1,
            data: Bytes::from_static(b"x"),
            sha256: None,
        };
        let mut enc = postcard::to_allocvec(&JobCall::SendFile(part)).expect("enc");
        // Replace the 1-byte data length with a huge varint.
        let at = enc.len() - 3;
        assert_eq!(enc[at], 1);
        enc.splice(at..=at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(postcard::from_bytes::<JobCall>(&enc).is_err());
    }
}
