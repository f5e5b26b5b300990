//! Serving one agent instance: a tonic server with gRPC health and reflection in front of the
//! author's `BeamlineAgent` implementation, registered in Consul once it serves, kept registered,
//! and drained in the order that never routes a caller to an instance that is gone:
//! NOT_SERVING → deregister → refuse new Execute → serve the rest for the drain grace and until
//! calls and tasks end (bounded) → fail what still runs (DRAIN_TIMEOUT) → stop the server
//! (bounded too: tonic's graceful stop can wait on idle connections forever). Its listener is
//! bounded (`beamline-listen`): a connection cap fitted under the descriptor limit, and a
//! handshake timeout for clients that connect and send no HTTP/2 preface (or TLS ClientHello).
//! With TLS (`tls`, `identity`), the certificates follow their files while serving, and a
//! plaintext health-only listener, when configured, is what Consul's check dials (`server`).
//! From bind on it follows the facility's control state (halts, locks: `control`), and waits
//! a moment for its first read before it says it listens; the registration carries the card's
//! revision and, when the served agent enforces the state, `Meta.controls`.
//!
//! Owns that lifecycle, driving `drain_window`'s decision of how long the drain lasts; what the
//! agent does is the author's, what Consul's JSON looks like is `consul`'s.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use super::control::{Control, Locks};
use super::drain::Drain;
use super::identity::Identity;
use super::registration;
use super::services::{RequestGuard, Services};
use super::tasks::{codes, TaskTable};
use super::Instance;
use beamline_consul::control::ControlWatch;
use beamline_consul::{ConsulClient, Deregistered};
use beamline_contract::address::host_port;
use beamline_contract::proto::beamline_agent_server::{BeamlineAgent, BeamlineAgentServer};
use beamline_contract::proto::DescribeRequest;
use beamline_tls::Reloading;
use drain_window::{DrainWindow, Step};

pub use config::{AgentConfig, AgentError};

mod config;
mod drain_window;
mod server;
/// How long the streams of tasks failed at the drain timeout get to carry their last event out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Descriptors not given to connections: Consul, logs, what the agent's own code opens.
const DESCRIPTORS_KEPT: u64 = 64;
/// How long bind waits for the control state's first read: a reachable Consul answers in
/// milliseconds, so a caller who sees the listening line is not refused actuating work for a
/// state not yet read; an unreachable one does not hold the start up (actuating work is then
/// refused until it answers).
const FIRST_CONTROL_READ: Duration = Duration::from_secs(2);

/// A bound, not yet serving, agent instance.
pub struct AgentRuntime {
    instance: Instance,
    config: AgentConfig,
    listener: TcpListener,
    local: SocketAddr,
    advertise: (String, u16),
    tasks: TaskTable,
    drain: Drain,
    tls: Option<Arc<Reloading<ServerConfig>>>,
    health: Option<(TcpListener, SocketAddr)>,
    consul: ConsulClient,
    /// The follower of the control state; it stops when serve() returns.
    control_watch: ControlWatch,
    control: Control,
}

