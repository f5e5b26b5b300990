//! `/v1/agent/*`: this node's services and checks, their registration and TTL reports, and the
//! agent-local health endpoints (200/429/503 by worst status).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{blocking_write, check_dc, ok, read_json_body, reply, set_read_headers, Query, Shared};
use crate::checks::probe::resolve::Resolver;
use crate::decode;
use crate::error::{bad_request, quote, RegistryError};
use crate::model::{Aggregate, CheckStatus, Service};
use crate::render;
use crate::state::State;
use crate::watch::Topic;
use crate::Registry;

type Reply = Result<Response, RegistryError>;

fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

pub async fn agent_self(AxState(reg): AxState<Shared>) -> Reply {
    let node = reg.node();
    let body = json!({
        "Config": {
            "Datacenter": node.datacenter,
            "PrimaryDatacenter": node.datacenter,
            "NodeName": node.name,
            "NodeID": node.id,
            "Server": true,
            "Revision": "",
            "Version": concat!("1.21.0+beamline-mesh-", env!("CARGO_PKG_VERSION")),
        },
        "Member": {
            "Name": node.name,
            "Addr": node.address,
            "Port": 8301,
            "Tags": {"dc": node.datacenter, "role": "consul", "id": node.id},
            "Status": 1,
        },
        "Meta": {"consul-network-segment": ""},
        "Stats": stats(&reg),
        "DebugConfig": {},
    });
    Ok(ok(reg.state().index, &body))
}

/// Consul's `Stats` is a map of sections of string values; `registry` is this registry's own
/// bookkeeping, for operators and tests that check it stays bounded.
fn stats(reg: &Registry) -> Value {
    let answers = reg.answer_cache_size();
    json!({
        "registry": {
            "answer_cache_entries": answers.entries.to_string(),
            "answer_cache_bytes": answers.bytes.to_string(),
            "check_runners": reg.check_runners().to_string(),
            "dns_lookups_in_flight": Resolver::system().in_flight().to_string(),
            "dns_lookups_started": Resolver::system().started().to_string(),
        }
    })
}

pub async fn services(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    let query = Query::parse(q.as_deref());
    let filter = query.filter()?;
    let state = reg.state();
    let dc = &reg.config().datacenter;
    let mut out = Map::new();
    for s in state.services.values() {
        let v = render::agent_service(s, dc);
        if filter.as_ref().is_none_or(|f| f.matches(&v)) {
            out.insert(s.id.clone(), v);
        }
    }
    Ok(ok(state.index, &Value::Object(out)))
}

