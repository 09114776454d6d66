//! The dashboard in a real browser (issue 14): headless Chromium (Debian's package, set
//! up by `tools::chromium`) loads dev1's page from a running quick-start cluster, driven
//! over the DevTools protocol; every node id appears, and a status changed with the admin
//! CLI shows up in the open page without a reload. A screenshot is saved under the
//! target directory. Skips, saying why, only when Chromium cannot be had.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nkcluster_tests::tools::{chromium, target_dir};
use nkcluster_tests::{TempDir, nkcluster_bin, quick_start, run_with_deadline};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long the whole scenario may take.
const DEADLINE: Duration = Duration::from_secs(60);
const NODES: [&str; 5] = ["dev1", "dev2", "dev3", "dev4", "dev5"];

/// The browser process, killed with the test.
struct Browser {
    child: Child,
    _profile: TempDir,
    port_file: PathBuf,
}

impl Browser {
    fn start(exe: &Path) -> Browser {
        let profile = TempDir::new("chromium");
        let child = Command::new(exe)
            .args([
                "--headless=new",
                // Root in CI containers: Chromium's sandbox needs user namespaces.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let port_file = profile.path().join("DevToolsActivePort");
        Browser {
            child,
            _profile: profile,
            port_file,
        }
    }

    /// The browser's DevTools WebSocket (Chromium writes its port and path to a file in
    /// its profile once it listens).
    fn devtools_url(&mut self, until: Instant) -> (u16, String) {
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next())
                    && let Ok(port) = port.trim().parse::<u16>()
                {
                    return (port, path.trim().to_owned());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited before listening: {status}");
            }
            assert!(Instant::now() < until, "chromium did not open DevTools");
            std::thread::yield_now();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools protocol client: one page's session over the browser's WebSocket.
struct DevTools {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    session: Option<String>,
}

impl DevTools {
    async fn connect(port: u16, path: &str) -> DevTools {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to DevTools");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tokio_tungstenite::client_async(url, tcp)
            .await
            .expect("DevTools WebSocket handshake");
        DevTools {
            ws,
            next_id: 1,
            session: None,
        }
    }

    /// Calls `method`; returns its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send to DevTools");
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"));
            let Some(Ok(Message::Text(text))) = next else {
                match next {
                    Some(Ok(_)) => continue,
                    other => panic!("DevTools closed during {method}: {other:?}"),
                }
            };
            let v: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab and attaches to it.
    async fn open(&mut self, url: &str) {
        let target = self
            .call("Target.createTarget", json!({ "url": url }))
            .await;
        let id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": id, "flatten": true }),
            )
            .await;
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// The node table as the page shows it: (node id, status) per row.
    async fn rows(&mut self) -> Vec<(String, String)> {
        let v = self
            .eval(
                "JSON.stringify(Array.from(document.querySelectorAll('#nodes tbody tr'))\
                 .map(tr => [tr.dataset.node, tr.querySelector('.status').textContent]))",
            )
            .await;
        serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default()
    }

    /// The live feed's lines as the page shows them, newest first.
    async fn feed(&mut self) -> Vec<String> {
        let v = self
            .eval(
                "JSON.stringify(Array.from(document.querySelectorAll('#feed li'))\
                 .map(li => li.textContent))",
            )
            .await;
        serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_page_lists_every_node_and_shows_a_status_change_live() {
    let exe = match chromium() {
        Ok(p) => p,
        Err(reason) => {
            println!("SKIPPED: no Chromium to drive ({reason}); .ci/run installs it");
            return;
        }
    };
    let started = Instant::now();
    let until = started + DEADLINE;
    let (mut dev, base, http) = quick_start();
    let mut browser = Browser::start(&exe);
    let (port, path) = browser.devtools_url(until);
    let mut page = DevTools::connect(port, &path).await;
    let url = format!("http://127.0.0.1:{http}/");
    page.open(&url).await;

    // Every node id appears (the table comes from /api/cluster).
    loop {
        let rows = page.rows().await;
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        if NODES.iter().all(|n| ids.contains(n)) {
            assert!(
                rows.iter().all(|(_, s)| s == "ready"),
                "every node starts ready: {rows:?}"
            );
            break;
        }
        assert!(Instant::now() < until, "not every node listed: {rows:?}");
    }
    let listed = started.elapsed();
    // A mark on this very document: still there later means no reload happened.
    page.eval("window.nkclusterTestMark = 'same page'").await;

    // The admin CLI changes dev5's status; the open page shows it.
    let admin = format!("nkcluster://127.0.0.1:{base}");
    let out = run_with_deadline(
        Command::new(nkcluster_bin()).args(["set-status", "dev5", "standby", "--addr", &admin]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "set-status: {out:?}");
    let asked = Instant::now();
    loop {
        let rows = page.rows().await;
        let feed = page.feed().await;
        let row_standby = rows.iter().any(|(id, s)| id == "dev5" && s == "standby");
        let feed_says = feed.iter().any(|l| l.contains("dev5 is standby"));
        if row_standby && feed_says {
            break;
        }
        assert!(
            Instant::now() < until,
            "dev5's standby never showed: rows {rows:?}, feed {feed:?}"
        );
    }
    let shown = asked.elapsed();
    assert_eq!(
        page.eval("window.nkclusterTestMark").await,
        json!("same page"),
        "the page was reloaded"
    );

    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = decode_base64(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG image");
    let file = target_dir().join("dashboard.png");
    std::fs::write(&file, &png).expect("write the screenshot");
    println!(
        "dashboard: every node listed {listed:?} after the start; dev5's standby shown {shown:?} \
         after set-status; screenshot {}",
        file.display()
    );
    // The quick start stops in order with the page still following its feed (the live
    // stream ends with the node instead of holding the listener open).
    dev.signal("INT");
    assert!(dev.wait_exit(Duration::from_secs(30)).success());
    drop(page);
    drop(browser);
}

/// Standard base64 (DevTools' screenshots), without a dependency for it.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
