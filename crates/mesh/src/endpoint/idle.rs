//! When an endpoint lets its connection go: after `after` with no call started and none in
//! flight. A connection held for an instance nobody calls costs the mesh ~40 KB (h2's buffers,
//! the health Watch stream, their tasks) and a descriptor at each end; at 1,000 beamlines that
//! was most of the gateway's memory. While released, the endpoint trusts Consul's check (the
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
mod tests {
    use super::*;

    fn sample(started: u64, in_flight: usize) -> Sample {
        Sample { started, in_flight }
    }

    /// Drives the clock as the health watch does: sleep to the next look, look.
    async fn run_until_release(clock: &mut IdleClock, samples: impl Fn(Instant) -> Sample) {
        loop {
            tokio::time::sleep_until(clock.next_look()).await;
            let now = Instant::now();
            if clock.look(now, samples(now)) == Verdict::Release {
                return;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_released_between_after_and_a_quarter_more() {
        let start = Instant::now();
        let after = Duration::from_secs(60);
        let mut clock = IdleClock::new(after, start, sample(7, 0));
        run_until_release(&mut clock, |_| sample(7, 0)).await;
        let took = start.elapsed();
        assert!(took >= after && took <= after + after / 4, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_started_or_in_flight_keep_it() {
        let start = Instant::now();
        let after = Duration::from_secs(60);
        // A call every 10 s for the first 100 s, then silence.
        let mut clock = IdleClock::new(after, start, sample(0, 0));
        run_until_release(&mut clock, |now| {
            let secs = now.duration_since(start).as_secs();
            sample(secs.min(100) / 10, 0)
        })
        .await;
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(160), "{took:?}");
        assert!(
            took <= Duration::from_secs(100) + after + after / 4 + after / 4,
            "{took:?}"
        );

        // One long call (a stream) in flight for 5 minutes, started before the clock: kept.
        let start = Instant::now();
        let mut clock = IdleClock::new(after, start, sample(1, 1));
        run_until_release(&mut clock, |now| {
            let streaming = now.duration_since(start) < Duration::from_secs(300);
            sample(1, usize::from(streaming))
        })
        .await;
        let took = start.elapsed();
        let ended = Duration::from_secs(300);
        assert!(
            took >= ended + after && took <= ended + after + after / 4,
            "{took:?}"
        );
    }

    #[test]
    fn a_look_before_the_bound_keeps_and_says_when_to_look_again() {
        let start = Instant::now();
        let mut clock = IdleClock::new(Duration::from_secs(4), start, sample(0, 0));
        let now = start + Duration::from_secs(1);
        assert_eq!(clock.look(now, sample(0, 0)), Verdict::Keep);
        assert_eq!(clock.next_look(), now + Duration::from_secs(1));
        assert_eq!(
            clock.look(start + Duration::from_secs(4), sample(0, 0)),
            Verdict::Release
        );
    }
}
