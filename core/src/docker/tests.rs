use super::*;

#[test]
fn ports_parse_with_their_protocol() {
    assert_eq!(
        PortMap::parse("8080:80").expect("ok"),
        PortMap {
            host: 8080,
            container: 80,
            udp: false
        }
    );
    let p = PortMap::parse("5353:53/udp").expect("ok");
    assert_eq!(p.container_key(), "53/udp");
    assert_eq!(
        PortMap::parse("1:2/tcp").expect("ok").container_key(),
        "2/tcp"
    );
    for bad in ["80", "0:80", "80:0", "a:80", "80:80/sctp", "70000:80", ""] {
        let e = PortMap::parse(bad).expect_err(bad);
        assert_eq!(e.code.as_str(), "bad_request", "{bad}");
    }
}

#[test]
fn volumes_parse_absolute_paths_and_a_mode() {
    let v = Volume::parse("/srv/data:/data:ro").expect("ok");
    assert_eq!(v.bind(), "/srv/data:/data:ro");
    assert_eq!(Volume::parse("/a:/b").expect("ok").bind(), "/a:/b");
    assert_eq!(Volume::parse("/a:/b:rw").expect("ok").bind(), "/a:/b");
    for bad in [
        "a:/b",
        "/a:b",
        "/a",
        "/a:/b:xx",
        "/a:/b:ro:x",
        "named:/data",
    ] {
        let e = Volume::parse(bad).expect_err(bad);
        assert_eq!(e.code.as_str(), "bad_request", "{bad}");
    }
}

#[test]
fn a_spec_is_validated() {
    let ok = RunSpec {
        command: vec!["/app".into(), "--x".into()],
        env: vec![("A".into(), "1=2".into())],
        ports: vec![PortMap::parse("8080:80").expect("ok")],
        volumes: vec![Volume::parse("/tmp:/data").expect("ok")],
        ..RunSpec::new("nk-test:1")
    };
    ok.validate().expect("valid");
    assert_eq!(ok.env_list(), vec!["A=1=2".to_owned()]);
    let cases: Vec<(RunSpec, &str)> = vec![
        (RunSpec::new(""), "invalid image name \"\""),
        (RunSpec::new("a b"), "invalid image name \"a b\""),
        (
            RunSpec {
                command: vec!["a\0".into()],
                ..RunSpec::new("x")
            },
            "a NUL byte in the command",
        ),
        (
            RunSpec {
                env: vec![("A=B".into(), "1".into())],
                ..RunSpec::new("x")
            },
            "invalid variable name \"A=B\"",
        ),
        (
            RunSpec {
                ports: vec![
                    PortMap::parse("8080:80").expect("ok"),
                    PortMap::parse("8080:81").expect("ok"),
                ],
                ..RunSpec::new("x")
            },
            "host port 8080 published twice",
        ),
        (
            RunSpec {
                volumes: vec![Volume {
                    host: "rel".into(),
                    container: "/d".into(),
                    read_only: false,
                }],
                ..RunSpec::new("x")
            },
            "volume path \"rel\": absolute, without ':'",
        ),
    ];
    for (spec, msg) in cases {
        let e = spec.validate().expect_err(msg);
        assert_eq!(e.code.as_str(), "bad_request");
        assert_eq!(e.message, msg);
    }
    // Same host port, other protocols: fine.
    RunSpec {
        ports: vec![
            PortMap::parse("53:53").expect("ok"),
            PortMap::parse("53:53/udp").expect("ok"),
        ],
        ..RunSpec::new("x")
    }
    .validate()
    .expect("tcp and udp");
}

#[test]
fn grace_defaults_caps_and_rounds_up_to_seconds() {
    assert_eq!(grace(None), Duration::from_secs(10));
    assert_eq!(grace(Some(1500)), Duration::from_millis(1500));
    assert_eq!(grace(Some(u64::MAX)), MAX_GRACE);
    assert_eq!(grace_secs(Duration::from_millis(1500)), 2);
    assert_eq!(grace_secs(Duration::from_millis(1000)), 1);
    assert_eq!(grace_secs(Duration::ZERO), 0);
    assert_eq!(RunSpec::new("x").grace(), DEFAULT_GRACE);
}

#[test]
fn names_labels_and_targets() {
    assert_eq!(container_name("dev4", 7), "nkcluster-dev4-7");
    assert_eq!(container_name("a b/c:d", 1), "nkcluster-a_b_c_d-1");
    assert_eq!(
        labels("dev4", 7),
        vec![
            ("nkcluster.node".to_owned(), "dev4".to_owned()),
            ("nkcluster.task".to_owned(), "7".to_owned())
        ]
    );
    assert_eq!(resolve_target("dev4", "7").expect("ok"), "nkcluster-dev4-7");
    assert_eq!(resolve_target("dev4", "web").expect("ok"), "web");
    assert_eq!(resolve_target("dev4", "+7").expect("ok"), "+7");
    assert_eq!(
        resolve_target("dev4", "0123abcdef").expect("ok"),
        "0123abcdef"
    );
    for bad in ["", "a/b", "a b", "x?y"] {
        assert_eq!(
            resolve_target("n", bad).expect_err(bad).code.as_str(),
            "bad_request"
        );
    }
    let l = [("nkcluster.node", "dev4"), ("nkcluster.task", "7")];
    assert!(owned("dev4", l.iter().copied()));
    assert!(!owned("dev5", l.iter().copied()));
    assert!(!owned("dev4", [("other", "dev4")].iter().copied()));
    assert_eq!(task_of(l.iter().copied()), Some(7));
    assert_eq!(task_of([("nkcluster.task", "x")].iter().copied()), None);
}

