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
//! An owner learned through gossip may not be linked yet (it is joining): the step waits
//! for its link, at most the step's timeout.

use std::collections::BTreeMap;

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
}

impl Default for HandoffTimes {
    fn default() -> Self {
        HandoffTimes {
            adopt: Duration::from_secs(10),
            probe: Duration::from_secs(15),
            redirect: Duration::from_secs(3),
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
    waiting: Vec<(Instant, Step)>,
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
            self.steps.waiting.push((now + wait, step));
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
        self.steps.next_id += 1;
        let id = self.steps.next_id;
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
        let (ready, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.steps.waiting)
            .into_iter()
            .partition(|(_, s)| s.target() == peer);
        self.steps.waiting = keep;
        for (_, step) in ready {
            self.start_step(now, step);
        }
    }

    /// Steps whose target never linked in time fail `not_connected`.
    pub(super) fn steps_timeout(&mut self, now: Instant) {
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.steps.waiting)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.steps.waiting = keep;
        for (_, step) in due {
            self.step_done(now, step, Err(ErrorCode::NotConnected));
        }
    }

    /// When the first waiting step gives up.
    pub(super) fn steps_poll_timeout(&self) -> Option<Instant> {
        self.steps.waiting.iter().map(|(t, _)| *t).min()
    }
}
