//! The params of the demo agent's capabilities, as types: each is the one source of its
//! capability's JSON Schema (published in the AgentCard) and of its decoding. A motor or PV name
//! is decoded straight into what it names.
//!
//! Owns the shape of params; per-motor travel limits, which a schema cannot say per motor, are
//! checked by the capabilities before a task exists.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::sim::{Motor, PV_NAMES};

pub const MAX_SCAN_STEPS: u64 = 1000;
pub const MAX_DWELL_MS: u64 = 10_000;
pub const MAX_MONITOR_MS: u64 = 24 * 3600 * 1000;
pub const DEFAULT_MONITOR_INTERVAL_MS: u64 = 1000;

/// `move_motor`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveMotor {
    pub motor: Motor,
    /// The absolute target, in the motor's units.
    pub position: f64,
}

/// `scan`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    pub motor: Motor,
    pub start: f64,
    pub stop: f64,
    /// Points from start to stop, both included.
    #[schemars(range(min = 1, max = MAX_SCAN_STEPS))]
    pub steps: u64,
    /// Detector counting time at each point, milliseconds.
    #[schemars(range(min = 1, max = MAX_DWELL_MS))]
    pub dwell_ms: u64,
}

/// `read_pv`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadPv {
    pub name: PvName,
}

/// `monitor_pv`'s params.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorPv {
    pub name: PvName,
    /// How long to watch, milliseconds.
    #[schemars(range(min = 1, max = MAX_MONITOR_MS))]
    pub duration_ms: u64,
    /// How often to report the value, milliseconds (default 1000).
    #[serde(default = "default_interval")]
    #[schemars(range(min = 10, max = 60_000))]
    pub interval_ms: u64,
}

fn default_interval() -> u64 {
    DEFAULT_MONITOR_INTERVAL_MS
}

/// The name of one of the simulation's process variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvName(pub &'static str);

impl<'de> Deserialize<'de> for PvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PvName, D::Error> {
        let name = String::deserialize(d)?;
        match PV_NAMES.iter().find(|known| **known == name) {
            Some(known) => Ok(PvName(known)),
            None => Err(serde::de::Error::custom(format!(
                "unknown PV {:?}; known: {PV_NAMES:?}",
                name.chars().take(64).collect::<String>()
            ))),
        }
    }
}

impl JsonSchema for PvName {
    fn schema_name() -> Cow<'static, str> {
        "PvName".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        Schema::try_from(json!({"type": "string", "enum": PV_NAMES}))
            .expect("an object is a schema")
    }
}

impl<'de> Deserialize<'de> for Motor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Motor, D::Error> {
        let name = String::deserialize(d)?;
        Motor::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown motor {:?}",
                name.chars().take(64).collect::<String>()
            ))
        })
    }
}

impl JsonSchema for Motor {
    fn schema_name() -> Cow<'static, str> {
        "Motor".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = Motor::ALL.iter().map(|m| m.name()).collect();
        Schema::try_from(json!({"type": "string", "enum": names})).expect("an object is a schema")
    }
}
