//! The watch loop of one beamline's Consul service: blocking queries on `/v1/health/service/<name>`
//! (without `?passing`, so "nothing registered" and "registered but unhealthy" stay apart),
//! following Consul's client rules: reset the index when it goes backwards, never send 0 as a
//! blocking index, and rate-limit the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Instance, Resolution, Snapshot};
use beamline_consul::{ConsulClient, ServiceEntry};
use beamline_contract::beamline::BeamlineId;

#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The blocking query's wait.
    pub wait: Duration,
    /// The least time between two queries (Consul asks clients to rate-limit watch loops).
    pub min_interval: Duration,
    /// Retry backoff after a failure, doubled up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// When a restarted registry answers with nothing, keep the last instances this long while
    /// agents register again.
    pub restart_grace: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            wait: Duration::from_secs(300),
            min_interval: Duration::from_millis(20),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            restart_grace: Duration::from_secs(10),
        }
    }
}

/// A running watch; dropping it stops the watch.
pub struct Discovery {
    snapshot: watch::Receiver<Snapshot>,
    task: tokio::task::JoinHandle<()>,
    updates: Arc<AtomicU64>,
}

impl Discovery {
    /// The latest snapshot, and changes to come.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    pub fn current(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// How many changed snapshots this watch has published.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the instances of `beamline` (call inside a Tokio runtime). Ids that differ
/// only in '.' and '-' share a service name (`5.3.1`, `5-3-1`), so instances are kept only when
/// their `Meta.beamline` is this id.
pub fn spawn(client: ConsulClient, beamline: &BeamlineId, settings: WatchSettings) -> Discovery {
    let (tx, rx) = watch::channel(Arc::new(Resolution::Pending));
    let updates = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run(client, beamline.clone(), settings, tx, updates.clone()));
    Discovery {
        snapshot: rx,
        task,
        updates,
    }
}

fn resolve(beamline: &BeamlineId, entries: Vec<ServiceEntry>) -> Resolution {
    let mut instances: Vec<Instance> = entries
        .into_iter()
        .filter(|e| e.service.meta.get("beamline").map(String::as_str) == Some(beamline.as_str()))
        .map(|e| Instance {
            healthy: e.is_passing(),
            addr: e.address(),
            beamline: e.service.meta.get("beamline").cloned(),
            id: e.service.id,
        })
        .collect();
    if instances.is_empty() {
        return Resolution::NotFound;
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Resolution::Instances(instances)
}

async fn run(
    client: ConsulClient,
    beamline: BeamlineId,
    settings: WatchSettings,
    tx: watch::Sender<Snapshot>,
    updates: Arc<AtomicU64>,
) {
    let service = beamline.service_name();
    let mut index = 0u64;
    let mut backoff = settings.min_backoff;
    let mut outage = false;
    let mut acl_warned = false;
    // Set while a restarted registry's empty answer is held back.
    let mut grace_until: Option<Instant> = None;
    loop {
        let started = Instant::now();
        // Inside a grace period, wake when it ends even if Consul stays quiet.
        let wait = match grace_until {
            Some(until) => until
                .saturating_duration_since(started)
                .max(Duration::from_millis(1)),
            None => settings.wait,
        };
        match client.health_service(&service, index, wait).await {
            Ok(answer) => {
                if outage {
                    info!(%service, "Consul reachable again");
                    outage = false;
                }
                backoff = settings.min_backoff;
                if answer.filtered_by_acls && !acl_warned {
                    warn!(
                        %service,
                        "Consul filtered the answer by ACLs: the token needs service:read on \
                         this service and node:read; an empty answer means 'not allowed'"
                    );
                    acl_warned = true;
                }
                let went_back = answer.index < index;
                let next = resolve(&beamline, answer.entries);
                let had_instances = matches!(**tx.borrow(), Resolution::Instances(_));
                if went_back
                    && next == Resolution::NotFound
                    && had_instances
                    && grace_until.is_none()
                {
                    info!(%service, "registry came back empty; keeping the last instances while agents register again");
                    grace_until = Some(Instant::now() + settings.restart_grace);
                }
                let holding = grace_until.is_some_and(|until| Instant::now() < until)
                    && next == Resolution::NotFound;
                if !holding {
                    grace_until = None;
                    tx.send_if_modified(|current| {
                        let changed = **current != next;
                        if changed {
                            debug!(%service, ?next, "discovery update");
                            updates.fetch_add(1, Ordering::Relaxed);
                            *current = Arc::new(next);
                        }
                        changed
                    });
                }
                // Consul's rules: an index that went backwards restarts from 0; never block on 0.
                index = if went_back { 0 } else { answer.index.max(1) };
                let since = started.elapsed();
                if since < settings.min_interval {
                    tokio::time::sleep(settings.min_interval - since).await;
                }
            }
            Err(e) => {
                if !outage {
                    warn!(%service, error = %e, "cannot reach Consul; keeping the last known instances");
                    outage = true;
                }
                let jitter = rand::rng().random_range(Duration::ZERO..=backoff / 2);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(settings.max_backoff);
            }
        }
    }
}
