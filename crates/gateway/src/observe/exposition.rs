//! What a scrape of the gateway shows: the metric families (their label sets, help text and
//! latency buckets), registering them, and rendering the registry as OpenMetrics or as the
//! Prometheus 0.0.4 text, with the mesh's instance gauges and discovery updates read at scrape
//! time.
//!
//! Owns the shape and the text of the metrics; it must not record calls nor choose label values
//! (bounding what a caller sends is the recording side's, `metrics`).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::metrics::{Capped, GatewayMetrics, MAX_BEAMLINES, MAX_CAPABILITIES};
use beamline_mesh_client::Mesh;

/// The `Content-Type` of [`GatewayMetrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`GatewayMetrics::render_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 100 µs … 10 min: from a cached Describe next door to a long scan streamed to its end.
const LATENCY_BUCKETS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CallLabels {
    pub(super) beamline: String,
    pub(super) method: String,
    pub(super) capability: String,
    pub(super) code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    pub(super) beamline: String,
    pub(super) method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BeamlineLabels {
    beamline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) beamline: String,
    pub(super) scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusalLabels {
    pub(super) beamline: String,
    /// `halt`, `lock` or `unreadable`.
    pub(super) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CodeLabels {
    pub(super) code: String,
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
        let refusals = Family::<RefusalLabels, Counter>::default();
        let instances = Family::<BeamlineLabels, Gauge>::default();
        let healthy_instances = Family::<BeamlineLabels, Gauge>::default();
        let routable_instances = Family::<BeamlineLabels, Gauge>::default();
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
        let help = "Actuating calls refused FAILED_PRECONDITION by beamline and reason: a halt, \
                    a lock held by another caller, or the control state unreadable";
        registry.register("refusals", help, refusals.clone());
        let help = "Registered instances per beamline the mesh routes";
        registry.register("instances", help, instances.clone());
        let help = "Healthy (all checks passing) instances per beamline the mesh routes";
        registry.register("healthy_instances", help, healthy_instances.clone());
        let help = "Instances per beamline the balancer will use (held, health gate open); \
                    alert when it stays below healthy_instances";
        registry.register("routable_instances", help, routable_instances.clone());
        let help = "Discovery updates received from Consul";
        registry.register("discovery_updates", help, discovery_updates.clone());
        GatewayMetrics {
            registry,
            calls,
            latency,
            in_flight,
            rate_limited,
            auth_rejected,
            refusals,
            instances,
            healthy_instances,
            routable_instances,
            discovery_updates,
            beamlines: Capped::new(MAX_BEAMLINES),
            capabilities: Capped::new(MAX_CAPABILITIES),
            totals: RwLock::new(HashMap::new()),
            series: RwLock::new(HashMap::new()),
            scrape: Mutex::new(0),
            known: std::sync::OnceLock::new(),
        }
    }

    /// The OpenMetrics text exposition (what Prometheus asks for), with the mesh's instance
    /// gauges and discovery updates as of now.
    pub fn render(&self, mesh: &Mesh) -> String {
        let mut last_updates = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.instances.clear();
        self.healthy_instances.clear();
        self.routable_instances.clear();
        for route in mesh.beamlines() {
            let labels = beamline_labels(route.beamline.as_str());
            let all = route.resolution.instances();
            self.instances.get_or_create(&labels).set(all.len() as i64);
            self.healthy_instances
                .get_or_create(&labels)
                .set(route.passing() as i64);
            self.routable_instances
                .get_or_create(&labels)
                .set(route.routable.as_ref().map_or(0, |r| r.len()) as i64);
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

pub(super) fn beamline_labels(beamline: &str) -> BeamlineLabels {
    BeamlineLabels {
        beamline: beamline.to_string(),
    }
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
