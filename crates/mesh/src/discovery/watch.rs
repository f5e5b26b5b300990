//! The loop that drives the fleet watch ([`super::fleet::FleetWatch`]): it sends the blocking
//! query the machine asks for, fetches the services it names, publishes the fleet when it
//! changed, logs what the machine notes, and sleeps as it says. Each routed beamline follows the
//! fleet through a [`BeamlineWatch`]: its own snapshot, changed only when its instances change.
//!
//! Owns the I/O and the tasks; every decision is the machine's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::fleet::{checks_filter, Fleet, FleetWatch, Note};
use super::Snapshot;
use beamline_consul::ConsulClient;
use beamline_contract::beamline::BeamlineId;

/// Services fetched at once after a fleet change (a registry restart changes them all).
const CONCURRENT_FETCHES: usize = 4;

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

/// The running fleet watch; dropping it stops the watch.
pub struct Discovery {
    fleet: watch::Receiver<Arc<Fleet>>,
    task: tokio::task::JoinHandle<()>,
    updates: Arc<AtomicU64>,
}

impl Discovery {
    /// The fleet now.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.borrow().clone()
    }

    /// The fleet now and its changes to come.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Fleet>> {
        self.fleet.clone()
    }

    /// How many changed fleets the watch has published.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Follows one beamline in the fleet (call inside a Tokio runtime).
    pub fn beamline(&self, beamline: &BeamlineId) -> BeamlineWatch {
        let mut fleet = self.fleet.clone();
        let (tx, snapshot) = watch::channel(fleet.borrow_and_update().resolution(beamline));
        let beamline = beamline.clone();
        let task = tokio::spawn(async move {
            while fleet.changed().await.is_ok() {
                let next = fleet.borrow_and_update().resolution(&beamline);
                tx.send_if_modified(|current| {
                    let changed = **current != *next;
                    if changed {
                        *current = next;
                    }
                    changed
                });
            }
        });
        BeamlineWatch { snapshot, task }
    }

    /// Waits until the fleet is resolved (Consul answered and every beamline was fetched), or
    /// `timeout`; returns the fleet then.
    pub async fn resolved(&self, timeout: Duration) -> Arc<Fleet> {
        let mut fleet = self.fleet.clone();
        let _ = tokio::time::timeout(timeout, fleet.wait_for(|f| f.resolved)).await;
        let now = fleet.borrow().clone();
        now
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One beamline's snapshot as the fleet watch sees it; dropping it stops following.
pub struct BeamlineWatch {
    snapshot: watch::Receiver<Snapshot>,
    task: tokio::task::JoinHandle<()>,
}

impl BeamlineWatch {
    /// The latest snapshot, and changes to come.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    pub fn current(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }
}

impl Drop for BeamlineWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the fleet watch over `client` (call inside a Tokio runtime).
pub fn spawn(client: ConsulClient, settings: WatchSettings) -> Discovery {
    let (tx, fleet) = watch::channel(Arc::new(Fleet::default()));
    let updates = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run(client, settings, tx, updates.clone()));
    Discovery {
        fleet,
        task,
        updates,
    }
}

async fn run(
    client: ConsulClient,
    settings: WatchSettings,
    tx: watch::Sender<Arc<Fleet>>,
    updates: Arc<AtomicU64>,
) {
    let filter = checks_filter();
    let mut machine = FleetWatch::new(settings);
    loop {
        let started = Instant::now();
        let query = machine.query(started);
        match client
            .health_state("any", Some(&filter), query.index, query.wait)
            .await
        {
            Ok(answer) => {
                let plan = machine.on_checks(Instant::now(), answer);
                plan.notes.iter().for_each(log);
                let fetched: Vec<_> = futures::stream::iter(plan.fetch)
                    .map(|(service, print)| {
                        let client = &client;
                        async move {
                            let entries = client.health_service(&service, 0, Duration::ZERO).await;
                            (service, print, entries)
                        }
                    })
                    .buffer_unordered(CONCURRENT_FETCHES)
                    .collect()
                    .await;
                for (service, print, entries) in fetched {
                    let entries = entries
                        .inspect_err(|e| warn!(%service, error = %e, "cannot fetch the service; asking again"))
                        .ok()
                        .map(|answer| answer.value);
                    machine.on_fetched(&service, print, entries);
                }
                let next = machine.fleet();
                tx.send_if_modified(|current| {
                    let changed = **current != next;
                    if changed {
                        debug!(beamlines = next.beamlines.len(), "discovery update");
                        updates.fetch_add(1, Ordering::Relaxed);
                        *current = Arc::new(next);
                    }
                    changed
                });
                tokio::time::sleep(machine.pause(started, Instant::now())).await;
            }
            Err(e) => {
                let (pause, note) = machine.on_error(beamline_consul::backoff::jitter());
                if note.is_some() {
                    warn!(error = %e, "cannot reach Consul; keeping the last known fleet");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn log(note: &Note) {
    match note {
        Note::Reachable => info!("Consul reachable again"),
        Note::FilteredByAcls => warn!(
            "Consul filtered the answer by ACLs: the token needs service:read on the beamline \
             services and node:read; what it may not read looks unregistered"
        ),
        Note::HoldingAfterRestart => {
            info!("registry came back empty; keeping the last fleet while agents register again")
        }
        // Logged by the loop, which has the error.
        Note::Unreachable => {}
    }
}
