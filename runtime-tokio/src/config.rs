//! Node configuration: the original system's option names, read from a TOML file,
//! the environment and command-line flags (flags win over the environment, which wins
//! over the file, which wins over the defaults).

use std::path::Path;
use std::time::Duration;

use nkcluster_core::ConnectionConfig;
use nkcluster_core::admission::AdmissionConfig;
use nkcluster_core::auth::KEY_ITERATIONS;
use nkcluster_core::backoff::BackoffConfig;
use nkcluster_core::bulk_priority::BulkPriority;
use nkcluster_core::meta::Meta;
use nkcluster_core::url::{ClusterUrl, TlsOptions, parse_url_list};
use serde::Deserialize;
use thiserror::Error;

/// Default cluster name, as in the original.
pub const DEFAULT_CLUSTER: &str = "nkcluster";
/// Default password, as in the original.
pub const DEFAULT_PASSWORD: &str = "nkcluster";
/// Default listen URL.
pub const DEFAULT_LISTEN: &str = "nkcluster://all;transport=tls";
/// Default `event_buffer`: events a disconnected worker keeps.
pub const EVENT_BUFFER: usize = 10_000;
/// The largest `event_buffer` (their size is capped apart, see the node's start).
pub const EVENT_BUFFER_MAX: usize = 10_000_000;

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Nodes only talk to nodes of the same cluster.
    pub cluster_name: String,
    /// This node's stable id.
    pub node_id: String,
    /// Password for incoming connections and the default for outgoing ones: the control
    /// cluster's secret (control members and admin clients prove it).
    pub password: String,
    /// The workers' secret: workers prove it, control nodes accept it for the worker
    /// role only. `None`: `password` serves every role (the original's behaviour).
    pub worker_password: Option<String>,
    /// Where to listen (empty: no listener, the node only dials out).
    pub listen: Vec<ClusterUrl>,
    /// Control nodes to connect to (resolved by DNS discovery, tried in a shuffled order).
    pub cluster_addr: Vec<ClusterUrl>,
    /// The one name server discovery asks (`None`: the system's configuration).
    pub dns_server: Option<std::net::SocketAddr>,
    /// Whether this node has the control role.
    pub control: bool,
    /// An administrative client (the CLI): announces the admin role, holds no jobs.
    pub admin: bool,
    /// This node's metadata.
    pub meta: Meta,
    /// Connection machine settings (frame maximum, ping, idle, limits).
    pub connection: ConnectionConfig,
    /// Reconnection backoff and attempt budget.
    pub backoff: BackoffConfig,
    /// PBKDF2 iterations (every node of a cluster must agree).
    pub key_iterations: u32,
    /// Node-level TLS options (`tls_*`); a URL's own parameters override them.
    pub tls: TlsOptions,
    /// Ring partitions (a power of two; every control node must agree).
    pub partitions: u32,
    /// Control members: membership gossip goes out at most this often (zero: at once).
    pub gossip_every: Duration,
    /// Control members: a change of the live members is placed on the ring this long
    /// after it (zero: at once).
    pub ring_settle: Duration,
    /// Limits on accepted connections that have not authenticated yet.
    pub admission: AdmissionConfig,
    /// Received files land only below this directory (absolute).
    pub files_dir: std::path::PathBuf,
    /// A file transfer that receives nothing for this long ends.
    pub transfer_idle: Duration,
    /// How far below the request path the threads doing a file's bulk work run.
    pub bulk_priority: BulkPriority,
    /// Events a worker keeps while it has no control link (its tasks keep running);
    /// beyond it the oldest are dropped and their classes hear `events_lost`.
    pub event_buffer: usize,
    /// Limits of code loaded over the wire (`nkcluster load`): module size and count,
    /// fuel per call, memory.
    pub modules: nkcluster_core::modules::ModulesConfig,
    /// Where the daemon serves HTTP: `/metrics` (Prometheus) and the dashboard (`/`).
    /// `None`: no HTTP listener.
    pub http: Option<std::net::SocketAddr>,
}

