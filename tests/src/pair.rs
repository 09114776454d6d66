//! A control daemon c1 and one worker daemon linked to it, driven by the real CLI: what
//! the job-class tests (OS processes, Docker containers) start from.

use std::process::Command;

use crate::{DEADLINE, Daemon, has, nkcluster_bin, run_with_deadline};

/// A control node c1 and a worker linked to it.
pub struct CliPair {
    /// The control daemon.
    pub control: Daemon,
    /// The worker daemon.
    pub worker: Daemon,
    /// The worker's id.
    pub worker_id: String,
    /// The control node's TCP port.
    pub port: u16,
}

impl CliPair {
    /// Starts c1 and worker `worker_id`, linked at both ends when this returns.
    pub fn start(worker_id: &str) -> CliPair {
        let (mut control, port) = Daemon::control("c1", &[]);
        let addr = format!("nkcluster://127.0.0.1:{port}");
        let mut worker = Daemon::worker(worker_id, &addr, &[]);
        worker.wait_line("worker linked", |l| {
            l.contains("link up") && has(l, "peer", "c1")
        });
        control.wait_line("worker linked at the control node", |l| {
            l.contains("link up") && has(l, "peer", worker_id)
        });
        CliPair {
            control,
            worker,
            worker_id: worker_id.to_owned(),
            port,
        }
    }

    /// Runs `nkcluster ARGS` against c1 (no other `NKCLUSTER_*` setting of the test's
    /// environment), within the deadline.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(nkcluster_bin());
        cmd.args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NKCLUSTER_")) {
            cmd.env_remove(k);
        }
        cmd.env(
            "NKCLUSTER_ADDR",
            format!("nkcluster://127.0.0.1:{}", self.port),
        );
        run_with_deadline(&mut cmd, DEADLINE)
    }

    /// `nkcluster events --follow --json`, subscribed when this returns.
    pub fn follow_events(&self) -> Daemon {
        let mut d = Daemon::spawn(
            "events",
            &["events", "--follow", "--json"],
            &[(
                "NKCLUSTER_ADDR",
                &format!("nkcluster://127.0.0.1:{}", self.port),
            )],
        );
        d.wait_line("subscribed", |l| l.contains("following the events"));
        d
    }
}
