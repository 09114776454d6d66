//! What a node serves besides the cluster's own requests: handlers registered by class
//! name (synchronous: they answer at once), the named functions that `call` reaches,
//! and the job classes. Panics in a function are caught and answered with their message.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::CallRequest;
use crate::error::ErrorCode;
use crate::jobs::{JobClasses, panic_message};
use crate::message::RemoteError;

/// Handlers for incoming requests, by class name. Built in: `nkcluster.echo` (returns
/// the body) and `nkcluster.node` (returns this node's id).
#[derive(Clone)]
pub struct Handlers {
    map: HashMap<String, HandlerFn>,
    functions: HashMap<String, FunctionFn>,
    classes: JobClasses,
}

/// A named function of the registry that `call` reaches (arguments as strings).
pub type FunctionFn = Arc<dyn Fn(&[String]) -> Result<String, RemoteError> + Send + Sync>;

/// A synchronous request handler.
pub type HandlerFn = Arc<dyn Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync>;

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// The built-in handlers for `node_id`.
    pub fn builtin(node_id: &str) -> Self {
        let mut h = Handlers {
            map: HashMap::new(),
            functions: HashMap::new(),
            classes: JobClasses::new(),
        };
        h.insert("nkcluster.echo", Ok);
        let id = Bytes::from(node_id.to_owned());
        h.insert("nkcluster.node", move |_| Ok(id.clone()));
        let name = node_id.to_owned();
        h.insert_function("node", move |_| Ok(name.clone()));
        h.insert_function("echo", |args| Ok(args.join(" ")));
        h
    }

    /// Sets the job classes this node runs (worker side) and hears (control side).
    pub fn set_classes(&mut self, classes: JobClasses) {
        self.classes = classes;
    }

    /// The job classes.
    pub fn classes(&self) -> &JobClasses {
        &self.classes
    }

    /// Adds or replaces a named function (what `call` and `nkcluster call` reach).
    /// Built in: `node` (this node's id) and `echo` (its arguments, space separated).
    pub fn insert_function(
        &mut self,
        name: &str,
        f: impl Fn(&[String]) -> Result<String, RemoteError> + Send + Sync + 'static,
    ) {
        self.functions.insert(name.to_owned(), Arc::new(f));
    }

    /// Adds or replaces a handler.
    pub fn insert(
        &mut self,
        class: &str,
        f: impl Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync + 'static,
    ) {
        self.map.insert(class.to_owned(), Arc::new(f));
    }
}

impl Handlers {
    /// Runs the handler of `class` (at once: these handlers are synchronous).
    pub fn call(&self, class: &str, body: Bytes) -> Result<Bytes, RemoteError> {
        match self.map.get(class) {
            Some(f) => f(body),
            None => Err(RemoteError::new(
                ErrorCode::UnknownClass,
                format!("no handler for class {class:?}"),
            )),
        }
    }

    /// Runs a named function; a function that panics is reported with its message (the
    /// node keeps running).
    pub fn call_function(&self, req: &CallRequest) -> Result<Bytes, RemoteError> {
        let f = self.functions.get(&req.function).ok_or_else(|| {
            RemoteError::new(
                ErrorCode::UnknownFunction,
                format!("no function {:?} is registered", req.function),
            )
        })?;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&req.args)))
            .map_err(|p| RemoteError::new(ErrorCode::FunctionPanicked, panic_message(&*p)))??;
        Ok(Bytes::from(r))
    }
}
