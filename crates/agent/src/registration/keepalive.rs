//! When to call Consul about one registration and what that call is, as a state machine: given
//! the outcome of each call and the time it came back, it says which call comes next, when, and
//! which line (if any) the outage or recovery deserves.
//!
//! Owns the keep-alive's decisions only: it does no I/O, reads no clock and draws no random
//! number (the jitter is an input), so every transition is a plain function of its inputs. The
//! async loop in `registration` makes the calls, sleeps and logs.

use std::time::Duration;

use tokio::time::Instant;

/// The call the keep-alive makes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Register the instance (first time, after it disappeared, or after Consul was unreachable).
    Register,
    /// Check the registration still exists.
    Check,
}

/// What a call came back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Registered, or the registration is there.
    Present,
    /// The check found no registration.
    Gone,
    /// The call failed; `unreachable` when Consul could not be reached at all.
    Failed { unreachable: bool },
}

/// A line worth logging, once per change rather than once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The instance is registered (again), after not being.
    Registered,
    /// The registration disappeared; it is registered again at once.
    Disappeared,
    /// The first failure of an outage; the ones after it are quiet.
    Failing,
}

/// When the next call is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Straight away, without waiting (nor looking at a stop request in between).
    Now,
    /// At this instant, unless stopped before.
    At(Instant),
}

/// The keep-alive of one registration.
#[derive(Debug, Clone)]
pub struct Keepalive {
    every: Duration,
    registered: bool,
    failing: bool,
}

impl Keepalive {
    /// A keep-alive that has not registered yet, calling about every `every`.
    pub fn new(every: Duration) -> Keepalive {
        Keepalive {
            every,
            registered: false,
            failing: false,
        }
    }

    /// The call to make now.
    pub fn call(&self) -> Call {
        if self.registered {
            Call::Check
        } else {
            Call::Register
        }
    }

    /// Takes the outcome of the call that came back at `now`; `jitter` (0 to 1, clamped) picks
    /// where in `every ..= every * 1.25` the next call falls, so that instances started together
    /// do not call Consul together.
    pub fn on_result(
        &mut self,
        now: Instant,
        outcome: Outcome,
        jitter: f64,
    ) -> (Wake, Option<Note>) {
        let note = match outcome {
            Outcome::Present => {
                let note = (!self.registered).then_some(Note::Registered);
                self.registered = true;
                self.failing = false;
                note
            }
            Outcome::Gone => {
                self.registered = false;
                return (Wake::Now, Some(Note::Disappeared));
            }
            Outcome::Failed { unreachable } => {
                let note = (!self.failing).then_some(Note::Failing);
                self.failing = true;
                // After an outage, check (not assume) the registration: register again.
                if unreachable {
                    self.registered = false;
                }
                note
            }
        };
        (Wake::At(now + self.period(jitter)), note)
    }

    /// `every` plus up to a quarter of it.
    fn period(&self, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.every + (self.every / 4).mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests;
