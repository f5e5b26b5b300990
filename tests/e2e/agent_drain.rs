//! Draining on SIGTERM, end to end (real agent process, real registry, real tonic clients): health
//! NOT_SERVING → deregistered → new Execute refused with UNAVAILABLE and
//! `x-beamline-not-started: true` → Describe, GetTask, Subscribe and Cancel still served for the
//! drain grace and until running tasks end → those still running at --drain-timeout end FAILED
//! (DRAIN_TIMEOUT, retryable) → exit 0, deregistered before the process is gone.

use std::time::Instant;

use crate::support::agent::*;
use crate::support::*;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{
    CancelRequest, DescribeRequest, GetTaskRequest, SubscribeRequest, TaskState,
};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BEAMLINE: &str = "5.3.1";
const SERVICE: &str = "beamline-5-3-1";

async fn instance_id(client: &mut BeamlineAgentClient<Channel>) -> String {
    client
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner()
        .instance_id
}

/// An agent with `flag value`, registered with `reg` and passing: the process, a client, and
/// its instance id.
async fn passing_agent(
    reg: &Registry,
    flag: &str,
    value: &str,
) -> (AgentProc, BeamlineAgentClient<Channel>, String) {
    let agent = AgentProc::builder(BEAMLINE)
        .registry(reg)
        .arg(flag, value)
        .start();
    let mut client = agent.client().await;
    let id = instance_id(&mut client).await;
    wait_passing(reg, SERVICE, &id, secs(8)).await;
    (agent, client, id)
}

async fn serving(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    health
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("health Check {service:?}: {e:?}"))
        .into_inner()
        .status()
}

