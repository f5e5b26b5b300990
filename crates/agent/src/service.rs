//! The `BeamlineAgent` service of an agent built from declared capabilities: Describe is the card
//! of those capabilities, Execute checks params against their schema, answers a repeated
//! idempotency key with its task, runs the capability's admission and starts the task in the
//! runtime's table; GetTask, Subscribe and Cancel are the table's. Authors write capabilities,
//! never these five RPCs.
//!
//! With the runtime's [`Control`] (`with_control`), an admitted actuating Execute is also
//! checked against the facility's halts and locks before its task starts, a Cancel of a
//! running actuating task against the locks, and running actuating tasks end when a halt
//! arrives (`control` decides; this module says which capabilities actuate). Without it (a
//! service built for a test), nothing is halted or locked.
//!
//! Owns the order of the checks before a task exists (capability, schema, idempotency key,
//! admission, halts and locks); it must not know about Consul, health or draining (the
//! runtime wraps it).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::capabilities::Capabilities;
use crate::capability::{Admit, Call, Declared};
use crate::control::{Actuating, Control};
use crate::identity::Caller;
use crate::tasks::{is_terminal, TaskEventStream, TaskTable};
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
    /// The halts and locks this service enforces, if it was given them.
    control: Option<Control>,
    actuating: Actuating,
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
        let actuating: HashSet<String> = capabilities
            .describe()
            .into_iter()
            .filter(|c| c.actuating)
            .map(|c| c.name)
            .collect();
        Ok(AgentService {
            card: capabilities.card(instance),
            capabilities,
            admit,
            tasks,
            control: None,
            actuating: Arc::new(move |name: &str| actuating.contains(name)),
        })
    }

    /// This service enforcing the halts and locks of `control` (the runtime's:
    /// `AgentRuntime::control`): from now on a halt ends its running actuating tasks, and its
    /// registration says it enforces them (`Meta.controls`). Call inside a Tokio runtime.
    pub fn with_control(mut self, control: Control) -> AgentService {
        control.enforce_halts(self.tasks.clone(), self.actuating.clone());
        self.control = Some(control);
        self
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
        let work = match admit.admit(json, &call) {
            Ok(work) => work,
            // A concurrent call with the same key may have started the task since.
            Err(status) => {
                return match self.tasks.existing(capability, &params, key) {
                    Some(existing) => existing,
                    None => Err(status),
                }
            }
        };
        let control = self
            .control
            .as_ref()
            .filter(|_| (self.actuating)(capability));
        // After admission, so that the call's own faults (a position past a motor's limit) are
        // said first; the admitted work is dropped unrun, as when the table refuses it
        // (draining, --max-tasks). Under the table's lock, where the halt's sweep looks: a
        // halt landing between a check made here and the task's insertion would be missed by
        // the sweep, and the work would start (and move hardware) before anything cancelled it.
        let check = || control.map_or(Ok(()), |control| control.check_execute(caller));
        self.tasks
            .execute_checked(capability, params, key, check, work)
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
        let (_, extensions, request) = request.into_parts();
        if let Some(control) = &self.control {
            let task = self.tasks.get(&request.task_id)?;
            if !is_terminal(task.state) && (self.actuating)(&task.capability) {
                control.check_cancel(extensions.get::<Caller>())?;
            }
        }
        self.tasks.cancel(&request.task_id).map(Response::new)
    }
}

#[cfg(test)]
mod tests;
