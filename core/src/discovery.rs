//! DNS discovery of control nodes: which records a `cluster_addr` entry needs, in which
//! order their answers are used, and the candidate list they make. Sans-IO: the shell
//! performs each [`Query`] a [`Resolution`] asks for and feeds the [`Answer`] back;
//! randomness (SRV weights, the candidates' shuffle) is a `u64` the shell injects.
//!
//! - A host that is an IP literal needs no lookup: the URL is its own candidate.
//! - A name with a port: its A and AAAA records ([`Query::Ip`]).
//! - A name with a transport but no port: the SRV record of that transport
//!   (`_nks._ws`, `_nks._tcp`, `_nk._ws`, `_nk._tcp` for wss, tls, ws, tcp).
//! - A name with neither: its NAPTR records; those with flag `S` and a known service
//!   (`NKS+D2W` wss, `NKS+D2T` tls, `NK+D2W` ws, `NK+D2T` tcp), by (order, preference),
//!   name SRV records by their replacement.
//! - SRV answers are used by priority, and within one priority in the weight-randomised
//!   order of RFC 2782; a target `.` means "no service" and is skipped; each target's A
//!   and AAAA records make candidates with the SRV port.
//! - When NAPTR (or the SRV of a written transport) has no answer, the host's own A/AAAA
//!   records are used with the URL's port (the transport's default).
//! - An entry that yields no address is a [`DiscoveryError`] naming it.
//!
//! ```
//! use nkcluster_core::discovery::{Answer, Query, Resolution};
//! use nkcluster_core::url::parse_url;
//! let url = parse_url("nkcluster://ctl.test:1972").unwrap();
//! let mut r = Resolution::new(url, 0);
//! assert_eq!(r.next_query(), Some(Query::Ip("ctl.test".into())));
//! r.handle_answer(Answer::Ip(vec!["10.0.0.1".parse().unwrap()]));
//! assert_eq!(r.next_query(), None);
//! let found = r.finish().unwrap();
//! assert_eq!(found[0].label(), "tcp:ctl.test:1972@10.0.0.1:1972");
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::url::{ClusterUrl, Host, Transport, Written};

/// NAPTR services of nkcluster and their transports, in the original's order.
pub const SERVICES: [(&str, Transport); 4] = [
    ("NKS+D2W", Transport::Wss),
    ("NKS+D2T", Transport::Tls),
    ("NK+D2W", Transport::Ws),
    ("NK+D2T", Transport::Tcp),
];

/// The SRV name of `transport` at `host` (`_nks._tcp.host` for tls).
pub fn srv_name(transport: Transport, host: &str) -> String {
    let prefix = match transport {
        Transport::Wss => "_nks._ws",
        Transport::Tls => "_nks._tcp",
        Transport::Ws => "_nk._ws",
        Transport::Tcp => "_nk._tcp",
    };
    format!("{prefix}.{host}")
}

/// A name without its final dot (DNS answers name absolute names).
fn relative(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// A lookup the shell must perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// NAPTR records of the name.
    Naptr(String),
    /// SRV records of the name.
    Srv(String),
    /// A and AAAA records of the name.
    Ip(String),
}

/// One NAPTR record, as the DNS gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    /// Lower first.
    pub order: u16,
    /// Lower first, among equal orders.
    pub preference: u16,
    /// `S` for a record whose replacement names an SRV record.
    pub flags: String,
    /// The service, e.g. `NKS+D2T`.
    pub services: String,
    /// The SRV name.
    pub replacement: String,
}

/// One SRV record, as the DNS gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower first.
    pub priority: u16,
    /// Relative chance among equal priorities.
    pub weight: u16,
    /// The port to dial.
    pub port: u16,
    /// The host to resolve; `.` means the service is not offered.
    pub target: String,
}

/// The outcome of one [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// NAPTR records (any order).
    Naptr(Vec<NaptrRecord>),
    /// SRV records (any order).
    Srv(Vec<SrvRecord>),
    /// Addresses (A then AAAA).
    Ip(Vec<IpAddr>),
    /// The name does not exist or has no record of that type.
    NotFound,
    /// The lookup failed (no answer, a server error); the detail says why.
    Failed(String),
}

/// One address to dial: the URL (host name kept for TLS) and the address it resolved
/// to (`None`: the shell's network resolves the host itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What to dial: transport, port, name, and the entry's parameters.
    pub url: ClusterUrl,
    /// The resolved address.
    pub addr: Option<SocketAddr>,
}

