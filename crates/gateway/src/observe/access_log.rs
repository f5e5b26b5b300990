//! The access log's line: one `tracing` event (target `access`) per call, with caller,
//! beamline, method, capability, task id, instance, gRPC code, duration and start time as
//! structured fields (`--log-format json` is the subscriber's choice), and last `refused`: why
//! the gateway refused an actuating call (`halt`, `lock`, `unreadable`; empty otherwise).
//! Fleet RPCs are logged by name (`Halt`, `Lock`, …); for Halt, Resume, Lock and Unlock the
//! beamline is the one their message names (`*` for every beamline), or empty when it could not
//! be read in passing.
//!
//! Owns the line's fields and their spelling; what a call's facts are is the observer's
//! (`record`), and when lines are written off the call's path is the queue's (`line_queue`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::Code;

use super::code_name;
use crate::caller::method_of;
use crate::fleet::enforce::RefusedBy;
use crate::limits::ANONYMOUS;
use beamline_contract::wire::{FleetRpc, Rpc};

/// The `tracing` target of access log lines.
pub const TARGET: &str = "access";

/// The method a line names: the RPC's own name for the gateway's and the Fleet service's RPCs
/// (no copy per call), or the last segment of any other path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Static(&'static str),
    Other(String),
}

impl Method {
    /// The method of a request's `path` (`/beamline.v1.BeamlineAgent/Execute`: `Execute`).
    pub fn of_path(path: &str) -> Method {
        if let Some(rpc) = Rpc::of_path(path) {
            return Method::Static(rpc.name());
        }
        if let Some(rpc) = FleetRpc::of_path(path) {
            return Method::Static(rpc.name());
        }
        Method::Other(method_of(path).to_string())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Static(name) => name,
            Method::Other(name) => name,
        }
    }
}

impl std::ops::Deref for Method {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Everything a line says about one call.
#[derive(Debug, Clone)]
pub struct AccessLine {
    pub started: SystemTime,
    pub caller: Option<Arc<str>>,
    pub beamline: Arc<str>,
    pub method: Method,
    pub capability: Option<String>,
    pub task_id: Option<String>,
    pub instance: Option<Arc<str>>,
    pub code: Code,
    pub duration: Duration,
    /// The gateway refused the call: halted, locked, or the control state unreadable.
    pub refused: Option<RefusedBy>,
}

impl AccessLine {
    /// Emits the line as one `tracing` event (target `access`).
    pub fn emit(&self) {
        let duration_ms = (self.duration.as_secs_f64() * 1e6).round() / 1e3;
        let started = prost_types::Timestamp::from(self.started);
        tracing::info!(
            target: TARGET,
            started = %started,
            caller = self.caller.as_deref().unwrap_or(ANONYMOUS),
            beamline = &*self.beamline,
            method = self.method.as_str(),
            capability = self.capability.as_deref().unwrap_or(""),
            task_id = self.task_id.as_deref().unwrap_or(""),
            instance = self.instance.as_deref().unwrap_or(""),
            code = code_name(self.code),
            duration_ms,
            refused = self.refused.map_or("", RefusedBy::as_str),
            "call"
        );
    }
}
