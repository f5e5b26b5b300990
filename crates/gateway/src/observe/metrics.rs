//! The gateway's Prometheus metrics (prometheus-client): calls by beamline, method, capability
//! and gRPC code (the Fleet RPCs by name too: halts, resumes, locks, unlocks); latency; calls in
//! flight; rate-limit and auth rejections; actuating calls refused by a halt, a lock or an
//! unreadable control state; and, computed at scrape time from the mesh, instances per beamline
//! and discovery updates.
//!
//! Calls are recorded when they end (see [`super::ObserveLayer`], the one call-end observer that
//! feeds both this and the access log), so a stream counts with its final code and duration.
//!
//! Label values a caller chooses (beamline ids, method names, capabilities) are capped: past a
//! bound, new values are recorded as `_other`, so a client sending random ids cannot grow the
//! scrape without limit.
//!
//! Owns recording: turning a call's end or a refusal into bounded label values and increments,
//! and the per-beamline totals. The families themselves and the text of a scrape are
//! `exposition`'s; this must not render, nor watch calls (the observer in `observe` does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;

use crate::fleet::enforce::RefusedBy;
use crate::limits::Scope;
use beamline_contract::wire::{FleetRpc, Rpc};

use super::code_name;
use super::exposition::{
    beamline_labels, BeamlineLabels, CallLabels, CodeLabels, LimitLabels, MethodLabels,
    RefusalLabels,
};
use super::series::{AtomicTotals, Series};

/// Distinct beamlines and capabilities kept as label values before `_other`.
pub(super) const MAX_BEAMLINES: usize = 1000;
pub(super) const MAX_CAPABILITIES: usize = 500;
pub const OTHER: &str = "_other";
/// The label of every beamline Consul does not know: a caller inventing ids makes no series.
pub const UNKNOWN: &str = "_unknown";

/// Whether a beamline id names a registered beamline (the mesh's fleet view).
pub type KnownBeamline = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Calls and failed calls of one beamline since start (for the status page's rates).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallTotals {
    pub calls: u64,
    pub errors: u64,
}

/// A bounded set of label values.
pub(super) struct Capped {
    max: usize,
    seen: RwLock<HashSet<String>>,
}

impl Capped {
    pub(super) fn new(max: usize) -> Capped {
        Capped {
            max,
            seen: RwLock::new(HashSet::new()),
        }
    }

    fn label(&self, value: &str) -> String {
        if self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
        {
            return value.to_string();
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value.to_string();
        }
        OTHER.to_string()
    }
}

/// What the call-end observer reports for one finished call.
#[derive(Debug, Clone)]
pub struct CallEnd<'a> {
    /// The call's beamline label (its series' label).
    pub beamline_label: &'a str,
    pub method: &'a str,
    pub capability: Option<&'a str>,
    pub code: Code,
    pub duration: Duration,
    /// An agent answered (the mesh's `ServedBy` was on the response).
    pub reached_agent: bool,
}

/// Every metric of the gateway; share it as `Arc<GatewayMetrics>`.
pub struct GatewayMetrics {
    pub(super) registry: Registry,
    pub(super) calls: Family<CallLabels, Counter>,
    pub(super) latency: Family<MethodLabels, Histogram>,
    pub(super) in_flight: Family<BeamlineLabels, Gauge>,
    pub(super) rate_limited: Family<LimitLabels, Counter>,
    pub(super) auth_rejected: Family<CodeLabels, Counter>,
    pub(super) refusals: Family<RefusalLabels, Counter>,
    pub(super) instances: Family<BeamlineLabels, Gauge>,
    pub(super) healthy_instances: Family<BeamlineLabels, Gauge>,
    pub(super) routable_instances: Family<BeamlineLabels, Gauge>,
    pub(super) discovery_updates: Counter,
    pub(super) beamlines: Capped,
    pub(super) capabilities: Capped,
    pub(super) totals: RwLock<HashMap<String, Arc<AtomicTotals>>>,
    /// The metric handles per beamline label (`series`), as bounded as the labels.
    pub(super) series: RwLock<HashMap<Arc<str>, Arc<Series>>>,
    /// Serialises scrapes (they reset the instance gauges) and holds the mesh's update sum at
    /// the last scrape: the sum drops when an idle route goes, so the counter adds increases.
    pub(super) scrape: Mutex<u64>,
    /// See [`GatewayMetrics::label_unknown_beamlines`].
    pub(super) known: std::sync::OnceLock<KnownBeamline>,
}

impl GatewayMetrics {
    /// Labels beamlines that `known` says are not registered [`UNKNOWN`] (set once, by the
    /// server that owns the mesh; before that every id is labelled as itself).
    pub fn label_unknown_beamlines(&self, known: KnownBeamline) {
        let _ = self.known.set(known);
    }

    /// The label of `beamline` ("" for a call without a valid one).
    pub fn beamline_label(&self, beamline: Option<&str>) -> String {
        match beamline {
            None => String::new(),
            Some(b) if self.known.get().is_some_and(|known| !known(b)) => UNKNOWN.to_string(),
            Some(b) => self.beamlines.label(b),
        }
    }

    /// A call began; returns the beamline label to pass back in [`CallEnd`]. (The tests'
    /// entry; a call's record keeps its series instead: [`GatewayMetrics::started`].)
    #[cfg(test)]
    pub(crate) fn call_started(&self, beamline: Option<&str>) -> String {
        self.started(beamline).label.to_string()
    }

