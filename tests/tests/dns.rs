//! DNS discovery against a real name server: each test starts `dnsmasq` (Debian package
//! `dnsmasq-base`; `.ci/run`, or the first test that needs it, installs it) on a loopback port with NAPTR, SRV and A records
//! for `cluster.test`, and workers that know only names.

use std::process::{Child, Stdio};

use nkcluster_tests::tools::dnsmasq;
use nkcluster_tests::{Daemon, field, free_port, has};

/// Fast liveness so the tests take seconds: pings every 200 ms, dead after 1 s of silence.
const FAST: [&str; 4] = ["--ping-interval-ms", "200", "--idle-timeout-ms", "1000"];

/// One `dnsmasq` process serving `records` (flags) for `cluster.test` on 127.0.0.1:`port`;
/// killed when dropped.
struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    fn start(port: u16, records: &[String]) -> Dnsmasq {
        let child = dnsmasq()
            .args([
                "-k",
                "-C",
                "/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--pid-file",
                "--local=/cluster.test/",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start dnsmasq (Debian package dnsmasq-base; .ci/run installs it): {e}"
                )
            });
        Dnsmasq { child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// NAPTR `cluster.test` -> SRV `_nk._tcp.cluster.test` -> `ctlN.cluster.test` (127.0.0.1)
/// at each of `ports`; plus a NAPTR record of another service, which discovery ignores.
/// The arguments of worker w1 that knows only `nkcluster://cluster.test` and asks the
/// name server at `server` (`IP:PORT`), with fast liveness.
fn discovering_worker(server: &str) -> Vec<&str> {
    let mut args = vec![
        "--node-id",
        "w1",
        "--control",
        "false",
        "--listen",
        "",
        "--cluster-addr",
        "nkcluster://cluster.test",
        "--dns-server",
        server,
    ];
    args.extend(FAST);
    args
}

fn records(ports: &[u16]) -> Vec<String> {
    let mut r = vec![
        "--naptr-record=cluster.test,10,100,S,NK+D2T,,_nk._tcp.cluster.test".to_owned(),
        "--naptr-record=cluster.test,5,100,S,SIP+D2T,,_sip._tcp.cluster.test".to_owned(),
    ];
    for (i, p) in ports.iter().enumerate() {
        let host = format!("ctl{}.cluster.test", i + 1);
        r.push(format!("--srv-host=_nk._tcp.cluster.test,{host},{p},10,50"));
        r.push(format!("--host-record={host},127.0.0.1"));
    }
    r
}

fn link_up_with(l: &str, peers: &[&str]) -> bool {
    l.contains("link up") && peers.iter().any(|p| has(l, "peer", p))
}

fn peer_of(line: &str) -> String {
    field(line, "peer").unwrap_or_default().to_owned()
}

#[test]
fn a_worker_finds_two_control_nodes_through_naptr_then_srv_and_follows_dns_changes() {
    let (c1, p1) = Daemon::control("c1", &FAST);
    let (c2, p2) = Daemon::control("c2", &FAST);
    let dns_port = free_port();
    let mut dns = Dnsmasq::start(dns_port, &records(&[p1, p2]));
    let server = format!("127.0.0.1:{dns_port}");
    let args = discovering_worker(&server);
    let debug = [("NKCLUSTER_LOG", "info,nkcluster::node::tasks=debug")];
    let mut worker = Daemon::node_env("w1", &args, &debug);

    // NAPTR, then SRV, then A: both control nodes are candidates.
    let line = worker.wait_line("the entry resolved", |l| l.contains("entry resolved"));
    for p in [p1, p2] {
        assert!(
            line.contains(&format!("cluster.test:{p}@127.0.0.1:{p}")),
            "{line}"
        );
    }
    // It links to one of the two...
    let line = worker.wait_line("link up with c1 or c2", |l| link_up_with(l, &["c1", "c2"]));
    let first = peer_of(&line);
    let (mut on, other, mut off) = if first == "c1" {
        (c1, "c2", c2)
    } else {
        (c2, "c1", c1)
    };
    // ... and, when that one dies, to the other: both came from the SRV answer.
    let mark = worker.mark();
    on.kill();
    let line = worker.wait_line_after(mark, "link up with the other control", |l| {
        link_up_with(l, &[other])
    });
    assert_eq!(peer_of(&line), other, "{line}");

    // The records change: only c3 now. The worker resolves again at its next round.
    let (_c3, p3) = Daemon::control("c3", &FAST);
    dns.stop();
    let _dns = Dnsmasq::start(dns_port, &records(&[p3]));
    let mark = worker.mark();
    off.kill();
    let line = worker.wait_line_after(mark, "link up with c3", |l| link_up_with(l, &["c3"]));
    assert_eq!(peer_of(&line), "c3", "{line}");
}

#[test]
fn an_entry_that_does_not_resolve_is_logged_and_the_others_are_tried() {
    let (_c1, p1) = Daemon::control("c1", &FAST);
    let dns_port = free_port();
    let _dns = Dnsmasq::start(dns_port, &records(&[p1]));
    let server = format!("127.0.0.1:{dns_port}");
    let mut args = FAST.to_vec();
    args.extend(["--dns-server", &server]);
    // A transport without a port: the SRV record `_nk._tcp.cluster.test`.
    let mut worker = Daemon::worker(
        "w1",
        "nkcluster://missing.cluster.test:1972, nkcluster://cluster.test;transport=tcp",
        &args,
    );
    let line = worker.wait_line("the missing entry's error", |l| {
        l.contains("does not resolve")
    });
    assert_eq!(field(&line, "code"), Some("unresolved"), "{line}");
    assert_eq!(
        field(&line, "entry"),
        Some("missing.cluster.test:1972"),
        "{line}"
    );
    worker.wait_line("link up with c1", |l| link_up_with(l, &["c1"]));
}

#[test]
fn a_control_node_joins_the_cluster_a_name_points_at() {
    let (mut c1, p1) = Daemon::control("c1", &FAST);
    let dns_port = free_port();
    let _dns = Dnsmasq::start(dns_port, &records(&[p1]));
    let server = format!("127.0.0.1:{dns_port}");
    let mut args = vec![
        "--cluster-addr",
        "nkcluster://cluster.test",
        "--dns-server",
        &server,
    ];
    args.extend(FAST);
    let (mut c2, _) = Daemon::control("c2", &args);
    let member_up = |id: &'static str| {
        move |l: &str| l.contains("membership") && has(l, "member", id) && has(l, "change", "up")
    };
    c2.wait_line("c1 up at c2", member_up("c1"));
    c1.wait_line("c2 up at c1", member_up("c2"));
}

