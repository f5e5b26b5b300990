//! Unit tests of `AgentService`: Execute, GetTask, Subscribe and Cancel served from capabilities
//! and the task table.

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
        let Err(status) = s.start(&md, None, execute("move", params.clone(), "")) else {
            panic!("{params} was accepted");
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{params}: {status:?}");
        assert!(status.message().contains(field), "{params}: {status:?}");
    }
    let Err(status) = s.start(&md, None, execute("nope", json!({}), "")) else {
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
        .start(&md, None, execute("move", json!({"position": 2}), "key-1"))
        .unwrap();
    let submitted = first.next().await.unwrap().unwrap();
    let id = submitted.task.unwrap().task_id;
    assert_eq!(s.tasks().running(), 1);

    busy.store(1, Ordering::SeqCst);
    // Another call is refused: FAILED_PRECONDITION, no task.
    let Err(status) = s.start(&md, None, execute("move", json!({"position": 3}), "key-2")) else {
        panic!("a busy motor admitted another move");
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(s.tasks().running(), 1);
    // The retry of the running call gets its task, whatever admission would say now.
    let mut retry = s
        .start(&md, None, execute("move", json!({"position": 2}), "key-1"))
        .unwrap();
    let joined = retry.next().await.unwrap().unwrap().task.unwrap();
    assert_eq!(joined.task_id, id);
    // The same key with other params is ALREADY_EXISTS.
    let Err(status) = s.start(&md, None, execute("move", json!({"position": 9}), "key-1")) else {
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
