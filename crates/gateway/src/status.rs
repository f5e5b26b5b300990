//! The metrics listener (`--metrics-listen`): `GET /metrics` (Prometheus), `GET /status.json`
//! and `GET /` — the status page an operator opens first: every beamline the mesh routes, its
//! instances and their health, and recent call and error rates. The page is self-contained
//! (inline CSS, no script, no external assets) and reloads itself every 5 s.
//!
//! Rates come from a small sliding window: the per-beamline call and error totals are sampled
//! every 5 s (by a task while the router lives, and on each request) and kept about 30 s; a rate
//! is the change since the oldest kept sample over the time between. Nothing is computed per
//! call for the page, and a page load costs a few map copies.
//!
//! Owns the routes and what they show; the listener's connections (cap, timeouts) are
//! `listener`'s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;

use super::observe::{
    CallTotals, GatewayMetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE,
};
use beamline_mesh_client::discovery::Resolution;
use beamline_mesh_client::Mesh;

mod listener;
pub use listener::{serve_within, ConnectionLimits};

/// How often totals are sampled, and how far back the rates look.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(30);
/// The page reloads itself this often (seconds).
const REFRESH_SECS: u32 = 5;

struct Sample {
    at: Instant,
    totals: BTreeMap<String, CallTotals>,
}

struct StatusState {
    metrics: Arc<GatewayMetrics>,
    mesh: Mesh,
    window: Mutex<VecDeque<Sample>>,
}

impl StatusState {
    /// Samples the totals if the last sample is old enough; returns the baseline for rates
    /// (the oldest sample still kept) and the totals now.
    fn sample(&self) -> (Option<Sample>, BTreeMap<String, CallTotals>) {
        let now = Instant::now();
        let totals = self.metrics.totals();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.back().is_none_or(|s| now - s.at >= SAMPLE_EVERY) {
            window.push_back(Sample {
                at: now,
                totals: totals.clone(),
            });
        }
        // Keep one sample at least WINDOW old as the baseline, drop older ones.
        while window.len() > 1 && window[1].at + WINDOW <= now {
            window.pop_front();
        }
        let baseline = window
            .front()
            .filter(|s| now - s.at >= Duration::from_secs(1));
        let baseline = baseline.map(|s| Sample {
            at: s.at,
            totals: s.totals.clone(),
        });
        (baseline, totals)
    }

    fn view(&self) -> StatusView {
        let (baseline, totals) = self.sample();
        let window_secs = baseline.as_ref().map(|b| b.at.elapsed().as_secs_f64());
        let mut beamlines: BTreeMap<String, BeamlineView> = BTreeMap::new();
        for route in self.mesh.beamlines() {
            let (state, instances) = match &*route.resolution {
                Resolution::Pending => ("pending", vec![]),
                Resolution::NotFound => ("not registered", vec![]),
                Resolution::Instances(all) => {
                    let no_balancer = BTreeSet::new();
                    let routable = route.routable.as_ref().unwrap_or(&no_balancer);
                    let instances: Vec<InstanceView> =
                        all.iter().map(|i| instance(i, routable)).collect();
                    let state = if instances.iter().any(|i| i.healthy) {
                        "routed"
                    } else if route.routable.is_none() {
                        // Nothing has called it (lately): no balancer, no connections yet.
                        "idle (no balancer until the first call)"
                    } else if instances.iter().any(|i| i.passing) {
                        // Consul says passing, but the balancer has no open gate: say so.
                        "not routable (no instance answers its health watch)"
                    } else {
                        "no healthy instance"
                    };
                    (state, instances)
                }
            };
            let id = route.beamline.to_string();
            beamlines.insert(id.clone(), BeamlineView::new(id, state, instances));
        }
        for (id, now) in &totals {
            let view = beamlines
                .entry(id.clone())
                .or_insert_with(|| BeamlineView::new(id.clone(), "idle (not routed now)", vec![]));
            view.calls_total = now.calls;
            view.errors_total = now.errors;
            if let (Some(base), Some(secs)) = (&baseline, window_secs) {
                let before = base.totals.get(id).copied().unwrap_or_default();
                view.calls_per_sec = Some(now.calls.saturating_sub(before.calls) as f64 / secs);
                view.errors_per_sec = Some(now.errors.saturating_sub(before.errors) as f64 / secs);
            }
        }
        StatusView {
            window_secs,
            discovery_updates: self.mesh.discovery_updates(),
            beamlines: beamlines.into_values().collect(),
        }
    }
}

fn instance(
    i: &beamline_mesh_client::discovery::RegisteredInstance,
    routable: &BTreeSet<String>,
) -> InstanceView {
    let routable = routable.contains(&i.id);
    InstanceView {
        id: i.id.clone(),
        address: i.addr.clone(),
        healthy: i.healthy && routable,
        passing: i.healthy,
        routable,
    }
}

