//! Cluster URLs: parsing, validation and canonical printing of `nkcluster://` URL lists.
//!
//! A cluster address is a comma-separated list of URLs of the form
//! `nkcluster://host[:port][/path][;key=value]*`. Whitespace around entries and around
//! `;` is tolerated. The host is a DNS name, an IPv4 literal, a bracketed IPv6 literal
//! (`[::1]`) or `all` (every interface, for listeners). The port defaults to the
//! transport's port (tcp 1972, tls 1973, ws 1974, wss 1975); `0` means "any port".
//!
//! Recognised parameters (keys are case-insensitive): `transport=tcp|tls|ws|wss`,
//! `password`, `worker_password` (the secret a worker proves, see the handshake),
//! `tls_verify=true|false`, `tls_depth=N`, `tls_certfile`, `tls_keyfile`,
//! `tls_cacertfile` and `tls_password`. A path is only accepted for ws and wss.
//!
//! The parser never panics and only allocates in proportion to its input. The
//! [`Display`](std::fmt::Display) form of a [`ClusterUrl`] is canonical and parses back to
//! the same value (with port and transport [`Written`]: the canonical form writes both). Note that it includes the password: log [`ClusterUrl::remote_label`]
//! instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The URL scheme of cluster URLs (matched case-insensitively).
pub const SCHEME: &str = "nkcluster";

/// Longest accepted DNS name, in bytes.
const MAX_NAME_LEN: usize = 253;
/// Longest accepted DNS label, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// The syntax of a cluster URL, as error messages show it.
pub const URL_SYNTAX: &str = "nkcluster://host[:port][;transport=tcp|tls|ws|wss][;password=P][;worker_password=W][;tls_verify=true|false][;tls_depth=N], comma separated";

/// Error from parsing a cluster URL or URL list (parsing holds no state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The URL has a well-formed scheme other than `nkcluster` (the scheme seen).
    #[error("invalid_scheme: {0} (expected {URL_SYNTAX})")]
    InvalidScheme(String),
    /// The `transport` parameter is not one of tcp, tls, ws, wss (the value seen).
    #[error("invalid_transport: {0} (expected tcp, tls, ws or wss)")]
    InvalidTransport(String),
    /// Some part of the URL is malformed; carries a short name of that part
    /// (`"host"`, `"port"`, `"path"`, `"scheme"`, `"url"`, `"parameter"` or a parameter key).
    #[error("syntax_error: {0} (expected {URL_SYNTAX})")]
    SyntaxError(String),
}

impl UrlError {
    /// Stable error code: `"invalid_scheme"`, `"invalid_transport"` or `"syntax_error"`.
    pub fn code(&self) -> &'static str {
        match self {
            UrlError::InvalidScheme(_) => "invalid_scheme",
            UrlError::InvalidTransport(_) => "invalid_transport",
            UrlError::SyntaxError(_) => "syntax_error",
        }
    }
}

fn syntax(what: &str) -> UrlError {
    UrlError::SyntaxError(what.to_string())
}

/// Transport used to reach a cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Transport {
    /// Plain TCP (default port 1972).
    #[default]
    Tcp,
    /// TCP with TLS (default port 1973).
    Tls,
    /// WebSocket over TCP (default port 1974).
    Ws,
    /// WebSocket over TLS (default port 1975).
    Wss,
}

