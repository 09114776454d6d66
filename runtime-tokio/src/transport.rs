//! The four transports: TCP, TLS, WebSocket and secure WebSocket, dialed and accepted
//! over any [`Net`](crate::net::Net). Each yields a [`LinkIo`] for the driver and the
//! channel-binding value the handshake must include (the TLS exporter; empty without TLS).
//!
//! TLS is TLS 1.3 only (rustls, ring provider by default): its exporter is what binds our
//! handshake's proofs to this very TLS session, so a man in the middle that terminates TLS
//! on both sides cannot complete authentication, even with `tls_verify=false`. Without a
//! configured certificate a self-signed one (Ed25519) is generated at start. Every random
//! byte TLS draws and the time it reads come from a [`TlsCrypto`], so an embedder (the
//! simulator) can seed them. WebSockets carry one
//! binary message per frame, path `/`, subprotocol `nkcluster`, messages capped at the
//! frame maximum.

use std::fmt;
use std::sync::Arc;

use nkcluster_core::url::{ClusterUrl, TlsOptions, Transport};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::linkio::{LinkIo, ReadBudget, StreamIo, WsIo};
use crate::net::Stream;

/// The WebSocket subprotocol.
pub const WS_PROTOCOL: &str = "nkcluster";
/// Exporter label of the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-nkcluster-channel-binding";

/// Why a transport could not be set up.
#[derive(Debug, Error)]
pub enum TransportError {
    /// TLS files or options are wrong.
    #[error("tls_config: {0}")]
    Config(String),
    /// The TLS handshake failed.
    #[error("tls_error: {0}")]
    Tls(String),
    /// The WebSocket upgrade failed.
    #[error("ws_error: {0}")]
    Ws(String),
}

impl TransportError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Config(_) => "tls_config",
            TransportError::Tls(_) => "tls_error",
            TransportError::Ws(_) => "ws_error",
        }
    }
}

/// Where a node's TLS takes its cryptography and its time from.
///
/// The provider does the ciphers, the key exchange and the signatures, and gives every
/// random byte TLS uses that rustls draws through it: hello randoms, session ids, ticket
/// nonces and ids, and the key of a generated self-signed certificate. (Ephemeral
/// key-exchange keys come from its key-exchange groups, which draw on whatever they were
/// built with: ring's own groups read the OS.) The time provider says "now" for
/// certificate validity and session-ticket ages.
#[derive(Debug, Clone)]
pub struct TlsCrypto {
    /// The rustls crypto provider.
    pub provider: Arc<CryptoProvider>,
    /// The clock TLS reads.
    pub time: Arc<dyn TimeProvider>,
}

impl Default for TlsCrypto {
    /// rustls's ring provider (OS randomness) and the system clock.
    fn default() -> Self {
        TlsCrypto {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            time: Arc::new(DefaultTimeProvider),
        }
    }
}

/// The PKCS#8 v1 encoding of an Ed25519 private key, up to its 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A self-signed certificate for `names` whose Ed25519 key is drawn from `provider`'s
/// randomness. (Ed25519 signs deterministically: with a seeded provider the certificate
/// and every handshake signature replay too, which ECDSA under ring would not.)
fn generate_self_signed(
    names: Vec<String>,
    provider: &CryptoProvider,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TransportError> {
    let fail = |e: String| TransportError::Config(format!("generating a certificate: {e}"));
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.resize(ED25519_PKCS8_PREFIX.len() + 32, 0);
    provider
        .secure_random
        .fill(&mut pkcs8[ED25519_PKCS8_PREFIX.len()..])
        .map_err(|e| fail(format!("{e:?}")))?;
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|e| fail(e.to_string()))?;
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| fail(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TransportError::Config(format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(TransportError::Config(format!("{path}: no certificate")));
    }
    Ok(certs)
}

fn read_key(path: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, TransportError> {
    let cfg = |e: String| TransportError::Config(format!("{path}: {e}"));
    let text = std::fs::read_to_string(path).map_err(|e| cfg(e.to_string()))?;
    if text.contains("ENCRYPTED PRIVATE KEY") {
        let password = password.ok_or_else(|| cfg("encrypted key needs tls_password".into()))?;
        let (_, doc) = pkcs8::SecretDocument::from_pem(&text).map_err(|e| cfg(e.to_string()))?;
        let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| cfg(e.to_string()))?;
        let plain = enc
            .decrypt(password)
            .map_err(|_| cfg("cannot decrypt the key (wrong tls_password?)".into()))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| cfg(e.to_string()))
}

/// A server-side TLS setup.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// Whether the certificate was generated at start.
    pub self_signed: bool,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("self_signed", &self.self_signed)
            .finish()
    }
}

