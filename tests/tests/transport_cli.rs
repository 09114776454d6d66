//! The transports of the `nkcluster` binary against real foreign peers: the `openssl`
//! command line (`s_client` sees the generated certificate, a configured one, and one
//! whose key is encrypted) and a Python WebSocket client (the `websockets` package:
//! subprotocol negotiation, refused upgrades, clean closes on non-protocol data).
//!
//! These tools are required, not optional: CI installs them (`.ci/run`). A missing one
//! fails the test with a message saying what to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nkcluster_tests::{DEADLINE, Daemon, TempDir, field, free_port, has, run_with_deadline};

/// Exit code of a configuration error.
const CONFIG_ERROR: i32 = 2;
/// Exit code of a node that gave up connecting.
const GAVE_UP: i32 = 3;
/// Deadline of one run of an external tool.
const TOOL: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Helpers.

/// `(transport, port)` of every listener the daemon reports, waiting for `n` of them.
/// `None` when it could not bind (the log says why).
fn listeners(d: &mut Daemon, n: usize) -> Option<Vec<(String, u16)>> {
    let mut found = Vec::new();
    let mut from = 0;
    while found.len() < n {
        let i = d.try_wait_line_from(
            from,
            |l| {
                (l.contains(" listening ") && field(l, "addr").is_some())
                    || l.contains("cannot listen")
            },
            DEADLINE,
        );
        let Some(i) = i else {
            let log = d.log_text();
            panic!("{}: no listening lines; log:\n{log}", d.name());
        };
        let line = d.lines()[i].clone();
        if line.contains("cannot listen") {
            return None;
        }
        let addr = field(&line, "addr").unwrap_or_default();
        let (t, rest) = addr.split_once(':').unwrap_or_default();
        let port = rest
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        found.push((t.to_owned(), port));
        from = i + 1;
    }
    Some(found)
}

/// `nkcluster node --node-id ID --listen LISTEN EXTRA...` where LISTEN is built from
/// fresh free ports (by `make`); retried when another process took a port in between.
fn node_on_free_ports(
    id: &str,
    n: usize,
    make: impl Fn(&[u16]) -> String,
    extra: &[&str],
) -> (Daemon, Vec<(String, u16)>) {
    for _ in 0..3 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let listen = make(&ports);
        let mut args = vec!["--node-id", id, "--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let mut d = Daemon::node(id, &args);
        if let Some(l) = listeners(&mut d, n) {
            let got: Vec<u16> = l.iter().map(|(_, p)| *p).collect();
            assert_eq!(got, ports, "{l:?}");
            return (d, l);
        }
        let log = d.log_text();
        assert!(log.contains("in use"), "{id} cannot listen:\n{log}");
    }
    panic!("{id}: three rounds of free ports were all taken");
}

/// A node with one listener on port 0 (`listen` without the port), plus `extra`.
fn node_on(id: &str, listen: &str, extra: &[&str]) -> (Daemon, u16) {
    let mut args = vec!["--node-id", id, "--listen", listen];
    args.extend_from_slice(extra);
    let mut d = Daemon::node(id, &args);
    let l = listeners(&mut d, 1).unwrap_or_else(|| panic!("{id} cannot listen"));
    (d, l[0].1)
}

fn openssl() -> Command {
    nkcluster_tests::tools::openssl()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `openssl ARGS` and returns stdout; panics with stderr when it fails.
fn openssl_ok(args: &[&str]) -> String {
    let out = run_with_deadline(openssl().args(args), TOOL);
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// What `openssl s_client` saw on 127.0.0.1:`port`.
struct Served {
    /// The whole output.
    transcript: String,
    /// The server's certificate, PEM.
    cert_pem: String,
}

fn s_client(port: u16) -> Served {
    let connect = format!("127.0.0.1:{port}");
    let out = run_with_deadline(
        openssl().args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "localhost",
            "-showcerts",
        ]),
        TOOL,
    );
    let transcript = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "s_client to {connect} failed ({}):\n{transcript}",
        out.status
    );
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let cert_pem = transcript
        .find(begin)
        .and_then(|b| {
            transcript[b..]
                .find(end)
                .map(|e| &transcript[b..b + e + end.len()])
        })
        .map(|p| format!("{p}\n"))
        .unwrap_or_else(|| panic!("no certificate in the s_client output:\n{transcript}"));
    Served {
        transcript,
        cert_pem,
    }
}

