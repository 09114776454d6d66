//! The audit line of a request that acts on a node's machine: the built-in classes
//! `nkcluster.os` (processes) and `nkcluster.docker` (containers). Before a node
//! dispatches a cluster request it asks [`describe`]; for these classes the answer is
//! the class and what the request asks, in words (the exact argv or image), which the
//! shell logs with the peer and its role, also for requests the node then refuses.

use crate::cluster::{ClusterRequest, JobCall};
use crate::{docker, os};

/// The audited class a request is for and what it asks (`None`: any other request).
/// A routed request is described once, naming its target; a route inside a route
/// (never sent by a node: a routed request is forwarded at most once) is not decoded.
pub fn describe(req: &ClusterRequest) -> Option<(&'static str, String)> {
    match req {
        ClusterRequest::Job(call) => describe_call(call),
        ClusterRequest::Route(r) => match ClusterRequest::decode(&r.class, &r.body) {
            Some(Ok(ClusterRequest::Job(call))) => describe_call(&call)
                .map(|(class, what)| (class, format!("{what} (routed to {})", r.node))),
            _ => None,
        },
        _ => None,
    }
}

fn describe_call(call: &JobCall) -> Option<(&'static str, String)> {
    let class = match call {
        JobCall::Request { class, .. }
        | JobCall::Task { class, .. }
        | JobCall::Command { class, .. } => class.as_str(),
        _ => return None,
    };
    if class == os::CLASS {
        Some((os::CLASS, describe_os(call)))
    } else if class == docker::CLASS {
        Some((docker::CLASS, describe_docker(call)))
    } else {
        None
    }
}

/// An argv, quoted, so that the log says exactly what runs.
fn argv(argv: &[String]) -> String {
    format!("{argv:?}")
}

fn describe_os(call: &JobCall) -> String {
    match call {
        JobCall::Request { body, .. } => match postcard::from_bytes::<os::OsRequest>(body) {
            Ok(os::OsRequest::Exec(e)) => format!("exec {}", argv(&e.command.argv)),
            Ok(os::OsRequest::List) => "list".into(),
            Err(_) => "a request that does not decode".into(),
        },
        JobCall::Task { body, .. } => match postcard::from_bytes::<os::ProcSpec>(body) {
            Ok(s) => format!("start {}", argv(&s.command.argv)),
            Err(_) => "a start that does not decode".into(),
        },
        JobCall::Command { task, body, .. } => match postcard::from_bytes::<os::OsCommand>(body) {
            Ok(os::OsCommand::Stop { .. }) => format!("stop task {task}"),
            Ok(os::OsCommand::Tail { lines }) => format!("tail {lines} of task {task}"),
            Err(_) => format!("a command for task {task} that does not decode"),
        },
        _ => String::new(),
    }
}

fn describe_docker(call: &JobCall) -> String {
    match call {
        JobCall::Request { body, .. } => {
            match postcard::from_bytes::<docker::DockerRequest>(body) {
                Ok(r) => format!("{r:?}"),
                Err(_) => "a request that does not decode".into(),
            }
        }
        JobCall::Task { body, .. } => match postcard::from_bytes::<docker::RunSpec>(body) {
            Ok(s) => format!("run {:?} {}", s.image, argv(&s.command)),
            Err(_) => "a run that does not decode".into(),
        },
        JobCall::Command { task, .. } => format!("a command for task {task}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::RouteRequest;

    fn enc<T: serde::Serialize>(v: &T) -> Bytes {
        Bytes::from(postcard::to_allocvec(v).expect("encodes"))
    }

    fn job(call: JobCall) -> ClusterRequest {
        ClusterRequest::Job(call)
    }

    fn routed(node: &str, inner: &ClusterRequest) -> ClusterRequest {
        let (class, body) = inner.encode().expect("encodes");
        ClusterRequest::Route(RouteRequest {
            node: node.into(),
            class: class.into(),
            body,
            timeout_ms: 1000,
            hops: 0,
            exclusive: false,
        })
    }

    #[test]
    fn os_requests_say_exactly_what_runs() {
        let exec = job(JobCall::Request {
            class: os::CLASS.into(),
            body: enc(&os::OsRequest::Exec(os::ExecSpec {
                command: os::Command::new(["rm", "-rf", "/tmp/x y"]),
                timeout_ms: None,
            })),
        });
        assert_eq!(
            describe(&exec),
            Some((os::CLASS, r#"exec ["rm", "-rf", "/tmp/x y"]"#.into()))
        );
        let start = job(JobCall::Task {
            class: os::CLASS.into(),
            body: enc(&os::ProcSpec {
                command: os::Command::new(["sleep", "600"]),
                ..Default::default()
            }),
            id: None,
        });
        assert_eq!(
            describe(&start),
            Some((os::CLASS, r#"start ["sleep", "600"]"#.into()))
        );
        let stop = job(JobCall::Command {
            class: os::CLASS.into(),
            task: 7,
            body: enc(&os::OsCommand::Stop { grace_ms: None }),
        });
        assert_eq!(describe(&stop), Some((os::CLASS, "stop task 7".into())));
        let garbage = job(JobCall::Command {
            class: os::CLASS.into(),
            task: 7,
            body: Bytes::from_static(&[0xff, 0xff]),
        });
        assert_eq!(
            describe(&garbage),
            Some((
                os::CLASS,
                "a command for task 7 that does not decode".into()
            ))
        );
    }

    #[test]
    fn docker_requests_name_the_image_and_command() {
        let run = job(JobCall::Task {
            class: docker::CLASS.into(),
            body: enc(&docker::RunSpec {
                command: vec!["/hello".into(), "x".into()],
                ..docker::RunSpec::new("nkqs:1")
            }),
            id: Some(3),
        });
        assert_eq!(
            describe(&run),
            Some((docker::CLASS, r#"run "nkqs:1" ["/hello", "x"]"#.into()))
        );
        let list = job(JobCall::Request {
            class: docker::CLASS.into(),
            body: enc(&docker::DockerRequest::List),
        });
        assert_eq!(describe(&list), Some((docker::CLASS, "List".into())));
    }

    #[test]
    fn a_routed_request_names_its_target_once_and_other_requests_are_not_audited() {
        let list = job(JobCall::Request {
            class: os::CLASS.into(),
            body: enc(&os::OsRequest::List),
        });
        assert_eq!(
            describe(&routed("dev4", &list)),
            Some((os::CLASS, "list (routed to dev4)".into()))
        );
        // A route in a route is not decoded (however deep a peer nests them).
        assert_eq!(describe(&routed("dev5", &routed("dev4", &list))), None);
        let other = job(JobCall::Request {
            class: "app.video".into(),
            body: Bytes::new(),
        });
        assert_eq!(describe(&other), None);
        assert_eq!(describe(&job(JobCall::StopTask(1))), None);
    }
}
