//! A registry, one demo agent per beamline and a gateway with the standard policy, over TLS or
//! plaintext; returns only once every beamline answers an operator, so a scenario starts from a
//! routable mesh.
//!
//! Owns assembling the pieces; it must not define the policy or credentials (the parent module
//! does) or own a process's lifecycle (each process type does).

use std::time::{Duration, Instant};

use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use tonic::transport::Channel;
use tonic::Code;

use super::{describe_as, tls_client, PolicyDir, TlsFiles, OPS_KEY};
use crate::support::agent::AgentProc;
use crate::support::deadline::{secs, POLL_INTERVAL};
use crate::support::gateway::{start_agent, GatewayBuilder, GatewayProc};
use crate::support::Registry;

/// Fields drop in order: gateway, agents, registry, then the directory.
pub struct PolicyStack {
    pub gateway: GatewayProc,
    /// `(beamline, agent, instance id)`.
    pub agents: Vec<(String, AgentProc, String)>,
    _registry: Registry,
    _dir: PolicyDir,
    pub tls: Option<TlsFiles>,
}

impl PolicyStack {
    /// One agent per beamline, passing in Consul, and a gateway with `--auth-file` (the
    /// standard policy) and either TLS (generated certificates) or `--allow-plaintext`, further
    /// configured by `configure`. Returns once every beamline answers an operator's Describe.
    pub async fn start(
        beamlines: &[&str],
        tls: bool,
        configure: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
    ) -> PolicyStack {
        let dir = PolicyDir::new();
        let auth = dir.standard();
        let registry = Registry::start();
        let started =
            futures::future::join_all(beamlines.iter().map(|b| start_agent(&registry, b))).await;
        let agents: Vec<(String, AgentProc, String)> = beamlines
            .iter()
            .zip(started)
            .map(|(b, (agent, id, _))| (b.to_string(), agent, id))
            .collect();
        let mut builder = GatewayProc::builder(&registry).auth_file(&auth);
        let tls = tls.then(|| dir.tls());
        builder = match &tls {
            Some(files) => builder
                .arg("--tls-cert", files.cert.display())
                .arg("--tls-key", files.key.display()),
            None => builder.flag("--allow-plaintext"),
        };
        let gateway = configure(builder).start();
        let stack = PolicyStack {
            gateway,
            agents,
            _registry: registry,
            _dir: dir,
            tls,
        };
        for beamline in beamlines {
            stack.wait_routable(beamline, secs(15)).await;
        }
        stack
    }

    /// The registry behind the stack (its KV holds the facility's halts and locks).
    pub fn registry(&self) -> &Registry {
        &self._registry
    }

    /// The registry, to stop or restart it.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self._registry
    }

    /// A client to the gateway (over TLS when the stack has it).
    pub async fn client(&self) -> BeamlineAgentClient<Channel> {
        match &self.tls {
            Some(files) => tls_client(self.gateway.addr, &files.ca_pem)
                .await
                .unwrap_or_else(|e| panic!("TLS connect to gateway {}: {e:?}", self.gateway.addr)),
            None => self.gateway.client().await,
        }
    }

    /// Instance id of the agent of `beamline`.
    pub fn instance(&self, beamline: &str) -> &str {
        self.agents
            .iter()
            .find(|(b, _, _)| b == beamline)
            .map(|(_, _, id)| id.as_str())
            .unwrap_or_else(|| panic!("no agent of {beamline} in the stack"))
    }

    /// Polls an operator's Describe of `beamline` until it succeeds (UNAVAILABLE and
    /// RESOURCE_EXHAUSTED are retried; anything else fails at once).
    pub async fn wait_routable(&self, beamline: &str, timeout: Duration) {
        let mut client = self.client().await;
        let deadline = Instant::now() + timeout;
        loop {
            match describe_as(&mut client, beamline, Some(OPS_KEY)).await {
                Ok(_) => return,
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(status) => panic!(
                    "{beamline} not routable through the gateway within {timeout:?}: {status:?}"
                ),
            }
        }
    }

    /// `http://ADDR` of the metrics listener, from its stdout line.
    pub async fn metrics_base(&self) -> String {
        let addr = self
            .gateway
            .wait_stdout_line("metrics listening on ", secs(10))
            .await;
        if addr.starts_with("http://") {
            addr
        } else {
            format!("http://{addr}")
        }
    }
}
