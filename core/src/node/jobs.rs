//! What every node decides as a worker: its status and what hears of it, its task table
//! (ids, `task_started` before a task's own events, end reasons), the job calls that only
//! touch state (status, tasks, metadata, data), and redirects (where its own events go:
//! `offline`).

use bytes::Bytes;

use super::*;
use crate::cluster::JobCall;
use crate::error::ErrorCode;
use crate::message::RemoteError;
use crate::status::StatusEvent;

fn remote(code: impl Into<ErrorCode>, e: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(code, e.to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .map_err(|e| remote(ErrorCode::InternalError, e))
}

impl<H: Clone> NodeMachine<H> {
    /// Drains status changes: each goes to our proxy (`node_status`), then to every
    /// running task, in that order.
    pub(super) fn after_status(&mut self) {
        while let Some(StatusEvent::Changed(s)) = self.status.poll_event() {
            self.out
                .push_back(Output::Event(NodeEvent::StatusChanged { status: s }));
            self.own_node_event(WireEvent::NodeStatus(s));
            let tasks: Vec<(u64, String)> = self
                .status
                .tasks(None)
                .into_iter()
                .map(|(id, c)| (id, c.to_owned()))
                .collect();
            for (task, class) in tasks {
                self.out.push_back(Output::TaskStatus {
                    class,
                    task,
                    status: s,
                });
            }
        }
    }

    /// A task of `class` starts (with the caller's id, or the next free one): only in
    /// `ready`. Its `task_started` event is queued before anything the task sends.
    pub fn start_task(&mut self, id: Option<u64>, class: &str) -> Result<u64, RemoteError> {
        let id = self
            .status
            .start_task(id, class)
            .map_err(|e| remote(e.code(), e))?;
        self.out.push_back(Output::OwnEvent(EventMsg {
            node: self.settings.me.clone(),
            class: class.to_owned(),
            task: Some(id),
            event: WireEvent::TaskStarted,
        }));
        Ok(id)
    }

    /// Task `id` ended (`normal`, `stopped`, its error or panic): its class's proxy hears
    /// `task_stopped` with the reason, and the status may move on (`stopping` becomes
    /// `stopped` with the last task). Returns false for a task that was not running.
    pub fn handle_task_ended(&mut self, id: u64, reason: &str) -> bool {
        let Some(class) = self.status.task_stopped(id) else {
            return false;
        };
        self.out.push_back(Output::OwnEvent(EventMsg {
            node: self.settings.me.clone(),
            class,
            task: Some(id),
            event: WireEvent::TaskStopped(reason.to_owned()),
        }));
        self.after_status();
        true
    }

    /// The class of running task `id`.
    pub fn task_class(&self, id: u64) -> Option<&str> {
        self.status.task_class(id)
    }

    /// A job call that only touches the node's state (status, tasks, metadata, data):
    /// answered at once. `None` for the calls the shell runs (class callbacks, tasks,
    /// files, machine figures).
    pub fn handle_state_call(&mut self, call: &JobCall) -> Option<Result<Bytes, RemoteError>> {
        Some(match call {
            JobCall::SetStatus(st) => match self.status.set_status(*st) {
                Ok(()) => {
                    self.after_status();
                    Ok(Bytes::new())
                }
                Err(e) => Err(remote(e.code(), e)),
            },
            JobCall::GetTasks(class) => {
                let t: Vec<(u64, &str)> = self.status.tasks(class.as_deref());
                encode(&t)
            }
            JobCall::GetMeta => Ok(Bytes::from(self.meta.to_string())),
            JobCall::UpdateMeta(tokens) => match Meta::parse(tokens) {
                Ok(m) => {
                    self.meta.update(&m);
                    self.out.push_back(Output::ReportInfo);
                    Ok(Bytes::from(self.meta.to_string()))
                }
                Err(e) => Err(remote(e.code(), e)),
            },
            JobCall::RemoveMeta(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                self.meta.remove(&names);
                self.out.push_back(Output::ReportInfo);
                Ok(Bytes::from(self.meta.to_string()))
            }
            JobCall::GetData(key) => self.data.get(key).cloned().ok_or_else(|| {
                RemoteError::new(ErrorCode::NotFound, format!("no data under {key:?}"))
            }),
            JobCall::PutData(key, value) => self
                .data
                .put(key.clone(), value.clone())
                .map(|()| Bytes::new())
                .map_err(|e| remote(e.code(), e)),
            JobCall::DelData(key) => {
                self.data.delete(key);
                Ok(Bytes::new())
            }
            JobCall::Request { .. }
            | JobCall::Task { .. }
            | JobCall::Command { .. }
            | JobCall::StopTask(_)
            | JobCall::GetInfo
            | JobCall::SendFile(_)
            | JobCall::SendFileBlake3(_)
            | JobCall::FileStatus(_) => return None,
        })
    }

    /// A worker told by its control node `from` to reconnect to `urls` (its proxy's
    /// owner): the connector dials them first, once. Without `cluster_addr` the control
    /// nodes linked now (the one redirecting us) follow the owner in that list: a worker
    /// that cannot reach its owner goes back to them instead of waiting for a dial that
    /// may never come.
    ///
    /// A redirect is stale, and is answered but not followed, when another control node
    /// already adopted us (dialed us, so holds our proxy now): the hand-off `from` was
    /// finishing is over, and its owner's URLs may be addresses we cannot reach (a
    /// control node's address on a network of control nodes only). Following it would
    /// make our next round dial them first and wait a whole connect timeout.
    pub fn handle_redirect(&mut self, from: &str, urls: &str) -> Result<(), RemoteError> {
        if self.is_control() {
            return Err(RemoteError::new(
                ErrorCode::UnknownClass,
                "a control member is never redirected",
            ));
        }
        match crate::url::parse_url_list(urls) {
            Ok(list) if list.is_empty() => Err(RemoteError::new(
                ErrorCode::BadRequest,
                "a redirect needs at least one URL",
            )),
            Ok(_) if self.adopted_by_other_than(from) => Ok(()),
            Ok(mut list) => {
                if self.settings.cluster_addr.is_empty() {
                    let linked: Vec<String> = self
                        .links
                        .control_links()
                        .map(|(id, _)| id.to_owned())
                        .collect();
                    for id in linked {
                        list.extend(
                            self.dialable_urls(&id)
                                .iter()
                                .filter_map(|u| crate::url::parse_url(u).ok()),
                        );
                    }
                }
                if self.connector.handle_redirect(list) {
                    self.out.push_back(Output::RunConnector);
                }
                Ok(())
            }
            Err(e) => Err(remote(e.code(), e)),
        }
    }

    /// Whether a control node other than `from` dialed us and is linked now (it adopted
    /// us: see [`handle_redirect`](Self::handle_redirect)).
    fn adopted_by_other_than(&self, from: &str) -> bool {
        self.links
            .control_links()
            .any(|(id, l)| id != from && !l.summary.dialer)
    }

    /// Our information as the proxy hears it, with the shell's machine figures.
    pub fn node_info(&self, stats: crate::cluster::Stats) -> NodeInfo {
        NodeInfo {
            id: self.settings.me.clone(),
            status: self.reported_status(),
            listen: self.settings.listen.clone(),
            meta: self.meta.to_string(),
            stats,
            modules: self.modules.list(),
        }
    }

    /// Our information report for the proxy (a link up, a status or metadata change),
    /// with the shell's machine figures.
    pub fn report_info(&mut self, stats: crate::cluster::Stats) -> NodeInfo {
        let info = self.node_info(stats);
        self.info_reports.sent(&info);
        info
    }

    /// Our periodic information report, unless it says nothing new (see
    /// [`crate::info_report`]).
    pub fn periodic_info(&mut self, stats: crate::cluster::Stats) -> Option<NodeInfo> {
        let info = self.node_info(stats);
        self.info_reports.periodic(info)
    }
}
