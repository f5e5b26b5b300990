//! The agent as the registry sees it: its entry in `/v1/health/service/<service>`, and waits for
//! it to be passing or to be deregistered.
//!
//! Reads the registry only; it must not touch the agent process (the parent module owns it).

use std::time::Duration;

use crate::support::{arr, poll_for, poll_until, Registry};

/// The entry of `/v1/health/service/<service>` (with `?passing` when `passing`) whose
/// `Service.ID` is `id`, if listed.
pub async fn health_entry(
    registry: &Registry,
    service: &str,
    id: &str,
    passing: bool,
) -> Option<serde_json::Value> {
    let query = if passing { "passing" } else { "" };
    let entries = registry.health_service(service, query).await.json();
    arr(&entries)
        .iter()
        .find(|e| e["Service"]["ID"] == id)
        .cloned()
}

/// Waits until instance `id` of `service` is listed with `?passing`; returns its entry.
pub async fn wait_passing(
    registry: &Registry,
    service: &str,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let what = format!("{id} to be listed in /v1/health/service/{service}?passing");
    poll_for(timeout, &what, async || {
        health_entry(registry, service, id, true).await
    })
    .await
}

/// Waits until instance `id` is not registered at all (GET /v1/agent/service/:id is 404).
pub async fn wait_gone(registry: &Registry, id: &str, timeout: Duration) {
    let path = format!("/v1/agent/service/{id}");
    poll_until(
        timeout,
        &format!("{id} to be deregistered"),
        async || registry.get(&path).await.code(),
        |code| *code == 404,
    )
    .await;
}
