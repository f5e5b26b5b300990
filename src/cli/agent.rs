//! `beamline-mesh agent`: the reference agent of a simulated beamline, on the agent runtime.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use beamline_mesh::agent::{AgentConfig, AgentRuntime, Instance};
use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::demo::DemoAgent;

use super::duration_flag;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The beamline this agent serves (e.g. 5.3.1).
    #[arg(long)]
    beamline: BeamlineId,
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// HOST:PORT that Consul and callers dial (required when --listen is 0.0.0.0 or ::).
    #[arg(long, value_parser = parse_host_port)]
    advertise: Option<(String, u16)>,
    /// Consul's HTTP address (default: $CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
    #[arg(long)]
    consul: Option<String>,
    /// Seed of the simulated beamline (same seed, same readings).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Interval of the gRPC health check Consul runs.
    #[arg(long, default_value = "2s", value_parser = duration_flag)]
    check_interval: Duration,
    /// Timeout of that health check.
    #[arg(long, default_value = "1s", value_parser = duration_flag)]
    check_timeout: Duration,
    /// Consul removes the instance once its check has been critical this long.
    #[arg(long, default_value = "1m", value_parser = duration_flag)]
    deregister_after: Duration,
    /// How often the registration is confirmed (and restored when gone).
    #[arg(long, default_value = "3s", value_parser = duration_flag)]
    keepalive: Duration,
    /// At shutdown, keep serving reads at least this long after deregistering.
    #[arg(long, default_value = "2s", value_parser = duration_flag)]
    drain_grace: Duration,
    /// At shutdown, the most time running tasks get before they fail with DRAIN_TIMEOUT.
    #[arg(long, default_value = "30s", value_parser = duration_flag)]
    drain_timeout: Duration,
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
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

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let consul = ConsulConfig::from_env_or(args.consul.as_deref()).context("--consul")?;
    let mut config = AgentConfig::new(args.listen, consul);
    config.advertise = args.advertise;
    config.check.interval = args.check_interval;
    config.check.timeout = args.check_timeout;
    config.check.deregister_critical_after = args.deregister_after;
    config.keepalive = args.keepalive;
    config.drain_grace = args.drain_grace;
    config.drain_timeout = args.drain_timeout;

    let instance = Instance::new(args.beamline.clone(), env!("CARGO_PKG_VERSION"));
    let runtime = AgentRuntime::bind(instance, config).await?;
    let agent = DemoAgent::new(runtime.instance(), runtime.tasks(), args.seed);
    // Before the listening line: a supervisor may send SIGTERM as soon as it sees it.
    let stop = super::shutdown_signal();
    println!(
        "agent beamline {} listening on {}",
        args.beamline,
        runtime.local_addr()
    );
    runtime.serve(agent, stop).await?;
    Ok(())
}
