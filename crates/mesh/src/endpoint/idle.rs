//! When an endpoint lets its connection go: after `after` with no call started and none in
//! flight. A connection held for an instance nobody calls costs the mesh ≈ 15 KB resident
//! (33 KB allocated: h2's buffers, the health Watch stream, their tasks) and a descriptor at
//! each end: at 1,000 beamlines, the gateway's 61 MB against 46 MB with them let go. While released, the endpoint trusts Consul's check (the
//! gate stays as the last health answer left it) and the next call dials again.
//!
//! An I/O-free clock: it is given `now` and the connection's [`Sample`]s and says whether to
//! release and when to look again; the health watch's loop does the sleeping and the releasing.
//! Sampling (not a timestamp per call) keeps the clock off the call path: a release comes
//! between `after` and `after` + a quarter of it after the last call ended.

use std::time::Duration;

use tokio::time::Instant;

use crate::connection::Sample;

/// What the clock says at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Keep the connection; look again at [`IdleClock::next_look`].
    Keep,
    Release,
}

#[derive(Debug)]
pub(super) struct IdleClock {
    after: Duration,
    /// Calls started as of the last look.
    seen: u64,
    /// Since when no call was seen starting or in flight.
    quiet_since: Instant,
    /// The last look saw a call in flight: it may have ended just after, so the quiet counts
    /// from the next look.
    busy: bool,
    next_look: Instant,
}

impl IdleClock {
    /// A clock started at `now` on a connection whose counters read `sample`.
    pub(super) fn new(after: Duration, now: Instant, sample: Sample) -> IdleClock {
        IdleClock {
            after,
            seen: sample.started,
            quiet_since: now,
            busy: sample.in_flight > 0,
            next_look: now + step(after),
        }
    }

    /// When to look next.
    pub(super) fn next_look(&self) -> Instant {
        self.next_look
    }

    /// Looks at the connection at `now`.
    pub(super) fn look(&mut self, now: Instant, sample: Sample) -> Verdict {
        let active = sample.started != self.seen || sample.in_flight > 0 || self.busy;
        self.busy = sample.in_flight > 0;
        if active {
            self.seen = sample.started;
            self.quiet_since = now;
        }
        self.next_look = now + step(self.after);
        if now.duration_since(self.quiet_since) >= self.after {
            Verdict::Release
        } else {
            Verdict::Keep
        }
    }
}

/// Looks come four times per bound.
fn step(after: Duration) -> Duration {
    (after / 4).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests;
