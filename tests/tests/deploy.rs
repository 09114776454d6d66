//! A cluster deployed as the option table suggests (issue 8), with real processes on
//! loopback: control nodes listening on `all` mesh and survive the loss of their seed,
//! workers are redirected to dialable addresses only, a `partitions` mismatch is refused
//! by both sides, SIGTERM leaves gracefully after handing the workers over, a joining
//! control node gets its workers promptly, and unauthenticated peers are bounded.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use nkcluster_tests::{Daemon, free_port, has, nkcluster_bin, run_with_deadline};
use serde_json::Value;

/// Runs an admin command against `addr`.
fn admin(addr: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args).args(["--addr", addr]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    run_with_deadline(&mut cmd, Duration::from_secs(30))
}

/// The control nodes listed, and each worker's proxies.
type Placement = (Vec<String>, BTreeMap<String, Vec<String>>);

/// The placement as the control node at `addr` lists it; `None` when it did not answer
/// or the table is incomplete.
fn placement(addr: &str) -> Option<Placement> {
    let out = admin(addr, &["nodes", "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let rows = v["nodes"].as_array()?;
    let controls = rows
        .iter()
        .filter(|r| r["role"] == "control")
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    let workers = rows
        .iter()
        .filter(|r| r["role"] == "worker")
        .map(|r| {
            let proxies = nkcluster_tests::string_list(&r["proxies"]);
            (r["id"].as_str().unwrap_or("").to_owned(), proxies)
        })
        .collect();
    Some((controls, workers))
}

/// Where the ring over `controls` places each of `workers`.
fn owners(controls: &[&str], workers: &[&str]) -> BTreeMap<String, Vec<String>> {
    let members: Vec<String> = controls.iter().map(|c| (*c).to_owned()).collect();
    let ring = nkcluster_core::ring::place(nkcluster_core::ring::PARTITIONS_DEFAULT, &members)
        .expect("ring");
    workers
        .iter()
        .map(|w| {
            (
                (*w).to_owned(),
                vec![ring.owner_of(w).unwrap_or("").to_owned()],
            )
        })
        .collect()
}

/// Polls `addr` until it lists exactly `controls` and every worker once, at its owner;
/// returns how long it took. Panics with the last answer after `limit`.
fn wait_converged(addr: &str, controls: &[&str], workers: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    let want = owners(controls, workers);
    let want_controls: Vec<String> = controls.iter().map(|c| (*c).to_owned()).collect();
    let mut last = None;
    while start.elapsed() < limit {
        let got = placement(addr);
        if got
            .as_ref()
            .is_some_and(|(c, w)| *c == want_controls && *w == want)
        {
            return start.elapsed();
        }
        last = got;
    }
    panic!(
        "{addr} did not converge within {limit:?}: want {want_controls:?} {want:?}, last {last:?}"
    );
}

fn member(id: &'static str, change: &'static str) -> impl Fn(&str) -> bool {
    move |l| l.contains("membership") && has(l, "member", id) && has(l, "change", change)
}

fn linked_to(peer: &str) -> impl Fn(&str) -> bool + '_ {
    move |l| l.contains("link up") && has(l, "peer", peer)
}

/// Control node `id` listening on every interface (`all`) with TLS on `port`.
fn control_on_all(id: &str, port: u16, extra: &[&str]) -> Daemon {
    let listen = format!("nkcluster://all:{port};transport=tls");
    let mut args = vec!["--node-id", id, "--listen", listen.as_str()];
    args.extend_from_slice(extra);
    let mut d = Daemon::node(id, &args);
    d.listen_port();
    d
}

#[test]
fn control_nodes_on_all_mesh_serve_workers_and_survive_the_seed() {
    let fast = ["--ping-interval-ms", "300", "--idle-timeout-ms", "1500"];
    let ports = [free_port(), free_port(), free_port()];
    let url = |p: u16| format!("nkcluster://127.0.0.1:{p};transport=tls");
    let seed = url(ports[0]);
    let mut c1 = control_on_all("c1", ports[0], &fast);
    let mut with_seed = vec!["--cluster-addr", seed.as_str()];
    with_seed.extend_from_slice(&fast);
    let mut c2 = control_on_all("c2", ports[1], &with_seed);
    let mut c3 = control_on_all("c3", ports[2], &with_seed);
    // The full mesh: c2 and c3 learned each other only from c1's gossip (where c1 put the
    // address it saw them at) and linked.
    c2.wait_line_after(0, "c2 linked to c3", linked_to("c3"));
    c3.wait_line_after(0, "c3 linked to c2", linked_to("c2"));
    c1.wait_line_after(0, "c1 sees c3", member("c3", "up"));
    // Workers reach the seed first; those owned elsewhere are redirected to a dialable URL.
    let all_controls = ports.map(url).join(", ");
    let names = ["w1", "w2", "w3", "w4"];
    let mut workers: Vec<Daemon> = names
        .iter()
        .map(|w| Daemon::worker(w, &all_controls, &fast))
        .collect();
    wait_converged(&seed, &["c1", "c2", "c3"], &names, Duration::from_secs(30));
    for w in &mut workers {
        for l in w.lines() {
            if l.contains("told to reconnect") {
                assert!(
                    nkcluster_tests::field(l, "to").is_some_and(|to| to.contains("127.0.0.1:")),
                    "a redirect names a dialable URL: {l}"
                );
            }
        }
    }
    // The seed dies: the survivors keep each other and every worker, within 3x the idle
    // timeout.
    c1.kill();
    let took = wait_converged(
        &url(ports[1]),
        &["c2", "c3"],
        &names,
        Duration::from_secs(30),
    );
    assert!(
        took < Duration::from_millis(3 * 1500),
        "re-converged in {took:?}, over 3x the idle timeout"
    );
    wait_converged(
        &url(ports[2]),
        &["c2", "c3"],
        &names,
        Duration::from_secs(5),
    );
    let redirects: usize = workers
        .iter_mut()
        .map(|w| {
            w.lines()
                .iter()
                .filter(|l| l.contains("told to reconnect"))
                .count()
        })
        .sum();
    assert!(
        redirects <= 3 * names.len(),
        "no redirect storm: {redirects} redirects"
    );
}

#[test]
fn control_nodes_with_different_partitions_refuse_to_link() {
    let (mut c1, port) = Daemon::control("c1", &["--partitions", "64"]);
    let seed = format!("nkcluster://127.0.0.1:{port}");
    let mut c2 = Daemon::node(
        "c2",
        &[
            "--node-id",
            "c2",
            "--listen",
            "nkcluster://127.0.0.1:0",
            "--partitions",
            "128",
            "--cluster-addr",
            &seed,
            "--connect-attempts",
            "2",
        ],
    );
    let ours = |l: &str, a: &str, b: &str| {
        l.contains("ERROR")
            && has(l, "code", "partition_mismatch")
            && l.contains(&format!("we have {a} ring partitions, the peer {b}"))
    };
    c2.wait_line("c2 names both values", |l| ours(l, "128", "64"));
    c1.wait_line("c1 names both values", |l| ours(l, "64", "128"));
    let status = c2.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(3),
        "the joining node gives up: {status:?}"
    );
    assert!(
        !c1.lines().iter().any(|l| l.contains("membership")),
        "c1 never took c2 in"
    );
}

