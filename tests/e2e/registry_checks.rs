//! Checks: TTL (pass/warn/fail/update, expiry), check/register and deregister, and the checks the
//! registry runs itself (HTTP, TCP, gRPC) against real servers started in this test process;
//! SuccessBeforePassing and DeregisterCriticalServiceAfter, once each, as wiring: their timing
//! (thresholds, TTL expiry, the reaper, the first-run stagger) is unit-tested on explicit
//! instants in the registry crate (`checks::{thresholds, ttl, reaper, schedule}`).

use crate::support::*;
use serde_json::json;

/// Deadline for an interval check (Interval 1s, first run staggered up to 1s) to reach a state.
const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// 9: pass/warn/fail with ?note= set Status and Output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_pass_warn_fail_with_note() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    let id = "service:foo";

    reg.ttl("warn", id, Some("foo")).await;
    let c = reg.check(id).await.unwrap();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("warning"), Some("foo"))
    );

    reg.ttl("pass", id, Some("bar")).await;
    let c = reg.check(id).await.unwrap();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("passing"), Some("bar"))
    );

    reg.ttl("fail", id, Some("baz qux/1&2")).await;
    let c = reg.check(id).await.unwrap();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("critical"), Some("baz qux/1&2")),
        "the note is URL-decoded"
    );

    reg.ttl("pass", id, None).await;
    assert_eq!(reg.check_status(id).await.as_deref(), Some("passing"));

    // Visible in health/service too.
    let e = reg.health_service("foo", "passing").await.json();
    assert_eq!(service_ids(&e), vec!["foo"]);
}

/// 9: check/update {Status, Output}; a bad status is a 400 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_update_sets_status_and_output() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    let id = "service:foo";
    for (status, output) in [("warning", "w"), ("passing", "p"), ("critical", "c")] {
        reg.put(
            &format!("/v1/agent/check/update/{id}"),
            &json!({"Status": status, "Output": output}),
        )
        .await
        .expect_status(200);
        let c = reg.check(id).await.unwrap();
        assert_eq!(c["Status"], status);
        assert_eq!(c["Output"], output);
    }
    reg.put(
        &format!("/v1/agent/check/update/{id}"),
        &json!({"Status": "fluffy", "Output": "x"}),
    )
    .await
    .expect_status(400)
    .expect_body_contains("Invalid check status");
    let c = reg.check(id).await.unwrap();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("critical"), Some("c"))
    );
}

/// A TTL check that is not refreshed expires to critical; Output says so, like Consul's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expires_to_critical() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "1s"}}))
        .await;
    reg.ttl("pass", "service:foo", Some("alive")).await;
    let passed_at = std::time::Instant::now();
    assert_eq!(
        reg.check_status("service:foo").await.as_deref(),
        Some("passing")
    );
    reg.wait_check_status("service:foo", "critical", secs(10))
        .await;
    assert!(
        passed_at.elapsed() >= ms(900),
        "expired after {:?}, before its 1s TTL",
        passed_at.elapsed()
    );
    let c = reg.check("service:foo").await.unwrap();
    assert!(
        c["Output"].as_str().unwrap_or("").contains("TTL expired"),
        "Output like Consul's: {c}"
    );
    // health/service agrees.
    assert_eq!(reg.health_service("foo", "passing").await.json(), json!([]));
}

