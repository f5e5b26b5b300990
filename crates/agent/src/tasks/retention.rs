//! How long finished tasks are kept, as a state machine: told when each task finished, it says
//! which ones are due to be dropped at a given instant — past the retention period, or beyond
//! the most that may be kept (oldest first).
//!
//! Owns the retention decision only: it reads no clock (every call is given `now`) and holds no
//! task, just ids in the order they finished; dropping the records is `record`'s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The finished tasks' ids in the order they finished, with when.
#[derive(Debug)]
pub(super) struct Retention {
    period: Duration,
    max_kept: usize,
    finished: VecDeque<(Instant, String)>,
}

impl Retention {
    /// Keeps a finished task for `period`, and at most `max_kept` of them.
    pub(super) fn new(period: Duration, max_kept: usize) -> Retention {
        Retention {
            period,
            max_kept,
            finished: VecDeque::new(),
        }
    }

    /// Task `id` finished at `now` (each task finishes once: the caller makes sure).
    pub(super) fn on_finished(&mut self, id: String, now: Instant) {
        self.finished.push_back((now, id));
    }

    /// The next task due to be dropped at `now`, oldest first, forgetting it; `None` once every
    /// task left is young enough and there are no more than `max_kept`.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<String> {
        let (at, _) = self.finished.front()?;
        let expired = now.saturating_duration_since(*at) >= self.period;
        if !expired && self.finished.len() <= self.max_kept {
            return None;
        }
        self.finished.pop_front().map(|(_, id)| id)
    }

    /// Every task due to be dropped at `now`, oldest first.
    pub(super) fn expired(&mut self, now: Instant) -> impl Iterator<Item = String> + '_ {
        std::iter::from_fn(move || self.pop_expired(now))
    }
}

#[cfg(test)]
mod tests;
