//! Ring balance: in every live control member's ring over `n` members and `P`
//! partitions, no member owns more than `ceil(P/n)`, only members own partitions, and
//! every member owns some while `n <= P` (with 128 control members and 256 partitions,
//! each owns two). Checked on every tick.

use std::collections::BTreeMap;

use super::{Violation, live_controls};
use crate::coresim::world::World;

/// This invariant's name.
pub const NAME: &str = "ring_balance";

/// See the module docs.
pub fn check(w: &World) -> Result<(), Violation> {
    for c in live_controls(w) {
        let node = &w.nodes[c];
        let Some(ring) = node.machine.ring() else {
            continue;
        };
        // The members it was placed for (with a ring settle delay, the view may be ahead).
        let members = ring.members();
        let p = ring.partitions() as usize;
        let cap = p.div_ceil(members.len().max(1));
        let mut load: BTreeMap<&str, usize> = members.iter().map(|m| (m.as_str(), 0)).collect();
        for part in 0..ring.partitions() {
            let owner = ring.owner(part).unwrap_or("");
            match load.get_mut(owner) {
                Some(n) => *n += 1,
                None => {
                    return Err(Violation::new(
                        NAME,
                        &[&node.id],
                        w.now(),
                        format!(
                            "partition {part} is owned by {owner:?}, not a member of {members:?}"
                        ),
                    ));
                }
            }
        }
        for (m, n) in load {
            if n > cap || (n == 0 && members.len() <= p) {
                return Err(Violation::new(
                    NAME,
                    &[&node.id, m],
                    w.now(),
                    format!(
                        "in {}'s ring, {m} owns {n} of {p} partitions over {} members (between 1 and {cap})",
                        node.id,
                        members.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}
