//! `beamline-mesh call`: one `BeamlineAgent` RPC from the command line, printed as proto3 JSON.
//!
//! The target is an agent's address (`--addr`), a gateway (`--gateway URL` + `--beamline`, a plain
//! gRPC address; every call carries `x-beamline`; the default, at `http://127.0.0.1:8080`, when
//! no target is given), or an in-process mesh over Consul (`--consul` + `--beamline`: the same
//! discovery, balancing, failfast and retries a gateway uses; an unknown beamline is NOT_FOUND,
//! one registered with no healthy instance UNAVAILABLE). Stdout carries only JSON (the canonical proto3 mapping, via
//! prost-reflect), so it can be piped to `jq`; progress and errors go to stderr.
//!
//! This module owns the flags, the failures and their exit codes; `target` connects, `ops` runs
//! each operation and `output` prints.
//!
//! Exit codes, so scripts can tell outcomes apart:
//! - 0: the call succeeded (for `execute`: the task COMPLETED);
//! - 1: an error (`error: <gRPC code name>: <message>` on stderr), including bad flag values
//!   such as `--params`;
//! - 2: `execute` ran, but the task ended FAILED, CANCELLED or REJECTED (the Task is printed);
//!   clap's own usage errors also exit 2, before anything is called;
//! - 130: interrupted by Ctrl-C (a running task keeps running; Cancel stops it).

pub(super) mod dial;
mod ops;
mod output;
mod target;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use beamline_mesh::beamline::BeamlineId;

use super::duration_flag;
use super::printable::printable;
use ops::run_op;
use output::ProgressView;

#[derive(clap::Args)]
pub struct CallArgs {
    /// Call this agent directly (HOST:PORT or http://HOST:PORT).
    #[arg(long, global = true, value_name = "HOST:PORT", conflicts_with_all = ["consul", "gateway"])]
    addr: Option<String>,
    /// Call --beamline through an in-process mesh over this Consul (HTTP address; the token, if
    /// any, comes from $CONSUL_HTTP_TOKEN).
    #[arg(long, global = true, value_name = "ADDR", conflicts_with = "gateway")]
    consul: Option<String>,
    /// Call through this gateway (a plain gRPC URL, http://HOST:PORT); each call carries
    /// `x-beamline: <--beamline>`. The default target when neither --addr nor --consul is given:
    /// http://127.0.0.1:8080.
    #[arg(long, global = true, value_name = "URL")]
    gateway: Option<String>,
    /// The beamline to call (required with --consul and --gateway; always sent as the
    /// `x-beamline` metadata).
    #[arg(long, global = true, value_name = "ID")]
    beamline: Option<BeamlineId>,
    /// The credential for a gateway with authentication (an API key or a JWT), sent as
    /// `authorization: Bearer …`.
    #[arg(
        long,
        global = true,
        env = "BEAMLINE_MESH_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// PEM CA certificate(s) to trust for an https:// gateway or agent (default: the public
    /// web roots).
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
    /// Give up connecting (with --consul: finding a healthy instance) after this long.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = duration_flag)]
    connect_timeout: Duration,
    /// Give up waiting for an answer (to describe, get and cancel, and for the first event of
    /// execute) after this long.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = duration_flag)]
    timeout: Duration,
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand)]
enum Op {
    /// Print the agent's AgentCard.
    Describe,
    /// Start a task and wait for its end; print the final Task (progress goes to stderr).
    Execute(ExecuteArgs),
    /// Print a task.
    Get {
        /// The task id (`<instance_id>/<suffix>`).
        task: String,
    },
    /// Ask a task to stop (idempotent); print the task.
    Cancel {
        /// The task id (`<instance_id>/<suffix>`).
        task: String,
    },
}

#[derive(clap::Args)]
struct ExecuteArgs {
    /// The capability to run (see `describe`).
    capability: String,
    /// The capability's parameters, a JSON object (e.g. '{"motor": "sample_x", "position": 1}').
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// Run at most once per key: a repeat returns the existing task.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Print every TaskEvent as one JSON line as it arrives, instead of the final Task.
    #[arg(long)]
    events: bool,
}

/// Why `call` did not succeed; each maps to an exit code and one stderr message.
enum Failure {
    /// The agent (or the connection to it) answered with a gRPC status.
    Grpc(tonic::Status),
    /// Anything before or around the call: bad flag values, Consul, JSON printing.
    Other(anyhow::Error),
    /// The task ended, but not COMPLETED (already printed on stdout).
    TaskNotCompleted,
    /// Ctrl-C.
    Interrupted,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Grpc(status)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// Runs the call; exits the process with a non-zero code on any failure (see the module doc).
pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let mut progress = ProgressView::new(std::io::stderr().is_terminal());
    let mut running_task: Option<String> = None;
    let outcome = {
        let call = run_op(&args, &mut progress, &mut running_task);
        // Ctrl-C drops the call (and its stream) at once: the contract says a dropped stream
        // does not cancel the task, so say how to cancel it.
        tokio::select! {
            result = call => result,
            _ = tokio::signal::ctrl_c() => Err(Failure::Interrupted),
        }
    };
    progress.finish();
    let _ = std::io::stdout().flush();
    let code = match outcome {
        Ok(()) => return Ok(()),
        Err(Failure::Grpc(status)) => {
            eprintln!("error: {}", describe_status(&status));
            1
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            1
        }
        Err(Failure::TaskNotCompleted) => 2,
        Err(Failure::Interrupted) => {
            match &running_task {
                Some(task) => eprintln!(
                    "interrupted: task {task} keeps running; stop it with \
                     `beamline-mesh call … cancel {task}`"
                ),
                None => eprintln!("interrupted"),
            }
            130
        }
    };
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// `<Code>: <message>`, plus what the agent's `x-beamline-not-started` trailer means.
pub(super) fn describe_status(status: &tonic::Status) -> String {
    // The message is the server's words: printed on a person's terminal, escaped.
    let mut text = format!("{:?}: {}", status.code(), printable(status.message()));
    let not_started = status
        .metadata()
        .get(beamline_mesh::wire::header::NOT_STARTED)
        .and_then(|v| v.to_str().ok())
        == Some("true");
    if not_started {
        text.push_str(" (the task was not started; it is safe to send it elsewhere)");
    }
    text
}

/// `e: cause: cause`, skipping causes the text already quotes (tonic's transport errors say
/// little at the top level; some of our errors already include their source).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
