//! The metrics listener (`--metrics-listen`): `GET /metrics` (Prometheus), `GET /status.json`
//! and `GET /` — the status page an operator opens first (`page`): the fleet's totals, then
//! every beamline as one row, those that need attention first, with its instances and their
//! health, call and error rates, halt and lock, card and capabilities. `/status.json` has the
//! same data in the page's order.
//!
//! Owns the routes and gathering their sources (the mesh's routes, the Facility's catalog and
//! control state, the call totals); the view is `sources`' and `view`'s, the rates `sample`'s,
//! the HTML `page`'s, and the listener's connections (cap, timeouts) `listener`'s.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::fleet::Facility;
use super::observe::{GatewayMetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use beamline_mesh_client::Mesh;

mod listener;
mod page;
mod sample;
mod sources;
mod view;

pub use listener::{serve_within, ConnectionLimits};
pub use page::{escape, render_page, REFRESH_SECS};
pub use view::{
    Attention, BeamlineView, CapabilityView, CardView, HaltView, InstanceView, LockView,
    StatusView, Totals,
};

use sample::{Window, SAMPLE_EVERY};

struct StatusState {
    metrics: Arc<GatewayMetrics>,
    mesh: Mesh,
    facility: Facility,
    window: Window,
}

impl StatusState {
    /// Samples the totals (if the last sample is old enough) and builds the view now.
    fn view(&self) -> StatusView {
        let mono_now = Instant::now();
        let rates = self.window.sample(mono_now, self.metrics.totals());
        let routes = self.mesh.beamlines();
        let catalog = self.facility.catalog.list(&|_| true);
        let control = self.facility.control.view();
        sources::build(
            sources::Sources {
                routes: &routes,
                catalog: &catalog,
                control: &control,
                rates: &rates,
                discovery_updates: self.mesh.discovery_updates(),
            },
            SystemTime::now(),
            mono_now,
        )
    }

    fn sample(&self) {
        drop(self.window.sample(Instant::now(), self.metrics.totals()));
    }
}

/// The metrics listener's routes. Inside a Tokio runtime it also starts the sampling task,
/// which ends when the router (and every clone) is dropped.
pub fn router(metrics: Arc<GatewayMetrics>, mesh: Mesh, facility: Facility) -> Router {
    let state = Arc::new(StatusState {
        metrics,
        mesh,
        facility,
        window: Window::default(),
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
            Some(state) => state.sample(),
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

/// The longest `?filter=` honoured (a filter is a few words; more is cut, never refused).
const MAX_FILTER_CHARS: usize = 200;

async fn page(
    State(state): State<Arc<StatusState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    // A query that does not parse is no filter: the page is for reading, not for refusing.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let filter: String = (query.get("filter").map(String::as_str))
        .unwrap_or("")
        .chars()
        .take(MAX_FILTER_CHARS)
        .collect();
    let html = render_page(&state.view(), &filter);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

#[cfg(test)]
mod tests;
