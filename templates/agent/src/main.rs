//! A beamline agent with one capability, built on the beamline agent SDK. Copy this crate to
//! start your own: rename it in Cargo.toml, declare your capabilities, build the image with the
//! Dockerfile beside it, and deploy it with `helm/beamline-agent` and values.yaml.
//!
//! It takes every standard agent flag (`--help` lists them; the chart passes them), serves
//! `beamline.v1.BeamlineAgent` with health and reflection, registers in Consul, and drains on
//! SIGTERM.

use std::process::ExitCode;

use beamline_agent::{Agent, ReadOnly, TaskHandle};
use serde_json::json;

// The params of `read_temperature`: their JSON Schema (doc comments become its descriptions) is
// what Describe publishes, and a call whose params do not fit it is refused (INVALID_ARGUMENT)
// before any task exists.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadTemperature {
    /// Which sensor to read.
    sensor: String,
}

fn main() -> ExitCode {
    Agent::new(env!("CARGO_PKG_VERSION"))
        .capability(
            "read_temperature",
            "Reads a sample temperature",
            ReadOnly,
            |p: ReadTemperature, task: TaskHandle| async move {
                task.progress(Some(0.5), "reading the sensor");
                task.complete(json!({ "sensor": p.sensor, "kelvin": 293.4 }))
            },
        )
        .run()
}
