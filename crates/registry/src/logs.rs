//! What the registry's log lines need beside `tracing`: a rate limit per subject, so a check
//! that flaps or a client that keeps sending bad requests writes one line per period with the
//! count of lines it held back, and the full cause chain of an error on one line.
//!
//! Owns the decision "log this now or count it" and the text of error chains. It is I/O-free and
//! reads no clock: callers pass `now` and write the line themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Subjects tracked at once; past it, subjects quiet for a whole period are forgotten.
const MAX_SUBJECTS: usize = 4096;

/// At most one line per subject per `every`.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    /// Per subject: when its last line was written and how many were held back since.
    subjects: HashMap<String, (Instant, u64)>,
}

impl LogLimiter {
    pub fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            subjects: HashMap::new(),
        }
    }

    /// `Some(held back since the last line)` when a line about `subject` may be written at
    /// `now`; `None` (and one more held back) when its last line is younger than the period.
    pub fn admit(&mut self, subject: &str, now: Instant) -> Option<u64> {
        if let Some((last, held)) = self.subjects.get_mut(subject) {
            if now.saturating_duration_since(*last) < self.every {
                *held += 1;
                return None;
            }
            let held_back = std::mem::take(held);
            *last = now;
            return Some(held_back);
        }
        if self.subjects.len() >= MAX_SUBJECTS {
            let every = self.every;
            // A subject quiet for a period would be admitted anyway; only its count is lost.
            self.subjects
                .retain(|_, (last, _)| now.saturating_duration_since(*last) < every);
        }
        if self.subjects.len() < MAX_SUBJECTS {
            self.subjects.insert(subject.to_owned(), (now, 0));
        }
        Some(0)
    }

    pub fn subjects(&self) -> usize {
        self.subjects.len()
    }
}

/// An error and its causes on one line: the contract's, so every part of the mesh writes them alike.
pub use beamline_contract::causes::chain;

#[cfg(test)]
mod tests;
