//! The reference agent: a simulated beamline (see [`sim`]) whose capabilities are declared on
//! the agent SDK exactly as a beamline team declares its own ([`capabilities`], with typed
//! [`params`]). It is what `beamline-mesh agent` and `dev` run, what the tests call, and the
//! example a beamline team reads after `templates/agent`.
//!
//! Owns assembling the simulation and its capabilities; it must not know about Consul, health or
//! draining (the SDK's runtime does all three).

pub mod capabilities;
pub mod params;
pub mod sim;

#[cfg(test)]
mod tests;

use crate::agent::tasks::{TaskTable, TaskTableConfig};
use crate::agent::{Agent, AgentService, Instance};
use sim::Sim;

/// The demo beamline declared on the SDK: `Agent::new(version)` with its capabilities over
/// `sim`. `beamline-mesh agent` serves it with the standard agent flags.
pub fn agent(version: &str, sim: &Sim) -> Agent {
    capabilities::declare(Agent::new(version), sim)
}

/// The demo agent served in-process (tests and tools that call it without a network): its
/// service over a task table of its own, and the simulation behind it.
pub struct DemoAgent {
    service: AgentService,
    sim: Sim,
}

impl DemoAgent {
    /// A demo agent of `instance` whose simulation is fixed by `seed`.
    pub fn standalone(instance: &Instance, seed: u64) -> DemoAgent {
        let sim = Sim::new(seed);
        let tasks = TaskTable::new(instance.instance_id.clone(), TaskTableConfig::default());
        // The declarations are constants of this module; a bad one is a bug the tests catch.
        let service = agent(&instance.agent_version, &sim)
            .service(instance, tasks)
            .expect("the demo agent's capabilities are valid");
        DemoAgent { service, sim }
    }

    /// The `BeamlineAgent` service.
    pub fn service(&self) -> &AgentService {
        &self.service
    }

    /// The service, to serve it.
    pub fn into_service(self) -> AgentService {
        self.service
    }

    /// The simulated hardware (tests and the scripted tour look at it directly).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The task table the agent's tasks run in.
    pub fn tasks(&self) -> &TaskTable {
        self.service.tasks()
    }
}
