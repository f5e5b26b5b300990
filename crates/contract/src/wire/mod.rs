//! Wire facts shared by both ends of a call: the RPCs and what each may do, the header names,
//! the Consul `Meta` keys an agent writes and the mesh reads, and Consul's check statuses. Each
//! is spelled here once; agents, the mesh, the gateway, the registry and the CLI import it.
//!
//! Owns names and their properties only; it must not hold behaviour (routing, policy, retries
//! are decided by their own modules from these facts).

mod check;
mod rpc;

pub use check::CheckStatus;
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

    /// Every key the framework writes; `--meta` refuses them.
    pub const RESERVED: &[&str] = &[BEAMLINE, INSTANCE_ID, AGENT_VERSION, SDK_VERSION];
}

#[cfg(test)]
mod tests;