impl AgentRuntime {
    /// Binds the listener (port 0 picks one) and prepares the task table.
    pub async fn bind(
        instance: Instance,
        mut config: AgentConfig,
    ) -> Result<AgentRuntime, AgentError> {
        if config.listen.ip().is_unspecified() && config.advertise.is_none() {
            return Err(AgentError::NeedsAdvertise(config.listen));
        }
        config.connections = config
            .connections
            .with_env()?
            .fit_to_descriptors(DESCRIPTORS_KEPT);
        // Before any socket: bad TLS files are a start-up error naming the flag.
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_tls)
            .transpose()?;
        let (listener, local) = server::bind_to(config.listen).await?;
        let health = match config.health_listen {
            Some(addr) => Some(server::bind_to(addr).await?),
            None => None,
        };
        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| (local.ip().to_string(), local.port()));
        let tasks = TaskTable::new(instance.instance_id.clone(), config.tasks.clone());
        let consul = ConsulClient::new(config.consul.clone());
        // Only over mutual TLS can the agent tell a lock's holder from anyone else.
        let locks = match &config.tls {
            Some(files) if files.client_ca.is_some() => Locks::Enforced,
            _ => Locks::AtGateway,
        };
        let (control_watch, control) =
            Control::follow(consul.clone(), instance.beamline.to_string(), locks);
        if !control.first_read(FIRST_CONTROL_READ).await {
            warn!("the control state (halts, locks) is not read yet: actuating work is refused until it is");
        }
        Ok(AgentRuntime {
            instance,
            config,
            listener,
            local,
            advertise,
            tasks,
            drain: Drain::default(),
            tls,
            health,
            consul,
            control_watch,
            control,
        })
    }

    /// The agent's handle on the facility's halts and locks: hand it to the service that
    /// enforces them (`AgentService::with_control`).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The health-only listener's bound address (`--health-listen`).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(|(_, addr)| *addr)
    }

    /// The `host:port` registered in Consul.
    pub fn advertised(&self) -> String {
        let (host, port) = &self.advertise;
        host_port(host, *port)
    }

    /// The task table the agent must use, so that draining sees its running tasks.
    pub fn tasks(&self) -> TaskTable {
        self.tasks.clone()
    }

    /// Serves `agent` until `shutdown` resolves, then drains and returns.
    pub async fn serve<A: BeamlineAgent>(
        self,
        agent: A,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        let AgentRuntime {
            instance,
            config,
            listener,
            advertise,
            tasks,
            drain,
            tls,
            health: health_listener,
            consul,
            control_watch,
            control,
            ..
        } = self;
        // Held until serve() returns: dropping it stops the follower.
        let _control_watch = control_watch;
        // What Describe says, before the agent is handed to the server.
        let card_revision = match agent
            .describe(tonic::Request::new(DescribeRequest {}))
            .await
        {
            Ok(card) => Some(card.into_inner().card_revision),
            Err(status) => {
                warn!(%status, "Describe failed: registering without Meta.card_revision");
                None
            }
        };
        let agent_name = <BeamlineAgentServer<A> as NamedService>::NAME;
        let (mut health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(agent_name, ServingStatus::Serving)
            .await;
        health.set_service_status("", ServingStatus::Serving).await;
        let reflection_v1 = beamline_contract::reflection::builder()
            .build_v1()
            .map_err(|e| AgentError::Reflection(e.to_string()))?;
        let reflection_v1alpha = beamline_contract::reflection::builder()
            .build_v1alpha()
            .map_err(|e| AgentError::Reflection(e.to_string()))?;
        let services = Services::default()
            .serve(health_service.clone())
            .serve(reflection_v1)
            .serve(reflection_v1alpha)
            .serve_named(
                agent_name,
                // Outermost: no capability, nor the guard, sees an identity not vouched for.
                Identity::new(
                    RequestGuard::new(
                        // Ours is the limit: tonic's would answer OUT_OF_RANGE from the frame's
                        // declared length, before ours counts the bytes.
                        BeamlineAgentServer::new(agent).max_decoding_message_size(usize::MAX),
                        config.max_message_bytes,
                    ),
                    tls.is_some(),
                ),
            );
        // The same reporter: draining turns both NOT_SERVING at once.
        let health_only = Services::default().serve(health_service);

        let stop_server = CancellationToken::new();
        // Looks at the TLS files for renewals until serve() returns.
        let _reload = tls
            .as_ref()
            .map(|tls| server::AbortOnDrop(tls.watch(config.tls_reload_every)));
        let mut server = server::spawn_main(
            listener,
            config.connections,
            tls,
            drain.clone(),
            services,
            stop_server.clone(),
        );
        let mut check = config.check.clone();
        let health_server = health_listener.map(|(listener, addr)| {
            check.port = Some(addr.port());
            info!(%addr, "serving gRPC health in plaintext");
            server::AbortOnDrop(server::spawn_health(
                listener,
                config.connections.handshake_timeout,
                health_only,
                stop_server.clone(),
            ))
        });

        let mut registration = registration::registration(
            &instance,
            &advertise.0,
            advertise.1,
            &check,
            &config.tags,
            &config.meta,
        );
        registration::advertise(
            &mut registration,
            card_revision.as_deref(),
            control.advertised(),
        );
        let stop_keepalive = CancellationToken::new();
        let keepalive = tokio::spawn(registration::keep_registered(
            consul.clone(),
            registration,
            config.keepalive,
            stop_keepalive.clone(),
        ));

        tokio::select! {
            _ = shutdown => {}
            result = &mut server => {
                // The server ended by itself: nothing left to drain.
                stop_keepalive.cancel();
                let _ = keepalive.await;
                deregister(&consul, &instance.instance_id).await;
                return match result {
                    Ok(r) => r.map_err(AgentError::from),
                    Err(e) => Err(AgentError::Reflection(format!("server task failed: {e}"))),
                };
            }
        }

        info!(instance = %instance.instance_id, "shutting down: draining");
        health
            .set_service_status(agent_name, ServingStatus::NotServing)
            .await;
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        stop_keepalive.cancel();
        let _ = keepalive.await;
        deregister(&consul, &instance.instance_id).await;
        tasks.refuse_new();
        drain.start();

        wait_out_the_drain(&drain, &tasks, &config).await;

        // End the health Watch streams (a mesh holds one per instance, for as long as the
        // instance lives): the server's graceful stop waits for every stream, and a proxy's
        // Watch would hold it until the stop bound. Without them, a connection with nothing
        // running closes as soon as the server says GOAWAY.
        health.clear_service_status(agent_name).await;
        health.clear_service_status("").await;
        stop_server.cancel();
        match tokio::time::timeout(config.stop_timeout, &mut server).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => warn!(error = %e, "server task failed"),
            Err(_) => {
                warn!("gRPC server did not stop in time; closing it");
                server.abort();
            }
        }
        if let Some(mut health_server) = health_server {
            // Its streams ended with the statuses cleared; bounded all the same.
            let _ = tokio::time::timeout(config.stop_timeout, &mut health_server.0).await;
        }
        info!(instance = %instance.instance_id, "stopped");
        Ok(())
    }
}

