//! What one agent instance runs with ([`AgentConfig`]) and how starting or serving it fails
//! ([`AgentError`]).
//!
//! Owns the settings' shape and defaults; turning flags into them is `flags`', using them the
//! runtime's.

use std::net::SocketAddr;
use std::time::Duration;

use crate::registration::CheckSettings;
use crate::tasks::TaskTableConfig;
use beamline_consul::ConsulConfig;
use beamline_tls::ServerFiles;

/// How one agent instance runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    /// `host:port` Consul and callers dial; required when `listen` is 0.0.0.0 or ::.
    pub advertise: Option<(String, u16)>,
    pub consul: ConsulConfig,
    pub check: CheckSettings,
    /// How often the registration is confirmed (and restored if gone).
    pub keepalive: Duration,
    /// The least time non-Execute calls are still served after deregistration, so discovery
    /// sees the instance leave before it stops answering.
    pub drain_grace: Duration,
    /// The most time in-flight calls and running tasks get before they are failed.
    pub drain_timeout: Duration,
    /// The most time the gRPC server gets to close its connections at the end.
    pub stop_timeout: Duration,
    pub tasks: TaskTableConfig,
    /// The largest request message accepted; a larger one is RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Consul tags added to the framework's own (`beamline-agent`).
    pub tags: Vec<String>,
    /// Consul Meta added to the framework's own keys (which win: see `wire::meta::RESERVED`).
    pub meta: std::collections::BTreeMap<String, String>,
    /// The listener's connection cap and handshake timeout (4096, 10 s). At bind,
    /// `BEAMLINE_MESH_MAX_CONNECTIONS` and `BEAMLINE_MESH_HANDSHAKE_TIMEOUT` override them, and
    /// the cap is lowered to fit the descriptor limit.
    pub connections: beamline_listen::Limits,
    /// Serve gRPC over TLS with these files (with a client CA: mutual TLS); none: plaintext.
    pub tls: Option<ServerFiles>,
    /// How often the TLS files are looked at for a renewal (5 s).
    pub tls_reload_every: Duration,
    /// Also serve gRPC health alone, in plaintext, here; the Consul check then dials its port.
    pub health_listen: Option<SocketAddr>,
}

impl AgentConfig {
    pub fn new(listen: SocketAddr, consul: ConsulConfig) -> AgentConfig {
        AgentConfig {
            listen,
            advertise: None,
            consul,
            check: CheckSettings::default(),
            keepalive: Duration::from_secs(3),
            drain_grace: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            tasks: TaskTableConfig::default(),
            max_message_bytes: 4 * 1024 * 1024,
            tags: Vec::new(),
            meta: Default::default(),
            connections: beamline_listen::Limits::default(),
            tls: None,
            tls_reload_every: Duration::from_secs(5),
            health_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "--listen {0} is a wildcard address, which Consul refuses as a service address; \
         pass --advertise HOST:PORT"
    )]
    NeedsAdvertise(SocketAddr),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// A flag or setting that cannot work, naming it.
    #[error("{0}")]
    Flag(String),
    #[error(transparent)]
    Capability(#[from] crate::capabilities::CapabilityError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Limits(#[from] beamline_listen::LimitsError),
    /// TLS files that cannot be used, naming the flag.
    #[error(transparent)]
    Tls(#[from] beamline_tls::TlsError),
}
