//! How long a draining agent waits before it stops, as a state machine: at least the drain grace
//! (so discovery sees the instance leave before it stops answering), until its calls and tasks
//! have ended, and at most the drain timeout, past which what still runs is failed.
//!
//! Owns that decision only: it reads no clock and watches no call or task; it is told when the
//! calls and tasks went quiet and, at each step, whether anything still runs. Waiting, failing
//! the tasks and stopping the server are the runtime's.

use std::time::Duration;

use tokio::time::Instant;

/// What the draining runtime does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Wait until `until`, or until the calls and tasks go quiet if `for_quiet`.
    Wait { until: Instant, for_quiet: bool },
    /// Stop: the grace passed and everything ended, or the timeout passed with nothing running.
    Stop,
    /// The timeout passed with calls or tasks still running: fail them, then stop.
    FailRunning,
}

/// The drain of one agent instance, from the moment it started.
#[derive(Debug, Clone)]
pub(super) struct DrainWindow {
    grace_ends: Instant,
    deadline: Instant,
    quiet: bool,
}

impl DrainWindow {
    /// A drain started at `now`, serving for at least `grace` and at most `timeout`.
    pub(super) fn new(now: Instant, grace: Duration, timeout: Duration) -> DrainWindow {
        DrainWindow {
            grace_ends: now + grace,
            deadline: now + timeout,
            quiet: false,
        }
    }

    /// Every call in flight and every running task has ended (each count reached zero once).
    pub(super) fn on_quiet(&mut self) {
        self.quiet = true;
    }

    /// What to do at `now`; `busy` is whether calls or tasks run at this moment.
    pub(super) fn next(&self, now: Instant, busy: bool) -> Step {
        if self.quiet && now >= self.grace_ends {
            return Step::Stop;
        }
        if now >= self.deadline {
            return if busy { Step::FailRunning } else { Step::Stop };
        }
        let until = if self.quiet {
            self.grace_ends.min(self.deadline)
        } else {
            self.deadline
        };
        Step::Wait {
            until,
            for_quiet: !self.quiet,
        }
    }
}

#[cfg(test)]
mod tests;
