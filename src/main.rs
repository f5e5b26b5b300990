//! The `beamline-mesh` command line: parses, builds, runs. Everything it runs lives in the
//! library; this file only wires flags to it and prints the one "listening" line per server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use beamline_mesh::registry::{self, RegistryConfig};

#[derive(Parser)]
#[command(
    name = "beamline-mesh",
    version,
    about = "A gRPC service mesh for beamline agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded Consul-compatible registry.
    Registry(RegistryArgs),
}

#[derive(clap::Args)]
struct RegistryArgs {
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
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Registry(args) => run_registry(args).await,
    }
}

async fn run_registry(args: RegistryArgs) -> anyhow::Result<()> {
    if args.datacenter.is_empty() {
        anyhow::bail!("--datacenter must not be empty");
    }
    let mut config = RegistryConfig {
        datacenter: args.datacenter,
        acl_token: args.acl_token.filter(|t| !t.is_empty()),
        data_dir: args.data_dir,
        ..RegistryConfig::default()
    };
    if let Some(name) = args.node_name {
        anyhow::ensure!(!name.is_empty(), "--node-name must not be empty");
        config.node_name = name;
    }
    let (registry, listener, addr) = registry::bind(config, args.listen)
        .await
        .context("cannot start the registry")?;
    println!("registry listening on http://{addr}");
    tokio::select! {
        result = registry.serve(listener) => result.context("registry server failed"),
        _ = shutdown_signal() => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
