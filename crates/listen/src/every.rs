//! An I/O-free rate limit of one kind of log line, given `now`: at most one line per period,
//! the next one admitted counting those held back in between.
//!
//! Owns the decision only; it must not write the line or read the clock.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Every {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Every {
    pub(crate) fn new(period: Duration) -> Every {
        Every {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.period)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests;