/// The node table `port` answers (`nkcluster nodes --json`), as rows.
fn node_rows(port: u16) -> Vec<serde_json::Value> {
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(nkcluster_tests::nkcluster_bin());
    cmd.args(["nodes", "--json", "--addr", &addr]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    let out = nkcluster_tests::run_with_deadline(&mut cmd, std::time::Duration::from_secs(30));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nodes"].as_array().cloned().unwrap_or_default()
}

/// Waits (30 s at most) until every control node at `ports` lists `id` with `status`
/// (`None`: not at all).
fn wait_listed(ports: &[u16], id: &str, status: Option<&str>) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for p in ports {
        loop {
            let row = node_rows(*p).into_iter().find(|r| r["id"] == id);
            let now = row
                .as_ref()
                .map(|r| r["status"].as_str().unwrap_or_default());
            if now == status {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "{id} at {p}: {row:?}, expected {status:?}"
            );
        }
    }
}

/// The "done when" walk: a worker that knows only the name joins, appears in
/// `nodes`; after `kill -9` it is listed `not_connected`; `remove` makes it disappear
/// from every control node's table.
#[test]
fn a_discovered_worker_killed_is_listed_not_connected_until_removed_everywhere() {
    let (_c1, p1) = Daemon::control("c1", &FAST);
    let seed = format!("nkcluster://127.0.0.1:{p1}");
    let mut c2_args = vec!["--cluster-addr", seed.as_str()];
    c2_args.extend(FAST);
    let (_c2, p2) = Daemon::control("c2", &c2_args);
    let dns_port = free_port();
    let _dns = Dnsmasq::start(dns_port, &records(&[p1, p2]));
    let server = format!("127.0.0.1:{dns_port}");
    let args = discovering_worker(&server);
    let mut worker = Daemon::node("w1", &args);
    wait_listed(&[p1, p2], "w1", Some("ready"));
    worker.kill();
    wait_listed(&[p1, p2], "w1", Some("not_connected"));
    let addr = format!("nkcluster://127.0.0.1:{p2}");
    let mut cmd = std::process::Command::new(nkcluster_tests::nkcluster_bin());
    cmd.args(["remove", "w1", "--addr", &addr]);
    let out = nkcluster_tests::run_with_deadline(&mut cmd, std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    wait_listed(&[p1, p2], "w1", None);
}
