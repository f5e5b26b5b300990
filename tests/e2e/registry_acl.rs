//! ACL: with --acl-token, every request must carry the token (X-Consul-Token,
//! Authorization: Bearer, or ?token=), otherwise 403 "Permission denied".

use crate::support::*;
use reqwest::Method;
use serde_json::json;

const TOKEN: &str = "s3cr3t-token";

fn start() -> Registry {
    Registry::builder().acl_token(TOKEN).start()
}

fn body(v: serde_json::Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_token_are_denied() {
    let reg = start();
    let register = json!({"Name": "web", "Check": {"TTL": "30s"}});
    let cases: Vec<(Method, &str, Option<Vec<u8>>)> = vec![
        (Method::GET, "/v1/agent/services", None),
        (Method::GET, "/v1/agent/checks", None),
        (Method::GET, "/v1/agent/self", None),
        (
            Method::PUT,
            "/v1/agent/service/register",
            body(register.clone()),
        ),
        (Method::GET, "/v1/health/service/web", None),
        (Method::GET, "/v1/catalog/services", None),
        (Method::GET, "/v1/kv/k", None),
        (Method::PUT, "/v1/kv/k", Some(b"v".to_vec())),
    ];
    for (method, path, b) in &cases {
        let r = reg
            .request_no_token(method.clone(), path, b.clone(), &[])
            .await;
        assert_eq!(
            r.code(),
            403,
            "{method} {path} without a token: {} {:?}",
            r.status,
            r.text()
        );
        assert!(
            r.text().contains("Permission denied"),
            "{method} {path}: body {:?}",
            r.text()
        );
        // A wrong token is no better.
        let r = reg
            .request_no_token(
                method.clone(),
                path,
                b.clone(),
                &[("X-Consul-Token", "wrong")],
            )
            .await;
        assert_eq!(r.code(), 403, "{method} {path} with a wrong token");
        let r = reg
            .request_no_token(
                method.clone(),
                path,
                b.clone(),
                &[("Authorization", "Bearer wrong")],
            )
            .await;
        assert_eq!(r.code(), 403, "{method} {path} with a wrong bearer");
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = reg
            .request_no_token(
                method.clone(),
                &format!("{path}{sep}token=wrong"),
                b.clone(),
                &[],
            )
            .await;
        assert_eq!(r.code(), 403, "{method} {path}?token=wrong");
    }

    // Nothing was written by the denied requests.
    let services = reg
        .request_no_token(
            Method::GET,
            "/v1/agent/services",
            None,
            &[("X-Consul-Token", TOKEN)],
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(services, json!({}));
    reg.request_no_token(Method::GET, "/v1/kv/k", None, &[("X-Consul-Token", TOKEN)])
        .await
        .expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_carrier_is_accepted() {
    let reg = start();
    let bearer = format!("Bearer {TOKEN}");
    // Write with each carrier.
    reg.request_no_token(
        Method::PUT,
        "/v1/agent/service/register",
        body(json!({"Name": "a"})),
        &[("X-Consul-Token", TOKEN)],
    )
    .await
    .expect_status(200);
    reg.request_no_token(
        Method::PUT,
        "/v1/agent/service/register",
        body(json!({"Name": "b"})),
        &[("Authorization", &bearer)],
    )
    .await
    .expect_status(200);
    reg.request_no_token(
        Method::PUT,
        &format!("/v1/agent/service/register?token={TOKEN}"),
        body(json!({"Name": "c"})),
        &[],
    )
    .await
    .expect_status(200);
    reg.request_no_token(
        Method::PUT,
        &format!("/v1/kv/k?token={TOKEN}"),
        Some(b"v".to_vec()),
        &[],
    )
    .await
    .expect_status(200);

    // Read with each carrier.
    for (path, headers) in [
        (
            "/v1/agent/services".to_string(),
            vec![("X-Consul-Token", TOKEN)],
        ),
        (
            "/v1/agent/services".to_string(),
            vec![("Authorization", bearer.as_str())],
        ),
        (format!("/v1/agent/services?token={TOKEN}"), vec![]),
    ] {
        let r = reg
            .request_no_token(Method::GET, &path, None, &headers)
            .await
            .expect_status(200);
        assert_eq!(keys(&r.json()), vec!["a", "b", "c"], "{path} {headers:?}");
    }
    reg.request_no_token(
        Method::GET,
        "/v1/health/service/a?passing",
        None,
        &[("X-Consul-Token", TOKEN)],
    )
    .await
    .expect_status(200)
    .expect_read_headers();
    let r = reg
        .request_no_token(
            Method::GET,
            &format!("/v1/kv/k?raw&token={TOKEN}"),
            None,
            &[],
        )
        .await
        .expect_status(200);
    assert_eq!(r.body, b"v");
    reg.request_no_token(
        Method::PUT,
        "/v1/agent/service/deregister/a",
        None,
        &[("Authorization", &bearer)],
    )
    .await
    .expect_status(200);
}

/// The helpers can send the token on every request, so the other behaviours hold under ACL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_behaviour_unchanged_with_token() {
    let reg = Registry::builder().acl_token(TOKEN).send_token().start();
    reg.register(&json!({"Name": "foo", "Check": {"TTL": "30s"}}))
        .await;
    reg.ttl("pass", "service:foo", Some("ok")).await;
    assert_eq!(
        service_ids(&reg.health_service("foo", "passing").await.json()),
        vec!["foo"]
    );
    reg.put_empty("/v1/agent/service/deregister/ghost")
        .await
        .expect_status(404);
}

/// Without --acl-token no token is needed (and a stray token is harmless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acl_means_open() {
    let reg = Registry::start();
    reg.request_no_token(Method::GET, "/v1/agent/services", None, &[])
        .await
        .expect_status(200);
    reg.request_no_token(
        Method::GET,
        "/v1/agent/services",
        None,
        &[("X-Consul-Token", "anything")],
    )
    .await
    .expect_status(200);
}
