//! `/v1/health/*`, `/v1/catalog/*` and `/v1/status/*`: the cluster-wide reads the mesh and
//! Consul clients block on. Every read here is a blocking query keyed by the topic its result
//! depends on.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery, State as AxState};
use axum::response::Response;
use serde_json::{json, Value};

use super::{apply_filter, blocking_json, check_dc, ok, AnswerKey, Query, Shared};
use crate::error::{bad_request, RegistryError};
use crate::model::{CheckStatus, Service};
use crate::render;
use crate::state::State;
use crate::watch::Topic;

type Reply = Result<Response, RegistryError>;

/// `?tag=` (repeatable, all must match).
fn has_tags(s: &Service, tags: &[String]) -> bool {
    tags.iter().all(|t| s.tags.contains(t))
}

/// `?node-meta=key:value` (repeatable) against this node's meta.
fn node_meta_matches(query: &Query) -> bool {
    query.all("node-meta").all(|pair| {
        let (k, v) = pair.split_once(':').unwrap_or((pair, ""));
        k == "consul-network-segment" && v.is_empty()
    })
}

/// `?filter=` as the answer cache tells answers apart: absent and empty are the same filter.
fn filter_key(key: AnswerKey, query: &Query) -> AnswerKey {
    key.param("filter", query.get("filter").unwrap_or(""))
}

/// `?tag=` as the answer cache tells answers apart: all must match, so order and repeats do not
/// change the answer.
fn tags_key(mut key: AnswerKey, tags: &[String]) -> AnswerKey {
    let tags: BTreeSet<&String> = tags.iter().collect();
    for tag in tags {
        key = key.param("tag", tag);
    }
    key
}

/// A blocking read of one service's result, woken only by changes under that name. `key` names
/// the parameters the endpoint read; the service name is added here.
async fn service_read(
    reg: &Shared,
    query: &Query,
    key: AnswerKey,
    name: &str,
    answer: impl FnOnce(&State) -> Value,
) -> Reply {
    let key = key.param("name", name);
    let topic = Topic::Service(name.to_string());
    blocking_json(reg, query, key, topic, |s| s.service_index(name), answer).await
}

pub async fn health_service(
    AxState(reg): AxState<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let passing_only = query.flag("passing")?;
    let filter = query.filter()?;
    let tags: Vec<String> = query.all("tag").map(str::to_string).collect();
    let node_ok = node_meta_matches(&query);
    let node = render::node(reg.node());
    let node_name = reg.node().name.clone();
    let serf = render::serf_check(&node_name);
    let answer = |state: &State| {
        let mut entries = Vec::new();
        for s in state
            .instances(&name)
            .filter(|s| node_ok && has_tags(s, &tags))
        {
            let node_checks = state.node_checks();
            let own = state.checks_of_service(&s.id);
            let all: Vec<_> = node_checks.chain(own).collect();
            if passing_only && all.iter().any(|c| c.status != CheckStatus::Passing) {
                continue;
            }
            let mut checks = vec![serf.clone()];
            checks.extend(
                all.iter()
                    .map(|c| render::health_check(c, state, &node_name)),
            );
            entries.push(json!({
                "Node": node,
                "Service": render::node_service(s),
                "Checks": checks,
            }));
        }
        Value::Array(apply_filter(&filter, entries))
    };
    let key = AnswerKey::new("health/service")
        .param("passing", passing_only)
        .param("node-meta", node_ok);
    let key = filter_key(tags_key(key, &tags), &query);
    service_read(&reg, &query, key, &name, answer).await
}

pub async fn health_checks(
    AxState(reg): AxState<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let filter = query.filter()?;
    let node_name = reg.node().name.clone();
    let answer = |state: &State| {
        let checks = state
            .instances(&name)
            .flat_map(|s| state.checks_of_service(&s.id))
            .map(|c| render::health_check(c, state, &node_name))
            .collect();
        Value::Array(apply_filter(&filter, checks))
    };
    let key = filter_key(AnswerKey::new("health/checks"), &query);
    service_read(&reg, &query, key, &name, answer).await
}

pub async fn health_state(
    AxState(reg): AxState<Shared>,
    Path(wanted): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let wanted_status = match wanted.as_str() {
        "any" => None,
        s => Some(
            s.parse::<CheckStatus>()
                .map_err(|_| bad_request("Bad check state"))?,
        ),
    };
    let filter = query.filter()?;
    let node_name = reg.node().name.clone();
    let answer = |state: &State| {
        let mut checks = Vec::new();
        if wanted_status.is_none_or(|s| s == CheckStatus::Passing) {
            checks.push(render::serf_check(&node_name));
        }
        checks.extend(
            state
                .checks
                .values()
                .filter(|c| wanted_status.is_none_or(|s| s == c.status))
                .map(|c| render::health_check(c, state, &node_name)),
        );
        Value::Array(apply_filter(&filter, checks))
    };
    let key = filter_key(
        AnswerKey::new("health/state").param("state", &wanted),
        &query,
    );
    blocking_json(
        &reg,
        &query,
        key,
        Topic::Checks,
        State::checks_index,
        answer,
    )
    .await
}

pub async fn catalog_services(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    let query = Query::parse(q.as_deref());
    let node_ok = node_meta_matches(&query);
    let answer = |state: &State| {
        let mut names: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for s in state.services.values().filter(|_| node_ok) {
            names
                .entry(s.name.as_str())
                .or_default()
                .extend(s.tags.iter().map(String::as_str));
        }
        json!(names)
    };
    let key = AnswerKey::new("catalog/services").param("node-meta", node_ok);
    blocking_json(
        &reg,
        &query,
        key,
        Topic::Services,
        State::services_index,
        answer,
    )
    .await
}

pub async fn catalog_service(
    AxState(reg): AxState<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let filter = query.filter()?;
    let tags: Vec<String> = query.all("tag").map(str::to_string).collect();
    let node_ok = node_meta_matches(&query);
    let answer = |state: &State| {
        let entries = state
            .instances(&name)
            .filter(|s| node_ok && has_tags(s, &tags))
            .map(|s| render::catalog_service(s, reg.node()))
            .collect();
        Value::Array(apply_filter(&filter, entries))
    };
    let key = AnswerKey::new("catalog/service").param("node-meta", node_ok);
    let key = filter_key(tags_key(key, &tags), &query);
    service_read(&reg, &query, key, &name, answer).await
}

pub async fn catalog_nodes(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    let query = Query::parse(q.as_deref());
    let filter = query.filter()?;
    let node = render::node(reg.node());
    let answer = |_: &State| Value::Array(apply_filter(&filter, vec![node]));
    let key = filter_key(AnswerKey::new("catalog/nodes"), &query);
    blocking_json(&reg, &query, key, Topic::Nodes, |_| 1, answer).await
}

pub async fn datacenters(AxState(reg): AxState<Shared>) -> Reply {
    Ok(ok(reg.state().index, &json!([reg.config().datacenter])))
}

/// This registry is its own leader, reachable at the node address on Consul's server port.
fn leader_address(reg: &Shared) -> String {
    format!("{}:8300", reg.node().address)
}

pub async fn leader(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    check_dc(&reg, &Query::parse(q.as_deref()))?;
    Ok(ok(reg.state().index, &json!(leader_address(&reg))))
}

pub async fn peers(AxState(reg): AxState<Shared>, RawQuery(q): RawQuery) -> Reply {
    check_dc(&reg, &Query::parse(q.as_deref()))?;
    Ok(ok(reg.state().index, &json!([leader_address(&reg)])))
}
