//! Exponential back-off with jitter, as a value: what the mesh's discovery watch, an endpoint's
//! health watch and card learning, and the control-state watch wait between failed attempts. Given the jitter (a fraction
//! the caller draws), it is deterministic; it sleeps nothing itself.

use std::time::Duration;

/// The pause before the next attempt: `current` plus up to half of it (the jitter), doubling
/// after each failure up to `max`, back to `min` after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// An attempt failed: the pause before the next one, with `jitter` (0..=1, clamped) adding
    /// up to half the base, so that many callers failing together do not retry together.
    pub fn next(&mut self, jitter: f64) -> Duration {
        // Saturating: a cap near Duration::MAX (a library caller's setting) must not panic.
        let extra = self.current.div_f64(2.0).mul_f64(jitter.clamp(0.0, 1.0));
        let pause = self.current.saturating_add(extra);
        self.current = self.current.saturating_mul(2).min(self.max);
        pause
    }

    /// The base of the next pause, without jitter (and without counting a failure).
    pub fn current(&self) -> Duration {
        self.current
    }

    /// An attempt succeeded: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// A jitter fraction for [`Backoff::next`], drawn from the thread's RNG.
pub fn jitter() -> f64 {
    use rand::Rng;
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(test)]
mod tests;
