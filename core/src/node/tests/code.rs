//! Code over the wire: who may load, what the shell is handed, versions in `get_info`.

use super::*;
use crate::cluster::Stats;
use crate::modules::LoadRequest;

fn load(name: &str) -> ClusterRequest {
    ClusterRequest::Load(LoadRequest {
        name: name.into(),
        module: bytes::Bytes::from_static(b"\0asm\x01\0\0\0"),
        origin: "admin-9".into(),
    })
}

#[test]
fn admin_and_control_loads_go_to_the_shell_and_a_worker_is_forbidden() {
    let mut w = machine("w1", Role::Worker);
    match w.handle_request(T0, "admin-9", Role::Admin, load("add")) {
        Dispatch::Shell(ShellWork::Load { req, by }) => {
            assert_eq!(req.name, "add");
            assert_eq!(by, "admin-9 (admin, says admin-9)");
        }
        other => panic!("{other:?}"),
    }
    match w.handle_request(T0, "c1", Role::Control, load("add")) {
        Dispatch::Shell(ShellWork::Load { by, .. }) => {
            assert_eq!(by, "c1 (control, says admin-9)")
        }
        other => panic!("{other:?}"),
    }
    drain(&mut w);
    let mut c1 = machine("c1", Role::Control);
    let Dispatch::Answer(Err(e)) = c1.handle_request(T0, "w2", Role::Worker, load("add")) else {
        panic!("a worker's load is answered at once");
    };
    assert_eq!(e.code, "forbidden");
    assert_eq!(
        drain(&mut c1),
        vec![Output::Event(NodeEvent::Refused {
            peer: "w2".into(),
            role: Role::Worker,
            kind: crate::cluster::CLASS_LOAD.to_owned(),
        })]
    );
}

#[test]
fn committed_modules_are_listed_in_the_node_information_with_their_versions() {
    let mut w = machine("w1", Role::Worker);
    assert_eq!(w.check_module("add", 10, false), Ok(()));
    assert_eq!(
        w.check_module("echo", 10, true).map_err(|e| e.code),
        Err(crate::error::ErrorCode::Forbidden)
    );
    let first = w
        .commit_module("add", 10, "aa".into(), "run".into(), "admin-9".into())
        .expect("loads");
    assert_eq!((first.module.version, first.replaced), (1, None));
    let second = w
        .commit_module("add", 12, "bb".into(), "add".into(), "c1".into())
        .expect("replaces");
    assert_eq!((second.module.version, second.replaced), (2, Some(1)));
    let info = w.node_info(Stats::default());
    assert_eq!(info.modules, vec![second.module]);
    assert_eq!(w.modules_config(), crate::modules::ModulesConfig::default());
}
