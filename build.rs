//! The build script of the contract crate (`crates/contract`, whose manifest names this file):
//! compiles proto/ with protox (pure Rust, no system protoc) and generates the tonic code, plus a
//! descriptor set for gRPC reflection and proto3 JSON printing. It lives at the top level beside
//! proto/, the public contract it compiles.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Run from crates/contract: proto/ is two levels up.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = manifest.join("../../proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile(
        ["beamline/v1/agent.proto", "beamline/v1/fleet.proto"],
        [&proto],
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("beamline_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
