use std::time::Duration;

use tokio::time::Instant;

use super::later;

#[test]
fn a_deadline_beyond_any_clock_is_far_but_no_panic() {
    let now = Instant::now();
    let far = later(now, Duration::MAX);
    assert!(far > now + Duration::from_secs(3600));
    assert_eq!(
        later(now, Duration::from_secs(5)),
        now + Duration::from_secs(5)
    );
}

/// Property tests of what the router reads from a task-owner call (proptest, 256 cases each):
/// any task id and any request bytes, from any caller.
mod task_ids {
    use proptest::prelude::*;
    use prost::Message;
    use tonic::Code;

    use super::super::request::{task_id, task_owner, CallFacts};
    use beamline_contract::proto;
    use beamline_contract::wire::Rpc;

    /// What an error may repeat of the caller's input: 64 characters quoted, and the words.
    const MAX_MESSAGE_BYTES: usize = 64 * 4 + 200;

    proptest! {
        /// An id with a `/` names the instance before its last `/`; one without is NOT_FOUND,
        /// and the message stays short however long the id.
        #[test]
        fn the_owner_is_everything_before_the_last_slash(
            owner in ".{0,40}",
            n in "[^/]{0,20}",
            junk in "[^/]{0,3000}",
        ) {
            let id = format!("{owner}/{n}");
            prop_assert_eq!(task_owner(&id).unwrap(), owner.as_str());
            let status = task_owner(&junk).unwrap_err();
            prop_assert_eq!(status.code(), Code::NotFound);
            prop_assert!(status.message().len() <= MAX_MESSAGE_BYTES, "{}", status.message());
        }

        /// A well-formed request gives back its id for every task-owner RPC, and the access
        /// log's facts carry it.
        #[test]
        fn every_task_owner_rpc_reads_its_task_id(id in ".{0,200}") {
            for rpc in Rpc::ALL.into_iter().filter(|r| r.names_task()) {
                let message = match rpc {
                    Rpc::GetTask => proto::GetTaskRequest { task_id: id.clone() }.encode_to_vec(),
                    Rpc::Subscribe => proto::SubscribeRequest { task_id: id.clone() }.encode_to_vec(),
                    _ => proto::CancelRequest { task_id: id.clone() }.encode_to_vec(),
                };
                prop_assert_eq!(task_id(rpc, &message).unwrap(), id.clone());
                prop_assert_eq!(CallFacts::of(Some(rpc), &message).task_id, Some(id.clone()));
            }
        }

        /// Any bytes: a task id or INVALID_ARGUMENT with a bounded message, never a panic.
        #[test]
        fn any_bytes_decode_or_are_invalid_argument(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for rpc in Rpc::ALL.into_iter().filter(|r| r.names_task()) {
                if let Err(status) = task_id(rpc, &bytes) {
                    prop_assert_eq!(status.code(), Code::InvalidArgument);
                    prop_assert!(status.message().len() <= MAX_MESSAGE_BYTES);
                }
            }
            let _ = CallFacts::of(Some(Rpc::Execute), &bytes);
            let _ = CallFacts::of(None, &bytes);
        }
    }
}

/// The call's future is allocated (boxed by `MeshChannel`) and moved once per call: its size is
/// a per-call cost (2.7 KB in the release build, 2.9 KB in a debug one, before the request's
/// head stopped being carried into nested futures; 1.4 KB after). A bound with some headroom, so
/// that it does not creep back.
#[tokio::test]
async fn a_calls_future_stays_small() {
    let consul = beamline_consul::ConsulConfig::new("http://127.0.0.1:9").expect("an address");
    let mesh = crate::Mesh::new(consul, crate::MeshSettings::default());
    let beamline = beamline_contract::beamline::BeamlineId::parse("5.3.1").expect("an id");
    let route = mesh.route(&beamline);
    let dispatch = route.dispatch(http::Request::new(tonic::body::Body::empty()));
    let size = std::mem::size_of_val(&dispatch);
    eprintln!("the call's future: {size} bytes");
    assert!(size <= 2048, "the call's future is {size} bytes");
}
