//! The standard agent flags, as every agent binary takes them (and `helm/beamline-agent` passes
//! them): where to listen and be reached, which Consul, the check, keep-alive and drain timings,
//! the tags and Meta a team adds to the registration, and TLS: the certificate an agent serves
//! with, the CA its callers' certificates must chain to (mutual TLS), and a plaintext listener
//! for health alone (checkers cannot present client certificates). `CONSUL_HTTP_ADDR` and
//! `CONSUL_HTTP_TOKEN` are read as Consul's own tools read them.
//!
//! Owns turning flags into an [`AgentConfig`] and refusing bad ones with the flag's name; it
//! must not serve or register (the runtime does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use beamline_consul::{ConsulConfig, ConsulError};
use beamline_contract::beamline::BeamlineId;
use beamline_contract::wire::meta;
use beamline_tls::{PemFile, ServerFiles};

use crate::{AgentConfig, AgentError, AgentRuntime, Instance};

/// Consul's limits on service Meta (its agent refuses more): keys, key length, value length.
const MAX_META_PAIRS: usize = 64;
const MAX_META_KEY: usize = 128;
const MAX_META_VALUE: usize = 512;

/// The flags of one agent instance.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFlags {
    /// The beamline this agent serves (e.g. 5.3.1).
    #[arg(long)]
    pub beamline: BeamlineId,
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// HOST:PORT that Consul and callers dial (required when --listen is 0.0.0.0 or ::).
    #[arg(long, value_parser = parse_host_port)]
    pub advertise: Option<(String, u16)>,
    /// Consul's HTTP address (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long)]
    pub consul: Option<String>,
    /// Interval of the gRPC health check Consul runs.
    #[arg(long, default_value = "2s", value_parser = duration_flag)]
    pub check_interval: Duration,
    /// Timeout of that health check.
    #[arg(long, default_value = "1s", value_parser = duration_flag)]
    pub check_timeout: Duration,
    /// Consul removes the instance once its check has been critical this long.
    #[arg(long, default_value = "1m", value_parser = duration_flag)]
    pub deregister_after: Duration,
    /// How often the registration is confirmed (and restored when gone).
    #[arg(long, default_value = "3s", value_parser = duration_flag)]
    pub keepalive: Duration,
    /// At shutdown, keep serving reads at least this long after deregistering.
    #[arg(long, default_value = "2s", value_parser = duration_flag)]
    pub drain_grace: Duration,
    /// At shutdown, the most time running tasks get before they fail with DRAIN_TIMEOUT.
    #[arg(long, default_value = "30s", value_parser = duration_flag)]
    pub drain_timeout: Duration,
    /// The most tasks that run at once; another Execute is refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tasks: u32,
    /// The largest request message accepted (bytes); a larger one is RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// A Consul tag added to the registration (repeatable), e.g. for tag-driven Consul tools.
    #[arg(long = "tag", value_name = "TAG", value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// A Consul Meta entry added to the registration (repeatable). The keys the framework
    /// writes (beamline, instance_id, agent_version, sdk_version, card_revision, controls)
    /// are reserved.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// PEM certificate chain to serve gRPC over TLS with (ALPN h2; with --tls-key). Files
    /// renewed in place are used from the next connection on.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: callers must present a certificate chaining to one (mutual TLS);
    /// needs --tls-cert. Only a caller whose certificate names the gateway is trusted with
    /// x-caller and x-role; anyone else's are removed.
    #[arg(long, value_name = "PATH")]
    pub client_ca: Option<PathBuf>,
    /// Also serve gRPC health (grpc.health.v1 only, plaintext) on this address, and point the
    /// Consul check at its port on the advertised host: checkers and probes cannot present
    /// client certificates.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
}

impl AgentFlags {
    /// Flags with every default, for `beamline` (tests and embedders).
    pub fn new(beamline: BeamlineId) -> AgentFlags {
        AgentFlags {
            beamline,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            consul: None,
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(1),
            deregister_after: Duration::from_secs(60),
            keepalive: Duration::from_secs(3),
            drain_grace: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            max_tasks: 1000,
            max_message_bytes: 4 * 1024 * 1024,
            tags: Vec::new(),
            meta: Vec::new(),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            health_listen: None,
        }
    }

