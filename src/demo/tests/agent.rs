//! The demo agent end to end through the `BeamlineAgent` trait (tonic requests, no network):
//! Describe, the quick capabilities, validation errors and their codes, unknown task ids; and the
//! helpers motion_tests.rs shares. Every wait is bounded by a timeout.

use std::time::Duration;

use futures::StreamExt;
use prost_types::Struct;
use serde_json::{json, Value};
use tokio::time::timeout;
use tonic::{Code, Request};

use crate::agent::capabilities::{json_to_struct, struct_to_json};
use crate::agent::tasks::TaskEventStream;
use crate::agent::Instance;
use crate::beamline::BeamlineId;
use crate::demo::sim::Motor;
use crate::demo::DemoAgent;
use crate::proto::beamline_agent_server::BeamlineAgent;
use crate::proto::{
    CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, SubscribeRequest, Task,
    TaskEvent, TaskState,
};

pub(super) const BOUND: Duration = Duration::from_secs(10);

pub(super) fn agent(seed: u64) -> DemoAgent {
    let instance = Instance::new(BeamlineId::parse("5.3.1").unwrap(), "test");
    DemoAgent::standalone(&instance, seed)
}

pub(super) fn params(v: Value) -> Option<Struct> {
    Some(json_to_struct(&v))
}

pub(super) async fn execute(
    agent: &DemoAgent,
    capability: &str,
    p: Value,
    key: &str,
) -> Result<TaskEventStream, tonic::Status> {
    let req = ExecuteRequest {
        capability: capability.into(),
        params: params(p),
        idempotency_key: key.into(),
    };
    agent
        .service()
        .execute(Request::new(req))
        .await
        .map(|r| r.into_inner())
}

pub(super) fn state(task: &Task) -> TaskState {
    TaskState::try_from(task.state).unwrap()
}

pub(super) fn task(event: &TaskEvent) -> &Task {
    event.task.as_ref().expect("every event carries the task")
}

/// The next event of a stream that must have one within [`BOUND`].
pub(super) async fn next(stream: &mut TaskEventStream) -> TaskEvent {
    timeout(BOUND, stream.next())
        .await
        .expect("an event within the bound")
        .expect("the stream has not ended")
        .expect("an event, not an error")
}

/// Every event until the stream ends; it must end after a terminal one.
pub(super) async fn drain(stream: TaskEventStream) -> Vec<TaskEvent> {
    let events: Vec<_> = timeout(BOUND, stream.collect::<Vec<_>>())
        .await
        .expect("stream ended");
    let events: Vec<TaskEvent> = events.into_iter().map(|e| e.unwrap()).collect();
    let last = state(task(events.last().expect("at least one event")));
    assert!(
        matches!(
            last,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        ),
        "ended on {last:?}"
    );
    events
}

pub(super) fn result(events: &[TaskEvent]) -> Value {
    let last = task(events.last().unwrap());
    assert_eq!(state(last), TaskState::Completed, "{last:?}");
    struct_to_json(last.result.as_ref().expect("a completed task has a result"))
}

pub(super) fn progress(events: &[TaskEvent]) -> Vec<(f64, String)> {
    events
        .iter()
        .filter_map(|e| e.progress.as_ref())
        .map(|p| {
            (
                p.fraction.expect("the demo always knows its fraction"),
                p.message.clone(),
            )
        })
        .collect()
}