impl ServerTls {
    /// The rustls server configuration (for embedding the same setup elsewhere).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

/// Builds the server side: the configured certificate and key, or a generated
/// self-signed certificate for `localhost` and `node_id`; ring and the system clock.
pub fn server_tls(opts: &TlsOptions, node_id: &str) -> Result<ServerTls, TransportError> {
    server_tls_with(opts, node_id, &TlsCrypto::default())
}

/// [`server_tls`] with the given provider and clock.
pub fn server_tls_with(
    opts: &TlsOptions,
    node_id: &str,
    crypto: &TlsCrypto,
) -> Result<ServerTls, TransportError> {
    let (certs, key, self_signed) = match (&opts.certfile, &opts.keyfile) {
        (Some(c), Some(k)) => (
            read_certs(c)?,
            read_key(k, opts.password.as_deref())?,
            false,
        ),
        (Some(c), None) => (
            read_certs(c)?,
            read_key(c, opts.password.as_deref())?,
            false,
        ),
        (None, Some(_)) => {
            return Err(TransportError::Config(
                "tls_keyfile without tls_certfile".into(),
            ));
        }
        (None, None) => {
            let names = vec!["localhost".to_owned(), node_id.to_owned()];
            let (cert, key) = generate_self_signed(names, &crypto.provider)?;
            (vec![cert], key, true)
        }
    };
    let config = ServerConfig::builder_with_details(crypto.provider.clone(), crypto.time.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    Ok(ServerTls {
        config: Arc::new(config),
        self_signed,
    })
}

/// Accepts any certificate, but still checks the handshake signatures. Used with
/// `tls_verify=false`: confidentiality against passive listeners; active attackers are
/// stopped by the channel-bound handshake, not by the certificate.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// WebPKI verification plus a limit on the chain depth (`tls_depth`: how many
/// intermediate certificates may stand between the peer's and the CA).
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<WebPkiServerVerifier>,
    depth: Option<u8>,
}

impl ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(d) = self.depth
            && intermediates.len() > usize::from(d)
        {
            return Err(rustls::Error::General(format!(
                "certificate chain has {} intermediates, tls_depth allows {d}",
                intermediates.len()
            )));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the client side (ring, the system clock). `tls_verify=true` needs
/// `tls_cacertfile`.
pub fn client_tls(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TransportError> {
    client_tls_with(opts, &TlsCrypto::default())
}

/// [`client_tls`] with the given provider and clock.
pub fn client_tls_with(
    opts: &TlsOptions,
    crypto: &TlsCrypto,
) -> Result<Arc<ClientConfig>, TransportError> {
    let p = crypto.provider.clone();
    let builder = ClientConfig::builder_with_details(p.clone(), crypto.time.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if opts.verify == Some(true) {
        let ca = opts.cacertfile.as_deref().ok_or_else(|| {
            TransportError::Config(
                "tls_verify=true needs tls_cacertfile (no CA to verify with)".into(),
            )
        })?;
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| TransportError::Config(format!("{ca}: {e}")))?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p)
            .build()
            .map_err(|e| TransportError::Config(e.to_string()))?;
        Arc::new(DepthLimited {
            inner,
            depth: opts.depth,
        })
    } else {
        Arc::new(AnyCert(p))
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The WebSocket configuration of both ends of a link (the benches measure raw
/// tungstenite with it too); `over_tls`: the WebSocket runs inside TLS (wss).
pub fn ws_config(max_frame: u32, over_tls: bool) -> WebSocketConfig {
    let max = max_frame as usize;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite allocates this eagerly per connection, zero-fills it before reads
        // and keeps it while idle; it also caps each read. Plain ws, 8 KiB: an idle
        // link's memory (issue 15: <= 16 KiB per link end) over bulk reads of 32 KiB
        // (each read is a system call). Over TLS, 1 KiB: rustls keeps a 4 KiB record
        // buffer of its own per link, and tungstenite's reads there are copies out of
        // rustls's decrypted plaintext, not system calls (a bulk frame takes more of
        // them; its system calls stay rustls's 4 KiB reads).
        .read_buffer_size(if over_tls { WSS_READ_BUF } else { WS_READ_BUF })
        .write_buffer_size(0)
}

/// tungstenite's read buffer on a plain WebSocket link (see [`ws_config`]).
const WS_READ_BUF: usize = 8 * 1024;
/// tungstenite's read buffer on a WebSocket inside TLS (see [`ws_config`]).
const WSS_READ_BUF: usize = 1024;

fn export(e: Result<[u8; 32], rustls::Error>) -> Result<Vec<u8>, TransportError> {
    e.map(|b| b.to_vec())
        .map_err(|e| TransportError::Tls(format!("exporter: {e}")))
}

/// A transport set up on a connected stream.
pub struct Ready {
    /// What the driver runs.
    pub io: Box<dyn LinkIo>,
    /// The channel binding (TLS exporter), empty without TLS.
    pub binding: Vec<u8>,
    /// The dialer's opening that left with the transport's handshake, if one did: the
    /// link's connection is made with its nonce and told it left (see
    /// [`nkcluster_core::conn::dialer_opening`]).
    pub opening: Option<Opening>,
}

/// A dialer's first bytes (its hello) and the nonce they carry.
pub struct Opening {
    /// The handshake nonce in the hello.
    pub nonce: [u8; 32],
    /// The framed hello.
    pub bytes: bytes::Bytes,
}

impl Ready {
    /// Plain TCP: the stream itself, with nothing to set up (no handshake, no binding).
    pub fn plain<S: Stream>(stream: S) -> Ready {
        Ready {
            io: Box::new(StreamIo(stream)),
            binding: Vec::new(),
            opening: None,
        }
    }
}

/// What an accepted WebSocket peer may send before it has authenticated: the upgrade
/// request and a hello at the handshake's frame maximum.
const PREAUTH_READ_BUDGET: usize = 64 * 1024 + nkcluster_core::conn::HANDSHAKE_MAX_FRAME as usize;

/// Completes the listener side of `transport` on an accepted stream.
pub async fn accept<S: Stream>(
    stream: S,
    transport: Transport,
    tls: Option<&ServerTls>,
    path: &str,
    max_frame: u32,
) -> Result<Ready, TransportError> {
    match transport {
        Transport::Tcp => Ok(Ready::plain(stream)),
        Transport::Ws => {
            let (stream, budget) = ReadBudget::new(stream, PREAUTH_READ_BUDGET);
            Ok(Ready {
                io: Box::new(WsIo::with_budget(
                    ws_accept(stream, path, max_frame, false).await?,
                    budget,
                )),
                binding: Vec::new(),
                opening: None,
            })
        }
        Transport::Tls | Transport::Wss => {
            let tls = tls.ok_or_else(|| TransportError::Config("no server tls".into()))?;
            // The session tickets leave with our first write (see `tls_tail`).
            let mut s = TlsAcceptor::from(tls.config.clone())
                .accept(crate::tls_tail::TailHeld::new(stream))
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    TransportError::Tls(if text.contains("InvalidContentType") {
                        format!("{text}: the peer does not speak TLS (a plain tcp or ws client on a TLS port)")
                    } else {
                        text
                    })
                })?;
            s.get_mut().0.handshake_done();
            let binding = export(s.get_ref().1.export_keying_material(
                [0u8; 32],
                EXPORTER_LABEL,
                None,
            ))?;
            let io: Box<dyn LinkIo> = if transport == Transport::Tls {
                Box::new(StreamIo(s))
            } else {
                let (s, budget) = ReadBudget::new(s, PREAUTH_READ_BUDGET);
                Box::new(WsIo::with_budget(
                    ws_accept(s, path, max_frame, true).await?,
                    budget,
                ))
            };
            Ok(Ready {
                io,
                binding,
                opening: None,
            })
        }
    }
}

async fn ws_accept<S: Stream>(
    stream: S,
    path: &str,
    max_frame: u32,
    over_tls: bool,
) -> Result<tokio_tungstenite::WebSocketStream<S>, TransportError> {
    let want_path = path.to_owned();
    // The signature is tungstenite's callback type; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let reject = |status: StatusCode, why: &str| {
            let mut r = ErrorResponse::new(Some(why.to_owned()));
            *r.status_mut() = status;
            r
        };
        if req.uri().path() != want_path {
            return Err(reject(
                StatusCode::NOT_FOUND,
                "no nkcluster endpoint at this path",
            ));
        }
        let offered = req
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == WS_PROTOCOL);
        if !offered {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "the nkcluster websocket subprotocol is required",
            ));
        }
        resp.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(WS_PROTOCOL),
        );
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check,
        Some(ws_config(max_frame, over_tls)),
    )
    .await
    .map_err(|e| TransportError::Ws(e.to_string()))
}

