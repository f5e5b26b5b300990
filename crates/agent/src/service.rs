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

    /// Starts the task of one Execute, or refuses it before any task exists.
    pub fn start(
        &self,
        metadata: &tonic::metadata::MetadataMap,
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
        let call = Call {
            capability,
            idempotency_key: key,
            metadata,
        };
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
        let (metadata, _, request) = request.into_parts();
        self.start(&metadata, request).map(Response::new)
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::StreamExt;
    use serde_json::json;
    use tonic::Code;

    use super::*;
    use crate::capabilities::{json_to_struct, struct_to_json};
    use crate::tasks::TaskTableConfig;
    use crate::{Actuating, Agent, NoParams, ReadOnly, TaskHandle};
    use beamline_contract::beamline::BeamlineId;
    use beamline_contract::proto::TaskState;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Move {
        /// Target position, mm.
        position: f64,
        #[serde(default)]
        slow: bool,
    }

    /// An agent with a read-only capability and an actuating one whose admission refuses while
    /// `busy` is set, counting admissions.
    fn service(busy: Arc<AtomicUsize>, admitted: Arc<AtomicUsize>) -> AgentService {
        let instance = Instance::new(BeamlineId::parse("5.3.1").unwrap(), "1.2.3");
        let tasks = TaskTable::new(instance.instance_id.clone(), TaskTableConfig::default());
        Agent::new("1.2.3")
            .capability(
                "status",
                "Status",
                ReadOnly,
                |_: NoParams, task: TaskHandle| async move { task.complete(json!({"ok": true})) },
            )
            .admitted_capability(
                "move",
                "Moves",
                Actuating.tagged(["motion"]),
                move |p: Move, _: &Call<'_>| {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    if busy.load(Ordering::SeqCst) > 0 {
                        return Err(Status::failed_precondition("the motor is moving"));
                    }
                    Ok(move |task: TaskHandle| async move {
                        task.cancelled().await;
                        task.complete(json!({"position": p.position, "slow": p.slow}))
                    })
                },
            )
            .service(&instance, tasks)
            .unwrap()
    }

    fn execute(capability: &str, params: serde_json::Value, key: &str) -> ExecuteRequest {
        ExecuteRequest {
            capability: capability.into(),
            params: Some(json_to_struct(&params)),
            idempotency_key: key.into(),
        }
    }

    #[tokio::test]
    async fn the_card_publishes_the_params_types_schema_and_the_effect() {
        let s = service(Arc::default(), Arc::default());
        let card = s.describe(Request::new(DescribeRequest {})).await.unwrap();
        let card = card.into_inner();
        assert_eq!(card.agent_version, "1.2.3");
        let moves = &card.capabilities[1];
        assert_eq!((moves.name.as_str(), moves.actuating), ("move", true));
        assert!(
            !moves.idempotent,
            "actuating: not idempotent unless the author says so"
        );
        assert!(
            card.capabilities[0].idempotent,
            "read-only: idempotent by default"
        );
        assert_eq!(moves.tags, ["motion"]);
        assert!(!card.capabilities[0].actuating);
        let schema: serde_json::Value = serde_json::from_str(&moves.params_schema).unwrap();
        assert_eq!(schema["properties"]["position"]["type"], "number");
        assert_eq!(
            schema["properties"]["position"]["description"],
            "Target position, mm."
        );
        assert_eq!(schema["required"], json!(["position"]));
        assert_eq!(schema["additionalProperties"], false);
    }

    #[tokio::test]
    async fn params_that_do_not_fit_are_invalid_argument_naming_the_field_before_admission() {
        let admitted = Arc::new(AtomicUsize::new(0));
        let s = service(Arc::default(), admitted.clone());
        let md = tonic::metadata::MetadataMap::new();
        for (params, field) in [
            (json!({"position": "far"}), "params/position"),
            (json!({}), "position"),
            (json!({"position": 1, "speed": 2}), "speed"),
            (json!({"position": 1, "slow": "yes"}), "params/slow"),
        ] {
            let Err(status) = s.start(&md, execute("move", params.clone(), "")) else {
                panic!("{params} was accepted");
            };
            assert_eq!(status.code(), Code::InvalidArgument, "{params}: {status:?}");
            assert!(status.message().contains(field), "{params}: {status:?}");
        }
        let Err(status) = s.start(&md, execute("nope", json!({}), "")) else {
            panic!("an unknown capability was accepted");
        };
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            admitted.load(Ordering::SeqCst),
            0,
            "admission ran for bad params"
        );
    }

    #[tokio::test]
    async fn admission_refuses_before_a_task_exists_but_a_retry_of_a_running_task_joins_it() {
        let busy = Arc::new(AtomicUsize::new(0));
        let s = service(busy.clone(), Arc::default());
        let md = tonic::metadata::MetadataMap::new();
        let mut first = s
            .start(&md, execute("move", json!({"position": 2}), "key-1"))
            .unwrap();
        let submitted = first.next().await.unwrap().unwrap();
        let id = submitted.task.unwrap().task_id;
        assert_eq!(s.tasks().running(), 1);

        busy.store(1, Ordering::SeqCst);
        // Another call is refused: FAILED_PRECONDITION, no task.
        let Err(status) = s.start(&md, execute("move", json!({"position": 3}), "key-2")) else {
            panic!("a busy motor admitted another move");
        };
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(s.tasks().running(), 1);
        // The retry of the running call gets its task, whatever admission would say now.
        let mut retry = s
            .start(&md, execute("move", json!({"position": 2}), "key-1"))
            .unwrap();
        let joined = retry.next().await.unwrap().unwrap().task.unwrap();
        assert_eq!(joined.task_id, id);
        // The same key with other params is ALREADY_EXISTS.
        let Err(status) = s.start(&md, execute("move", json!({"position": 9}), "key-1")) else {
            panic!("a reused key with other params was accepted");
        };
        assert_eq!(status.code(), Code::AlreadyExists);

        s.tasks().cancel(&id).unwrap();
        let mut last = None;
        while let Some(event) = first.next().await {
            last = event.unwrap().task;
        }
        let last = last.unwrap();
        assert_eq!(last.state, TaskState::Completed as i32);
        let result = struct_to_json(last.result.as_ref().unwrap());
        assert_eq!(result, json!({"position": 2, "slow": false}));
    }
}