impl NodeConfig {
    /// A config with the original's defaults and the given node id.
    pub fn new(node_id: impl Into<String>) -> Self {
        NodeConfig {
            cluster_name: DEFAULT_CLUSTER.into(),
            node_id: node_id.into(),
            password: DEFAULT_PASSWORD.into(),
            worker_password: None,
            listen: Vec::new(),
            cluster_addr: Vec::new(),
            dns_server: None,
            control: true,
            admin: false,
            meta: Meta::default(),
            connection: ConnectionConfig::default(),
            backoff: BackoffConfig::default(),
            key_iterations: KEY_ITERATIONS,
            tls: TlsOptions::default(),
            partitions: nkcluster_core::ring::PARTITIONS_DEFAULT,
            gossip_every: Duration::ZERO,
            ring_settle: Duration::ZERO,
            admission: AdmissionConfig::default(),
            files_dir: default_files_dir(),
            transfer_idle: nkcluster_core::transfers::TransfersConfig::default().idle_expiry,
            bulk_priority: BulkPriority::default(),
            event_buffer: EVENT_BUFFER,
            modules: Default::default(),
            http: None,
        }
    }
}

/// `files` under the working directory.
fn default_files_dir() -> std::path::PathBuf {
    std::env::current_dir()
        .unwrap_or_else(|_| std::path::PathBuf::from("/"))
        .join("files")
}

/// A configuration problem, named by its option.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// File path.
        path: String,
        /// OS error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {error}")]
    Toml {
        /// File path.
        path: String,
        /// Parser message.
        error: String,
    },
    /// An option has a bad value.
    #[error("invalid {option}: {error}")]
    Invalid {
        /// Option name.
        option: &'static str,
        /// What is wrong.
        error: String,
    },
}

/// Raw option values (strings as the user wrote them), as read from one source.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// `cluster_name`
    pub cluster_name: Option<String>,
    /// `node_id`
    pub node_id: Option<String>,
    /// `password`
    pub password: Option<String>,
    /// `worker_password`: the workers' secret (default: `password`).
    pub worker_password: Option<String>,
    /// `listen`
    pub listen: Option<String>,
    /// `cluster_addr`
    pub cluster_addr: Option<String>,
    /// `control` (the original's `is_control` is accepted too)
    #[serde(alias = "is_control")]
    pub control: Option<bool>,
    /// `meta`
    pub meta: Option<String>,
    /// `connect_attempts`: give up (exit) after this many failed rounds; absent: never.
    pub connect_attempts: Option<u32>,
    /// `ping_interval_ms`
    pub ping_interval_ms: Option<u64>,
    /// `idle_timeout_ms`
    pub idle_timeout_ms: Option<u64>,
    /// `max_frame`: maximum frame body in bytes.
    pub max_frame: Option<u32>,
    /// `tls_certfile`: PEM certificate chain for TLS listeners.
    pub tls_certfile: Option<String>,
    /// `tls_keyfile`: PEM private key (PKCS#8, optionally encrypted).
    pub tls_keyfile: Option<String>,
    /// `tls_cacertfile`: PEM CA certificates to verify peers with.
    pub tls_cacertfile: Option<String>,
    /// `tls_password`: password of an encrypted `tls_keyfile`.
    pub tls_password: Option<String>,
    /// `tls_verify`: verify the server certificate when dialing (needs `tls_cacertfile`).
    pub tls_verify: Option<bool>,
    /// `tls_depth`: maximum intermediate certificates when verifying.
    pub tls_depth: Option<u8>,
    /// `partitions`: ring partitions, a power of two (default 4096).
    pub partitions: Option<u32>,
    /// `gossip_every_ms`: membership gossip at most this often (default 0: at once).
    pub gossip_every_ms: Option<u64>,
    /// `ring_settle_ms`: member changes placed on the ring this long after (default 0).
    pub ring_settle_ms: Option<u64>,
    /// `max_handshakes`: accepted connections that may be authenticating at once.
    pub max_handshakes: Option<usize>,
    /// `max_handshakes_per_source`: the same, from one source address.
    pub max_handshakes_per_source: Option<usize>,
    /// `files_dir`: where received files land (default `files` under the working
    /// directory).
    pub files_dir: Option<String>,
    /// `transfer_idle_ms`: a file transfer idle this long ends (default 60000).
    pub transfer_idle_ms: Option<u64>,
    /// `bulk_priority`: `idle` (default), `low` or `normal`: how far below the request
    /// path a file's bulk threads run.
    pub bulk_priority: Option<String>,
    /// `dns_server`: `IP:PORT` (or `IP`, port 53) of the one name server discovery asks.
    pub dns_server: Option<String>,
    /// `event_buffer`: events a worker keeps while it has no control link (0: none).
    pub event_buffer: Option<usize>,
    /// `wasm_fuel`: fuel each call of a loaded module may burn (about one unit per
    /// instruction; 1 to 10^12).
    pub wasm_fuel: Option<u64>,
    /// `key_iterations`: PBKDF2 rounds deriving the password keys (every node of a
    /// cluster and its admin clients must agree; default 600,000).
    pub key_iterations: Option<u32>,
    /// `http`: `IP:PORT` where the daemon serves `/metrics` and the dashboard (default
    /// off).
    pub http: Option<String>,
}

