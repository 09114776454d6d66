use super::*;

fn policy(mode: RestartMode, max: u32) -> RestartPolicy {
    RestartPolicy {
        mode,
        max_restarts: max,
        backoff_ms: 100,
    }
}

#[test]
fn never_ends_with_the_exit() {
    let p = policy(RestartMode::Never, 3);
    assert_eq!(
        p.decide(ExitStatus::Code(3), 0, false),
        AfterExit::End("exit 3".into())
    );
    assert_eq!(
        p.decide(ExitStatus::Signal(9), 0, false),
        AfterExit::End("signal 9 (SIGKILL)".into())
    );
}

#[test]
fn on_failure_restarts_with_doubling_backoff_then_gives_up() {
    let p = policy(RestartMode::OnFailure, 3);
    let s = ExitStatus::Code(1);
    assert_eq!(
        p.decide(s, 0, false),
        AfterExit::Restart {
            attempt: 1,
            after: Duration::from_millis(100)
        }
    );
    assert_eq!(
        p.decide(s, 1, false),
        AfterExit::Restart {
            attempt: 2,
            after: Duration::from_millis(200)
        }
    );
    assert_eq!(
        p.decide(s, 2, false),
        AfterExit::Restart {
            attempt: 3,
            after: Duration::from_millis(400)
        }
    );
    assert_eq!(
        p.decide(s, 3, false),
        AfterExit::End("exit 1 (gave up after 3 restarts)".into())
    );
    // Success is no failure.
    assert_eq!(
        p.decide(ExitStatus::Code(0), 0, false),
        AfterExit::End("exit 0".into())
    );
    // A signal is.
    assert!(matches!(
        p.decide(ExitStatus::Signal(11), 0, false),
        AfterExit::Restart { attempt: 1, .. }
    ));
}

#[test]
fn always_restarts_even_on_success_and_a_stop_never_restarts() {
    let p = policy(RestartMode::Always, 2);
    assert!(matches!(
        p.decide(ExitStatus::Code(0), 0, false),
        AfterExit::Restart { attempt: 1, .. }
    ));
    assert_eq!(
        p.decide(ExitStatus::Signal(15), 0, true),
        AfterExit::End("stopped: signal 15 (SIGTERM)".into())
    );
}

#[test]
fn backoff_is_capped() {
    let p = RestartPolicy {
        mode: RestartMode::Always,
        max_restarts: 1000,
        backoff_ms: 1000,
    };
    assert_eq!(
        p.decide(ExitStatus::Code(0), 100, false),
        AfterExit::Restart {
            attempt: 101,
            after: MAX_BACKOFF
        }
    );
}

#[test]
fn restart_modes_parse() {
    assert_eq!(RestartMode::parse("never"), Some(RestartMode::Never));
    assert_eq!(
        RestartMode::parse("on-failure"),
        Some(RestartMode::OnFailure)
    );
    assert_eq!(RestartMode::parse("always"), Some(RestartMode::Always));
    assert_eq!(RestartMode::parse("sometimes"), None);
}

#[test]
fn stop_sequence_terms_then_kills_after_the_grace() {
    let mut s = Stopper::new(Duration::from_secs(5));
    let t0 = Instant::from_millis(1000);
    assert_eq!(s.deadline(), None);
    assert_eq!(s.begin(t0), Some(StopSignal::Term));
    assert_eq!(s.begin(t0), None, "a second stop does not signal again");
    assert_eq!(s.deadline(), Some(Instant::from_millis(6000)));
    assert_eq!(s.poll(Instant::from_millis(5999)), None);
    assert_eq!(s.poll(Instant::from_millis(6000)), Some(StopSignal::Kill));
    assert_eq!(s.poll(Instant::from_millis(7000)), None);
    assert_eq!(s.deadline(), None);
}

#[test]
fn zero_grace_kills_at_once() {
    let mut s = Stopper::new(Duration::ZERO);
    assert_eq!(s.begin(Instant::ZERO), Some(StopSignal::Kill));
    assert_eq!(s.deadline(), None);
    assert_eq!(s.begin(Instant::ZERO), None);
}

#[test]
fn grace_defaults_and_is_capped() {
    assert_eq!(grace(None), DEFAULT_GRACE);
    assert_eq!(grace(Some(1500)), Duration::from_millis(1500));
    assert_eq!(grace(Some(u64::MAX)), MAX_GRACE);
}

#[test]
fn tail_gives_the_last_lines_across_writes() {
    let mut r = OutputRing::new(1 << 20);
    let text: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    // Split at awkward places.
    for chunk in text.as_bytes().chunks(7) {
        r.push(Stream::Stdout, chunk);
    }
    assert_eq!(r.tail(5), vec!["996", "997", "998", "999", "1000"]);
    assert_eq!(r.tail(0), Vec::<String>::new());
    assert_eq!(r.tail(2000).len(), 1000);
}

#[test]
fn the_buffer_drops_the_oldest_lines_beyond_its_bytes() {
    let mut r = OutputRing::new(10);
    r.push(Stream::Stdout, b"aaaa\nbbbb\n");
    assert_eq!(r.bytes(), 10);
    let done = r.push(Stream::Stderr, b"cc\n");
    assert_eq!(done, vec!["cc"]);
    assert_eq!(r.tail(10), vec!["bbbb", "cc"]);
    assert_eq!(r.dropped(), 1);
    assert_eq!(r.bytes(), 8);
}

