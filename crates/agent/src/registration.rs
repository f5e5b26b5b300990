//! Keeping one agent instance registered in Consul: register once serving, check that the
//! registration still exists, register again when it is gone (a registry restarted without its
//! data, a reaper, an operator), and keep trying quietly while Consul is unreachable — an agent
//! serves whether or not Consul is there.
//!
//! Owns the registration body and the keep-alive loop; deregistration at shutdown is the
//! runtime's (it must happen at a precise point of the drain).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Instance;
use beamline_consul::duration::format_go;
use beamline_consul::{AgentServiceCheck, ConsulClient, ServiceRegistration};
use beamline_contract::beamline::AGENT_TAG;
use beamline_contract::wire::meta;

/// The health check an agent registers with itself (defaults in the architecture's names).
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_critical_after: Duration,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            deregister_critical_after: Duration::from_secs(60),
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
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    ServiceRegistration {
        id: instance.instance_id.clone(),
        name: instance.service_name(),
        tags: all_tags,
        address: host.to_string(),
        port,
        meta,
        check: AgentServiceCheck {
            name: format!("gRPC health of {}", instance.instance_id),
            grpc: target,
            interval: format_go(check.interval),
            timeout: format_go(check.timeout),
            deregister_critical_service_after: format_go(check.deregister_critical_after),
        },
    }
}

/// Registers, then every `every` (with jitter) checks the registration is still there, until
/// `stop`. Logs an outage once, not per retry.
pub async fn keep_registered(
    client: ConsulClient,
    registration: ServiceRegistration,
    every: Duration,
    stop: CancellationToken,
) {
    let id = registration.id.clone();
    let addr = client.config().addr.clone();
    let mut registered = false;
    let mut failing = false;
    loop {
        let outcome = if registered {
            client.is_registered(&id).await
        } else {
            client.register(&registration).await.map(|()| true)
        };
        match outcome {
            Ok(true) => {
                if !registered {
                    info!(service_id = %id, consul = %addr, "registered in Consul");
                }
                registered = true;
                failing = false;
            }
            Ok(false) => {
                warn!(service_id = %id, "registration disappeared from Consul; registering again");
                registered = false;
                continue;
            }
            Err(e) => {
                if !failing {
                    warn!(service_id = %id, error = %e, "cannot reach Consul; will keep trying");
                }
                failing = true;
                // After an outage, check (not assume) the registration.
                if e.is_unreachable() {
                    registered = false;
                }
            }
        }
        let jitter = rand::rng().random_range(Duration::ZERO..=every / 4);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every + jitter) => {}
        }
    }
}
