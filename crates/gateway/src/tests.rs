//! The routing key, read once per call and kept for the layers after the first; and the
//! fixtures the crate's tests share.

use super::*;
use beamline_consul::ConsulConfig;
use beamline_contract::wire::{header, Rpc};
use beamline_mesh_client::MeshSettings;

/// A mesh whose Consul never answers (its beamlines stay Pending). Call inside a runtime.
pub(crate) fn mesh() -> Mesh {
    Mesh::new(
        ConsulConfig::new("127.0.0.1:9").unwrap(),
        MeshSettings::default(),
    )
}

/// The value of the sample line that starts with `prefix` (name and labels).
pub(crate) fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
}

fn request(beamline: Option<&str>) -> http::Request<()> {
    let mut builder = http::Request::builder().uri(Rpc::Describe.path());
    if let Some(beamline) = beamline {
        builder = builder.header(header::BEAMLINE, beamline);
    }
    builder.body(()).unwrap()
}

#[test]
fn the_first_layer_to_ask_keeps_the_beamline_for_the_next() {
    let mut request = request(Some("5.3.1"));
    let first = beamline_of(&mut request).unwrap();
    assert_eq!(request.extensions().get::<BeamlineId>(), Some(&first));
    // A later layer gets the kept id, not a new parse of the header.
    request.headers_mut().remove(header::BEAMLINE);
    assert_eq!(beamline_of(&mut request).unwrap().as_str(), "5.3.1");
}

#[test]
fn a_missing_or_malformed_key_is_invalid_argument_naming_it() {
    let missing = beamline_of(&mut request(None)).unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert!(
        missing.message().contains(header::BEAMLINE),
        "{}",
        missing.message()
    );
    let mut malformed = request(Some("5..3"));
    let status = beamline_of(&mut malformed).unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("5..3"), "{}", status.message());
    assert!(malformed.extensions().get::<BeamlineId>().is_none());
}
