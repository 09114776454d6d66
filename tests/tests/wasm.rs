//! Code over the wire (`nkcluster load`), for real: a control daemon and a worker daemon
//! on loopback, WebAssembly text modules written here and loaded with the CLI (which
//! compiles them with the `wat` crate), then called with `nkcluster call`: a sum, an
//! endless loop (`out_of_fuel`, the worker keeps answering), a trap (`wasm_trap` with its
//! message), a replacement (new calls see it), invalid modules (`invalid_module`), and
//! the loaded modules listed in the worker's `get_info`. Then a worker that tries to load
//! code into its control node is refused (`forbidden`).

use std::process::{Command, Output};
use std::time::Duration;

use nkcluster::config::NodeConfig;
use nkcluster::node::NodeEvent;
use nkcluster_core::cluster::ClusterRequest;
use nkcluster_core::conn::RequestError;
use nkcluster_core::handshake::Role;
use nkcluster_core::modules::LoadRequest;
use nkcluster_tests::inproc::{config, start, start_linked_worker, wait_event};
use nkcluster_tests::{Daemon, TempDir, has, nkcluster_bin, run_with_deadline};

const DEADLINE: Duration = Duration::from_secs(60);

fn cli(args: &[&str], port: u16) -> Output {
    let mut cmd = Command::new(nkcluster_bin());
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
        cmd.env_remove(k);
    }
    cmd.env("NKCLUSTER_ADDR", format!("nkcluster://127.0.0.1:{port}"));
    run_with_deadline(&mut cmd, DEADLINE)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

/// `call w1 FUNCTION ARGS…`, which must succeed: its output.
fn call_ok(port: u16, args: &[&str]) -> String {
    let mut all = vec!["call", "w1"];
    all.extend_from_slice(args);
    let out = cli(&all, port);
    assert!(out.status.success(), "call {args:?}: {out:?}");
    stdout(&out)
}

/// `call w1 FUNCTION ARGS…`, which must fail: its error text.
fn call_err(port: u16, args: &[&str]) -> String {
    let mut all = vec!["call", "w1"];
    all.extend_from_slice(args);
    let out = cli(&all, port);
    assert_eq!(out.status.code(), Some(1), "call {args:?}: {out:?}");
    stderr(&out)
}

const ADD: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add))"#;

/// The replacement: the sum plus 100, from an export named `run`.
const ADD_V2: &str = r#"(module
  (func $helper (param i32) (result i32) local.get 0 i32.const 100 i32.add)
  (func (export "run") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add
    call $helper))"#;

const SPIN: &str = r#"(module (func (export "run") (loop $l (br $l))))"#;

const DIV: &str = r#"(module
  (func (export "div") (param i64 i64) (result i64)
    local.get 0
    local.get 1
    i64.div_s))"#;

const IMPORTS: &str = r#"(module
  (import "env" "clock" (func $clock (result i64)))
  (func (export "run") (result i64) call $clock))"#;

/// The worker's information (and a `spawn_call`), asked by an admin client of this
/// test's own.
fn modules_of_w1(port: u16) -> Vec<(String, u64, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = NodeConfig::new("admin-wasm-test");
        c.admin = true;
        c.control = false;
        let admin = nkcluster::node::Node::start(c, nkcluster::node::Env::real())
            .await
            .expect("admin client starts");
        admin
            .connect(&format!("nkcluster://127.0.0.1:{port}"))
            .await
            .expect("reaches c1");
        let t = Duration::from_secs(10);
        // spawn_call (the blocking pool) reaches loaded modules too.
        assert_eq!(
            admin.spawn_call("w1", "add", &["2", "3"], t).await,
            Ok("105".to_owned())
        );
        let info = admin.get_info("w1", t).await.expect("w1's information");
        admin.shutdown_and_wait(Duration::from_secs(1)).await;
        info.modules
            .into_iter()
            .map(|m| (m.name, m.version, m.export))
            .collect()
    })
}

