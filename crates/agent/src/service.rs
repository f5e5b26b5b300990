//! The `BeamlineAgent` service of an agent built from declared capabilities: Describe is the card
//! of those capabilities, Execute checks params against their schema, answers a repeated
//! idempotency key with its task, runs the capability's admission and starts the task in the
//! runtime's table; GetTask, Subscribe and Cancel are the table's. Authors write capabilities,
//! never these five RPCs.
//!
//! Owns the order of the checks before a task exists (capability, schema, idempotency key,
//! admission); it must not know about Consul, health or draining (the runtime wraps it).

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use crate::capabilities::Capabilities;
use crate::capability::{Admit, Call, Declared};
use crate::identity::Caller;
use crate::tasks::{TaskEventStream, TaskTable};
use crate::Instance;
use beamline_contract::proto::beamline_agent_server::BeamlineAgent;
use beamline_contract::proto::{
    AgentCard, CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, SubscribeRequest,
    Task,
};

/// An agent's capabilities served over its task table.
pub struct AgentService {
    card: AgentCard,
    capabilities: Capabilities,
    admit: HashMap<String, Box<dyn Admit>>,
    tasks: TaskTable,
}

impl AgentService {
    /// The service of `declared` capabilities for `instance`, running tasks in `tasks` (the
    /// runtime's table, so that draining sees them). Refuses a duplicate name or a bad schema.
    pub(crate) fn new(
        instance: &Instance,
        declared: Vec<Declared>,
        tasks: TaskTable,
    ) -> Result<AgentService, crate::capabilities::CapabilityError> {
        let mut specs = Vec::with_capacity(declared.len());
        let mut admit = HashMap::with_capacity(declared.len());
        for d in declared {
            admit.insert(d.spec.name.clone(), d.admit);
            specs.push(d.spec);
        }
        let capabilities = Capabilities::new(specs)?;
        Ok(AgentService {
            card: capabilities.card(instance),
            capabilities,
            admit,
            tasks,
        })
    }

    /// The task table the service runs its tasks in.
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// Starts the task of one Execute by `caller` (as the identity layer vouched for it), or
    /// refuses it before any task exists.
    pub fn start(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        caller: Option<&Caller>,
        request: ExecuteRequest,
    ) -> Result<TaskEventStream, Status> {
        let json = self
            .capabilities
            .validate(&request.capability, request.params.as_ref())?;
        let params = request.params.unwrap_or_default();
        let (capability, key) = (&request.capability, &request.idempotency_key);
        // A retry of a call that started a task is answered with it, whatever admission would
        // say now (the motor it moves is busy: with that very task).
        if let Some(existing) = self.tasks.existing(capability, &params, key) {
            return existing;
        }
        let admit = self
            .admit
            .get(capability)
            .ok_or_else(|| Status::internal("a validated capability has no admission"))?;
        let call = Call::new(capability, key, metadata).with_caller(caller);
        match admit.admit(json, &call) {
            Ok(work) => self.tasks.execute(capability, params, key, work),
            // A concurrent call with the same key may have started the task since.
            Err(status) => match self.tasks.existing(capability, &params, key) {
                Some(existing) => existing,
                None => Err(status),
            },
        }
    }
}

#[tonic::async_trait]
impl BeamlineAgent for AgentService {
    type ExecuteStream = TaskEventStream;
    type SubscribeStream = TaskEventStream;

    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<AgentCard>, Status> {
        Ok(Response::new(self.card.clone()))
    }

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<TaskEventStream>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        self.start(&metadata, extensions.get::<Caller>(), request)
            .map(Response::new)
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

#[cfg(test)]
mod tests;
