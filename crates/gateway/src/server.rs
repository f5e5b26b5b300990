//! Serving the gateway: TLS at the door, the policy as tower layers composed with
//! `ServiceBuilder` around the router — observe (metrics + access log, outermost, so rejections
//! are counted too) → authenticate and authorize → rate-limit → refuse actuating calls while
//! halted or locked (`fleet::enforce`, after auth: the lock's rule needs the caller) → route —
//! and gRPC health and reflection beside it, outside the policy (probes carry no credential).
//!
//! Owns the composition and the listeners (bounded by `beamline-listen`: a connection cap and a
//! handshake timeout each); each layer's rules live in its own module.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Identity, ServerTlsConfig};
use tower::{Service, ServiceBuilder};

use super::auth::{AuthLayer, Authenticator};
use super::config::{ConfigError, PolicyConfig};
use super::fleet::enforce::EnforceLayer;
use super::fleet::{Facility, FleetService};
use super::limits::RateLimitLayer;
use super::observe::{GatewayMetrics, LineQueue, ObserveLayer};
use super::GatewayService;
use beamline_contract::proto::fleet_server::FleetServer;
use beamline_listen::Handshake;
use beamline_mesh_client::{Arrival, Mesh};

/// Streams one client connection may open at once.
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// The request metadata a client may send (SETTINGS_MAX_HEADER_LIST_SIZE), well above the
/// 16 KiB an agent accepts: a call whose metadata is over the agent's limit is refused alone,
/// RESOURCE_EXHAUSTED, by the mesh. At the server's 16 KiB default, h2 closes the whole client
/// connection (GOAWAY) when one request's headers pass about twice the limit, failing every
/// call on it. Past this bound h2 still does, as abuse; it is also what one connection's
/// partial header block may hold in memory.
const MAX_HEADER_LIST_BYTES: u32 = 128 * 1024;
/// HTTP/2 PINGs to idle clients, and how long an answer may take before the connection closes.
const CLIENT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);
const CLIENT_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Descriptors not given to client connections: connections to agents and Consul, the metrics
/// listener, logs.
const DESCRIPTORS_KEPT: u64 = 64;

/// A PEM certificate chain and its key.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// How the gateway serves.
pub struct GatewayOptions {
    /// `None` runs without authentication (`--insecure-no-auth`), and without limits.
    pub policy: Option<PolicyConfig>,
    pub tls: Option<TlsFiles>,
    /// Write an access log line per call.
    pub access_log: bool,
    /// Record metrics (served on the metrics listener).
    pub metrics: bool,
    /// A plaintext listener serving only grpc.health.v1 — for probes that cannot speak TLS
    /// (Kubernetes' native gRPC probes) when the gateway port does.
    pub health_listener: Option<TcpListener>,
    /// The catalog and the control state: served as `beamline.v1.Fleet`, and checked before
    /// actuating calls.
    pub facility: Facility,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Policy(#[from] ConfigError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Limits(#[from] beamline_listen::LimitsError),
}

/// The policed router under the name callers dial; it stamps each call's arrival.
#[derive(Clone)]
struct Front<S>(S);

impl<S> NamedService for Front<S> {
    const NAME: &'static str = GatewayService::NAME;
}

/// The policed Fleet service under its name.
#[derive(Clone)]
struct FleetFront<S>(S);

impl<S> NamedService for FleetFront<S> {
    const NAME: &'static str = <FleetServer<FleetService> as NamedService>::NAME;
}

impl<S> Service<http::Request<Body>> for FleetFront<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> S::Future {
        self.0.call(request)
    }
}

impl<S> Service<http::Request<Body>> for Front<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> S::Future {
        // Stamped first, so that the mesh's deadline starts with tonic's grpc-timeout timer.
        request
            .extensions_mut()
            .insert(Arrival(tokio::time::Instant::now()));
        self.0.call(request)
    }
}

