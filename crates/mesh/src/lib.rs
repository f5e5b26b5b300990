//! The mesh: the framework's handle on every beamline's agents. `Mesh::agent("5.3.1")` returns
//! the tonic-generated `BeamlineAgentClient` over one balanced service per beamline, shared by
//! all callers: one fleet-wide Consul discovery watch on its own task, one connection and health
//! gate per healthy instance, tower's p2c over Peak-EWMA load beside a router for task affinity
//! and idempotency keys, failfast, deadlines, and budgeted retries where they cannot repeat an
//! effect.
//!
//! Owns the per-beamline routes and their lifetime (created on a beamline's first call, dropped
//! when idle or once the beamline has left Consul and nothing of it is in flight).

mod connection;
mod deadline;
pub mod discovery;
mod endpoint;
mod failed;
mod failfast;
mod load;
mod pool;
mod rendezvous;
mod route;
mod sweep;
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

pub use beamline_tls::{ClientFiles, PemFile, TlsError};
pub use connection::{UpstreamTls, RELOAD_EVERY as TLS_RELOAD_EVERY};
pub use deadline::Arrival;
pub use endpoint::{EndpointSettings, ServedBy};
pub use failed::CallFailed;
pub use route::CallFacts;

use beamline_consul::{ConsulClient, ConsulConfig};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::proto::beamline_agent_client::BeamlineAgentClient;
use discovery::{Discovery, Resolution, Snapshot, WatchSettings};
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
    /// How long an instance that left discovery is still followed for calls about the tasks it
    /// owns, at most (it is dropped as soon as it stops answering its health Watch).
    pub drain_bound: Duration,
    /// The largest request message a call may carry; a larger one is RESOURCE_EXHAUSTED as soon
    /// as the bound is passed, with nothing more read (gRPC's customary 4 MiB).
    pub max_message_bytes: usize,
    pub watch: WatchSettings,
    pub endpoint: EndpointSettings,
    /// Mutual TLS to agents: each instance's certificate must name its beamline
    /// (`wire::tls::agent_name`), and this end presents its own certificate if it has one.
    /// `None`: plaintext HTTP/2. The mesh reloads the files every `TLS_RELOAD_EVERY`.
    pub upstream_tls: Option<UpstreamTls>,
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
            drain_bound: Duration::from_secs(300),
            watch: WatchSettings::default(),
            endpoint: EndpointSettings::default(),
            upstream_tls: None,
        }
    }
}

/// One beamline as the mesh sees it now.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub beamline: BeamlineId,
    /// What discovery knows: the registered instances and whether Consul has them passing.
    pub resolution: Snapshot,
    /// The instances the balancer will use now (it holds them and their health gate is open);
    /// `None` while the beamline has no balancer (no call has needed one yet, or it went idle).
    /// An instance passing in Consul but not here gets no balanced call.
    pub routable: Option<std::collections::BTreeSet<String>>,
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
    settings: Arc<MeshSettings>,
    /// The one fleet-wide watch every route follows.
    discovery: Discovery,
    routes: Mutex<HashMap<BeamlineId, Arc<Route>>>,
    sweeper: tokio::task::JoinHandle<()>,
    /// Reloads the upstream TLS files, if any.
    tls_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(watch) = &self.tls_watch {
            watch.abort();
        }
    }
}

impl Mesh {
    /// A mesh over the Consul at `consul` (call inside a Tokio runtime); discovery starts at once.
    pub fn new(consul: ConsulConfig, settings: MeshSettings) -> Mesh {
        let settings = Arc::new(settings);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            discovery: discovery::spawn(ConsulClient::new(consul), settings.watch.clone()),
            sweeper: tokio::spawn(sweep::sweep(weak.clone(), settings.idle_timeout)),
            tls_watch: (settings.upstream_tls.as_ref()).map(|tls| tls.watch(TLS_RELOAD_EVERY)),
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

    /// The channel of `beamline`: each call goes through the beamline's route, created on
    /// first use, or fails NOT_FOUND at once when Consul has no such beamline (no route, no
    /// watch, nothing kept for it).
    pub fn channel(&self, beamline: &BeamlineId) -> MeshChannel {
        MeshChannel {
            mesh: self.clone(),
            beamline: beamline.clone(),
        }
    }

    /// Starts routing `beamline` before its first call (connections and health gates warm up);
    /// NOT_FOUND when Consul has no such beamline. The route goes again when idle.
    pub fn warm(&self, beamline: &BeamlineId) -> Result<(), Status> {
        self.route_for(beamline).map(drop)
    }

    fn route_for(&self, beamline: &BeamlineId) -> Result<Arc<Route>, Status> {
        let mut routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.get(beamline) {
            return Ok(route.clone());
        }
        if !self.is_known(beamline.as_str()) {
            return Err(no_instance(beamline, &Arc::new(Resolution::NotFound)));
        }
        let route = self.route(beamline);
        routes.insert(beamline.clone(), route.clone());
        Ok(route)
    }

    /// The largest request message a call may carry (`MeshSettings::max_message_bytes`): what
    /// a layer in front of the mesh that reads a message must bound its read by.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.settings.max_message_bytes
    }

