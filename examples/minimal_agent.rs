//! A complete beamline agent with one capability: the same agent as `templates/agent`, which is
//! what a beamline team copies to start.
//!
//! Run a registry (`beamline-mesh registry --listen 127.0.0.1:8500`), then
//! `cargo run --example minimal_agent -- --beamline 9.9.9` and call it with
//! `beamline-mesh call --addr <printed address> execute read_temperature --params
//! '{"sensor": "cryo"}'`.
//! Every standard agent flag works (`--help` lists them); SIGTERM drains it.

use std::process::ExitCode;

use beamline_mesh::agent::{Agent, ReadOnly, TaskHandle};
use serde_json::json;

// The params of `read_temperature`: their JSON Schema is what Describe publishes.
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
