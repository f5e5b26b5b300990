//! beamline-mesh: a gRPC service mesh for the AI agents of a synchrotron light source.
//!
//! The binary's library: the simulated beamline ([`demo`]) and, re-exported under the names the
//! CLI, tests and benches use, the workspace's crates:
//! - [`proto`], [`beamline`]: the `beamline.v1` contract (`beamline-contract`);
//! - [`agent`]: the agent SDK (`beamline-agent`);
//! - [`mesh`], [`discovery`]: the mesh client (`beamline-mesh-client`);
//! - [`gateway`]: the gateway (`beamline-gateway`);
//! - [`registry`]: the embedded Consul-compatible registry (`beamline-registry`);
//! - [`consul`], [`duration`]: the Consul client and Go durations (`beamline-consul`).

pub mod demo;

pub use beamline_agent as agent;
pub use beamline_consul as consul;
pub use beamline_consul::duration;
pub use beamline_contract::{beamline, causes, proto, wire};
pub use beamline_gateway as gateway;
pub use beamline_mesh_client as mesh;
pub use beamline_mesh_client::discovery;
pub use beamline_registry as registry;