impl Served {
    fn assert_tls13(&self) {
        assert!(
            self.transcript.contains("New, TLSv1.3,"),
            "not a TLS 1.3 session:\n{}",
            self.transcript
        );
    }

    /// `openssl x509 -noout OPTS` on the served certificate.
    fn x509(&self, dir: &TempDir, opts: &[&str]) -> String {
        let p = dir.write("served.pem", &self.cert_pem);
        let p = p.display().to_string();
        let mut args = vec!["x509", "-in", p.as_str(), "-noout"];
        args.extend_from_slice(opts);
        openssl_ok(&args)
    }
}

fn fingerprint(path: &Path) -> String {
    let p = path.display().to_string();
    openssl_ok(&["x509", "-in", &p, "-noout", "-fingerprint", "-sha256"])
}

/// A self-signed P-256 certificate and its unencrypted PKCS#8 key, by `openssl req`.
fn openssl_cert(dir: &TempDir, stem: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.path().join(format!("{stem}.pem"));
    let key = dir.path().join(format!("{stem}.key"));
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let subj = format!("/CN={cn}");
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &k,
        "-out",
        &c,
        "-days",
        "2",
        "-subj",
        &subj,
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    (cert, key)
}

const WS_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws_client.py");

/// What the Python client printed: its `open` line (if it got that far) and its final
/// line.
#[derive(Debug)]
struct WsRun {
    open: Option<String>,
    last: String,
    all: String,
}

/// The raw JSON value of `key` in a one-line object printed by `ws_client.py` (numbers,
/// `null`, strings without quotes).
fn json(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\": ");
    let at = line.find(&pat)? + pat.len();
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next().map(str::to_owned);
    }
    rest.split([',', '}']).next().map(|v| v.trim().to_owned())
}

fn ws_client(url: &str, mode: &[&str]) -> WsRun {
    let python = nkcluster_tests::tools::python_with_websockets();
    let out = run_with_deadline(
        Command::new(&python).arg(WS_CLIENT).arg(url).args(mode),
        TOOL,
    );
    let stdout = text(&out.stdout);
    let all = format!("{stdout}{}", text(&out.stderr));
    assert!(
        out.status.success(),
        "ws_client.py {url} {mode:?} failed ({}):\n{all}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    WsRun {
        open: lines
            .iter()
            .find(|l| json(l, "event").as_deref() == Some("open"))
            .map(|l| (*l).to_owned()),
        last: lines.last().map(|l| (*l).to_owned()).unwrap_or_default(),
        all,
    }
}

impl WsRun {
    /// The negotiated subprotocol and the client's local port.
    fn opened(&self) -> (String, u16) {
        let open = self
            .open
            .as_deref()
            .unwrap_or_else(|| panic!("the WebSocket did not open:\n{}", self.all));
        let proto = json(open, "subprotocol").unwrap_or_default();
        let port = json(open, "local_port")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no local port in {open}"));
        (proto, port)
    }

    /// The close frame the server sent: `(code, reason)`, `None` for no close frame.
    fn close(&self) -> Option<(u16, String)> {
        assert_eq!(
            json(&self.last, "event").as_deref(),
            Some("closed"),
            "the server did not close the connection:\n{}",
            self.all
        );
        let code = json(&self.last, "code")?.parse().ok()?;
        Some((code, json(&self.last, "reason").unwrap_or_default()))
    }

    fn rejected(&self) -> u16 {
        assert_eq!(
            json(&self.last, "event").as_deref(),
            Some("rejected"),
            "the upgrade was not refused:\n{}",
            self.all
        );
        json(&self.last, "status")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {}", self.last))
    }
}