/// The fewest `key_iterations` accepted: below it a stolen handshake transcript is cheap
/// to brute-force (tests may go lower through [`NodeConfig`] itself).
pub const KEY_ITERATIONS_MIN: u32 = 1_000;

/// Checks a `key_iterations` value (from any source, the admin commands' too).
pub fn check_key_iterations(n: u32) -> Result<u32, String> {
    if n < KEY_ITERATIONS_MIN {
        return Err(format!("{n} is fewer than {KEY_ITERATIONS_MIN}"));
    }
    Ok(n)
}

impl RawOptions {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<RawOptions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.display().to_string(),
            error: e.to_string(),
        })
    }

    /// Fields set in `over` replace ours.
    pub fn overlay(mut self, over: RawOptions) -> RawOptions {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            cluster_name,
            node_id,
            password,
            worker_password,
            listen,
            cluster_addr,
            control,
            meta,
            connect_attempts,
            ping_interval_ms,
            idle_timeout_ms,
            max_frame,
            tls_certfile,
            tls_keyfile,
            tls_cacertfile,
            tls_password,
            tls_verify,
            tls_depth,
            partitions,
            gossip_every_ms,
            ring_settle_ms,
            max_handshakes,
            max_handshakes_per_source,
            files_dir,
            transfer_idle_ms,
            bulk_priority,
            dns_server,
            event_buffer,
            key_iterations,
            wasm_fuel,
            http
        );
        self
    }

    /// Validates and builds a [`NodeConfig`]; `default_node_id` is used when none is set.
    pub fn build(self, default_node_id: &str) -> Result<NodeConfig, ConfigError> {
        let invalid = |option: &'static str, error: String| ConfigError::Invalid { option, error };
        let mut c = NodeConfig::new(self.node_id.unwrap_or_else(|| default_node_id.into()));
        if c.node_id.is_empty() || c.node_id.len() > 255 {
            return Err(invalid("node_id", "must be 1 to 255 bytes".into()));
        }
        if let Some(v) = self.cluster_name {
            c.cluster_name = v;
        }
        if let Some(v) = self.password {
            c.password = v;
        }
        c.worker_password = self.worker_password;
        let listen = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        c.listen = parse_url_list(&listen).map_err(|e| invalid("listen", e.to_string()))?;
        if let Some(v) = self.cluster_addr {
            c.cluster_addr =
                parse_url_list(&v).map_err(|e| invalid("cluster_addr", e.to_string()))?;
        }
        if let Some(v) = self.dns_server {
            c.dns_server = Some(parse_dns_server(&v).map_err(|e| invalid("dns_server", e))?);
        }
        if let Some(v) = self.http {
            c.http = parse_http(&v).map_err(|e| invalid("http", e))?;
        }
        if let Some(v) = self.control {
            c.control = v;
        }
        if let Some(v) = self.meta {
            c.meta = Meta::parse(&v).map_err(|e| invalid("meta", e.to_string()))?;
        }
        if let Some(p) = self.partitions {
            if !p.is_power_of_two() || !(4..=65_536).contains(&p) {
                return Err(invalid(
                    "partitions",
                    format!("{p} is not a power of two between 4 and 65536"),
                ));
            }
            c.partitions = p;
        }
        if let Some(n) = self.max_handshakes {
            c.admission.max_total = n.max(1);
        }
        if let Some(n) = self.max_handshakes_per_source {
            c.admission.max_per_source = n.max(1);
        }
        if let Some(ms) = self.transfer_idle_ms {
            c.transfer_idle = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = self.bulk_priority {
            c.bulk_priority = v.parse().map_err(|e| invalid("bulk_priority", e))?;
        }
        if let Some(d) = self.files_dir {
            let d = std::path::PathBuf::from(d);
            if d.as_os_str().is_empty() {
                return Err(invalid("files_dir", "must not be empty".into()));
            }
            let d = if d.is_absolute() {
                d
            } else {
                std::env::current_dir()
                    .unwrap_or_else(|_| std::path::PathBuf::from("/"))
                    .join(d)
            };
            // Without `.` components, so that paths inside it compare equal.
            c.files_dir = d
                .components()
                .filter(|p| *p != std::path::Component::CurDir)
                .collect();
        }
        if let Some(n) = self.event_buffer {
            if n > EVENT_BUFFER_MAX {
                return Err(invalid(
                    "event_buffer",
                    format!("{n} is more than {EVENT_BUFFER_MAX}"),
                ));
            }
            c.event_buffer = n;
        }
        if let Some(n) = self.key_iterations {
            c.key_iterations = check_key_iterations(n).map_err(|e| invalid("key_iterations", e))?;
        }
        if let Some(n) = self.wasm_fuel {
            if !(1..=1_000_000_000_000).contains(&n) {
                return Err(invalid(
                    "wasm_fuel",
                    format!("{n} is not between 1 and 10^12"),
                ));
            }
            c.modules.fuel_per_call = n;
        }
        c.backoff.max_attempts = self.connect_attempts;
        for (name, ms, field) in [
            ("gossip_every_ms", self.gossip_every_ms, &mut c.gossip_every),
            ("ring_settle_ms", self.ring_settle_ms, &mut c.ring_settle),
        ] {
            if let Some(ms) = ms {
                if ms > 60_000 {
                    return Err(invalid(name, "must be at most 60000".into()));
                }
                *field = Duration::from_millis(ms);
            }
        }
        if let Some(ms) = self.ping_interval_ms {
            c.connection.ping_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = self.idle_timeout_ms {
            c.connection.idle_timeout = Duration::from_millis(ms.max(1));
        }
        if c.connection.idle_timeout <= c.connection.ping_interval {
            return Err(invalid(
                "idle_timeout_ms",
                "must be longer than ping_interval_ms".into(),
            ));
        }
        c.tls = TlsOptions {
            verify: self.tls_verify,
            depth: self.tls_depth,
            certfile: self.tls_certfile,
            keyfile: self.tls_keyfile,
            cacertfile: self.tls_cacertfile,
            password: self.tls_password,
        };
        if let Some(m) = self.max_frame {
            if m < 1024 {
                return Err(invalid("max_frame", "must be at least 1024".into()));
            }
            c.connection.max_frame = m;
        }
        Ok(c)
    }
}

/// `IP:PORT` or `[IPv6]:PORT` where to serve HTTP; `off` or empty: none.
fn parse_http(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<std::net::SocketAddr>()
        .map(Some)
        .map_err(|_| format!("{s:?} is not IP:PORT (for example 127.0.0.1:8081) or off"))
}

/// `IP:PORT`, `[IPv6]:PORT`, or an IP alone (port 53).
fn parse_dns_server(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP:PORT (a name server is given by address)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_an_address_or_off() {
        let build = |v: &str| {
            RawOptions {
                http: Some(v.into()),
                ..RawOptions::default()
            }
            .build("n1")
        };
        assert_eq!(
            build("127.0.0.1:8081").expect("valid").http,
            Some("127.0.0.1:8081".parse().expect("addr"))
        );
        assert_eq!(build("off").expect("valid").http, None);
        assert_eq!(RawOptions::default().build("n1").expect("valid").http, None);
        assert_eq!(
            build("localhost:80").expect_err("a name").to_string(),
            "invalid http: \"localhost:80\" is not IP:PORT (for example 127.0.0.1:8081) or off"
        );
        let file: RawOptions = toml::from_str("http = \"0.0.0.0:9100\"\n").expect("toml");
        assert_eq!(file.http.as_deref(), Some("0.0.0.0:9100"));
    }

    #[test]
    fn dns_server_is_an_address_with_an_optional_port() {
        let build = |v: &str| {
            RawOptions {
                dns_server: Some(v.into()),
                ..Default::default()
            }
            .build("n1")
        };
        let at = |s: &str| Some(s.parse::<std::net::SocketAddr>().expect("addr"));
        assert_eq!(
            build("127.0.0.1:5353").expect("valid").dns_server,
            at("127.0.0.1:5353")
        );
        assert_eq!(
            build("10.0.0.1").expect("valid").dns_server,
            at("10.0.0.1:53")
        );
        assert_eq!(build("[::1]:53").expect("valid").dns_server, at("[::1]:53"));
        assert_eq!(
            build("ns.example:53").expect_err("a name").to_string(),
            "invalid dns_server: \"ns.example:53\" is not IP:PORT (a name server is given by address)"
        );
        assert_eq!(
            RawOptions::default().build("n1").expect("valid").dns_server,
            None
        );
        let file: RawOptions = toml::from_str("dns_server = \"127.0.0.1:53\"\n").expect("toml");
        assert_eq!(file.dns_server.as_deref(), Some("127.0.0.1:53"));
    }

    #[test]
    fn gossip_and_ring_settle_are_milliseconds_up_to_a_minute() {
        let c = RawOptions::default().build("n1").expect("valid");
        assert_eq!(
            (c.gossip_every, c.ring_settle),
            (Duration::ZERO, Duration::ZERO)
        );
        let file: RawOptions =
            toml::from_str("gossip_every_ms = 200\nring_settle_ms = 150\n").expect("toml");
        let c = file.build("n1").expect("valid");
        assert_eq!(c.gossip_every, Duration::from_millis(200));
        assert_eq!(c.ring_settle, Duration::from_millis(150));
        let too_long = RawOptions {
            gossip_every_ms: Some(60_001),
            ..Default::default()
        };
        assert_eq!(
            too_long.build("n1").expect_err("too long").to_string(),
            "invalid gossip_every_ms: must be at most 60000"
        );
    }

    #[test]
    fn event_buffer_comes_from_any_source_and_is_bounded() {
        assert_eq!(
            RawOptions::default()
                .build("n1")
                .expect("valid")
                .event_buffer,
            EVENT_BUFFER
        );
        let file: RawOptions = toml::from_str("event_buffer = 0\n").expect("toml");
        assert_eq!(file.build("n1").expect("valid").event_buffer, 0);
        let too_many = RawOptions {
            event_buffer: Some(EVENT_BUFFER_MAX + 1),
            ..Default::default()
        };
        assert_eq!(
            too_many.build("n1").expect_err("too many").to_string(),
            "invalid event_buffer: 10000001 is more than 10000000"
        );
    }

    #[test]
    fn bulk_priority_is_idle_low_or_normal() {
        assert_eq!(
            RawOptions::default()
                .build("n1")
                .expect("valid")
                .bulk_priority,
            BulkPriority::Idle
        );
        for (text, want) in [
            ("idle", BulkPriority::Idle),
            ("low", BulkPriority::Low),
            ("normal", BulkPriority::Normal),
        ] {
            let file: RawOptions =
                toml::from_str(&format!("bulk_priority = \"{text}\"\n")).expect("toml");
            assert_eq!(file.build("n1").expect("valid").bulk_priority, want);
        }
        let bad = RawOptions {
            bulk_priority: Some("high".into()),
            ..Default::default()
        };
        let e = bad.build("n1").expect_err("not a priority");
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    option: "bulk_priority",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "invalid bulk_priority: \"high\" is not idle, low or normal"
        );
        // A number is not a name: refused by the file's parser, naming the key.
        let e = toml::from_str::<RawOptions>("bulk_priority = 10\n").expect_err("a number");
        assert!(e.to_string().contains("bulk_priority"), "{e}");
    }

    #[test]
    fn key_iterations_default_to_today_s_recommendation_and_have_a_floor() {
        let d = RawOptions::default().build("n1").expect("valid");
        assert_eq!(d.key_iterations, 600_000);
        let file: RawOptions = toml::from_str("key_iterations = 1000000\n").expect("toml");
        assert_eq!(file.build("n1").expect("valid").key_iterations, 1_000_000);
        let weak = RawOptions {
            key_iterations: Some(999),
            ..Default::default()
        };
        assert_eq!(
            weak.build("n1").expect_err("too few").to_string(),
            "invalid key_iterations: 999 is fewer than 1000"
        );
    }

    #[test]
    fn wasm_fuel_comes_from_the_file_and_is_bounded() {
        assert_eq!(
            RawOptions::default()
                .build("n1")
                .expect("valid")
                .modules
                .fuel_per_call,
            nkcluster_core::modules::DEFAULT_FUEL
        );
        let file: RawOptions = toml::from_str("wasm_fuel = 5000\n").expect("toml");
        assert_eq!(file.build("n1").expect("valid").modules.fuel_per_call, 5000);
        let zero = RawOptions {
            wasm_fuel: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero.build("n1").expect_err("zero").to_string(),
            "invalid wasm_fuel: 0 is not between 1 and 10^12"
        );
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = RawOptions::default().build("n1").expect("valid");
        assert_eq!(c.cluster_name, "nkcluster");
        assert_eq!(c.password, "nkcluster");
        assert_eq!(c.worker_password, None);
        assert!(c.control);
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.listen[0].port, 1973);
        assert_eq!(c.listen[0].transport, nkcluster_core::url::Transport::Tls);
    }

    #[test]
    fn later_sources_win() {
        let file: RawOptions = toml::from_str(
            "cluster_name = \"a\"\npassword = \"p\"\ncontrol = false\nworker_password = \"w\"\n",
        )
        .expect("toml");
        let flags = RawOptions {
            cluster_name: Some("b".into()),
            ..Default::default()
        };
        let c = file.clone().overlay(flags).build("n").expect("valid");
        assert_eq!(c.cluster_name, "b");
        assert_eq!(c.password, "p");
        assert_eq!(c.worker_password.as_deref(), Some("w"));
        let flags = RawOptions {
            worker_password: Some("w2".into()),
            ..Default::default()
        };
        let c = file.overlay(flags).build("n").expect("valid");
        assert_eq!(c.worker_password.as_deref(), Some("w2"));
        assert!(!c.control);
    }

    #[test]
    fn the_quick_start_config_files_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for i in 1..=5 {
            let raw = RawOptions::from_file(&dir.join(format!("dev{i}.toml"))).expect("file");
            let c = raw.build("x").expect("valid");
            assert_eq!(c.node_id, format!("dev{i}"));
            assert_eq!(c.control, i <= 3);
            assert_eq!(c.listen.len(), usize::from(i <= 3));
            // dev2, dev3 know dev1; the workers know all three control nodes.
            let known = match i {
                1 => 0,
                2 | 3 => 1,
                _ => 3,
            };
            assert_eq!(c.cluster_addr.len(), known, "dev{i}");
        }
    }

    #[test]
    fn bad_values_name_their_option() {
        let e = RawOptions {
            listen: Some("http://x".into()),
            ..Default::default()
        }
        .build("n")
        .expect_err("invalid");
        assert!(
            e.to_string().starts_with(
                "invalid listen: invalid_scheme: http (expected nkcluster://host[:port]"
            ),
            "{e}"
        );
        let e = toml::from_str::<RawOptions>("pasword = \"x\"").expect_err("unknown key");
        assert!(e.to_string().contains("pasword"), "{e}");
    }
}
