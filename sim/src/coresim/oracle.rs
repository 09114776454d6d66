//! What the cluster should look like once a phase has settled, from what the run did
//! rather than from what the nodes believe: the live control members are the control
//! nodes running (not stopping), the live workers the workers running, the ring is the
//! placement over the live members, and every live worker's proxy belongs at its owner
//! in that ring.

use nkcluster_core::ring::{self, Ring};

use super::invariants::{Violation, live_controls, one_proxy_at_owner};
use super::world::{NodeIdx, World};

/// The settled cluster. See the module docs.
#[derive(Debug, Clone)]
pub struct Oracle {
    /// Live control members, sorted.
    pub controls: Vec<String>,
    /// Their indexes, in the same order.
    pub control_idx: Vec<NodeIdx>,
    /// Live workers, by index.
    pub workers: Vec<NodeIdx>,
    /// The ring over the live members (`None`: no control member is live).
    pub ring: Option<Ring>,
}

impl Oracle {
    /// The oracle for the world as it is now.
    pub fn of(w: &World) -> Oracle {
        let mut controls: Vec<(String, NodeIdx)> = live_controls(w)
            .into_iter()
            .map(|i| (w.nodes[i].id.clone(), i))
            .collect();
        controls.sort();
        let ids: Vec<String> = controls.iter().map(|(id, _)| id.clone()).collect();
        let partitions = controls.first().map_or(ring::PARTITIONS_DEFAULT, |(_, i)| {
            w.nodes[*i].identity.partitions
        });
        let workers = (0..w.nodes.len())
            .filter(|i| w.nodes[*i].alive && !w.nodes[*i].machine.is_control())
            .collect();
        Oracle {
            ring: ring::place(partitions, &ids),
            control_idx: controls.iter().map(|(_, i)| *i).collect(),
            controls: ids,
            workers,
        }
    }

    /// Where `worker`'s proxy belongs.
    pub fn owner_of(&self, worker: &str) -> Option<&str> {
        self.ring.as_ref().and_then(|r| r.owner_of(worker))
    }

    /// Whether the world matches the oracle: see [`one_proxy_at_owner::check`].
    pub fn check(&self, w: &World) -> Result<one_proxy_at_owner::Placement, Violation> {
        one_proxy_at_owner::check(w, self)
    }
}
