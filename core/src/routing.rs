//! Where a request for a node goes: answered here, sent on the node's own link, or handed
//! to a control node that routes it further. A routed request is forwarded at most once
//! by the ring (`hops`), so views that disagree for a moment cannot bounce it around;
//! when the owner does not hold the node (a hand-off in flight), the other members are
//! asked once each.

/// What this node knows that routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteView<'a> {
    /// This node's id.
    pub me: &'a str,
    /// Whether this node is a control member (it has a ring).
    pub is_control: bool,
    /// Whether the target has a link to this node.
    pub target_linked: bool,
    /// A control node this node is linked to (workers and admin clients route through it).
    pub control_link: Option<&'a str>,
    /// The ring owner of the target (control members).
    pub owner: Option<&'a str>,
    /// We own the target, its link failed and we are redialing it.
    pub target_reconnecting: bool,
    /// The target is a worker whose link here is lost (listed `not_connected` here; it
    /// rediscovers the cluster by itself).
    pub target_lost: bool,
}

/// The next step of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteStep {
    /// This node is the target.
    Local,
    /// On the target's own link.
    Direct,
    /// To control node `via`, as a route request carrying `hops`; a control member that
    /// hears `unknown_node` back asks the other members (`fan_out`).
    Via {
        /// The control node to send it to.
        via: String,
        /// The hop count the route request carries.
        hops: u8,
        /// Whether to ask the other members when `via` does not hold the target.
        fan_out: bool,
    },
    /// Nobody here can reach it: `unknown_node`.
    Unknown,
    /// We serve it but its link is down (we redial it, or it rediscovers us):
    /// `not_connected`.
    NotConnected,
}

/// Routes a request for `target` that has already been forwarded `hops` times.
pub fn route(view: &RouteView<'_>, target: &str, hops: u8) -> RouteStep {
    if target == view.me {
        return RouteStep::Local;
    }
    if view.target_linked {
        return RouteStep::Direct;
    }
    if view.is_control && view.target_reconnecting {
        return RouteStep::NotConnected;
    }
    // Lost here and still ours: it is not connected (not unknown) until it is back.
    if view.is_control && view.target_lost && view.owner.is_none_or(|o| o == view.me) {
        return RouteStep::NotConnected;
    }
    if !view.is_control {
        return match view.control_link {
            Some(c) => RouteStep::Via {
                via: c.to_owned(),
                hops: 0,
                fan_out: false,
            },
            None => RouteStep::Unknown,
        };
    }
    match view.owner {
        Some(owner) if hops == 0 && owner != view.me => RouteStep::Via {
            via: owner.to_owned(),
            hops: hops + 1,
            fan_out: true,
        },
        _ => RouteStep::Unknown,
    }
}

/// The members to ask, in order, when the owner answered `unknown_node`: every live
/// member but ourselves and the owner.
pub fn fan_out(live: &[String], me: &str, owner: &str) -> Vec<String> {
    live.iter()
        .filter(|m| *m != me && *m != owner)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(is_control: bool, linked: bool, owner: Option<&'a str>) -> RouteView<'a> {
        RouteView {
            me: "c1",
            is_control,
            target_linked: linked,
            control_link: if is_control { None } else { Some("c2") },
            owner,
            target_reconnecting: false,
            target_lost: false,
        }
    }

    fn via(v: &str, hops: u8, fan_out: bool) -> RouteStep {
        RouteStep::Via {
            via: v.into(),
            hops,
            fan_out,
        }
    }

    #[test]
    fn local_direct_then_the_ring_owner_once() {
        assert_eq!(
            route(&view(true, false, Some("c3")), "c1", 0),
            RouteStep::Local
        );
        assert_eq!(
            route(&view(true, true, Some("c3")), "w1", 0),
            RouteStep::Direct
        );
        assert_eq!(
            route(&view(true, false, Some("c3")), "w1", 0),
            via("c3", 1, true)
        );
        // Forwarded once already: not again.
        assert_eq!(
            route(&view(true, false, Some("c3")), "w1", 1),
            RouteStep::Unknown
        );
        // We own it but do not hold it.
        assert_eq!(
            route(&view(true, false, Some("c1")), "w1", 0),
            RouteStep::Unknown
        );
        assert_eq!(route(&view(true, false, None), "w1", 0), RouteStep::Unknown);
    }

    #[test]
    fn workers_and_admin_clients_route_through_their_control_link() {
        assert_eq!(
            route(&view(false, false, None), "w9", 0),
            via("c2", 0, false)
        );
        assert_eq!(route(&view(false, true, None), "c2", 0), RouteStep::Direct);
        let alone = RouteView {
            control_link: None,
            ..view(false, false, None)
        };
        assert_eq!(route(&alone, "w9", 0), RouteStep::Unknown);
    }

    #[test]
    fn a_worker_being_redialed_is_not_connected_not_unknown() {
        let v = RouteView {
            target_reconnecting: true,
            ..view(true, false, Some("c1"))
        };
        assert_eq!(route(&v, "w1", 0), RouteStep::NotConnected);
        assert_eq!(route(&v, "w1", 1), RouteStep::NotConnected);
    }

    #[test]
    fn a_lost_worker_we_own_is_not_connected_and_one_owned_elsewhere_goes_there() {
        let lost = |owner| RouteView {
            target_lost: true,
            ..view(true, false, owner)
        };
        assert_eq!(route(&lost(Some("c1")), "w1", 0), RouteStep::NotConnected);
        assert_eq!(route(&lost(Some("c1")), "w1", 1), RouteStep::NotConnected);
        assert_eq!(route(&lost(None), "w1", 0), RouteStep::NotConnected);
        assert_eq!(route(&lost(Some("c3")), "w1", 0), via("c3", 1, true));
        assert_eq!(route(&lost(Some("c3")), "w1", 1), RouteStep::Unknown);
    }

    #[test]
    fn the_fan_out_asks_every_other_member_once() {
        let live = ["c1", "c2", "c3", "c4"].map(String::from);
        assert_eq!(fan_out(&live, "c1", "c3"), ["c2", "c4"]);
        assert_eq!(fan_out(&live[..1], "c1", "c1"), Vec::<String>::new());
    }
}
