//! `beamline-mesh dev`: the whole mesh on one machine with one command — the registry, the
//! gateway (without authentication) and the demo agents (5.3.1 ×2, 7.0.1, 12.3.1) as child
//! processes — until Ctrl-C or SIGTERM, which stop everything in order (see [`super::stack`]).
//!
//! The registry defaults to 127.0.0.1:8500 and the gateway to 127.0.0.1:8080, so that `call` and
//! `agents` work without flags; a busy default is swapped for a free port (and the example
//! commands then carry the flags). The children's logs are copied to stderr, each line prefixed
//! with the child's name; stdout says where everything listens.
//!
//! Plaintext on loopback by default (and it says so); `--mtls` runs the gateway and the agents
//! over mutual TLS with throwaway certificates, removed on exit (see [`super::stack`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::stack::{Listen, Stack, StackConfig, DEMO_AGENTS};

#[derive(clap::Args)]
pub struct DevArgs {
    /// The registry's address [default: 127.0.0.1:8500, or a free port if that is busy].
    #[arg(long, value_name = "ADDR")]
    registry_listen: Option<SocketAddr>,
    /// The gateway's address [default: 127.0.0.1:8080, or a free port if that is busy].
    #[arg(long, value_name = "ADDR")]
    gateway_listen: Option<SocketAddr>,
    /// Keep the registry's state in this directory (in memory without it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Mutual TLS between the gateway and the agents, with a throwaway CA and certificates made
    /// at start-up (in a temporary directory, removed on exit). Plaintext without it.
    #[arg(long)]
    mtls: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = StackConfig {
        registry: Listen::or_default(args.registry_listen, "127.0.0.1:8500"),
        gateway: Listen::or_default(args.gateway_listen, "127.0.0.1:8080"),
        data_dir: args.data_dir,
        agents: DEMO_AGENTS.iter().map(|s| s.to_string()).collect(),
        agent_args: Vec::new(),
        mtls: args.mtls,
        forward_logs: true,
        auth_file: None,
    };
    let mut stack = Stack::new(config)?;
    // Listen for signals before the first child starts, so an early Ctrl-C still stops in order.
    let mut stop = std::pin::pin!(super::shutdown_signal());

    println!(
        "starting the registry, the gateway and {} demo agents",
        DEMO_AGENTS.len()
    );
    println!("{}", stack.transport_line());
    let started = tokio::select! {
        result = stack.start() => Some(result),
        _ = &mut stop => None,
    };
    match started {
        None => {
            println!("interrupted; stopping");
            stop_stack(&mut stack).await;
            return Ok(());
        }
        Some(Err(e)) => {
            stop_stack(&mut stack).await;
            return Err(e.context("the dev stack did not start"));
        }
        Some(Ok(())) => {}
    }

    let consul = stack.consul.clone().unwrap_or_default();
    let gateway = stack.gateway.clone().unwrap_or_default();
    let gateway_flag = if gateway == "127.0.0.1:8080" {
        String::new()
    } else {
        format!("--gateway http://{gateway} ")
    };
    let consul_flag = if consul == "http://127.0.0.1:8500" {
        String::new()
    } else {
        format!(" --consul {consul}")
    };
    println!();
    println!("ready. Try, in another terminal:");
    println!("  beamline-mesh call {gateway_flag}--beamline 5.3.1 describe");
    println!(
        "  beamline-mesh call {gateway_flag}--beamline 7.0.1 execute read_pv --params '{{\"name\": \"ring:current\"}}'"
    );
    println!(
        "  beamline-mesh call {gateway_flag}--beamline 12.3.1 execute scan --params \
         '{{\"motor\": \"sample_x\", \"start\": -1, \"stop\": 1, \"steps\": 5, \"dwell_ms\": 100}}'"
    );
    println!("  beamline-mesh agents{consul_flag}");
    if stack.certs.is_some() {
        println!(
            "Agents accept only clients with a certificate from the throwaway CA (the gateway's): \
             a direct `call --addr` to one fails its TLS handshake."
        );
    }
    println!("Ctrl-C stops everything.");

    // Run until a signal, or until a child dies on its own (then stop the rest and say so).
    let died = tokio::select! {
        _ = &mut stop => None,
        name = first_exit(&mut stack) => Some(name),
    };
    if let Some(name) = &died {
        eprintln!("{name} exited; stopping the rest");
    }
    println!("stopping: agents (draining), then the gateway, then the registry");
    stop_stack(&mut stack).await;
    println!("stopped");
    match died {
        Some(name) => anyhow::bail!("{name} exited unexpectedly"),
        None => Ok(()),
    }
}

async fn stop_stack(stack: &mut Stack) {
    let killed = stack.stop().await;
    if !killed.is_empty() {
        eprintln!("killed (did not stop in time): {}", killed.join(", "));
    }
}

/// Resolves with the name of the registry or the gateway once either exits; an agent that exits
/// (say, one killed to watch the mesh route around it) is only reported.
async fn first_exit(stack: &mut Stack) -> String {
    loop {
        for (name, server) in stack.newly_exited() {
            if server {
                return name;
            }
            eprintln!("{name} exited; the rest keeps running");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
