//! The agent's view of the facility's halts and locks (`beamline_contract::control`, followed in
//! Consul KV by `beamline_consul::control`), and what it refuses and cancels from it, so that a
//! caller who bypasses the gateway is stopped too:
//!
//! - While its beamline (or every beamline, `_all`) is halted, a new Execute of an actuating
//!   capability is refused with FAILED_PRECONDITION whose message is the refusal's text (who
//!   halted, when, why), and every running actuating task is ended CANCELLED with the
//!   `HALTED` code. Read-only capabilities, Describe, GetTask, Subscribe and Cancel go on.
//! - Fail closed: until the control state is first read, and while it cannot be read (Consul
//!   unreachable), a new actuating Execute is refused too; running tasks are not cancelled for
//!   it (only a known halt cancels).
//! - Locks: while a beamline is locked, an actuating Execute, and a Cancel of an actuating
//!   task, from anyone but the holder are refused. The agent knows who calls only over mutual
//!   TLS (`identity`: a [`Caller`] from a verified gateway peer), so it enforces locks only
//!   then ([`Locks::Enforced`]), and a caller with no verified identity is not the holder.
//!   Without mutual TLS (plaintext, in development) the gateway alone enforces locks
//!   ([`Locks::AtGateway`]).
//! - A Cancel is never refused for a halt, nor for an unreadable state: stopping is what a halt
//!   wants, and refusing it could keep hardware moving.
//!
//! `Agent::serve` wires it in; an agent that implements `BeamlineAgent` itself asks
//! `AgentRuntime::control()` ([`Control::check_execute`] as the check of
//! `TaskTable::execute_checked`, [`Control::check_cancel`], [`Control::enforce_halts`]), and only an agent that enforces it says so in its registration
//! (`Meta.controls`).
//!
//! Owns those decisions — as functions of the view, the caller and `now` without I/O
//! ([`execute_refusal`], [`cancel_refusal`], [`halt_of`]) — and the thin task that ends
//! running actuating tasks when a halt arrives. It must not read Consul itself (the consul
//! crate's follower does), decide who may halt or lock (the gateway's policy), nor know which
//! capabilities actuate (its caller says).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tonic::Status;
use tracing::warn;

use crate::identity::Caller;
use crate::tasks::{codes, TaskTable};
use beamline_consul::control::{ControlView, ControlWatch, FollowSettings};
use beamline_consul::ConsulClient;
use beamline_contract::control::Refusal;
use beamline_contract::wire::meta;

/// Whether this agent enforces locks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locks {
    /// Served over mutual TLS: the agent knows the caller the gateway vouches for.
    Enforced,
    /// No verified caller can reach the agent (plaintext, or TLS without client
    /// certificates): the gateway enforces locks, the agent only halts.
    AtGateway,
}

/// Who asks for an actuating call on which beamline, when: what every decision is given.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub beamline: &'a str,
    /// The caller's verified name; `None`: nobody verified, so not a lock's holder.
    pub caller: Option<&'a str>,
    pub locks: Locks,
    pub now: SystemTime,
}

/// Why an Execute of an actuating capability may not start as `ask` says: a known halt, then
/// (when enforced here) a lock the caller does not hold, then an unreadable control state.
pub fn execute_refusal(view: &ControlView, ask: &Ask<'_>) -> Option<Refusal> {
    match ask.locks {
        Locks::Enforced => view.refusal(ask.beamline, ask.caller, ask.now),
        Locks::AtGateway => halt_of(view, ask.beamline).or_else(|| {
            view.unreadable.as_ref().map(|reason| Refusal::Unreadable {
                reason: reason.clone(),
            })
        }),
    }
}

/// Why a Cancel of a running actuating task may not go on as `ask` says: only a lock the
/// caller does not hold, when locks are enforced here and nothing is halted (cancels keep
/// working under a halt, and while the state cannot be read).
pub fn cancel_refusal(view: &ControlView, ask: &Ask<'_>) -> Option<Refusal> {
    if ask.locks == Locks::AtGateway || view.state.is_halted(ask.beamline) {
        return None;
    }
    // Not halted: the state's refusal can only be a lock's.
    view.state.refusal(ask.beamline, ask.caller, ask.now)
}

/// The known halt of `beamline` (its own or every beamline's), which ends its running
/// actuating tasks; an unreadable state is not one.
pub fn halt_of(view: &ControlView, beamline: &str) -> Option<Refusal> {
    view.state
        .halt(beamline)
        .map(|(halt, all)| Refusal::Halted {
            beamline: beamline.to_string(),
            halt: halt.clone(),
            all,
        })
}

