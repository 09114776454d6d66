//! The steps of a proxy hand-off at the old proxy, as requests the machine sends
//! ([`Output::Ask`]) and answers it waits for ([`NodeMachine::handle_answer`]):
//!
//! - **adopt**: the owner is asked to dial a listening worker; its answer tells the proxy
//!   machine (success releases our link, failure falls back to a redirect);
//! - **probe, then redirect**: a worker is never sent to an owner that does not answer (it
//!   may hang without failure detection noticing yet): the owner is probed first; silence
//!   keeps the worker here and the proxy machine retries later. Once the owner answered,
//!   the worker is told to reconnect to the owner's URLs, and our links with it close
//!   whatever it answers.
//!
//! Identity probes (see [`identity`](super::identity)) are asked and answered the same
//! way, with ids from the same counter.
//!
//! An owner learned through gossip may not be linked yet (it is joining): the step waits
//! for its link, at most the step's timeout.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::*;
use crate::cluster::AdoptRequest;
use crate::error::ErrorCode;

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffTimes {
    /// The owner dials the worker (connect plus handshake).
    pub adopt: Duration,
    /// The owner answers a probe (the link's idle timeout).
    pub probe: Duration,
    /// The worker acknowledges a redirect.
    pub redirect: Duration,
    /// The old link of a node id answers its probe when another run of that id links
    /// (see [`crate::mesh`]): silent past this, it is replaced.
    pub identity: Duration,
}

impl Default for HandoffTimes {
    fn default() -> Self {
        HandoffTimes {
            adopt: Duration::from_secs(10),
            probe: Duration::from_secs(15),
            redirect: Duration::from_secs(3),
            identity: Duration::from_secs(5),
        }
    }
}

/// How a hand-off step ended, when it is worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffStep {
    /// The owner could not adopt the worker: it is redirected instead.
    AdoptFailed,
    /// The owner did not answer its probe: the worker stays here for now.
    OwnerSilent,
    /// The owner announced no address a worker could dial: the worker stays here.
    NoDialableUrl,
    /// The worker did not acknowledge its redirect: our links close anyway.
    RedirectUnacknowledged,
    /// The worker was told to reconnect to its owner.
    Redirected,
}

impl HandoffStep {
    /// What happened, for a log line (the worker and owner go alongside).
    pub fn describe(self) -> &'static str {
        match self {
            HandoffStep::Redirected => "proxy moved (worker redirected)",
            HandoffStep::AdoptFailed => "owner could not adopt the worker; redirecting it",
            HandoffStep::OwnerSilent => "owner does not answer; the worker stays here for now",
            HandoffStep::NoDialableUrl => {
                "cannot redirect the worker: its owner announced no address a worker could dial; the worker stays here"
            }
            HandoffStep::RedirectUnacknowledged => "redirect not acknowledged; closing anyway",
        }
    }

    /// Whether the step went wrong (a warning) rather than as planned.
    pub fn is_trouble(self) -> bool {
        self != HandoffStep::Redirected
    }
}

/// One step in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Adopt {
        worker: String,
        owner: String,
        urls: Vec<String>,
    },
    Probe {
        worker: String,
        owner: String,
        urls: Vec<String>,
    },
    Redirect {
        worker: String,
        owner: String,
        urls: Vec<String>,
    },
}

impl Step {
    /// Who the step's request goes to.
    fn target(&self) -> &str {
        match self {
            Step::Adopt { owner, .. } | Step::Probe { owner, .. } => owner,
            Step::Redirect { worker, .. } => worker,
        }
    }
}

/// The steps in flight and those waiting for their target's link.
#[derive(Debug, Default)]
pub(super) struct Steps {
    next_id: u64,
    asked: BTreeMap<u64, Step>,
    /// Waiting steps by the order they started in, with their deadline.
    waiting: BTreeMap<u64, (Instant, Step)>,
    next_waiting: u64,
    /// The waiting steps of each target, and their deadlines (a link coming up and the
    /// next deadline cost O(log n), not a pass over every waiting step).
    waiting_for: BTreeMap<String, BTreeSet<u64>>,
    waiting_until: BTreeSet<(Instant, u64)>,
}

