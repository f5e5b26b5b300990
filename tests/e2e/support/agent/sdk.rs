//! An agent built on the SDK inside the test process (plaintext, registered in a test registry
//! with short intervals), for scenarios that need capabilities the demo agent does not have:
//! the test says which with the `Agent` builder. Stops when the handle drops.
//!
//! Owns the in-process agent's start and stop; it must not call it (`calls`) or ask the
//! registry about it (`registration`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::Registry;
use beamline_mesh::agent::{Agent, AgentFlags, AgentRuntime, Instance};
use beamline_mesh::beamline::BeamlineId;

/// A running in-process SDK agent; dropping it shuts it down (it drains and deregisters).
pub struct SdkAgent {
    /// Its instance id (the Consul service ID).
    pub instance_id: String,
    stop: CancellationToken,
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SdkAgent {
    /// Starts the agent `agent` (its capabilities) as an instance of `beamline`, version
    /// `version`, registered in `registry` with a 300 ms check.
    pub async fn start(
        registry: &Registry,
        beamline: &str,
        version: &str,
        agent: Agent,
    ) -> SdkAgent {
        let mut flags = AgentFlags::new(BeamlineId::parse(beamline).expect("a valid beamline id"));
        flags.listen = "127.0.0.1:0".parse().unwrap();
        flags.consul = Some(registry.addr.to_string());
        flags.check_interval = Duration::from_millis(300);
        flags.check_timeout = Duration::from_millis(300);
        flags.keepalive = Duration::from_millis(300);
        flags.drain_grace = Duration::from_millis(100);
        let config = flags.config().expect("the SDK agent's configuration");
        let runtime = AgentRuntime::bind(Instance::new(flags.beamline.clone(), version), config)
            .await
            .expect("bind the SDK agent");
        let instance_id = runtime.instance().instance_id.clone();
        let service = agent
            .service(runtime.instance(), runtime.tasks())
            .expect("the SDK agent's service");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(runtime.serve(service, async move { stopped.cancelled().await }));
        SdkAgent { instance_id, stop }
    }
}
