//! When a probed check (HTTP, TCP, gRPC) runs: first after a random stagger of up to one
//! interval (so checks registered together do not probe together, as in Consul), then one
//! interval after each run started, or at once when a run took longer than the interval.
//!
//! An I/O-free state machine: the runner passes `now` (and the stagger it drew) and sleeps until
//! the instant returned. It must not sleep, draw random numbers or probe.

use std::time::Duration;

use tokio::time::Instant;

/// Consul's interval for a check that has none (never the case for a valid probed check).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    interval: Duration,
}

impl Schedule {
    pub fn new(interval: Option<Duration>) -> Schedule {
        Schedule {
            interval: interval.unwrap_or(DEFAULT_INTERVAL),
        }
    }

    /// The range the first run's stagger is drawn from: up to one interval.
    pub fn max_stagger(&self) -> Duration {
        self.interval
    }

    /// The first run, `stagger` after `now` (capped at one interval).
    pub fn first_run(&self, now: Instant, stagger: Duration) -> Instant {
        later(now, stagger.min(self.interval))
    }

    /// The run after one that started at `started`, seen at `now`.
    pub fn next_run(&self, started: Instant, now: Instant) -> Instant {
        later(started, self.interval).max(now)
    }
}

/// `at + by`, far in the future rather than a panic when that overflows (an interval is caller
/// input).
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests;