#[test]
fn streams_keep_their_own_partial_lines() {
    let mut r = OutputRing::new(1000);
    assert!(r.push(Stream::Stdout, b"hel").is_empty());
    assert_eq!(r.push(Stream::Stderr, b"oops\n"), vec!["oops"]);
    assert_eq!(r.push(Stream::Stdout, b"lo\nwor"), vec!["hello"]);
    assert_eq!(r.finish(Stream::Stdout), Some("wor".into()));
    assert_eq!(r.finish(Stream::Stdout), None);
    assert_eq!(r.tail(10), vec!["oops", "hello", "wor"]);
}

#[test]
fn a_long_line_is_cut() {
    let mut r = OutputRing::new(1 << 20);
    let long = vec![b'x'; output::MAX_LINE + 3];
    let done = r.push(Stream::Stdout, &long);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].len(), output::MAX_LINE);
    assert_eq!(r.finish(Stream::Stdout), Some("xxx".into()));
}

#[test]
fn limits_launch_through_the_shell_with_the_argv_untouched() {
    let mut c = Command::new(["sleep", "1; rm -rf /"]);
    assert_eq!(c.launch_argv(), vec!["sleep", "1; rm -rf /"]);
    c.limits = Limits {
        cpu_secs: Some(10),
        mem_bytes: Some(1_000_000),
    };
    assert_eq!(
        c.launch_argv(),
        vec![
            "/bin/sh",
            "-c",
            "ulimit -t 10 && ulimit -v 977 && exec \"$@\"",
            "nkcluster-os",
            "sleep",
            "1; rm -rf /"
        ]
    );
}

#[test]
fn commands_are_validated() {
    let code = |c: &Command| c.validate().map_err(|e| e.code.as_str().to_owned());
    assert_eq!(code(&Command::new(["true"])), Ok(()));
    assert_eq!(
        code(&Command::new(Vec::<String>::new())),
        Err("bad_request".into())
    );
    assert_eq!(code(&Command::new([""])), Err("bad_request".into()));
    assert_eq!(code(&Command::new(["a\0b"])), Err("bad_request".into()));
    let mut c = Command::new(["true"]);
    c.env = vec![("A=B".into(), "1".into())];
    assert_eq!(code(&c), Err("bad_request".into()));
    let mut c = Command::new(["true"]);
    c.limits.cpu_secs = Some(0);
    assert_eq!(code(&c), Err("bad_request".into()));
}

#[test]
fn exit_statuses_describe_themselves() {
    assert_eq!(ExitStatus::Code(0).describe(), "exit 0");
    assert_eq!(ExitStatus::Signal(15).describe(), "signal 15 (SIGTERM)");
    assert_eq!(ExitStatus::Signal(64).describe(), "signal 64 (SIG?)");
    assert_eq!(ExitStatus::Code(3).shell_code(), 3);
    assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
}

#[test]
fn the_table_admits_up_to_its_limit() {
    let mut t = ProcTable::new(2, PROC_WORDS);
    assert!(t.admit(1, "a").is_ok());
    assert_eq!(
        t.admit(1, "b").map_err(|e| e.code.as_str().to_owned()),
        Err("already_started".into())
    );
    assert!(t.admit(2, "b").is_ok());
    let e = t.admit(3, "c").expect_err("full");
    assert_eq!(e.code.as_str(), "too_many_processes");
    assert_eq!(e.message, "the node runs 2 processes, its limit");
    assert_eq!(t.release(1), Some("a"));
    assert!(t.admit(3, "c").is_ok());
    assert_eq!(
        process(&t, 1).map_err(|e| e.code.as_str().to_owned()),
        Err("process_not_found".into())
    );
    assert_eq!(t.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(t.len(), 2);
}

#[test]
fn wire_types_round_trip() {
    let spec = ProcSpec {
        command: Command::new(["sleep", "600"]),
        restart: policy(RestartMode::OnFailure, 3),
        grace_ms: Some(1000),
        stream_lines: true,
        buffer_bytes: None,
    };
    let b = postcard::to_allocvec(&spec).expect("enc");
    assert_eq!(postcard::from_bytes::<ProcSpec>(&b).expect("dec"), spec);
    let ev = OsEvent::Line {
        stream: Stream::Stderr,
        line: "x".into(),
    };
    let b = postcard::to_allocvec(&ev).expect("enc");
    assert_eq!(postcard::from_bytes::<OsEvent>(&b).expect("dec"), ev);
}

#[test]
fn the_nodes_own_settings_are_not_inherited() {
    assert!(Command::strips_inherited("NKCLUSTER_PASSWORD"));
    assert!(Command::strips_inherited("NKCLUSTER_WORKER_PASSWORD"));
    assert!(Command::strips_inherited("NKCLUSTER_LOG"));
    assert!(!Command::strips_inherited("PATH"));
    assert!(!Command::strips_inherited("HOME"));
    assert!(!Command::strips_inherited("nkcluster_x"));
}
