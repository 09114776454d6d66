//! A cluster of nkcluster containers for the multi-host fault tests: control nodes and
//! workers, each a container of the image built from this test build, on two private
//! bridge networks of their own.
//!
//! - `front`: every node. Workers dial the control nodes there (by network alias, through
//!   Docker's DNS) and listen there, so that a control node can adopt them.
//! - `mesh`: the control nodes only. They find each other there (their `cluster_addr`
//!   names the others' mesh aliases), so the mesh links run on it: disconnecting one
//!   control node from `mesh` splits the control cluster while every worker still
//!   reaches every control node.
//!
//! Faults are the engine's own: `docker network disconnect` (the cut host's packets are
//! dropped, nothing is reset), `docker kill` (SIGKILL), `docker restart` (SIGTERM, then a
//! new run). Everything is removed when the fleet drops (its [`Scope`]); a failing test
//! prints every container's last log lines first (`NKCLUSTER_FLEET_LOGS=1`: every line,
//! pass or fail).

use crate::engine::{Scope, docker, docker_ok};

/// The port every node listens on (plain TCP: the cheapest transport on a loaded
/// machine; the fault paths do not depend on it).
pub const PORT: u16 = 1972;

/// PBKDF2 rounds of the test cluster (every start derives the keys; the default 600,000
/// costs a debug build a noticeable share of two cores, nine times over).
pub const KEY_ITERATIONS: u32 = 1000;

/// Link timing of the fleet: a ping every `ping_ms`, a link silent for `idle_ms` is
/// dead (the failure detector).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Ping interval, milliseconds.
    pub ping_ms: u64,
    /// Idle timeout (detection time), milliseconds.
    pub idle_ms: u64,
}

/// The running containers.
pub struct Fleet {
    scope: Scope,
    image: String,
    front: String,
    mesh: String,
    /// Control node ids (`ctl1`, ...).
    pub controls: Vec<String>,
    /// Worker ids (`w1`, ...).
    pub workers: Vec<String>,
    timing: Timing,
}

impl Fleet {
    /// Builds the image, makes both networks and starts `controls` control nodes and
    /// `workers` workers (not waiting for them to link).
    pub fn start(controls: usize, workers: usize, timing: Timing) -> Fleet {
        let mut scope = Scope::new("flt");
        let image = scope.build_image();
        let front = scope.network("front");
        let mesh = scope.network("mesh");
        let fleet = Fleet {
            scope,
            image,
            front,
            mesh,
            controls: (1..=controls).map(|i| format!("ctl{i}")).collect(),
            workers: (1..=workers).map(|i| format!("w{i}")).collect(),
            timing,
        };
        for c in &fleet.controls {
            fleet.create(c, true);
        }
        for w in &fleet.workers {
            fleet.create(w, false);
        }
        let mut args = vec!["start".to_owned()];
        args.extend(fleet.all().map(|id| fleet.scope.name(id)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        fleet
    }

    /// Every node id, control nodes first.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.controls.iter().chain(&self.workers)
    }

    fn url(host: &str) -> String {
        format!("nkcluster://{host}:{PORT};transport=tcp")
    }

    fn mesh_alias(id: &str) -> String {
        format!("{id}-mesh")
    }

    /// `docker create` of node `id`, attached to `front` (and `mesh` for a control node).
    fn create(&self, id: &str, control: bool) {
        let cluster_addr: Vec<String> = if control {
            self.controls
                .iter()
                .filter(|c| *c != id)
                .map(|c| Self::url(&Self::mesh_alias(c)))
                .collect()
        } else {
            self.controls.iter().map(|c| Self::url(c)).collect()
        };
        let mut args: Vec<String> = vec!["create".into(), "--init".into()];
        args.extend(self.scope.container_args(id));
        args.extend(
            [
                "--hostname",
                id,
                "--network",
                &self.front,
                "--network-alias",
                id,
                "-e",
                "NKCLUSTER_LOG=info",
                &self.image,
                "node",
                "--node-id",
                id,
                "--control",
                if control { "true" } else { "false" },
                "--listen",
                &Self::url("all"),
                "--cluster-addr",
                &cluster_addr.join(", "),
                "--ping-interval-ms",
                &self.timing.ping_ms.to_string(),
                "--idle-timeout-ms",
                &self.timing.idle_ms.to_string(),
                "--key-iterations",
                &KEY_ITERATIONS.to_string(),
            ]
            .map(str::to_owned),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        if control {
            self.connect(id, &self.mesh, &Self::mesh_alias(id));
        }
    }

    fn connect(&self, id: &str, network: &str, alias: &str) {
        docker_ok(&[
            "network",
            "connect",
            "--alias",
            alias,
            network,
            &self.scope.name(id),
        ]);
    }

    fn disconnect(&self, id: &str, network: &str) {
        docker_ok(&["network", "disconnect", network, &self.scope.name(id)]);
    }

    /// Node `id`'s URL on `front` (its address there, which a reconnect may change), if
    /// it is attached.
    pub fn front_url(&self, id: &str) -> Option<String> {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
            self.front
        );
        let out = docker(&["inspect", "-f", &format, &self.scope.name(id)]);
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !ip.is_empty()).then(|| Self::url(&ip))
    }

    /// Cuts control node `id` off both networks (a host whose cable is pulled).
    pub fn cut(&self, id: &str) {
        self.disconnect(id, &self.front);
        self.disconnect(id, &self.mesh);
    }

    /// Plugs control node `id` back into both networks.
    pub fn heal(&self, id: &str) {
        self.connect(id, &self.front, id);
        self.connect(id, &self.mesh, &Self::mesh_alias(id));
    }

    /// Cuts control node `id` off the mesh only: the control cluster splits, the workers
    /// still reach every control node.
    pub fn split(&self, id: &str) {
        self.disconnect(id, &self.mesh);
    }

    /// Ends a [`split`](Self::split).
    pub fn unsplit(&self, id: &str) {
        self.connect(id, &self.mesh, &Self::mesh_alias(id));
    }

    /// `docker kill` (SIGKILL) of node `id`.
    pub fn kill(&self, id: &str) {
        docker_ok(&["kill", &self.scope.name(id)]);
    }

    /// `docker start` of a killed node `id` (a new run, same networks and aliases).
    pub fn start_again(&self, id: &str) {
        docker_ok(&["start", &self.scope.name(id)]);
    }

    /// `docker restart` of node `id`: SIGTERM (it leaves gracefully), then a new run.
    pub fn restart(&self, id: &str) {
        docker_ok(&["restart", "-t", "5", &self.scope.name(id)]);
    }

    /// The last `lines` log lines of node `id`.
    pub fn logs(&self, id: &str, lines: usize) -> String {
        let out = docker(&["logs", "--tail", &lines.to_string(), &self.scope.name(id)]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let keep = std::env::var_os("NKCLUSTER_FLEET_LOGS").is_some();
        if std::thread::panicking() || keep {
            let lines = if keep { 100_000 } else { 40 };
            let ids: Vec<String> = self.all().cloned().collect();
            for id in ids {
                let logs = std::panic::catch_unwind(|| self.logs(&id, lines)).unwrap_or_default();
                eprintln!("---- last log lines of {id}:\n{logs}");
            }
        }
    }
}
