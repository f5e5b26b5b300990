//! The gateway's Prometheus metrics (prometheus-client): calls by beamline, method, capability
//! and gRPC code; latency; calls in flight; rate-limit and auth rejections; and, computed at
//! scrape time from the mesh, instances per beamline and discovery updates.
//!
//! Calls are recorded when they end (see [`super::access_log`], the one call-end observer that
//! feeds both this and the access log), so a stream counts with its final code and duration.
//!
//! Label values a caller chooses (beamline ids, method names, capabilities) are capped: past a
//! bound, new values are recorded as `_other`, so a client sending random ids cannot grow the
//! scrape without limit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::Code;
use tower::Layer;

use super::access_line::LineQueue;
use super::access_log::{AccessLogLayer, Observed};
use super::limits::Scope;
use crate::mesh::Mesh;

/// The `Content-Type` of [`GatewayMetrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`GatewayMetrics::render_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The RPCs of `beamline.v1.BeamlineAgent`; any other method is labelled `_other`.
const METHODS: [&str; 5] = ["Describe", "Execute", "GetTask", "Subscribe", "Cancel"];
/// Distinct beamlines and capabilities kept as label values before `_other`.
const MAX_BEAMLINES: usize = 1000;
const MAX_CAPABILITIES: usize = 500;
pub const OTHER: &str = "_other";

/// 100 µs … 10 min: from a cached Describe next door to a long scan streamed to its end.
const LATENCY_BUCKETS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    beamline: String,
    method: String,
    capability: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    beamline: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BeamlineLabels {
    beamline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    beamline: String,
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// Calls and failed calls of one beamline since start (for the status page's rates).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallTotals {
    pub calls: u64,
    pub errors: u64,
}

#[derive(Default)]
struct AtomicTotals {
    calls: AtomicU64,
    errors: AtomicU64,
}

/// A bounded set of label values.
struct Capped {
    max: usize,
    seen: RwLock<HashSet<String>>,
}

impl Capped {
    fn new(max: usize) -> Capped {
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
    /// The label from [`GatewayMetrics::call_started`].
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
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    in_flight: Family<BeamlineLabels, Gauge>,
    rate_limited: Family<LimitLabels, Counter>,
    auth_rejected: Family<CodeLabels, Counter>,
    instances: Family<BeamlineLabels, Gauge>,
    healthy_instances: Family<BeamlineLabels, Gauge>,
    discovery_updates: Counter,
    beamlines: Capped,
    capabilities: Capped,
    totals: RwLock<HashMap<String, Arc<AtomicTotals>>>,
    /// Serialises scrapes (they reset the instance gauges) and holds the mesh's update sum at
    /// the last scrape: the sum drops when an idle route goes, so the counter adds increases.
    scrape: Mutex<u64>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        let mut registry = Registry::with_prefix("beamline_gateway");
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        let in_flight = Family::<BeamlineLabels, Gauge>::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let auth_rejected = Family::<CodeLabels, Counter>::default();
        let instances = Family::<BeamlineLabels, Gauge>::default();
        let healthy_instances = Family::<BeamlineLabels, Gauge>::default();
        let discovery_updates = Counter::default();
        let help = "Calls through the gateway by beamline, method, capability and gRPC code";
        registry.register("calls", help, calls.clone());
        let help = "Duration of calls from request to the end of the response stream, seconds";
        registry.register("call_duration_seconds", help, latency.clone());
        let help = "Calls in flight by beamline";
        registry.register("in_flight_calls", help, in_flight.clone());
        let help = "Calls refused with RESOURCE_EXHAUSTED by beamline and limit scope";
        registry.register("rate_limited", help, rate_limited.clone());
        let help = "Calls refused by authentication or authorization, by gRPC code";
        registry.register("auth_rejections", help, auth_rejected.clone());
        let help = "Registered instances per beamline the mesh routes";
        registry.register("instances", help, instances.clone());
        let help = "Healthy (all checks passing) instances per beamline the mesh routes";
        registry.register("healthy_instances", help, healthy_instances.clone());
        let help = "Discovery updates received from Consul";
        registry.register("discovery_updates", help, discovery_updates.clone());
        GatewayMetrics {
            registry,
            calls,
            latency,
            in_flight,
            rate_limited,
            auth_rejected,
            instances,
            healthy_instances,
            discovery_updates,
            beamlines: Capped::new(MAX_BEAMLINES),
            capabilities: Capped::new(MAX_CAPABILITIES),
            totals: RwLock::new(HashMap::new()),
            scrape: Mutex::new(0),
        }
    }

