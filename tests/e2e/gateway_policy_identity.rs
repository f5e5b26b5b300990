//! Identity forwarding end to end: the gateway strips the credential and passes `x-caller` and
//! `x-role` to the agent. The demo agent does not show the metadata it receives, so the agent
//! here is a tiny tonic `BeamlineAgent` in the test process that records it, registered in the
//! real registry as a beamline's instance (Meta.beamline, the agent tag, a gRPC health check),
//! behind a real `beamline-mesh gateway --auth-file`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::support::agent::wait_passing;
use crate::support::gateway::*;
use crate::support::policy::*;
use crate::support::*;
use beamline_mesh::proto::beamline_agent_server::{BeamlineAgent, BeamlineAgentServer};
use beamline_mesh::proto::{
    AgentCard, CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, SubscribeRequest,
    Task, TaskEvent,
};
use serde_json::json;
use tonic::{Request, Response, Status};

const BEAMLINE: &str = "9.9.1";
const INSTANCE: &str = "beamline-9-9-1-recorder";

/// The metadata of each Describe the recorder received.
type Seen = Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>;

struct Recorder {
    seen: Seen,
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<TaskEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BeamlineAgent for Recorder {
    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<AgentCard>, Status> {
        self.seen.lock().unwrap().push(request.metadata().clone());
        Ok(Response::new(AgentCard {
            beamline: BEAMLINE.into(),
            instance_id: INSTANCE.into(),
            agent_version: "test".into(),
            capabilities: Vec::new(),
            card_revision: "1".into(),
        }))
    }

    type ExecuteStream = EventStream;
    async fn execute(&self, _: Request<ExecuteRequest>) -> Result<Response<EventStream>, Status> {
        Err(Status::unimplemented("recorder"))
    }

    async fn get_task(&self, _: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        Err(Status::unimplemented("recorder"))
    }

    type SubscribeStream = EventStream;
    async fn subscribe(
        &self,
        _: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        Err(Status::unimplemented("recorder"))
    }

    async fn cancel(&self, _: Request<CancelRequest>) -> Result<Response<Task>, Status> {
        Err(Status::unimplemented("recorder"))
    }
}

/// Serves the recorder with gRPC health (SERVING) on 127.0.0.1:0; stopped when the task is
/// aborted.
async fn start_recorder(seen: Seen) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<BeamlineAgentServer<Recorder>>()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the recorder");
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(BeamlineAgentServer::new(Recorder { seen }))
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, task)
}

/// Aborts the server task on drop, whichever way the test ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The recorder, serving and registered in a new registry as BEAMLINE's passing instance.
async fn registered_recorder(seen: Seen) -> (Registry, AbortOnDrop) {
    let (addr, task) = start_recorder(seen).await;
    let server = AbortOnDrop(task);
    let registry = Registry::start();
    registry
        .register(&json!({
            "ID": INSTANCE,
            "Name": service_name(BEAMLINE),
            "Tags": ["beamline-agent"],
            "Address": "127.0.0.1",
            "Port": addr.port(),
            "Meta": {"beamline": BEAMLINE, "instance_id": INSTANCE, "agent_version": "test"},
            "Check": {"Name": "gRPC health", "GRPC": addr.to_string(),
                      "Interval": "300ms", "Timeout": "300ms"},
        }))
        .await;
    wait_passing(&registry, &service_name(BEAMLINE), INSTANCE, secs(10)).await;
    (registry, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_gets_the_caller_and_role_but_never_the_credential() {
    let seen: Seen = Arc::default();
    let (registry, _server) = registered_recorder(Arc::clone(&seen)).await;

    let dir = PolicyDir::new();
    let gateway = GatewayProc::builder(&registry)
        .auth_file(dir.standard())
        .flag("--allow-plaintext")
        .start();
    let mut client = gateway.client().await;

    let id = poll_for(
        secs(10),
        "the recorder to answer through the gateway",
        async || describe_as(&mut client, BEAMLINE, Some(OPS_KEY)).await.ok(),
    )
    .await;
    assert_eq!(id, INSTANCE);
    let token = jwt_hs256(
        JWT_SECRET.as_bytes(),
        &claims("jwt-viewer", "observer", &[BEAMLINE]),
    );
    describe_as(&mut client, BEAMLINE, Some(&token))
        .await
        .expect("Describe with an observer JWT");

    let seen = seen.lock().unwrap().clone();
    // The gateway's own catalog Describes the beamline too, with no caller: the callers' two
    // calls are the last two that name one.
    let named: Vec<_> = seen
        .iter()
        .filter(|md| md.get("x-caller").is_some())
        .collect();
    assert!(named.len() >= 2, "{seen:?}");
    let last_two = &named[named.len() - 2..];
    for (md, (caller, role)) in last_two
        .iter()
        .zip([("ops-console", "operator"), ("jwt-viewer", "observer")])
    {
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(get("x-caller").as_deref(), Some(caller), "{md:?}");
        assert_eq!(get("x-role").as_deref(), Some(role), "{md:?}");
    }
    for md in &seen {
        assert!(
            md.get("authorization").is_none(),
            "the credential reached the agent: {md:?}"
        );
        let all = format!("{md:?}");
        assert!(
            !all.contains(OPS_KEY) && !all.contains(&token),
            "the credential reached the agent: {md:?}"
        );
    }
}

/// Without an auth file (`--insecure-no-auth`) the gateway vouches for nobody: a client's own
/// `x-caller`/`x-role` never reach the agent (an agent over mutual TLS would take them as the
/// gateway's word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_a_clients_own_identity_headers_go_no_further() {
    let seen: Seen = Arc::default();
    let (registry, _server) = registered_recorder(Arc::clone(&seen)).await;
    let gateway = GatewayProc::builder(&registry).start();
    let mut client = gateway.client().await;

    let forged = || {
        let mut request = to(BEAMLINE, DescribeRequest {});
        request
            .metadata_mut()
            .insert("x-caller", "safety-officer".parse().unwrap());
        request
            .metadata_mut()
            .insert("x-role", "operator".parse().unwrap());
        request
    };
    poll_for(
        secs(10),
        "the recorder to answer through the gateway",
        async || client.describe(forged()).await.ok(),
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    let md = seen.last().expect("the recorder saw the call");
    assert!(md.get("x-caller").is_none(), "{md:?}");
    assert!(md.get("x-role").is_none(), "{md:?}");
}
