//! The registry's HTTP API: Consul's paths, status codes, headers and error texts.
//!
//! Owns the request plumbing shared by every endpoint — ACL, query options, blocking-query
//! waits, body limits, response headers — and the routing table. Endpoint handlers live in the
//! submodules by Consul API area; the decisions of a write are the registry's.

mod agent;
mod answers;
mod catalog;
mod kv;
mod query;

pub use answers::{AnswerCache, AnswerCacheSize, AnswerKey, DEFAULT_ANSWER_CACHE_BYTES};
pub(crate) use query::parse_bool;
pub use query::Query;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use bytes::Bytes;
use rand::Rng;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::error::RegistryError;
use super::filter::Filter;
use super::logs::chain;
use super::state::State;
use super::watch::Topic;
use super::Registry;

pub type Shared = Arc<Registry>;

/// Limit for JSON request bodies (registrations); KV values have their own, Consul's.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(registry: Shared) -> Router {
    Router::new()
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/register", put(agent::register_service))
        .route(
            "/v1/agent/service/deregister/{*id}",
            put(agent::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            put(agent::maintenance),
        )
        .route("/v1/agent/service/{*id}", get(agent::service))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/register", put(agent::register_check))
        .route(
            "/v1/agent/check/deregister/{*id}",
            put(agent::deregister_check),
        )
        .route("/v1/agent/check/pass/{*id}", put(agent::check_pass))
        .route("/v1/agent/check/warn/{*id}", put(agent::check_warn))
        .route("/v1/agent/check/fail/{*id}", put(agent::check_fail))
        .route("/v1/agent/check/update/{*id}", put(agent::check_update))
        .route(
            "/v1/agent/health/service/name/{*name}",
            get(agent::health_by_name),
        )
        .route(
            "/v1/agent/health/service/id/{*id}",
            get(agent::health_by_id),
        )
        .route("/v1/health/service/{name}", get(catalog::health_service))
        .route("/v1/health/checks/{name}", get(catalog::health_checks))
        .route("/v1/health/state/{state}", get(catalog::health_state))
        .route("/v1/catalog/services", get(catalog::catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route("/v1/catalog/nodes", get(catalog::catalog_nodes))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/status/leader", get(catalog::leader))
        .route("/v1/status/peers", get(catalog::peers))
        .route(
            "/v1/kv/",
            get(kv::get_root).put(kv::put_root).delete(kv::delete_root),
        )
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .layer(axum::middleware::from_fn_with_state(registry.clone(), acl))
        .layer(axum::middleware::from_fn_with_state(
            registry.clone(),
            log_refusals,
        ))
        .with_state(registry)
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response();
        // The body is Consul's exact text; the log line gets the whole cause chain.
        response.extensions_mut().insert(Refusal(chain(&self)));
        response
    }
}

/// Why a request was refused, handed from the error to [`log_refusals`].
#[derive(Clone)]
struct Refusal(String);

/// Logs refused (4xx other than 404) and failed (5xx) requests: one line per status and route
/// per period, with the count of those held back.
async fn log_refusals(
    AxState(registry): AxState<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    // The route's first segments name it; the rest (IDs, keys) is caller input of any length.
    let route: String = request
        .uri()
        .path()
        .split('/')
        .take(4)
        .collect::<Vec<_>>()
        .join("/")
        .chars()
        .take(100)
        .collect();
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 || status == StatusCode::NOT_FOUND {
        return response;
    }
    let code = status.as_u16();
    let Some(held_back) = registry.admit_log(false, &format!("{code} {method} {route}")) else {
        return response;
    };
    let reason = response
        .extensions()
        .get::<Refusal>()
        .map_or("", |r| r.0.as_str());
    let method = method.as_str();
    if status.is_server_error() {
        tracing::error!(code, method, route, reason, held_back, "request failed");
    } else if matches!(code, 403 | 413) {
        tracing::warn!(code, method, route, reason, held_back, "request refused");
    } else {
        tracing::info!(code, method, route, reason, held_back, "request refused");
    }
    response
}

/// With `--acl-token`, every request must carry it, in any of the places Consul reads it.
async fn acl(AxState(registry): AxState<Shared>, request: Request, next: Next) -> Response {
    let Some(expected) = registry.config().acl_token.as_deref() else {
        return next.run(request).await;
    };
    let query = Query::parse(request.uri().query());
    let headers = request.headers();
    let header_token = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = header_token("authorization").and_then(|v| v.strip_prefix("Bearer "));
    let presented = query
        .get("token")
        .or_else(|| header_token("x-consul-token"))
        .or(bearer);
    // Constant time, so the time to refuse a guess tells nothing about how much of it was right.
    let allowed = presented.is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
    if allowed {
        next.run(request).await
    } else {
        RegistryError::PermissionDenied.into_response()
    }
}

/// Refuses `?dc=` naming a datacenter this registry is not, as Consul does.
pub fn check_dc(registry: &Registry, query: &Query) -> Result<(), RegistryError> {
    match query.get("dc") {
        Some(dc) if !dc.is_empty() && dc != registry.config().datacenter => {
            Err(RegistryError::Internal("No path to datacenter".to_string()))
        }
        _ => Ok(()),
    }
}

/// Waits until `index` of the result passes the caller's, or the wait (plus Consul's jitter of
/// up to wait/16) runs out, then renders the answer once. Only the index is computed while
/// waiting, so a parked watcher holds no rendered data. Subscribing before each look means no
/// write can slip between the look and the wait.
pub async fn blocking_read<T>(
    registry: &Registry,
    query: &Query,
    topic: Topic,
    index: impl Fn(&State) -> u64,
    render: impl FnOnce(&State) -> T,
) -> Result<(u64, T), RegistryError> {
    wait_for_change(registry, query, topic, &index).await?;
    let state = registry.state();
    Ok((index(&state), render(&state)))
}

async fn wait_for_change(
    registry: &Registry,
    query: &Query,
    topic: Topic,
    index: &impl Fn(&State) -> u64,
) -> Result<(), RegistryError> {
    check_dc(registry, query)?;
    let Some((min_index, wait)) = query.blocking()? else {
        return Ok(());
    };
    let jitter = rand::rng().random_range(Duration::ZERO..=wait / 16);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    loop {
        let mut changed = registry.watchers().subscribe(topic.clone());
        if index(&registry.state()) > min_index || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
    }
}

/// A blocking read answered with JSON, rendered once per result version and shared: the
/// watchers one change wakes together (every gateway watching a beamline) get the same bytes.
pub async fn blocking_json(
    registry: &Registry,
    query: &Query,
    key: AnswerKey,
    topic: Topic,
    index: impl Fn(&State) -> u64,
    render: impl FnOnce(&State) -> Value,
) -> Result<Response, RegistryError> {
    wait_for_change(registry, query, topic, &index).await?;
    let (index, version, value) = {
        let state = registry.state();
        let (index, version) = (index(&state), state.quiet_writes);
        if let Some(body) = registry.answers().get(&key, index, version) {
            return Ok(json_bytes(StatusCode::OK, index, body));
        }
        (index, version, render(&state))
    };
    let body = Bytes::from(value.to_string());
    registry.answers().put(key, index, version, body.clone());
    Ok(json_bytes(StatusCode::OK, index, body))
}

fn json_bytes(status: StatusCode, index: u64, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    set_read_headers(response.headers_mut(), index);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON response with Consul's read headers.
pub fn reply(status: StatusCode, index: u64, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    set_read_headers(response.headers_mut(), index);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub fn ok(index: u64, body: &Value) -> Response {
    reply(StatusCode::OK, index, body)
}

pub fn set_read_headers(headers: &mut HeaderMap, index: u64) {
    headers.insert("x-consul-index", HeaderValue::from(index.max(1)));
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
}

/// Reads a body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, RegistryError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        RegistryError::TooLarge(format!("Request body too large, max size: {limit} bytes"))
    })
}

pub async fn read_json_body(body: Body) -> Result<Bytes, RegistryError> {
    read_body(body, JSON_BODY_LIMIT).await
}

/// Runs a write off the async workers: it may wait for a disk sync.
pub async fn blocking_write<R: Send + 'static>(
    registry: &Shared,
    write: impl FnOnce(&Registry) -> Result<R, RegistryError> + Send + 'static,
) -> Result<R, RegistryError> {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || write(&registry))
        .await
        .map_err(|e| RegistryError::Internal(format!("write task failed: {e}")))?
}

/// Keeps the entries a `?filter=` expression accepts.
pub fn apply_filter(filter: &Option<Filter>, items: Vec<Value>) -> Vec<Value> {
    match filter {
        None => items,
        Some(f) => items.into_iter().filter(|v| f.matches(v)).collect(),
    }
}

#[cfg(test)]
mod tests;