#[test]
fn modules_load_run_sandboxed_and_are_replaced_for_new_calls() {
    let dir = TempDir::new("wasm");
    let (_control, port) = Daemon::control("c1", &[]);
    let addr = format!("nkcluster://127.0.0.1:{port}");
    let mut w1 = Daemon::worker("w1", &addr, &[]);
    w1.wait_line("w1 linked", |l| {
        l.contains("link up") && has(l, "peer", "c1")
    });

    // add.wat → call add 2 3 prints 5.
    let add = dir.write("add.wat", ADD);
    let add = add.to_str().expect("utf-8 path");
    let out = cli(&["load", "w1", add, "--name", "add"], port);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!(
            "w1: loaded add version 1 ({} bytes, runs export add)",
            wat_len(ADD)
        )
    );
    let loaded = w1.wait_line("the load, logged with who asked", |l| {
        l.contains("module loaded") && has(l, "module", "add")
    });
    assert!(
        loaded.contains("by=c1 (control, says admin-"),
        "the routing control node and the client's own word: {loaded}"
    );
    assert_eq!(call_ok(port, &["add", "2", "3"]), "5");
    assert!(call_err(port, &["add", "2"]).contains("bad_request"));

    // An endless loop ends with out_of_fuel; the worker keeps serving.
    let spin = dir.write("spin.wat", SPIN);
    let out = cli(
        &[
            "load",
            "w1",
            spin.to_str().expect("utf-8"),
            "--name",
            "spin",
        ],
        port,
    );
    assert!(out.status.success(), "{out:?}");
    let started = std::time::Instant::now();
    let err = call_err(port, &["spin"]);
    assert!(err.contains("out_of_fuel"), "{err}");
    let spin_time = started.elapsed();
    let started = std::time::Instant::now();
    assert_eq!(call_ok(port, &["add", "20", "22"]), "42");
    eprintln!(
        "an endless loop ran out of fuel: the call took {spin_time:?} end to end, a call \
         of add {:?}",
        started.elapsed()
    );
    assert_eq!(call_ok(port, &["node"]), "w1");

    // A trap: wasm_trap with its message.
    let div = dir.write("div.wat", DIV);
    let out = cli(
        &["load", "w1", div.to_str().expect("utf-8"), "--name", "div"],
        port,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(call_ok(port, &["div", "-9", "3"]), "-3");
    let err = call_err(port, &["div", "1", "0"]);
    assert!(
        err.contains("wasm_trap") && err.contains("divi"),
        "the trap's message: {err}"
    );
    assert_eq!(call_ok(port, &["add", "1", "1"]), "2");

    // A replacement under the same name: new calls get the new behaviour.
    let v2 = dir.write("add2.wat", ADD_V2);
    let out = cli(
        &["load", "w1", v2.to_str().expect("utf-8"), "--name", "add"],
        port,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("add version 2") && stdout(&out).contains("replacing version 1"),
        "{out:?}"
    );
    assert_eq!(call_ok(port, &["add", "2", "3"]), "105");

    // Invalid modules: typed errors, nothing registered.
    let garbage = dir.write("bad.wasm", "\0asm\u{1}\0\0\0garbage");
    let out = cli(
        &[
            "load",
            "w1",
            garbage.to_str().expect("utf-8"),
            "--name",
            "bad",
        ],
        port,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("invalid_module"), "{out:?}");
    let imports = dir.write("imports.wat", IMPORTS);
    let out = cli(
        &[
            "load",
            "w1",
            imports.to_str().expect("utf-8"),
            "--name",
            "bad",
        ],
        port,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("invalid_module") && stderr(&out).contains("env.clock"),
        "{out:?}"
    );
    w1.wait_line("the refusal, logged", |l| {
        l.contains("module refused") && has(l, "module", "bad")
    });
    assert!(call_err(port, &["bad"]).contains("unknown_function"));
    // A name of a function registered in code cannot be taken.
    let out = cli(&["load", "w1", add, "--name", "echo"], port);
    assert!(stderr(&out).contains("forbidden"), "{out:?}");
    assert_eq!(call_ok(port, &["echo", "a", "b"]), "a b");
    // Text that does not parse is the client's own problem (exit 2).
    let broken = dir.write("broken.wat", "(module (func");
    let out = cli(
        &["load", "w1", broken.to_str().expect("utf-8"), "--name", "x"],
        port,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // get_info lists what is loaded.
    assert_eq!(
        modules_of_w1(port),
        vec![
            ("add".to_owned(), 2, "run".to_owned()),
            ("div".to_owned(), 1, "div".to_owned()),
            ("spin".to_owned(), 1, "run".to_owned()),
        ]
    );
    assert!(w1.is_running());
}

/// The size of a text module compiled.
fn wat_len(text: &str) -> usize {
    let dir = TempDir::new("wat-len");
    let p = dir.write("m.wat", text);
    nkcluster::cli::load::module_bytes(&p)
        .expect("compiles")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_may_not_load_code_into_its_control_node() {
    let mut c = config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp");
    c.password = "control-secret".into();
    c.worker_password = Some("worker-secret".into());
    let control = start(c).await;
    let mut w = config("w1", false, "");
    w.password = "worker-secret".into();
    let mut heard = control.subscribe();
    let worker = start_linked_worker(&control, w).await;
    let module =
        nkcluster::cli::load::module_bytes(&TempDir::new("wasm-refused").write("add.wat", ADD))
            .expect("compiles");
    let (class, body) = ClusterRequest::Load(LoadRequest {
        name: "add".into(),
        module: module.into(),
        origin: "w1".into(),
    })
    .encode()
    .expect("encodes");
    let t = Duration::from_secs(5);
    match worker.request("c1", class, body, t).await {
        Err(RequestError::Remote(e)) => assert_eq!(e.code, "forbidden", "{e:?}"),
        other => panic!("a worker's load: {other:?}"),
    }
    wait_event(&mut heard, "the refusal, logged", |e| {
        matches!(e, NodeEvent::Refused { peer, role: Role::Worker, kind } if peer == "w1" && *kind == class)
    })
    .await;
    // Nothing was registered at c1.
    match control.call("c1", "add", &["2", "3"], t).await {
        Err(RequestError::Remote(e)) => assert_eq!(e.code, "unknown_function", "{e:?}"),
        other => panic!("add at c1: {other:?}"),
    }
}
