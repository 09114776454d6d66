//! Job classes: what users run on the cluster. They live in the core
//! ([`nkcluster_core::jobs`]), runtime-agnostic; this re-exports them for the daemon's
//! users. `examples/job_class.rs` is a runnable example.

pub use nkcluster_core::jobs::*;
