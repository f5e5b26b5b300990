//! The mesh: the framework's handle on every beamline's agents. `Mesh::agent("5.3.1")` returns
//! the tonic-generated `BeamlineAgentClient` over one balanced service per beamline, shared by
//! all callers: Consul discovery on its own task, one connection and health gate per healthy
//! instance, tower's p2c over Peak-EWMA load beside a router for task affinity and idempotency
//! keys, failfast, deadlines, and budgeted retries where they cannot repeat an effect.
//!
//! Owns the per-beamline routes and their lifetime (created on first use, dropped when idle).

mod connection;
mod deadline;
pub mod discovery;
mod endpoint;
mod failfast;
mod load;
mod pool;
mod rendezvous;
mod route;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;
use tower::retry::budget::TpsBudget;
use tower::{BoxError, Service};

pub use deadline::Arrival;
pub use endpoint::{EndpointSettings, ServedBy};
pub use route::CallFacts;

use beamline_consul::{ConsulClient, ConsulConfig};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::proto::beamline_agent_client::BeamlineAgentClient;
use discovery::{Snapshot, WatchSettings};
use route::Route;

/// The default bound on a request message: gRPC's customary 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How the mesh routes; the defaults suit a light source's agents on a LAN.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// A call fails (UNAVAILABLE or NOT_FOUND) when no instance is ready this long.
    pub failfast: Duration,
    /// Deadline of unary calls whose caller set none.
    pub unary_timeout: Duration,
    /// Streams (Execute, Subscribe) must get their response headers within this.
    pub first_message_timeout: Duration,
    /// Attempts after the first, when a retry is safe and the budget allows.
    pub max_retries: usize,
    /// The retry budget: this fraction of recent requests, plus `min_retries_per_sec`.
    pub retry_ratio: f32,
    pub min_retries_per_sec: u32,
    /// Peak-EWMA: a new endpoint's round-trip estimate, and how fast estimates decay.
    pub initial_rtt: Duration,
    pub rtt_decay: Duration,
    /// Estimates are compared in powers of two above this (noise on a LAN next to an agent's
    /// work), so the in-flight count decides between instances of similar latency. 5 ms: a
    /// gateway hop on a loaded node, or any debug build, answers in 1–3 ms, and with a 1 ms
    /// floor one 2 ms peak put an instance a bucket up and out of sequential traffic.
    pub rtt_floor: Duration,
    /// A beamline's route is dropped after this long without calls (and no client holding it).
    pub idle_timeout: Duration,
    /// The largest request message a call may carry; a larger one is RESOURCE_EXHAUSTED as soon
    /// as the bound is passed, with nothing more read (gRPC's customary 4 MiB).
    pub max_message_bytes: usize,
    pub watch: WatchSettings,
    pub endpoint: EndpointSettings,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            failfast: Duration::from_secs(3),
            unary_timeout: Duration::from_secs(30),
            first_message_timeout: Duration::from_secs(30),
            max_retries: 2,
            retry_ratio: 0.2,
            min_retries_per_sec: 10,
            initial_rtt: Duration::from_micros(100),
            rtt_decay: Duration::from_secs(2),
            rtt_floor: Duration::from_millis(5),
            idle_timeout: Duration::from_secs(600),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            watch: WatchSettings::default(),
            endpoint: EndpointSettings::default(),
        }
    }
}

/// One routed beamline as the mesh sees it now.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub beamline: BeamlineId,
    /// What discovery knows: the registered instances and whether Consul has them passing.
    pub resolution: Snapshot,
    /// The instances the balancer will use now (it holds them and their health gate is open).
    /// An instance passing in Consul but not here gets no balanced call.
    pub routable: std::collections::BTreeSet<String>,
}

impl RouteStatus {
    /// Instances passing every Consul check.
    pub fn passing(&self) -> usize {
        self.resolution
            .instances()
            .iter()
            .filter(|i| i.healthy)
            .count()
    }
}

/// The framework's handle; cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    consul: ConsulClient,
    settings: Arc<MeshSettings>,
    routes: Mutex<HashMap<BeamlineId, Arc<Route>>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