#[test]
fn sigterm_hands_the_workers_over_then_leaves() {
    let (mut c1, p1) = Daemon::control("c1", &[]);
    let seed = format!("nkcluster://127.0.0.1:{p1}");
    let (mut c2, p2) = Daemon::control("c2", &["--cluster-addr", &seed]);
    let (mut c3, p3) = Daemon::control("c3", &["--cluster-addr", &seed]);
    c2.wait_line_after(0, "c2 sees c3", member("c3", "up"));
    c3.wait_line_after(0, "c3 sees c2", member("c2", "up"));
    let controls = [p1, p2, p3]
        .map(|p| format!("nkcluster://127.0.0.1:{p}"))
        .join(", ");
    let names = ["w1", "w2", "w3", "w4", "w5", "w6"];
    let _workers: Vec<Daemon> = names
        .iter()
        .map(|w| Daemon::worker(w, &controls, &[]))
        .collect();
    let before = owners(&["c1", "c2", "c3"], &names);
    wait_converged(&seed, &["c1", "c2", "c3"], &names, Duration::from_secs(30));
    // The control node serving the most workers stops the way service managers stop it.
    let count = |c: &str| before.values().filter(|o| o[0] == c).count();
    let (leaver, stays) = if count("c2") >= count("c3") {
        (&mut c2, &mut c3)
    } else {
        (&mut c3, &mut c2)
    };
    let gone = leaver.name().to_owned();
    assert!(
        count(&gone) > 0,
        "the leaving node serves workers: {before:?}"
    );
    leaver.signal("TERM");
    leaver.wait_line("hand-off before closing", |l| {
        l.contains("every worker handed over")
    });
    let status = leaver.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0: {status:?}");
    let left =
        |l: &str| l.contains("membership") && has(l, "member", &gone) && has(l, "change", "left");
    c1.wait_line("c1 records the leave", left);
    stays.wait_line("the other member records the leave", left);
    assert!(
        !leaver
            .lines()
            .iter()
            .any(|l| l.contains("owner does not answer")),
        "owners answered during the hand-off"
    );
    let rest: Vec<&str> = ["c1", "c2", "c3"]
        .into_iter()
        .filter(|c| *c != gone)
        .collect();
    wait_converged(&seed, &rest, &names, Duration::from_secs(30));
}

