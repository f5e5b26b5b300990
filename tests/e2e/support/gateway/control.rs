//! The facility's control state written straight into the registry's KV (halts, as the
//! gateway's Fleet service and every agent read them), for tests of what the gateway does while
//! a beamline is halted — independent of who may write it (the Fleet RPCs' own tests).
//!
//! Owns writing and deleting the KV records; it must not make calls through the gateway.

use std::time::SystemTime;

use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::Halt;
use beamline_contract::wire::kv;
use beamline_mesh::consul::{ConsulClient, ConsulConfig};

use crate::support::Registry;

/// Which halt record: one beamline's, or the fleet-wide one.
#[derive(Debug, Clone, Copy)]
pub enum HaltScope<'a> {
    Beamline(&'a str),
    All,
}

impl HaltScope<'_> {
    /// The KV key of this halt.
    pub fn key(self) -> String {
        match self {
            HaltScope::Beamline(id) => {
                kv::halt_key(&BeamlineId::parse(id).expect("a valid beamline id"))
            }
            HaltScope::All => kv::HALT_ALL.to_string(),
        }
    }
}

/// A KV client of `registry`.
pub fn kv_client(registry: &Registry) -> ConsulClient {
    ConsulClient::new(ConsulConfig::new(&registry.addr.to_string()).expect("registry address"))
}

/// Writes the halt of `scope` by `by` for `reason`, since now; returns it as written.
pub async fn halt_in_kv(registry: &Registry, scope: HaltScope<'_>, by: &str, reason: &str) -> Halt {
    let halt = Halt {
        by: by.to_string(),
        reason: reason.to_string(),
        since: SystemTime::now(),
    };
    let written = kv_client(registry)
        .kv_put(&scope.key(), &halt.to_json(), None)
        .await
        .unwrap_or_else(|e| panic!("write the halt {scope:?} to KV: {e}"));
    assert!(written, "KV refused the halt {scope:?}");
    halt
}

/// Deletes the halt of `scope` (a resume).
pub async fn resume_in_kv(registry: &Registry, scope: HaltScope<'_>) {
    let deleted = kv_client(registry)
        .kv_delete(&scope.key(), None)
        .await
        .unwrap_or_else(|e| panic!("delete the halt {scope:?} from KV: {e}"));
    assert!(deleted, "KV refused to delete the halt {scope:?}");
}