impl Mesh {
    /// A mesh over the Consul at `consul` (call inside a Tokio runtime).
    pub fn new(consul: ConsulConfig, settings: MeshSettings) -> Mesh {
        let settings = Arc::new(settings);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            consul: ConsulClient::new(consul),
            sweeper: tokio::spawn(sweep(weak.clone(), settings.idle_timeout)),
            settings,
            routes: Mutex::new(HashMap::new()),
        });
        Mesh { inner }
    }

    /// A typed client for `beamline`; INVALID_ARGUMENT when the id breaks the beamline rule.
    pub fn agent(&self, beamline: &str) -> Result<BeamlineAgentClient<MeshChannel>, Status> {
        let id =
            BeamlineId::parse(beamline).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(BeamlineAgentClient::new(self.channel(&id)))
    }

    /// The shared channel of `beamline`, created on first use.
    pub fn channel(&self, beamline: &BeamlineId) -> MeshChannel {
        let mut routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        let route = routes
            .entry(beamline.clone())
            .or_insert_with(|| self.route(beamline))
            .clone();
        MeshChannel { route }
    }

    /// What discovery currently knows about `beamline` (starts watching it).
    pub fn resolution(&self, beamline: &BeamlineId) -> Snapshot {
        self.channel(beamline).route.resolution()
    }

    /// Every beamline the mesh currently routes, with what discovery knows of it and which
    /// instances its balancer will use (for status pages and metrics; it starts no watch).
    pub fn beamlines(&self) -> Vec<RouteStatus> {
        let routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = routes
            .iter()
            .map(|(id, route)| RouteStatus {
                beamline: id.clone(),
                resolution: route.resolution(),
                routable: route.routable(),
            })
            .collect();
        all.sort_by(|a, b| a.beamline.cmp(&b.beamline));
        all
    }

    /// Discovery updates published over every beamline the mesh routes now.
    pub fn discovery_updates(&self) -> u64 {
        let routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.values().map(|r| r.discovery.updates()).sum()
    }

    /// Waits until discovery has answered for `beamline` once, or `timeout`.
    pub async fn resolved(&self, beamline: &BeamlineId, timeout: Duration) -> Snapshot {
        let mut rx = self.channel(beamline).route.snapshot.clone();
        let _ = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| !matches!(**s, discovery::Resolution::Pending)),
        )
        .await;
        let current = rx.borrow().clone();
        current
    }

    fn route(&self, beamline: &BeamlineId) -> Arc<Route> {
        let settings = self.inner.settings.clone();
        let discovery =
            discovery::spawn(self.inner.consul.clone(), beamline, settings.watch.clone());
        let snapshot = discovery.subscribe();
        let (endpoints_tx, endpoints) = watch::channel(Arc::default());
        let pool_task = tokio::spawn(pool::follow(
            snapshot.clone(),
            endpoints_tx,
            settings.endpoint.clone(),
        ));
        let (balanced_tx, balanced) = watch::channel(Arc::default());
        let discover = pool::Discover::new(
            endpoints.clone(),
            balanced_tx,
            settings.initial_rtt,
            settings.rtt_decay,
            settings.rtt_floor,
        );
        let balance: tower::balance::p2c::Balance<pool::Discover, route::Request> =
            tower::balance::p2c::Balance::new(discover);
        let why_snapshot = snapshot.clone();
        let why_beamline = beamline.clone();
        let why = Arc::new(move || no_instance(&why_beamline, &why_snapshot.borrow()));
        let failfast = failfast::FailFast::new(balance, settings.failfast, why);
        let balancer = Arc::new(tokio::sync::Mutex::new(failfast));
        let discovery_task =
            tokio::spawn(route::apply_discovery(balancer.clone(), endpoints.clone()));
        Arc::new(Route {
            beamline: beamline.clone(),
            discovery,
            snapshot,
            endpoints,
            balanced,
            pool_task,
            discovery_task,
            balancer,
            budget: TpsBudget::new(
                Duration::from_secs(10),
                settings.min_retries_per_sec,
                settings.retry_ratio,
            ),
            settings,
            last_used: Default::default(),
            epoch: Instant::now(),
        })
    }
}

fn no_instance(beamline: &BeamlineId, snapshot: &Snapshot) -> Status {
    let service = beamline.service_name();
    match &**snapshot {
        discovery::Resolution::NotFound => Status::not_found(format!(
            "unknown beamline {beamline}: no Consul service {service}"
        )),
        discovery::Resolution::Pending => Status::unavailable(format!(
            "beamline {beamline}: Consul has not answered for {service} yet"
        )),
        discovery::Resolution::Instances(_) => {
            Status::unavailable(format!("no healthy instance of beamline {beamline}"))
        }
    }
}

async fn sweep(inner: std::sync::Weak<Inner>, idle: Duration) {
    let every = (idle / 4).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut routes = inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.retain(|beamline, route| {
            let keep = Arc::strong_count(route) > 1 || route.idle_for() < idle;
            if !keep {
                tracing::debug!(%beamline, "dropping idle route");
            }
            keep
        });
    }
}

/// The channel under a beamline's `BeamlineAgentClient`: every call goes through the route.
#[derive(Clone)]
pub struct MeshChannel {
    route: Arc<Route>,
}

impl Service<http::Request<Body>> for MeshChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is decided per call (keyed calls skip the balancer), inside `dispatch`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.route.clone().dispatch(request))
    }
}