/// 10: check/register (node-level) and deregister; check/register with a ServiceID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_register_and_deregister() {
    let reg = Registry::start();
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "foo", "TTL": "15s"}),
    )
    .await
    .expect_status(200);
    let checks = reg.checks().await;
    assert_eq!(keys(&checks), vec!["foo"], "CheckID defaults to Name");
    assert_eq!(checks["foo"]["Status"], "critical");
    assert_eq!(checks["foo"]["Type"], "ttl");
    assert_eq!(checks["foo"]["Name"], "foo");

    reg.put_empty("/v1/agent/check/deregister/foo")
        .await
        .expect_status(200);
    assert_eq!(reg.checks().await, json!({}));

    // Attached to a service.
    reg.register(&json!({"Name": "redis", "Tags": ["primary"]}))
        .await;
    reg.put(
        "/v1/agent/check/register",
        &json!({
            "ID": "redis-extra", "Name": "extra", "ServiceID": "redis", "TTL": "15s",
            "Status": "warning", "Notes": "attached"
        }),
    )
    .await
    .expect_status(200);
    let c = reg.check("redis-extra").await.unwrap();
    assert_eq!(c["ServiceID"], "redis");
    assert_eq!(c["ServiceName"], "redis");
    assert_eq!(c["Status"], "warning");
    assert_eq!(c["Notes"], "attached");
    let checks = reg
        .get("/v1/health/checks/redis")
        .await
        .expect_status(200)
        .json();
    assert_eq!(arr(&checks).len(), 1, "{checks}");
    assert_eq!(checks[0]["CheckID"], "redis-extra");
    assert_eq!(checks[0]["ServiceTags"], json!(["primary"]));
    let e = reg.health_service("redis", "").await.json();
    assert_eq!(find_check(&e[0], "redis-extra")["Status"], "warning");
    reg.get("/v1/agent/health/service/id/redis")
        .await
        .expect_status(429);

    // Deregistering the service removes its checks, including ones registered separately.
    reg.deregister("redis").await;
    assert_eq!(reg.checks().await, json!({}));
}

/// 11: a bad DeregisterCriticalServiceAfter is rejected; "90m" is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_register_validates_durations_and_service() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "redis"})).await;
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "c", "ServiceID": "redis", "TTL": "15s",
                "DeregisterCriticalServiceAfter": "nope"}),
    )
    .await
    .expect_status(400);
    assert_eq!(reg.checks().await, json!({}));
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "c", "ServiceID": "redis", "TTL": "15s",
                "DeregisterCriticalServiceAfter": "90m"}),
    )
    .await
    .expect_status(200);
    assert_eq!(keys(&reg.checks().await), vec!["c"]);

    // A check for a service that does not exist is an error.
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "d", "ServiceID": "ghost", "TTL": "15s"}),
    )
    .await
    .expect_error();
    assert_eq!(keys(&reg.checks().await), vec!["c"]);
}

