//! `beamline-mesh registry`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use beamline_mesh::registry::{self, server::Limits, RegistryConfig};

use super::duration_flag;

#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Address to serve Consul's HTTP API on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8500")]
    listen: SocketAddr,
    /// Keep state in this directory (SQLite); without it, state lives in memory only.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Datacenter name reported to clients.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Node name reported to clients (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// Require this token on every request (X-Consul-Token, Authorization: Bearer, or ?token=).
    #[arg(long, env = "BEAMLINE_REGISTRY_ACL_TOKEN", hide_env_values = true)]
    acl_token: Option<String>,
    /// Memory for rendered blocking-read answers, shared by the watchers of one result, in MiB;
    /// past it the least recently used answers are dropped (and re-rendered when asked again).
    #[arg(long, default_value_t = 64)]
    answer_cache_mib: usize,
    /// A request's line and headers must arrive within this, or the connection is closed (a
    /// client that sends part of a request and stops holds no descriptor for long).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration_flag)]
    header_read_timeout: Duration,
    /// A connection with no bytes either way and no request in flight for this long is closed.
    /// A pending blocking query (`?index=&wait=`, up to 10 min) is a request in flight.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = duration_flag)]
    idle_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed at once (and logged).
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Renewed files
    /// are picked up for new connections (looked at every 5 s). Clients then use an https://
    /// address and CONSUL_CACERT, as with Consul.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates chaining to this PEM CA bundle (CONSUL_CLIENT_CERT and
    /// CONSUL_CLIENT_KEY on the clients). Needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

/// How often the TLS files are looked at for a renewal.
const TLS_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Descriptors not given to connections: check probes, SQLite, logs.
const DESCRIPTORS_KEPT: u64 = 64;

pub async fn run(args: RegistryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.datacenter.is_empty(),
        "--datacenter must not be empty"
    );
    let mut config = RegistryConfig {
        datacenter: args.datacenter,
        acl_token: args.acl_token.filter(|t| !t.is_empty()),
        data_dir: args.data_dir,
        answer_cache_bytes: args.answer_cache_mib.saturating_mul(1024 * 1024),
        ..RegistryConfig::default()
    };
    if let Some(name) = args.node_name {
        anyhow::ensure!(!name.is_empty(), "--node-name must not be empty");
        config.node_name = name;
    }
    anyhow::ensure!(args.max_connections > 0, "--max-connections must be > 0");
    // Every connection, probe and database file takes a descriptor; the soft limit is often
    // far below the hard one.
    let mut max_connections = args.max_connections;
    if let Some(nofile) = registry::rlimit::raise_nofile_limit_logged() {
        // Past the descriptor limit accept() fails and clients wait in the backlog; under the
        // cap they get a 503 at once. Descriptors are kept back for probes and storage.
        let fit = registry::rlimit::fit_cap(max_connections, nofile, DESCRIPTORS_KEPT);
        if fit < max_connections {
            tracing::warn!(
                max_connections,
                nofile,
                lowered_to = fit,
                "--max-connections exceeds the descriptor limit"
            );
            max_connections = fit;
        }
    }
    let limits = Limits {
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(registry::server::https(
            cert,
            key,
            args.client_ca.as_deref(),
        )?),
        _ => None,
    };
    let (registry, listener, addr) = registry::bind(config, args.listen)
        .await
        .context("cannot start the registry")?;
    // Held for the process's life: the watch ends with the configuration.
    let _watch = tls.as_ref().map(|tls| tls.watch(TLS_RELOAD_EVERY));
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Before the listening line: a supervisor may send SIGTERM as soon as it sees it.
    let stop = super::shutdown_signal();
    println!("registry listening on {scheme}://{addr}");
    tokio::select! {
        () = registry.serve_with(listener, limits, tls) => Ok(()),
        _ = stop => Ok(()),
    }
}