pub(super) async fn code_of(agent: &DemoAgent, capability: &str, p: Value) -> (Code, String) {
    match execute(agent, capability, p, "").await {
        Ok(_) => panic!("{capability} was accepted"),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

#[tokio::test]
async fn describe_lists_the_capabilities() {
    let a = agent(1);
    let card = a
        .service()
        .describe(Request::new(DescribeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(card.beamline, "5.3.1");
    assert!(card.instance_id.starts_with("beamline-5-3-1-"));
    assert_eq!(card.agent_version, "test");
    assert!(!card.card_revision.is_empty());
    let names: Vec<_> = card.capabilities.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["status", "read_pv", "move_motor", "scan", "monitor_pv"]
    );
    for c in &card.capabilities {
        let schema: Value = serde_json::from_str(&c.params_schema).unwrap();
        assert_eq!(schema["additionalProperties"], false, "{}", c.name);
        assert_eq!(c.actuating, c.name == "move_motor" || c.name == "scan");
    }
    // The revision is a function of the capabilities, not of the instance.
    let other = agent(2)
        .service()
        .describe(Request::new(DescribeRequest {}))
        .await
        .unwrap();
    assert_eq!(other.into_inner().card_revision, card.card_revision);
}

#[tokio::test]
async fn status_completes_at_once() {
    let a = agent(1);
    let events = drain(execute(&a, "status", json!({}), "").await.unwrap()).await;
    let r = result(&events);
    assert!(r["ring_current_ma"].as_f64().unwrap() > 490.0);
    assert_eq!(r["shutter_open"], true);
    assert_eq!(r["motors"]["sample_x"]["position"], 0.0);
    // No params at all is the same as {}.
    let req = ExecuteRequest {
        capability: "status".into(),
        ..Default::default()
    };
    let stream = a
        .service()
        .execute(Request::new(req))
        .await
        .unwrap()
        .into_inner();
    result(&drain(stream).await);
}

#[tokio::test]
async fn read_pv_reads_a_named_pv() {
    let a = agent(1);
    let events = drain(
        execute(&a, "read_pv", json!({"name": "mono:energy"}), "")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        result(&events),
        json!({"name": "mono:energy", "value": 8000})
    );
    let events = drain(
        execute(&a, "read_pv", json!({"name": "ring:current"}), "")
            .await
            .unwrap(),
    )
    .await;
    assert!(result(&events)["value"].as_f64().unwrap() > 490.0);
}

#[tokio::test]
async fn bad_requests_fail_before_a_task_exists() {
    let a = agent(1);
    let cases = [
        ("beam_me_up", json!({}), Code::NotFound),
        (
            "read_pv",
            json!({"name": "ring:nope"}),
            Code::InvalidArgument,
        ),
        ("read_pv", json!({}), Code::InvalidArgument),
        ("status", json!({"verbose": true}), Code::InvalidArgument),
        (
            "move_motor",
            json!({"motor": "sample_z", "position": 1}),
            Code::InvalidArgument,
        ),
        (
            "move_motor",
            json!({"motor": "sample_x"}),
            Code::InvalidArgument,
        ),
        (
            "move_motor",
            json!({"motor": "sample_x", "position": "1"}),
            Code::InvalidArgument,
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 0, "dwell_ms": 1}),
            Code::InvalidArgument,
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 1001, "dwell_ms": 1}),
            Code::InvalidArgument,
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 2.5, "dwell_ms": 1}),
            Code::InvalidArgument,
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 2, "dwell_ms": 0}),
            Code::InvalidArgument,
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 2}),
            Code::InvalidArgument,
        ),
    ];
    for (capability, p, want) in cases {
        let (code, msg) = code_of(&a, capability, p.clone()).await;
        assert_eq!(code, want, "{capability} {p}: {msg}");
    }
    let (_, msg) = code_of(&a, "beam_me_up", json!({})).await;
    assert!(msg.contains("beam_me_up"), "{msg}");
    assert_eq!(a.tasks().running(), 0);
}

#[tokio::test]
async fn targets_outside_the_limits_are_refused_with_the_limits() {
    let a = agent(1);
    let (code, msg) = code_of(
        &a,
        "move_motor",
        json!({"motor": "sample_x", "position": 12.5}),
    )
    .await;
    assert_eq!(code, Code::InvalidArgument);
    for part in ["sample_x", "12.5", "-10", "10"] {
        assert!(msg.contains(part), "{msg:?} lacks {part}");
    }
    let p =
        json!({"motor": "mono_energy", "start": 8000, "stop": 13000, "steps": 3, "dwell_ms": 1});
    let (code, msg) = code_of(&a, "scan", p).await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        msg.contains("mono_energy") && msg.contains("13000"),
        "{msg}"
    );
    assert_eq!(a.tasks().running(), 0);
    assert!(!a.sim().is_busy(Motor::SampleX));
}

#[tokio::test]
async fn unknown_task_ids_are_not_found() {
    let a = agent(1);
    let id = || "nobody/none".to_string();
    let get = a
        .service()
        .get_task(Request::new(GetTaskRequest { task_id: id() }))
        .await;
    assert_eq!(get.err().unwrap().code(), Code::NotFound);
    let sub = a
        .service()
        .subscribe(Request::new(SubscribeRequest { task_id: id() }))
        .await;
    assert_eq!(sub.err().unwrap().code(), Code::NotFound);
    let cancel = a
        .service()
        .cancel(Request::new(CancelRequest { task_id: id() }))
        .await;
    assert_eq!(cancel.err().unwrap().code(), Code::NotFound);
}

#[tokio::test]
async fn many_monitors_run_at_once_and_cancel() {
    let a = agent(3);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let request = Request::new(ExecuteRequest {
            capability: "monitor_pv".into(),
            params: Some(json_to_struct(
                &serde_json::json!({"name": "ring:current", "duration_ms": 60_000, "interval_ms": 50}),
            )),
            idempotency_key: String::new(),
        });
        let mut stream = a.service().execute(request).await.unwrap().into_inner();
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("first event in time")
            .expect("an event")
            .unwrap();
        ids.push(first.task.unwrap().task_id);
    }
    assert_eq!(
        a.tasks().running(),
        20,
        "monitors hold no motor: all run at once"
    );
    for id in &ids {
        a.service()
            .cancel(Request::new(CancelRequest {
                task_id: id.clone(),
            }))
            .await
            .unwrap();
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), a.tasks().idle())
        .await
        .expect("every monitor ends on cancel");
    let task = a
        .service()
        .get_task(Request::new(GetTaskRequest {
            task_id: ids[0].clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.state(), TaskState::Cancelled);
}