fn content_hash(v: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// GET /v1/agent/service/:id, with Consul's hash-based blocking (`?hash=&wait=`).
pub async fn service(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let dc = reg.config().datacenter.clone();
    let read = |state: &State| {
        state.services.get(&id).map(|s| {
            let mut v = render::agent_service(s, &dc);
            let hash = content_hash(&v);
            v["ContentHash"] = Value::String(hash.clone());
            (v, hash, s.name.clone())
        })
    };
    let not_found = || RegistryError::NotFound(format!("unknown service ID: {}", quote(&id)));
    let (mut value, mut hash, name) = read(&reg.state()).ok_or_else(not_found)?;
    if let Some(wanted) = query.get("hash").filter(|h| !h.is_empty()) {
        let wait = query.blocking_wait()?;
        let deadline = tokio::time::Instant::now() + wait;
        while hash == wanted {
            let mut changed = reg.watchers().subscribe(Topic::Service(name.clone()));
            match read(&reg.state()) {
                None => return Err(not_found()),
                Some((v, h, _)) if h != wanted => {
                    (value, hash) = (v, h);
                    break;
                }
                Some(_) => {}
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    let mut response = ok(reg.state().index, &value);
    if let Ok(h) = HeaderValue::from_str(&hash) {
        response.headers_mut().insert("x-consul-contenthash", h);
    }
    Ok(response)
}

pub async fn checks(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    let query = Query::parse(q.as_deref());
    let filter = query.filter()?;
    let state = reg.state();
    let mut out = Map::new();
    for c in state.checks.values() {
        let v = render::health_check(c, &state, &reg.node().name);
        if filter.as_ref().is_none_or(|f| f.matches(&v)) {
            out.insert(c.def.id.clone(), v);
        }
    }
    Ok(ok(state.index, &Value::Object(out)))
}

pub async fn register_service(
    AxState(reg): AxState<Shared>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let replace = query.flag("replace-existing-checks")?;
    let body = read_json_body(body).await?;
    let registration = decode::service_registration(&body)?;
    blocking_write(&reg, move |r| r.register_service(registration, replace)).await?;
    Ok(empty_ok())
}

pub async fn deregister_service(AxState(reg): AxState<Shared>, Path(id): Path<String>) -> Reply {
    blocking_write(&reg, move |r| r.deregister_service(&id)).await?;
    Ok(empty_ok())
}

pub async fn maintenance(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let enable = match query.get("enable") {
        None => return Err(bad_request("Missing value for enable")),
        Some(v) => super::parse_bool(v).ok_or_else(|| bad_request("Invalid value for enable"))?,
    };
    let reason = query.get("reason").unwrap_or("").to_string();
    blocking_write(&reg, move |r| r.set_maintenance(&id, enable, &reason)).await?;
    Ok(empty_ok())
}

pub async fn register_check(AxState(reg): AxState<Shared>, body: Body) -> Reply {
    let body = read_json_body(body).await?;
    let def = decode::check_registration(&body)?;
    blocking_write(&reg, move |r| r.register_check(def)).await?;
    Ok(empty_ok())
}

pub async fn deregister_check(AxState(reg): AxState<Shared>, Path(id): Path<String>) -> Reply {
    blocking_write(&reg, move |r| r.deregister_check(&id)).await?;
    Ok(empty_ok())
}

async fn ttl_report(reg: Shared, id: String, status: CheckStatus, q: Option<String>) -> Reply {
    let note = Query::parse(q.as_deref())
        .get("note")
        .unwrap_or("")
        .to_string();
    blocking_write(&reg, move |r| r.update_ttl(&id, status, note)).await?;
    Ok(empty_ok())
}

pub async fn check_pass(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    ttl_report(reg, id, CheckStatus::Passing, q).await
}

pub async fn check_warn(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    ttl_report(reg, id, CheckStatus::Warning, q).await
}

pub async fn check_fail(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    ttl_report(reg, id, CheckStatus::Critical, q).await
}

pub async fn check_update(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let body = read_json_body(body).await?;
    let (status, output) = decode::check_update(&body)?;
    blocking_write(&reg, move |r| r.update_ttl(&id, status, output)).await?;
    Ok(empty_ok())
}

/// One `{AggregatedStatus, Service, Checks}` entry and its aggregate.
fn health_entry(reg: &Registry, state: &State, s: &Service) -> (Aggregate, Value) {
    let checks: Vec<_> = state
        .checks_of_service(&s.id)
        .chain(state.node_checks())
        .collect();
    let aggregate = Aggregate::of(checks.iter().copied());
    let rendered: Vec<Value> = checks
        .iter()
        .map(|c| render::health_check(c, state, &reg.node().name))
        .collect();
    let entry = json!({
        "AggregatedStatus": aggregate.as_str(),
        "Service": render::agent_service(s, &reg.config().datacenter),
        "Checks": rendered,
    });
    (aggregate, entry)
}

fn health_reply(query: &Query, index: u64, aggregate: Aggregate, body: Value) -> Response {
    let status = match aggregate {
        Aggregate::Passing => StatusCode::OK,
        Aggregate::Warning => StatusCode::TOO_MANY_REQUESTS,
        Aggregate::Critical | Aggregate::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
    };
    if query.get("format") == Some("text") {
        let mut response = (status, aggregate.as_str().to_string()).into_response();
        set_read_headers(response.headers_mut(), index);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return response;
    }
    reply(status, index, &body)
}

pub async fn health_by_name(
    AxState(reg): AxState<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    check_dc(&reg, &query)?;
    let state = reg.state();
    let entries: Vec<(Aggregate, Value)> = state
        .instances(&name)
        .map(|s| health_entry(&reg, &state, s))
        .collect();
    if entries.is_empty() {
        return Err(RegistryError::NotFound(format!(
            "ServiceName {} Not Found",
            quote(&name)
        )));
    }
    let worst = entries
        .iter()
        .map(|(a, _)| *a)
        .max()
        .unwrap_or(Aggregate::Passing);
    let body = Value::Array(entries.into_iter().map(|(_, v)| v).collect());
    Ok(health_reply(&query, state.index, worst, body))
}

pub async fn health_by_id(
    AxState(reg): AxState<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    check_dc(&reg, &query)?;
    let state = reg.state();
    let service = state
        .services
        .get(&id)
        .ok_or_else(|| RegistryError::NotFound(format!("ServiceId {} not found", quote(&id))))?;
    let (aggregate, body) = health_entry(&reg, &state, service);
    Ok(health_reply(&query, state.index, aggregate, body))
}
