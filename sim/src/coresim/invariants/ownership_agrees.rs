//! No two control members that agree on the membership disagree on ownership: the ring
//! is a pure function of the live member set, so two live members (running, not
//! stopping) whose views list the same members, and whose rings are placed for them (a
//! ring settle delay lets the view run ahead), must own every partition alike. Checked
//! on every tick.

use std::collections::BTreeMap;

use super::{Violation, live_controls};
use crate::coresim::world::World;

/// This invariant's name.
pub const NAME: &str = "ownership_agrees";

/// See the module docs.
pub fn check(w: &World) -> Result<(), Violation> {
    let mut seen: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for c in live_controls(w) {
        let m = &w.nodes[c].machine;
        let members = m.members();
        if m.ring().is_some_and(|r| r.members() != members.as_slice()) {
            continue; // the view changed; the ring is placed after the settle delay
        }
        let Some(&first) = seen.get(&members) else {
            seen.insert(members, c);
            continue;
        };
        let (a, b) = (&w.nodes[first], &w.nodes[c]);
        let (ra, rb) = (a.machine.ring(), b.machine.ring());
        if ra == rb {
            continue;
        }
        let partitions = ra.or(rb).map_or(0, |r| r.partitions());
        let differs = (0..partitions)
            .find(|p| ra.and_then(|r| r.owner(*p)) != rb.and_then(|r| r.owner(*p)))
            .map_or_else(
                || "one has no ring".to_owned(),
                |p| {
                    format!(
                        "partition {p} is {:?}'s for {} and {:?}'s for {}",
                        ra.and_then(|r| r.owner(p)),
                        a.id,
                        rb.and_then(|r| r.owner(p)),
                        b.id
                    )
                },
            );
        return Err(Violation::new(
            NAME,
            &[&a.id, &b.id],
            w.now(),
            format!(
                "both see the {} members {:?}, but {differs}",
                m.members().len(),
                m.members()
            ),
        ));
    }
    Ok(())
}
