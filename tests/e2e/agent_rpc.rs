//! Every `BeamlineAgent` RPC and error path through a real tonic client against the real
//! `beamline-mesh agent` process (registered in a real registry): Describe, Execute (quick and
//! long-running, with progress), GetTask, Subscribe, Cancel, idempotency keys, NOT_FOUND /
//! INVALID_ARGUMENT / ALREADY_EXISTS, tasks outliving their Execute stream, task ids, and the
//! gRPC health and reflection services next to the agent.

use std::collections::BTreeSet;

use crate::support::agent::*;
use crate::support::*;
use beamline_mesh::proto::{
    CancelRequest, DescribeRequest, GetTaskRequest, SubscribeRequest, TaskEvent, TaskState,
};
use serde_json::{json, Value};
use tonic::Code;

const BEAMLINE: &str = "5.3.1";

struct Setup {
    // Dropped after the agent (fields drop in order): the agent first.
    agent: AgentProc,
    _reg: Registry,
}

fn start() -> Setup {
    let reg = Registry::start();
    let agent = AgentProc::start(BEAMLINE, &reg);
    Setup { agent, _reg: reg }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_returns_the_card() {
    let s = start();
    let mut client = s.agent.client().await;
    let card = client
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    assert_eq!(card.beamline, BEAMLINE);
    assert!(
        card.instance_id.starts_with("beamline-5-3-1") && !card.instance_id.contains('/'),
        "instance_id {:?}",
        card.instance_id
    );
    assert!(!card.agent_version.is_empty());
    assert!(!card.card_revision.is_empty(), "empty card_revision");

    let names: BTreeSet<&str> = card.capabilities.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["monitor_pv", "move_motor", "read_pv", "scan", "status"]),
        "{card:?}"
    );
    for cap in &card.capabilities {
        assert!(!cap.description.is_empty(), "{cap:?}");
        let schema: Value = serde_json::from_str(&cap.params_schema)
            .unwrap_or_else(|e| panic!("params_schema of {} is not JSON: {e}", cap.name));
        assert_eq!(schema["type"], "object", "{}: {schema}", cap.name);
        let actuating = matches!(cap.name.as_str(), "move_motor" | "scan");
        assert_eq!(cap.actuating, actuating, "{cap:?}");
        assert!(!cap.tags.is_empty(), "{cap:?}");
    }

    // The same capabilities, the same revision.
    let again = client
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    assert_eq!(again.card_revision, card.card_revision);
    assert_eq!(again.instance_id, card.instance_id);

    // Another instance: another id, the same capabilities and so the same revision.
    let other = AgentProc::builder(BEAMLINE)
        .consul(closed_port_addr())
        .start();
    let other_card = other
        .client()
        .await
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    assert_ne!(other_card.instance_id, card.instance_id);
    assert_eq!(other_card.card_revision, card.card_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_status_goes_to_completed_with_a_result() {
    let s = start();
    let mut client = s.agent.client().await;
    let instance = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance_id;
    let mut stream = client
        .execute(execute_request("status", json!({}), ""))
        .await
        .expect("Execute status")
        .into_inner();
    let first = next_event(&mut stream).await.expect("a first event");
    assert!(
        matches!(state_of(&first), TaskState::Submitted | TaskState::Working),
        "first event: {first:?}"
    );
    let task_id = task_of(&first).task_id.clone();
    let (owner, suffix) = task_id.rsplit_once('/').expect("task id has a '/'");
    assert_eq!(owner, instance, "task id {task_id:?}");
    assert!(!suffix.is_empty(), "task id {task_id:?}");
    assert_eq!(task_of(&first).capability, "status");
    assert!(task_of(&first).created_at.is_some(), "{first:?}");

    let rest = rest_of(&mut stream, secs(5)).await;
    let last = rest.last().unwrap_or(&first).clone();
    assert_eq!(state_of(&last), TaskState::Completed, "{rest:?}");
    for e in &rest {
        assert_eq!(task_of(e).task_id, task_id, "{e:?}");
    }
    let result = to_json(task_of(&last).result.as_ref().expect("a result"));
    assert!(result["ring_current_ma"].is_number(), "{result}");
    assert!(result["motors"]["sample_x"].is_object(), "{result}");
    // Only the last event is terminal.
    assert!(
        rest[..rest.len().saturating_sub(1)]
            .iter()
            .all(|e| !is_terminal(state_of(e))),
        "{rest:?}"
    );

    let got = client
        .get_task(GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("GetTask")
        .into_inner();
    assert_eq!(task_state(&got), TaskState::Completed);
    assert_eq!(got.result, task_of(&last).result);
    assert!(got.updated_at.is_some() && got.created_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_pv_returns_the_value() {
    let s = start();
    let mut client = s.agent.client().await;
    let mut stream = client
        .execute(execute_request(
            "read_pv",
            json!({"name": "ring:energy"}),
            "",
        ))
        .await
        .expect("Execute read_pv")
        .into_inner();
    let events = rest_of(&mut stream, secs(5)).await;
    let last = events.last().expect("events");
    assert_eq!(state_of(last), TaskState::Completed, "{events:?}");
    let result = to_json(task_of(last).result.as_ref().unwrap());
    assert_eq!(result["name"], "ring:energy", "{result}");
    assert!(result["value"].is_number(), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_motor_reports_progress_then_completes() {
    let s = start();
    let mut client = s.agent.client().await;
    // 2 mm at 5 mm/s: 0.4 s.
    let mut stream = client
        .execute(execute_request(
            "move_motor",
            json!({"motor": "sample_x", "position": 2.0}),
            "",
        ))
        .await
        .expect("Execute move_motor")
        .into_inner();
    let first = next_event(&mut stream).await.expect("a first event");
    assert!(
        matches!(state_of(&first), TaskState::Submitted | TaskState::Working),
        "{first:?}"
    );
    let events = rest_of(&mut stream, secs(5)).await;
    let last = events.last().expect("more than one event");
    assert_eq!(state_of(last), TaskState::Completed, "{events:?}");
    let result = to_json(task_of(last).result.as_ref().expect("a result"));
    assert_eq!(result["motor"], "sample_x", "{result}");
    assert_eq!(result["position"].as_f64(), Some(2.0), "{result}");

    let fractions: Vec<f64> = events
        .iter()
        .filter_map(|e| e.progress.as_ref())
        .filter_map(|p| p.fraction)
        .collect();
    assert!(
        fractions.len() >= 2,
        "expected progress events with fractions, got {events:?}"
    );
    assert!(
        fractions.iter().all(|f| (0.0..=1.0).contains(f)),
        "{fractions:?}"
    );
    assert!(
        fractions.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {fractions:?}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e.progress.is_some())
            .all(|e| state_of(e) == TaskState::Working),
        "progress on a task not WORKING: {events:?}"
    );

    // The motor is there now.
    let mut status = client
        .execute(execute_request("status", json!({}), ""))
        .await
        .unwrap()
        .into_inner();
    let events = rest_of(&mut status, secs(5)).await;
    let result = to_json(task_of(events.last().unwrap()).result.as_ref().unwrap());
    assert_eq!(
        result["motors"]["sample_x"]["position"].as_f64(),
        Some(2.0),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reports_a_point_per_step() {
    let s = start();
    let mut client = s.agent.client().await;
    // Whole numbers arrive as doubles in a Struct: `integer` fields must still accept them.
    let mut stream = client
        .execute(execute_request(
            "scan",
            json!({"motor": "sample_y", "start": 0.0, "stop": 1.0, "steps": 3, "dwell_ms": 20}),
            "",
        ))
        .await
        .expect("Execute scan")
        .into_inner();
    let events = rest_of(&mut stream, secs(10)).await;
    let last = events.last().expect("events");
    assert_eq!(state_of(last), TaskState::Completed, "{events:?}");
    let result = to_json(task_of(last).result.as_ref().unwrap());
    let points = result["points"].as_array().expect("points");
    assert_eq!(points.len(), 3, "{result}");
    let positions: Vec<f64> = points
        .iter()
        .map(|p| p["position"].as_f64().unwrap())
        .collect();
    assert_eq!(positions, vec![0.0, 0.5, 1.0], "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_starts_with_a_snapshot_then_follows_to_the_end() {
    let s = start();
    let mut client = s.agent.client().await;
    // 5 mm at 5 mm/s: 1 s.
    let (_exec, task_id) = start_task(
        &mut client,
        "move_motor",
        json!({"motor": "sample_y", "position": 5.0}),
    )
    .await;

    let mut sub = s
        .agent
        .client()
        .await
        .subscribe(SubscribeRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Subscribe")
        .into_inner();
    let snapshot = next_event(&mut sub).await.expect("a snapshot");
    assert_eq!(task_of(&snapshot).task_id, task_id);
    assert!(
        !is_terminal(state_of(&snapshot)),
        "the move cannot be over yet: {snapshot:?}"
    );
    let updates = rest_of(&mut sub, secs(5)).await;
    assert!(
        !updates.is_empty(),
        "no update after the snapshot of a running move"
    );
    let last = updates.last().unwrap();
    assert_eq!(state_of(last), TaskState::Completed, "{updates:?}");
    assert!(updates.iter().all(|e| task_of(e).task_id == task_id));

    // Subscribing to a finished task: its terminal snapshot, then the end.
    let mut done = client
        .subscribe(SubscribeRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Subscribe to a finished task")
        .into_inner();
    let events = rest_of(&mut done, secs(5)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(state_of(&events[0]), TaskState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_move_and_is_idempotent() {
    let s = start();
    let mut client = s.agent.client().await;
    // 10 mm at 5 mm/s: 2 s; cancelled long before.
    let (mut exec, task_id) = start_task(
        &mut client,
        "move_motor",
        json!({"motor": "sample_x", "position": 10.0}),
    )
    .await;
    // Wait until it is really moving.
    loop {
        let e = next_event(&mut exec).await.expect("the move ended early");
        assert!(!is_terminal(state_of(&e)), "{e:?}");
        if e.progress.as_ref().and_then(|p| p.fraction).unwrap_or(0.0) > 0.0 {
            break;
        }
    }
    let cancelled_at = std::time::Instant::now();
    let first = client
        .cancel(CancelRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Cancel")
        .into_inner();
    assert_eq!(first.task_id, task_id);
    assert!(
        matches!(
            task_state(&first),
            TaskState::Working | TaskState::Submitted | TaskState::Cancelled
        ),
        "{first:?}"
    );

    let rest = rest_of(&mut exec, secs(5)).await;
    let last = rest.last().expect("a terminal event");
    assert_eq!(state_of(last), TaskState::Cancelled, "{rest:?}");
    assert!(
        cancelled_at.elapsed() < ms(1500),
        "the cancel took {:?}; the move would have ended by itself",
        cancelled_at.elapsed()
    );

    let again = client
        .cancel(CancelRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Cancel again")
        .into_inner();
    assert_eq!(task_state(&again), TaskState::Cancelled, "{again:?}");
    assert_eq!(again.task_id, task_id);
    let got = client
        .get_task(GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task_state(&got), TaskState::Cancelled);

    // The motor stopped part way and is free again.
    let mut status = client
        .execute(execute_request("status", json!({}), ""))
        .await
        .unwrap()
        .into_inner();
    let events = rest_of(&mut status, secs(5)).await;
    let result = to_json(task_of(events.last().unwrap()).result.as_ref().unwrap());
    let x = &result["motors"]["sample_x"];
    let pos = x["position"].as_f64().unwrap();
    assert!(pos > 0.0 && pos < 10.0, "stopped at {pos}: {result}");
    assert_eq!(x["moving"], false, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_capability_is_not_found_naming_it() {
    let s = start();
    let mut client = s.agent.client().await;
    let err = client
        .execute(execute_request("open_the_pod_bay_doors", json!({}), ""))
        .await
        .expect_err("an unknown capability must be refused");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("open_the_pod_bay_doors"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_are_invalid_argument() {
    let s = start();
    let mut client = s.agent.client().await;
    let cases = [
        ("move_motor", json!({"motor": "sample_x"}), "position"),
        (
            "move_motor",
            json!({"motor": "sample_x", "position": "far"}),
            "",
        ),
        (
            "move_motor",
            json!({"motor": "warp_drive", "position": 1.0}),
            "",
        ),
        (
            "move_motor",
            json!({"motor": "sample_x", "position": 50.0}),
            "limit",
        ),
        ("status", json!({"verbose": true}), ""),
        ("read_pv", json!({"name": "no:such:pv"}), ""),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 2.5, "dwell_ms": 10}),
            "",
        ),
        (
            "scan",
            json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 0, "dwell_ms": 10}),
            "",
        ),
    ];
    for (capability, p, needle) in cases {
        let err = client
            .execute(execute_request(capability, p.clone(), ""))
            .await
            .expect_err(&format!("{capability} {p} must be refused"));
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{capability} {p}: {err:?}"
        );
        assert!(
            !err.message().is_empty() && err.message().contains(needle),
            "{capability} {p}: the reason should mention {needle:?}: {err:?}"
        );
    }
    // Nothing moved: the refused calls created no work.
    let mut status = client
        .execute(execute_request("status", json!({}), ""))
        .await
        .unwrap()
        .into_inner();
    let events = rest_of(&mut status, secs(5)).await;
    let result = to_json(task_of(events.last().unwrap()).result.as_ref().unwrap());
    assert_eq!(result["motors"]["sample_x"]["position"].as_f64(), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_is_not_found() {
    let s = start();
    let mut client = s.agent.client().await;
    let instance = client
        .describe(DescribeRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance_id;
    let missing = format!("{instance}/does-not-exist");
    let get = client
        .get_task(GetTaskRequest {
            task_id: missing.clone(),
        })
        .await
        .expect_err("GetTask of an unknown task");
    assert_eq!(get.code(), Code::NotFound, "{get:?}");
    assert!(get.message().contains(&missing), "{get:?}");
    let sub = client
        .subscribe(SubscribeRequest {
            task_id: missing.clone(),
        })
        .await
        .expect_err("Subscribe to an unknown task");
    assert_eq!(sub.code(), Code::NotFound, "{sub:?}");
    let cancel = client
        .cancel(CancelRequest {
            task_id: missing.clone(),
        })
        .await
        .expect_err("Cancel of an unknown task");
    assert_eq!(cancel.code(), Code::NotFound, "{cancel:?}");
    let empty = client
        .get_task(GetTaskRequest {
            task_id: String::new(),
        })
        .await
        .expect_err("GetTask of an empty id");
    assert!(
        matches!(empty.code(), Code::NotFound | Code::InvalidArgument),
        "{empty:?}"
    );
}

async fn first_task_id(
    client: &mut beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient<
        tonic::transport::Channel,
    >,
    capability: &str,
    p: Value,
    key: &str,
) -> Result<(String, tonic::Streaming<TaskEvent>), tonic::Status> {
    let mut stream = client
        .execute(execute_request(capability, p, key))
        .await?
        .into_inner();
    let first = next_event(&mut stream).await.expect("a first event");
    Ok((task_of(&first).task_id.clone(), stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_task_or_already_exists() {
    let s = start();
    let mut client = s.agent.client().await;

    // A quick task, repeated after it finished.
    let p = json!({"name": "ring:current"});
    let (a, mut sa) = first_task_id(&mut client, "read_pv", p.clone(), "key-1")
        .await
        .expect("first Execute");
    rest_of(&mut sa, secs(5)).await;
    let (b, mut sb) = first_task_id(&mut client, "read_pv", p.clone(), "key-1")
        .await
        .expect("repeated Execute");
    assert_eq!(a, b, "the same key and params must return the same task");
    let events = rest_of(&mut sb, secs(5)).await;
    if let Some(last) = events.last() {
        assert_eq!(state_of(last), TaskState::Completed);
    }
    let err = client
        .execute(execute_request(
            "read_pv",
            json!({"name": "ring:energy"}),
            "key-1",
        ))
        .await
        .expect_err("the same key with other params");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = client
        .execute(execute_request("status", json!({}), "key-1"))
        .await
        .expect_err("the same key for another capability");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // A running move, repeated while it holds its motor: the same task, not "motor busy".
    let mv = json!({"motor": "sample_y", "position": 4.0});
    let (m1, _s1) = first_task_id(&mut client, "move_motor", mv.clone(), "move-1")
        .await
        .expect("first move");
    let (m2, mut s2) = first_task_id(&mut client, "move_motor", mv.clone(), "move-1")
        .await
        .expect("repeated move while running");
    assert_eq!(m1, m2);
    let err = client
        .execute(execute_request(
            "move_motor",
            json!({"motor": "sample_y", "position": 3.0}),
            "move-1",
        ))
        .await
        .expect_err("the same key with another target");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // Without a key, a second mover of a busy motor is refused (not queued).
    let err = client
        .execute(execute_request("move_motor", mv.clone(), ""))
        .await
        .expect_err("a second mover of a busy motor");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let events = rest_of(&mut s2, secs(5)).await;
    assert_eq!(
        state_of(events.last().expect("events")),
        TaskState::Completed
    );
    // Different keys: different tasks.
    let (x, mut sx) = first_task_id(&mut client, "status", json!({}), "key-x")
        .await
        .unwrap();
    let (y, mut sy) = first_task_id(&mut client, "status", json!({}), "key-y")
        .await
        .unwrap();
    assert_ne!(x, y);
    rest_of(&mut sx, secs(5)).await;
    rest_of(&mut sy, secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_execute_stream_does_not_cancel_the_task() {
    let s = start();
    let task_id = {
        let mut client = s.agent.client().await;
        // 3 mm at 5 mm/s: 0.6 s.
        let mut stream = client
            .execute(execute_request(
                "move_motor",
                json!({"motor": "sample_x", "position": 3.0}),
                "",
            ))
            .await
            .expect("Execute")
            .into_inner();
        let first = next_event(&mut stream).await.unwrap();
        assert!(!is_terminal(state_of(&first)));
        task_of(&first).task_id.clone()
        // The stream, the client and its connection are dropped here.
    };
    let mut client = s.agent.client().await;
    let running = client
        .get_task(GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("GetTask")
        .into_inner();
    assert!(
        !is_terminal(task_state(&running)),
        "the move should still run: {running:?}"
    );
    let done = poll_until(
        secs(5),
        "the abandoned task to end",
        async || {
            client
                .get_task(GetTaskRequest {
                    task_id: task_id.clone(),
                })
                .await
                .expect("GetTask")
                .into_inner()
        },
        |t| is_terminal(task_state(t)),
    )
    .await;
    assert_eq!(task_state(&done), TaskState::Completed, "{done:?}");
    let result = to_json(done.result.as_ref().expect("a result"));
    assert_eq!(result["position"].as_f64(), Some(3.0), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_serves_the_server_and_the_agent() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;

    let s = start();
    let mut health = s.agent.health().await;
    for service in ["", AGENT_SERVICE] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("health Check {service:?}: {e:?}"))
            .into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_string(),
        })
        .await
        .expect_err("health of an unknown service");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_agent_and_health_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let s = start();
    let channel = tonic::transport::Endpoint::from_shared(s.agent.endpoint())
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let resp = tokio::time::timeout(secs(5), responses.message())
        .await
        .expect("a reflection answer in time")
        .expect("reflection stream")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == AGENT_SERVICE),
        "{AGENT_SERVICE} not listed: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "health not listed: {names:?}"
    );
}
