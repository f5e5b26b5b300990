//! The status page and its routes: what it shows is escaped, and page, JSON and metrics are
//! served.

use axum::body::Body;
use http_body_util::BodyExt;
use tonic::Code;
use tower::ServiceExt;

use super::*;
use crate::observe::CallEnd;
use crate::tests::mesh;
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

#[test]
fn escape_covers_the_html_specials() {
    assert_eq!(
        escape(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn the_page_escapes_what_it_shows_and_refreshes_itself() {
    let view = StatusView {
        window_secs: Some(30.0),
        discovery_updates: 3,
        beamlines: vec![BeamlineView {
            beamline: "5.3.1".into(),
            state: "routed",
            instances: vec![InstanceView {
                id: "<script>alert(1)</script>".into(),
                address: "10.0.0.1:5000\"".into(),
                healthy: false,
                passing: true,
                routable: false,
            }],
            calls_total: 10,
            errors_total: 1,
            calls_per_sec: Some(0.5),
            errors_per_sec: Some(0.0),
        }],
    };
    let html = render_page(&view);
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("10.0.0.1:5000&quot;"));
    assert!(html.contains("0/1 healthy"));
    // Passing in Consul but not used by the balancer is not "healthy" on the page.
    assert!(html.contains("passing in Consul, not routable"));
    assert!(html.contains("0.50/s"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn the_routes_serve_the_page_json_and_metrics() {
    let metrics = Arc::new(GatewayMetrics::new());
    let mesh = mesh();
    mesh.warm(&BeamlineId::parse("5.3.1").unwrap()).unwrap();
    call(&metrics, "5.3.1", Code::Ok);
    call(&metrics, "7.0.1", Code::Unavailable);
    let router = router(metrics, mesh);

    let (content_type, html) = get(&router, "/", None).await;
    assert!(content_type.starts_with("text/html"));
    assert!(
        html.contains("<b>5.3.1</b>") && html.contains("pending"),
        "{html}"
    );
    assert!(
        html.contains("<b>7.0.1</b>") && html.contains("idle"),
        "{html}"
    );

    let (_, json) = get(&router, "/status.json", None).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let beamlines = json["beamlines"].as_array().unwrap();
    assert_eq!(beamlines[0]["beamline"], "5.3.1");
    assert_eq!(beamlines[1]["errors_total"], 1);

    let (content_type, text) = get(&router, "/metrics", None).await;
    assert_eq!(content_type, PROMETHEUS_CONTENT_TYPE);
    assert!(text.contains("# TYPE beamline_gateway_calls_total counter"));
    let openmetrics = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let (content_type, text) = get(&router, "/metrics", Some(openmetrics)).await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn rates_are_the_change_since_the_oldest_sample_kept() {
    let metrics = Arc::new(GatewayMetrics::new());
    let state = StatusState {
        metrics: metrics.clone(),
        mesh: mesh(),
        window: Mutex::new(VecDeque::new()),
    };
    assert_eq!(state.view().window_secs, None, "no baseline at first");
    // Pretend the first sample was taken 10 s ago, before 20 calls (5 failed).
    state.window.lock().unwrap()[0].at = Instant::now() - Duration::from_secs(10);
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
    // Samples older than the window go, but the newest of them stays as the baseline.
    state.window.lock().unwrap()[0].at = Instant::now() - Duration::from_secs(100);
    state.window.lock().unwrap()[1].at = Instant::now() - Duration::from_secs(40);
    state.sample();
    let window = state.window.lock().unwrap();
    assert!(window.len() >= 2 && window[0].at.elapsed() < Duration::from_secs(41));
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = router(Arc::new(GatewayMetrics::new()), mesh());
    let server = tokio::spawn(serve(listener, router, async {
        let _ = stopped.await;
    }));
    let page = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
