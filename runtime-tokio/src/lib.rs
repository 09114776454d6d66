//! # nkcluster
//!
//! The node daemon, library API and CLI of nkcluster: a thin tokio shell around the
//! sans-IO machines of [`nkcluster_core`]. The shell moves bytes between sockets and
//! [`Connection`](nkcluster_core::Connection)s, turns timers into `handle_timeout` calls
//! and hands requests to handlers; every decision lives in the core.
//!
//! - [`net`]: the network as a trait (tokio here, turmoil in `nkcluster-sim`).
//! - [`clock`]: tokio time as core [`Instant`](nkcluster_core::Instant)s.
//! - [`driver`]: the per-connection I/O loop.
//! - [`node`]: the daemon: listeners, connector, peers, proxies, routing, request API.
//! - [`jobs`]: job classes (requests, tasks, commands, events) and the core class types.
//! - [`os`]: the built-in class `nkcluster.os` (OS processes).
//! - [`docker`]: the built-in class `nkcluster.docker` (Docker containers).
//! - [`http`]: the optional HTTP listener: Prometheus metrics and the dashboard.
//! - [`config`]: options (file, environment, flags).
//! - [`wasm`]: the WebAssembly engine of code loaded over the wire (`nkcluster load`).
//! - [`cli`]: the `nkcluster` command.
//!
//! ```no_run
//! use std::time::Duration;
//! use nkcluster::node::{Env, Node};
//! use nkcluster::config::NodeConfig;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut cfg = NodeConfig::new("worker1");
//! cfg.control = false;
//! cfg.cluster_addr = nkcluster_core::url::parse_url_list("nkcluster://127.0.0.1:1972")?;
//! let node = Node::start(cfg, Env::real()).await?;
//! let reply = node
//!     .request("dev1", "nkcluster.node", bytes::Bytes::new(), Duration::from_secs(5))
//!     .await;
//! # Ok(()) }
//! ```

pub mod answers;
pub mod cli;
pub mod clock;
pub mod cmdq;
pub mod config;
pub mod discovery;
pub mod docker;
pub mod driver;
pub mod http;
pub mod jobs;
pub mod linkio;
pub mod net;
pub mod node;
pub mod os;
pub mod reply;
pub mod tls_tail;
pub mod transport;
pub mod wasm;
