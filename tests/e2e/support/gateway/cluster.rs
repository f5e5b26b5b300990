//! A registry, N demo agents of one beamline and a gateway that has seen every one of them
//! answer: the agents are started passing in Consul first, so a scenario begins from a routable
//! mesh rather than racing registration.
//!
//! Owns assembling the pieces; it must not generate traffic (`load`) or own a process's
//! lifecycle (each process type does).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use beamline_mesh::proto::DescribeRequest;

use super::{describe, GatewayBuilder, GatewayProc};
use crate::support::agent::{wait_passing, AgentBuilder, AgentProc};
use crate::support::deadline::{secs, POLL_INTERVAL};
use crate::support::Registry;

/// Consul service name of a beamline (`5.3.1` → `beamline-5-3-1`).
pub fn service_name(beamline: &str) -> String {
    format!("beamline-{}", beamline.to_lowercase().replace('.', "-"))
}

/// A registry, `n` demo agents of one beamline (passing in Consul, FAST intervals) and a
/// gateway that has seen every one of them answer. Fields drop in order: gateway, agents,
/// registry.
pub struct Cluster {
    pub gateway: GatewayProc,
    pub agents: Vec<AgentProc>,
    /// Instance id of `agents[i]`.
    pub ids: Vec<String>,
    pub beamline: String,
    pub registry: Registry,
}

/// Starts an agent of `beamline` in `registry` (drain grace 500ms) and waits until it is passing
/// in Consul; returns it with its instance id and when it was first seen passing.
pub async fn start_agent(registry: &Registry, beamline: &str) -> (AgentProc, String, Instant) {
    start_agent_with(registry, beamline, |agent| agent).await
}

/// As [`start_agent`], with more options set by `options` on the agent's builder.
pub async fn start_agent_with(
    registry: &Registry,
    beamline: &str,
    options: impl FnOnce(AgentBuilder) -> AgentBuilder,
) -> (AgentProc, String, Instant) {
    let agent = options(
        AgentProc::builder(beamline)
            .registry(registry)
            .arg("--drain-grace", "500ms"),
    )
    .start();
    let id = agent
        .client()
        .await
        .describe(DescribeRequest {})
        .await
        .unwrap_or_else(|e| panic!("direct Describe of agent {}: {e:?}", agent.addr))
        .into_inner()
        .instance_id;
    wait_passing(registry, &service_name(beamline), &id, secs(10)).await;
    (agent, id, Instant::now())
}

impl Cluster {
    /// `n` agents of `beamline`, and a gateway built by `gateway` from a builder over the
    /// registry; returns once a Describe through the gateway has reached every agent.
    pub async fn start(
        beamline: &str,
        n: usize,
        gateway: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> Cluster {
        let registry = Registry::start();
        let started =
            futures::future::join_all((0..n).map(|_| start_agent(&registry, beamline))).await;
        let (agents, ids): (Vec<AgentProc>, Vec<String>) =
            started.into_iter().map(|(a, id, _)| (a, id)).unzip();
        let gateway = gateway(GatewayProc::builder(&registry)).start();
        let cluster = Cluster {
            gateway,
            agents,
            ids,
            beamline: beamline.to_string(),
            registry,
        };
        cluster.wait_all_reached(secs(10)).await;
        cluster
    }

    /// Polls Describe through the gateway until every id in `self.ids` has answered.
    pub async fn wait_all_reached(&self, timeout: Duration) {
        let mut client = self.gateway.client().await;
        let mut seen = BTreeSet::new();
        let want: BTreeSet<String> = self.ids.iter().cloned().collect();
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        while !want.is_subset(&seen) {
            if Instant::now() >= deadline {
                panic!(
                    "Describe through the gateway reached {seen:?}, not all of {want:?}, within \
                     {timeout:?}; last error {last_error:?}"
                );
            }
            match describe(&mut client, &self.beamline).await {
                Ok(id) => {
                    seen.insert(id);
                }
                Err(status) => {
                    last_error = Some(status);
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
    }
}