/// Polls a quick Execute until the agent refuses it as draining; returns the refusal. Quick
/// tasks accepted before the refusal starts are harmless.
async fn wait_refused(client: &mut BeamlineAgentClient<Channel>) -> tonic::Status {
    poll_for(secs(5), "Execute to be refused as draining", async || {
        client
            .execute(execute_request(
                "read_pv",
                json!({"name": "ring:current"}),
                "",
            ))
            .await
            .err()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_agent_refuses_new_work_serves_the_rest_and_finishes_its_task() {
    let reg = Registry::start();
    let mut agent = AgentProc::builder(BEAMLINE)
        .registry(&reg)
        .arg("--drain-timeout", "20s")
        .start();
    let mut client = agent.client().await;
    let mut health = agent.health().await;
    let id = instance_id(&mut client).await;
    wait_passing(&reg, SERVICE, &id, secs(8)).await;

    // 10 mm at 5 mm/s: a 2 s move, far longer than the drain grace (300ms).
    let (mut exec, task_id) = start_task(
        &mut client,
        "move_motor",
        json!({"motor": "sample_x", "position": 10.0}),
    )
    .await;
    let mut sub_before = client
        .subscribe(SubscribeRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Subscribe")
        .into_inner();

    let term_at = Instant::now();
    agent.sigterm();

    // Health goes NOT_SERVING, for the server and for the agent's service.
    poll_until(
        secs(3),
        "health \"\" to be NOT_SERVING",
        async || serving(&mut health, "").await,
        |s| *s == ServingStatus::NotServing,
    )
    .await;
    assert_eq!(
        serving(&mut health, AGENT_SERVICE).await,
        ServingStatus::NotServing
    );

    // New work is refused, as never started; by then the instance is already deregistered.
    let refused = wait_refused(&mut client).await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused
            .metadata()
            .get("x-beamline-not-started")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "metadata of the refusal: {:?}",
        refused.metadata()
    );
    reg.get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(404);
    assert!(
        health_entry(&reg, SERVICE, &id, false).await.is_none(),
        "still listed while refusing work"
    );
    // Refused on a fresh connection too, and for every capability.
    let err = agent
        .client()
        .await
        .execute(execute_request("status", json!({}), ""))
        .await
        .expect_err("Execute while draining");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.metadata().get("x-beamline-not-started").is_some(),
        "{err:?}"
    );

    // Everything else is still served while the move runs, and the process is still there.
    assert!(agent.is_running(), "exited with a task running");
    let card = client
        .describe(DescribeRequest {})
        .await
        .expect("Describe while draining")
        .into_inner();
    assert_eq!(card.instance_id, id);
    let got = client
        .get_task(GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("GetTask while draining")
        .into_inner();
    assert_eq!(task_state(&got), TaskState::Working, "{got:?}");
    let mut sub_during = agent
        .client()
        .await
        .subscribe(SubscribeRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Subscribe while draining")
        .into_inner();
    let snapshot = next_event(&mut sub_during).await.expect("a snapshot");
    assert_eq!(task_of(&snapshot).task_id, task_id);
    let missing = client
        .cancel(CancelRequest {
            task_id: format!("{id}/nope"),
        })
        .await
        .expect_err("Cancel of an unknown task while draining");
    assert_eq!(
        missing.code(),
        Code::NotFound,
        "Cancel is still served: {missing:?}"
    );

    // The running move ends normally: it ends well inside --drain-timeout.
    for (what, stream) in [
        ("Execute", &mut exec),
        ("Subscribe before SIGTERM", &mut sub_before),
        ("Subscribe while draining", &mut sub_during),
    ] {
        let events = rest_of(stream, secs(10)).await;
        let last = events.last().unwrap_or_else(|| panic!("{what}: no events"));
        assert_eq!(state_of(last), TaskState::Completed, "{what}: {events:?}");
    }

    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit after draining: {status}");
    assert!(
        term_at.elapsed() >= ms(1000),
        "exited {:?} after SIGTERM, before its 2 s move could end",
        term_at.elapsed()
    );
    reg.get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_keeps_serving_for_the_drain_grace_after_deregistering() {
    let reg = Registry::start();
    let (mut agent, mut client, id) = passing_agent(&reg, "--drain-grace", "1500ms").await;

    let term_at = Instant::now();
    agent.sigterm();
    wait_gone(&reg, &id, secs(3)).await;
    assert!(
        agent.is_running(),
        "exited at once; it must serve for the drain grace"
    );
    // Still answering reads after the deregistration.
    let card = client
        .describe(DescribeRequest {})
        .await
        .expect("Describe during the drain grace")
        .into_inner();
    assert_eq!(card.instance_id, id);
    let refused = client
        .execute(execute_request("status", json!({}), ""))
        .await
        .expect_err("Execute during the drain grace");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    let took = term_at.elapsed();
    assert!(
        took >= ms(1400),
        "exited {took:?} after SIGTERM, inside the 1.5 s drain grace"
    );
    assert!(took < secs(6), "the drain of an idle agent took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_still_running_at_the_drain_timeout_fails_retryable() {
    let reg = Registry::start();
    let (mut agent, mut client, id) = passing_agent(&reg, "--drain-timeout", "800ms").await;

    // 50 points × 200 ms dwell: a 10 s scan, far past the drain timeout.
    let (mut exec, task_id) = start_task(
        &mut client,
        "scan",
        json!({"motor": "sample_y", "start": 0.0, "stop": 0.0, "steps": 50, "dwell_ms": 200}),
    )
    .await;
    let mut sub = client
        .subscribe(SubscribeRequest {
            task_id: task_id.clone(),
        })
        .await
        .expect("Subscribe")
        .into_inner();
    let snapshot = next_event(&mut sub).await.expect("a snapshot");
    assert!(!is_terminal(state_of(&snapshot)), "{snapshot:?}");

    let term_at = Instant::now();
    agent.sigterm();

    let events = rest_of(&mut sub, secs(10)).await;
    let last = events.last().expect("a terminal event on Subscribe");
    assert_eq!(state_of(last), TaskState::Failed, "{events:?}");
    let error = task_of(last).error.as_ref().expect("a TaskError");
    assert_eq!(error.code, "DRAIN_TIMEOUT", "{error:?}");
    assert!(
        error.retryable,
        "DRAIN_TIMEOUT must be retryable: {error:?}"
    );
    assert!(!error.message.is_empty(), "{error:?}");
    let failed_after = term_at.elapsed();
    assert!(
        failed_after >= ms(700) && failed_after < secs(5),
        "failed {failed_after:?} after SIGTERM with --drain-timeout 800ms"
    );

    // The Execute stream sees the same end.
    let events = rest_of(&mut exec, secs(5)).await;
    let last = events.last().expect("a terminal event on Execute");
    assert_eq!(state_of(last), TaskState::Failed, "{events:?}");
    assert_eq!(
        task_of(last).error.as_ref().map(|e| e.code.as_str()),
        Some("DRAIN_TIMEOUT")
    );

    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        term_at.elapsed() < secs(8),
        "took {:?} to exit: it waited for the scan",
        term_at.elapsed()
    );
    reg.get(&format!("/v1/agent/service/{id}"))
        .await
        .expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_during_drain_gets_the_running_task_and_new_keyed_work_is_refused() {
    let reg = Registry::start();
    let (mut agent, mut client, _id) = passing_agent(&reg, "--drain-timeout", "20s").await;

    let params = json!({"motor": "sample_y", "position": 9.0});
    let mut first = client
        .execute(execute_request("move_motor", params.clone(), "move-k"))
        .await
        .expect("keyed Execute")
        .into_inner();
    let task_id = next_event(&mut first)
        .await
        .expect("first event")
        .task
        .expect("first event carries the task")
        .task_id;

    agent.sigterm();
    wait_refused(&mut client).await;

    // The retry of the running task must get that task, not a "not started" refusal that would
    // invite the caller to start a second move elsewhere.
    let mut retry = client
        .execute(execute_request("move_motor", params, "move-k"))
        .await
        .expect("a keyed retry during drain is answered with the existing task")
        .into_inner();
    let retried = next_event(&mut retry)
        .await
        .expect("first event")
        .task
        .expect("task");
    assert_eq!(retried.task_id, task_id);

    // A key the agent has never seen is new work: refused as never started.
    let refused = client
        .execute(execute_request(
            "read_pv",
            json!({"name": "ring:current"}),
            "never-seen",
        ))
        .await
        .expect_err("new keyed work during drain is refused");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        refused
            .metadata()
            .get("x-beamline-not-started")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let status = agent.wait_exit(secs(15)).await;
    assert!(status.success(), "exit status {status:?}");
}
