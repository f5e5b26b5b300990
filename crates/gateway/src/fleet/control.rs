//! The gateway's side of the control state in Consul KV: the fail-closed view every actuating
//! call is checked against (`beamline_consul::control`), and the writes behind Halt, Resume,
//! Lock and Unlock.
//!
//! Owns who may write what and the check-and-set writes; the values' shape and the refusal rule
//! are `beamline_contract::control`'s.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::Status;

use beamline_consul::control::{ControlView, ControlWatch, FollowSettings};
use beamline_consul::{ConsulClient, ConsulConfig};
use beamline_contract::proto::{
    HaltRequest, HaltState, LockRequest, LockState, ResumeRequest, UnlockRequest,
};

use crate::caller::Caller;

/// The control state as the gateway follows and writes it.
pub struct Control {
    client: ConsulClient,
    watch: ControlWatch,
}

impl Control {
    /// Starts following the control state (call inside a Tokio runtime).
    pub fn start(consul: ConsulConfig) -> Control {
        let client = ConsulClient::new(consul);
        let watch = beamline_consul::control::spawn(client.clone(), FollowSettings::default());
        Control { client, watch }
    }

    /// The view now.
    pub fn view(&self) -> Arc<ControlView> {
        self.watch.view()
    }

    /// The view now and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ControlView>> {
        self.watch.subscribe()
    }

    pub async fn halt(
        &self,
        _caller: Option<&Caller>,
        _request: HaltRequest,
    ) -> Result<HaltState, Status> {
        let _ = &self.client;
        Err(Status::unimplemented("Halt: being built"))
    }

    pub async fn resume(
        &self,
        _caller: Option<&Caller>,
        _request: ResumeRequest,
    ) -> Result<HaltState, Status> {
        Err(Status::unimplemented("Resume: being built"))
    }

    pub async fn lock(
        &self,
        _caller: Option<&Caller>,
        _request: LockRequest,
    ) -> Result<LockState, Status> {
        Err(Status::unimplemented("Lock: being built"))
    }

    pub async fn unlock(
        &self,
        _caller: Option<&Caller>,
        _request: UnlockRequest,
    ) -> Result<LockState, Status> {
        Err(Status::unimplemented("Unlock: being built"))
    }
}
