//! The JSON side of decoding: Go-style key matching against a table of known fields per
//! object, Consul's aliases, refusal of unknown fields, then serde into typed inputs.

use beamline_contract::quote::QUOTE_MAX_CHARS;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{bad_request, quote, shorten_quoted, RegistryError};

pub(super) struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    nested: Nested,
}

pub(super) enum Nested {
    /// A scalar, or a map whose keys are user data (Meta, Header): left as is.
    Leaf,
    Object(&'static [Field]),
    ArrayOf(&'static [Field]),
    /// A map of user keys to objects (TaggedAddresses).
    MapOf(&'static [Field]),
}

const fn leaf(name: &'static str) -> Field {
    Field {
        name,
        aliases: &[],
        nested: Nested::Leaf,
    }
}

const fn alias(name: &'static str, aliases: &'static [&'static str]) -> Field {
    Field {
        name,
        aliases,
        nested: Nested::Leaf,
    }
}

pub(super) const ADDRESS_FIELDS: &[Field] = &[leaf("Address"), leaf("Port")];
pub(super) const WEIGHTS_FIELDS: &[Field] = &[leaf("Passing"), leaf("Warning")];

/// Consul's CheckType and CheckDefinition fields (agent/structs/check_type.go, check_definition.go).
pub(super) const CHECK_FIELDS: &[Field] = &[
    leaf("CheckID"),
    leaf("ID"),
    leaf("Name"),
    leaf("Notes"),
    alias("ServiceID", &["service_id"]),
    leaf("Status"),
    leaf("Namespace"),
    leaf("Partition"),
    alias("ScriptArgs", &["args", "script_args"]),
    leaf("HTTP"),
    leaf("Method"),
    leaf("Header"),
    leaf("Body"),
    leaf("DisableRedirects"),
    leaf("TCP"),
    alias("TCPUseTLS", &["tcp_use_tls"]),
    leaf("UDP"),
    leaf("GRPC"),
    alias("GRPCUseTLS", &["grpc_use_tls"]),
    leaf("H2PING"),
    alias("H2PingUseTLS", &["h2ping_use_tls"]),
    leaf("OSService"),
    leaf("AliasNode"),
    leaf("AliasService"),
    alias("DockerContainerID", &["docker_container_id"]),
    leaf("Shell"),
    alias("TLSServerName", &["tls_server_name"]),
    alias("TLSSkipVerify", &["tls_skip_verify"]),
    leaf("Interval"),
    leaf("Timeout"),
    leaf("TTL"),
    leaf("SuccessBeforePassing"),
    leaf("FailuresBeforeWarning"),
    leaf("FailuresBeforeCritical"),
    alias(
        "DeregisterCriticalServiceAfter",
        &["deregister_critical_service_after"],
    ),
    leaf("OutputMaxSize"),
    leaf("ProxyHTTP"),
    leaf("ProxyGRPC"),
];

pub(super) const SERVICE_FIELDS: &[Field] = &[
    leaf("Kind"),
    leaf("ID"),
    leaf("Name"),
    leaf("Tags"),
    leaf("Port"),
    leaf("Address"),
    leaf("SocketPath"),
    Field {
        name: "TaggedAddresses",
        aliases: &["tagged_addresses"],
        nested: Nested::MapOf(ADDRESS_FIELDS),
    },
    // Consul's AgentRegisterService translates these two snake_case keys (lib.TranslateKeys).
    alias("EnableTagOverride", &["enable_tag_override"]),
    leaf("Meta"),
    Field {
        name: "Weights",
        aliases: &[],
        nested: Nested::Object(WEIGHTS_FIELDS),
    },
    Field {
        name: "Check",
        aliases: &[],
        nested: Nested::Object(CHECK_FIELDS),
    },
    Field {
        name: "Checks",
        aliases: &[],
        nested: Nested::ArrayOf(CHECK_FIELDS),
    },
    leaf("Proxy"),
    leaf("Connect"),
    leaf("Namespace"),
    leaf("Partition"),
    leaf("Locality"),
];

pub(super) const CHECK_UPDATE_FIELDS: &[Field] = &[leaf("Status"), leaf("Output")];

/// The most characters of a decode error's text after its quoted strings are cut: a refused
/// value that is not a string (a 100 KB array given as a duration) is cut here.
const MAX_DECODE_MESSAGE_CHARS: usize = 512;

/// Consul's decode error. `msg` may be serde's or a duration parser's, which repeat the value
/// they refused: long quoted strings in it are cut, and so is a long message.
pub(super) fn decode_failed(msg: impl std::fmt::Display) -> RegistryError {
    let mut text = shorten_quoted(&msg.to_string());
    if let Some((at, _)) = text.char_indices().nth(MAX_DECODE_MESSAGE_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    bad_request(format!("Request decode failed: {text}"))
}

/// Rewrites every known key to its canonical spelling; an unknown key is a decode error.
fn canonicalize(value: Value, fields: &[Field]) -> Result<Value, RegistryError> {
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(Value::Null),
        other => {
            return Err(decode_failed(format!(
                "json: cannot unmarshal {} into an object",
                json_kind(&other)
            )))
        }
    };
    let mut out = Map::new();
    for (key, value) in object {
        let field = fields
            .iter()
            .find(|f| {
                f.name.eq_ignore_ascii_case(&key)
                    || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&key))
            })
            .ok_or_else(|| decode_failed(format!("json: unknown field {}", quote(&key))))?;
        let value = match (&field.nested, value) {
            (Nested::Leaf, v) | (_, v @ Value::Null) => v,
            (Nested::Object(inner), v) => canonicalize(v, inner)?,
            (Nested::ArrayOf(inner), Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .map(|item| canonicalize(item, inner))
                    .collect::<Result<_, _>>()?,
            ),
            (Nested::MapOf(inner), Value::Object(map)) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| Ok((k, canonicalize(v, inner)?)))
                    .collect::<Result<_, RegistryError>>()?,
            ),
            (_, other) => {
                return Err(decode_failed(format!(
                    "json: cannot unmarshal {} into field {}",
                    json_kind(&other),
                    field.name
                )))
            }
        };
        out.insert(field.name.to_string(), value);
    }
    Ok(Value::Object(out))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(super) fn parse_body<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    fields: &[Field],
) -> Result<T, RegistryError> {
    let raw: Value = if body.iter().all(u8::is_ascii_whitespace) {
        // Consul decodes an empty body as an empty object.
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(decode_failed)?
    };
    let canonical = canonicalize(raw, fields)?;
    T::deserialize(&canonical).map_err(|e| match blame::<T>(&canonical) {
        Some(field) => decode_failed(format!("{field}: {e}")),
        None => decode_failed(e),
    })
}