impl Transport {
    /// Every transport, in declaration order.
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Lower-case name as used in URLs: `"tcp"`, `"tls"`, `"ws"` or `"wss"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Port used when a URL does not give one.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tcp => 1972,
            Transport::Tls => 1973,
            Transport::Ws => 1974,
            Transport::Wss => 1975,
        }
    }

    /// Whether the transport runs over TLS (tls and wss).
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether the transport is a WebSocket (ws and wss), the only ones with a path.
    pub fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

impl FromStr for Transport {
    type Err = UrlError;

    /// Parses a transport name case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UrlError::InvalidTransport(s.to_string()))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host part of a cluster URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Host {
    /// `all`: every local interface (for listeners).
    All,
    /// A DNS name, to be resolved by the runtime.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    /// Prints `all`, the name, or the address (IPv6 in brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::All => f.write_str("all"),
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// TLS parameters given in a URL; `None` means "not given, use the node's configuration".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TlsOptions {
    /// `tls_verify`: whether to verify the peer's certificate.
    pub verify: Option<bool>,
    /// `tls_depth`: maximum certificate chain depth.
    pub depth: Option<u8>,
    /// `tls_certfile`: path of the certificate file.
    pub certfile: Option<String>,
    /// `tls_keyfile`: path of the private key file.
    pub keyfile: Option<String>,
    /// `tls_cacertfile`: path of the CA certificates file.
    pub cacertfile: Option<String>,
    /// `tls_password`: password of the private key.
    pub password: Option<String>,
}

impl TlsOptions {
    /// These options (a URL's), with every field they leave unset taken from `node`'s.
    pub fn over(&self, node: &TlsOptions) -> TlsOptions {
        TlsOptions {
            verify: self.verify.or(node.verify),
            depth: self.depth.or(node.depth),
            certfile: self.certfile.clone().or_else(|| node.certfile.clone()),
            keyfile: self.keyfile.clone().or_else(|| node.keyfile.clone()),
            cacertfile: self.cacertfile.clone().or_else(|| node.cacertfile.clone()),
            password: self.password.clone().or_else(|| node.password.clone()),
        }
    }
}

/// The IP address of a remote label like `tls:127.0.0.1:1973` or `ws:[::1]:1974`.
pub fn ip_of_remote(remote: &str) -> Option<std::net::IpAddr> {
    let addr = remote.split_once(':')?.1;
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// Which parts of a URL its text wrote: DNS discovery looks up what it left out (no
/// port: SRV records; neither port nor transport: NAPTR, then SRV). URLs built by hand
/// and the canonical form write both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Written {
    /// The URL gave a port.
    pub port: bool,
    /// The URL gave a `transport` parameter.
    pub transport: bool,
}

impl Written {
    /// Both port and transport written.
    pub const ALL: Written = Written {
        port: true,
        transport: true,
    };
}

impl Default for Written {
    fn default() -> Self {
        Written::ALL
    }
}

/// One parsed cluster URL.
///
/// String fields produced by the parser never contain `;`, `,` or surrounding
/// whitespace; values built by hand must respect the same rules to print canonically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterUrl {
    /// Host to connect to or listen on.
    pub host: Host,
    /// Port (the transport's default when the URL has none; `0` means any port).
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// WebSocket path, starting with `/` (always `"/"` unless the transport is ws or wss).
    pub path: String,
    /// Cluster password given in the URL, overriding the configured one.
    pub password: Option<String>,
    /// Worker secret given in the URL (a worker's `cluster_addr`), overriding the
    /// configured `worker_password`.
    pub worker_password: Option<String>,
    /// TLS parameters given in the URL.
    pub tls: TlsOptions,
    /// Whether the text gave the port and the transport (the canonical form gives both).
    pub written: Written,
}

impl ClusterUrl {
    /// A listener whose traffic after the handshake is neither encrypted nor
    /// integrity-protected (tcp, ws) and that other hosts can reach (every interface, a
    /// name, or an IP that is not loopback): the daemon warns about it at start.
    pub fn is_exposed_plaintext(&self) -> bool {
        !self.transport.is_tls()
            && match &self.host {
                Host::Ip(ip) => !ip.is_loopback(),
                Host::All | Host::Name(_) => true,
            }
    }

    /// The socket address, only when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::All | Host::Name(_) => None,
        }
    }

    /// A short label without secrets for logs and reports: `transport:host:port`,
    /// e.g. `tcp:127.0.0.1:1972` or `wss:[::1]:1975`.
    pub fn remote_label(&self) -> String {
        format!("{}:{}:{}", self.transport, self.host, self.port)
    }

    /// [`remote_label`](Self::remote_label) with only what the text wrote, for an entry
    /// discovery resolves: `cluster.test`, `tls:cluster.test`, `h:1972`, `tcp:h:1972`.
    pub fn written_label(&self) -> String {
        let mut s = String::new();
        if self.written.transport {
            s.push_str(self.transport.as_str());
            s.push(':');
        }
        s.push_str(&self.host.to_string());
        if self.written.port {
            s.push_str(&format!(":{}", self.port));
        }
        s
    }
}

impl fmt::Display for ClusterUrl {
    /// Canonical form: `nkcluster://host:port[/path];transport=T` followed by the set
    /// parameters among `password`, `worker_password`, `tls_verify`, `tls_depth`, `tls_certfile`,
    /// `tls_keyfile`, `tls_cacertfile`, `tls_password`, in that order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_parts(f, Written::ALL)
    }
}

