//! Peak-EWMA load for one endpoint: cost = decayed round-trip estimate × (calls in flight + 1),
//! as in tower's `PeakEwma` with three differences that matter for a mesh of restartable agents:
//! estimates are compared in powers of two above a floor (sub-millisecond differences, and one
//! response 30 % slower than usual, are noise next to an agent's work; comparing noise made p2c
//! starve an instance of sequential calls for as long as one small peak took to decay — within a
//! factor of two the in-flight count decides, and ties are random);
//! a failed call is kept out of the estimate (a refused connection answers in microseconds and
//! would make a dead instance look cheapest), and a new endpoint starts at a small estimate so it
//! wins its p2c pairings at once instead of after tens of seconds.
//!
//! Owns the estimate; the choice between endpoints is tower's p2c.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::load::Load;
use tower::Service;

/// The p2c comparison value.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Cost(pub f64);

struct Estimate {
    rtt_ns: f64,
    updated: Instant,
}

impl Estimate {
    /// The estimate decayed towards zero since its last update.
    fn decayed(&self, now: Instant, decay_ns: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
        self.rtt_ns * (-elapsed / decay_ns).exp()
    }

    /// A peak is taken at once; lower samples blend in by how long ago the last one was.
    fn record(&mut self, now: Instant, sample_ns: f64, decay_ns: f64) {
        let current = self.decayed(now, decay_ns);
        self.rtt_ns = if sample_ns > current {
            sample_ns
        } else {
            let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
            let weight = (-elapsed / decay_ns).exp();
            current * weight + sample_ns * (1.0 - weight)
        };
        self.updated = now;
    }
}

pub struct PeakEwma<S> {
    inner: S,
    estimate: Arc<Mutex<Estimate>>,
    pending: Arc<AtomicUsize>,
    decay_ns: f64,
    floor_ns: f64,
}

impl<S> PeakEwma<S> {
    pub fn new(inner: S, initial_rtt: Duration, decay: Duration, floor: Duration) -> PeakEwma<S> {
        PeakEwma {
            inner,
            estimate: Arc::new(Mutex::new(Estimate {
                rtt_ns: initial_rtt.as_nanos() as f64,
                updated: Instant::now(),
            })),
            pending: Arc::new(AtomicUsize::new(0)),
            decay_ns: decay.as_nanos().max(1) as f64,
            floor_ns: floor.as_nanos() as f64,
        }
    }
}

impl<S> Load for PeakEwma<S> {
    type Metric = Cost;

    fn load(&self) -> Cost {
        let rtt = self
            .estimate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decayed(Instant::now(), self.decay_ns);
        Cost(bucket(rtt, self.floor_ns) * (self.pending.load(Ordering::Relaxed) + 1) as f64)
    }
}

/// `rtt` rounded down to the floor times a power of two (the floor itself below it).
fn bucket(rtt_ns: f64, floor_ns: f64) -> f64 {
    if floor_ns <= 0.0 || !rtt_ns.is_finite() {
        return rtt_ns;
    }
    if rtt_ns <= floor_ns {
        return floor_ns;
    }
    floor_ns * (rtt_ns / floor_ns).log2().floor().exp2()
}

/// Counts a call in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, Req> Service<Req> for PeakEwma<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(self.pending.clone());
        let estimate = self.estimate.clone();
        let decay_ns = self.decay_ns;
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            if result.is_ok() {
                let now = Instant::now();
                let sample = now.saturating_duration_since(started).as_nanos() as f64;
                estimate
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(now, sample, decay_ns);
            }
            drop(in_flight);
            result
        })
    }
}

#[cfg(test)]
mod tests;
