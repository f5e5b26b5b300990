//! beamline-mesh: a gRPC service mesh for the AI agents of a synchrotron light source.
pub mod registry;
