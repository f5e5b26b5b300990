//! A complete beamline agent with one capability: what a beamline team copies to start.
//!
//! Run a registry (`beamline-mesh registry --listen 127.0.0.1:8500`), then
//! `cargo run --example minimal_agent -- 9.9.9` and call it with
//! `beamline-mesh call --addr <printed address> execute read_temperature`.

use beamline_mesh::agent::capabilities::{json_to_struct, Capabilities, CapabilitySpec};
use beamline_mesh::agent::tasks::{TaskEventStream, TaskTable};
use beamline_mesh::agent::{AgentConfig, AgentRuntime, Instance};
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::proto::beamline_agent_server::BeamlineAgent;
use beamline_mesh::proto::*;
use serde_json::json;
use tonic::{Request, Response, Status};

struct Thermometer {
    instance: Instance,
    tasks: TaskTable,
    capabilities: Capabilities,
}

#[tonic::async_trait]
impl BeamlineAgent for Thermometer {
    type ExecuteStream = TaskEventStream;
    type SubscribeStream = TaskEventStream;

    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<AgentCard>, Status> {
        Ok(Response::new(self.capabilities.card(&self.instance)))
    }

    async fn execute(
        &self,
        r: Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let r = r.into_inner();
        self.capabilities
            .validate(&r.capability, r.params.as_ref())?;
        let params = r.params.unwrap_or_default();
        let work = |task: beamline_mesh::agent::tasks::TaskHandle| async move {
            task.progress(Some(0.5), "reading the sensor");
            task.complete(json_to_struct(&json!({ "kelvin": 293.4 })));
        };
        Ok(Response::new(self.tasks.execute(
            &r.capability,
            params,
            &r.idempotency_key,
            work,
        )?))
    }

    async fn get_task(&self, r: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        self.tasks.get(&r.into_inner().task_id).map(Response::new)
    }

    async fn subscribe(
        &self,
        r: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.tasks
            .subscribe(&r.into_inner().task_id)
            .map(Response::new)
    }

    async fn cancel(&self, r: Request<CancelRequest>) -> Result<Response<Task>, Status> {
        self.tasks
            .cancel(&r.into_inner().task_id)
            .map(Response::new)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let beamline = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "9.9.9".into())
        .parse()?;
    let config = AgentConfig::new("127.0.0.1:0".parse()?, ConsulConfig::from_env_or(None)?);
    let runtime = AgentRuntime::bind(Instance::new(beamline, "0.1.0"), config).await?;
    let capabilities = Capabilities::new(vec![CapabilitySpec {
        name: "read_temperature".into(),
        description: "Reads the sample temperature".into(),
        params_schema: json!({ "type": "object", "additionalProperties": false }),
        actuating: false,
        tags: vec!["read-only".into()],
    }])?;
    let agent = Thermometer {
        instance: runtime.instance().clone(),
        tasks: runtime.tasks(),
        capabilities,
    };
    println!("agent listening on {}", runtime.local_addr());
    runtime
        .serve(agent, async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await?;
    Ok(())
}