/// Completes the dialer side of `url`'s transport on a connected stream. `opening`: the
/// link's first bytes, sent with the TLS handshake's last flight (TLS only, see
/// [`nkcluster_core::conn::opens_with_transport`]); they come back in [`Ready::opening`].
pub async fn dial<S: Stream>(
    stream: S,
    url: &ClusterUrl,
    client: Option<&Arc<ClientConfig>>,
    max_frame: u32,
    opening: Option<Opening>,
) -> Result<Ready, TransportError> {
    let host = url.host.to_string();
    match url.transport {
        Transport::Tcp => Ok(Ready::plain(stream)),
        Transport::Ws => Ok(Ready {
            io: Box::new(WsIo::new(
                ws_dial(stream, "ws", &host, url, max_frame).await?,
            )),
            binding: Vec::new(),
            opening: None,
        }),
        Transport::Tls | Transport::Wss => {
            let client = client.ok_or_else(|| TransportError::Config("no client tls".into()))?;
            let name = ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
            .map_err(|e| TransportError::Config(format!("server name {host}: {e}")))?;
            // Written into the session before its handshake: rustls keeps it until the
            // handshake is done (never as early data) and sends it with our `Finished`.
            let opening = opening.filter(|_| url.transport == Transport::Tls);
            let mut taken = true;
            let s = TlsConnector::from(client.clone())
                .connect_with(name, stream, |c| {
                    if let Some(o) = &opening {
                        use std::io::Write;
                        taken = c.writer().write_all(&o.bytes).is_ok();
                    }
                })
                .await
                .map_err(|e| {
                    TransportError::Tls(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        format!(
                            "{e}: the peer closed during the TLS handshake: is this a TLS port? \
                             a plain port wants ;transport=tcp (or ws)"
                        )
                    } else {
                        e.to_string()
                    })
                })?;
            let binding = export(s.get_ref().1.export_keying_material(
                [0u8; 32],
                EXPORTER_LABEL,
                None,
            ))?;
            if !taken {
                return Err(TransportError::Tls(
                    "the TLS session did not take the link's opening".into(),
                ));
            }
            let io: Box<dyn LinkIo> = if url.transport == Transport::Tls {
                Box::new(StreamIo(s))
            } else {
                Box::new(WsIo::new(ws_dial(s, "wss", &host, url, max_frame).await?))
            };
            Ok(Ready {
                io,
                binding,
                opening,
            })
        }
    }
}

