//! Validation like Consul's: decode errors, case-insensitive keys and snake_case aliases,
//! durations, required fields, check kinds, statuses, Meta rules, methods — and a refused request
//! changes nothing.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The agent's whole view, to compare before and after a refused request.
async fn snapshot(reg: &Registry) -> (Value, Value) {
    (reg.services().await, reg.checks().await)
}

/// A registry holding one healthy service, the baseline for "a failed request changes nothing".
async fn with_baseline() -> Registry {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "base", "ID": "base1", "Port": 1000, "Tags": ["t"],
        "Check": {"TTL": "30s", "Status": "passing"}
    }))
    .await;
    reg
}

async fn register_raw(reg: &Registry, body: &[u8]) -> Resp {
    reg.put_bytes("/v1/agent/service/register", body.to_vec())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_decode_errors() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    for body in [
        json!({"Name": "x", "Bogus": 1}),
        json!({"Name": "x", "Check": {"TTL": "10s", "Bogus": true}}),
        json!({"Name": "x", "Checks": [{"TTL": "10s"}, {"TTL": "10s", "Nope": 1}]}),
        json!({"Name": "x", "Weights": {"Passing": 1, "Heavy": 2}}),
        // An existing service's re-registration with a typo leaves it alone too.
        json!({"Name": "base", "ID": "base1", "Port": 2000, "Prot": 3}),
    ] {
        let r = reg
            .put("/v1/agent/service/register", &body)
            .await
            .expect_status(400);
        assert!(
            r.text().starts_with("Request decode failed"),
            "{body}: body {:?} must start with \"Request decode failed\"",
            r.text()
        );
        assert_eq!(snapshot(&reg).await, before, "{body} changed something");
    }
    // Same for check/register and check/update.
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "c", "TTL": "10s", "Extra": 1}),
    )
    .await
    .expect_status(400)
    .expect_body_contains("Request decode failed");
    reg.put(
        "/v1/agent/check/update/service:base1",
        &json!({"Status": "warning", "Output": "o", "Extra": 1}),
    )
    .await
    .expect_status(400);
    assert_eq!(snapshot(&reg).await, before);
}

/// py-consul and other clients send lowercase keys; Consul matches keys case-insensitively and
/// accepts snake_case aliases on checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowercase_and_snake_case_keys_accepted() {
    let reg = Registry::start();
    reg.register(&json!({
        "name": "web", "id": "web1", "port": 8080, "tags": ["a"], "meta": {"k": "v"},
        "address": "127.0.0.1",
        "check": {"ttl": "10s", "deregister_critical_service_after": "1m", "status": "passing",
                  "notes": "lower"}
    }))
    .await;
    let svc = reg
        .get("/v1/agent/service/web1")
        .await
        .expect_status(200)
        .json();
    assert_eq!(svc["Service"], "web");
    assert_eq!(svc["Port"], 8080);
    assert_eq!(svc["Tags"], json!(["a"]));
    assert_eq!(svc["Meta"], json!({"k": "v"}));
    let c = reg.check("service:web1").await.unwrap();
    assert_eq!(c["Status"], "passing");
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["Notes"], "lower");

    reg.register(&json!({"NAME": "upper", "Id": "upper1", "CHECKS": [{"Ttl": "10s"}]}))
        .await;
    assert!(reg.services().await.get("upper1").is_some());
    assert!(reg.check("service:upper1").await.is_some());

    reg.put(
        "/v1/agent/check/register",
        &json!({"name": "extra", "service_id": "web1", "ttl": "10s", "tls_skip_verify": false}),
    )
    .await
    .expect_status(200);
    assert_eq!(reg.check("extra").await.unwrap()["ServiceID"], "web1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_as_strings_or_nanoseconds() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "a", "Check": {"TTL": "1m30s"}}))
        .await;
    reg.register(&json!({"Name": "b", "Check": {"TTL": 10_000_000_000u64}}))
        .await;
    reg.register(&json!({
        "Name": "c", "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": 90_000_000_000u64}
    }))
    .await;
    assert_eq!(keys(&reg.services().await), vec!["a", "b", "c"]);

    // 1e9 ns is one second (not 1e9 seconds): a passing check with that TTL expires promptly.
    reg.register(&json!({"Name": "d", "Check": {"TTL": 1_000_000_000u64, "Status": "passing"}}))
        .await;
    reg.ttl("pass", "service:d", None).await;
    reg.wait_check_status("service:d", "critical", secs(10))
        .await;

    let before = snapshot(&reg).await;
    for bad in [json!("10 parsecs"), json!("ten"), json!(true)] {
        reg.put(
            "/v1/agent/service/register",
            &json!({"Name": "e", "Check": {"TTL": bad}}),
        )
        .await
        .expect_status(400);
    }
    assert_eq!(snapshot(&reg).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_name_is_400() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    for body in [
        json!({}),
        json!({"ID": "x", "Port": 80}),
        json!({"Name": ""}),
    ] {
        reg.put("/v1/agent/service/register", &body)
            .await
            .expect_status(400)
            .expect_body_contains("Missing service name");
    }
    register_raw(&reg, b"").await.expect_status(400);
    assert_eq!(snapshot(&reg).await, before);
}