/// Serves the gateway on `listener` until `shutdown`; `metrics` is shared with the metrics
/// listener. Each listener (the gateway's, the health one) takes at most 4096 connections at
/// once (`BEAMLINE_MESH_MAX_CONNECTIONS`, lowered to fit the descriptor limit) and closes one
/// that sends no HTTP/2 preface (or TLS ClientHello) within 10 s
/// (`BEAMLINE_MESH_HANDSHAKE_TIMEOUT`); see `beamline-listen`.
pub async fn serve(
    mesh: Mesh,
    listener: TcpListener,
    options: GatewayOptions,
    metrics: Arc<GatewayMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    let connections = beamline_listen::Limits::default()
        .with_env()?
        .fit_to_descriptors(DESCRIPTORS_KEPT);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(GatewayService::NAME, tonic_health::ServingStatus::Serving)
        .await;
    let reflection_v1 = beamline_contract::reflection::builder()
        .build_v1()
        .map_err(|e| GatewayError::Reflection(e.to_string()))?;
    let reflection_v1alpha = beamline_contract::reflection::builder()
        .build_v1alpha()
        .map_err(|e| GatewayError::Reflection(e.to_string()))?;

    let fleet = mesh.clone();
    metrics.label_unknown_beamlines(Box::new(move |beamline| fleet.is_known(beamline)));

    // One observer records metrics and the access log; without either, no layer at all. (With
    // the access log on, calls are counted in the metrics too.)
    let observe = (options.metrics || options.access_log).then(|| {
        let observe = ObserveLayer::new().with_metrics(metrics.clone());
        if !options.access_log {
            return observe;
        }
        match LineQueue::start() {
            Ok(queue) => observe.with_queued_access_log(Arc::new(queue)),
            Err(e) => {
                tracing::warn!("no access-log thread ({e}): lines are written as calls end");
                observe.with_access_log()
            }
        }
    });
    let (auth, limits) = match &options.policy {
        Some(policy) => (
            Some(AuthLayer::new(Arc::new(Authenticator::new(policy)?))),
            Some(RateLimitLayer::new(&policy.limits).with_metrics(metrics.clone())),
        ),
        None => (None, None),
    };
    let fleet = ServiceBuilder::new()
        .option_layer(observe.clone())
        .option_layer(auth.clone())
        // The caller's rate limit (a Fleet call names no beamline in its metadata).
        .option_layer(limits.clone())
        .service(FleetServer::new(FleetService::new(
            options.facility.clone(),
        )));
    // The mesh's message limit (`--max-message-bytes`) bounds a message the layer reads, so a
    // read-only Execute it lets through while a refusal applies is refused by nothing else.
    let max_message_bytes = mesh.max_message_bytes();
    let enforce = EnforceLayer::new(&options.facility, mesh.clone(), max_message_bytes);
    let front = ServiceBuilder::new()
        .option_layer(observe)
        .option_layer(auth)
        .option_layer(limits)
        .layer(enforce)
        .service(GatewayService::new(mesh));

    // The health listener stops with the gateway.
    let stop_health = tokio_util::sync::CancellationToken::new();
    let health_server = options.health_listener.map(|listener| {
        let service = health_service.clone();
        let stopped = stop_health.clone().cancelled_owned();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    beamline_listen::incoming(listener, connections, Handshake::Http2),
                    stopped,
                ),
        )
    });
    let shutdown = {
        let stop_health = stop_health.clone();
        async move {
            shutdown.await;
            stop_health.cancel();
        }
    };

    let mut server = tonic::transport::Server::builder()
        // Advertised to every client (SETTINGS_MAX_CONCURRENT_STREAMS): past it a stream is
        // refused, never queued.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        // A client that went away without a FIN is noticed, and its connection released.
        .http2_keepalive_interval(Some(CLIENT_KEEPALIVE))
        .http2_keepalive_timeout(Some(CLIENT_KEEPALIVE_TIMEOUT));
    let mut handshake = Handshake::Http2;
    if let Some(tls) = options.tls {
        handshake = Handshake::Tls;
        let identity = Identity::from_pem(tls.cert_pem, tls.key_pem);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| GatewayError::Tls(e.to_string()))?;
    }
    let served = server
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(Front(front))
        .add_service(FleetFront(fleet))
        .serve_with_incoming_shutdown(
            beamline_listen::incoming(listener, connections, handshake),
            shutdown,
        )
        .await;
    stop_health.cancel();
    if let Some(health_server) = health_server {
        let _ = health_server.await;
    }
    served?;
    Ok(())
}

/// Binds a listener (the gateway's, or the metrics one).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| GatewayError::Bind { addr, source })?;
    Ok((listener, local))
}
