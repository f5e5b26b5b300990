//! The routes: page, JSON and metrics are served from the mesh, the Facility and the totals;
//! rates come from the sampled window; `?filter=` hides rows; the server stops on shutdown.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tonic::Code;
use tower::ServiceExt;

use super::*;
use crate::observe::CallEnd;
use crate::tests::mesh;
use beamline_consul::ConsulConfig;
use beamline_contract::beamline::BeamlineId;

fn call(metrics: &GatewayMetrics, beamline: &str, code: Code) {
    let label = metrics.call_started(Some(beamline));
    metrics.call_ended(&CallEnd {
        beamline_label: &label,
        method: "Describe",
        capability: None,
        code,
        duration: Duration::from_millis(1),
        reached_agent: true,
    });
}

/// A Facility over a Consul nobody answers at: an empty catalog, an unreadable control state.
fn facility(mesh: &Mesh) -> Facility {
    Facility::start(mesh, ConsulConfig::new("127.0.0.1:9").unwrap())
}

fn state(metrics: Arc<GatewayMetrics>) -> StatusState {
    let mesh = mesh();
    StatusState {
        metrics,
        facility: facility(&mesh),
        mesh,
        window: Window::default(),
    }
}

async fn get(router: &Router, path: &str, accept: Option<&str>) -> (String, String) {
    let mut request = http::Request::builder().uri(path);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_routes_serve_the_page_json_and_metrics() {
    let metrics = Arc::new(GatewayMetrics::new());
    let mesh = mesh();
    mesh.warm(&BeamlineId::parse("5.3.1").unwrap()).unwrap();
    call(&metrics, "5.3.1", Code::Ok);
    call(&metrics, "7.0.1", Code::Unavailable);
    let router = router(metrics, mesh.clone(), facility(&mesh));

    let (content_type, html) = get(&router, "/", None).await;
    assert!(content_type.starts_with("text/html"));
    assert!(
        html.contains("data-beamline=\"5.3.1\"") && html.contains("pending"),
        "{html}"
    );
    assert!(
        html.contains("data-beamline=\"7.0.1\"") && html.contains("idle"),
        "{html}"
    );
    // Consul at 127.0.0.1:9 never answers: the control state is unreadable, and the page says so.
    assert!(html.contains("Halt and lock state unreadable"), "{html}");

    let (_, json) = get(&router, "/status.json", None).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let beamlines = json["beamlines"].as_array().unwrap();
    assert_eq!(beamlines[0]["beamline"], "5.3.1");
    assert_eq!(beamlines[1]["errors_total"], 1);
    assert_eq!(json["totals"]["beamlines"], 2);
    assert_eq!(json["fleet_halt"], serde_json::Value::Null);
    assert!(json["control_unreadable"].is_string(), "{json}");
    for field in ["attention", "halt", "lock", "card", "card_error"] {
        assert!(beamlines[0].get(field).is_some(), "no {field} in {json}");
    }

    let (content_type, text) = get(&router, "/metrics", None).await;
    assert_eq!(content_type, PROMETHEUS_CONTENT_TYPE);
    assert!(text.contains("# TYPE beamline_gateway_calls_total counter"));
    let openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let (content_type, text) = get(&router, "/metrics", Some(openmetrics)).await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn a_filter_in_the_query_hides_the_rows_it_does_not_match() {
    let metrics = Arc::new(GatewayMetrics::new());
    call(&metrics, "5.3.1", Code::Ok);
    call(&metrics, "10.0.1", Code::Ok);
    let mesh = mesh();
    let router = router(metrics, mesh.clone(), facility(&mesh));
    let (_, html) = get(&router, "/?filter=10.0", None).await;
    assert!(html.contains("value=\"10.0\""), "{html}");
    assert!(html.contains("showing 1 of 2"), "{html}");
    let row = |id: &str| {
        let at = html.find(&format!("data-beamline=\"{id}\"")).unwrap();
        html[at..].split('>').next().unwrap().to_string()
    };
    assert!(row("5.3.1").ends_with(" hidden"), "{}", row("5.3.1"));
    assert!(!row("10.0.1").contains("hidden"), "{}", row("10.0.1"));
    // Both are unhealthy (no instances): the attention heading stays, and there is no other.
    assert!(
        html.contains("<tr class=\"group\" id=\"group-attention\"><th"),
        "{html}"
    );
    let (_, html) = get(&router, "/?filter=nothing-matches", None).await;
    assert!(html.contains("id=\"group-attention\" hidden>"), "{html}");
    // Odd queries are read as text, never refused (`get` asserts 200).
    get(&router, "/?filter=%FF%ZZ&filter&x=1", None).await;
}

#[tokio::test]
async fn rates_are_the_change_since_the_oldest_sample_kept() {
    let metrics = Arc::new(GatewayMetrics::new());
    let state = state(metrics.clone());
    assert_eq!(state.view().window_secs, None, "no baseline at first");
    // Pretend the first sample was taken 10 s ago, before 20 calls (5 failed).
    state.window.samples.lock().unwrap()[0].at = Instant::now() - Duration::from_secs(10);
    for i in 0..20 {
        let code = if i < 5 { Code::Internal } else { Code::Ok };
        call(&metrics, "5.3.1", code);
    }
    let view = state.view();
    let secs = view.window_secs.unwrap();
    assert!((10.0..11.0).contains(&secs), "{secs}");
    let b = &view.beamlines[0];
    assert!((b.calls_per_sec.unwrap() - 20.0 / secs).abs() < 1e-9);
    assert!((b.errors_per_sec.unwrap() - 5.0 / secs).abs() < 1e-9);
    assert_eq!(view.totals.calls_per_sec, b.calls_per_sec);
    assert!(b.attention.contains(&Attention::Erroring));
    // Samples older than the window go, but the newest of them stays as the baseline.
    {
        let mut samples = state.window.samples.lock().unwrap();
        samples[0].at = Instant::now() - Duration::from_secs(100);
        samples[1].at = Instant::now() - Duration::from_secs(40);
    }
    state.sample();
    let window = state.window.samples.lock().unwrap();
    assert!(window.len() >= 2 && window[0].at.elapsed() < Duration::from_secs(41));
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mesh = mesh();
    let router = router(
        Arc::new(GatewayMetrics::new()),
        mesh.clone(),
        facility(&mesh),
    );
    let server = tokio::spawn(serve(listener, router, async {
        let _ = stopped.await;
    }));
    let page = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
