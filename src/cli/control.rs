//! `beamline-mesh halt`, `resume`, `lock` and `unlock`: the facility's stop button and beamline
//! locks, through the gateway's `beamline.v1.Fleet` service (the gateway checks who may, writes
//! Consul KV, and answers once it enforces the change).
//!
//! Owns these subcommands' flags, the one line each prints on stdout and their exit codes;
//! reaching the gateway is `call::dial`'s (the same `--gateway`, `--token` and `--ca-cert` as
//! `call`, with the same defaults).
//!
//! Exit codes: 0 when the gateway did it (or there was nothing to do: resuming a beamline that
//! is not halted, unlocking one that is not locked); 1 with `error: <gRPC code name>: <message>`
//! on stderr when it refused or could not be reached; 2 for usage errors (clap's).

use std::path::PathBuf;
use std::time::Duration;

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::{
    HaltRequest, HaltState, LockRequest, LockState, ResumeRequest, UnlockRequest,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::call::dial::{bearer, bounded, dial, grpc_uri, DialError, DEADLINE_MARGIN};
use super::call::{describe_status, error_chain};
use super::duration_flag;
use super::printable::printable;

/// The control subcommands, flattened into the top-level command.
#[derive(clap::Subcommand)]
pub enum ControlCommand {
    /// Stop every actuating call on a beamline (or on all of them) until `resume`.
    ///
    /// The gateway and the agents refuse actuating work and agents cancel what runs; reads,
    /// monitoring and cancels go on.
    Halt(HaltArgs),
    /// Lift a halt set by `halt`.
    Resume(ResumeArgs),
    /// Hold a beamline: others' actuating calls are refused until `unlock` or the expiry.
    Lock(LockArgs),
    /// Let go of a beamline's lock (the holder), or break it (the safety role).
    Unlock(UnlockArgs),
}

/// How to reach the gateway: the same flags, defaults and environment as `call`.
#[derive(clap::Args)]
pub struct GatewayFlags {
    /// The gateway (a gRPC URL, http(s)://HOST:PORT).
    #[arg(long, value_name = "URL", default_value = super::call::dial::DEFAULT_GATEWAY)]
    gateway: String,
    /// The credential for a gateway with authentication (an API key or a JWT), sent as
    /// `authorization: Bearer …`.
    #[arg(long, env = "BEAMLINE_MESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate(s) to trust for an https:// gateway (default: the public web roots).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration_flag)]
    connect_timeout: Duration,
    /// Give up waiting for the answer after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_flag)]
    timeout: Duration,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["beamline", "all"])))]
pub struct HaltArgs {
    /// The beamline to halt.
    #[arg(long, value_name = "ID")]
    beamline: Option<BeamlineId>,
    /// Halt every beamline (the safety role only).
    #[arg(long)]
    all: bool,
    /// Why, shown to everyone refused (required).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    gateway: GatewayFlags,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["beamline", "all"])))]
pub struct ResumeArgs {
    /// The beamline to resume.
    #[arg(long, value_name = "ID")]
    beamline: Option<BeamlineId>,
    /// Lift the halt of every beamline (set by `halt --all`; the safety role only).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    gateway: GatewayFlags,
}

#[derive(clap::Args)]
pub struct LockArgs {
    /// The beamline to lock.
    #[arg(long, value_name = "ID")]
    beamline: BeamlineId,
    /// What for, shown to everyone refused (required).
    #[arg(long, value_name = "TEXT")]
    note: String,
    /// How long (e.g. 90m, 2h; at most 24h). Locking again before the expiry renews it.
    #[arg(long = "for", value_name = "DURATION", default_value = "2h", value_parser = duration_flag)]
    duration: Duration,
    #[command(flatten)]
    gateway: GatewayFlags,
}

#[derive(clap::Args)]
pub struct UnlockArgs {
    /// The beamline to unlock.
    #[arg(long, value_name = "ID")]
    beamline: BeamlineId,
    #[command(flatten)]
    gateway: GatewayFlags,
}

/// Runs one control command; exits the process with 1 when the gateway refused or could not
/// be reached (see the module doc).
pub async fn run(command: ControlCommand) -> anyhow::Result<()> {
    let line = match send(command).await {
        Ok(line) => line,
        Err(Failure::Flags(e)) => fail(&error_chain(e.as_ref())),
        Err(Failure::Grpc(status)) => fail(&describe_status(&status)),
    };
    println!("{line}");
    Ok(())
}

/// Why a command did not succeed: a flag value, or the gateway's status (a refusal, or none
/// reached).
enum Failure {
    Flags(anyhow::Error),
    Grpc(tonic::Status),
}

impl From<DialError> for Failure {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Flags(e) => Failure::Flags(e),
            DialError::Unreachable(status) => Failure::Grpc(status),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Flags(e)
    }
}

/// The gateway's message may quote a reason another tool wrote to KV: printed escaped.
fn fail(message: &str) -> ! {
    eprintln!("error: {}", printable(message));
    std::process::exit(1)
}

