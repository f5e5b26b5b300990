//! The beamline agent SDK: what a beamline team builds its agent on, in its own repository.
//!
//! ```no_run
//! use beamline_agent::{Agent, Actuating, ReadOnly, TaskHandle};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct ReadTemperature { sensor: String }
//!
//! fn main() -> std::process::ExitCode {
//!     Agent::new(env!("CARGO_PKG_VERSION"))
//!         .capability("read_temperature", "Reads a sample temperature", ReadOnly,
//!             |p: ReadTemperature, task: TaskHandle| async move {
//!                 task.progress(Some(0.5), "reading");
//!                 task.complete(serde_json::json!({ "sensor": p.sensor, "kelvin": 293.4 }))
//!             })
//!         .run()
//! }
//! ```
//!
//! - [`Agent`] declares capabilities with typed params (their JSON Schema is generated) and runs
//!   the process: the standard flags ([`AgentFlags`], [`process::ProcessFlags`]), SIGTERM,
//!   serving, Consul registration and the drain. Describe, GetTask, Subscribe and Cancel come
//!   from the SDK.
//! - [`AgentRuntime`] serves any implementation of the tonic-generated `BeamlineAgent` trait
//!   with health, reflection, registration and draining (see [`process::run`] for the whole
//!   process around one).
//! - [`tasks`] is the task table both build on; [`capabilities`] the schema checks.
//!
//! - With `--tls-cert`/`--tls-key` it serves over TLS, with `--client-ca` mutual TLS; the caller
//!   the gateway vouches for reaches capabilities as [`Call::caller`] ([`identity`] says when).
//! - It follows the facility's halts and locks in Consul KV and enforces them itself
//!   ([`control`]): a halt refuses actuating Execute and cancels running actuating tasks; a
//!   lock refuses everyone but its holder, over mutual TLS only (elsewhere the gateway does).
//!
//! It depends on the contract, the Consul client, the listener limits and the TLS key material
//! only: no registry, gateway or mesh.

mod agent;
pub mod capabilities;
mod capability;
pub mod control;
pub mod drain;
mod flags;
pub mod identity;
pub mod instance;
pub mod process;
pub mod registration;
pub mod runtime;
mod service;
pub mod services;
pub mod tasks;
mod tls;

pub use agent::Agent;
pub use capability::{params_schema, Call, Effect, Kind, NoParams};
pub use control::Control;
pub use flags::{duration_flag, parse_host_port, AgentFlags};
pub use identity::Caller;
pub use instance::Instance;
pub use runtime::{AgentConfig, AgentError, AgentRuntime};
pub use service::AgentService;
pub use tasks::{TaskHandle, TaskResult};
/// The two effects, for `.capability(name, description, ReadOnly, …)`.
pub use Effect::{Actuating, ReadOnly};
