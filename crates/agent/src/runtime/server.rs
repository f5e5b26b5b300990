//! The gRPC servers of one agent instance: the main one, on the bounded listener, plaintext or
//! TLS (each connection handshaken with the configuration current when it was accepted), and
//! the optional health-only one (`--health-listen`): plaintext, because Consul's gRPC check and
//! Kubernetes' probes cannot present client certificates, and serving nothing but
//! `grpc.health.v1`, so it opens no way around mutual TLS.
//!
//! Owns how each server is bound, built and fed; what they serve and when they stop are the runtime's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::drain::Drain;
use crate::services::Services;
use beamline_listen::{Handshake, Limits};
use beamline_tls::Reloading;

/// Streams one connection may open at once (a gateway multiplexes every caller over one).
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// HTTP/2 PINGs to idle peers, and how long an answer may take before the connection closes.
const PEER_KEEPALIVE: Duration = Duration::from_secs(30);
const PEER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections the health listener keeps open at once: a checker or two, a probe, with room
/// to spare, since anyone who reaches the port can open them (it asks no certificate).
const HEALTH_CONNECTIONS: usize = 256;
/// How long a health connection may live: a peer holding connections open to fill the cap
/// (and so keep Consul's check out, getting the instance deregistered) loses them this often.
/// A checker that keeps its connection reconnects; one that dials per check never notices.
const HEALTH_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// A server running until its stop token is cancelled.
pub(super) type Running = JoinHandle<Result<(), tonic::transport::Error>>;

fn builder() -> Server {
    Server::builder()
        // Advertised to every peer (SETTINGS_MAX_CONCURRENT_STREAMS): past it a stream is
        // refused, never queued; the task table bounds running work on its own.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // A peer that went away without a FIN (a host lost, a NAT that forgot) is noticed
        // and its connection and streams released.
        .http2_keepalive_interval(Some(PEER_KEEPALIVE))
        .http2_keepalive_timeout(Some(PEER_KEEPALIVE_TIMEOUT))
}

/// Serves `services` on `listener` within `limits`, over TLS when `tls` is given, behind the
/// drain layer, until `stop`.
pub(super) fn spawn_main(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<Reloading<ServerConfig>>>,
    drain: Drain,
    services: Services,
    stop: CancellationToken,
) -> Running {
    let server = builder().layer(drain);
    let stopped = async move { stop.cancelled().await };
    match tls {
        None => {
            // Past the cap a connection is closed at once; one that sends no HTTP/2 preface
            // within the handshake timeout is closed too.
            let incoming = beamline_listen::incoming(listener, limits, Handshake::Http2);
            tokio::spawn(server.serve_with_incoming_shutdown(services, incoming, stopped))
        }
        Some(config) => {
            // The same bounds, for a ClientHello; then the whole TLS handshake gets as long.
            let accepted = beamline_listen::incoming(listener, limits, Handshake::Tls);
            let incoming = crate::tls::incoming(accepted, config, limits.handshake_timeout);
            tokio::spawn(server.serve_with_incoming_shutdown(services, incoming, stopped))
        }
    }
}

/// Serves `health` (a router with the health service alone) in plaintext on `listener` until
/// `stop`.
pub(super) fn spawn_health(
    listener: TcpListener,
    handshake_timeout: Duration,
    health: Services,
    stop: CancellationToken,
) -> Running {
    let limits = Limits {
        max_connections: HEALTH_CONNECTIONS,
        handshake_timeout,
    };
    let incoming = beamline_listen::incoming(listener, limits, Handshake::Http2);
    tokio::spawn(
        builder()
            .max_connection_age(HEALTH_CONNECTION_AGE)
            .serve_with_incoming_shutdown(health, incoming, async move { stop.cancelled().await }),
    )
}

/// Binds `addr` (port 0 picks one): the listener and its bound address.
pub(super) async fn bind_to(
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), crate::AgentError> {
    let bind_error = |source| crate::AgentError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// A task that ends with its owner (a reload watcher, a server that must not outlive serve()).
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
