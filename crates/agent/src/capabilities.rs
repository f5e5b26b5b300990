//! An agent's capabilities: their public description (what Describe returns) and the JSON
//! Schema check of Execute params, done before any task exists.
//!
//! Owns schema compilation, params validation and the conversions between
//! `google.protobuf.Struct` and JSON; it does not run capabilities.

use std::collections::HashMap;
use std::hash::Hasher;

use fnv::FnvHasher;
use prost::Message;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use tonic::Status;

use super::Instance;
use beamline_contract::proto::{AgentCard, Capability};
use beamline_contract::quote::quote;

/// One capability's description; `params_schema` is a JSON Schema (as JSON text).
#[derive(Debug, Clone)]
pub struct CapabilitySpec {
    pub name: String,
    pub description: String,
    pub params_schema: serde_json::Value,
    pub actuating: bool,
    pub tags: Vec<String>,
    /// Running it twice with the same params has the effect of running it once (the mesh may
    /// then retry a keyed Execute that failed before its first event on another instance).
    pub idempotent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("capability {name}: invalid params schema: {reason}")]
    BadSchema { name: String, reason: String },
    #[error("capability {0} is declared twice")]
    Duplicate(String),
}

/// At most this many schema violations are reported, and the reason is cut at this many bytes:
/// it travels in the `grpc-message` trailer, and params are caller-controlled.
const MAX_REASONS: usize = 8;
const MAX_REASON_BYTES: usize = 1024;

struct Compiled {
    spec: CapabilitySpec,
    validator: jsonschema::Validator,
}

/// The compiled set an agent serves.
pub struct Capabilities {
    /// In declaration order, which is the order Describe lists them in.
    list: Vec<Compiled>,
    by_name: HashMap<String, usize>,
    described: Vec<Capability>,
    revision: String,
}

impl Capabilities {
    pub fn new(specs: Vec<CapabilitySpec>) -> Result<Capabilities, CapabilityError> {
        let mut list = Vec::with_capacity(specs.len());
        let mut by_name = HashMap::with_capacity(specs.len());
        for spec in specs {
            if by_name.contains_key(&spec.name) {
                return Err(CapabilityError::Duplicate(spec.name));
            }
            let validator = jsonschema::validator_for(&spec.params_schema).map_err(|e| {
                CapabilityError::BadSchema {
                    name: spec.name.clone(),
                    reason: e.to_string(),
                }
            })?;
            by_name.insert(spec.name.clone(), list.len());
            list.push(Compiled { spec, validator });
        }
        let described: Vec<Capability> = list
            .iter()
            .map(|c| Capability {
                name: c.spec.name.clone(),
                description: c.spec.description.clone(),
                params_schema: c.spec.params_schema.to_string(),
                actuating: c.spec.actuating,
                tags: c.spec.tags.clone(),
                idempotent: c.spec.idempotent,
            })
            .collect();
        let revision = revision_of(&described);
        Ok(Capabilities {
            list,
            by_name,
            described,
            revision,
        })
    }

    /// The proto form for the AgentCard.
    pub fn describe(&self) -> Vec<Capability> {
        self.described.clone()
    }

    /// Changes whenever the capabilities change (a hash of their proto form).
    /// The AgentCard of `instance` serving these capabilities (what Describe returns).
    pub fn card(&self, instance: &Instance) -> AgentCard {
        AgentCard {
            beamline: instance.beamline.to_string(),
            instance_id: instance.instance_id.clone(),
            agent_version: instance.agent_version.clone(),
            capabilities: self.describe(),
            card_revision: self.revision(),
        }
    }

    pub fn revision(&self) -> String {
        self.revision.clone()
    }

    /// The spec of the capability called `name`, if there is one.
    pub fn spec(&self, name: &str) -> Option<&CapabilitySpec> {
        self.by_name.get(name).map(|&i| &self.list[i].spec)
    }

    /// NOT_FOUND naming an unknown capability; INVALID_ARGUMENT with the reason when `params`
    /// do not fit its schema (Struct numbers are doubles: whole numbers are normalised to
    /// integers before checking). Returns the params as JSON for the capability to read.
    pub fn validate(
        &self,
        name: &str,
        params: Option<&Struct>,
    ) -> Result<serde_json::Value, Status> {
        let compiled = self
            .by_name
            .get(name)
            .map(|&i| &self.list[i])
            .ok_or_else(|| Status::not_found(format!("unknown capability {}", quote(name))))?;
        let json = params.map_or_else(|| serde_json::json!({}), struct_to_json);
        let mut reasons: Vec<String> = Vec::new();
        for error in compiled.validator.iter_errors(&json).take(MAX_REASONS + 1) {
            if reasons.len() == MAX_REASONS {
                reasons.push("…".to_string());
                break;
            }
            reasons.push(format!("params{}: {error}", error.instance_path().as_str()));
        }
        if reasons.is_empty() {
            return Ok(json);
        }
        let mut message = format!("invalid params for \"{name}\": {}", reasons.join("; "));
        truncate(&mut message, MAX_REASON_BYTES);
        Err(Status::invalid_argument(message))
    }
}

/// A stable hex digest (64-bit FNV-1a over the protobuf encoding): the same capabilities give the
/// same revision in every process and build, unlike `std`'s hasher.
fn revision_of(described: &[Capability]) -> String {
    // Only `write`: it is byte-wise FNV-1a 64, the digest revisions have always been (a card's
    // revision must not change with the SDK's version).
    let mut hash = FnvHasher::default();
    for capability in described {
        // Length-delimited, so that moving bytes between neighbours changes the digest.
        hash.write(&capability.encode_length_delimited_to_vec());
    }
    format!("{:016x}", hash.finish())
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Struct → JSON (whole-number doubles become integers).
pub fn struct_to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// One `google.protobuf.Value` → JSON; numbers as in [`struct_to_json`], NaN and infinities
/// (which JSON cannot carry) become null, as does a Value with no kind.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(l)) => J::Array(l.values.iter().map(value_to_json).collect()),
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    // 2^63 is exact as an f64; whole numbers in [-2^63, 2^63) convert to i64 without loss.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&n) {
        return serde_json::Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// JSON → Struct (for results). Non-object JSON is wrapped as `{"value": …}`.
pub fn json_to_struct(v: &serde_json::Value) -> Struct {
    match v {
        serde_json::Value::Object(map) => Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        },
        other => Struct {
            fields: [("value".to_string(), json_to_value(other))].into(),
        },
    }
}

/// JSON → one `google.protobuf.Value` (numbers become doubles, as Struct requires).
pub fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => n.as_f64().map_or(Kind::NullValue(0), Kind::NumberValue),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        J::Object(_) => Kind::StructValue(json_to_struct(v)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests;
