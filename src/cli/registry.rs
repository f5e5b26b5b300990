//! `beamline-mesh registry`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use beamline_mesh::registry::{self, RegistryConfig};

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
}

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
    let (registry, listener, addr) = registry::bind(config, args.listen)
        .await
        .context("cannot start the registry")?;
    // Before the listening line: a supervisor may send SIGTERM as soon as it sees it.
    let stop = super::shutdown_signal();
    println!("registry listening on http://{addr}");
    tokio::select! {
        result = registry.serve(listener) => result.context("registry server failed"),
        _ = stop => Ok(()),
    }
}
