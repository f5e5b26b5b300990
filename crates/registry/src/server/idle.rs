//! When an HTTP connection counts as idle: no bytes either way for the idle timeout and no
//! request being handled. A blocking query (`?index=&wait=`, up to ten minutes) is a request
//! being handled, so its connection is never idle while it waits; its own timer bounds it.
//!
//! An I/O-free state machine: callers report activity and requests with `now`, and ask when to
//! look again or whether to close.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Idle {
    last_activity: Instant,
    in_flight: usize,
}

impl Idle {
    pub fn new(now: Instant) -> Idle {
        Idle {
            last_activity: now,
            in_flight: 0,
        }
    }

    /// Bytes were read or written.
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
    }

    pub fn request_started(&mut self, now: Instant) {
        self.in_flight += 1;
        self.touch(now);
    }

    pub fn request_ended(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.touch(now);
    }

    /// `None` when the connection should close now; otherwise when to ask again.
    pub fn next_check(&self, now: Instant, timeout: Duration) -> Option<Instant> {
        let due = self.last_activity + timeout;
        if self.in_flight > 0 {
            // A request's end touches the clock; look again a timeout from now.
            return Some(now + timeout);
        }
        (now < due).then_some(due)
    }
}

#[cfg(test)]
mod tests;
