//! What a connection carries, as the two things watching it need it: the calls in flight (the
//! PING loop watches closer while there are any) and the calls started (the endpoint lets a
//! connection that carried none for a while go, and opens it again when one starts). The health
//! Watch is not a call.
//!
//! Owns the counters and their wake-ups, nothing else: what they mean is the keepalive's and
//! the endpoint's to decide. A call pays one more atomic add than before (the `started` count);
//! nothing reads the clock per call.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// Woken when a call starts on a quiet connection: the PING loop tightens its watch.
    pub(super) busy: Notify,
    /// Woken likewise, for an endpoint waiting to open the connection again.
    resumed: Notify,
}

/// The counters read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Calls started on this connection since it was made (the health Watch aside).
    pub started: u64,
    /// Calls in flight now.
    pub in_flight: usize,
}

impl Activity {
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(super) fn sample(&self) -> Sample {
        Sample {
            started: self.started.load(Ordering::Acquire),
            in_flight: self.in_flight(),
        }
    }

    /// Resolves once a call has started after `since` was sampled (at once if one has).
    pub(super) async fn resumed(&self, since: u64) {
        loop {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            // Registered before the check: a call starting in between is not missed.
            notified.as_mut().enable();
            if self.started.load(Ordering::Acquire) != since {
                return;
            }
            // A stale wake-up (a call before `since`) finds the count unchanged and waits on.
            notified.await;
        }
    }
}

/// One call in flight on a connection, counted until its response ends or it fails.
pub(crate) struct CallInFlight(Arc<Activity>);

impl CallInFlight {
    pub(super) fn start(activity: &Arc<Activity>) -> CallInFlight {
        activity.started.fetch_add(1, Ordering::AcqRel);
        if activity.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            activity.busy.notify_one();
            activity.resumed.notify_one();
        }
        CallInFlight(activity.clone())
    }
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