/// [`execute_refusal`] or [`cancel_refusal`].
type Rule = fn(&ControlView, &Ask<'_>) -> Option<Refusal>;

/// What tells an actuating capability from the others (by name).
pub type Actuating = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// One agent's handle on the control state: cheap to clone; the follower itself is the
/// runtime's ([`ControlWatch`]), and this handle keeps the last view after it stops.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

struct Shared {
    view: watch::Receiver<Arc<ControlView>>,
    beamline: String,
    locks: Locks,
    /// Set once a service enforces the state (the registration then says so in
    /// `Meta.controls`).
    enforced: AtomicBool,
}

impl Control {
    /// A handle on `view` for the agent of `beamline`.
    pub(crate) fn new(
        view: watch::Receiver<Arc<ControlView>>,
        beamline: impl Into<String>,
        locks: Locks,
    ) -> Control {
        Control {
            shared: Arc::new(Shared {
                view,
                beamline: beamline.into(),
                locks,
                enforced: AtomicBool::new(false),
            }),
        }
    }

    /// Starts following the control state in the Consul `client` talks to (inside a Tokio
    /// runtime): the follower, which stops when dropped, and the handle on it.
    pub(crate) fn follow(
        client: ConsulClient,
        beamline: impl Into<String>,
        locks: Locks,
    ) -> (ControlWatch, Control) {
        let watch = beamline_consul::control::spawn(client, FollowSettings::default());
        let control = Control::new(watch.subscribe(), beamline, locks);
        (watch, control)
    }

    /// Waits, at most `within`, for the follower's first word: the state read, or why it
    /// cannot be read (the follower publishes the first failure too, so an agent whose Consul
    /// is down starts without waiting and serves reads meanwhile). Whether the state was read
    /// (until it is, actuating work is refused anyway).
    pub(crate) async fn first_read(&self, within: Duration) -> bool {
        let mut view = self.shared.view.clone();
        let starting = ControlView::starting();
        let read = async {
            match view.wait_for(|v| **v != starting).await {
                Ok(v) => v.unreadable.is_none(),
                Err(_) => false,
            }
        };
        tokio::time::timeout(within, read).await.unwrap_or(false)
    }

    /// The control state as last read.
    pub fn view(&self) -> Arc<ControlView> {
        self.shared.view.borrow().clone()
    }

    /// Whether this agent enforces locks itself.
    pub fn locks(&self) -> Locks {
        self.shared.locks
    }

    /// Whether a service enforces this state (see [`Control::enforce_halts`]).
    pub fn is_enforced(&self) -> bool {
        self.shared.enforced.load(Ordering::SeqCst)
    }

    /// What the registration says this agent enforces (`Meta.controls`): halts and locks over
    /// mutual TLS, halts alone when locks are the gateway's, nothing when no service enforces
    /// the state.
    pub fn advertised(&self) -> Option<&'static str> {
        if !self.is_enforced() {
            return None;
        }
        Some(match self.shared.locks {
            Locks::Enforced => meta::CONTROLS_ENFORCED,
            Locks::AtGateway => meta::CONTROLS_HALT_ONLY,
        })
    }

    /// Ok when an Execute of an actuating capability by `caller` may start now; otherwise
    /// FAILED_PRECONDITION with the refusal's text. It never says "not started, send it
    /// elsewhere": every instance of the beamline refuses alike.
    pub fn check_execute(&self, caller: Option<&Caller>) -> Result<(), Status> {
        self.check(caller, execute_refusal)
    }

    /// Ok when a Cancel of a running actuating task by `caller` may go on now; otherwise
    /// FAILED_PRECONDITION naming the lock's holder.
    pub fn check_cancel(&self, caller: Option<&Caller>) -> Result<(), Status> {
        self.check(caller, cancel_refusal)
    }

    fn check(&self, caller: Option<&Caller>, rule: Rule) -> Result<(), Status> {
        let ask = Ask {
            beamline: &self.shared.beamline,
            caller: caller.map(|c| c.name.as_str()),
            locks: self.shared.locks,
            now: SystemTime::now(),
        };
        match rule(&self.view(), &ask) {
            None => Ok(()),
            Some(refusal) => Err(Status::failed_precondition(refusal.to_string())),
        }
    }

    /// Ends the running tasks of `tasks` that `actuating` names if the beamline is halted now;
    /// how many (the sweep [`Control::enforce_halts`] runs on each new view). To start an
    /// actuating task, check with [`Control::check_execute`] inside
    /// `TaskTable::execute_checked`, not before `TaskTable::execute`: a halt landing between
    /// the two is missed by the sweep, and the work starts before this could end it.
    pub fn cancel_if_halted(&self, tasks: &TaskTable, actuating: &Actuating) -> usize {
        match halt_of(&self.view(), &self.shared.beamline) {
            Some(halt) => cancel_halted(tasks, actuating, &halt),
            None => 0,
        }
    }

    /// From now on, whenever the state says the beamline is halted, ends the running tasks of
    /// `tasks` that `actuating` names (a Tokio task, until the follower stops), and marks the
    /// state enforced.
    pub fn enforce_halts(&self, tasks: TaskTable, actuating: Actuating) {
        self.shared.enforced.store(true, Ordering::SeqCst);
        let mut view = self.shared.view.clone();
        let beamline = self.shared.beamline.clone();
        tokio::spawn(async move {
            loop {
                let halt = halt_of(&view.borrow_and_update(), &beamline);
                if let Some(halt) = halt {
                    cancel_halted(&tasks, &actuating, &halt);
                }
                // Err: the follower stopped (the runtime is done serving).
                if view.changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

fn cancel_halted(tasks: &TaskTable, actuating: &Actuating, halt: &Refusal) -> usize {
    let message = halt.to_string();
    let cancelled = tasks.cancel_running(|c| actuating(c), codes::HALTED, &message);
    if cancelled > 0 {
        warn!(cancelled, %halt, "halted: running actuating tasks cancelled");
    }
    cancelled
}

#[cfg(test)]
mod tests;