#[test]
fn a_joining_control_node_gets_its_workers_within_two_pings() {
    let ping = ["--ping-interval-ms", "1000", "--idle-timeout-ms", "5000"];
    let (mut c1, p1) = Daemon::control("c1", &ping);
    let seed = format!("nkcluster://127.0.0.1:{p1}");
    let mut args = vec!["--cluster-addr", seed.as_str()];
    args.extend_from_slice(&ping);
    let (mut c2, _) = Daemon::control("c2", &args);
    c2.wait_line_after(0, "c2 joined", member("c1", "up"));
    c1.wait_line_after(0, "c1 sees c2", member("c2", "up"));
    let names = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"];
    let _workers: Vec<Daemon> = names
        .iter()
        .map(|w| Daemon::worker(w, &seed, &ping))
        .collect();
    wait_converged(&seed, &["c1", "c2"], &names, Duration::from_secs(30));
    let before = owners(&["c1", "c2"], &names);
    let after = owners(&["c1", "c2", "c3"], &names);
    let moved: Vec<&String> = after
        .iter()
        .filter(|(w, o)| before[*w] != **o)
        .map(|(w, _)| w)
        .collect();
    assert!(!moved.is_empty(), "some workers move to c3: {after:?}");
    let (mut c3, _) = Daemon::control("c3", &args);
    let joined = c3.wait_line_after(0, "c3 linked to a member", |l| {
        l.contains("link up") && (has(l, "peer", "c1") || has(l, "peer", "c2"))
    });
    let joined_at = Instant::now();
    let _ = joined;
    for w in &moved {
        c3.wait_line_after(0, "a moved worker reaches c3", linked_to(w));
    }
    let took = joined_at.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "moved workers reached the new owner in {took:?} (ping interval 1 s)"
    );
    wait_converged(&seed, &["c1", "c2", "c3"], &names, Duration::from_secs(30));
}

#[test]
fn a_stop_signal_right_after_start_still_stops_gracefully() {
    // The handlers are installed before the node starts (its key derivation alone takes
    // a while): a SIGTERM as soon as the node says it starts ends it cleanly, exit 0.
    let mut c1 = Daemon::node(
        "c1",
        &["--node-id", "c1", "--listen", "nkcluster://127.0.0.1:0"],
    );
    c1.wait_line("starting", |l| l.contains("starting node"));
    c1.signal("TERM");
    let status = c1.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status:?}");
}
