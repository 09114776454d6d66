//! What a node serves besides the cluster's own requests: handlers registered by class
//! name (synchronous: they answer at once), the named functions that `call` reaches,
//! and the job classes. Panics in a function are caught and answered with their message.
//!
//! Functions loaded at run time (WebAssembly modules, `nkcluster load`) live in a table
//! shared by every clone of the handlers: a load is seen by the link that serves the next
//! call and by job classes holding a clone. A call takes the function out of the table
//! before running it, so a replacement reaches new calls only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::cluster::CallRequest;
use crate::error::ErrorCode;
use crate::handshake::Role;
use crate::jobs::{JobClasses, panic_message};
use crate::message::RemoteError;

/// Handlers for incoming requests, by class name. Built in: `nkcluster.echo` (returns
/// the body) and `nkcluster.node` (returns this node's id), the two a worker may call.
///
/// A handler added with [`insert`](Self::insert) serves control members and admin
/// clients only: a worker speaks for itself and sends nothing but its own events (the
/// role rule). One meant for workers too is added with
/// [`insert_for_workers`](Self::insert_for_workers).
#[derive(Clone)]
pub struct Handlers {
    map: HashMap<String, Handler, NameHasher>,
    functions: HashMap<String, FunctionFn>,
    /// Functions loaded at run time, shared by every clone.
    loaded: Arc<RwLock<HashMap<String, FunctionFn>>>,
    classes: JobClasses,
}

/// The handler table's hasher: foldhash with a fixed seed. Every request looks its class
/// up in the table, and SipHash cost more than the rest of the look-up (issue 15, point 3).
/// Resistance to chosen collisions buys nothing here: the table's keys are the classes
/// registered in code, never a peer's; a peer's name is only looked up. The fixed seed
/// keeps the core free of randomness.
type NameHasher = foldhash::fast::FixedState;

/// The answer to a class nobody handles.
fn unknown_class(class: &str) -> RemoteError {
    RemoteError::new(
        ErrorCode::UnknownClass,
        format!("no handler for class {class:?}"),
    )
}

/// A named function of the registry that `call` reaches (arguments as strings).
pub type FunctionFn = Arc<dyn Fn(&[String]) -> Result<String, RemoteError> + Send + Sync>;

/// A synchronous request handler.
pub type HandlerFn = Arc<dyn Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync>;

#[derive(Clone)]
struct Handler {
    run: HandlerFn,
    /// Workers may call it too.
    for_workers: bool,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// The built-in handlers for `node_id`.
    pub fn builtin(node_id: &str) -> Self {
        let mut h = Handlers {
            map: HashMap::default(),
            functions: HashMap::new(),
            loaded: Arc::default(),
            classes: JobClasses::new(),
        };
        h.insert_for_workers("nkcluster.echo", Ok);
        let id = Bytes::from(node_id.to_owned());
        h.insert_for_workers("nkcluster.node", move |_| Ok(id.clone()));
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

    /// Whether a function of that name was registered in code (a module loaded at run
    /// time may not take its name).
    pub fn is_code_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// Adds or replaces a function loaded at run time, for every clone of these handlers
    /// (calls already running keep the function they started with).
    pub fn set_loaded_function(&self, name: &str, f: FunctionFn) {
        self.loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), f);
    }

    /// Whether a function of that name was loaded at run time.
    pub fn is_loaded_function(&self, name: &str) -> bool {
        self.loaded_function(name).is_some()
    }

    fn loaded_function(&self, name: &str) -> Option<FunctionFn> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Adds or replaces a handler for control members and admin clients (a worker's
    /// request of `class` is refused with `forbidden`).
    pub fn insert(
        &mut self,
        class: &str,
        f: impl Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync + 'static,
    ) {
        let run: HandlerFn = Arc::new(f);
        self.map.insert(
            class.to_owned(),
            Handler {
                run,
                for_workers: false,
            },
        );
    }

    /// Adds or replaces a handler that workers may call too.
    pub fn insert_for_workers(
        &mut self,
        class: &str,
        f: impl Fn(Bytes) -> Result<Bytes, RemoteError> + Send + Sync + 'static,
    ) {
        let run: HandlerFn = Arc::new(f);
        self.map.insert(
            class.to_owned(),
            Handler {
                run,
                for_workers: true,
            },
        );
    }

    /// Whether a peer authenticated as `role` may send a request of `class` to a
    /// handler. Workers may call only the handlers added for them; a class nobody
    /// handles is answered `unknown_class` (no secret in that).
    pub fn allows(&self, class: &str, role: Role) -> bool {
        role != Role::Worker || self.map.get(class).is_none_or(|h| h.for_workers)
    }
}

impl Handlers {
    /// Runs the handler of `class` (at once: these handlers are synchronous).
    pub fn call(&self, class: &str, body: Bytes) -> Result<Bytes, RemoteError> {
        match self.map.get(class) {
            Some(h) => (h.run)(body),
            None => Err(unknown_class(class)),
        }
    }