impl Candidate {
    /// A URL dialed as written (an IP literal, or a network that resolves names itself).
    pub fn as_written(url: ClusterUrl) -> Candidate {
        let addr = url.socket_addr();
        Candidate { url, addr }
    }

    /// `transport:host:port`, plus `@address` when a name was resolved.
    pub fn label(&self) -> String {
        match (&self.url.host, self.addr) {
            (Host::Name(_), Some(a)) => format!("{}@{a}", self.url.remote_label()),
            _ => self.url.remote_label(),
        }
    }

    /// Whether both name the same endpoint (the address when both have one).
    pub fn same_endpoint(&self, other: &Candidate) -> bool {
        match (self.addr, other.addr) {
            (Some(a), Some(b)) => a == b,
            _ => self.url.host == other.url.host && self.url.port == other.url.port,
        }
    }
}

/// An entry of `cluster_addr` that yielded no address; the other entries are still tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Every lookup answered, none with an address.
    #[error("unresolved: {entry}: no address for {name}")]
    NotFound {
        /// The entry (its remote label).
        entry: String,
        /// The name looked up.
        name: String,
    },
    /// A lookup failed and no other gave an address.
    #[error("dns_failed: {entry}: {detail}")]
    Failed {
        /// The entry (its remote label).
        entry: String,
        /// What failed.
        detail: String,
    },
}

impl DiscoveryError {
    /// Stable code: `unresolved` or `dns_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::NotFound { .. } => "unresolved",
            DiscoveryError::Failed { .. } => "dns_failed",
        }
    }
}

/// A small deterministic generator (SplitMix64) over an injected seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Starts from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Shuffles `items` (Fisher-Yates) with randomness from `seed`.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix::new(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// The SRV names a NAPTR answer points at, with their transports, by (order,
/// preference); records without flag `S`, with an unknown service or no replacement are
/// dropped, and so are repeats.
pub fn naptr_targets(records: &[NaptrRecord]) -> Vec<(String, Transport)> {
    let mut usable: Vec<(u16, u16, String, Transport)> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter_map(|r| {
            let (_, t) = SERVICES
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(r.services.trim()))?;
            let name = relative(&r.replacement);
            (!name.is_empty()).then(|| (r.order, r.preference, name.to_owned(), *t))
        })
        .collect();
    // Stable: equal (order, preference) keep the answer's order.
    usable.sort_by_key(|(o, p, _, _)| (*o, *p));
    let mut out: Vec<(String, Transport)> = Vec::new();
    for (_, _, name, t) in usable {
        if !out.iter().any(|(n, tt)| *n == name && *tt == t) {
            out.push((name, t));
        }
    }
    out
}

/// SRV records in the order to use them (RFC 2782): by priority; within a priority,
/// repeatedly pick by weight: zero weights first in the running list, a random number in
/// `0..=sum`, the first record whose running sum reaches it. Targets `.` are dropped.
pub fn order_srv(records: &[SrvRecord], rng: &mut SplitMix) -> Vec<SrvRecord> {
    let mut rest: Vec<SrvRecord> = records
        .iter()
        .filter(|r| !relative(&r.target).is_empty())
        .cloned()
        .collect();
    // Stable: zero weights go first within each priority.
    rest.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(rest.len());
    while let Some(priority) = rest.first().map(|r| r.priority) {
        let end = rest.iter().take_while(|r| r.priority == priority).count();
        let mut group: Vec<SrvRecord> = rest.drain(..end).collect();
        while !group.is_empty() {
            let sum: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = rng.below(sum + 1);
            let mut running = 0u64;
            let i = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i));
        }
    }
    out
}

/// One pending step of a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Naptr(String),
    /// An SRV name; `fallback`: the host's A/AAAA when it has no answer.
    Srv {
        name: String,
        transport: Transport,
        fallback: bool,
    },
    Ip {
        name: String,
        port: u16,
        transport: Transport,
    },
}

/// The resolution of one `cluster_addr` entry: asks for lookups one at a time and
/// collects the candidates. See the module docs.
#[derive(Debug)]
pub struct Resolution {
    entry: ClusterUrl,
    steps: VecDeque<Step>,
    found: Vec<Candidate>,
    failure: Option<String>,
    rng: SplitMix,
}

