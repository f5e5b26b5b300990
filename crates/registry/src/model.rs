//! The registry's records: services, checks and KV entries as they are stored and persisted.
//!
//! Owns the data shapes and their invariants; rendering to Consul's JSON lives in the HTTP layer
//! and decoding of requests in `decode`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::probe::{GrpcProbe, HttpProbe};

/// A check's health, as Consul spells it on the wire: the contract's, shared with the mesh.
pub use beamline_contract::wire::CheckStatus;

/// `{Address, Port}` as Consul writes it in a service's `TaggedAddresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// DNS SRV weights; Consul defaults both to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: i64,
    pub warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// One registered service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a check does to find out its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// Passive: the client reports through check/pass|warn|fail|update before `ttl` runs out.
    Ttl {
        ttl: Duration,
    },
    Http {
        probe: HttpProbe,
        interval: Duration,
    },
    Tcp {
        addr: String,
        interval: Duration,
    },
    Grpc {
        probe: GrpcProbe,
        interval: Duration,
    },
}

impl CheckKind {
    /// Consul's `Type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Grpc { .. } => "grpc",
        }
    }

    pub fn interval(&self) -> Option<Duration> {
        match self {
            CheckKind::Ttl { .. } => None,
            CheckKind::Http { interval, .. }
            | CheckKind::Tcp { interval, .. }
            | CheckKind::Grpc { interval, .. } => Some(*interval),
        }
    }
}

/// Maintenance checks are ordinary critical checks with a reserved ID prefix, as in Consul.
pub const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";
pub const NODE_MAINTENANCE_ID: &str = "_node_maintenance";

/// A check's definition, as registered; the runtime status lives beside it in [`Check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    pub id: String,
    pub name: String,
    pub notes: String,
    /// Empty for a node-level check.
    pub service_id: String,
    /// `None` for checks with no runner (maintenance).
    pub kind: Option<CheckKind>,
    pub timeout: Duration,
    /// The status a new check starts in (Consul: critical unless the registration says).
    pub initial_status: CheckStatus,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    pub deregister_critical_after: Option<Duration>,
}

/// A registered check with its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub def: CheckDefinition,
    pub status: CheckStatus,
    pub output: String,
    /// For TTL checks: when the current status expires, in ms since the Unix epoch. Persisted so
    /// that a restarted registry keeps a TTL check's state until it would have expired anyway.
    pub ttl_expires_unix_ms: Option<u64>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Check {
    pub fn is_maintenance(&self) -> bool {
        self.def.id.starts_with(SERVICE_MAINTENANCE_PREFIX) || self.def.id == NODE_MAINTENANCE_ID
    }
}

/// One KV entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
}

/// Consul's worst-of aggregation: maintenance beats critical beats warning beats passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aggregate {
    Passing,
    Warning,
    Critical,
    Maintenance,
}

impl Aggregate {
    pub fn of<'a>(checks: impl IntoIterator<Item = &'a Check>) -> Aggregate {
        checks
            .into_iter()
            .map(|c| {
                if c.is_maintenance() {
                    Aggregate::Maintenance
                } else {
                    match c.status {
                        CheckStatus::Passing => Aggregate::Passing,
                        CheckStatus::Warning => Aggregate::Warning,
                        CheckStatus::Critical => Aggregate::Critical,
                    }
                }
            })
            .max()
            .unwrap_or(Aggregate::Passing)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Passing => "passing",
            Aggregate::Warning => "warning",
            Aggregate::Critical => "critical",
            Aggregate::Maintenance => "maintenance",
        }
    }
}
