//! The HTTP probe over plain HTTP: how status codes map to check statuses, what the request
//! carries, the Output text, and failures (timeouts, refused connections, bad input).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get};

use super::*;

async fn echo(method: Method, headers: HeaderMap, body: String) -> String {
    let h = |name: &str| {
        let values = headers.get_all(name).iter();
        values
            .map(|v| v.to_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "method={method} host={} ua={} accept={} x-probe={} body={body}",
        h("host"),
        h("user-agent"),
        h("accept"),
        h("x-probe")
    )
}

async fn http_server() -> SocketAddr {
    let app = axum::Router::new()
        .route("/ok", get(|| async { "all good" }))
        .route(
            "/busy",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
        .route("/echo", any(echo))
        .route(
            "/big",
            get(|| async { format!("HEAD{}TAIL", "x".repeat(5000)) }),
        )
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::to("/ok") }),
        );
    let (listener, addr) = listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn http_get(addr: SocketAddr, path: &str) -> ProbeResult {
    http(&get_probe(format!("http://{addr}{path}")), LONG).await
}

#[tokio::test]
async fn http_status_codes_map_like_consul() {
    let addr = http_server().await;
    let ok = http_get(addr, "/ok").await;
    assert_eq!(ok.status, CheckStatus::Passing);
    assert_eq!(
        ok.output,
        format!("HTTP GET http://{addr}/ok: 200 OK Output: all good")
    );

    let busy = http_get(addr, "/busy").await;
    assert_eq!(busy.status, CheckStatus::Warning);
    let expected = format!("HTTP GET http://{addr}/busy: 429 Too Many Requests Output: slow down");
    assert_eq!(busy.output, expected);

    let fail = http_get(addr, "/fail").await;
    assert_eq!(fail.status, CheckStatus::Critical);
    assert!(
        fail.output
            .ends_with("500 Internal Server Error Output: boom"),
        "{}",
        fail.output
    );

    let missing = http_get(addr, "/nowhere").await;
    assert_eq!(missing.status, CheckStatus::Critical);
    assert!(
        missing.output.contains(": 404 Not Found Output: "),
        "{}",
        missing.output
    );

    assert_eq!(http_get(addr, "/moved").await.status, CheckStatus::Passing);
}

#[tokio::test]
async fn http_sends_method_headers_and_body() {
    let addr = http_server().await;
    let mut probe = get_probe(format!("http://{addr}/echo"));
    probe.method = "POST".into();
    probe
        .header
        .insert("X-Probe".into(), vec!["a".into(), "b".into()]);
    probe.body = "ping".into();
    let result = http(&probe, LONG).await;
    assert_eq!(result.status, CheckStatus::Passing);
    let expected = format!(
        "HTTP POST http://{addr}/echo: 200 OK Output: method=POST host={addr} \
         ua=Consul Health Check accept=text/plain, text/*, */* x-probe=a,b body=ping"
    );
    assert_eq!(result.output, expected);

    // The caller's own Host, User-Agent and Accept win over the defaults, as in Consul.
    probe
        .header
        .insert("Host".into(), vec!["beamline.test".into()]);
    probe
        .header
        .insert("user-agent".into(), vec!["mine".into()]);
    probe
        .header
        .insert("Accept".into(), vec!["application/json".into()]);
    let output = http(&probe, LONG).await.output;
    assert!(
        output.contains("host=beamline.test ua=mine accept=application/json"),
        "{output}"
    );
}

#[tokio::test]
async fn http_keeps_the_last_4k_of_the_body() {
    let result = http_get(http_server().await, "/big").await;
    let body = result.output.split_once(" Output: ").unwrap().1;
    assert_eq!(body.len(), 4096);
    assert!(body.ends_with("TAIL") && !body.contains("HEAD"));
}

#[tokio::test]
async fn http_timeout_and_connection_errors_are_critical() {
    let addr = http_server().await;
    let started = Instant::now();
    let probe = get_probe(format!("http://{addr}/hang"));
    let hung = http(&probe, Duration::from_millis(300)).await;
    assert!(started.elapsed() < LONG);
    assert_eq!(hung.status, CheckStatus::Critical);
    let expected = format!(
        "Get \"http://{addr}/hang\": context deadline exceeded \
         (Client.Timeout exceeded while awaiting headers)"
    );
    assert_eq!(hung.output, expected);

    let refused = http_get(closed_port().await, "/").await;
    assert_eq!(refused.status, CheckStatus::Critical);
    assert!(
        refused.output.starts_with("Get \"http://127.0.0.1:"),
        "{}",
        refused.output
    );
    assert!(
        refused.output.contains("connection refused"),
        "{}",
        refused.output
    );
}

#[tokio::test]
async fn http_bad_input_is_critical_not_a_panic() {
    let addr = http_server().await;
    let mut cases = vec![
        get_probe("not a url".into()),
        get_probe("ftp://127.0.0.1/x".into()),
        get_probe("http://nonexistent.invalid/".into()),
        get_probe(String::new()),
    ];
    let mut bad_method = get_probe(format!("http://{addr}/ok"));
    bad_method.method = "BAD METHOD".into();
    let mut bad_header = get_probe(format!("http://{addr}/ok"));
    bad_header
        .header
        .insert("bad name".into(), vec!["v".into()]);
    let mut bad_value = get_probe(format!("http://{addr}/ok"));
    bad_value
        .header
        .insert("x".into(), vec!["line\nbreak".into()]);
    let mut bad_sni = get_probe(format!("https://{addr}/ok"));
    bad_sni.tls_server_name = "bad name/".into();
    cases.extend([bad_method, bad_header, bad_value, bad_sni]);
    for probe in &cases {
        let result = http(probe, LONG).await;
        assert_eq!(result.status, CheckStatus::Critical, "{probe:?}");
        assert!(!result.output.is_empty(), "{probe:?}");
    }
    let unsupported = http(&cases[1], LONG).await.output;
    assert_eq!(
        unsupported,
        "Get \"ftp://127.0.0.1/x\": unsupported protocol scheme \"ftp\""
    );

    // A timeout too large to add to the clock must not overflow.
    let result = http(&get_probe(format!("http://{addr}/ok")), Duration::MAX).await;
    assert_eq!(result.status, CheckStatus::Passing);
}

/// Consecutive runs against one target reuse a kept-alive connection: the server accepts one.
#[tokio::test]
async fn http_runs_reuse_one_connection() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = Arc::new(AtomicUsize::new(0));
    let (listener, addr) = listener().await;
    let count = accepted.clone();
    let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let app = axum::Router::new().route("/ok", get(|| async { "all good" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let probe = get_probe(format!("http://{addr}/ok"));
    for run in 0..20 {
        let result = http(&probe, LONG).await;
        assert_eq!(
            result.status,
            CheckStatus::Passing,
            "run {run}: {}",
            result.output
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "20 runs, one connection"
    );
}
