//! Writes the committed seed corpus: `fuzz/corpus/<target>/seed-<name>`.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [OUT_DIR]
//! ```
//!
//! `OUT_DIR` defaults to `fuzz/corpus`; pass another directory to compare a fresh
//! generation with the committed seeds (`diff -r`).
//!
//! Existing `seed-*` files of each target are replaced; other corpus files (found by
//! fuzzing, ignored by git) are left alone. The output is deterministic.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use nkcluster_core::conn::{Connection, Framing};
use nkcluster_core::frame::encode_frame;
use nkcluster_core::handshake::{Role, Side};
use nkcluster_core::message::{
    Close, Hello, Message, Ping, Pong, Proof, Reject, RejectReason, RemoteError, Reply, Request,
};
use nkcluster_core::time::Instant;
use nkcluster_fuzz::{
    CLUSTER, Flags, FrameInput, Op, PEER_NONCE, SEED_PEER_KEY, TARGET_NONCE, conn_config,
    encode_handshake_input, opposite, params,
};

struct Out {
    dir: PathBuf,
    count: usize,
}

impl Out {
    fn target(root: &Path, name: &str) -> Out {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("create corpus dir");
        for entry in fs::read_dir(&dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            let is_seed = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"));
            if is_seed {
                fs::remove_file(&path).expect("remove old seed");
            }
        }
        Out { dir, count: 0 }
    }

    fn put(&mut self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.join(format!("seed-{name}")), bytes).expect("write seed");
        self.count += 1;
    }
}

fn frames(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for b in bodies {
        encode_frame(b, &mut out);
    }
    out.to_vec()
}

fn framed(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode_frame_into(&mut out);
    out.to_vec()
}

fn hello(node_id: &str) -> Message {
    Message::Hello(Hello {
        version_min: 1,
        version_max: 1,
        cluster: CLUSTER.into(),
        node_id: node_id.into(),
        instance: 42,
        role: Role::Worker,
        listen: vec!["nkcluster://10.0.0.2:1972;transport=tcp".into()],
        meta: "core;group=g1;master".into(),
        nonce: [3; 32],
        partitions: 0,
    })
}

fn sample_messages() -> Vec<(&'static str, Message)> {
    vec![
        ("hello", hello("w1")),
        ("proof", Message::Proof(Proof { mac: [0x11; 32] })),
        (
            "reject",
            Message::Reject(Reject {
                reason: RejectReason::AuthFailed,
                detail: "auth_failed".into(),
                theirs: None,
            }),
        ),
        (
            "ping",
            Message::Ping(Ping {
                seq: 1,
                wall_ns: 1_700_000_000_000_000_000,
            }),
        ),
        (
            "pong",
            Message::Pong(Pong {
                seq: 1,
                echo_wall_ns: 1_700_000_000_000_000_000,
                wall_ns: 1_700_000_000_500_000_000,
            }),
        ),
        (
            "request",
            Message::Request(Request {
                id: 7,
                timeout_ms: 5000,
                class: "echo".into(),
                body: Bytes::from_static(b"payload"),
            }),
        ),
        (
            "reply-ok",
            Message::Reply(Reply {
                id: 7,
                result: Ok(Bytes::from_static(b"payload!")),
            }),
        ),
        (
            "reply-err",
            Message::Reply(Reply {
                id: 300,
                result: Err(RemoteError::new("unknown_class", "no such class: x")),
            }),
        ),
        (
            "close",
            Message::Close(Close {
                reason: "shutting down".into(),
            }),
        ),
    ]
}

