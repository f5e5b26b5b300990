//! `beamline-mesh agent`: the reference agent of a simulated beamline, built on the agent SDK
//! with the SDK's standard flags (plus `--seed`, the simulation's own).

use beamline_mesh::agent::AgentFlags;
use beamline_mesh::demo::{self, sim::Sim};

#[derive(clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    flags: AgentFlags,
    /// Seed of the simulated beamline (same seed, same readings).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    // As the SDK's process::run does for a team's agent: start from the hard descriptor limit.
    beamline_mesh::registry::rlimit::raise_nofile_limit_logged();
    let sim = Sim::new(args.seed);
    let agent = demo::agent(env!("CARGO_PKG_VERSION"), &sim);
    // The handlers are installed here, before the SDK prints the listening line: a supervisor
    // may send SIGTERM as soon as it sees it.
    agent.serve(args.flags, super::shutdown_signal()).await?;
    Ok(())
}