impl Resolution {
    /// Starts resolving `entry`; `random` orders SRV records of equal priority.
    pub fn new(entry: ClusterUrl, random: u64) -> Self {
        let mut steps = VecDeque::new();
        let mut found = Vec::new();
        match &entry.host {
            Host::Name(name) => {
                let name = relative(name).to_owned();
                let Written { port, transport } = entry.written;
                steps.push_back(if port {
                    Step::Ip {
                        name,
                        port: entry.port,
                        transport: entry.transport,
                    }
                } else if transport {
                    Step::Srv {
                        name: srv_name(entry.transport, &name),
                        transport: entry.transport,
                        fallback: true,
                    }
                } else {
                    Step::Naptr(name)
                });
            }
            Host::Ip(_) | Host::All => found.push(Candidate::as_written(entry.clone())),
        }
        Resolution {
            entry,
            steps,
            found,
            failure: None,
            rng: SplitMix::new(random),
        }
    }

    /// The lookup to perform next; `None`: call [`finish`](Self::finish).
    #[must_use]
    pub fn next_query(&self) -> Option<Query> {
        self.steps.front().map(|s| match s {
            Step::Naptr(n) => Query::Naptr(n.clone()),
            Step::Srv { name, .. } => Query::Srv(name.clone()),
            Step::Ip { name, .. } => Query::Ip(name.clone()),
        })
    }

    /// The answer to the query [`next_query`](Self::next_query) named. An answer of
    /// another kind counts as no answer.
    pub fn handle_answer(&mut self, answer: Answer) {
        let Some(step) = self.steps.pop_front() else {
            return;
        };
        if let Answer::Failed(detail) = &answer {
            let q = match &step {
                Step::Naptr(n) => format!("NAPTR {n}"),
                Step::Srv { name, .. } => format!("SRV {name}"),
                Step::Ip { name, .. } => format!("A/AAAA {name}"),
            };
            self.failure = Some(format!("{q}: {detail}"));
        }
        match step {
            Step::Naptr(name) => {
                let targets = match &answer {
                    Answer::Naptr(records) => naptr_targets(records),
                    _ => Vec::new(),
                };
                if targets.is_empty() {
                    self.steps.push_back(Step::Ip {
                        name,
                        port: self.entry.port,
                        transport: self.entry.transport,
                    });
                }
                for (name, transport) in targets {
                    self.steps.push_back(Step::Srv {
                        name,
                        transport,
                        fallback: false,
                    });
                }
            }
            Step::Srv {
                transport,
                fallback,
                ..
            } => {
                let ordered = match &answer {
                    Answer::Srv(records) => order_srv(records, &mut self.rng),
                    _ => Vec::new(),
                };
                if ordered.is_empty()
                    && fallback
                    && let Host::Name(name) = &self.entry.host
                {
                    self.steps.push_back(Step::Ip {
                        name: relative(name).to_owned(),
                        port: self.entry.port,
                        transport,
                    });
                }
                for r in ordered {
                    let step = Step::Ip {
                        name: relative(&r.target).to_owned(),
                        port: r.port,
                        transport,
                    };
                    if !self.steps.contains(&step) {
                        self.steps.push_back(step);
                    }
                }
            }
            Step::Ip {
                name,
                port,
                transport,
            } => {
                let Answer::Ip(ips) = answer else {
                    return;
                };
                for ip in ips {
                    let mut url = self.entry.clone();
                    url.host = Host::Name(name.clone());
                    url.port = port;
                    url.transport = transport;
                    url.written = Written::ALL;
                    if !transport.is_ws() {
                        url.path = "/".to_owned();
                    }
                    let c = Candidate {
                        url,
                        addr: Some(SocketAddr::new(ip, port)),
                    };
                    if !self.found.contains(&c) {
                        self.found.push(c);
                    }
                }
            }
        }
    }

    /// The candidates, in the order found, or the entry's error when there is none.
    pub fn finish(self) -> Result<Vec<Candidate>, DiscoveryError> {
        if !self.found.is_empty() {
            return Ok(self.found);
        }
        let entry = self.entry.written_label();
        Err(match self.failure {
            Some(detail) => DiscoveryError::Failed { entry, detail },
            None => DiscoveryError::NotFound {
                entry,
                name: self.entry.host.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests;
