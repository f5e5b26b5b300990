//! gRPC calls through a running gateway: real tonic clients over fresh connections, requests
//! that carry the `x-beamline` routing key, and a Describe bounded by [`CALL_BOUND`] so a hung
//! route fails the test instead of hanging it.
//!
//! Owns the wire side only; it must not start or stop the process (the parent module does).

use std::time::Duration;

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use tonic::transport::{Channel, Endpoint};

use super::GatewayProc;
use crate::support::deadline::secs;

/// The gRPC metadata key the gateway routes by.
pub const ROUTING_KEY: &str = "x-beamline";

impl GatewayProc {
    /// A new connection to the gateway.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("gateway endpoint")
            .connect_timeout(secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to gateway {}: {e:?}", self.addr))
    }

    /// A real tonic `BeamlineAgent` client to the gateway over a fresh connection. Requests
    /// need the routing key: build them with [`to`].
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        BeamlineAgentClient::new(self.channel().await)
    }
}

/// `message` as a request for `beamline` (the `x-beamline` metadata set).
pub fn to<T>(beamline: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        ROUTING_KEY,
        beamline.parse().expect("beamline as a metadata value"),
    );
    request
}

/// [`to`] with a caller deadline (sent as `grpc-timeout`).
pub fn to_with_timeout<T>(beamline: &str, message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = to(beamline, message);
    request.set_timeout(timeout);
    request
}

/// The longest a test lets one unary call take before it counts it as hung.
pub const CALL_BOUND: Duration = Duration::from_secs(10);

/// Describe through the gateway; the answering instance's id. Bounded by [`CALL_BOUND`] (a
/// hang is reported as a DEADLINE_EXCEEDED made up here, saying so).
pub async fn describe(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
) -> Result<String, tonic::Status> {
    match tokio::time::timeout(
        CALL_BOUND,
        client.describe(to(beamline, DescribeRequest {})),
    )
    .await
    {
        Ok(result) => result.map(|r| r.into_inner().instance_id),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "TEST: no answer through the gateway within {CALL_BOUND:?}"
        ))),
    }
}

/// An Execute through the gateway: the task id of its first event, or the status of the call
/// or of its stream; each bounded by [`CALL_BOUND`]. The task runs on (the stream is dropped).
pub async fn first_task(
    client: &mut BeamlineAgentClient<Channel>,
    request: tonic::Request<beamline_mesh::proto::ExecuteRequest>,
) -> Result<String, tonic::Status> {
    let bounded = |what: &str| {
        tonic::Status::deadline_exceeded(format!("TEST: no {what} within {CALL_BOUND:?}"))
    };
    let mut stream = tokio::time::timeout(CALL_BOUND, client.execute(request))
        .await
        .map_err(|_| bounded("answer"))??
        .into_inner();
    match tokio::time::timeout(CALL_BOUND, stream.message()).await {
        Ok(Ok(Some(event))) => event
            .task
            .map(|task| task.task_id)
            .ok_or_else(|| tonic::Status::unknown("TEST: an event without a task")),
        Ok(Ok(None)) => Err(tonic::Status::unknown("TEST: the stream ended at once")),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(bounded("first event")),
    }
}
