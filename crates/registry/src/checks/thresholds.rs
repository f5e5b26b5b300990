//! Consul's result thresholds for a probed check: SuccessBeforePassing, FailuresBeforeWarning
//! and FailuresBeforeCritical, counted over consecutive probe results.
//!
//! An I/O-free state machine: the runner feeds it each probe's outcome and applies the
//! transition it returns. It must not read the clock, the registry or the network; the counts
//! are runtime-only (not persisted, as in Consul).

use crate::model::{CheckDefinition, CheckStatus};

/// A check's three thresholds, as registered (0 means "at once").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl Limits {
    pub fn of(def: &CheckDefinition) -> Limits {
        Limits {
            success_before_passing: def.success_before_passing,
            failures_before_warning: def.failures_before_warning,
            failures_before_critical: def.failures_before_critical,
        }
    }
}

/// What one result does to the check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Below its threshold: the status stays what it was.
    Hold,
    /// The check's status becomes this (it may already be it; the output still changes).
    Become(CheckStatus),
}

/// Consecutive successes and failures of one check. A result of the other kind resets the
/// count, so a check that flaps never reaches a threshold it has not earned in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    successes: u32,
    failures: u32,
}

impl Thresholds {
    /// One probe's outcome (a failure is a critical outcome; a warning counts as a success of
    /// its own status, as in Consul).
    pub fn on_result(&mut self, limits: Limits, outcome: CheckStatus) -> Transition {
        if outcome == CheckStatus::Critical {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= limits.failures_before_critical {
                Transition::Become(CheckStatus::Critical)
            } else if limits.failures_before_warning > 0
                && self.failures >= limits.failures_before_warning
            {
                Transition::Become(CheckStatus::Warning)
            } else {
                Transition::Hold
            }
        } else {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= limits.success_before_passing {
                Transition::Become(outcome)
            } else {
                Transition::Hold
            }
        }
    }
}

#[cfg(test)]
mod tests;
