//! The reference agent: a simulated beamline (see [`sim`]) served through the tonic-generated
//! `BeamlineAgent` trait on top of the runtime's task table. It is what `beamline-mesh agent` and
//! `dev` run, what the tests call, and the example a beamline team reads first.
//!
//! Owns the order of the checks before a task exists: capability and schema (NOT_FOUND /
//! INVALID_ARGUMENT), motor limits (INVALID_ARGUMENT), then the motor reservation — a motor
//! already moved by another task is refused with FAILED_PRECONDITION rather than queued, so a
//! caller never waits behind work it cannot see. It must not know about Consul, health or
//! draining; the runtime wraps it for those.

pub mod capabilities;
pub mod sim;

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod motion_tests;
#[cfg(test)]
mod sim_tests;

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tonic::{Request, Response, Status};

use crate::agent::capabilities::Capabilities;
use crate::agent::tasks::{codes, TaskEventStream, TaskTable, TaskTableConfig};
use crate::agent::Instance;
use crate::proto::beamline_agent_server::BeamlineAgent;
use crate::proto::{
    AgentCard, CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, SubscribeRequest,
    Task,
};
use capabilities::Action;
use sim::Sim;

/// How many idempotency keys of motion tasks are remembered (as many as finished tasks kept).
const KNOWN_KEYS: usize = 10_000;

pub struct DemoAgent {
    instance: Instance,
    sim: Sim,
    capabilities: Capabilities,
    tasks: TaskTable,
    motion_keys: Mutex<KnownKeys>,
}

impl DemoAgent {
    /// A demo agent whose simulation is fixed by `seed`, running its tasks in `tasks` — the
    /// runtime's table, so that draining sees and ends them.
    pub fn new(instance: &Instance, tasks: TaskTable, seed: u64) -> DemoAgent {
        // The specs are constants of this module; a bad one is a bug the unit tests catch.
        let capabilities = Capabilities::new(capabilities::specs())
            .expect("the demo agent's capability specs are valid");
        DemoAgent {
            instance: instance.clone(),
            sim: Sim::new(seed),
            capabilities,
            tasks,
            motion_keys: Mutex::new(KnownKeys::default()),
        }
    }

    /// A demo agent with a task table of its own, for tests and tools that serve it without
    /// the runtime.
    pub fn standalone(instance: &Instance, seed: u64) -> DemoAgent {
        let tasks = TaskTable::new(instance.instance_id.clone(), TaskTableConfig::default());
        DemoAgent::new(instance, tasks, seed)
    }

    /// The simulated hardware (tests and the scripted tour look at it directly).
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The task table the agent's tasks run in.
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    fn start(&self, req: ExecuteRequest) -> Result<TaskEventStream, Status> {
        let json = self
            .capabilities
            .validate(&req.capability, req.params.as_ref())?;
        let action = Action::parse(&req.capability, &json)?;
        let (capability, key) = (req.capability, req.idempotency_key);
        let params = req.params.unwrap_or_default();
        let sim = self.sim.clone();
        let Some(motor) = action.motor() else {
            return self
                .tasks
                .execute(&capability, params, &key, move |handle| {
                    action.run(handle, sim, None)
                });
        };
        match self.sim.reserve(motor) {
            Ok(guard) => {
                self.lock_keys().insert(&key);
                // If the key names an existing task, the table drops this closure unrun, and
                // with it the guard.
                self.tasks
                    .execute(&capability, params, &key, move |handle| {
                        action.run(handle, sim, Some(guard))
                    })
            }
            // A retry of the very request that holds the motor: the table answers it with the
            // existing task (or ALREADY_EXISTS for other params) without running this work.
            Err(busy) if self.lock_keys().contains(&key) => {
                self.tasks
                    .execute(&capability, params, &key, move |handle| async move {
                        // Reached only if the table forgot the key while the motor is still busy.
                        handle.fail(codes::INTERNAL, busy.to_string(), true)
                    })
            }
            Err(busy) => Err(Status::failed_precondition(busy.to_string())),
        }
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, KnownKeys> {
        self.motion_keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Idempotency keys already used for motion tasks, oldest forgotten first.
#[derive(Default)]
struct KnownKeys {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl KnownKeys {
    fn insert(&mut self, key: &str) {
        if key.is_empty() || !self.set.insert(key.to_string()) {
            return;
        }
        self.order.push_back(key.to_string());
        if self.order.len() > KNOWN_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, key: &str) -> bool {
        !key.is_empty() && self.set.contains(key)
    }
}

#[tonic::async_trait]
impl BeamlineAgent for DemoAgent {
    type ExecuteStream = TaskEventStream;
    type SubscribeStream = TaskEventStream;

    async fn describe(
        &self,
        _request: Request<DescribeRequest>,
    ) -> Result<Response<AgentCard>, Status> {
        Ok(Response::new(self.capabilities.card(&self.instance)))
    }

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<TaskEventStream>, Status> {
        self.start(request.into_inner()).map(Response::new)
    }

    async fn get_task(&self, request: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        self.tasks
            .get(&request.into_inner().task_id)
            .map(Response::new)
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<TaskEventStream>, Status> {
        self.tasks
            .subscribe(&request.into_inner().task_id)
            .map(Response::new)
    }

    async fn cancel(&self, request: Request<CancelRequest>) -> Result<Response<Task>, Status> {
        self.tasks
            .cancel(&request.into_inner().task_id)
            .map(Response::new)
    }
}
