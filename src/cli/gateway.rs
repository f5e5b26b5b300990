//! `beamline-mesh gateway`: the front door, routing by `x-beamline` through an in-process mesh.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::gateway;
use beamline_mesh::mesh::{Mesh, MeshSettings};

use super::duration_flag;

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Consul's HTTP address (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long)]
    consul: Option<String>,
    /// Run without authentication (the only mode until the gateway-policy work lands; required
    /// so that scripts state it and keep working once authentication is the default).
    #[arg(long)]
    insecure_no_auth: bool,
    /// A call fails when no instance of its beamline is ready this long.
    #[arg(long, default_value = "3s", value_parser = duration_flag)]
    failfast: Duration,
    /// Deadline of unary calls whose caller set none.
    #[arg(long, default_value = "30s", value_parser = duration_flag)]
    unary_timeout: Duration,
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.insecure_no_auth,
        "the gateway has no authentication yet: pass --insecure-no-auth to run it without"
    );
    tracing::warn!("gateway running WITHOUT authentication (--insecure-no-auth)");
    let consul = ConsulConfig::from_env_or(args.consul.as_deref()).context("--consul")?;
    let settings = MeshSettings {
        failfast: args.failfast,
        unary_timeout: args.unary_timeout,
        ..MeshSettings::default()
    };
    let mesh = Mesh::new(consul, settings);
    let (listener, addr) = gateway::bind(args.listen).await?;
    println!("gateway listening on {addr}");
    gateway::serve(mesh, listener, super::shutdown_signal()).await?;
    Ok(())
}