/// Consul's CheckType.Validate: TTL with Interval, or neither, or an interval check without an
/// Interval, are 400s; so is a bad initial Status (4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_definitions_validated() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    for check in [
        json!({"TTL": "10s", "Interval": "10s"}),
        json!({"TTL": "10s", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"}),
        json!({"Notes": "neither ttl nor interval"}),
        json!({"Name": "named only"}),
        json!({"HTTP": "http://127.0.0.1:1/"}),
        json!({"TCP": "127.0.0.1:1"}),
        json!({"GRPC": "127.0.0.1:1"}),
        json!({"TTL": "15s", "Status": "fluffy"}),
        json!({"TTL": "15s", "Status": "Passing"}),
    ] {
        let r = reg
            .put(
                "/v1/agent/service/register",
                &json!({"Name": "x", "Check": check.clone()}),
            )
            .await;
        assert_eq!(
            r.code(),
            400,
            "check {check}: got {} {:?}",
            r.status,
            r.text()
        );
        assert!(!r.text().is_empty(), "a plain-text reason for {check}");
        assert_eq!(
            snapshot(&reg).await,
            before,
            "check {check} changed something"
        );
    }
    // One good and one bad check: nothing is half-applied.
    reg.put(
        "/v1/agent/service/register",
        &json!({"Name": "x", "Checks": [{"TTL": "10s"}, {"TTL": "10s", "Interval": "5s"}]}),
    )
    .await
    .expect_status(400);
    assert_eq!(snapshot(&reg).await, before);

    // check/register: same rules, plus a name is required.
    for check in [
        json!({"Name": "c", "TTL": "10s", "Interval": "10s"}),
        json!({"Name": "c"}),
        json!({"TTL": "10s"}),
        json!({"Name": "c", "TTL": "10s", "Status": "fluffy"}),
    ] {
        reg.put("/v1/agent/check/register", &check)
            .await
            .expect_status(400);
    }
    assert_eq!(snapshot(&reg).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_unknown_id_is_404() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    reg.put_empty("/v1/agent/service/deregister/ghost")
        .await
        .expect_status(404)
        .expect_body_contains("Unknown service ID");
    // By name is not by ID.
    reg.register(&json!({"Name": "named", "ID": "named-1"}))
        .await;
    reg.put_empty("/v1/agent/service/deregister/named")
        .await
        .expect_status(404);
    reg.deregister("named-1").await;
    assert_eq!(snapshot(&reg).await, before);
}

/// Consul's ValidateServiceMetadata: key charset [A-Za-z0-9_-], key <= 128, value <= 512,
/// <= 64 pairs, no "consul-" prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_meta_is_400() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for meta in [
        json!({"bad key!": "v"}),
        json!({"a.b": "v"}),
        json!({"": "v"}),
        json!({"k".repeat(129): "v"}),
        json!({"k": "v".repeat(513)}),
        json!({"consul-version": "1"}),
        Value::Object(many),
    ] {
        let r = reg
            .put(
                "/v1/agent/service/register",
                &json!({"Name": "x", "Meta": meta}),
            )
            .await;
        assert_eq!(
            r.code(),
            400,
            "meta {}: {} {:?}",
            short(&meta),
            r.status,
            r.text()
        );
        assert!(
            r.text().contains("Invalid Service Meta"),
            "meta {}: body {:?}",
            short(&meta),
            r.text()
        );
    }
    assert_eq!(snapshot(&reg).await, before);
    // The limits themselves are fine.
    let ok: serde_json::Map<String, Value> =
        (0..64).map(|i| (format!("k_{i}-X"), json!("v"))).collect();
    reg.register(&json!({"Name": "ok", "Meta": ok})).await;
    reg.register(&json!({"Name": "ok2", "Meta": {"k".repeat(128): "v".repeat(512)}}))
        .await;
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(80).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    for body in [
        &b"{not json"[..],
        b"{\"Name\": \"x\"",
        b"[1, 2]",
        b"\"just a string\"",
        b"{\"Name\": 5}",
        b"{\"Name\": \"x\", \"Port\": \"80\"}",
        b"{\"Name\": \"x\", \"Tags\": \"a\"}",
        b"\xff\xfe\x00garbage",
    ] {
        let r = register_raw(&reg, body).await;
        assert_eq!(
            r.code(),
            400,
            "body {:?}: {} {:?}",
            String::from_utf8_lossy(body),
            r.status,
            r.text()
        );
    }
    // Consul refuses 0.0.0.0 and :: as a service address.
    for addr in ["0.0.0.0", "::"] {
        reg.put(
            "/v1/agent/service/register",
            &json!({"Name": "x", "Address": addr}),
        )
        .await
        .expect_status(400)
        .expect_body_contains("Invalid service address");
    }
    assert_eq!(snapshot(&reg).await, before);
    // The process survived all of it.
    reg.get("/v1/status/leader").await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405() {
    let reg = with_baseline().await;
    let before = snapshot(&reg).await;
    reg.get("/v1/agent/service/register")
        .await
        .expect_status(405);
    reg.request_with(Method::POST, "/v1/kv/x", Some(b"v".to_vec()), &[])
        .await
        .expect_status(405);
    reg.request_with(Method::DELETE, "/v1/agent/service/base1", None, &[])
        .await
        .expect_status(405);
    assert_eq!(snapshot(&reg).await, before);
    reg.get("/v1/kv/x").await.expect_status(404);
}