/// Serves the drain for as long as [`DrainWindow`] says, then fails what still runs if it says so.
async fn wait_out_the_drain(drain: &Drain, tasks: &TaskTable, config: &AgentConfig) {
    let mut window = DrainWindow::new(Instant::now(), config.drain_grace, config.drain_timeout);
    // Each count reaching zero once, as the drain has always counted "quiet".
    let mut quiet = std::pin::pin!(async {
        tokio::join!(drain.settled(), tasks.idle());
    });
    loop {
        let busy = tasks.running() > 0 || drain.in_flight() > 0;
        match window.next(Instant::now(), busy) {
            Step::Stop => return,
            Step::FailRunning => break,
            Step::Wait { until, for_quiet } => tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = &mut quiet, if for_quiet => window.on_quiet(),
            },
        }
    }
    warn!(
        running = tasks.running(),
        in_flight = drain.in_flight(),
        "drain timeout passed; failing running tasks"
    );
    tasks.fail_running(
        codes::DRAIN_TIMEOUT,
        "the agent shut down before the task ended",
        true,
    );
    // Let the streams carry the terminal events out before the server stops.
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, drain.settled()).await;
}

async fn deregister(consul: &ConsulClient, id: &str) {
    match consul.deregister(id).await {
        Ok(Deregistered::Removed) => info!(service_id = %id, "deregistered from Consul"),
        Ok(Deregistered::AlreadyGone) => info!(service_id = %id, "already gone from Consul"),
        Err(e) => warn!(service_id = %id, error = %e, "cannot deregister from Consul"),
    }
}

#[cfg(test)]
mod tests;
