//! gRPC server reflection as every server of the contract serves it: the contract's descriptors
//! and grpc.health.v1's. Servers build it twice, `build_v1()` and `build_v1alpha()`: grpcurl
//! before 1.9 (and other tools) speak only v1alpha.

/// A reflection builder holding the contract's and the health service's descriptor sets.
pub fn builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