/// Sends the command's RPC; the line to print.
async fn send(command: ControlCommand) -> Result<String, Failure> {
    let gateway = Gateway::connect(command.flags()).await?;
    let mut client = gateway.client.clone();
    Ok(match command {
        ControlCommand::Halt(args) => {
            let scope = Scope::of(args.beamline.as_ref(), args.all);
            let request = gateway.request(HaltRequest {
                beamline: scope.id(),
                all: args.all,
                reason: args.reason,
            });
            let state = gateway.answer("Halt", client.halt(request)).await?;
            halted_line(&scope, &state)
        }
        ControlCommand::Resume(args) => {
            let scope = Scope::of(args.beamline.as_ref(), args.all);
            let request = gateway.request(ResumeRequest {
                beamline: scope.id(),
                all: args.all,
            });
            let state = gateway.answer("Resume", client.resume(request)).await?;
            resumed_line(&scope, &state)
        }
        ControlCommand::Lock(args) => {
            let duration = prost_types::Duration::try_from(args.duration)
                .map_err(|_| anyhow::anyhow!("--for {:?} is out of range", args.duration))?;
            let request = gateway.request(LockRequest {
                beamline: args.beamline.to_string(),
                note: args.note,
                duration: Some(duration),
            });
            let state = gateway.answer("Lock", client.lock(request)).await?;
            locked_line(&args.beamline, &state)
        }
        ControlCommand::Unlock(args) => {
            let request = gateway.request(UnlockRequest {
                beamline: args.beamline.to_string(),
            });
            let state = gateway.answer("Unlock", client.unlock(request)).await?;
            unlocked_line(&args.beamline, &state)
        }
    })
}

impl ControlCommand {
    fn flags(&self) -> &GatewayFlags {
        match self {
            ControlCommand::Halt(args) => &args.gateway,
            ControlCommand::Resume(args) => &args.gateway,
            ControlCommand::Lock(args) => &args.gateway,
            ControlCommand::Unlock(args) => &args.gateway,
        }
    }
}

/// A connected Fleet client with what every request carries.
struct Gateway {
    client: FleetClient<Channel>,
    authorization: Option<AsciiMetadataValue>,
    deadline: Duration,
}

impl Gateway {
    async fn connect(flags: &GatewayFlags) -> Result<Gateway, Failure> {
        let uri = grpc_uri(&flags.gateway, "--gateway")?;
        let authorization = bearer(flags.token.as_deref())?;
        let channel = dial(&uri, flags.ca_cert.as_deref(), flags.connect_timeout).await?;
        Ok(Gateway {
            client: FleetClient::new(channel),
            authorization,
            deadline: flags.timeout,
        })
    }

    /// The answer to `call` (the RPC `what`) within the deadline, or the status.
    async fn answer<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Failure> {
        bounded(self.deadline, what, call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(Failure::Grpc)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline + DEADLINE_MARGIN);
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }
}

/// One beamline or all, as the lines name them.
enum Scope {
    Beamline(BeamlineId),
    All,
}

impl Scope {
    /// clap's group guarantees exactly one of the two.
    fn of(beamline: Option<&BeamlineId>, all: bool) -> Scope {
        match beamline {
            Some(id) if !all => Scope::Beamline(id.clone()),
            _ => Scope::All,
        }
    }

    fn id(&self) -> String {
        match self {
            Scope::Beamline(id) => id.to_string(),
            Scope::All => String::new(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Beamline(id) => write!(f, "{id}"),
            Scope::All => f.write_str("every beamline"),
        }
    }
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .map_or_else(|| "?".to_string(), |t| t.to_string())
}

/// `(by alice at 2026-12-05T14:00:00Z): sample on fire`. Who and why come back from KV, which
/// another tool may have written: their control characters are escaped (`printable`).
fn halt_detail(state: &HaltState) -> String {
    format!(
        "(by {} at {}): {}",
        printable(&state.by),
        time(&state.since),
        printable(&state.reason)
    )
}

/// `halted 5.3.1 (by alice at 2026-12-05T14:00:00Z): sample on fire`.
fn halted_line(scope: &Scope, state: &HaltState) -> String {
    format!("halted {scope} {}", halt_detail(state))
}

/// `resumed 5.3.1`, saying so when the fleet-wide halt still stops it.
fn resumed_line(scope: &Scope, state: &HaltState) -> String {
    if state.halted {
        format!(
            "resumed {scope}; every beamline is still halted {}",
            halt_detail(state)
        )
    } else {
        format!("resumed {scope}")
    }
}

/// `locked 5.3.1 for alice until 2026-12-05T16:00:00Z: aligning by hand`.
fn locked_line(id: &BeamlineId, state: &LockState) -> String {
    format!(
        "locked {id} for {} until {}: {}",
        printable(&state.holder),
        time(&state.expires),
        printable(&state.note)
    )
}

/// `unlocked 5.3.1 (was held by alice until …: aligning by hand)`, or that it was not locked.
fn unlocked_line(id: &BeamlineId, state: &LockState) -> String {
    if state.holder.is_empty() {
        format!("{id} was not locked")
    } else {
        format!(
            "unlocked {id} (was held by {} until {}: {})",
            printable(&state.holder),
            time(&state.expires),
            printable(&state.note)
        )
    }
}

#[cfg(test)]
mod tests;