/// What a genuine peer with the wrong key ([`SEED_PEER_KEY`]) sends to the machine under
/// test on `side`, in order, one entry per transmit (the fuzz target's machine has the
/// same identity and nonce, so its messages, and the transcript, are the same).
fn wrong_key_peer_transmits(side: Side, framing: Framing) -> Vec<Vec<u8>> {
    let flags = Flags {
        side,
        framing,
        established: false,
        direct: false,
        roles: false,
        max_frame: nkcluster_core::MAX_FRAME_DEFAULT,
    };
    let t0 = Instant::ZERO;
    // A stand-in for the machine under test: its key is neither the target's nor the
    // peer's, and is never used to prove anything the fuzzer sees.
    let mut ours = Connection::new(
        conn_config(flags),
        params(side, "me", [0; 32], TARGET_NONCE),
        t0,
    );
    let mut peer = Connection::new(
        conn_config(flags),
        params(opposite(side), "peer", SEED_PEER_KEY, PEER_NONCE),
        t0,
    );
    let feed = |c: &mut Connection, b: &[u8]| match framing {
        Framing::Stream => c.handle_input(t0, b),
        Framing::Messages => c.handle_frame(t0, b),
    };
    let mut out = Vec::new();
    loop {
        let mut moved = false;
        while let Some(b) = ours.poll_transmit() {
            feed(&mut peer, &b);
            moved = true;
        }
        while let Some(b) = peer.poll_transmit() {
            out.push(b.to_vec());
            feed(&mut ours, &b);
            moved = true;
        }
        if !moved {
            return out;
        }
    }
}

fn input(param: u8, bytes: &[u8]) -> Op {
    Op::Input {
        param,
        bytes: bytes.to_vec(),
    }
}