enum Step {
    Key(String),
    Index(usize),
}

/// serde's type errors name no field (`invalid type: integer `5`, expected a string`), so the
/// member that fails on its own is found, down to four levels (`Checks[1].TTL`).
fn blame<T: for<'de> Deserialize<'de>>(body: &Value) -> Option<String> {
    let fails = |path: &[Step], v: &Value| {
        let alone = path.iter().rev().fold(v.clone(), |acc, step| match step {
            Step::Key(k) => Value::Object(Map::from_iter([(k.clone(), acc)])),
            Step::Index(_) => Value::Array(vec![acc]),
        });
        T::deserialize(&alone).is_err()
    };
    let mut path = Vec::new();
    let mut at = body;
    while path.len() < 4 {
        let members: Box<dyn Iterator<Item = (Step, &Value)>> = match at {
            Value::Object(map) => Box::new(map.iter().map(|(k, v)| (Step::Key(k.clone()), v))),
            Value::Array(items) => {
                Box::new(items.iter().enumerate().map(|(i, v)| (Step::Index(i), v)))
            }
            _ => break,
        };
        let mut found = None;
        for (step, v) in members {
            path.push(step);
            if fails(&path, v) {
                found = Some(v);
                break;
            }
            path.pop();
        }
        match found {
            Some(v) => at = v,
            None => break,
        }
    }
    let mut out = String::new();
    for step in &path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(&path_key(k)),
            Step::Key(k) => out.push_str(&format!(".{}", path_key(k))),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A key in a blamed path as written: whole when short (`Meta.version`), quoted and cut when it
/// is long caller input (a map key of 100 KB).
fn path_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.chars().count() > QUOTE_MAX_CHARS {
        quote(key).into()
    } else {
        key.into()
    }
}

#[cfg(test)]
mod tests;
