//! A TTL check's clock (Consul's `TTL`): a report (pass, warn, fail, update, or a new or
//! redefined registration) moves the expiry to report time + TTL; once the expiry passes
//! without a report, the check becomes critical with the output "TTL expired".
//!
//! An I/O-free state machine over wall-clock milliseconds (the expiry is persisted, so that a
//! restarted registry keeps a TTL check's state until it would have expired anyway): callers pass
//! `now`; the runner sleeps and writes. It must not read the clock or the registry.

use std::time::Duration;

use crate::model::{Check, CheckStatus};

/// Consul's output for an expired TTL check.
pub const TTL_EXPIRED: &str = "TTL expired";

/// What a TTL runner does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlStep {
    /// Not expired: look again at this time (ms since the Unix epoch).
    WaitUntil(u64),
    /// Expired: record it (see [`expired`]), then look again at this time. Every report moves
    /// the expiry to report time + TTL, so one TTL from now is never later than the next expiry.
    Expire { look_again_at: u64 },
}

/// The clock of one TTL check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlClock {
    ttl: Duration,
}

impl TtlClock {
    pub fn new(ttl: Duration) -> TtlClock {
        TtlClock { ttl }
    }

    /// The expiry a report at `now_ms` sets. Saturates: a TTL is caller input.
    pub fn expiry_after_report(&self, now_ms: u64) -> u64 {
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_add(ttl_ms)
    }

    /// The step at `now_ms` for a check whose stored expiry is `expires_ms`.
    pub fn poll(&self, now_ms: u64, expires_ms: Option<u64>) -> TtlStep {
        match expires_ms {
            Some(at) if at > now_ms => TtlStep::WaitUntil(at),
            _ => TtlStep::Expire {
                look_again_at: self.expiry_after_report(now_ms),
            },
        }
    }
}

/// Whether an expiry has passed at `now_ms` (a check without one has).
pub fn has_expired(now_ms: u64, expires_ms: Option<u64>) -> bool {
    expires_ms.is_none_or(|at| at <= now_ms)
}

/// `check` as an expired TTL leaves it, or `None` when that changes nothing: the TTL has not
/// passed at `now_ms` (a report came in meanwhile), or the expiry is already recorded.
pub fn expired(now_ms: u64, check: &Check) -> Option<Check> {
    let recorded = check.status == CheckStatus::Critical && check.output == TTL_EXPIRED;
    if !has_expired(now_ms, check.ttl_expires_unix_ms) || recorded {
        return None;
    }
    let mut updated = check.clone();
    updated.status = CheckStatus::Critical;
    updated.output = TTL_EXPIRED.to_string();
    Some(updated)
}

#[cfg(test)]
mod tests;
