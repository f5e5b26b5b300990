//! Callers of the gateway's `beamline.v1.Fleet` control RPCs (Halt, Resume, Lock, Unlock) with
//! the standard policy's credentials plus JWT callers it admits (a `safety` caller, a second
//! operator of 5.3.1 and an operator of 7.0.1 only), and the control state read straight from the registry's KV, to
//! check what a call wrote or left alone.
//!
//! Owns those callers and reads; it must not start processes (`stack`) nor write KV itself.

use std::time::Duration;

use beamline_mesh::consul::{ConsulClient, ConsulConfig};
use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::{
    HaltRequest, HaltState, LockRequest, LockState, ResumeRequest, UnlockRequest,
};
use tonic::transport::Channel;

use super::{claims, jwt_hs256, with_bearer, PolicyStack, JWT_SECRET};
use crate::support::gateway::CALL_BOUND;
use crate::support::Registry;

/// `control-room`: the safety role, by JWT.
pub fn safety_token() -> String {
    jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("control-room", "safety", &["*"]),
    )
}

/// `planner`: a second operator of 5.3.1 (besides `team-531`), by JWT.
pub fn planner_token() -> String {
    jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("planner", "operator", &["5.3.1"]),
    )
}

/// `bl701-team`: an operator of 7.0.1 only (not of 5.3.1), by JWT.
pub fn other_operator_token() -> String {
    jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("bl701-team", "operator", &["7.0.1"]),
    )
}

/// A Fleet client of the stack's gateway, calling as one credential (None: no credential).
pub struct FleetCaller {
    client: FleetClient<Channel>,
    credential: Option<String>,
}

impl PolicyStack {
    /// A Fleet client calling as `credential`.
    pub async fn fleet_as(&self, credential: Option<&str>) -> FleetCaller {
        FleetCaller::new(self.gateway.channel().await, credential)
    }
}

/// `call`, bounded by [`CALL_BOUND`].
async fn bounded<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL_BOUND, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "TEST: no answer from the gateway within {CALL_BOUND:?}"
        ))),
    }
}

impl FleetCaller {
    /// A Fleet client over `channel` (to any gateway) calling as `credential`.
    pub fn new(channel: Channel, credential: Option<&str>) -> FleetCaller {
        FleetCaller {
            client: FleetClient::new(channel),
            credential: credential.map(str::to_string),
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_bearer(tonic::Request::new(message), self.credential.as_deref())
    }

    /// Lock `beamline` for `duration` (None: the default).
    pub async fn lock(
        &mut self,
        beamline: &str,
        note: &str,
        duration: Option<Duration>,
    ) -> Result<LockState, tonic::Status> {
        let request = self.request(LockRequest {
            beamline: beamline.to_string(),
            note: note.to_string(),
            duration: duration.map(|d| d.try_into().expect("a duration in range")),
        });
        bounded(self.client.lock(request)).await
    }

    /// Lock with a raw duration (to send what the CLI would refuse: zero, negative).
    pub async fn lock_raw(
        &mut self,
        beamline: &str,
        note: &str,
        duration: Option<prost_types::Duration>,
    ) -> Result<LockState, tonic::Status> {
        let request = self.request(LockRequest {
            beamline: beamline.to_string(),
            note: note.to_string(),
            duration,
        });
        bounded(self.client.lock(request)).await
    }

    pub async fn unlock(&mut self, beamline: &str) -> Result<LockState, tonic::Status> {
        let request = self.request(UnlockRequest {
            beamline: beamline.to_string(),
        });
        bounded(self.client.unlock(request)).await
    }

    /// Halt `beamline` ("" with `all`).
    pub async fn halt(
        &mut self,
        beamline: &str,
        all: bool,
        reason: &str,
    ) -> Result<HaltState, tonic::Status> {
        let request = self.request(HaltRequest {
            beamline: beamline.to_string(),
            all,
            reason: reason.to_string(),
        });
        bounded(self.client.halt(request)).await
    }

    /// Resume `beamline` ("" with `all`).
    pub async fn resume(&mut self, beamline: &str, all: bool) -> Result<HaltState, tonic::Status> {
        let request = self.request(ResumeRequest {
            beamline: beamline.to_string(),
            all,
        });
        bounded(self.client.resume(request)).await
    }
}

/// One KV entry of the control state: key, value as text, ModifyIndex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecord {
    pub key: String,
    pub value: String,
    pub modify_index: u64,
}

/// Every entry under the control state's prefix in `registry`'s KV, in key order.
pub async fn control_records(registry: &Registry) -> Vec<KvRecord> {
    let client =
        ConsulClient::new(ConsulConfig::new(&registry.addr.to_string()).expect("registry address"));
    let answer = client
        .kv_list(beamline_mesh::wire::kv::PREFIX, 0, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("read the control state from KV: {e}"));
    let mut records: Vec<KvRecord> = answer
        .value
        .into_iter()
        .map(|e| KvRecord {
            key: e.key,
            value: String::from_utf8_lossy(&e.value).into_owned(),
            modify_index: e.modify_index,
        })
        .collect();
    records.sort_by(|a, b| a.key.cmp(&b.key));
    records
}

/// The record at `key`, as JSON.
pub async fn control_record(registry: &Registry, key: &str) -> Option<serde_json::Value> {
    control_records(registry)
        .await
        .into_iter()
        .find(|r| r.key == key)
        .map(|r| serde_json::from_str(&r.value).expect("a control record is JSON"))
}