    /// A peer's request of `class`, the peer authenticated as `role`: [`allows`]
    /// then [`call`] with one look-up. `None`: that role may not call it (the caller
    /// refuses it).
    ///
    /// [`allows`]: Self::allows
    /// [`call`]: Self::call
    pub fn call_as(
        &self,
        class: &str,
        role: Role,
        body: Bytes,
    ) -> Option<Result<Bytes, RemoteError>> {
        match self.map.get(class) {
            Some(h) if role == Role::Worker && !h.for_workers => None,
            Some(h) => Some((h.run)(body)),
            None => Some(Err(unknown_class(class))),
        }
    }

    /// Runs a named function (one loaded at run time first, then one registered in
    /// code); a function that panics is reported with its message (the node keeps
    /// running).
    pub fn call_function(&self, req: &CallRequest) -> Result<Bytes, RemoteError> {
        let loaded = self.loaded_function(&req.function);
        let f = loaded
            .as_ref()
            .or_else(|| self.functions.get(&req.function))
            .ok_or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_finds_its_own_handler_with_the_table_hasher() {
        let mut h = Handlers::builtin("c1");
        for i in 0..200u32 {
            h.insert(&format!("app.class{i}"), move |_| {
                Ok(Bytes::from(i.to_string()))
            });
        }
        for i in 0..200u32 {
            let r = h.call(&format!("app.class{i}"), Bytes::new());
            assert_eq!(r.ok(), Some(Bytes::from(i.to_string())));
        }
        // Names that share their first words, or differ only by trailing zero bytes.
        for name in ["app.class1\0", "app.class", "app.class2000", ""] {
            assert_eq!(
                h.call(name, Bytes::new()).map_err(|e| e.code),
                Err(ErrorCode::UnknownClass)
            );
        }
        let hash = |s: &str| std::hash::BuildHasher::hash_one(&NameHasher::default(), s);
        assert_ne!(hash("a"), hash("a\0"));
        assert_ne!(hash("nkcluster.echo"), hash("nkcluster.node"));
    }

    #[test]
    fn workers_call_only_the_handlers_added_for_them() {
        let mut h = Handlers::builtin("c1");
        h.insert("app.admin", Ok);
        h.insert_for_workers("app.report", Ok);
        for role in [Role::Control, Role::Admin] {
            for class in [
                "nkcluster.echo",
                "nkcluster.node",
                "app.admin",
                "app.report",
            ] {
                assert!(h.allows(class, role), "{class} {role:?}");
            }
        }
        assert!(h.allows("nkcluster.echo", Role::Worker));
        assert!(h.allows("nkcluster.node", Role::Worker));
        assert!(h.allows("app.report", Role::Worker));
        assert!(!h.allows("app.admin", Role::Worker));
        // Unknown: answered unknown_class by call, for every role.
        assert!(h.allows("app.none", Role::Worker));
        assert_eq!(
            h.call("app.none", Bytes::new()).map_err(|e| e.code),
            Err(ErrorCode::UnknownClass)
        );
        // Replacing a handler replaces its audience too.
        h.insert("app.report", Ok);
        assert!(!h.allows("app.report", Role::Worker));
    }

    #[test]
    fn a_call_as_a_role_answers_what_allows_then_call_would() {
        let mut h = Handlers::builtin("c1");
        h.insert("app.admin", |_| Ok(Bytes::from_static(b"admin")));
        let body = || Bytes::from_static(b"hi");
        let code = |r: Option<Result<Bytes, RemoteError>>| r.map(|r| r.map_err(|e| e.code));
        assert_eq!(
            code(h.call_as("nkcluster.echo", Role::Worker, body())),
            Some(Ok(body()))
        );
        assert_eq!(code(h.call_as("app.admin", Role::Worker, body())), None);
        assert_eq!(
            code(h.call_as("app.admin", Role::Control, body())),
            Some(Ok(Bytes::from_static(b"admin")))
        );
        assert_eq!(
            code(h.call_as("app.none", Role::Worker, body())),
            Some(Err(ErrorCode::UnknownClass))
        );
        let refused = h.call_as("app.none", Role::Admin, body());
        assert_eq!(
            refused.and_then(Result::err).map(|e| e.message),
            Some("no handler for class \"app.none\"".to_owned())
        );
    }

    fn call(h: &Handlers, function: &str, args: &[&str]) -> Result<String, String> {
        h.call_function(&CallRequest {
            function: function.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| e.code.as_str().to_owned())
    }

    #[test]
    fn loaded_functions_are_shared_by_clones_and_replaced_for_new_calls() {
        let h = Handlers::builtin("n1");
        let clone = h.clone();
        assert!(h.is_code_function("echo"));
        assert!(!h.is_code_function("add"));
        assert_eq!(call(&clone, "add", &[]), Err("unknown_function".into()));
        h.set_loaded_function(
            "add",
            Arc::new(|a: &[String]| Ok(format!("v1 {}", a.len()))),
        );
        assert!(clone.is_loaded_function("add"));
        assert_eq!(call(&clone, "add", &["1", "2"]), Ok("v1 2".into()));
        clone.set_loaded_function("add", Arc::new(|_: &[String]| Ok("v2".into())));
        assert_eq!(call(&h, "add", &[]), Ok("v2".into()));
        assert_eq!(call(&h, "echo", &["a", "b"]), Ok("a b".into()));
    }
}
