//! What the router reads of a request message: the facts an access log wants (capability,
//! task id), the task id a task-owner call names and the instance that owns it. Decoding only;
//! where a call goes is `target`'s.

use http::HeaderMap;
use prost::Message;
use tonic::Status;

use beamline_contract::proto;
use beamline_contract::quote::quote;
use beamline_contract::wire::Rpc;

/// What the mesh read from a call, in the response's extensions (for access logs above it);
/// absent when it read nothing (a Describe): read absence as the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFacts {
    pub capability: Option<String>,
    pub task_id: Option<String>,
}

impl CallFacts {
    pub(super) fn of(rpc: Option<Rpc>, message: &[u8]) -> CallFacts {
        match rpc {
            Some(Rpc::Execute) => CallFacts {
                capability: proto::ExecuteRequest::decode(message)
                    .ok()
                    .map(|r| r.capability),
                task_id: None,
            },
            Some(rpc) if rpc.names_task() => CallFacts {
                capability: None,
                task_id: task_id(rpc, message).ok(),
            },
            _ => CallFacts::default(),
        }
    }
}

/// The task id of a GetTask/Subscribe/Cancel request (field 1 in all three).
pub(super) fn task_id(rpc: Rpc, message: &[u8]) -> Result<String, Status> {
    let decoded = match rpc {
        Rpc::GetTask => proto::GetTaskRequest::decode(message).map(|r| r.task_id),
        Rpc::Subscribe => proto::SubscribeRequest::decode(message).map(|r| r.task_id),
        _ => proto::CancelRequest::decode(message).map(|r| r.task_id),
    };
    decoded.map_err(|e| Status::invalid_argument(format!("bad request message: {e}")))
}

/// The instance that owns `task_id`: the part before its last `/` (an agent names its tasks
/// `<instance id>/<n>`). NOT_FOUND, quoting the id, when it names none.
pub(super) fn task_owner(task_id: &str) -> Result<&str, Status> {
    task_id
        .rsplit_once('/')
        .map(|(owner, _)| owner)
        .ok_or_else(|| {
            Status::not_found(format!(
                "unknown task {}: it names no instance",
                quote(task_id)
            ))
        })
}

/// The most request metadata an agent accepts: HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE of a
/// tonic (hyper) server, 16 KiB, counted as HTTP/2 counts it.
pub(super) const MAX_HEADER_LIST_BYTES: usize = 16 * 1024;

/// What the request's headers will weigh against HTTP/2's header list limit once sent: each
/// field's name and value plus 32 bytes (RFC 9113 §6.5.2), with room for what the caller's
/// `headers` do not show yet — the pseudo-headers (`:method`, `:scheme`, `:authority`,
/// `:path`) and the `grpc-timeout` the mesh may add.
pub(super) fn header_list_size(headers: &HeaderMap) -> usize {
    const NOT_SHOWN: usize = 512;
    NOT_SHOWN
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum::<usize>()
}
