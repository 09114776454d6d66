//! The one set of error codes nkcluster speaks: every typed error of the core (a refused
//! handshake, a lost link, a job refused by a node, a bad file part) has one of these
//! stable, snake_case codes, and a peer's error ([`RemoteError`](crate::message::RemoteError))
//! carries one. On the wire a code travels as its text, so a code a newer peer invents
//! arrives as [`ErrorCode::Other`] instead of failing the message.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// A stable error code. See the module docs.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know (a newer peer's, or an application's).
            Other(String),
        }

        /// Every known code, in declaration order.
        pub const KNOWN: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

        impl ErrorCode {
            /// The code's text.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Other(s) => s,
                }
            }

            /// The known code of `text`, or [`ErrorCode::Other`].
            pub fn parse(text: &str) -> ErrorCode {
                match text {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }
        }
    };
}

codes! {
    // Requests and routing.
    /// A request body that does not decode.
    BadRequest = "bad_request",
    /// A reply that does not decode.
    BadReply = "bad_reply",
    /// No handler or job class of that name at the node.
    UnknownClass = "unknown_class",
    /// No named function of that name at the node.
    UnknownFunction = "unknown_function",
    /// A job class that takes no such request.
    UnknownRequest = "unknown_request",
    /// No node of that id is connected to the cluster.
    UnknownNode = "unknown_node",
    /// No link to the node (or its proxy is redialing it).
    NotConnected = "not_connected",
    /// The node is connected: removing it needs `force`.
    NodeConnected = "node_connected",
    /// The request's deadline passed (queued or sent).
    Timeout = "timeout",
    /// The link died with the request pending.
    ConnectionFailed = "connection_failed",
    /// The node's proxy moved to another control node with the request pending.
    ProxyMoved = "proxy_moved",
    /// Too many requests pending on the link.
    TooManyPending = "too_many_pending",
    /// A handler ended without answering.
    NoReply = "no_reply",
    /// The peer may not ask that.
    Forbidden = "forbidden",
    /// A control member did not answer: the answer is incomplete.
    Incomplete = "incomplete",
    /// The node could not encode its own answer.
    InternalError = "internal_error",
    /// The node is too busy to take it now.
    Busy = "busy",
    /// A dialed URL answered with another node.
    WrongNode = "wrong_node",
    /// The node id is linked already from another live process.
    DuplicateNodeId = "duplicate_node_id",
    /// Nothing answered at any URL.
    NoConnections = "no_connections",
    // Jobs.
    /// No task of that id runs at the node.
    TaskNotFound = "task_not_found",
    /// The node is not `ready`.
    NodeNotReady = "node_not_ready",
    /// A task of that id runs already.
    AlreadyStarted = "already_started",
    /// The node runs as many tasks as it may.
    TooManyTasks = "too_many_tasks",
    /// A status a node cannot be asked to take.
    InvalidStatus = "invalid_status",
    /// No data under that key.
    NotFound = "not_found",
    /// The data registry is full, or a module is over the size limit.
    TooLarge = "too_large",
    /// A job class callback panicked.
    CallbackPanicked = "callback_panicked",
    /// A named function panicked.
    FunctionPanicked = "function_panicked",
    /// The control node has as many event subscribers as it may.
    TooManySubscribers = "too_many_subscribers",
    /// A worker sent events of more job classes than a control node remembers per worker.
    TooManyClasses = "too_many_classes",
    // OS processes.
    /// A process could not be started (no such program, a bad working directory, ...).
    SpawnFailed = "spawn_failed",
    /// No process task of that id runs at the node.
    ProcessNotFound = "process_not_found",
    /// A one-shot command ran past its timeout (it was killed).
    ExecTimeout = "exec_timeout",
    /// The node runs as many processes as it may.
    TooManyProcesses = "too_many_processes",
    // Docker containers.
    /// The Docker engine does not answer (no socket, refused, too old).
    DockerUnavailable = "docker_unavailable",
    /// The engine has no image of that name.
    ImageNotFound = "image_not_found",
    /// No container of that name or id belongs to the node.
    ContainerNotFound = "container_not_found",
    /// The engine refused an operation (its message says why).
    DockerError = "docker_error",
    /// The node runs as many containers as it may.
    TooManyContainers = "too_many_containers",
    // Files.
    /// The file system refused an operation.
    FileError = "file_error",
    /// A path outside the files directory.
    ForbiddenPath = "forbidden_path",
    /// A file part at an unexpected offset.
    BadOffset = "bad_offset",
    /// A received file does not match its checksum.
    ChecksumMismatch = "checksum_mismatch",
    /// Too many files are being received at once.
    TooManyTransfers = "too_many_transfers",
    /// A part for a file another link is sending.
    TransferBusy = "transfer_busy",
    // Links and handshakes.
    /// The peer does not know our password.
    AuthFailed = "auth_failed",
    /// The peer belongs to another cluster.
    ClusterMismatch = "cluster_mismatch",
    /// The peer's ring has another size.
    PartitionMismatch = "partition_mismatch",
    /// No protocol version in common.
    UnsupportedVersion = "unsupported_version",
    /// The peer speaks another transport at that port.
    TransportMismatch = "transport_mismatch",
    /// The handshake did not finish in time.
    HandshakeTimeout = "handshake_timeout",
    /// The peer was silent past the idle deadline.
    IdleTimeout = "idle_timeout",
    /// The peer closed the link.
    PeerClosed = "peer_closed",
    /// The transport closed under the link.
    TransportClosed = "transport_closed",
    /// A frame over the size limit.
    FrameTooLarge = "frame_too_large",
    /// A payload over the size limit.
    PayloadTooLarge = "payload_too_large",
    /// A message that does not decode.
    MalformedMessage = "malformed_message",
    /// A message out of place.
    ProtocolError = "protocol_error",
    /// Too many connections are authenticating at once.
    TooManyHandshakes = "too_many_handshakes",
    /// The TLS layer failed.
    TlsError = "tls_error",
    /// The TLS configuration cannot be used.
    TlsConfig = "tls_config",
    /// The WebSocket layer failed.
    WsError = "ws_error",
    // Code loaded over the wire.
    /// A module that does not validate or compile, or does not follow the calling
    /// convention.
    InvalidModule = "invalid_module",
    /// The node has as many loaded modules as it may.
    TooManyModules = "too_many_modules",
    /// A loaded module's call burnt all its fuel (an endless loop ends so).
    OutOfFuel = "out_of_fuel",
    /// A loaded module's call trapped (unreachable, division by zero, out-of-bounds
    /// access, ...); the message says which.
    WasmTrap = "wasm_trap",
    // URLs and metadata.
    /// A URL that is not `nkcluster://`.
    InvalidScheme = "invalid_scheme",
    /// A transport nkcluster does not speak.
    InvalidTransport = "invalid_transport",
    /// A URL list or metadata that does not parse.
    SyntaxError = "syntax_error",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorCode {
    fn from(text: &str) -> Self {
        ErrorCode::parse(text)
    }
}

impl From<String> for ErrorCode {
    fn from(text: String) -> Self {
        ErrorCode::parse(&text)
    }
}

impl From<&String> for ErrorCode {
    fn from(text: &String) -> Self {
        ErrorCode::parse(text)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ErrorCode::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_snake_case_and_round_trips_as_text() {
        let mut seen = std::collections::BTreeSet::new();
        for code in KNOWN {
            let text = code.as_str();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert!(seen.insert(text), "{text} twice");
            assert_eq!(&ErrorCode::parse(text), code);
            let wire = postcard::to_allocvec(code).expect("encode");
            assert_eq!(wire, postcard::to_allocvec(text).expect("encode"));
            assert_eq!(
                postcard::from_bytes::<ErrorCode>(&wire).expect("decode"),
                *code
            );
        }
    }

    #[test]
    fn an_unknown_code_survives_as_other() {
        let code = ErrorCode::parse("quota_exceeded");
        assert_eq!(code, ErrorCode::Other("quota_exceeded".into()));
        assert_eq!(code.to_string(), "quota_exceeded");
        assert_eq!(code, "quota_exceeded");
    }
}