    /// Whether `beamline` is registered, as far as discovery knows (before Consul has answered
    /// once, every id might be).
    pub fn is_known(&self, beamline: &str) -> bool {
        let fleet = self.inner.discovery.fleet();
        !fleet.resolved || fleet.beamlines.contains_key(beamline)
    }

    /// What discovery currently knows about `beamline`.
    pub fn resolution(&self, beamline: &BeamlineId) -> Snapshot {
        self.inner.discovery.fleet().resolution(beamline)
    }

    /// Every beamline Consul knows (routed or idle) and every beamline routed now, with what
    /// discovery knows of it and which instances its balancer will use (for status pages and
    /// metrics; it starts nothing).
    pub fn beamlines(&self) -> Vec<RouteStatus> {
        let fleet = self.inner.discovery.fleet();
        let routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: std::collections::BTreeMap<BeamlineId, RouteStatus> = fleet
            .beamlines
            .iter()
            .map(|(id, resolution)| {
                let status = RouteStatus {
                    beamline: id.clone(),
                    resolution: resolution.clone(),
                    routable: routes.get(id).map(|route| route.routable()),
                };
                (id.clone(), status)
            })
            .collect();
        for (id, route) in routes.iter() {
            all.entry(id.clone()).or_insert_with(|| RouteStatus {
                beamline: id.clone(),
                resolution: route.resolution(),
                routable: Some(route.routable()),
            });
        }
        all.into_values().collect()
    }

    /// The fleet as discovery knows it now (every beamline with its instances and their Meta),
    /// and its changes to come: the gateway's fleet catalog follows this instead of a watch of
    /// its own. A changed instance set, health, address or Meta is a change.
    pub fn fleet(&self) -> watch::Receiver<Arc<discovery::Fleet>> {
        self.inner.discovery.subscribe()
    }

    /// Discovery updates published since the mesh started.
    pub fn discovery_updates(&self) -> u64 {
        self.inner.discovery.updates()
    }

    /// Waits until discovery has answered (the whole fleet) once, or `timeout`; what it knows
    /// of `beamline` then.
    pub async fn resolved(&self, beamline: &BeamlineId, timeout: Duration) -> Snapshot {
        self.inner
            .discovery
            .resolved(timeout)
            .await
            .resolution(beamline)
    }

    fn route(&self, beamline: &BeamlineId) -> Arc<Route> {
        let settings = self.inner.settings.clone();
        let watch = self.inner.discovery.beamline(beamline);
        let snapshot = watch.subscribe();
        let (endpoints_tx, endpoints) = watch::channel(Arc::default());
        let (departed_tx, departed) = watch::channel(Arc::default());
        let pool_task = tokio::spawn(pool::follow(
            snapshot.clone(),
            pool::Published {
                endpoints: endpoints_tx,
                departed: departed_tx,
                drain_bound: settings.drain_bound,
            },
            {
                let endpoint = settings.endpoint.clone();
                let tls = (settings.upstream_tls.as_ref()).map(|tls| tls.dial(beamline));
                move |id: &str, addr: &str| {
                    endpoint::Endpoint::new(id, addr, &endpoint, tls.clone())
                }
            },
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
        let why_endpoints = endpoints.clone();
        let why = Arc::new(move || {
            let status = no_instance(&why_beamline, &why_snapshot.borrow());
            // Instances Consul has passing that the mesh cannot reach say why (a certificate
            // that does not name the beamline, a refused connection).
            match pool::failures(&why_endpoints.borrow()) {
                Some(failures) if status.code() == tonic::Code::Unavailable => {
                    Status::unavailable(format!("{} ({failures})", status.message()))
                }
                _ => status,
            }
        });
        let failfast = failfast::FailFast::new(balance, settings.failfast, why);
        let balancer = Arc::new(tokio::sync::Mutex::new(failfast));
        let discovery_task =
            tokio::spawn(route::apply_discovery(balancer.clone(), endpoints.clone()));
        Arc::new(Route {
            beamline: beamline.clone(),
            watch,
            endpoints,
            departed,
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

/// The channel under a beamline's `BeamlineAgentClient`: every call goes through the
/// beamline's route (looked up per call, so a channel made before the beamline registered
/// works once it has).
#[derive(Clone)]
pub struct MeshChannel {
    mesh: Mesh,
    beamline: BeamlineId,
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
        match self.mesh.route_for(&self.beamline) {
            Ok(route) => Box::pin(route.dispatch(request)),
            Err(status) => Box::pin(std::future::ready(Err(BoxError::from(status)))),
        }
    }
}