    #[cfg(test)]
    pub(crate) fn call_ended(&self, end: &CallEnd<'_>) {
        self.ended(&self.series_of_label(end.beamline_label), end);
    }

    /// A call began: counted in flight under the handles of its beamline's label, which the
    /// call keeps until [`GatewayMetrics::ended`].
    pub(super) fn started(&self, beamline: Option<&str>) -> Arc<Series> {
        let series = self.series(beamline);
        series.in_flight.inc();
        series
    }

    /// A call of `series` ended (`end.beamline_label` is the series' label).
    pub(super) fn ended(&self, series: &Series, end: &CallEnd<'_>) {
        series.in_flight.dec();
        let method = method_label(end.method);
        let labels_of = || MethodLabels {
            beamline: series.label.to_string(),
            method: method.to_string(),
        };
        let handles = series.method(method, || self.latency.get_or_create(&labels_of()).clone());
        handles.latency.observe(end.duration.as_secs_f64());
        let call_labels = |capability: String| CallLabels {
            beamline: series.label.to_string(),
            method: method.to_string(),
            capability,
            code: code_name(end.code).to_string(),
        };
        match (end.capability, end.code) {
            (None, _) => handles
                .calls(end.code, || {
                    self.calls
                        .get_or_create(&call_labels(String::new()))
                        .clone()
                })
                .inc(),
            // An unknown capability is the caller's invention (NOT_FOUND / INVALID_ARGUMENT).
            (Some(_), Code::NotFound | Code::InvalidArgument) => self
                .calls
                .get_or_create(&call_labels(OTHER.to_string()))
                .inc(),
            (Some(c), _) => self
                .calls
                .get_or_create(&call_labels(self.capabilities.label(c)))
                .inc(),
        };
        if !end.reached_agent && matches!(end.code, Code::Unauthenticated | Code::PermissionDenied)
        {
            let code = code_name(end.code).to_string();
            self.auth_rejected.get_or_create(&CodeLabels { code }).inc();
        }
        if let Some(totals) = &series.totals {
            totals.calls.fetch_add(1, Ordering::Relaxed);
            if end.code != Code::Ok {
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The handles of `beamline`'s label. A beamline already labelled as itself is one lookup;
    /// the label is only worked out (and a new series made) the first time.
    fn series(&self, beamline: Option<&str>) -> Arc<Series> {
        // Only a known beamline can be labelled as itself (the rules are `beamline_label`'s).
        let known = beamline.filter(|b| self.known.get().is_none_or(|known| known(b)));
        if let Some(beamline) = known {
            let cached = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = cached.get(beamline) {
                return series.clone();
            }
        }
        self.series_of_label(&self.beamline_label(beamline))
    }

    /// The handles of the beamline label `label`, made the first time.
    fn series_of_label(&self, label: &str) -> Arc<Series> {
        let cached = self.series.read().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = cached.get(label) {
            return series.clone();
        }
        drop(cached);
        let mut cached = self.series.write().unwrap_or_else(|e| e.into_inner());
        let series = cached.entry(Arc::from(label)).or_insert_with(|| {
            let in_flight = self
                .in_flight
                .get_or_create(&beamline_labels(label))
                .clone();
            let totals = (!label.is_empty() && label != UNKNOWN).then(|| self.totals_of(label));
            Arc::new(Series::new(label, in_flight, totals))
        });
        series.clone()
    }

    /// The rate-limit layer refused a call.
    pub fn rate_limited(&self, beamline: &str, scope: Scope) {
        let labels = LimitLabels {
            beamline: self.beamline_label(Some(beamline)),
            scope: scope.as_str().to_string(),
        };
        self.rate_limited.get_or_create(&labels).inc();
    }

    /// The enforcement layer refused an actuating call (`beamline_label`: the call's series'
    /// label).
    pub fn refused(&self, beamline_label: &str, by: RefusedBy) {
        let labels = RefusalLabels {
            beamline: beamline_label.to_string(),
            reason: by.as_str().to_string(),
        };
        self.refusals.get_or_create(&labels).inc();
    }

    /// Calls and errors per beamline since start.
    pub fn totals(&self) -> BTreeMap<String, CallTotals> {
        let totals = self.totals.read().unwrap_or_else(|e| e.into_inner());
        totals
            .iter()
            .map(|(b, t)| {
                let calls = t.calls.load(Ordering::Relaxed);
                let errors = t.errors.load(Ordering::Relaxed);
                (b.clone(), CallTotals { calls, errors })
            })
            .collect()
    }

    fn totals_of(&self, beamline: &str) -> Arc<AtomicTotals> {
        if let Some(t) = self
            .totals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(beamline)
        {
            return t.clone();
        }
        let mut totals = self.totals.write().unwrap_or_else(|e| e.into_inner());
        totals.entry(beamline.to_string()).or_default().clone()
    }
}

/// The label of a method: an RPC of `beamline.v1.BeamlineAgent` or of `beamline.v1.Fleet`
/// (their names differ), or `_other`.
fn method_label(method: &str) -> &'static str {
    match Rpc::of_name(method) {
        Some(rpc) => rpc.name(),
        None => FleetRpc::of_name(method).map_or(OTHER, FleetRpc::name),
    }
}

#[cfg(test)]
mod tests;