/// TTL updates on an unknown check, or a non-TTL check, are errors (not a silent success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_update_of_unknown_or_non_ttl_check_is_error() {
    let reg = Registry::start();
    let target = HttpTarget::start(200).await;
    for verb in ["pass", "warn", "fail"] {
        reg.put_empty(&format!("/v1/agent/check/{verb}/nope"))
            .await
            .expect_error();
    }
    reg.put("/v1/agent/check/update/nope", &json!({"Status": "passing"}))
        .await
        .expect_error();

    reg.register(&json!({
        "Name": "web",
        "Check": {"HTTP": target.url("/health"), "Interval": "10s"}
    }))
    .await;
    reg.put_empty("/v1/agent/check/pass/service:web")
        .await
        .expect_error();
    assert_eq!(reg.checks().await["service:web"]["Type"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_follows_target_status() {
    let reg = Registry::start();
    let target = HttpTarget::start(200).await;
    reg.register(&json!({
        "Name": "web", "Port": target.addr.port(),
        "Check": {"HTTP": target.url("/health"), "Interval": "1s", "Timeout": "1s"}
    }))
    .await;
    let c = reg.check("service:web").await.unwrap();
    assert_eq!(c["Type"], "http");
    assert_eq!(c["Status"], "critical", "starts critical");

    reg.wait_check_status("service:web", "passing", CHECK_DEADLINE)
        .await;
    let c = reg.check("service:web").await.unwrap();
    // Consul: "HTTP GET <url>: 200 OK Output: <body>".
    let out = c["Output"].as_str().unwrap_or("");
    assert!(
        out.starts_with(&format!("HTTP GET {}: 200 OK", target.url("/health"))),
        "Output like Consul's: {out:?}"
    );
    assert!(
        out.contains("test target says 200"),
        "Output carries the body: {out:?}"
    );
    assert!(target.hits() >= 1);
    assert_eq!(target.last_method(), "GET");

    target.set_status(429);
    reg.wait_check_status("service:web", "warning", CHECK_DEADLINE)
        .await;
    target.set_status(500);
    reg.wait_check_status("service:web", "critical", CHECK_DEADLINE)
        .await;
    target.set_status(204);
    reg.wait_check_status("service:web", "passing", CHECK_DEADLINE)
        .await;
    target.set_status(404);
    reg.wait_check_status("service:web", "critical", CHECK_DEADLINE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_method_header_and_timeout() {
    let reg = Registry::start();
    let target = HttpTarget::start(200).await;
    reg.register(&json!({
        "Name": "web",
        "Check": {
            "HTTP": target.url("/ready"), "Method": "POST",
            "Header": {"X-Probe": ["yes"]},
            "Interval": "1s", "Timeout": "300ms"
        }
    }))
    .await;
    reg.wait_check_status("service:web", "passing", CHECK_DEADLINE)
        .await;
    assert_eq!(target.last_method(), "POST");
    assert_eq!(target.last_header("X-Probe").as_deref(), Some("yes"));

    // A target slower than Timeout is critical.
    target.set_delay(secs(3));
    reg.wait_check_status("service:web", "critical", CHECK_DEADLINE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check() {
    let reg = Registry::start();
    let mut target = TcpTarget::start().await;
    let closed = closed_port_addr();
    reg.register(&json!({
        "Name": "db", "Check": {"TCP": target.addr.to_string(), "Interval": "1s", "Timeout": "1s"}
    }))
    .await;
    reg.register(&json!({
        "Name": "gone", "Check": {"TCP": closed.to_string(), "Interval": "1s", "Timeout": "1s",
                                   "Status": "passing"}
    }))
    .await;
    assert_eq!(reg.check("service:db").await.unwrap()["Type"], "tcp");
    reg.wait_check_status("service:db", "passing", CHECK_DEADLINE)
        .await;
    // Consul: "TCP connect <addr>: Success".
    assert_eq!(
        reg.check("service:db").await.unwrap()["Output"],
        format!("TCP connect {}: Success", target.addr).as_str()
    );
    reg.wait_check_status("service:gone", "critical", CHECK_DEADLINE)
        .await;
    let out = reg.check("service:gone").await.unwrap()["Output"].clone();
    assert!(
        out.as_str().is_some_and(|o| !o.is_empty()),
        "Output explains: {out}"
    );

    target.stop().await;
    reg.wait_check_status("service:db", "critical", CHECK_DEADLINE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_whole_server() {
    let reg = Registry::start();
    let target = GrpcTarget::start().await;
    reg.register(&json!({
        "Name": "agent", "Port": target.addr.port(),
        "Check": {"GRPC": target.addr.to_string(), "Interval": "1s", "Timeout": "1s"}
    }))
    .await;
    assert_eq!(reg.check("service:agent").await.unwrap()["Type"], "grpc");
    reg.wait_check_status("service:agent", "passing", CHECK_DEADLINE)
        .await;

    target.set("", false).await;
    reg.wait_check_status("service:agent", "critical", CHECK_DEADLINE)
        .await;
    let out = reg.check("service:agent").await.unwrap()["Output"].clone();
    assert!(
        out.as_str().is_some_and(|o| !o.is_empty()),
        "Output explains: {out}"
    );

    target.set("", true).await;
    reg.wait_check_status("service:agent", "passing", CHECK_DEADLINE)
        .await;
}

/// A gRPC health server that, unlike a dropped `GrpcTarget` (whose accepted connections outlive
/// it), closes its connections when stopped, as a process that exits does.
async fn stoppable_grpc_server() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tonic_health::server::HealthReporter,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tonic::transport::Server::builder().add_service(health);
    tokio::spawn(server.serve_with_incoming_shutdown(incoming, async {
        let _ = stopped.await;
    }));
    (addr, stop, reporter)
}

/// The registry keeps one connection to a gRPC target across runs; when the server goes (its
/// connections close with it), the next runs dial, are refused, and the check turns critical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_server_gone() {
    let reg = Registry::start();
    let (addr, stop, _reporter) = stoppable_grpc_server().await;
    reg.register(&json!({
        "Name": "agent", "Port": addr.port(),
        "Check": {"GRPC": addr.to_string(), "Interval": "1s", "Timeout": "1s"}
    }))
    .await;
    reg.wait_check_status("service:agent", "passing", CHECK_DEADLINE)
        .await;
    stop.send(()).unwrap();
    reg.wait_check_status("service:agent", "critical", CHECK_DEADLINE)
        .await;
}

/// `host:port/service` asks about that service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_named_service() {
    let reg = Registry::start();
    let target = GrpcTarget::start().await;
    target.set("beamline.v1.BeamlineAgent", true).await;
    reg.register(&json!({
        "Name": "agent",
        "Checks": [
            {"CheckID": "named", "GRPC": format!("{}/beamline.v1.BeamlineAgent", target.addr),
             "Interval": "1s", "Timeout": "1s"},
            {"CheckID": "unknown", "GRPC": format!("{}/no.such.Service", target.addr),
             "Interval": "1s", "Timeout": "1s", "Status": "passing"},
            // A host name rather than an IP, as agents may advertise.
            {"CheckID": "by-name", "GRPC": format!("localhost:{}", target.addr.port()),
             "Interval": "1s", "Timeout": "1s"},
            // snake_case alias, as py-consul sends it.
            {"CheckID": "plain", "grpc": target.addr.to_string(), "grpc_use_tls": false,
             "interval": "1s"}
        ]
    }))
    .await;
    reg.wait_check_status("named", "passing", CHECK_DEADLINE)
        .await;
    reg.wait_check_status("unknown", "critical", CHECK_DEADLINE)
        .await;
    reg.wait_check_status("plain", "passing", CHECK_DEADLINE)
        .await;
    reg.wait_check_status("by-name", "passing", CHECK_DEADLINE)
        .await;

    target.set("beamline.v1.BeamlineAgent", false).await;
    reg.wait_check_status("named", "critical", CHECK_DEADLINE)
        .await;
    // The whole server is still SERVING.
    assert_eq!(reg.check_status("plain").await.as_deref(), Some("passing"));
}

/// SuccessBeforePassing: N consecutive successes before passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_before_passing() {
    let reg = Registry::start();
    let target = HttpTarget::start(200).await;
    reg.register(&json!({
        "Name": "web",
        "Check": {"HTTP": target.url("/"), "Interval": "1s", "SuccessBeforePassing": 3}
    }))
    .await;
    reg.wait_check_status("service:web", "passing", secs(15))
        .await;
    assert!(
        target.hits() >= 3,
        "passing after {} probe(s); SuccessBeforePassing is 3",
        target.hits()
    );
}

/// DeregisterCriticalServiceAfter removes a service whose check stays critical (values >= 1s are
/// honoured); a passing service with the same setting stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_critical_service_after() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "doomed", "ID": "doomed1",
        "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "1s"}
    }))
    .await;
    reg.register(&json!({
        "Name": "fine", "ID": "fine1",
        "Check": {"TTL": "30s", "Status": "passing", "DeregisterCriticalServiceAfter": "1s"}
    }))
    .await;
    let registered = std::time::Instant::now();
    poll_until(
        secs(20),
        "doomed1 to be deregistered",
        async || keys(&reg.services().await),
        |ids| !ids.contains(&"doomed1".to_string()),
    )
    .await;
    assert!(
        registered.elapsed() >= ms(900),
        "removed after {:?}, before 1s critical",
        registered.elapsed()
    );
    assert_eq!(keys(&reg.services().await), vec!["fine1"]);
    assert!(
        reg.check("service:doomed1").await.is_none(),
        "its checks go too"
    );
    assert_eq!(reg.health_service("doomed", "").await.json(), json!([]));
}