fn main() {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };

    // ----- frame_decoder -----
    let mut o = Out::target(&root, "frame_decoder");
    let hello_frame = framed(&hello("w1"));
    let some = frames(&[b"", b"a", b"hello", &[0x5c; 60]]);
    o.put("frames", &FrameInput::encode(64, 0, &[3, 10, 1], &some));
    o.put("frames-one-piece", &FrameInput::encode(200, 2, &[], &some));
    o.put(
        "at-max-then-over",
        &FrameInput::encode(5, 0, &[2, 7], &frames(&[b"12345", b"123456"])),
    );
    o.put(
        "hello-bytewise",
        &FrameInput::encode(251, 0, &[1, 1, 1, 1, 1, 1, 2, 3, 5, 8, 13], &hello_frame),
    );
    let mut announced = vec![0, 0x10, 0, 0];
    announced.extend_from_slice(&[1; 40]);
    o.put(
        "announces-1mib",
        &FrameInput::encode(254, 0, &[2, 2, 10], &announced),
    );
    o.put(
        "oversized-u32max",
        &FrameInput::encode(255, 0, &[1], &[0xff, 0xff, 0xff, 0xff, 0]),
    );
    let mut all = Vec::new();
    for (_, m) in sample_messages() {
        all.extend(framed(&m));
    }
    o.put(
        "all-messages",
        &FrameInput::encode(250, 3, &[0, 17, 64, 4, 255], &all),
    );
    println!("frame_decoder: {} seeds", o.count);

    // ----- message_decoder -----
    let mut o = Out::target(&root, "message_decoder");
    for (name, m) in sample_messages() {
        o.put(name, &m.encode_body());
    }
    println!("message_decoder: {} seeds", o.count);

    // ----- handshake -----
    let mut o = Out::target(&root, "handshake");
    let raw = |side, framing| Flags {
        side,
        framing,
        established: false,
        direct: false,
        roles: false,
        max_frame: nkcluster_core::MAX_FRAME_DEFAULT,
    };
    for (side, name) in [(Side::Listener, "listener"), (Side::Dialer, "dialer")] {
        // A real peer's stream (hello, then a proof made with the wrong key), in pieces.
        let tx = wrong_key_peer_transmits(side, Framing::Stream);
        let stream: Vec<u8> = tx.concat();
        let mut ops = Vec::new();
        let (a, rest) = stream.split_at(3.min(stream.len()));
        ops.push(input(0, a));
        let (b, c) = rest.split_at(rest.len() / 2);
        ops.push(input(1, b));
        ops.push(input(2, c));
        ops.extend([Op::Fire, Op::Tick(1), Op::Fire, Op::Fire]);
        o.put(
            &format!("{name}-wrong-key-stream"),
            &encode_handshake_input(raw(side, Framing::Stream), &ops),
        );

        // The same over message framing: one body per input op.
        let tx = wrong_key_peer_transmits(side, Framing::Messages);
        let mut ops: Vec<Op> = tx.iter().map(|b| input(1, b)).collect();
        ops.extend([Op::Request { param: 4, len: 3 }, Op::Fire, Op::Fire]);
        o.put(
            &format!("{name}-wrong-key-messages"),
            &encode_handshake_input(raw(side, Framing::Messages), &ops),
        );

        // The peer's first message only, then silence until the handshake timeout.
        let first = &wrong_key_peer_transmits(side, Framing::Stream)[..1];
        let ops = vec![
            input(0, &first.concat()),
            Op::Tick(19),
            Op::Tick(2),
            Op::Fire,
        ];
        o.put(
            &format!("{name}-hello-then-silence"),
            &encode_handshake_input(raw(side, Framing::Stream), &ops),
        );

        // Driving the handshake machine directly with message bodies.
        let tx = wrong_key_peer_transmits(side, Framing::Messages);
        let mut ops: Vec<Op> = tx.iter().map(|b| input(0, b)).collect();
        ops.extend([Op::Fire, Op::Tick(3)]);
        o.put(
            &format!("direct-{name}"),
            &encode_handshake_input(
                Flags {
                    direct: true,
                    roles: false,
                    ..raw(side, Framing::Messages)
                },
                &ops,
            ),
        );

        // Established links: the fuzzer speaks for the authenticated peer.
        for (framing, fname) in [(Framing::Stream, "stream"), (Framing::Messages, "messages")] {
            let flags = Flags {
                established: true,
                ..raw(side, framing)
            };
            let enc = |m: &Message| match framing {
                Framing::Stream => framed(m),
                Framing::Messages => m.encode_body().to_vec(),
            };
            let msgs = sample_messages();
            let get = |n: &str| {
                msgs.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, m)| enc(m))
                    .expect("sample")
            };
            let reply1 = enc(&Message::Reply(Reply {
                id: 1,
                result: Ok(Bytes::from_static(b"answer")),
            }));
            let ops = vec![
                input(1, &get("ping")),
                Op::Request { param: 8, len: 5 },
                Op::Request { param: 1, len: 0 },
                input(2, &reply1),
                input(0, &get("request")),
                input(0, &get("request")),
                Op::Reply(0),
                Op::Tick(10),
                Op::Fire,
                input(3, &get("pong")),
                input(0, &get("reply-err")),
                Op::Fire,
                Op::Fire,
                Op::Fire,
                input(0, &get("close")),
            ];
            o.put(
                &format!("established-{name}-{fname}"),
                &encode_handshake_input(flags, &ops),
            );
        }
    }
    let ops = vec![
        input(0, &[0xff, 0xff, 0xff, 0xff, 1, 2]),
        Op::Fire,
        Op::Close(0),
    ];
    o.put(
        "oversized-header",
        &encode_handshake_input(raw(Side::Listener, Framing::Stream), &ops),
    );
    // Over-long node ids: ASCII (refused as a protocol error), and multi-byte characters
    // straddling the 255-byte limit (regression: the claimed id was cut inside a
    // character, which panicked).
    for (name, id) in [
        ("long-node-id", "a".repeat(300)),
        ("regress-multibyte-node-id", "\u{e9}".repeat(200)),
    ] {
        let m = hello(&id);
        o.put(
            &format!("listener-{name}"),
            &encode_handshake_input(
                raw(Side::Listener, Framing::Stream),
                &[input(0, &framed(&m)), Op::Fire],
            ),
        );
        o.put(
            &format!("direct-{name}"),
            &encode_handshake_input(
                Flags {
                    direct: true,
                    roles: false,
                    ..raw(Side::Dialer, Framing::Messages)
                },
                &[input(0, &m.encode_body()), Op::Fire],
            ),
        );
    }
    // Role binding: a peer with the worker secret claiming each role, on both sides,
    // its messages delivered untouched (the fuzzer learns the op shape from these).
    for side in [Side::Listener, Side::Dialer] {
        for (role, claim) in [("control", 0u8), ("worker", 1), ("admin", 2)] {
            let mut input = vec![
                Flags {
                    roles: true,
                    ..raw(side, Framing::Messages)
                }
                .to_byte(),
                claim,
            ];
            for _ in 0..3 {
                Op::Input {
                    param: 0,
                    bytes: Vec::new(),
                }
                .write(&mut input);
            }
            let name = if side == Side::Listener {
                "listener"
            } else {
                "dialer"
            };
            o.put(&format!("roles-{name}-claims-{role}"), &input);
        }
    }
    let reject = framed(&Message::Reject(Reject {
        reason: RejectReason::Busy,
        detail: "busy".into(),
        theirs: None,
    }));
    o.put(
        "dialer-rejected",
        &encode_handshake_input(
            raw(Side::Dialer, Framing::Stream),
            &[input(0, &reject), Op::Fire],
        ),
    );
    println!("handshake: {} seeds", o.count);

    // ----- url_meta -----
    let mut o = Out::target(&root, "url_meta");
    let texts: &[(&str, &str)] = &[
        (
            "url-list",
            "nkcluster://127.0.0.1:1972;transport=tls;password=x, nkcluster://all;transport=wss",
        ),
        (
            "url-ipv6-ws-path",
            "nkcluster://[::1]:8080/cluster/ws;transport=ws;tls_verify=false",
        ),
        (
            "url-tls-options",
            " NKCLUSTER://node-1.example.com ; TRANSPORT = tls ; tls_depth=3;tls_certfile=/etc/c.pem;\
             tls_keyfile=/etc/k.pem;tls_cacertfile=/etc/ca.pem;tls_password=s3cret;tls_verify=TRUE",
        ),
        ("url-any-port", "nkcluster://all:0"),
        ("meta", "core;group=g1;master, m2;a=1"),
        (
            "meta-spaced",
            "  core ; group = group1 ;master ,meta2;labelA=1 ; labelB=2 ",
        ),
        ("meta-single", "worker"),
    ];
    for (name, text) in texts {
        o.put(name, text.as_bytes());
    }
    // Postcard form of metadata, for the validating deserializer.
    let meta = nkcluster_core::meta::Meta::parse("core;group=g1;master, m2;a=1").expect("valid");
    o.put(
        "meta-postcard",
        &postcard::to_allocvec(&meta).expect("serializable"),
    );
    println!("url_meta: {} seeds", o.count);

    // ----- cluster_message: one seed per class (the first byte picks it) -----
    use nkcluster_core::cluster::{
        AdoptRequest, CLASSES, CallRequest, ClusterRequest, EventMsg, JobCall, RouteRequest,
        SubscribeRequest, WireEvent,
    };
    let mut o = Out::target(&root, "cluster_message");
    let event = EventMsg {
        node: "w1".into(),
        class: "video".into(),
        task: Some(7),
        event: WireEvent::User(Bytes::from_static(b"payload")),
    };
    let requests = [
        ClusterRequest::Nodes,
        ClusterRequest::NodeInfo("w1".into()),
        ClusterRequest::LocalNodes,
        ClusterRequest::Adopt(AdoptRequest {
            worker: "w1".into(),
            urls: vec!["nkcluster://127.0.0.1:1972;transport=tcp".into()],
        }),
        ClusterRequest::Redirect("nkcluster://127.0.0.1:1982;transport=tcp".into()),
        ClusterRequest::Call(CallRequest {
            function: "echo".into(),
            args: vec!["a".into(), "b".into()],
        }),
        ClusterRequest::SpawnCall(CallRequest {
            function: "node".into(),
            args: vec![],
        }),
        ClusterRequest::Subscribe(SubscribeRequest {
            subscriber: "admin-1".into(),
            fanout: true,
        }),
        ClusterRequest::EventStream(event.clone()),
        ClusterRequest::Route(RouteRequest {
            node: "w1".into(),
            class: "nkcluster.job".into(),
            body: Bytes::from_static(b"body"),
            timeout_ms: 5000,
            hops: 1,
            exclusive: true,
        }),
        ClusterRequest::RecentEvents { local: true },
        ClusterRequest::Job(JobCall::Task {
            class: "video".into(),
            body: Bytes::from_static(b"spec"),
            id: Some(3),
        }),
        ClusterRequest::JobEvent(event),
    ];
    for r in &requests {
        let (class, body) = r.encode().expect("encodes");
        let pick = CLASSES.iter().position(|c| *c == class).expect("a class") as u8;
        let mut input = vec![pick];
        input.extend_from_slice(&body);
        o.put(&class.replace("nkcluster.", ""), &input);
    }
    println!("cluster_message: {} seeds", o.count);
}