impl Steps {
    /// A new id for an [`Output::Ask`] (hand-off steps and identity probes share them).
    pub(super) fn next_ask_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn wait(&mut self, until: Instant, step: Step) {
        let seq = self.next_waiting;
        self.next_waiting += 1;
        self.waiting_for
            .entry(step.target().to_owned())
            .or_default()
            .insert(seq);
        self.waiting_until.insert((until, seq));
        self.waiting.insert(seq, (until, step));
    }

    /// Takes the waiting steps of `target`, in the order they started.
    fn take_for(&mut self, target: &str) -> Vec<Step> {
        let seqs = self.waiting_for.remove(target).unwrap_or_default();
        seqs.into_iter()
            .filter_map(|seq| {
                let (until, step) = self.waiting.remove(&seq)?;
                self.waiting_until.remove(&(until, seq));
                Some(step)
            })
            .collect()
    }

    /// Takes the waiting steps whose deadline is at or before `now`, in the order they
    /// started.
    fn take_due(&mut self, now: Instant) -> Vec<Step> {
        let mut seqs = Vec::new();
        while let Some(&(until, seq)) = self.waiting_until.first()
            && until <= now
        {
            self.waiting_until.pop_first();
            seqs.push(seq);
        }
        seqs.sort_unstable();
        seqs.into_iter()
            .filter_map(|seq| {
                let (_, step) = self.waiting.remove(&seq)?;
                let target = step.target();
                if let Some(set) = self.waiting_for.get_mut(target) {
                    set.remove(&seq);
                    if set.is_empty() {
                        self.waiting_for.remove(target);
                    }
                }
                Some(step)
            })
            .collect()
    }
}

impl<H: Clone> NodeMachine<H> {
    /// Starts a step: its request goes out now if its target is linked, otherwise it
    /// waits for the link (a redirect's target, the worker, is linked or gone).
    pub(super) fn start_step(&mut self, now: Instant, step: Step) {
        let times = self.settings.handoff;
        let Some(link) = self.link_of(step.target()).cloned() else {
            if matches!(step, Step::Redirect { .. }) {
                return; // the worker left: nothing to tell it, no link to release
            }
            let wait = match step {
                Step::Adopt { .. } => times.adopt,
                _ => times.probe,
            };
            self.steps.wait(now + wait, step);
            return;
        };
        let (class, body, timeout) = match &step {
            Step::Adopt { worker, urls, .. } => {
                let req = ClusterRequest::Adopt(AdoptRequest {
                    worker: worker.clone(),
                    urls: urls.clone(),
                });
                let Ok((class, body)) = req.encode() else {
                    return;
                };
                (class, body, times.adopt)
            }
            Step::Probe { .. } => ("nkcluster.echo", Bytes::new(), times.probe),
            Step::Redirect { urls, .. } => (
                crate::cluster::CLASS_REDIRECT,
                Bytes::from(urls.join(", ")),
                times.redirect,
            ),
        };
        let id = self.steps.next_ask_id();
        self.steps.asked.insert(id, step);
        self.out.push_back(Output::Ask {
            id,
            link,
            class: class.to_owned(),
            body,
            timeout,
        });
    }

    /// The answer to [`Output::Ask`] `id`: `Ok` or the error's code.
    pub fn handle_answer(&mut self, now: Instant, id: u64, result: Result<(), ErrorCode>) {
        if self.identity_answer(now, id, result.is_ok()) {
            return;
        }
        let Some(step) = self.steps.asked.remove(&id) else {
            return;
        };
        self.step_done(now, step, result);
    }

