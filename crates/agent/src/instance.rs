//! Who one running agent is: its beamline, its instance id (the Consul service ID, unique per
//! process) and its version. Created before the agent's implementation, which needs it for
//! Describe and task ids.

use beamline_contract::beamline::BeamlineId;

#[derive(Debug, Clone)]
pub struct Instance {
    pub beamline: BeamlineId,
    /// The Consul service ID; never contains '/', since task ids are `<instance_id>/<suffix>`.
    pub instance_id: String,
    pub agent_version: String,
}

impl Instance {
    /// A new instance of `beamline` with a fresh id: `<service name>-<8 hex digits>`.
    pub fn new(beamline: BeamlineId, agent_version: impl Into<String>) -> Instance {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Instance {
            instance_id: format!("{}-{suffix}", beamline.service_name()),
            beamline,
            agent_version: agent_version.into(),
        }
    }

    pub fn service_name(&self) -> String {
        self.beamline.service_name()
    }
}
