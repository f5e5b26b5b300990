//! The `beamline-mesh` command line: parses, builds, runs. Everything it runs lives in the
//! library; the `cli` modules only wire flags to it and print what a user reads.

mod cli;

use clap::{Parser, Subcommand};

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
    Registry(cli::registry::RegistryArgs),
    /// Run the reference agent of a simulated beamline.
    Agent(cli::agent::AgentArgs),
    /// Run the gateway: BeamlineAgent for every beamline, routed by `x-beamline`.
    Gateway(cli::gateway::GatewayArgs),
    /// List every beamline registered in Consul, with its instances and their health.
    Agents(cli::agents::AgentsArgs),
    /// Call one agent (describe, execute, get, cancel) and print proto3 JSON.
    Call(cli::call::CallArgs),
    /// Run the registry, the gateway and demo agents locally until Ctrl-C.
    Dev(cli::dev::DevArgs),
    /// Start the local stack on free ports, take a scripted tour of the mesh, stop, exit 0.
    Demo(cli::demo::DemoArgs),
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
    match Cli::parse().command {
        Command::Registry(args) => cli::registry::run(args).await,
        Command::Agent(args) => cli::agent::run(args).await,
        Command::Gateway(args) => cli::gateway::run(args).await,
        Command::Agents(args) => cli::agents::run(args).await,
        Command::Call(args) => cli::call::run(args).await,
        Command::Dev(args) => cli::dev::run(args).await,
        Command::Demo(args) => cli::demo::run(args).await,
    }
}