/// A rejected re-registration of an existing service leaves it and its check state alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reregistration_changes_nothing() {
    let reg = with_baseline().await;
    reg.ttl("warn", "service:base1", Some("kept")).await;
    let before = snapshot(&reg).await;
    for body in [
        json!({"Name": "base", "ID": "base1", "Port": 2000, "Check": {"TTL": "1s", "Interval": "1s"}}),
        json!({"Name": "base", "ID": "base1", "Port": 2000, "Meta": {"bad key": "v"}}),
        json!({"Name": "base", "ID": "base1", "Port": 2000, "Check": {"TTL": "10s", "Status": "nope"}}),
    ] {
        reg.put("/v1/agent/service/register?replace-existing-checks", &body)
            .await
            .expect_status(400);
        assert_eq!(snapshot(&reg).await, before, "{body}");
    }
    let c = reg.check("service:base1").await.unwrap();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("warning"), Some("kept"))
    );
}

/// Null or empty optional fields are accepted, and come back as [] / {} (never null).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_and_empty_optionals() {
    let reg = Registry::start();
    reg.register(&json!({
        "Name": "a", "Tags": null, "Meta": null, "Check": null, "Checks": null,
        "TaggedAddresses": null, "Weights": null
    }))
    .await;
    reg.register(&json!({"Name": "b", "Tags": [], "Meta": {}, "Checks": []}))
        .await;
    assert_eq!(reg.checks().await, json!({}));
    for id in ["a", "b"] {
        let svc = reg
            .get(&format!("/v1/agent/service/{id}"))
            .await
            .expect_status(200)
            .json();
        assert_eq!(svc["Tags"], json!([]), "{svc}");
        assert_eq!(svc["Meta"], json!({}), "{svc}");
        assert_eq!(svc["Weights"], json!({"Passing": 1, "Warning": 1}), "{svc}");
        let e = reg.health_service(id, "").await.json();
        assert_eq!(e[0]["Service"]["Tags"], json!([]), "{e}");
        assert!(e[0]["Checks"].is_array(), "{e}");
    }
}

