//! The request API of a node: requests, job classes, tasks, status, metadata, data,
//! named functions and files, to any node of the cluster.

use super::*;

impl<N: Net> Node<N> {
    /// Sends a request to `peer` and waits for its outcome: the peer's reply, its error,
    /// `timeout`, `connection_failed` if the link dies, or `not_connected` when there is no
    /// link to that peer. Never waits past `timeout` plus scheduling delays.
    pub async fn request(
        &self,
        peer: &str,
        class: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let (tx, rx) = crate::reply::channel();
        let asked = self.inner.clock.now();
        let cmd = Command::Request {
            class: class.into(),
            body,
            asked,
            deadline: asked + timeout,
            reply: tx,
        };
        // The timeout covers everything: once queued, the link ends the request at its
        // deadline (left in its queue, held or sent); a full queue is waited for within
        // the deadline only.
        // The link's sender is used in place: a clone (and its drop) locks the queue that
        // every caller of the link contends on. Cloned only to wait for room.
        let full = {
            let view = self.inner.view();
            let Some(commands) = view.link_of(peer) else {
                return Err(RequestError::NotConnected);
            };
            match commands.try_send(cmd) {
                Ok(()) => None,
                Err(cmdq::TrySendError::Closed(_)) => {
                    return Err(RequestError::ConnectionFailed);
                }
                Err(cmdq::TrySendError::Full(cmd)) => Some((commands.clone(), cmd)),
            }
        };
        match full {
            None => {}
            Some((commands, cmd)) => {
                match tokio::time::timeout(timeout, commands.send(cmd)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(RequestError::ConnectionFailed),
                    Err(_) => return Err(RequestError::Timeout),
                }
            }
        }
        rx.await.unwrap_or(Err(RequestError::ConnectionFailed))
    }

    /// A job class's request to `node` (anywhere in the cluster; `exclusive` sends it over
    /// a dedicated connection when the worker listens, see [`send_with`](Self::send_with)).
    pub async fn job_request<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        req: &C::Request,
        opts: RequestOptions,
    ) -> Result<C::Reply, RequestError> {
        let call = JobCall::Request {
            class: class.into(),
            body: encode_body(req)?,
        };
        let body = encode_body(&call)?;
        decode_reply(&self.send_with(node, CLASS_JOB, body, opts).await?)
    }

    /// Starts a task of `class` at `node`: its id and the class's immediate reply.
    /// Refused with `node_not_ready(status)` unless the node is `ready`.
    pub async fn start_task<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        spec: &C::Spec,
        timeout: Duration,
    ) -> Result<(u64, Option<C::Reply>), RequestError> {
        self.start_task_with::<C>(node, class, spec, None, timeout)
            .await
    }

    /// [`start_task`](Self::start_task) with the caller's own task id: `already_started`
    /// when a task with that id runs there.
    pub async fn start_task_with<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        spec: &C::Spec,
        id: Option<u64>,
        timeout: Duration,
    ) -> Result<(u64, Option<C::Reply>), RequestError> {
        let call = JobCall::Task {
            class: class.into(),
            body: encode_body(spec)?,
            id,
        };
        let r: TaskStarted = decode_reply(
            &self
                .send(node, CLASS_JOB, encode_body(&call)?, timeout)
                .await?,
        )?;
        let reply = match r.reply {
            Some(b) => Some(decode_reply(&b)?),
            None => None,
        };
        Ok((r.task, reply))
    }

    /// A command to running task `task` of `class` at `node` (`task_not_found` when it
    /// is not running).
    pub async fn command<C: JobClass>(
        &self,
        node: &str,
        class: &str,
        task: u64,
        cmd: &C::Command,
        timeout: Duration,
    ) -> Result<C::Reply, RequestError> {
        let call = JobCall::Command {
            class: class.into(),
            task,
            body: encode_body(cmd)?,
        };
        decode_reply(
            &self
                .send(node, CLASS_JOB, encode_body(&call)?, timeout)
                .await?,
        )
    }

    /// Stops running task `task` at `node` (it ends `stopped`).
    pub async fn stop_task(
        &self,
        node: &str,
        task: u64,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::StopTask(task), timeout)
            .await
            .map(|_| ())
    }

    /// Sets `node`'s status (`ready`, `standby`, `stopped`...).
    pub async fn set_status(
        &self,
        node: &str,
        status: Status,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::SetStatus(status), timeout)
            .await
            .map(|_| ())
    }

    /// Running tasks `(id, class)` at `node`, all or those of `class`.
    pub async fn get_tasks(
        &self,
        node: &str,
        class: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<(u64, String)>, RequestError> {
        let call = JobCall::GetTasks(class.map(str::to_owned));
        decode_reply(&self.job(node, &call, timeout).await?)
    }

    /// Events of the workers this control node serves (and its own tasks'), in order
    /// per worker: a class's own events, `task_started`, `task_stopped`, `node_status`.
    pub fn job_events(&self) -> broadcast::Receiver<NodeJobEvent> {
        self.inner.job_events.subscribe()
    }

    pub(super) async fn job(
        &self,
        node: &str,
        call: &JobCall,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.send(node, CLASS_JOB, encode_body(call)?, timeout)
            .await
    }

    /// Calls the named function `function` at `node` (the original's `call`: it runs on
    /// the link's task, so it must be quick; see [`spawn_call`](Self::spawn_call)).
    pub async fn call(
        &self,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        self.call_class(CLASS_CALL, node, function, args, timeout)
            .await
    }

    /// Like [`call`](Self::call), on the node's blocking pool: a long function does not
    /// hold up the link.
    pub async fn spawn_call(
        &self,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        self.call_class(CLASS_SPAWN_CALL, node, function, args, timeout)
            .await
    }

    pub(super) async fn call_class(
        &self,
        class: &str,
        node: &str,
        function: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let req = CallRequest {
            function: function.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let b = self.send(node, class, encode_body(&req)?, timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// `node`'s information: status, listen URLs, metadata, machine figures.
    pub async fn get_info(&self, node: &str, timeout: Duration) -> Result<NodeInfo, RequestError> {
        decode_reply(&self.job(node, &JobCall::GetInfo, timeout).await?)
    }

    /// `node`'s metadata.
    pub async fn get_meta(&self, node: &str, timeout: Duration) -> Result<String, RequestError> {
        let b = self.job(node, &JobCall::GetMeta, timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Updates `node`'s metadata with `tokens` (appended, or replacing tokens of the same
    /// name); returns the new metadata.
    pub async fn update_meta(
        &self,
        node: &str,
        tokens: &str,
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let b = self
            .job(node, &JobCall::UpdateMeta(tokens.to_owned()), timeout)
            .await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Removes metadata tokens by name; returns the new metadata.
    pub async fn remove_meta(
        &self,
        node: &str,
        names: &[&str],
        timeout: Duration,
    ) -> Result<String, RequestError> {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        let b = self.job(node, &JobCall::RemoveMeta(names), timeout).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// A value of `node`'s data registry (`not_found` when absent).
    pub async fn get_data(
        &self,
        node: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.job(node, &JobCall::GetData(key.to_owned()), timeout)
            .await
    }

    /// Stores a value in `node`'s data registry.
    pub async fn put_data(
        &self,
        node: &str,
        key: &str,
        value: Bytes,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::PutData(key.to_owned(), value), timeout)
            .await
            .map(|_| ())
    }

    /// Deletes a value from `node`'s data registry.
    pub async fn del_data(
        &self,
        node: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        self.job(node, &JobCall::DelData(key.to_owned()), timeout)
            .await
            .map(|_| ())
    }
}