    fn step_done(&mut self, now: Instant, step: Step, result: Result<(), ErrorCode>) {
        let note = |worker: &str, owner: &str, step: HandoffStep, code: Option<ErrorCode>| {
            Output::Event(NodeEvent::Handoff {
                worker: worker.to_owned(),
                owner: owner.to_owned(),
                step,
                code: code.map(|c| c.to_string()),
            })
        };
        match step {
            Step::Adopt { worker, owner, .. } => {
                if let Err(e) = &result {
                    self.out.push_back(note(
                        &worker,
                        &owner,
                        HandoffStep::AdoptFailed,
                        Some(e.clone()),
                    ));
                }
                self.handle_adopted(now, &worker, &owner, result.is_ok());
            }
            Step::Probe {
                worker,
                owner,
                urls,
            } => match result {
                Err(e) => {
                    self.out
                        .push_back(note(&worker, &owner, HandoffStep::OwnerSilent, Some(e)));
                    self.handle_owner_silent(now, &worker, &owner);
                }
                Ok(()) if urls.is_empty() => {
                    // The owner announced no address a worker could dial: it stays here.
                    self.out
                        .push_back(note(&worker, &owner, HandoffStep::NoDialableUrl, None));
                }
                Ok(()) => self.start_step(
                    now,
                    Step::Redirect {
                        worker,
                        owner,
                        urls,
                    },
                ),
            },
            Step::Redirect { worker, owner, .. } => {
                let code = result.err();
                let what = if code.is_some() {
                    HandoffStep::RedirectUnacknowledged
                } else {
                    HandoffStep::Redirected
                };
                self.out.push_back(note(&worker, &owner, what, code));
                let out = self.release(&worker, &owner);
                self.out.push_back(out);
            }
        }
    }

    /// A link to `peer` came up: steps waiting for it go out.
    pub(super) fn steps_linked(&mut self, now: Instant, peer: &str) {
        for step in self.steps.take_for(peer) {
            self.start_step(now, step);
        }
    }

    /// Steps whose target never linked in time fail `not_connected`.
    pub(super) fn steps_timeout(&mut self, now: Instant) {
        for step in self.steps.take_due(now) {
            self.step_done(now, step, Err(ErrorCode::NotConnected));
        }
    }

    /// When the first waiting step gives up.
    pub(super) fn steps_poll_timeout(&self) -> Option<Instant> {
        self.steps.waiting_until.first().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(worker: &str, owner: &str) -> Step {
        Step::Probe {
            worker: worker.into(),
            owner: owner.into(),
            urls: Vec::new(),
        }
    }

    #[test]
    fn waiting_steps_leave_in_the_order_they_started_by_target_or_by_deadline() {
        let mut s = Steps::default();
        let t = Instant::from_millis;
        s.wait(t(300), probe("w1", "c2"));
        s.wait(t(100), probe("w2", "c3"));
        s.wait(t(200), probe("w3", "c2"));
        s.wait(t(100), probe("w4", "c2"));
        s.wait(t(500), probe("w5", "c3"));
        // c2 links: its steps, in the order they started.
        assert_eq!(
            s.take_for("c2"),
            [probe("w1", "c2"), probe("w3", "c2"), probe("w4", "c2")]
        );
        assert_eq!(s.take_for("c2"), []);
        // Deadlines: the earliest left is w2's; due ones leave in the order they started.
        s.wait(t(50), probe("w6", "c4"));
        assert_eq!(s.waiting_until.first().map(|(t, _)| *t), Some(t(50)));
        assert_eq!(s.take_due(t(99)), [probe("w6", "c4")]);
        assert_eq!(s.take_due(t(99)), []);
        s.wait(t(100), probe("w7", "c3"));
        assert_eq!(s.take_due(t(100)), [probe("w2", "c3"), probe("w7", "c3")]);
        assert_eq!(s.take_for("c3"), [probe("w5", "c3")]);
        assert!(s.waiting.is_empty() && s.waiting_for.is_empty());
        assert!(s.waiting_until.is_empty());
    }
}