/// Hostile input never takes the process down: odd paths and queries, a huge JSON body, deep
/// nesting. Each gets an answer, and the registry keeps working afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_does_not_crash() {
    let mut reg = with_baseline().await;
    let before = snapshot(&reg).await;
    for path in [
        "/v1/health/service/%FF%FE",
        "/v1/health/service/web?passing=%FF",
        "/v1/health/service/web?filter=%22%22%22",
        "/v1/health/service/web?filter=((((((((((",
        "/v1/health/service/web?index=99999999999999999999999",
        "/v1/health/service/web?index=1&wait=99999999999h",
        "/v1/kv/%00",
        "/v1/kv/a?keys&separator=%FF",
        "/v1/agent/service/%2e%2e%2f%2e%2e",
        "/v1/nope",
        "/",
    ] {
        let r = reg
            .request_full(Method::GET, path, None, &[], true, secs(5))
            .await;
        assert!(r.code() != 0, "{path}");
    }
    // ~2 MB of JSON: refused (400 or 413), not half-read into state.
    let big_tags: Vec<String> = (0..100_000).map(|i| format!("tag{i:06}")).collect();
    let r = reg
        .put(
            "/v1/agent/service/register",
            &json!({"Name": "big", "Tags": big_tags, "Bogus": true}),
        )
        .await;
    assert!(
        r.code() == 400 || r.code() == 413,
        "{} {:?}",
        r.status,
        r.text()
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = reg
        .put_bytes("/v1/agent/service/register", deep.into_bytes())
        .await;
    assert!(
        r.code() == 400 || r.code() == 413,
        "{} {:?}",
        r.status,
        r.text()
    );

    assert!(reg.is_running(), "the registry process died");
    assert_eq!(snapshot(&reg).await, before);
    reg.get("/v1/status/leader").await.expect_status(200);
}

/// What consulrs 0.1.0 actually sends (docs/consul-api.md): "ServiceId" on check/register (works in
/// Consul through case-insensitive matching), and the TTL note as a JSON body on check/pass
/// (Consul ignores the body there, so the call must still succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consulrs_request_shapes_accepted() {
    let reg = Registry::start();
    reg.register(&json!({"Name": "web", "ID": "web1"})).await;
    reg.put(
        "/v1/agent/check/register",
        &json!({"Name": "extra", "ServiceId": "web1", "TTL": "30s"}),
    )
    .await
    .expect_status(200);
    assert_eq!(reg.check("extra").await.unwrap()["ServiceID"], "web1");

    for verb in ["warn", "pass"] {
        reg.put(
            &format!("/v1/agent/check/{verb}/extra"),
            &json!({"note": "in the body"}),
        )
        .await
        .expect_status(200);
    }
    assert_eq!(reg.check_status("extra").await.as_deref(), Some("passing"));
}
