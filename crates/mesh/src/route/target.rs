//! Where one attempt of a call goes: the instance that owns a task (healthy, or departed but
//! still answering), the instance rendezvous hashing picks for an idempotency key (skipping
//! those already tried), or the balancer. Reads the route's endpoints; sends nothing.

use std::sync::Arc;

use prost::Message;
use tonic::Status;

use super::request::{task_id, task_owner};
use super::Route;
use crate::endpoint::Endpoint;
use crate::rendezvous;
use beamline_contract::proto;
use beamline_contract::quote::quote;
use beamline_contract::wire::Rpc;

/// Where one attempt goes.
pub(super) enum Target {
    Instance(Arc<Endpoint>),
    Balanced,
}

impl Route {
    /// Where the next attempt goes; a keyed Execute skips the instances in `tried`.
    pub(super) fn target(
        &self,
        rpc: Option<Rpc>,
        message: &[u8],
        tried: &[String],
    ) -> Result<Target, Status> {
        let endpoints = self.endpoints.borrow().clone();
        match rpc {
            Some(rpc) if rpc.names_task() => {
                let task_id = task_id(rpc, message)?;
                let owner = task_owner(&task_id)?;
                // Its owner, healthy or draining: a draining agent serves its tasks until it
                // stops, and a Cancel must reach an actuating task during a deploy.
                if let Some(endpoint) = endpoints.get(owner) {
                    return Ok(Target::Instance(endpoint.clone()));
                }
                if let Some(endpoint) = self.departed.borrow().get(owner) {
                    return Ok(Target::Instance(endpoint.clone()));
                }
                Err(match self.resolution().instance(owner) {
                    Some(_) => Status::unavailable(format!(
                        "instance {owner}, which owns task {}, is registered but not healthy",
                        quote(&task_id)
                    )),
                    None => Status::not_found(format!(
                        "task {}: its instance {} is gone (not registered for beamline {}, and \
                         not answering)",
                        quote(&task_id),
                        quote(owner),
                        self.beamline
                    )),
                })
            }
            Some(Rpc::Execute) => {
                let request = proto::ExecuteRequest::decode(message)
                    .map_err(|e| Status::invalid_argument(format!("bad ExecuteRequest: {e}")))?;
                if request.idempotency_key.is_empty() {
                    return Ok(Target::Balanced);
                }
                let open = endpoints
                    .values()
                    .filter(|e| e.is_open() && !tried.contains(&e.id))
                    .map(|e| e.id.as_str());
                Ok(match rendezvous::pick(&request.idempotency_key, open) {
                    Some(id) => {
                        let endpoint = endpoints[id].clone();
                        // Its retry depends on the capability's idempotency: learn the card.
                        endpoint.want_card();
                        Target::Instance(endpoint)
                    }
                    None => Target::Balanced,
                })
            }
            _ => Ok(Target::Balanced),
        }
    }
}
