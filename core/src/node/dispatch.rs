//! The one place where a peer's cluster request is dispatched, with the peer's
//! authenticated id and role: answered by the machine when it only touches state, handed
//! to the shell ([`ShellWork`]) when it needs callbacks, files, machine figures or other
//! nodes, refused when this node's role does not serve it.

use bytes::Bytes;

use super::*;
use crate::cluster::{AdoptRequest, CallRequest, FilePart, FileQuery, JobCall, RouteRequest};
use crate::error::ErrorCode;
use crate::message::RemoteError;

/// What the shell carries out for a request (then answers it).
#[derive(Debug, Clone, PartialEq)]
pub enum ShellWork {
    /// Call a named function of the registry; `blocking`: on the blocking pool.
    Call {
        /// The call.
        req: CallRequest,
        /// Run it on the blocking pool (`spawn_call`).
        blocking: bool,
    },
    /// A job class's request callback (on the blocking pool).
    ClassRequest {
        /// The class.
        class: String,
        /// Its request.
        body: Bytes,
    },
    /// A command to running task `task` of `class` (on the blocking pool).
    Command {
        /// The class.
        class: String,
        /// The task (checked to run, with that class).
        task: u64,
        /// The command.
        body: Bytes,
    },
    /// Start a task of `class`: the shell checks the class, then calls
    /// [`NodeMachine::start_task`] and runs its body.
    StartTask {
        /// The class.
        class: String,
        /// Its spec.
        body: Bytes,
        /// The caller's own id.
        id: Option<u64>,
    },
    /// Stop running task `id` (abort its body; it ends `stopped`).
    StopTask(u64),
    /// This node's information with fresh machine figures.
    GetInfo,
    /// One part of a file for `files_dir`, checked with the content hash its request
    /// named.
    SendFile(FilePart, crate::file_send::ContentHash),
    /// Where a file's transfer is at (after the parts before it, in arrival order).
    FileStatus(FileQuery),
    /// Route a request to another node.
    Route(RouteRequest),
    /// Dial a worker and serve it (a hand-off to us).
    Adopt(AdoptRequest),
    /// The whole node table (or one node's row), gathered from every member.
    Nodes {
        /// One node only.
        one: Option<String>,
    },
    /// The recent events of every member, merged.
    RecentEvents,
    /// Dial `url` (through discovery) and answer the id of the node that authenticated
    /// there: a control node (`control`, `join`: its views then merge ours) or a worker
    /// (`connect`: its proxy moves to its owner).
    Dial {
        /// Where.
        url: crate::url::ClusterUrl,
        /// A control node is expected there.
        control: bool,
    },
    /// Remove a node from every member: check the gathered node table with
    /// [`check_removal`](super::lifecycle::check_removal), then send every member a
    /// local [`ClusterRequest::Remove`] and forget it here
    /// ([`NodeMachine::handle_forget`]); answer a
    /// [`RemoveReport`](crate::cluster::RemoveReport).
    Remove {
        /// The node.
        node: String,
        /// Even while connected.
        force: bool,
    },
    /// Validate and compile a module, check it with
    /// [`NodeMachine::check_module`] first and register it with
    /// [`NodeMachine::commit_module`]; answer a
    /// [`LoadReply`](crate::modules::LoadReply).
    Load {
        /// The load.
        req: crate::modules::LoadRequest,
        /// Who asked, for the log and `get_info`: `peer (role, origin)`.
        by: String,
    },
    /// A cluster class this node's role does not serve, for the registered handlers
    /// (`unknown_class` when none is registered).
    Handler {
        /// The class.
        class: String,
        /// Its body.
        body: Bytes,
    },
}

/// How a request is served.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    /// Answered now.
    Answer(Result<Bytes, RemoteError>),
    /// The shell carries it out.
    Shell(ShellWork),
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| RemoteError::new(ErrorCode::InternalError, e.to_string()))
}

