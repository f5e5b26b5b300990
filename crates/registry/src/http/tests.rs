//! Handler tests through the router (no socket): error bodies that repeat caller input quote it
//! cut, so a 100 KB id, key or filter earns a short error that still names the problem.

use std::net::{IpAddr, Ipv4Addr};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use super::router;
use crate::{Registry, RegistryConfig};

/// Caller input of 100 KB (in a body).
fn huge() -> String {
    "a".repeat(100 * 1024)
}

/// Caller input in a URI: 60 KB, as long as the `http` crate lets a URI be (under 64 KiB; a
/// longer one never reaches a handler).
fn huge_in_uri() -> String {
    "a".repeat(60 * 1024)
}

/// The status and body of one request.
async fn send(method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let registry =
        Registry::open(RegistryConfig::default(), IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router(registry).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The refusal is short, names the problem, and quotes the start of the input.
fn assert_short(status: StatusCode, body: &str, code: StatusCode, problem: &str) {
    assert_eq!(status, code, "{}", &body[..body.len().min(300)]);
    assert!(body.len() < 1024, "{} bytes: {}", body.len(), &body[..300]);
    assert!(body.contains(problem), "{body}");
}

#[tokio::test]
async fn a_huge_service_id_in_the_path_gets_a_short_not_found() {
    let id = huge_in_uri();
    for (method, uri, problem) in [
        (
            Method::PUT,
            format!("/v1/agent/service/deregister/{id}"),
            "Unknown service ID",
        ),
        (
            Method::PUT,
            format!("/v1/agent/service/maintenance/{id}?enable=true"),
            "Unknown service ID",
        ),
        (
            Method::GET,
            format!("/v1/agent/service/{id}"),
            "unknown service ID",
        ),
        (
            Method::GET,
            format!("/v1/agent/health/service/name/{id}"),
            "Not Found",
        ),
        (
            Method::GET,
            format!("/v1/agent/health/service/id/{id}"),
            "not found",
        ),
    ] {
        let (status, body) = send(method, &uri, "").await;
        assert_short(status, &body, StatusCode::NOT_FOUND, problem);
        assert!(body.contains("\"aaaa"), "{body}");
        assert!(body.contains('…'), "{body}");
    }
}

#[tokio::test]
async fn a_huge_check_id_in_the_path_gets_a_short_not_found() {
    let id = huge_in_uri();
    for verb in ["pass", "warn", "fail", "deregister"] {
        let uri = format!("/v1/agent/check/{verb}/{id}");
        let (status, body) = send(Method::PUT, &uri, "").await;
        assert_short(status, &body, StatusCode::NOT_FOUND, "Unknown check ID");
    }
}

#[tokio::test]
async fn a_huge_kv_key_gets_a_short_answer() {
    let key = huge_in_uri();
    let (status, body) = send(Method::GET, &format!("/v1/kv/{key}"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.len() < 1024);
    let (status, body) = send(Method::PUT, &format!("/v1/kv/{key}?cas=x"), "v").await;
    assert_short(status, &body, StatusCode::BAD_REQUEST, "Invalid cas index");
}

#[tokio::test]
async fn a_huge_filter_gets_a_short_bad_request() {
    let problem = "Failed to create boolean expression evaluator";
    let garbage = format!("Service.ID == {}", "(".repeat(20 * 1024));
    let regex = format!("Service.ID matches \"{}\"", "(".repeat(20 * 1024));
    let unclosed = format!("Service.ID == \"{}", "a".repeat(20 * 1024));
    for filter in [garbage, regex, unclosed] {
        for path in [
            "/v1/health/service/web",
            "/v1/agent/services",
            "/v1/agent/checks",
        ] {
            let uri = format!("{path}?filter={}", urlencode(&filter));
            let (status, body) = send(Method::GET, &uri, "").await;
            assert_short(status, &body, StatusCode::BAD_REQUEST, problem);
        }
    }
    let regex = format!("Service.ID matches \"{}\"", "(".repeat(20 * 1024));
    let uri = format!("/v1/agent/services?filter={}", urlencode(&regex));
    let (_, body) = send(Method::GET, &uri, "").await;
    assert!(body.contains("regular expression \"((("), "{body}");
}

#[tokio::test]
async fn huge_values_in_a_body_get_a_short_decode_error() {
    let big = huge();
    for (body, problem) in [
        (
            format!(r#"{{"Name":"web","{big}":1}}"#),
            "json: unknown field",
        ),
        (
            format!(r#"{{"Name":"web","Port":"{big}"}}"#),
            "Request decode failed: Port",
        ),
        (
            format!(r#"{{"Name":"web","Check":{{"TTL":"{big}"}}}}"#),
            "Request decode failed: TTL",
        ),
        (
            format!(
                r#"{{"Name":"web","Check":{{"TTL":[{}1]}}}}"#,
                "1,".repeat(50_000)
            ),
            "Request decode failed: TTL",
        ),
        (
            format!(r#"{{"Name":"web","Meta":{{"{big}":"v"}}}}"#),
            "Invalid Service Meta",
        ),
        (
            format!(r#"{{"Name":"web","Meta":{{"{big}":1}}}}"#),
            "Request decode failed: Meta.",
        ),
        (format!(r#"{{"Name":"web","Kind":"{big}"}}"#), "Kind"),
        (
            format!(r#"{{"Name":"web","TaggedAddresses":{{"{big}":{{"Address":"0.0.0.0"}}}}}}"#),
            "Invalid tagged address",
        ),
        (
            format!(
                r#"{{"Name":"web","Checks":[{{"ID":"{big}","TTL":"1s"}},{{"ID":"{big}","TTL":"1s"}}]}}"#
            ),
            "duplicate CheckID",
        ),
    ] {
        let (status, text) = send(Method::PUT, "/v1/agent/service/register", &body).await;
        assert_short(status, &text, StatusCode::BAD_REQUEST, problem);
    }
    let check = format!(r#"{{"Name":"c","ServiceID":"{big}","TTL":"1s"}}"#);
    let (status, text) = send(Method::PUT, "/v1/agent/check/register", &check).await;
    assert_short(status, &text, StatusCode::BAD_REQUEST, "does not exist");
    let update = format!(r#"{{"Status":"{big}"}}"#);
    let (status, text) = send(Method::PUT, "/v1/agent/check/update/x", &update).await;
    assert_short(
        status,
        &text,
        StatusCode::BAD_REQUEST,
        "Invalid check status",
    );
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
