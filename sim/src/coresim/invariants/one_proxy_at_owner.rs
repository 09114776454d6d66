//! Once the live control members' views agree, every live worker has exactly one proxy,
//! at its ring owner, and the worker itself keeps one control link, to that owner. The
//! [`Oracle`] says who is live and who owns what; a phase that must converge checks this
//! at its end (and a fault-free phase must reach it within its bound).

use std::collections::BTreeMap;

use nkcluster_core::handshake::Role;

use super::Violation;
use crate::coresim::oracle::Oracle;
use crate::coresim::world::World;

/// This invariant's name.
pub const NAME: &str = "one_proxy_at_owner";

/// Where the workers are served, when the invariant holds.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Workers per live control member (in the oracle's order).
    pub per_control: Vec<usize>,
    /// Each live worker's proxy.
    pub proxy_of: BTreeMap<String, String>,
}

impl Placement {
    /// Workers served by another control node in `after` than here.
    pub fn moved_to(&self, after: &Placement) -> usize {
        self.proxy_of
            .iter()
            .filter(|(wk, p)| after.proxy_of.get(*wk).is_some_and(|q| q != *p))
            .count()
    }
}

/// See the module docs. `Err` names the first thing that does not match.
pub fn check(w: &World, oracle: &Oracle) -> Result<Placement, Violation> {
    let now = w.now();
    for &c in &oracle.control_idx {
        let n = &w.nodes[c];
        let view = n.machine.members();
        if view != oracle.controls {
            let missing: Vec<&String> = oracle
                .controls
                .iter()
                .filter(|m| !view.contains(m))
                .collect();
            let extra: Vec<&String> = view
                .iter()
                .filter(|m| !oracle.controls.contains(m))
                .collect();
            let records: Vec<String> = n
                .machine
                .view()
                .iter()
                .map(|r| {
                    format!(
                        "{} {:?} gen {} inc {}",
                        r.id, r.status, r.generation, r.incarnation
                    )
                })
                .collect();
            let others: Vec<String> = oracle
                .control_idx
                .iter()
                .map(|i| {
                    let m = &w.nodes[*i].machine;
                    let linked: Vec<&str> = m.links().control_links().map(|(p, _)| p).collect();
                    format!(
                        "{} sees {:?} linked to {:?}",
                        w.nodes[*i].id,
                        m.members(),
                        linked
                    )
                })
                .collect();
            return Err(Violation::new(
                NAME,
                &[&n.id],
                now,
                format!(
                    "views disagree: {} sees {} members of {} (missing {missing:?}, extra {extra:?}); its view: {}; all views: {}",
                    n.id,
                    view.len(),
                    oracle.controls.len(),
                    records.join(", "),
                    others.join("; ")
                ),
            ));
        }
    }
    let mut proxies: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut per_control = Vec::new();
    for &c in &oracle.control_idx {
        let n = &w.nodes[c];
        let mut count = 0;
        for (peer, l) in n.machine.links().iter() {
            if l.summary.role == Role::Worker {
                proxies.entry(peer).or_default().push(n.id.as_str());
                count += 1;
            }
        }
        per_control.push(count);
    }
    let mut proxy_of = BTreeMap::new();
    for &wk in &oracle.workers {
        let node = &w.nodes[wk];
        let id = node.id.as_str();
        let owner = oracle.owner_of(id).unwrap_or("(no control member)");
        let held = proxies.get(id).map(Vec::as_slice).unwrap_or_default();
        if held != [owner] {
            return Err(Violation::new(
                NAME,
                &[id, owner],
                now,
                format!("worker {id} has proxies at {held:?}; its owner is {owner}"),
            ));
        }
        let mine: Vec<&str> = node
            .machine
            .links()
            .iter()
            .filter(|(_, l)| l.summary.role == Role::Control)
            .map(|(p, _)| p)
            .collect();
        if mine != [owner] {
            return Err(Violation::new(
                NAME,
                &[id, owner],
                now,
                format!("worker {id} keeps control links to {mine:?}; its owner is {owner}"),
            ));
        }
        proxy_of.insert(id.to_owned(), owner.to_owned());
    }
    Ok(Placement {
        per_control,
        proxy_of,
    })
}
