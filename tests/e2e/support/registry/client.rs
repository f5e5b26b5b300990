//! The registry's HTTP API as tests call it: requests bounded by a timeout (carrying the ACL token
//! when the builder asked for it) and Consul-shaped calls (register, checks, TTL, health) that
//! assert their status.
//!
//! Owns requests only; it must not start, stop or restart the process (the parent module does).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::Registry;
use crate::support::deadline::{poll_until, REQUEST_TIMEOUT};
use crate::support::resp::{tail, Resp};

impl Registry {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// One request; `headers` are added as given; the helper token (if any) is added unless a
    /// header already carries a token. `timeout` bounds the whole exchange.
    pub async fn request_full(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        send_token: bool,
        timeout: Duration,
    ) -> Resp {
        let mut req = self
            .client
            .request(method.clone(), self.url(path_and_query))
            .timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if send_token {
            if let Some(token) = &self.token {
                req = req.header("X-Consul-Token", token);
            }
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let sent_at = Instant::now();
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "{method} {path_and_query} failed: {e:?}\n--- registry stderr (tail) ---\n{}",
                tail(&self.stderr(), 4000)
            ),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => panic!("{method} {path_and_query}: reading body failed: {e:?}"),
        };
        let received_at = Instant::now();
        Resp {
            what: format!("{method} {path_and_query}"),
            status,
            headers,
            body,
            sent_at,
            received_at,
        }
    }

    /// A request with the helper token (if any) and extra headers.
    pub async fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.request_full(method, path_and_query, body, headers, true, REQUEST_TIMEOUT)
            .await
    }

    /// A request that never carries the helper token (for ACL tests).
    pub async fn request_no_token(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.request_full(
            method,
            path_and_query,
            body,
            headers,
            false,
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::GET, path_and_query, None, &[])
            .await
    }

    /// A GET that may block (a blocking query); `timeout` bounds it on the client side.
    pub async fn get_blocking(&self, path_and_query: &str, timeout: Duration) -> Resp {
        self.request_full(Method::GET, path_and_query, None, &[], true, timeout)
            .await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path_and_query: &str, body: &Value) -> Resp {
        self.request_with(
            Method::PUT,
            path_and_query,
            Some(serde_json::to_vec(body).unwrap()),
            &[],
        )
        .await
    }

    /// PUT with raw bytes as the body.
    pub async fn put_bytes(&self, path_and_query: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.request_with(Method::PUT, path_and_query, Some(body.into()), &[])
            .await
    }

    /// PUT with no body.
    pub async fn put_empty(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::PUT, path_and_query, None, &[])
            .await
    }

    pub async fn delete(&self, path_and_query: &str) -> Resp {
        self.request_with(Method::DELETE, path_and_query, None, &[])
            .await
    }

    // -- Consul-shaped helpers -----------------------------------------------------------------

    /// PUT /v1/agent/service/register and assert 200.
    pub async fn register(&self, service: &Value) {
        self.put("/v1/agent/service/register", service)
            .await
            .expect_status(200);
    }

    /// PUT /v1/agent/service/deregister/:id and assert 200.
    pub async fn deregister(&self, id: &str) {
        self.put_empty(&format!("/v1/agent/service/deregister/{id}"))
            .await
            .expect_status(200);
    }

    /// GET /v1/agent/services (asserts 200).
    pub async fn services(&self) -> Value {
        self.get("/v1/agent/services")
            .await
            .expect_status(200)
            .json()
    }

    /// GET /v1/agent/checks (asserts 200).
    pub async fn checks(&self) -> Value {
        self.get("/v1/agent/checks").await.expect_status(200).json()
    }

    /// One check from /v1/agent/checks, if present.
    pub async fn check(&self, check_id: &str) -> Option<Value> {
        self.checks().await.get(check_id).cloned()
    }

    /// The Status of one check from /v1/agent/checks, if present.
    pub async fn check_status(&self, check_id: &str) -> Option<String> {
        self.check(check_id)
            .await
            .and_then(|c| c.get("Status").and_then(Value::as_str).map(str::to_string))
    }

    /// PUT /v1/agent/check/{pass,warn,fail}/:id[?note=] and assert 200.
    pub async fn ttl(&self, verb: &str, check_id: &str, note: Option<&str>) {
        let path = match note {
            Some(note) => format!("/v1/agent/check/{verb}/{check_id}?note={}", encode(note)),
            None => format!("/v1/agent/check/{verb}/{check_id}"),
        };
        self.put_empty(&path).await.expect_status(200);
    }

    /// GET /v1/health/service/:name with a query string (may be empty), asserting 200.
    pub async fn health_service(&self, name: &str, query: &str) -> Resp {
        let path = if query.is_empty() {
            format!("/v1/health/service/{name}")
        } else {
            format!("/v1/health/service/{name}?{query}")
        };
        self.get(&path).await.expect_status(200)
    }

    /// Wait until the check has `status` (as seen by /v1/agent/checks), or panic after `timeout`.
    pub async fn wait_check_status(&self, check_id: &str, status: &str, timeout: Duration) {
        let what = format!("check {check_id} to become {status}");
        poll_until(
            timeout,
            &what,
            async || self.check_status(check_id).await,
            |s| s.as_deref() == Some(status),
        )
        .await;
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