async fn ws_dial<S: Stream>(
    stream: S,
    scheme: &str,
    host: &str,
    url: &ClusterUrl,
    max_frame: u32,
) -> Result<tokio_tungstenite::WebSocketStream<S>, TransportError> {
    let uri = format!("{scheme}://{host}:{}{}", url.port, url.path);
    let req = http::Request::builder()
        .uri(&uri)
        .header(http::header::HOST, format!("{host}:{}", url.port))
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_VERSION, "13")
        .header(http::header::SEC_WEBSOCKET_KEY, generate_key())
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, WS_PROTOCOL)
        .body(())
        .map_err(|e| TransportError::Ws(format!("{uri}: {e}")))?;
    let (ws, resp) = tokio_tungstenite::client_async_with_config(
        req,
        stream,
        Some(ws_config(max_frame, scheme == "wss")),
    )
    .await
    .map_err(|e| {
        use tokio_tungstenite::tungstenite::Error as E;
        TransportError::Ws(match e {
            E::Protocol(_) | E::HttpFormat(_) | E::Io(_) => format!(
                "{e}: no WebSocket upgrade answer: is this a WebSocket port? \
                         a plain port wants ;transport=tcp (or tls)"
            ),
            e => e.to_string(),
        })
    })?;
    let agreed = resp
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if agreed != Some(WS_PROTOCOL) {
        return Err(TransportError::Ws(format!(
            "server did not agree to the {WS_PROTOCOL} subprotocol"
        )));
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::{GetRandomFailed, SecureRandom};

    /// "Randomness" that is one byte repeated.
    #[derive(Debug)]
    struct Repeated(u8);

    impl SecureRandom for Repeated {
        fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
            buf.fill(self.0);
            Ok(())
        }
    }

    static ONES: Repeated = Repeated(1);
    static TWOS: Repeated = Repeated(2);

    fn crypto(random: &'static Repeated) -> TlsCrypto {
        TlsCrypto {
            provider: Arc::new(CryptoProvider {
                secure_random: random,
                ..rustls::crypto::ring::default_provider()
            }),
            ..TlsCrypto::default()
        }
    }

    #[test]
    fn generated_certificate_comes_from_the_providers_randomness() {
        let names = || vec!["localhost".to_owned(), "n1".to_owned()];
        let a = generate_self_signed(names(), &crypto(&ONES).provider).expect("a");
        let again = generate_self_signed(names(), &crypto(&ONES).provider).expect("again");
        let b = generate_self_signed(names(), &crypto(&TWOS).provider).expect("b");
        assert_eq!(a.0, again.0, "same randomness, different certificate");
        assert_eq!(a.1.secret_der(), again.1.secret_der());
        assert_ne!(
            a.0, b.0,
            "the certificate ignores the provider's randomness"
        );
        assert_ne!(a.1.secret_der(), b.1.secret_der());
        // The key's last 32 bytes are the Ed25519 seed, drawn from the provider.
        assert_eq!(a.1.secret_der()[16..], [1u8; 32]);
    }

    #[test]
    fn a_generated_certificate_serves() {
        let tls = server_tls_with(&TlsOptions::default(), "n1", &crypto(&ONES)).expect("server");
        assert!(tls.self_signed);
    }
}
