//! beamline-mesh: a gRPC service mesh for the AI agents of a synchrotron light source.
//!
//! - [`registry`]: the embedded Consul-compatible registry (`beamline-mesh registry`).
//! - [`proto`]: the generated `beamline.v1` contract (`BeamlineAgent` server trait and client).

pub mod agent;
pub mod beamline;
pub mod consul;
pub mod demo;
pub mod discovery;
pub mod duration;
pub mod gateway;
pub mod mesh;
pub mod registry;

/// The `beamline.v1` protobuf contract, generated from proto/ by build.rs.
pub mod proto {
    tonic::include_proto!("beamline.v1");

    /// The encoded descriptor set of proto/ (for gRPC reflection and proto3 JSON).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/beamline_descriptor.bin"));
}
