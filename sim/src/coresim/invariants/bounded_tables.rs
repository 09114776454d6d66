//! The memory of every peer-driven table stays under its limit: each live node's tables
//! ([`NodeMachine::table_sizes`]: members, workers remembered, subscribers, recent
//! events, open transfers, the data registry) and each connection's (our requests
//! awaiting replies). Checked on every tick.

use super::Violation;
use crate::coresim::world::World;

#[cfg(doc)]
use nkcluster_core::node::NodeMachine;

/// This invariant's name.
pub const NAME: &str = "bounded_tables";

/// See the module docs.
pub fn check(w: &World) -> Result<(), Violation> {
    for n in w.nodes.iter().filter(|n| n.alive) {
        if let Some(t) = n.machine.table_sizes().into_iter().find(|t| t.len > t.max) {
            return Err(Violation::new(
                NAME,
                &[&n.id],
                w.now(),
                format!(
                    "{} holds {} entries, over its limit of {}",
                    t.table, t.len, t.max
                ),
            ));
        }
    }
    let max = w.conn_config.max_pending_requests;
    let mut ends: Vec<_> = w
        .conns
        .iter()
        .filter(|(_, c)| c.conn.pending_requests() > max)
        .map(|(id, c)| (*id, c.node, c.conn.pending_requests()))
        .collect();
    ends.sort_unstable();
    if let Some((id, node, pending)) = ends.first() {
        let name = &w.nodes[*node].id;
        return Err(Violation::new(
            NAME,
            &[name],
            w.now(),
            format!("end {id} of {name} has {pending} requests pending, over its limit of {max}"),
        ));
    }
    Ok(())
}