    /// The TLS files of `--tls-cert`, `--tls-key` and `--client-ca`; none without TLS.
    fn tls(&self) -> Result<Option<ServerFiles>, AgentError> {
        let client_ca = self
            .client_ca
            .as_ref()
            .map(|ca| PemFile::new("--client-ca", ca));
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(ServerFiles {
                cert: PemFile::new("--tls-cert", cert),
                key: PemFile::new("--tls-key", key),
                client_ca,
            })),
            (Some(_), None) => Err(AgentError::Flag("--tls-cert needs --tls-key".into())),
            (None, Some(_)) => Err(AgentError::Flag("--tls-key needs --tls-cert".into())),
            (None, None) if client_ca.is_some() => Err(AgentError::Flag(
                "--client-ca needs --tls-cert and --tls-key: client certificates are asked \
                 for in a TLS handshake"
                    .into(),
            )),
            (None, None) => Ok(None),
        }
    }

    /// The runtime configuration these flags give; Consul's address from `--consul`, else
    /// `CONSUL_HTTP_ADDR`, else the local agent.
    pub fn config(&self) -> Result<AgentConfig, AgentError> {
        let consul =
            ConsulConfig::from_env_or(self.consul.as_deref()).map_err(|e: ConsulError| {
                AgentError::Flag(format!(
                    "Consul client configuration (--consul and CONSUL_* variables): {e}"
                ))
            })?;
        if self.meta.len() > MAX_META_PAIRS {
            return Err(AgentError::Flag(format!(
                "--meta: {} entries; Consul takes at most {MAX_META_PAIRS}",
                self.meta.len()
            )));
        }
        let mut meta = BTreeMap::new();
        for (key, value) in &self.meta {
            if meta.insert(key.clone(), value.clone()).is_some() {
                return Err(AgentError::Flag(format!("--meta: {key} is given twice")));
            }
        }
        let mut config = AgentConfig::new(self.listen, consul);
        config.advertise = self.advertise.clone();
        config.check.interval = self.check_interval;
        config.check.timeout = self.check_timeout;
        config.check.deregister_critical_after = self.deregister_after;
        config.keepalive = self.keepalive;
        config.drain_grace = self.drain_grace;
        config.drain_timeout = self.drain_timeout;
        config.tasks.max_running = self.max_tasks as usize;
        config.max_message_bytes = self.max_message_bytes;
        config.tags = self.tags.clone();
        config.meta = meta;
        config.tls = self.tls()?;
        if config.tls.is_some() && self.health_listen.is_none() {
            // Consul's gRPC check and Kubernetes' gRPC probes speak plaintext (and cannot present
            // a client certificate): on the TLS port they would fail, and the instance would
            // stay critical, never routed.
            return Err(AgentError::Flag(
                "--tls-cert needs --health-listen: Consul's gRPC check and Kubernetes' probes \
                 ask a plaintext health-only port"
                    .into(),
            ));
        }
        config.health_listen = self.health_listen;
        Ok(config)
    }

    /// Binds the agent of these flags, version `agent_version`, and prints the line a supervisor
    /// (and `.ci/run`, and the tests) waits for: `agent beamline <id> listening on <addr>`.
    /// Install the shutdown signal handlers before calling this (see [`crate::process`]).
    pub async fn bind(&self, agent_version: &str) -> Result<AgentRuntime, AgentError> {
        let instance = Instance::new(self.beamline.clone(), agent_version);
        let runtime = AgentRuntime::bind(instance, self.config()?).await?;
        println!(
            "agent beamline {} listening on {}",
            self.beamline,
            runtime.local_addr()
        );
        Ok(runtime)
    }
}

/// A Go-style duration flag ("2s", "1m30s", "500ms").
pub fn duration_flag(s: &str) -> Result<Duration, String> {
    beamline_consul::duration::parse_go(s).map_err(|e| e.to_string())
}

/// `HOST:PORT` (IPv6 hosts in brackets) that can be dialled: no wildcard host, no port 0.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?} has no valid port"))?;
    if port == 0 {
        return Err(format!("{s:?}: the port must not be 0"));
    }
    if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        return Err(format!("{s:?}: a wildcard address cannot be dialled"));
    }
    Ok((host.to_string(), port))
}

fn parse_tag(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err("a tag is 1 to 255 characters, none of them control characters".into());
    }
    Ok(s.to_string())
}

/// `KEY=VALUE` with a key Consul accepts (letters, digits, `_` and `-`, at most 128) that the
/// framework does not write itself.
fn parse_meta(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE".to_string())?;
    if key.is_empty()
        || key.len() > MAX_META_KEY
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "the key must be 1 to {MAX_META_KEY} letters, digits, '_' or '-'"
        ));
    }
    if meta::RESERVED.contains(&key) {
        return Err(format!(
            "the key {key} is reserved: the framework writes it (reserved: {})",
            meta::RESERVED.join(", ")
        ));
    }
    if value.len() > MAX_META_VALUE {
        return Err(format!("the value is over {MAX_META_VALUE} bytes"));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests;