/// What `/status.json` returns and the page shows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// Seconds the rates are over (none until two samples exist).
    pub window_secs: Option<f64>,
    pub discovery_updates: u64,
    pub beamlines: Vec<BeamlineView>,
}

#[derive(Debug, Serialize)]
pub struct BeamlineView {
    pub beamline: String,
    pub state: &'static str,
    pub instances: Vec<InstanceView>,
    pub calls_total: u64,
    pub errors_total: u64,
    pub calls_per_sec: Option<f64>,
    pub errors_per_sec: Option<f64>,
}

impl BeamlineView {
    fn new(beamline: String, state: &'static str, instances: Vec<InstanceView>) -> BeamlineView {
        BeamlineView {
            beamline,
            state,
            instances,
            calls_total: 0,
            errors_total: 0,
            calls_per_sec: None,
            errors_per_sec: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub address: String,
    /// Passing in Consul and used by the balancer: what "healthy" means on this page.
    pub healthy: bool,
    /// Every Consul check of the instance passes.
    pub passing: bool,
    /// The balancer holds the instance and its health gate is open.
    pub routable: bool,
}

/// The metrics listener's routes. Inside a Tokio runtime it also starts the sampling task,
/// which ends when the router (and every clone) is dropped.
pub fn router(metrics: Arc<GatewayMetrics>, mesh: Mesh) -> Router {
    let state = Arc::new(StatusState {
        metrics,
        mesh,
        window: Mutex::new(VecDeque::new()),
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(sample_every(Arc::downgrade(&state)));
    }
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn sample_every(state: Weak<StatusState>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        match state.upgrade() {
            Some(state) => drop(state.sample()),
            None => return,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`, within the default [`ConnectionLimits`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_within(listener, router, ConnectionLimits::default(), shutdown).await
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else the 0.0.4 text format.
async fn metrics_text(State(state): State<Arc<StatusState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (content_type, body) = if accept.contains("application/openmetrics-text") {
        (OPENMETRICS_CONTENT_TYPE, state.metrics.render(&state.mesh))
    } else {
        let text = state.metrics.render_prometheus(&state.mesh);
        (PROMETHEUS_CONTENT_TYPE, text)
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn status_json(State(state): State<Arc<StatusState>>) -> Response {
    let body = serde_json::to_string(&state.view()).expect("the view serialises");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn page(State(state): State<Arc<StatusState>>) -> Response {
    let html = render_page(&state.view());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |r| format!("{r:.2}/s"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.4em;\
text-align:left;vertical-align:top}th{background:#f4f4f4}.ok{color:#176f2c}.bad{color:#b00020}\
.muted{color:#777}ul{margin:0;padding-left:1.1em}code{font-size:.95em}";

/// The status page of `view`; every value from outside goes through [`escape`].
pub fn render_page(view: &StatusView) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>beamline-mesh gateway</title><style>{STYLE}</style></head><body>\
         <h1>beamline-mesh gateway</h1><p class=\"muted\">{} beamlines · discovery updates: {} · \
         rates over the last {} · reloads every {REFRESH_SECS} s</p>",
        view.beamlines.len(),
        view.discovery_updates,
        view.window_secs
            .map_or_else(|| "– (first sample)".to_string(), |s| format!("{s:.0} s")),
    );
    if view.beamlines.is_empty() {
        html.push_str("<p>No beamline routed yet: calls through the gateway start routes.</p>");
    } else {
        html.push_str(
            "<table><tr><th>Beamline</th><th>State</th><th>Instances</th><th>Calls</th>\
             <th>Errors</th><th>Calls total</th><th>Errors total</th></tr>",
        );
        for b in &view.beamlines {
            let healthy = b.instances.iter().filter(|i| i.healthy).count();
            let mut instances = String::new();
            for i in &b.instances {
                let (class, health) = match (i.healthy, i.passing) {
                    (true, _) => ("ok", "healthy"),
                    (false, true) => ("bad", "passing in Consul, not routable"),
                    (false, false) => ("bad", "unhealthy"),
                };
                let _ = write!(
                    instances,
                    "<li><code>{}</code> at <code>{}</code> <span class=\"{class}\">{health}</span></li>",
                    escape(&i.id),
                    escape(&i.address),
                );
            }
            let error_class = if b.errors_per_sec.unwrap_or(0.0) > 0.0 {
                "bad"
            } else {
                ""
            };
            let _ = write!(
                html,
                "<tr><td><b>{}</b></td><td>{}</td><td>{healthy}/{} healthy<ul>{instances}</ul></td>\
                 <td>{}</td><td class=\"{error_class}\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&b.beamline),
                escape(b.state),
                b.instances.len(),
                rate(b.calls_per_sec),
                rate(b.errors_per_sec),
                b.calls_total,
                b.errors_total,
            );
        }
        html.push_str("</table>");
    }
    html.push_str(
        "<p class=\"muted\"><a href=\"/metrics\">/metrics</a> · \
         <a href=\"/status.json\">/status.json</a></p></body></html>",
    );
    html
}

#[cfg(test)]
mod tests;
