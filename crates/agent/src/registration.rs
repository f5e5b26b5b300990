//! Keeping one agent instance registered in Consul: register once serving, check that the
//! registration still exists, register again when it is gone (a registry restarted without its
//! data, a reaper, an operator), and keep trying quietly while Consul is unreachable — an agent
//! serves whether or not Consul is there.
//!
//! Owns the registration body and the keep-alive loop that drives `keepalive`'s decisions;
//! deregistration at shutdown is the runtime's (it must happen at a precise point of the drain).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Instance;
use beamline_consul::duration::format_go;
use beamline_consul::{AgentServiceCheck, ConsulClient, ServiceRegistration};
use beamline_contract::address::host_port;
use beamline_contract::beamline::AGENT_TAG;
use beamline_contract::wire::meta;
use keepalive::{Call, Keepalive, Note, Outcome, Wake};

mod keepalive;

/// The health check an agent registers with itself (defaults in the architecture's names).
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_critical_after: Duration,
    /// The port the check dials on the advertised host when health is served apart
    /// (`--health-listen`: plaintext, which a checker can reach when the service needs client
    /// certificates); none: the service's own port.
    pub port: Option<u16>,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            deregister_critical_after: Duration::from_secs(60),
            port: None,
        }
    }
}

/// The version of this SDK, registered as `Meta.sdk_version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registration of `instance` reachable at `host:port`, with the team's `tags` and `meta`
/// beside the framework's own (the framework's keys win: `--meta` refuses them anyway).
pub fn registration(
    instance: &Instance,
    host: &str,
    port: u16,
    check: &CheckSettings,
    tags: &[String],
    extra_meta: &BTreeMap<String, String>,
) -> ServiceRegistration {
    let mut meta = extra_meta.clone();
    meta.extend([
        (meta::BEAMLINE.to_string(), instance.beamline.to_string()),
        (meta::INSTANCE_ID.to_string(), instance.instance_id.clone()),
        (
            meta::AGENT_VERSION.to_string(),
            instance.agent_version.clone(),
        ),
        (meta::SDK_VERSION.to_string(), SDK_VERSION.to_string()),
    ]);
    let mut all_tags = vec![AGENT_TAG.to_string()];
    all_tags.extend(tags.iter().filter(|t| *t != AGENT_TAG).cloned());
    ServiceRegistration {
        id: instance.instance_id.clone(),
        name: instance.service_name(),
        tags: all_tags,
        address: host.to_string(),
        port,
        meta,
        check: AgentServiceCheck {
            name: format!("gRPC health of {}", instance.instance_id),
            grpc: host_port(host, check.port.unwrap_or(port)),
            interval: format_go(check.interval),
            timeout: format_go(check.timeout),
            deregister_critical_service_after: format_go(check.deregister_critical_after),
        },
    }
}

/// Adds what the agent serves to `registration`'s Meta: its AgentCard's `card_revision` (the
/// gateway's catalog Describes the beamline again only when it changes) and, when `controls`,
/// what it enforces of the control state itself (`Meta.controls`: `Control::advertised`).
pub fn advertise(
    registration: &mut ServiceRegistration,
    card_revision: Option<&str>,
    controls: Option<&str>,
) {
    if let Some(revision) = card_revision {
        registration
            .meta
            .insert(meta::CARD_REVISION.to_string(), revision.to_string());
    }
    if let Some(controls) = controls {
        registration
            .meta
            .insert(meta::CONTROLS.to_string(), controls.to_string());
    }
}

/// Registers, then every `every` (with jitter) checks the registration is still there, until
/// `stop`. Logs an outage once, not per retry. The decisions are `Keepalive`'s; this loop only
/// calls Consul, draws the jitter, logs and sleeps.
pub async fn keep_registered(
    client: ConsulClient,
    registration: ServiceRegistration,
    every: Duration,
    stop: CancellationToken,
) {
    let id = registration.id.clone();
    let addr = client.config().addr.clone();
    let mut keepalive = Keepalive::new(every);
    loop {
        let result = match keepalive.call() {
            Call::Check => client.is_registered(&id).await,
            Call::Register => client.register(&registration).await.map(|()| true),
        };
        let (outcome, error) = match result {
            Ok(true) => (Outcome::Present, None),
            Ok(false) => (Outcome::Gone, None),
            Err(e) => {
                let unreachable = e.is_unreachable();
                (Outcome::Failed { unreachable }, Some(e))
            }
        };
        let jitter = rand::rng().random_range(0.0..=1.0);
        let (wake, note) = keepalive.on_result(Instant::now(), outcome, jitter);
        match (note, error) {
            (Some(Note::Registered), _) => {
                info!(service_id = %id, consul = %addr, "registered in Consul")
            }
            (Some(Note::Disappeared), _) => {
                warn!(service_id = %id, "registration disappeared from Consul; registering again")
            }
            (Some(Note::Failing), Some(e)) => {
                warn!(service_id = %id, error = %e, "cannot reach Consul; will keep trying")
            }
            _ => {}
        }
        let Wake::At(at) = wake else { continue };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
    }
}

#[cfg(test)]
mod tests;
