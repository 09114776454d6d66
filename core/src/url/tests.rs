//! Tests of URL parsing, printing and the written form.

use super::*;

mod reachable_tests {
    use super::*;

    #[test]
    fn all_becomes_the_address_the_node_was_reached_at() {
        let urls = [
            "nkcluster://all:1973;transport=tls".to_owned(),
            "nkcluster://10.0.0.5:1972".to_owned(),
            "not a url".to_owned(),
        ];
        let ip = "192.168.1.7".parse().ok();
        assert_eq!(
            reachable_at(&urls, ip),
            [
                "nkcluster://192.168.1.7:1973;transport=tls",
                "nkcluster://10.0.0.5:1972;transport=tcp"
            ]
        );
        // Without an address, `all` cannot be dialed: it is dropped.
        assert_eq!(
            reachable_at(&urls, None),
            ["nkcluster://10.0.0.5:1972;transport=tcp"]
        );
    }
}

mod parsing {
    use super::*;

    #[test]
    fn url_tls_options_override_the_node_ones_field_by_field() {
        let node = TlsOptions {
            verify: Some(true),
            certfile: Some("node.pem".into()),
            ..Default::default()
        };
        let url = TlsOptions {
            verify: Some(false),
            keyfile: Some("url.key".into()),
            ..Default::default()
        };
        assert_eq!(
            url.over(&node),
            TlsOptions {
                verify: Some(false),
                certfile: Some("node.pem".into()),
                keyfile: Some("url.key".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            ip_of_remote("ws:[::1]:1974"),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(
            ip_of_remote("tls:127.0.0.1:1973"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(ip_of_remote("garbage"), None);
    }
    use proptest::prelude::*;

    fn err_code(s: &str) -> (&'static str, String) {
        match parse_url_list(s) {
            Ok(v) => panic!("expected an error for {s:?}, got {v:?}"),
            Err(e) => (e.code(), e.to_string()),
        }
    }

    fn url(host: Host, port: u16, transport: Transport) -> ClusterUrl {
        ClusterUrl {
            host,
            port,
            transport,
            path: "/".into(),
            password: None,
            worker_password: None,
            tls: TlsOptions::default(),
            written: Written::ALL,
        }
    }

    fn written(mut u: ClusterUrl, port: bool, transport: bool) -> ClusterUrl {
        u.written = Written { port, transport };
        u
    }

    #[test]
    fn the_written_form_keeps_what_the_text_left_out() {
        for s in [
            "nkcluster://h",
            "nkcluster://h:1",
            "nkcluster://h;transport=tls;password=p",
            "nkcluster://h;password=p;worker_password=w",
            "nkcluster://h/x;transport=ws",
            "nkcluster://10.0.0.1:5;transport=wss;tls_verify=true",
        ] {
            let u = parse_url(s).expect("valid");
            assert_eq!(u.written_form(), s);
            assert_eq!(parse_url(&u.written_form()), Ok(u));
        }
    }

    #[test]
    fn a_worker_password_parses_and_prints_after_the_password() {
        let u = parse_url("nkcluster://h:1;Worker_Password=w1;transport=tcp;password=c1")
            .expect("valid");
        assert_eq!(u.worker_password.as_deref(), Some("w1"));
        assert_eq!(u.password.as_deref(), Some("c1"));
        assert_eq!(
            u.to_string(),
            "nkcluster://h:1;transport=tcp;password=c1;worker_password=w1"
        );
        assert_eq!(u.remote_label(), "tcp:h:1");
    }

    #[test]
    fn the_written_label_shows_only_what_the_text_wrote() {
        let l = |s: &str| parse_url(s).expect("valid").written_label();
        assert_eq!(
            l("nkcluster://cluster.test;password=secret"),
            "cluster.test"
        );
        assert_eq!(
            l("nkcluster://cluster.test;transport=tls"),
            "tls:cluster.test"
        );
        assert_eq!(l("nkcluster://h:1972"), "h:1972");
        assert_eq!(l("nkcluster://[::1]:5;transport=ws"), "ws:[::1]:5");
    }

    #[test]
    fn the_parse_records_what_the_text_wrote() {
        let w = |s: &str| parse_url(s).expect("valid").written;
        let both = Written::ALL;
        assert_eq!(
            w("nkcluster://h"),
            Written {
                port: false,
                transport: false
            }
        );
        assert_eq!(
            w("nkcluster://h:1"),
            Written {
                port: true,
                transport: false
            }
        );
        assert_eq!(
            w("nkcluster://h;transport=ws"),
            Written {
                port: false,
                transport: true
            }
        );
        assert_eq!(w("nkcluster://h:1;transport=ws"), both);
        // The canonical form writes both.
        let u = parse_url("nkcluster://h").expect("valid");
        assert_eq!(w(&u.to_string()), both);
        assert_eq!(Written::default(), both);
    }

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().expect("valid"))
    }

    #[test]
    fn invalid_scheme() {
        assert_eq!(
            parse_url("http://127.0.0.1"),
            Err(UrlError::InvalidScheme("http".into()))
        );
        assert_eq!(
            err_code("http://127.0.0.1").1,
            format!("invalid_scheme: http (expected {URL_SYNTAX})")
        );
        assert_eq!(
            parse_url("nkcluster://a, http://b"),
            Err(UrlError::SyntaxError("host".into()))
        );
        assert_eq!(
            parse_url_list("nkcluster://a, http://b"),
            Err(UrlError::InvalidScheme("http".into()))
        );
        assert_eq!(
            parse_url("127.0.0.1"),
            Err(UrlError::SyntaxError("scheme".into()))
        );
        assert_eq!(
            parse_url("://x"),
            Err(UrlError::SyntaxError("scheme".into()))
        );
    }

    #[test]
    fn invalid_transport() {
        assert_eq!(
            parse_url("nkcluster://127.0.0.1;transport=udp"),
            Err(UrlError::InvalidTransport("udp".into()))
        );
        assert_eq!(
            err_code("nkcluster://127.0.0.1;transport=udp"),
            (
                "invalid_transport",
                "invalid_transport: udp (expected tcp, tls, ws or wss)".into()
            )
        );
        assert_eq!("WSS".parse::<Transport>(), Ok(Transport::Wss));
        assert!("".parse::<Transport>().is_err());
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("nkcluster://127.0.0.1;tls_verify=hi", "tls_verify"),
            ("nkcluster://h;tls_depth=256", "tls_depth"),
            ("nkcluster://h;tls_depth=+1", "tls_depth"),
            ("nkcluster://h;tls_depth", "tls_depth"),
            ("nkcluster://h;password=", "password"),
            ("nkcluster://h;password", "password"),
            ("nkcluster://h;password=a;password=b", "password"),
            ("nkcluster://h;worker_password=", "worker_password"),
            (
                "nkcluster://h;worker_password=a;WORKER_PASSWORD=b",
                "worker_password",
            ),
            ("nkcluster://h;foo=bar", "foo"),
            ("nkcluster://h;;transport=tcp", "parameter"),
            ("nkcluster://h;", "parameter"),
            ("nkcluster://", "host"),
            ("nkcluster://:1972", "host"),
            ("nkcluster://a b", "host"),
            ("nkcluster://a..b", "host"),
            ("nkcluster://1.2.3", "host"),
            ("nkcluster://::1", "host"),
            ("nkcluster://[::1", "host"),
            ("nkcluster://[1.2.3.4]", "host"),
            ("nkcluster://[::1]x", "host"),
            ("nkcluster://h:", "port"),
            ("nkcluster://h:65536", "port"),
            ("nkcluster://h:+1", "port"),
            ("nkcluster://h:1:2", "port"),
            ("nkcluster://h:1/p", "path"),
            ("nkcluster://h:1/p;transport=tls", "path"),
            ("nkcluster://a,,nkcluster://b", "url"),
            ("nkcluster://a,", "url"),
            (",nkcluster://a", "url"),
        ];
        for (input, what) in cases {
            assert_eq!(
                parse_url_list(input),
                Err(UrlError::SyntaxError(what.into())),
                "{input}"
            );
        }
        assert_eq!(
            err_code("nkcluster://127.0.0.1;tls_verify=hi"),
            (
                "syntax_error",
                format!("syntax_error: tls_verify (expected {URL_SYNTAX})")
            )
        );
        assert_eq!(parse_url(""), Err(UrlError::SyntaxError("url".into())));
    }

    #[test]
    fn default_ports() {
        for (t, port) in [
            (Transport::Tcp, 1972),
            (Transport::Tls, 1973),
            (Transport::Ws, 1974),
            (Transport::Wss, 1975),
        ] {
            assert_eq!(t.default_port(), port);
            let u = parse_url(&format!("nkcluster://example.com;transport={t}")).expect("valid");
            assert_eq!(u.port, port);
            assert_eq!(u.transport, t);
            assert_eq!(
                u.transport.is_tls(),
                matches!(t, Transport::Tls | Transport::Wss)
            );
        }
        let u = parse_url("NKCluster://h").expect("valid");
        assert_eq!(
            u,
            written(
                url(Host::Name("h".into()), 1972, Transport::Tcp),
                false,
                false
            )
        );
        let u = parse_url("nkcluster://h:0;transport=tls").expect("valid");
        assert_eq!(u.port, 0);
    }

    #[test]
    fn all_host() {
        let u = parse_url("nkcluster://all;transport=wss").expect("valid");
        assert_eq!(
            u,
            written(url(Host::All, 1975, Transport::Wss), false, true)
        );
        assert_eq!(u.to_string(), "nkcluster://all:1975;transport=wss");
        assert_eq!(u.socket_addr(), None);
        assert_eq!(parse_url("nkcluster://ALL").expect("valid").host, Host::All);
    }

    #[test]
    fn list_with_spaces() {
        let list = parse_url_list(
            "nkcluster://a, nkcluster://10.0.0.1:1234;transport=wss;password=pass1;tls_depth=2",
        )
        .expect("valid");
        let mut second = url(ip("10.0.0.1"), 1234, Transport::Wss);
        second.password = Some("pass1".into());
        second.tls.depth = Some(2);
        assert_eq!(
            list,
            vec![
                written(
                    url(Host::Name("a".into()), 1972, Transport::Tcp),
                    false,
                    false
                ),
                second
            ]
        );
        assert_eq!(
            format_url_list(&list),
            "nkcluster://a:1972;transport=tcp, \
             nkcluster://10.0.0.1:1234;transport=wss;password=pass1;tls_depth=2"
        );
        let spaced = parse_url_list(
            "  nkcluster://a ; transport = ws ;PASSWORD=p w ,\tnkcluster://b:1/x ;transport=ws  ",
        )
        .expect("valid");
        assert_eq!(spaced.len(), 2);
        assert_eq!(spaced[0].transport, Transport::Ws);
        assert_eq!(spaced[0].password.as_deref(), Some("p w"));
        assert_eq!(spaced[1].path, "/x");
        assert_eq!(spaced[1].to_string(), "nkcluster://b:1/x;transport=ws");
    }

    #[test]
    fn ipv6() {
        let u = parse_url("nkcluster://[::1]:5000").expect("valid");
        assert_eq!(
            u,
            written(url(ip("::1"), 5000, Transport::Tcp), true, false)
        );
        assert_eq!(u.to_string(), "nkcluster://[::1]:5000;transport=tcp");
        assert_eq!(u.socket_addr(), Some("[::1]:5000".parse().expect("valid")));
        assert_eq!(u.remote_label(), "tcp:[::1]:5000");
        let u = parse_url("nkcluster://[::1];transport=tls").expect("valid");
        assert_eq!(u.port, 1973);
    }

    #[test]
    fn full_url() {
        let s = "nkcluster://node1.example.com:4000/ws/path;transport=wss;password=secret;\
                 tls_verify=true;tls_depth=3;tls_certfile=/c.pem;tls_keyfile=/k.pem;\
                 tls_cacertfile=/ca.pem;tls_password=kp";
        let u: ClusterUrl = s.parse().expect("valid");
        assert_eq!(u.host, Host::Name("node1.example.com".into()));
        assert_eq!(u.path, "/ws/path");
        assert_eq!(
            u.tls,
            TlsOptions {
                verify: Some(true),
                depth: Some(3),
                certfile: Some("/c.pem".into()),
                keyfile: Some("/k.pem".into()),
                cacertfile: Some("/ca.pem".into()),
                password: Some("kp".into()),
            }
        );
        assert_eq!(u.to_string(), s);
        assert_eq!(u.remote_label(), "wss:node1.example.com:4000");
        assert_eq!(
            parse_url("nkcluster://127.0.0.1")
                .expect("valid")
                .remote_label(),
            "tcp:127.0.0.1:1972"
        );
        // A trailing "/" is the default path and allowed for every transport.
        assert_eq!(parse_url("nkcluster://h:1/").expect("valid").path, "/");
        assert_eq!(
            parse_url("nkcluster://h;TLS_VERIFY=False")
                .expect("valid")
                .tls
                .verify,
            Some(false)
        );
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_url_list(""), Ok(vec![]));
        assert_eq!(parse_url_list(" \t\n "), Ok(vec![]));
        assert_eq!(format_url_list(&[]), "");
    }

    #[test]
    fn garbage_does_not_panic() {
        let inputs = [
            "nkcluster://[",
            "nkcluster://]",
            "nkcluster://[]",
            "nkcluster://[:::]:",
            "nkcluster://é:1",
            "nkcluster://h/é",
            "nkcluster://h;=",
            "nkcluster://h;==",
            "nkcluster://h;transport=",
            "nkcluster:/",
            "nkcluster",
            "é://x",
            "::::",
            ";;;,,,",
            "nkcluster://h:99999999999999999999999",
            "nkcluster://h;tls_depth=99999999999999999999",
            "\u{0}\u{ffff}",
        ];
        for input in inputs {
            assert!(parse_url_list(input).is_err(), "{input:?}");
            assert!(parse_url(input).is_err(), "{input:?}");
        }
    }

    fn safe_string() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_./:+@!-]{1,12}"
    }

    fn host() -> impl Strategy<Value = Host> {
        prop_oneof![
            Just(Host::All),
            "[A-Za-z][A-Za-z0-9_-]{0,8}(\\.[A-Za-z][A-Za-z0-9_-]{0,8}){0,3}"
                .prop_filter("not all", |s| !s.eq_ignore_ascii_case("all"))
                .prop_map(Host::Name),
            any::<Ipv4Addr>().prop_map(|ip| Host::Ip(IpAddr::V4(ip))),
            any::<Ipv6Addr>().prop_map(|ip| Host::Ip(IpAddr::V6(ip))),
        ]
    }

    fn tls_options() -> impl Strategy<Value = TlsOptions> {
        (
            any::<Option<bool>>(),
            any::<Option<u8>>(),
            proptest::option::of(safe_string()),
            proptest::option::of(safe_string()),
            proptest::option::of(safe_string()),
            proptest::option::of(safe_string()),
        )
            .prop_map(|(verify, depth, certfile, keyfile, cacertfile, password)| {
                TlsOptions {
                    verify,
                    depth,
                    certfile,
                    keyfile,
                    cacertfile,
                    password,
                }
            })
    }

    fn cluster_url() -> impl Strategy<Value = ClusterUrl> {
        (
            host(),
            any::<u16>(),
            proptest::sample::select(Transport::ALL.to_vec()),
            "/|/[A-Za-z0-9_./-]{1,10}",
            proptest::option::of(safe_string()),
            proptest::option::of(safe_string()),
            tls_options(),
        )
            .prop_map(
                |(host, port, transport, path, password, worker_password, tls)| ClusterUrl {
                    host,
                    port,
                    transport,
                    path: if transport.is_ws() { path } else { "/".into() },
                    password,
                    worker_password,
                    tls,
                    written: Written::ALL,
                },
            )
    }

    proptest! {
        #[test]
        fn url_round_trip(u in cluster_url()) {
            let s = u.to_string();
            prop_assert_eq!(parse_url(&s), Ok(u.clone()));
            prop_assert_eq!(parse_url_list(&s), Ok(vec![u]));
        }

        #[test]
        fn url_list_round_trip(urls in proptest::collection::vec(cluster_url(), 0..5)) {
            let s = format_url_list(&urls);
            prop_assert_eq!(parse_url_list(&s), Ok(urls));
        }

        #[test]
        fn url_serde_round_trip(u in cluster_url()) {
            let bytes = postcard::to_allocvec(&u).expect("serializes");
            prop_assert_eq!(postcard::from_bytes::<ClusterUrl>(&bytes), Ok(u));
        }

        #[test]
        fn url_list_never_panics(s in any::<String>()) {
            let _ = parse_url_list(&s);
            let _ = parse_url(&s);
        }

        #[test]
        fn url_like_never_panics(
            s in "(nkcluster|http|NKCLUSTER)?(://)?[\\[\\]a-z0-9.:/;=, _é-]{0,40}"
        ) {
            if let Ok(urls) = parse_url_list(&s) {
                // The written form keeps what the text left out.
                for u in &urls {
                    prop_assert_eq!(parse_url(&u.written_form()), Ok(u.clone()));
                }
                // Whatever parses prints canonically and parses back to the same value,
                // with port and transport written.
                let urls: Vec<ClusterUrl> = urls
                    .into_iter()
                    .map(|mut u| {
                        u.written = Written::ALL;
                        u
                    })
                    .collect();
                prop_assert_eq!(parse_url_list(&format_url_list(&urls)), Ok(urls));
            }
        }
    }
}

#[test]
fn plaintext_listeners_that_other_hosts_can_reach_are_exposed() {
    let exposed = |u: &str| parse_url(u).expect("valid").is_exposed_plaintext();
    assert!(exposed("nkcluster://all:1972;transport=tcp"));
    assert!(exposed("nkcluster://10.0.0.1;transport=ws"));
    assert!(exposed("nkcluster://ctl.example;transport=tcp"));
    assert!(!exposed("nkcluster://127.0.0.1:1972;transport=tcp"));
    assert!(!exposed("nkcluster://[::1]:1974;transport=ws"));
    assert!(!exposed("nkcluster://all;transport=tls"));
    assert!(!exposed("nkcluster://10.0.0.1;transport=wss"));
}