/// Waits for the daemon's refusal of the connection from 127.0.0.1:`local` over
/// `transport`, and returns its code.
fn refusal_code(d: &mut Daemon, transport: &str, local: u16) -> String {
    let remote = format!("{transport}:127.0.0.1:{local}");
    let line = d.wait_line_after(0, &format!("the refusal of {remote}"), |l| {
        l.contains("connection refused") && has(l, "remote", &remote)
    });
    field(&line, "code").unwrap_or_default().to_owned()
}

fn link_up(peer: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("link up") && has(l, "peer", peer)
}

// ---------------------------------------------------------------------------------------
// openssl.

/// The "done when": `--listen "…:P;transport=tls, …:Q;transport=ws"` serves a
/// certificate (the generated one) to `openssl s_client` on P and upgrades a WebSocket
/// request with subprotocol `nkcluster` on Q. A worker whose `cluster_addr` list starts
/// with a dead entry then links over the ws listener.
#[test]
fn listener_set_serves_tls_to_openssl_and_websocket_to_python() {
    let (mut control, l) = node_on_free_ports(
        "c1",
        2,
        |p| {
            format!(
                "nkcluster://127.0.0.1:{};transport=tls, nkcluster://127.0.0.1:{};transport=ws",
                p[0], p[1]
            )
        },
        &[],
    );
    assert_eq!(l[0].0, "tls");
    assert_eq!(l[1].0, "ws");
    let (p, q) = (l[0].1, l[1].1);

    let served = s_client(p);
    served.assert_tls13();
    let dir = TempDir::new("s-client");
    let subject = served.x509(&dir, &["-subject"]);
    assert!(subject.contains("rcgen self signed cert"), "{subject}");
    // The generated certificate names localhost and the node id.
    let san = served.x509(&dir, &["-ext", "subjectAltName"]);
    assert!(
        san.contains("DNS:localhost") && san.contains("DNS:c1"),
        "{san}"
    );

    let ws = ws_client(&format!("ws://127.0.0.1:{q}/"), &["binary", "100"]);
    let (proto, _) = ws.opened();
    assert_eq!(proto, "nkcluster", "{}", ws.all);

    let dead = free_port();
    let list = format!(
        "nkcluster://127.0.0.1:{dead};transport=tls, nkcluster://127.0.0.1:{q};transport=ws"
    );
    let mut worker = Daemon::worker("w1", &list, &["--connect-attempts", "1"]);
    let up = worker.wait_line("w1: link up with c1", link_up("c1"));
    assert!(has(&up, "remote", &format!("ws:127.0.0.1:{q}")), "{up}");
    let up = control.wait_line("c1: link up with w1", link_up("w1"));
    assert!(
        field(&up, "remote").is_some_and(|r| r.starts_with("ws:127.0.0.1:")),
        "{up}"
    );
    assert!(control.is_running() && worker.is_running());
}

/// A certificate configured by the node options serves the tls listener, and one given
/// as URL parameters serves the wss listener of the same node.
#[test]
fn openssl_sees_the_configured_certificates() {
    let dir = TempDir::new("certs");
    let (cert_a, key_a) = openssl_cert(&dir, "a", "nkcluster-test");
    let (cert_b, key_b) = openssl_cert(&dir, "b", "nkcluster-url-param");
    let listen = format!(
        "nkcluster://127.0.0.1:0;transport=tls, \
         nkcluster://127.0.0.1:0;transport=wss;tls_certfile={};tls_keyfile={}",
        cert_b.display(),
        key_b.display()
    );
    let (ca, ka) = (cert_a.display().to_string(), key_a.display().to_string());
    let mut d = Daemon::node(
        "c1",
        &[
            "--node-id",
            "c1",
            "--listen",
            &listen,
            "--tls-certfile",
            &ca,
            "--tls-keyfile",
            &ka,
        ],
    );
    let l = listeners(&mut d, 2).expect("listening");
    assert_eq!((l[0].0.as_str(), l[1].0.as_str()), ("tls", "wss"));

    let tls = s_client(l[0].1);
    tls.assert_tls13();
    assert!(
        tls.transcript.contains("subject=CN = nkcluster-test"),
        "{}",
        tls.transcript
    );
    let served = tls.x509(&dir, &["-fingerprint", "-sha256"]);
    assert_eq!(served, fingerprint(&cert_a));

    let wss = s_client(l[1].1);
    wss.assert_tls13();
    let served = wss.x509(&dir, &["-fingerprint", "-sha256"]);
    assert_eq!(served, fingerprint(&cert_b));
    assert!(
        wss.transcript.contains("subject=CN = nkcluster-url-param"),
        "{}",
        wss.transcript
    );
    assert!(d.is_running());
}