/// GRPCUseTLS: TLS to the target; TLSSkipVerify accepts a self-signed certificate; without it
/// the untrusted certificate is critical; plaintext against a TLS server is critical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_with_tls() {
    let reg = Registry::start();
    let target = GrpcTarget::start_tls().await;
    let addr = target.addr.to_string();
    reg.register(&json!({
        "Name": "agent",
        "Checks": [
            {"CheckID": "skip", "GRPC": addr, "GRPCUseTLS": true, "TLSSkipVerify": true,
             "Interval": "1s", "Timeout": "1s"},
            {"CheckID": "verify", "GRPC": addr, "GRPCUseTLS": true,
             "Interval": "1s", "Timeout": "1s", "Status": "passing"},
            {"CheckID": "plain", "GRPC": addr, "Interval": "1s", "Timeout": "1s",
             "Status": "passing"}
        ]
    }))
    .await;
    reg.wait_check_status("skip", "passing", CHECK_DEADLINE)
        .await;
    reg.wait_check_status("verify", "critical", CHECK_DEADLINE)
        .await;
    reg.wait_check_status("plain", "critical", CHECK_DEADLINE)
        .await;

    target.set("", false).await;
    reg.wait_check_status("skip", "critical", CHECK_DEADLINE)
        .await;
}