/// [`ClusterUrl::written_form`]'s printer.
struct WrittenForm<'a>(&'a ClusterUrl);

impl fmt::Display for WrittenForm<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_parts(f, self.0.written)
    }
}

impl ClusterUrl {
    /// The URL as its text wrote it: the canonical form without the port or the
    /// transport the text left out, so that discovery still looks them up. It parses back
    /// to the same value, [`Written`] included.
    pub fn written_form(&self) -> String {
        WrittenForm(self).to_string()
    }

    fn write_parts(&self, f: &mut fmt::Formatter<'_>, written: Written) -> fmt::Result {
        write!(f, "{SCHEME}://{}", self.host)?;
        if written.port {
            write!(f, ":{}", self.port)?;
        }
        if self.transport.is_ws() && self.path != "/" {
            f.write_str(&self.path)?;
        }
        if written.transport {
            write!(f, ";transport={}", self.transport)?;
        }
        if let Some(password) = &self.password {
            write!(f, ";password={password}")?;
        }
        if let Some(worker_password) = &self.worker_password {
            write!(f, ";worker_password={worker_password}")?;
        }
        let tls = &self.tls;
        if let Some(verify) = tls.verify {
            write!(f, ";tls_verify={verify}")?;
        }
        if let Some(depth) = tls.depth {
            write!(f, ";tls_depth={depth}")?;
        }
        let strings = [
            ("tls_certfile", &tls.certfile),
            ("tls_keyfile", &tls.keyfile),
            ("tls_cacertfile", &tls.cacertfile),
            ("tls_password", &tls.password),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                write!(f, ";{key}={value}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for ClusterUrl {
    type Err = UrlError;

    /// Same as [`parse_url`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_url(s)
    }
}

/// Parses a single cluster URL (surrounding whitespace is ignored).
///
/// A `,` anywhere is an error: use [`parse_url_list`] for lists.
pub fn parse_url(s: &str) -> Result<ClusterUrl, UrlError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(syntax("url"));
    }
    parse_entry(s)
}

/// Parses a comma-separated list of cluster URLs.
///
/// An empty or all-whitespace string is an empty list; an empty entry anywhere in a
/// non-empty list is `SyntaxError("url")`.
pub fn parse_url_list(s: &str) -> Result<Vec<ClusterUrl>, UrlError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(parse_url).collect()
}

/// `urls` with the host `all` (every interface) replaced by `ip`, the address the node
/// was reached at, so that others can dial it; URLs that do not parse are dropped.
pub fn reachable_at(urls: &[String], ip: Option<IpAddr>) -> Vec<String> {
    urls.iter()
        .filter_map(|u| parse_url(u).ok())
        .filter_map(|mut u| {
            if u.host == Host::All {
                u.host = Host::Ip(ip?);
            }
            Some(u.to_string())
        })
        .collect()
}

/// Prints URLs in canonical form, separated by `", "`.
pub fn format_url_list(urls: &[ClusterUrl]) -> String {
    let mut out = String::new();
    for (i, url) in urls.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&url.to_string());
    }
    out
}

/// Parses one trimmed, non-empty URL.
fn parse_entry(s: &str) -> Result<ClusterUrl, UrlError> {
    let (head, params) = match s.split_once(';') {
        Some((head, params)) => (head.trim(), Some(params)),
        None => (s, None),
    };

    let (scheme, rest) = head.split_once("://").ok_or_else(|| syntax("scheme"))?;
    if !is_scheme(scheme) {
        return Err(syntax("scheme"));
    }
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(UrlError::InvalidScheme(scheme.to_string()));
    }

    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (host, port) = parse_authority(authority)?;

    let mut transport = None;
    let mut password = None;
    let mut worker_password = None;
    let mut tls = TlsOptions::default();
    if let Some(params) = params {
        for part in params.split(';') {
            parse_param(
                part,
                &mut transport,
                (&mut password, &mut worker_password),
                &mut tls,
            )?;
        }
    }

    let transport_written = transport.is_some();
    let transport = transport.unwrap_or_default();
    let path = match path {
        None => "/".to_string(),
        Some(path) => {
            if path != "/" && !transport.is_ws() {
                return Err(syntax("path"));
            }
            if !path.chars().all(is_path_char) {
                return Err(syntax("path"));
            }
            path.to_string()
        }
    };
    Ok(ClusterUrl {
        host,
        port: port.unwrap_or(transport.default_port()),
        transport,
        path,
        password,
        worker_password,
        tls,
        written: Written {
            port: port.is_some(),
            transport: transport_written,
        },
    })
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, as in RFC 3986.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_path_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && c != ',' && c != ';'
}