/// An encrypted PKCS#8 key (`openssl genpkey -aes-256-cbc`) works with the right
/// `--tls-password`; a wrong or missing password is a configuration error (exit 2) that
/// says what is wrong.
#[test]
fn an_encrypted_key_needs_its_password() {
    let dir = TempDir::new("enc");
    let key = dir.path().join("enc.key");
    let cert = dir.path().join("enc.pem");
    let (k, c) = (key.display().to_string(), cert.display().to_string());
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes-256-cbc",
        "-pass",
        "pass:secret",
        "-out",
        &k,
    ]);
    let pem = std::fs::read_to_string(&key).expect("read the key");
    assert!(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{pem}");
    openssl_ok(&[
        "req",
        "-x509",
        "-key",
        &k,
        "-passin",
        "pass:secret",
        "-out",
        &c,
        "-days",
        "2",
        "-subj",
        "/CN=nkcluster-encrypted",
    ]);
    let listen = "nkcluster://127.0.0.1:0;transport=tls";
    let flags = |pw: Option<&'static str>| {
        let mut v = vec![
            "--tls-certfile".to_owned(),
            c.clone(),
            "--tls-keyfile".to_owned(),
            k.clone(),
        ];
        if let Some(pw) = pw {
            v.extend(["--tls-password".to_owned(), pw.to_owned()]);
        }
        v
    };

    let good = flags(Some("secret"));
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let (mut d, port) = node_on("c1", listen, &good);
    let served = s_client(port);
    served.assert_tls13();
    assert!(
        served
            .transcript
            .contains("subject=CN = nkcluster-encrypted"),
        "{}",
        served.transcript
    );
    assert!(d.is_running());
    drop(d);

    for (pw, says) in [
        (Some("wrong"), "cannot decrypt"),
        (None, "needs tls_password"),
    ] {
        let f = flags(pw);
        let mut args = vec!["--node-id", "c1", "--listen", listen];
        args.extend(f.iter().map(String::as_str));
        let mut d = Daemon::node("c1-bad-password", &args);
        let status = d.wait_exit(DEADLINE);
        let log = d.log_text();
        assert_eq!(status.code(), Some(CONFIG_ERROR), "{pw:?}: {status}\n{log}");
        assert!(
            log.contains(says) && log.contains(&k) && log.contains("tls_config"),
            "{pw:?}: the error must name the key file and say {says:?}:\n{log}"
        );
        assert!(!log.contains("secret"), "the log shows a password:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------
// tls_verify on the command line.

#[test]
fn tls_verify_without_a_ca_makes_a_worker_give_up_with_tls_config() {
    let (mut control, port) = node_on("c1", "nkcluster://127.0.0.1:0;transport=tls", &[]);
    let addr = format!("nkcluster://127.0.0.1:{port};transport=tls");
    let mut w = Daemon::worker(
        "w1",
        &addr,
        &["--tls-verify", "true", "--connect-attempts", "1"],
    );
    let status = w.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(GAVE_UP), "{status}\n{}", w.log_text());
    let line = w.wait_line("the giving-up line", |l| l.contains("giving up"));
    assert_eq!(field(&line, "code"), Some("tls_config"), "{line}");
    // `tls_verify=hi` in the URL is a syntax error at start.
    let mut w = Daemon::worker("w2", &format!("{addr};tls_verify=hi"), &[]);
    let status = w.wait_exit(DEADLINE);
    let log = w.log_text();
    assert_eq!(status.code(), Some(CONFIG_ERROR), "{status}\n{log}");
    assert!(
        log.contains("invalid cluster_addr: syntax_error: tls_verify"),
        "{log}"
    );
    assert!(control.is_running());
    assert!(
        !control.lines().iter().any(|l| l.contains("link up")),
        "{}",
        control.log_text()
    );
}

// ---------------------------------------------------------------------------------------
// A real WebSocket client.

/// Negotiates `nkcluster`, is refused without the subprotocol (400) or on another path
/// (404), and non-protocol binary data gets a close frame (1002, `malformed_message`);
/// a message exactly at the frame maximum is read (and refused as malformed), one byte
/// more is refused without being decoded. The daemon logs each refusal and keeps
/// serving.
#[test]
fn websocket_client_negotiates_nkcluster_and_is_closed_on_non_protocol_data() {
    let max = 65_536u32;
    let max_s = max.to_string();
    let (mut control, q) = node_on(
        "c1",
        "nkcluster://127.0.0.1:0;transport=ws",
        &["--max-frame", &max_s],
    );
    let url = format!("ws://127.0.0.1:{q}/");

    let run = ws_client(&url, &["binary", "1000"]);
    let (proto, local) = run.opened();
    assert_eq!(proto, "nkcluster");
    assert_eq!(
        run.close(),
        Some((1002, "malformed_message".to_owned())),
        "{}",
        run.all
    );
    assert_eq!(json(&run.last, "binary_messages").as_deref(), Some("0"));
    assert_eq!(refusal_code(&mut control, "ws", local), "malformed_message");

    // At the maximum: read whole, then refused as malformed.
    let run = ws_client(&url, &["binary", &max_s]);
    let (_, local) = run.opened();
    assert_eq!(run.close().map(|c| c.0), Some(1002), "{}", run.all);
    assert_eq!(refusal_code(&mut control, "ws", local), "malformed_message");
    // Over it: refused before decoding (see the ignored test for the close code).
    let run = ws_client(&url, &["binary", &(max + 1).to_string()]);
    let (_, local) = run.opened();
    let _ = run.close();
    assert_ne!(refusal_code(&mut control, "ws", local), "malformed_message");

    let run = ws_client(&url, &["no-subprotocol"]);
    assert_eq!(run.rejected(), 400, "{}", run.all);
    let run = ws_client(&format!("ws://127.0.0.1:{q}/x"), &["text"]);
    assert_eq!(run.rejected(), 404, "{}", run.all);
    let refusals = control.wait_count(0, 2, "two ws_error refusals", |l| {
        l.contains("connection refused") && has(l, "code", "ws_error")
    });
    assert_eq!(refusals.len(), 2);

    let mut worker = Daemon::worker(
        "w1",
        &format!("nkcluster://127.0.0.1:{q};transport=ws"),
        &["--max-frame", &max_s],
    );
    worker.wait_line("w1: link up with c1", link_up("c1"));
    control.wait_line("c1: link up with w1", link_up("w1"));
}

/// A text message must get a close frame 1003 (unsupported data), as `WsIo` documents.
#[test]
fn websocket_text_message_gets_close_1003() {
    let (mut control, q) = node_on("c1", "nkcluster://127.0.0.1:0;transport=ws", &[]);
    let run = ws_client(&format!("ws://127.0.0.1:{q}/"), &["text"]);
    let (proto, local) = run.opened();
    assert_eq!(proto, "nkcluster");
    refusal_code(&mut control, "ws", local);
    assert_eq!(run.close().map(|c| c.0), Some(1003), "{}", run.all);
}

/// A message over the frame maximum must get a close frame 1009 (message too big), as
/// `WsIo` documents, and be logged `frame_too_large` as the same excess is over TCP.
#[test]
fn websocket_oversized_message_gets_close_1009() {
    let (mut control, q) = node_on(
        "c1",
        "nkcluster://127.0.0.1:0;transport=ws",
        &["--max-frame", "65536"],
    );
    let run = ws_client(&format!("ws://127.0.0.1:{q}/"), &["binary", "65537"]);
    let (_, local) = run.opened();
    let code = refusal_code(&mut control, "ws", local);
    assert_eq!(run.close().map(|c| c.0), Some(1009), "{}", run.all);
    assert_eq!(code, "frame_too_large");
}
