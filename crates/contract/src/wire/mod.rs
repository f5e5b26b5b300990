//! Wire facts shared by both ends of a call: the RPCs and what each may do, the header names,
//! the Consul `Meta` keys an agent writes and the mesh reads, and Consul's check statuses. Each
//! is spelled here once; agents, the mesh, the gateway, the registry and the CLI import it.
//!
//! Owns names and their properties only; it must not hold behaviour (routing, policy, retries
//! are decided by their own modules from these facts).

mod check;
mod fleet_rpc;
mod rpc;

pub use check::CheckStatus;
pub use fleet_rpc::FleetRpc;
pub use rpc::Rpc;

/// Metadata telling a caller the refused call never started (safe to send elsewhere): an agent
/// that is draining sets it on the Execute it refuses, and the mesh retries that call on another
/// instance. The same name as [`header::NOT_STARTED`].
pub const NOT_STARTED_KEY: &str = header::NOT_STARTED;

/// gRPC metadata (HTTP/2 header) names the framework reads or writes.
pub mod header {
    /// The beamline a call through the gateway is for (`5.3.1`): the gateway's routing key.
    pub const BEAMLINE: &str = "x-beamline";
    /// The caller's name, as the gateway verified it, forwarded to the agent.
    pub const CALLER: &str = "x-caller";
    /// The caller's role for the beamline (`observer`, `operator`), forwarded to the agent.
    pub const ROLE: &str = "x-role";
    /// On a refused Execute: the call never started, so it may be sent elsewhere.
    pub const NOT_STARTED: &str = "x-beamline-not-started";
    /// Set by an agent's by-name router on what it answered itself (not a capability's answer).
    pub const SERVED_BY: &str = "x-served-by";
}

/// The names certificates carry inside the mesh (mutual TLS between the mesh and agents).
pub mod tls {
    use crate::beamline::BeamlineId;

    /// The DNS name a gateway's client certificate carries (a subject alternative name): an
    /// agent honours the caller identity (`x-caller`, `x-role`) only from a peer whose
    /// verified certificate has it.
    pub const GATEWAY_NAME: &str = "gateway.beamline-mesh";

    /// The DNS name an agent's server certificate carries and the mesh verifies when it dials
    /// an instance of `beamline`: its Consul service's DNS name (`beamline-5-3-1.service.consul`),
    /// one certificate per beamline's Deployment (pod addresses cannot be in a certificate).
    pub fn agent_name(beamline: &BeamlineId) -> String {
        format!("{}.service.consul", beamline.service_name())
    }
}

/// The Consul `Meta` keys the framework writes on an agent's registration. Teams add their own
/// keys with `--meta`; these are reserved. An agent built on an older SDK may lack some of them:
/// a reader treats a missing key as the old behaviour, never as an error.
pub mod meta {
    /// The beamline id as given (`5.3.1`): the service name is derived from it, never reversed.
    pub const BEAMLINE: &str = "beamline";
    /// The instance id (also the Consul service ID).
    pub const INSTANCE_ID: &str = "instance_id";
    /// The agent's own version (its crate's).
    pub const AGENT_VERSION: &str = "agent_version";
    /// The version of the agent SDK it was built with.
    pub const SDK_VERSION: &str = "sdk_version";
    /// The agent's `AgentCard.card_revision`: the gateway's catalog Describes a beamline again
    /// only when it changes (agents without it: when their instance set changes).
    pub const CARD_REVISION: &str = "card_revision";
    /// What the agent enforces itself from the control state in Consul KV
    /// ([`CONTROLS_ENFORCED`]); absent on agents too old to halt themselves.
    pub const CONTROLS: &str = "controls";
    /// The value of [`CONTROLS`] this SDK writes: it watches halts and locks.
    pub const CONTROLS_ENFORCED: &str = "halt,lock";
    /// The value of [`CONTROLS`] an agent writes that halts itself but leaves locks to the
    /// gateway (it cannot tell who calls: plaintext, or TLS without client certificates).
    pub const CONTROLS_HALT_ONLY: &str = "halt";

    /// Every key the framework writes; `--meta` refuses them.
    pub const RESERVED: &[&str] = &[
        BEAMLINE,
        INSTANCE_ID,
        AGENT_VERSION,
        SDK_VERSION,
        CARD_REVISION,
        CONTROLS,
    ];
}

/// The roles a caller may have, as the gateway forwards them in `x-role` and the policy file
/// names them.
pub mod role {
    /// Reads: Describe, GetTask, Subscribe, and the fleet catalog.
    pub const OBSERVER: &str = "observer";
    /// Also acts on its beamlines: Execute, Cancel, and halting, resuming, locking them.
    pub const OPERATOR: &str = "operator";
    /// The control room's stop button: halts and resumes every beamline and breaks locks;
    /// otherwise an observer.
    pub const SAFETY: &str = "safety";
}

/// The Consul KV keys of the facility's control state (`control` holds their values' shape).
pub mod kv {
    use crate::beamline::BeamlineId;

    /// Every key of the control state is under this prefix: one blocking query on it follows
    /// all of it.
    pub const PREFIX: &str = "beamline-mesh/";
    /// Halts: `beamline-mesh/halt/<beamline>` and the fleet-wide [`HALT_ALL`].
    pub const HALT_PREFIX: &str = "beamline-mesh/halt/";
    /// The fleet-wide halt (`_` cannot start a beamline id).
    pub const HALT_ALL: &str = "beamline-mesh/halt/_all";
    /// Locks: `beamline-mesh/lock/<beamline>`.
    pub const LOCK_PREFIX: &str = "beamline-mesh/lock/";

    /// The halt key of `beamline`.
    pub fn halt_key(beamline: &BeamlineId) -> String {
        format!("{HALT_PREFIX}{beamline}")
    }

    /// The lock key of `beamline`.
    pub fn lock_key(beamline: &BeamlineId) -> String {
        format!("{LOCK_PREFIX}{beamline}")
    }
}

#[cfg(test)]
mod tests;