/// Parses `host[:port]`, where host may be a bracketed IPv6 literal.
fn parse_authority(s: &str) -> Result<(Host, Option<u16>), UrlError> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (literal, after) = inner.split_once(']').ok_or_else(|| syntax("host"))?;
        let ip = Ipv6Addr::from_str(literal).map_err(|_| syntax("host"))?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or_else(|| syntax("host"))?)
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        (parse_host(host)?, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

fn parse_port(s: &str) -> Result<u16, UrlError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax("port"));
    }
    s.parse().map_err(|_| syntax("port"))
}

/// Parses an unbracketed host: `all`, an IPv4 literal or a DNS name.
fn parse_host(s: &str) -> Result<Host, UrlError> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Host::All);
    }
    if let Ok(ip) = Ipv4Addr::from_str(s) {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    if is_dns_name(s) {
        Ok(Host::Name(s.to_string()))
    } else {
        Err(syntax("host"))
    }
}

/// Dot-separated labels of ASCII letters, digits, `-` and `_`; the last label may not
/// be all digits (so that malformed IPv4 literals such as `1.2.3` or `01.2.3.4` are
/// rejected rather than resolved).
fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return false;
    }
    let labels_ok = s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_numeric
}

/// Parses one `key=value` parameter into the accumulators.
fn parse_param(
    part: &str,
    transport: &mut Option<Transport>,
    (password, worker_password): (&mut Option<String>, &mut Option<String>),
    tls: &mut TlsOptions,
) -> Result<(), UrlError> {
    let part = part.trim();
    if part.is_empty() {
        return Err(syntax("parameter"));
    }
    let (key, value) = match part.split_once('=') {
        Some((key, value)) => (key.trim(), Some(value.trim())),
        None => (part, None),
    };
    const KEYS: [&str; 9] = [
        "transport",
        "password",
        "worker_password",
        "tls_verify",
        "tls_depth",
        "tls_certfile",
        "tls_keyfile",
        "tls_cacertfile",
        "tls_password",
    ];
    let key = KEYS
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(key))
        .ok_or_else(|| syntax(key))?;
    // Missing or empty values, and `,` (a list separator), are errors for every key.
    let value = match value {
        Some(v) if !v.is_empty() && !v.contains(',') => v,
        _ => return Err(syntax(key)),
    };

    fn set<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), UrlError> {
        if slot.is_some() {
            return Err(syntax(key));
        }
        *slot = Some(value);
        Ok(())
    }

    match key {
        "transport" => set(transport, Transport::from_str(value)?, key),
        "password" => set(password, value.to_string(), key),
        "worker_password" => set(worker_password, value.to_string(), key),
        "tls_verify" => {
            let verify = if value.eq_ignore_ascii_case("true") {
                true
            } else if value.eq_ignore_ascii_case("false") {
                false
            } else {
                return Err(syntax(key));
            };
            set(&mut tls.verify, verify, key)
        }
        "tls_depth" => {
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax(key));
            }
            let depth = value.parse::<u8>().map_err(|_| syntax(key))?;
            set(&mut tls.depth, depth, key)
        }
        "tls_certfile" => set(&mut tls.certfile, value.to_string(), key),
        "tls_keyfile" => set(&mut tls.keyfile, value.to_string(), key),
        "tls_cacertfile" => set(&mut tls.cacertfile, value.to_string(), key),
        _ => set(&mut tls.password, value.to_string(), key),
    }
}

#[cfg(test)]
mod tests;