#[test]
fn engine_failures_have_their_codes() {
    assert_eq!(
        classify(None, "connection refused").as_str(),
        "docker_unavailable"
    );
    assert_eq!(
        classify(Some(404), "No such image: nk:1").as_str(),
        "image_not_found"
    );
    assert_eq!(
        classify(Some(404), "No such container: web").as_str(),
        "container_not_found"
    );
    assert_eq!(
        classify(
            Some(400),
            "client version 1.53 is too new. Maximum supported API version is 1.41"
        )
        .as_str(),
        "docker_unavailable"
    );
    assert_eq!(
        classify(Some(409), "Conflict. The container name").as_str(),
        "docker_error"
    );
    assert_eq!(
        classify(Some(500), "driver failed").as_str(),
        "docker_error"
    );
}

#[test]
fn a_container_that_exits_ends_its_task_with_its_code() {
    let mut s = Supervision::new();
    assert_eq!(s.state(), State::Creating);
    s.started();
    assert_eq!(s.state(), State::Running);
    // The engine's own `start` after ours changes nothing.
    assert_eq!(s.on_engine_event("start"), None);
    assert_eq!(s.on_engine_event("pause"), Some(State::Paused));
    assert_eq!(s.on_engine_event("unpause"), Some(State::Running));
    assert_eq!(s.on_engine_event("exec_start: sh"), None);
    assert_eq!(s.on_engine_event("die"), Some(State::Exited));
    assert_eq!(s.exited(3), "exit 3");
    assert_eq!(s.on_engine_event("destroy"), Some(State::Removed));
    // Ended: a stop asks nothing more.
    assert!(!s.stop_asked());
}

#[test]
fn a_stopped_container_ends_its_task_stopped() {
    let mut s = Supervision::new();
    s.started();
    assert!(s.stop_asked());
    assert_eq!(s.state(), State::Stopping);
    assert!(!s.stop_asked(), "the first stop counts");
    assert!(s.stopping());
    // A restart event while stopping does not make it running again.
    assert_eq!(s.on_engine_event("restart"), None);
    assert_eq!(s.on_engine_event("kill"), None);
    assert_eq!(s.on_engine_event("die"), Some(State::Exited));
    assert_eq!(s.exited(143), "stopped: exit 143");
}

#[test]
fn a_stop_before_the_start_is_remembered() {
    let mut s = Supervision::new();
    assert!(s.stop_asked());
    assert_eq!(s.state(), State::Creating);
    assert!(s.stopping());
}

#[test]
fn out_of_memory_is_named() {
    let mut s = Supervision::new();
    s.started();
    assert_eq!(s.on_engine_event("oom"), None);
    assert_eq!(s.exited(137), "exit 137 (out of memory)");
}

#[test]
fn the_table_limits_containers_per_node() {
    let mut t = ContainerTable::new(2, CONTAINER_WORDS);
    t.admit(1, "a").expect("room");
    assert_eq!(
        t.admit(1, "b").expect_err("taken").code.as_str(),
        "already_started"
    );
    t.admit(2, "b").expect("room");
    let e = t.admit(3, "c").expect_err("full");
    assert_eq!(e.code.as_str(), "too_many_containers");
    assert_eq!(e.message, "the node runs 2 containers, its limit");
    assert_eq!(t.len(), 2);
    assert_eq!(t.release(1), Some("a"));
    assert_eq!(t.entry(2), Some(&"b"));
    t.admit(3, "c").expect("room again");
    assert!(!t.is_empty());
}

#[test]
fn cpu_percent_is_the_share_of_the_systems_time_times_the_cpus() {
    assert_eq!(cpu_percent(150, 100, 1100, 1000, 2), 100.0);
    assert_eq!(cpu_percent(125, 100, 1100, 1000, 4), 100.0);
    assert_eq!(cpu_percent(100, 100, 1100, 1000, 4), 0.0);
    // The first sample: no system delta.
    assert_eq!(cpu_percent(100, 0, 1000, 1000, 4), 0.0);
    // No CPU count: one.
    assert_eq!(cpu_percent(110, 100, 200, 100, 0), 10.0);
}

#[test]
fn requests_name_their_target() {
    assert_eq!(DockerRequest::List.target(), None);
    assert_eq!(
        DockerRequest::Logs {
            target: "7".into(),
            lines: 3
        }
        .target(),
        Some("7")
    );
}
