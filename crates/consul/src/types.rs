//! Consul's JSON shapes for the calls we make: only the fields we send or read. Unknown fields
//! in answers are ignored (Consul adds fields over time); field names are Consul's.

use beamline_contract::address::host_port;
pub use beamline_contract::wire::CheckStatus;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub check: AgentServiceCheck,
}

/// A check registered with a service; durations in Go syntax ("2s").
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceCheck {
    pub name: String,
    #[serde(rename = "GRPC")]
    pub grpc: String,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
}

/// One entry of `/v1/health/service/:name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: ServiceInfo,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    pub node: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    pub port: u16,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub status: CheckStatus,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub output: String,
}

/// One entry of `/v1/health/state/:state`: a check, of a service or (with no `ServiceID`) of a
/// node, whose status applies to every service on that node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "PascalCase")]
pub struct CheckEntry {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub status: CheckStatus,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
    /// Consul writes `null` for a node check's tags.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub service_tags: Vec<String>,
    #[serde(default)]
    pub modify_index: u64,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl ServiceEntry {
    /// Consul's `?passing` rule: every check, node checks included, is passing.
    pub fn is_passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == CheckStatus::Passing)
    }

    /// The address to dial: the service's own, or its node's when the service has none.
    pub fn address(&self) -> String {
        let host = if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        };
        host_port(host, self.service.port)
    }
}
