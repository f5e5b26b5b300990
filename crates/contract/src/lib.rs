//! The `beamline.v1` contract every part of beamline-mesh shares: the generated protobuf types
//! and tonic server trait and client, beamline ids and the Consul names derived from them, and
//! the wire names both ends of a call read.
//!
//! Owns what crosses the wire; it must not depend on any other crate of the workspace, so that
//! an agent built on an old SDK and a gateway built today agree on it.

pub mod address;
pub mod beamline;
pub mod causes;
pub mod control;
pub mod quote;
pub mod reflection;
pub mod wire;

/// The `beamline.v1` protobuf contract, generated from proto/ by the top-level build.rs.
// FleetEvent's oneof holds a whole snapshot beside a beamline's id: boxing it would change the
// generated API for one message a watch sends once.
#[allow(clippy::large_enum_variant)]
pub mod proto {
    tonic::include_proto!("beamline.v1");

    /// The encoded descriptor set of proto/ (for gRPC reflection and proto3 JSON).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/beamline_descriptor.bin"));
}
