//! Wire facts shared by both ends of a call: names an agent writes and the mesh reads. Each is
//! spelled here once; agents, the mesh and the gateway import it.

/// Metadata telling a caller the refused call never started (safe to send elsewhere): an agent
/// that is draining sets it on the Execute it refuses, and the mesh retries that call on another
/// instance.
pub const NOT_STARTED_KEY: &str = "x-beamline-not-started";

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
