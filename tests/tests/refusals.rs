//! A worker that tries what only control members and admin clients may do, for real over
//! TCP on loopback (a control node with its own password and a worker secret, and a
//! worker that proves only the worker secret): every cluster request but its own events
//! is refused with `forbidden`, the control node logs who tried what, and the link stays
//! up (the worker's own events still arrive afterwards). Application handlers serve
//! workers only when added for them.

use std::time::Duration;

use bytes::Bytes;
use nkcluster::node::{Handlers, NodeEvent};
use nkcluster_core::cluster::{
    AdoptRequest, ClusterRequest, EventMsg, FilePart, JobCall, RouteRequest, SubscribeRequest,
    WireEvent,
};
use nkcluster_core::conn::RequestError;
use nkcluster_core::handshake::Role;
use nkcluster_core::status::Status;
use nkcluster_tests::inproc::{config, start_linked_worker, start_with, wait_event};

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_may_send_its_own_events_and_nothing_else() {
    let mut c = config("c1", true, "nkcluster://127.0.0.1:0;transport=tcp");
    c.password = "control-secret".into();
    c.worker_password = Some("worker-secret".into());
    // An application handler for operators, and one meant for workers.
    let mut handlers = Handlers::builtin("c1");
    handlers.insert("app.shutdown", |_| Ok(Bytes::from_static(b"shut down")));
    handlers.insert_for_workers("app.report", |_| Ok(Bytes::from_static(b"noted")));
    let control = start_with(c, Some(handlers)).await;
    let mut w = config("w1", false, "");
    w.password = "worker-secret".into();
    let mut heard = control.subscribe();
    let worker = start_linked_worker(&control, w).await;

    let event_of = |node: &str| EventMsg {
        node: node.into(),
        class: "video".into(),
        task: Some(1),
        event: WireEvent::TaskStarted,
    };
    let attacks = [
        ClusterRequest::Nodes,
        ClusterRequest::LocalNodes,
        ClusterRequest::Route(RouteRequest {
            node: "c1".into(),
            class: nkcluster_core::cluster::CLASS_JOB.into(),
            body: Bytes::new(),
            timeout_ms: 1000,
            hops: 0,
            exclusive: false,
        }),
        ClusterRequest::Job(JobCall::SetStatus(Status::Stopped)),
        ClusterRequest::Adopt(AdoptRequest {
            worker: "w9".into(),
            urls: vec!["nkcluster://192.0.2.1:1972".into()],
        }),
        ClusterRequest::Redirect("nkcluster://192.0.2.1:1972".into()),
        ClusterRequest::Subscribe(SubscribeRequest {
            subscriber: "w1".into(),
            fanout: true,
        }),
        ClusterRequest::JobEvent(event_of("w2")),
        // A file onto the control node (its files_dir), and to another node through it.
        ClusterRequest::Job(JobCall::SendFile(FilePart {
            path: "x/authorized_keys".into(),
            offset: 0,
            total: 3,
            data: Bytes::from_static(b"key"),
            sha256: None,
        })),
    ];
    for attack in attacks {
        let (class, body) = attack.encode().expect("encodes");
        match worker.request("c1", class, body, T).await {
            Err(RequestError::Remote(e)) => {
                assert_eq!(e.code, "forbidden", "{class}: {e:?}");
                let why = format!("a worker may not send {class} (only its own events)");
                assert!(e.message.contains(&why), "{class}: {e:?}");
            }
            other => panic!("{class} from a worker: {other:?}"),
        }
        wait_event(&mut heard, "the refusal, logged", |e| {
            matches!(e, NodeEvent::Refused { peer, role: Role::Worker, kind } if peer == "w1" && kind == class)
        })
        .await;
    }
    // An application handler is for operators unless it was added for workers.
    match worker.request("c1", "app.shutdown", Bytes::new(), T).await {
        Err(RequestError::Remote(e)) => {
            assert_eq!(e.code, "forbidden", "{e:?}");
            assert!(
                e.message.contains("a worker may not send app.shutdown"),
                "{e:?}"
            );
        }
        other => panic!("app.shutdown from a worker: {other:?}"),
    }
    wait_event(&mut heard, "the handler refusal, logged", |e| {
        matches!(e, NodeEvent::Refused { peer, role: Role::Worker, kind } if peer == "w1" && kind == "app.shutdown")
    })
    .await;
    assert_eq!(
        worker
            .request("c1", "app.report", Bytes::new(), T)
            .await
            .expect("a handler for workers"),
        Bytes::from_static(b"noted")
    );
    // Nothing happened at c1, and the link is still up: its own events still pass.
    assert_eq!(control.status(), Status::Ready);
    let (class, body) = ClusterRequest::JobEvent(event_of("w1"))
        .encode()
        .expect("encodes");
    assert_eq!(
        worker
            .request("c1", class, body, T)
            .await
            .expect("own event"),
        Bytes::new()
    );
}
