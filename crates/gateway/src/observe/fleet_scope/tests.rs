use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;

use super::watch;
use beamline_contract::proto::{HaltRequest, LockRequest, ResumeRequest, UnlockRequest};
use beamline_contract::wire::{FleetRpc, Rpc};

fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out.into()
}

fn request(path: &str, chunks: Vec<Bytes>) -> http::Request<Body> {
    let frames: Vec<Result<Frame<Bytes>, tonic::Status>> =
        chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
    let body = Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )));
    http::Request::builder().uri(path).body(body).unwrap()
}

fn path(rpc: FleetRpc) -> String {
    format!("{}{}", FleetRpc::PATH_PREFIX, rpc.name())
}

/// The scope `watch` reads from `chunks` sent as `rpc`'s request, and the bytes passed on.
async fn scope_of(rpc: FleetRpc, chunks: Vec<Bytes>) -> (Option<String>, Bytes) {
    let mut request = request(&path(rpc), chunks);
    let scope = watch(&mut request).expect("a control RPC is watched");
    let passed = request.into_body().collect().await.unwrap().to_bytes();
    (scope.get().cloned(), passed)
}

#[tokio::test]
async fn each_control_rpc_names_its_beamline_and_all_is_a_star() {
    let halt = frame(&HaltRequest {
        beamline: "5.3.1".into(),
        reason: "vacuum".into(),
        ..HaltRequest::default()
    });
    let halt_all = frame(&HaltRequest {
        all: true,
        reason: "beam dump".into(),
        ..HaltRequest::default()
    });
    let resume = frame(&ResumeRequest {
        beamline: "7.0.1".into(),
        all: false,
    });
    let lock = frame(&LockRequest {
        beamline: "12.3.1".into(),
        note: "aligning".into(),
        ..LockRequest::default()
    });
    let unlock = frame(&UnlockRequest {
        beamline: "SST-1".into(),
    });
    for (rpc, sent, want) in [
        (FleetRpc::Halt, halt, "5.3.1"),
        (FleetRpc::Halt, halt_all, "*"),
        (FleetRpc::Resume, resume, "7.0.1"),
        (FleetRpc::Lock, lock, "12.3.1"),
        (FleetRpc::Unlock, unlock, "SST-1"),
    ] {
        let (scope, passed) = scope_of(rpc, vec![sent.clone()]).await;
        assert_eq!(scope.as_deref(), Some(want), "{rpc}");
        assert_eq!(passed, sent, "{rpc}: the body changed");
    }
}

#[tokio::test]
async fn a_message_split_or_not_a_beamline_names_none_and_passes_as_is() {
    let sent = frame(&UnlockRequest {
        beamline: "5.3.1".into(),
    });
    let (scope, passed) = scope_of(FleetRpc::Unlock, vec![sent.slice(..4), sent.slice(4..)]).await;
    assert_eq!((scope, passed), (None, sent));
    let invalid = frame(&UnlockRequest {
        beamline: "5..3".into(),
    });
    assert_eq!(scope_of(FleetRpc::Unlock, vec![invalid]).await.0, None);
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 2, 0x0f, 0x01]);
    assert_eq!(scope_of(FleetRpc::Halt, vec![garbage]).await.0, None);
}

#[test]
fn reads_and_agent_calls_are_not_watched() {
    for path in [
        path(FleetRpc::ListBeamlines),
        path(FleetRpc::WatchFleet),
        Rpc::Execute.path().to_string(),
    ] {
        assert!(watch(&mut request(&path, vec![])).is_none(), "{path}");
    }
}