    /// The label of `beamline` ("" for a call without a valid one).
    pub fn beamline_label(&self, beamline: Option<&str>) -> String {
        beamline.map_or_else(String::new, |b| self.beamlines.label(b))
    }

    /// A call began; returns the beamline label to pass back in [`CallEnd`].
    pub fn call_started(&self, beamline: Option<&str>) -> String {
        let label = self.beamline_label(beamline);
        self.in_flight.get_or_create(&beamline_labels(&label)).inc();
        label
    }

    pub fn call_ended(&self, end: &CallEnd<'_>) {
        let beamline = end.beamline_label.to_string();
        self.in_flight
            .get_or_create(&beamline_labels(&beamline))
            .dec();
        let method = method_label(end.method);
        // An unknown capability is the caller's invention (NOT_FOUND / INVALID_ARGUMENT).
        let capability = match (end.capability, end.code) {
            (None, _) => String::new(),
            (Some(_), Code::NotFound | Code::InvalidArgument) => OTHER.to_string(),
            (Some(c), _) => self.capabilities.label(c),
        };
        let code = code_name(end.code).to_string();
        let labels = CallLabels {
            beamline: beamline.clone(),
            method: method.to_string(),
            capability,
            code: code.clone(),
        };
        self.calls.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&MethodLabels {
                beamline: beamline.clone(),
                method: method.to_string(),
            })
            .observe(end.duration.as_secs_f64());
        if !end.reached_agent && matches!(end.code, Code::Unauthenticated | Code::PermissionDenied)
        {
            self.auth_rejected.get_or_create(&CodeLabels { code }).inc();
        }
        if !beamline.is_empty() {
            let totals = self.totals_of(&beamline);
            totals.calls.fetch_add(1, Ordering::Relaxed);
            if end.code != Code::Ok {
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The rate-limit layer refused a call.
    pub fn rate_limited(&self, beamline: &str, scope: Scope) {
        let labels = LimitLabels {
            beamline: self.beamlines.label(beamline),
            scope: scope.as_str().to_string(),
        };
        self.rate_limited.get_or_create(&labels).inc();
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

    /// The OpenMetrics text exposition (what Prometheus asks for), with the mesh's instance
    /// gauges and discovery updates as of now.
    pub fn render(&self, mesh: &Mesh) -> String {
        let mut last_updates = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.instances.clear();
        self.healthy_instances.clear();
        for (beamline, snapshot) in mesh.beamlines() {
            let labels = beamline_labels(beamline.as_str());
            let all = snapshot.instances();
            let healthy = all.iter().filter(|i| i.healthy).count();
            self.instances.get_or_create(&labels).set(all.len() as i64);
            self.healthy_instances
                .get_or_create(&labels)
                .set(healthy as i64);
        }
        let updates = mesh.discovery_updates();
        self.discovery_updates
            .inc_by(updates.saturating_sub(*last_updates));
        *last_updates = updates;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The Prometheus 0.0.4 text format, for clients that do not accept OpenMetrics.
    pub fn render_prometheus(&self, mesh: &Mesh) -> String {
        openmetrics_to_prometheus(&self.render(mesh))
    }
}

fn beamline_labels(beamline: &str) -> BeamlineLabels {
    BeamlineLabels {
        beamline: beamline.to_string(),
    }
}

fn method_label(method: &str) -> &str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// OpenMetrics → 0.0.4: counters are named with `_total` in HELP and TYPE (their samples
/// already are), and the `# EOF` / `# UNIT` lines go. Histograms and gauges read the same.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The canonical name of a gRPC code (`OK`, `RESOURCE_EXHAUSTED`), as in logs and labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records every call in `metrics` when it ends (its stream included). One body wrapper serves
/// this and the access log: `.with_access_log()` adds the log line to the same observer.
#[derive(Clone)]
pub struct MetricsLayer {
    observer: AccessLogLayer,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<GatewayMetrics>) -> MetricsLayer {
        MetricsLayer {
            observer: AccessLogLayer::new().with_metrics(metrics).with_log(false),
        }
    }

    /// Also writes the access log line of each call, where the call ends.
    pub fn with_access_log(self) -> MetricsLayer {
        MetricsLayer {
            observer: self.observer.with_log(true),
        }
    }

    /// Also writes the access log line of each call, through `queue` (off the call's path).
    pub fn with_queued_access_log(self, queue: Arc<LineQueue>) -> MetricsLayer {
        MetricsLayer {
            observer: self.observer.with_queue(queue),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Observed<S>;
    fn layer(&self, inner: S) -> Observed<S> {
        self.observer.layer(inner)
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
pub(crate) mod tests;
