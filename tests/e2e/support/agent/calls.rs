//! gRPC calls against a running agent: real tonic clients (BeamlineAgent and grpc.health.v1)
//! over fresh connections, ExecuteRequest and Struct conversions, task-state readers, and
//! stream reads bounded by a timeout so a silent agent fails the test instead of hanging it.
//!
//! Owns the wire side only; it must not start, signal or reap the process (the parent module
//! does).

use std::time::Duration;

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{
    AgentCard, DescribeRequest, ExecuteRequest, GetTaskRequest, Task, TaskEvent, TaskState,
};
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;
use tonic_health::pb::health_client::HealthClient;

use super::AgentProc;
use crate::support::deadline::secs;

/// The gRPC service name of the agent contract (as registered in tonic-health).
pub const AGENT_SERVICE: &str = "beamline.v1.BeamlineAgent";

impl AgentProc {
    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("agent endpoint")
            .connect_timeout(secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to agent {}: {e:?}", self.addr))
    }

    /// A real tonic `BeamlineAgent` client over a fresh connection.
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        BeamlineAgentClient::new(self.channel().await)
    }

    /// The agent's card (Describe over a fresh connection).
    pub async fn card(&self) -> AgentCard {
        self.client()
            .await
            .describe(DescribeRequest {})
            .await
            .expect("Describe")
            .into_inner()
    }

    /// A real grpc.health.v1 client over a fresh connection.
    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }
}

/// How long one stream message may take to arrive in a test.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON params → the `google.protobuf.Struct` of an ExecuteRequest.
pub fn params(v: serde_json::Value) -> Option<prost_types::Struct> {
    Some(beamline_mesh::agent::capabilities::json_to_struct(&v))
}

/// A `google.protobuf.Struct` → JSON (for reading results).
pub fn to_json(s: &prost_types::Struct) -> serde_json::Value {
    beamline_mesh::agent::capabilities::struct_to_json(s)
}

pub fn execute_request(capability: &str, p: serde_json::Value, key: &str) -> ExecuteRequest {
    ExecuteRequest {
        capability: capability.to_string(),
        params: params(p),
        idempotency_key: key.to_string(),
    }
}

/// The task of an event (every event must carry one).
pub fn task_of(event: &TaskEvent) -> &Task {
    event
        .task
        .as_ref()
        .unwrap_or_else(|| panic!("event without a task: {event:?}"))
}

/// The task's snapshot now (GetTask); panics on an error.
pub async fn get_task(client: &mut BeamlineAgentClient<Channel>, task_id: &str) -> Task {
    let request = GetTaskRequest {
        task_id: task_id.to_string(),
    };
    let task = client.get_task(request).await;
    task.unwrap_or_else(|e| panic!("GetTask {task_id}: {e:?}"))
        .into_inner()
}

pub fn state_of(event: &TaskEvent) -> TaskState {
    task_state(task_of(event))
}

pub fn task_state(task: &Task) -> TaskState {
    TaskState::try_from(task.state).unwrap_or_else(|_| panic!("unknown state in {task:?}"))
}

pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected
    )
}

/// The next message of a stream (None at its end), bounded by [`EVENT_TIMEOUT`].
/// Starts `capability` with `params` (no idempotency key): its event stream, and the id of the
/// task its first event names.
pub async fn start_task(
    client: &mut BeamlineAgentClient<Channel>,
    capability: &str,
    params: serde_json::Value,
) -> (Streaming<TaskEvent>, String) {
    let mut events = client
        .execute(execute_request(capability, params, ""))
        .await
        .unwrap_or_else(|e| panic!("Execute {capability}: {e:?}"))
        .into_inner();
    let first = next_event(&mut events)
        .await
        .unwrap_or_else(|| panic!("Execute {capability}: no first event"));
    let task_id = task_of(&first).task_id.clone();
    (events, task_id)
}

pub async fn next_event(stream: &mut Streaming<TaskEvent>) -> Option<TaskEvent> {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.message()).await {
        Ok(Ok(event)) => event,
        Ok(Err(status)) => panic!("stream failed: {status:?}"),
        Err(_) => panic!("no stream message within {EVENT_TIMEOUT:?}"),
    }
}

/// Every remaining message until the stream ends; panics if it does not end within `timeout`.
pub async fn rest_of(stream: &mut Streaming<TaskEvent>, timeout: Duration) -> Vec<TaskEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(event))) => events.push(event),
            Ok(Ok(None)) => return events,
            Ok(Err(status)) => panic!("stream failed after {events:?}: {status:?}"),
            Err(_) => panic!(
                "stream did not end within {timeout:?}; last event {:?}",
                events.last()
            ),
        }
    }
}
