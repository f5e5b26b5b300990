//! The `beamline-mesh` command line: parses, builds, runs. Everything it runs lives in the
//! library; the `cli` modules only wire flags to it and print what a user reads.

mod cli;

use beamline_mesh::agent::process::{LogFormat, ProcessFlags};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "beamline-mesh",
    version,
    about = "A gRPC service mesh for beamline agents"
)]
struct Cli {
    /// `--log-format` and `--worker-threads`, as every agent built on the SDK takes them.
    #[command(flatten)]
    process: ProcessFlags,
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
    /// Read an API key on stdin and print its SHA-256 (for the gateway's --auth-file).
    HashKey(cli::hash_key::HashKeyArgs),
    /// halt, resume, lock, unlock: the facility's stop button and beamline locks.
    #[command(flatten)]
    Control(cli::control::ControlCommand),
}

/// Logs to stderr. Servers (`background`) batch their lines through a writer thread (a gateway
/// writes an access-log line per call, and a call must not wait on stderr); the guard writes
/// what is left when dropped, so `main` holds it until it returns. Short-lived commands write
/// directly (`call` ends with `process::exit`, which would skip the guard).
fn init_tracing(format: LogFormat, background: bool) -> Option<cli::log_writer::WriterGuard> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let batched = if background {
        // Without a writer thread (the system refused one), write in place.
        cli::log_writer::BatchedStderr::start().ok()
    } else {
        None
    };
    let (writer, guard) = match batched {
        Some((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        None => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
    guard
}

fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    let cli = Cli::parse();
    let background = matches!(
        cli.command,
        Command::Registry(_) | Command::Agent(_) | Command::Gateway(_)
    );
    // Declared before the runtime, so dropped after it: the last lines are written.
    let _log_guard = init_tracing(cli.process.log_format, background);
    let runtime = cli.process.runtime().context("start the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Registry(args) => cli::registry::run(args).await,
        Command::Agent(args) => cli::agent::run(args).await,
        Command::Gateway(args) => cli::gateway::run(args).await,
        Command::Agents(args) => cli::agents::run(args).await,
        Command::Call(args) => cli::call::run(args).await,
        Command::Dev(args) => cli::dev::run(args).await,
        Command::Demo(args) => cli::demo::run(args).await,
        Command::HashKey(args) => cli::hash_key::run(args).await,
        Command::Control(command) => cli::control::run(command).await,
    }
}
