//! Wire facts shared by both ends of a call: names an agent writes and the mesh reads. Each is
//! spelled here once; agents, the mesh and the gateway import it.

/// Metadata telling a caller the refused call never started (safe to send elsewhere): an agent
/// that is draining sets it on the Execute it refuses, and the mesh retries that call on another
/// instance.
pub const NOT_STARTED_KEY: &str = "x-beamline-not-started";
