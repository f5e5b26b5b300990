//! Consul's DeregisterCriticalServiceAfter: a service whose check has been critical for longer
//! than the check's period is deregistered.
//!
//! An I/O-free state machine: the state tells it every check written or removed (with `now`),
//! and the reaper loop asks it which services are due. It tracks when each check became critical
//! (runtime-only, as in Consul: a restart starts the period over); it must not read the clock,
//! deregister anything or log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::{Check, CheckStatus};

/// One critical check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Critical {
    /// Since when, without a break.
    since: Instant,
    /// Empty for a node check, which takes no service with it.
    service_id: String,
    after: Option<Duration>,
}

impl Critical {
    fn deadline(&self) -> Option<Instant> {
        if self.service_id.is_empty() {
            return None;
        }
        // An overflowing period is one that never ends.
        self.since.checked_add(self.after?)
    }
}

/// The critical checks and when each became critical.
#[derive(Debug, Clone, Default)]
pub struct Reaper {
    critical: HashMap<String, Critical>,
}

impl Reaper {
    /// A check was written at `now` (registered, redefined, or its status changed). A check that
    /// stays critical keeps its start; any other status ends the critical period.
    pub fn on_check(&mut self, now: Instant, check: &Check) {
        let id = &check.def.id;
        if check.status != CheckStatus::Critical {
            self.critical.remove(id);
            return;
        }
        let since = self.critical.get(id).map_or(now, |c| c.since);
        let entry = Critical {
            since,
            service_id: check.def.service_id.clone(),
            after: check.def.deregister_critical_after,
        };
        self.critical.insert(id.clone(), entry);
    }

    /// A check was deregistered.
    pub fn on_check_removed(&mut self, id: &str) {
        self.critical.remove(id);
    }

    /// When the check `id` became critical, if it is.
    pub fn critical_since(&self, id: &str) -> Option<Instant> {
        self.critical.get(id).map(|c| c.since)
    }

    /// The earliest time a service becomes due, if any ever will.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.critical.values().filter_map(Critical::deadline).min()
    }

    /// The services due at `now` (sorted, each once): a check of theirs has been critical for at
    /// least its DeregisterCriticalServiceAfter.
    pub fn poll(&self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .critical
            .values()
            .filter(|c| c.deadline().is_some_and(|at| at <= now))
            .map(|c| c.service_id.clone())
            .collect();
        due.sort();
        due.dedup();
        due
    }
}

#[cfg(test)]
mod tests;