impl<H: Clone> NodeMachine<H> {
    /// Dispatches a cluster request from `from` (authenticated as `role`).
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: &str,
        role: Role,
        req: ClusterRequest,
    ) -> Dispatch {
        let control = self.is_control();
        let answer = Dispatch::Answer;
        let shell = Dispatch::Shell;
        // A worker speaks for itself only: its events (checked below to be its own).
        // Everything else (the node table, routes, calls and job operations on other
        // nodes, subscriptions, hand-offs) is for control members and admin clients.
        let own_event = matches!(&req, ClusterRequest::JobEvent(ev) if ev.node == from);
        if role == Role::Worker && !own_event {
            return answer(Err(self.refuse(from, role, req.class())));
        }
        match req {
            // This node's own links only (what other control nodes gather).
            ClusterRequest::LocalNodes => answer(encode(&self.local_rows())),
            ClusterRequest::Nodes => shell(ShellWork::Nodes { one: None }),
            ClusterRequest::NodeInfo(id) => shell(ShellWork::Nodes { one: Some(id) }),
            ClusterRequest::Call(req) => shell(ShellWork::Call {
                req,
                blocking: false,
            }),
            ClusterRequest::SpawnCall(req) => shell(ShellWork::Call {
                req,
                blocking: true,
            }),
            ClusterRequest::Job(call) => self.job(call),
            ClusterRequest::Subscribe(req) if control => answer(
                self.handle_subscribe(&req)
                    .map(|()| Bytes::new())
                    .map_err(|e| RemoteError::new(e.code(), e.to_string())),
            ),
            // A member's event for our whole-cluster subscribers.
            ClusterRequest::EventStream(ev) if control && role == Role::Control => {
                self.handle_member_event(&ev);
                answer(Ok(Bytes::new()))
            }
            // A worker's event (only the node itself speaks for it).
            ClusterRequest::JobEvent(ev) if control && ev.node == from => {
                if ev.class != NODE_EVENT_CLASS
                    && let Err(e) = self.workers.check_class(from, &ev.class)
                {
                    return answer(Err(RemoteError::new(e.code(), e.to_string())));
                }
                self.handle_job_event(now, ev);
                answer(Ok(Bytes::new()))
            }
            ClusterRequest::JobEvent(ev) if control => answer(Err(RemoteError::new(
                ErrorCode::Forbidden,
                format!("{from} cannot send events of {}", ev.node),
            ))),
            ClusterRequest::Route(req) if control => shell(ShellWork::Route(req)),
            ClusterRequest::Adopt(req) if control && role == Role::Control => {
                shell(ShellWork::Adopt(req))
            }
            ClusterRequest::Placed if !control && role == Role::Control => {
                self.handle_placed(from);
                answer(Ok(Bytes::new()))
            }
            ClusterRequest::Redirect(urls) if !control && role == Role::Control => {
                answer(self.handle_redirect(from, &urls).map(|()| Bytes::new()))
            }
            ClusterRequest::RecentEvents { local: true } if control => {
                answer(encode(&self.recent_events()))
            }
            ClusterRequest::RecentEvents { local: false } if control => {
                shell(ShellWork::RecentEvents)
            }
            // Code over the wire: admin clients and control members only (a worker was
            // refused above; this says it again where it matters most).
            ClusterRequest::Load(req) if matches!(role, Role::Admin | Role::Control) => {
                let by = crate::modules::loaded_by(from, role.as_str(), &req.origin);
                shell(ShellWork::Load { req, by })
            }
            req @ (ClusterRequest::Dial(_) | ClusterRequest::Remove(_)) => {
                self.lifecycle_request(role, req)
            }
            // A request this node's role does not serve: a registered handler may (an
            // admin client follows events with one), otherwise it is unknown here.
            other => match other.encode() {
                Ok((class, body)) => shell(ShellWork::Handler {
                    class: class.to_owned(),
                    body,
                }),
                Err(e) => answer(Err(RemoteError::new(
                    ErrorCode::InternalError,
                    e.to_string(),
                ))),
            },
        }
    }

    /// Refuses a request of class `kind` from `from` for its role: reports
    /// [`NodeEvent::Refused`] and returns the `forbidden` error to answer. Also what the
    /// shell calls when a worker asks a registered handler that is not for workers
    /// ([`Handlers::allows`](crate::handlers::Handlers::allows)).
    pub fn refuse(&mut self, from: &str, role: Role, kind: &str) -> RemoteError {
        self.out.push_back(Output::Event(NodeEvent::Refused {
            peer: from.to_owned(),
            role,
            kind: kind.to_owned(),
        }));
        let rule = match role {
            Role::Worker => " (only its own events)",
            Role::Control | Role::Admin => "",
        };
        RemoteError::new(
            ErrorCode::Forbidden,
            format!("a {} may not send {kind}{rule}", role.as_str()),
        )
    }

    /// A job operation: state calls are answered here, the rest goes to the shell.
    fn job(&mut self, call: JobCall) -> Dispatch {
        if let Some(r) = self.handle_state_call(&call) {
            return Dispatch::Answer(r);
        }
        Dispatch::Shell(match call {
            JobCall::Request { class, body } => ShellWork::ClassRequest { class, body },
            JobCall::Command { class, task, body } => {
                if self.task_class(task) != Some(class.as_str()) {
                    return Dispatch::Answer(Err(RemoteError::new(
                        ErrorCode::TaskNotFound,
                        format!("no task {task} runs here"),
                    )));
                }
                ShellWork::Command { class, task, body }
            }
            JobCall::Task { class, body, id } => ShellWork::StartTask { class, body, id },
            JobCall::StopTask(id) => ShellWork::StopTask(id),
            JobCall::GetInfo => ShellWork::GetInfo,
            JobCall::SendFile(part) => {
                ShellWork::SendFile(part, crate::file_send::ContentHash::Sha256)
            }
            JobCall::SendFileBlake3(part) => {
                ShellWork::SendFile(part, crate::file_send::ContentHash::Blake3)
            }
            JobCall::FileStatus(q) => ShellWork::FileStatus(q),
            // Answered by handle_state_call above.
            call @ (JobCall::SetStatus(_)
            | JobCall::GetTasks(_)
            | JobCall::GetMeta
            | JobCall::UpdateMeta(_)
            | JobCall::RemoveMeta(_)
            | JobCall::GetData(_)
            | JobCall::PutData(..)
            | JobCall::DelData(_)) => {
                return Dispatch::Answer(Err(RemoteError::new(
                    ErrorCode::InternalError,
                    format!("{call:?} was not answered"),
                )));
            }
        })
    }
}
