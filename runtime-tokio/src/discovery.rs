//! DNS discovery, the shell's side: performs the lookups a core
//! [`Resolution`](nkcluster_core::discovery::Resolution) asks for (NAPTR, SRV, A/AAAA) and
//! feeds it the answers. Every decision (which record, which order, the fallbacks, the
//! errors) is the core's; this module only talks to a name server.
//!
//! [`HickoryDns`] asks `hickory-resolver`: the one server `dns_server` names, or the
//! system's configuration (`/etc/resolv.conf`, `/etc/hosts`) without it. A simulated
//! network supplies its own [`Dns`] (see [`Net::dns`](crate::net::Net::dns)).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use nkcluster_core::discovery::{
    Answer, Candidate, DiscoveryError, NaptrRecord, Query, Resolution, SrvRecord,
};
use nkcluster_core::url::ClusterUrl;

/// A lookup in flight.
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// A name server discovery can ask.
pub trait Dns: Send + Sync + 'static {
    /// Performs one lookup.
    fn lookup<'a>(&'a self, query: &'a Query) -> LookupFuture<'a>;
}

/// The resolver could not be set up (the system configuration is unreadable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("dns_setup: {0}")]
pub struct DnsSetupError(pub String);

/// Discovery through `hickory-resolver`.
#[derive(Clone)]
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HickoryDns")
    }
}

impl HickoryDns {
    /// Asks `server` only (UDP, then TCP for long answers), or the system's name servers.
    pub fn new(server: Option<SocketAddr>) -> Result<Self, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
                Resolver::builder_with_config(config, provider)
            }
            None => Resolver::builder(provider).map_err(|e| DnsSetupError(e.to_string()))?,
        };
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if server.is_some() {
            // One server the operator named: every round asks it again.
            opts.cache_size = 0;
        }
        let resolver = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(HickoryDns { resolver })
    }
}

fn failed(e: NetError) -> Answer {
    if e.is_no_records_found() || e.is_nx_domain() {
        Answer::NotFound
    } else {
        Answer::Failed(e.to_string())
    }
}

fn bytes(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Dns for HickoryDns {
    fn lookup<'a>(&'a self, query: &'a Query) -> LookupFuture<'a> {
        Box::pin(async move {
            match query {
                Query::Ip(name) => match self.resolver.lookup_ip(name.as_str()).await {
                    Ok(ips) => Answer::Ip(ips.iter().collect()),
                    Err(e) => failed(e),
                },
                Query::Naptr(name) => {
                    match self.resolver.lookup(name.as_str(), RecordType::NAPTR).await {
                        Ok(l) => Answer::Naptr(
                            l.answers()
                                .iter()
                                .filter_map(|r| match &r.data {
                                    RData::NAPTR(n) => Some(NaptrRecord {
                                        order: n.order,
                                        preference: n.preference,
                                        flags: bytes(&n.flags),
                                        services: bytes(&n.services),
                                        replacement: n.replacement.to_string(),
                                    }),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        Err(e) => failed(e),
                    }
                }
                Query::Srv(name) => {
                    match self.resolver.lookup(name.as_str(), RecordType::SRV).await {
                        Ok(l) => Answer::Srv(
                            l.answers()
                                .iter()
                                .filter_map(|r| match &r.data {
                                    RData::SRV(s) => Some(SrvRecord {
                                        priority: s.priority,
                                        weight: s.weight,
                                        port: s.port,
                                        target: s.target.to_string(),
                                    }),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        Err(e) => failed(e),
                    }
                }
            }
        })
    }
}

/// Resolves one `cluster_addr` entry: the lookups its [`Resolution`] asks for, one at a
/// time. `random` orders SRV records of equal priority.
/// Without a DNS (`dns` could not be set up: `Err` says why), every lookup fails.
pub async fn resolve(
    dns: Result<&dyn Dns, &DnsSetupError>,
    entry: ClusterUrl,
    random: u64,
) -> Result<Vec<Candidate>, DiscoveryError> {
    let mut r = Resolution::new(entry, random);
    while let Some(q) = r.next_query() {
        let answer = match dns {
            Ok(dns) => dns.lookup(&q).await,
            Err(e) => Answer::Failed(e.to_string()),
        };
        r.handle_answer(answer);
    }
    r.finish()
}
