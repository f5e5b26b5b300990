//! `/v1/kv/*`: Consul's key/value store — reads (single, `recurse`, `keys` with `separator`,
//! `raw`) as blocking queries, writes with `flags` and `cas`, values up to 512 KiB.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{blocking_read, blocking_write, ok, read_body, reply, set_read_headers, Query, Shared};
use crate::error::{bad_request, RegistryError};
use crate::kv::MAX_VALUE_SIZE;
use crate::render;
use crate::state::State;
use crate::watch::Topic;

type Reply = Result<Response, RegistryError>;

enum Found {
    Entries(Vec<Value>),
    Keys(Vec<String>),
    Raw(Vec<u8>),
    Nothing,
}

pub async fn get_root(reg: AxState<Shared>, q: RawQuery) -> Reply {
    get(reg, Path(String::new()), q).await
}

pub async fn put_root(_: AxState<Shared>) -> Reply {
    Err(bad_request("Missing key name"))
}

pub async fn delete_root(reg: AxState<Shared>, q: RawQuery) -> Reply {
    delete(reg, Path(String::new()), q).await
}

pub async fn get(
    AxState(reg): AxState<Shared>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let recurse = query.has("recurse");
    let keys = query.has("keys");
    let raw = query.has("raw");
    let separator = query.get("separator").unwrap_or("").to_string();
    let exact = !recurse && !keys;
    let render = |state: &State| {
        let under_prefix = || {
            state
                .kv
                .range(key.clone()..)
                .take_while(|(k, _)| k.starts_with(key.as_str()))
                .map(|(_, e)| e)
        };
        let found = if keys {
            let mut list: Vec<String> = Vec::new();
            for e in under_prefix() {
                let rest = &e.key[key.len()..];
                let listed = match (separator.is_empty(), rest.find(separator.as_str())) {
                    (false, Some(at)) => &e.key[..key.len() + at + separator.len()],
                    _ => e.key.as_str(),
                };
                if list.last().map(String::as_str) != Some(listed) {
                    list.push(listed.to_string());
                }
            }
            Found::Keys(list)
        } else if recurse {
            Found::Entries(under_prefix().map(render::kv_entry).collect())
        } else {
            match state.kv.get(&key) {
                Some(e) if raw => Found::Raw(e.value.clone()),
                Some(e) => Found::Entries(vec![render::kv_entry(e)]),
                None => Found::Nothing,
            }
        };
        found
    };
    let index = |state: &State| state.kv_index(&key, exact);
    let (index, found) = blocking_read(&reg, &query, Topic::Kv, index, render).await?;
    Ok(match found {
        Found::Nothing => not_found(index),
        Found::Entries(e) if e.is_empty() => not_found(index),
        Found::Keys(k) if k.is_empty() => not_found(index),
        Found::Entries(e) => ok(index, &Value::Array(e)),
        Found::Keys(k) => ok(index, &serde_json::json!(k)),
        Found::Raw(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            set_read_headers(response.headers_mut(), index);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
    })
}

fn not_found(index: u64) -> Response {
    let mut response = StatusCode::NOT_FOUND.into_response();
    set_read_headers(response.headers_mut(), index);
    response
}

pub async fn put(
    AxState(reg): AxState<Shared>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Reply {
    let query = Query::parse(q.as_deref());
    if query.has("acquire") || query.has("release") {
        return Err(bad_request(
            "Sessions (acquire/release) are not supported by this registry",
        ));
    }
    let flags = query.u64("flags", "Invalid flags")?.unwrap_or(0);
    let cas = query.u64("cas", "Invalid cas index")?;
    let value = read_body(body, MAX_VALUE_SIZE).await.map_err(|_| {
        RegistryError::TooLarge(format!(
            "Request body too large, max size: {MAX_VALUE_SIZE} bytes. \
             Consider raising kv_max_value_size in the agent's limits."
        ))
    })?;
    let written = blocking_write(&reg, move |r| r.kv_put(&key, value.to_vec(), flags, cas)).await?;
    Ok(reply(StatusCode::OK, 0, &Value::Bool(written)))
}

pub async fn delete(
    AxState(reg): AxState<Shared>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Reply {
    let query = Query::parse(q.as_deref());
    let recurse = query.has("recurse");
    if key.is_empty() && !recurse {
        return Err(bad_request("Missing key name"));
    }
    let cas = query.u64("cas", "Invalid cas index")?;
    let done = blocking_write(&reg, move |r| r.kv_delete(&key, recurse, cas)).await?;
    Ok(reply(StatusCode::OK, 0, &Value::Bool(done)))
}
