//! Many real SDK agents in a few processes, for the benches that need a fleet: the bench
//! re-executes itself with `--serve-agents N --first K --per-beamline P --consul ADDR`, and that
//! process binds, serves and registers agents `K..K+N` (agent `i` serves beamline
//! [`beamline`]`(i / P)`: `9.<b/100>.<b%100>`, one read-only capability) in one Tokio runtime,
//! as `beamline-mesh agent` would, prints one listening line and serves until killed.

use anyhow::{Context, Result};

use beamline_mesh::agent::{Agent, AgentFlags, AgentRuntime, Instance, NoParams, ReadOnly};
use beamline_mesh::beamline::BeamlineId;

use super::Proc;

/// The flag that makes a bench serve agents instead of measuring.
pub const SERVE_AGENTS: &str = "--serve-agents";
/// Agents hosted by one process (one Tokio runtime).
pub const AGENTS_PER_PROCESS: usize = 250;
/// The Consul service names of the bench's beamlines (`9.x.y` → `beamline-9-x-y`).
pub const PREFIX: &str = "beamline-9-";
const AGENT_VERSION: &str = "bench-fleet";

/// The id of the bench's beamline `b`.
pub fn beamline(b: usize) -> String {
    format!("9.{}.{}", b / 100, b % 100)
}

/// Whether this process was started to serve agents.
pub fn asked_to_serve(args: &[String]) -> bool {
    args.iter().any(|a| a == SERVE_AGENTS)
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<&'a str> {
    let at = args
        .iter()
        .position(|a| a == flag)
        .context(flag.to_string())?;
    args.get(at + 1)
        .map(String::as_str)
        .with_context(|| format!("{flag} needs a value"))
}

/// Starts the processes serving `instances` agents, `per_beamline` instances per beamline,
/// registering in the registry at `consul` (host:port).
pub fn spawn(instances: usize, per_beamline: usize, consul: &str) -> Result<Vec<Proc>> {
    let mut processes = Vec::new();
    for first in (0..instances).step_by(AGENTS_PER_PROCESS) {
        let count = AGENTS_PER_PROCESS.min(instances - first);
        let mut command = super::this_bench()?;
        command.args([
            SERVE_AGENTS,
            &count.to_string(),
            "--first",
            &first.to_string(),
            "--per-beamline",
            &per_beamline.to_string(),
            "--consul",
            consul,
        ]);
        super::die_with_parent(&mut command);
        processes.push(Proc::start("agents", command)?);
    }
    Ok(processes)
}

/// The agents' process: binds agents `K..K+N`, serves and registers each, prints one listening
/// line, and serves until it is killed.
pub fn serve(args: &[String]) -> Result<()> {
    let count: usize = flag_value(args, SERVE_AGENTS)?.parse()?;
    let first: usize = flag_value(args, "--first")?.parse()?;
    let per_beamline: usize = flag_value(args, "--per-beamline")?.parse()?;
    let consul = flag_value(args, "--consul")?.to_string();
    beamline_mesh::registry::rlimit::raise_nofile_limit()?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .init();
    super::runtime()?.block_on(async move {
        let mut first_addr = None;
        for i in first..first + count {
            let id = beamline(i / per_beamline.max(1));
            let mut flags = AgentFlags::new(BeamlineId::parse(&id)?);
            flags.consul = Some(consul.clone());
            let instance = Instance::new(flags.beamline.clone(), AGENT_VERSION);
            let runtime = AgentRuntime::bind(instance, flags.config()?).await?;
            first_addr.get_or_insert(runtime.local_addr());
            let service = Agent::new(AGENT_VERSION)
                .capability(
                    "read_status",
                    "Reads the beamline's status",
                    ReadOnly,
                    |_: NoParams, task| async move {
                        task.complete(serde_json::json!({ "status": "ok" }))
                    },
                )
                .service(runtime.instance(), runtime.tasks())?;
            tokio::spawn(async move {
                if let Err(e) = runtime.serve(service, std::future::pending()).await {
                    eprintln!("agent {id}: {e}");
                }
            });
        }
        let first_addr = first_addr.context("no agents")?;
        println!(
            "agents {}..{} listening on {first_addr}",
            beamline(first / per_beamline.max(1)),
            beamline((first + count - 1) / per_beamline.max(1))
        );
        std::future::pending::<()>().await;
        Ok::<(), anyhow::Error>(())
    })
}
