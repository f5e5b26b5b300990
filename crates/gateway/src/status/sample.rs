//! Call and error rates for the status page, from a small sliding window: the per-beamline call
//! and error totals are sampled every [`SAMPLE_EVERY`] (by a task while the router lives, and on
//! each request) and kept about [`WINDOW`]; a rate is the change since the oldest kept sample over
//! the time between. Nothing is computed per call for the page, and a page load costs a few map
//! copies.
//!
//! Owns the window; what the totals count is `observe`'s.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::observe::CallTotals;

/// How often totals are sampled, and how far back the rates look.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const WINDOW: Duration = Duration::from_secs(30);

pub struct Sample {
    pub at: Instant,
    pub totals: BTreeMap<String, CallTotals>,
}

/// Totals now and the baseline their rates are over.
pub struct Rates {
    pub now: BTreeMap<String, CallTotals>,
    /// The oldest sample kept, if it is at least a second old.
    pub baseline: Option<Sample>,
}

impl Rates {
    /// Seconds the rates are over (none until two samples exist).
    pub fn window_secs(&self, now: Instant) -> Option<f64> {
        (self.baseline.as_ref()).map(|b| now.saturating_duration_since(b.at).as_secs_f64())
    }

    /// Calls and errors per second of `beamline` over the window, if there is one.
    pub fn per_sec(&self, beamline: &str, now: Instant) -> Option<(f64, f64)> {
        let secs = self.window_secs(now)?;
        let base = self.baseline.as_ref()?;
        let before = base.totals.get(beamline).copied().unwrap_or_default();
        let after = self.now.get(beamline).copied().unwrap_or_default();
        Some((
            after.calls.saturating_sub(before.calls) as f64 / secs,
            after.errors.saturating_sub(before.errors) as f64 / secs,
        ))
    }
}

/// The kept samples.
#[derive(Default)]
pub struct Window {
    pub samples: Mutex<VecDeque<Sample>>,
}

impl Window {
    /// Samples `totals` taken at `now` if the last sample is old enough; returns them with the
    /// baseline for rates (the oldest sample still kept).
    pub fn sample(&self, now: Instant, totals: BTreeMap<String, CallTotals>) -> Rates {
        let mut window = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if window.back().is_none_or(|s| now - s.at >= SAMPLE_EVERY) {
            window.push_back(Sample {
                at: now,
                totals: totals.clone(),
            });
        }
        // Keep one sample at least WINDOW old as the baseline, drop older ones.
        while window.len() > 1 && window[1].at + WINDOW <= now {
            window.pop_front();
        }
        let baseline = window
            .front()
            .filter(|s| now - s.at >= Duration::from_secs(1))
            .map(|s| Sample {
                at: s.at,
                totals: s.totals.clone(),
            });
        Rates {
            now: totals,
            baseline,
        }
    }
}
