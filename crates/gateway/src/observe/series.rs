//! One beamline label's metric handles, resolved once and kept: its in-flight gauge, its call
//! totals and, per method, its latency histogram and its counters of calls without a capability
//! by gRPC code. prometheus-client's metrics share their state between clones, so recording a
//! call through these handles is a few atomic increments: no label strings are built, hashed or
//! looked up per call (they were ten allocations a call).
//!
//! Owns the cache of handles and what it holds; which label a call gets, and when a call is
//! recorded, are `metrics`'. The cache is as bounded as the labels: one entry per beamline
//! label (capped there), one per method label, one counter per gRPC code.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tonic::Code;

/// Calls and failed calls of one beamline since start, counted as they end.
#[derive(Default)]
pub(super) struct AtomicTotals {
    pub(super) calls: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// gRPC codes: `OK` (0) to `UNAUTHENTICATED` (16).
const CODES: usize = 17;

/// The handles of one beamline label.
pub(super) struct Series {
    pub(super) label: Arc<str>,
    pub(super) in_flight: Gauge,
    /// `None` for the labels that are no beamline ("" and `_unknown`): they keep no totals.
    pub(super) totals: Option<Arc<AtomicTotals>>,
    methods: RwLock<HashMap<&'static str, Arc<MethodSeries>>>,
}

/// The handles of one (beamline label, method label).
pub(super) struct MethodSeries {
    pub(super) latency: Histogram,
    /// Calls without a capability, by the number of their gRPC code.
    calls: [OnceLock<Counter>; CODES],
}

impl Series {
    pub(super) fn new(label: &str, in_flight: Gauge, totals: Option<Arc<AtomicTotals>>) -> Series {
        Series {
            label: Arc::from(label),
            in_flight,
            totals,
            methods: RwLock::new(HashMap::new()),
        }
    }

    /// The handles of `method`, made with `latency` the first time.
    pub(super) fn method(
        &self,
        method: &'static str,
        latency: impl FnOnce() -> Histogram,
    ) -> Arc<MethodSeries> {
        let methods = self.methods.read().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = methods.get(method) {
            return series.clone();
        }
        drop(methods);
        let mut methods = self.methods.write().unwrap_or_else(|e| e.into_inner());
        let series = methods.entry(method).or_insert_with(|| {
            Arc::new(MethodSeries {
                latency: latency(),
                calls: Default::default(),
            })
        });
        series.clone()
    }
}

impl MethodSeries {
    /// The counter of calls without a capability that ended with `code`, made with `counter`
    /// the first time.
    pub(super) fn calls(&self, code: Code, counter: impl FnOnce() -> Counter) -> &Counter {
        // tonic's `Code` has exactly the 17 gRPC codes, numbered 0..=16.
        self.calls[code as usize].get_or_init(counter)
    }
}
