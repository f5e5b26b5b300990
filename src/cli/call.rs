//! `beamline-mesh call`: one `BeamlineAgent` RPC from the command line, printed as proto3 JSON.
//!
//! The target is an agent's address (`--addr`), a gateway (`--gateway URL` + `--beamline`, a plain
//! gRPC address; every call carries `x-beamline`; the default, at `http://127.0.0.1:8080`, when
//! no target is given), or an in-process mesh over Consul (`--consul` + `--beamline`: the same
//! discovery, balancing, failfast and retries a gateway uses; an unknown beamline is NOT_FOUND,
//! one registered with no healthy instance UNAVAILABLE). Stdout carries only JSON (the canonical proto3 mapping, via
//! prost-reflect), so it can be piped to `jq`; progress and errors go to stderr.
//!
//! Exit codes, so scripts can tell outcomes apart:
//! - 0: the call succeeded (for `execute`: the task COMPLETED);
//! - 1: an error (`error: <gRPC code name>: <message>` on stderr), including bad flag values
//!   such as `--params`;
//! - 2: `execute` ran, but the task ended FAILED, CANCELLED or REJECTED (the Task is printed);
//!   clap's own usage errors also exit 2, before anything is called;
//! - 130: interrupted by Ctrl-C (a running task keeps running; Cancel stops it).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};

use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::mesh::{Mesh, MeshSettings};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{
    CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, Task, TaskEvent, TaskState,
};

use super::duration_flag;

/// Where `call` goes when no target flag is given (the architecture's default front door).
const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

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
fn describe_status(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let not_started = status
        .metadata()
        .get("x-beamline-not-started")
        .and_then(|v| v.to_str().ok())
        == Some("true");
    if not_started {
        text.push_str(" (the task was not started; it is safe to send it elsewhere)");
    }
    text
}

async fn run_op(
    args: &CallArgs,
    progress: &mut ProgressView,
    running_task: &mut Option<String>,
) -> Result<(), Failure> {
    // Everything that can be checked locally is checked before any network traffic.
    let printer = JsonPrinter::new()?;
    let execute = match &args.op {
        Op::Execute(e) => Some(ExecuteRequest {
            capability: e.capability.clone(),
            params: Some(parse_params(e.params.as_deref())?),
            idempotency_key: e.idempotency_key.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    let target = Target::from_args(args)?;
    let access = Access {
        beamline: args.beamline.as_ref(),
        token: args.token.as_deref(),
        ca_cert: args.ca_cert.as_deref(),
        timeout: args.connect_timeout,
    };
    let mut agent = Agent::connect(&target, access).await?;
    let deadline = args.timeout;

    match &args.op {
        Op::Describe => {
            let request = agent.request(DescribeRequest {}, Some(deadline));
            let card = bounded(deadline, "Describe", agent.client.describe(request)).await?;
            printer.print_pretty("beamline.v1.AgentCard", &card.into_inner())?;
        }
        Op::Get { task } => {
            let request = agent.request(
                GetTaskRequest {
                    task_id: task.clone(),
                },
                Some(deadline),
            );
            let task = bounded(deadline, "GetTask", agent.client.get_task(request)).await?;
            printer.print_pretty("beamline.v1.Task", &task.into_inner())?;
        }
        Op::Cancel { task } => {
            let request = agent.request(
                CancelRequest {
                    task_id: task.clone(),
                },
                Some(deadline),
            );
            let task = bounded(deadline, "Cancel", agent.client.cancel(request)).await?;
            printer.print_pretty("beamline.v1.Task", &task.into_inner())?;
        }
        Op::Execute(flags) => {
            // No gRPC deadline on Execute: a task may rightly run for hours. Only the start of
            // the stream (its first event) is bounded; after that, Ctrl-C is the way out.
            let request = agent.request(execute.expect("built above for execute"), None);
            let start = async {
                let mut stream = agent.client.execute(request).await?.into_inner();
                let first = stream.message().await?;
                Ok((stream, first))
            };
            let (mut stream, first) = bounded(deadline, "Execute", start).await?;
            let mut next = first;
            let mut last: Option<Task> = None;
            while let Some(event) = next.take() {
                if let Some(task) = &event.task {
                    if running_task.is_none() {
                        *running_task = Some(task.task_id.clone());
                    }
                    last = Some(task.clone());
                }
                if flags.events {
                    printer.print_line("beamline.v1.TaskEvent", &event)?;
                } else {
                    progress.update(&event);
                }
                // The agent ends the stream after the terminal event; stop there regardless.
                if last.as_ref().is_some_and(is_terminal) {
                    break;
                }
                next = stream.message().await?;
            }
            progress.finish();
            let Some(task) = last.filter(is_terminal) else {
                let id = running_task.as_deref().unwrap_or("(none)");
                return Err(Failure::Other(anyhow::anyhow!(
                    "the Execute stream ended before task {id} finished; \
                     follow it with `beamline-mesh call … get {id}`"
                )));
            };
            if !flags.events {
                printer.print_pretty("beamline.v1.Task", &task)?;
            }
            if task.state() != TaskState::Completed {
                let mut why = format!("task {} ended {}", task.task_id, state_name(task.state()));
                if let Some(e) = &task.error {
                    why.push_str(&format!(": {}: {}", e.code, e.message));
                }
                eprintln!("{why}");
                return Err(Failure::TaskNotCompleted);
            }
        }
    }
    Ok(())
}

fn is_terminal(task: &Task) -> bool {
    matches!(
        task.state(),
        TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected
    )
}

/// `TASK_STATE_WORKING` → `WORKING`.
fn state_name(state: TaskState) -> &'static str {
    let name = state.as_str_name();
    name.strip_prefix("TASK_STATE_").unwrap_or(name)
}

/// `--params` → google.protobuf.Struct; absent means `{}`.
fn parse_params(params: Option<&str>) -> anyhow::Result<prost_types::Struct> {
    let Some(text) = params else {
        return Ok(prost_types::Struct::default());
    };
    let json: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("--params '{text}' is not valid JSON"))?;
    let kind = match &json {
        serde_json::Value::Object(_) => {
            return Ok(beamline_mesh::agent::capabilities::json_to_struct(&json))
        }
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
    };
    anyhow::bail!(
        "--params must be a JSON object such as '{{\"name\": \"ring:current\"}}', not {kind}"
    )
}

// ---------------------------------------------------------------------------------------------
// Target and connection
// ---------------------------------------------------------------------------------------------

enum Target {
    /// A gRPC URI to dial as is.
    Direct(String),
    /// The beamline through an in-process mesh over this Consul.
    Consul { addr: String, beamline: BeamlineId },
}

impl Target {
    fn from_args(args: &CallArgs) -> anyhow::Result<Target> {
        let need_beamline = |flag: &str| {
            args.beamline
                .clone()
                .with_context(|| format!("{flag} needs --beamline ID (the beamline to call)"))
        };
        if let Some(addr) = &args.addr {
            return Ok(Target::Direct(grpc_uri(addr, "--addr")?));
        }
        if let Some(consul) = &args.consul {
            return Ok(Target::Consul {
                addr: consul.clone(),
                beamline: need_beamline("--consul")?,
            });
        }
        let gateway = match &args.gateway {
            Some(url) => {
                need_beamline("--gateway")?;
                url.as_str()
            }
            None if args.beamline.is_some() => DEFAULT_GATEWAY,
            None => anyhow::bail!(
                "say what to call: --beamline ID (through the gateway at {DEFAULT_GATEWAY}, \
                 or --gateway URL, or --consul ADDR), or one agent with --addr HOST:PORT"
            ),
        };
        Ok(Target::Direct(grpc_uri(gateway, "--gateway")?))
    }
}

/// `host:port`, `http://host:port` or `https://host:port` → a gRPC URI.
fn grpc_uri(addr: &str, flag: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    let uri = match addr.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => addr.to_string(),
        Some(_) => anyhow::bail!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"),
        None if addr.is_empty() => anyhow::bail!("{flag} is empty"),
        None => format!("http://{addr}"),
    };
    // Parse now so a typo is reported as a flag error, not as a connection failure.
    uri.parse::<http::Uri>()
        .ok()
        .filter(|u| u.port_u16().is_some() && u.path() == "/")
        .with_context(|| format!("{flag} {addr}: expected HOST:PORT or http://HOST:PORT"))?;
    Ok(uri)
}

/// What the client calls through: a tonic channel to one address, or a mesh channel.
type AgentService = BoxCloneService<http::Request<Body>, http::Response<Body>, BoxError>;

/// A connected client plus the metadata every request carries.
struct Agent {
    client: BeamlineAgentClient<AgentService>,
    beamline: Option<tonic::metadata::AsciiMetadataValue>,
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

/// What `connect` needs besides the target.
struct Access<'a> {
    beamline: Option<&'a BeamlineId>,
    token: Option<&'a str>,
    ca_cert: Option<&'a std::path::Path>,
    timeout: Duration,
}

impl Agent {
    /// Connects to `target`; `beamline`, when given, goes out as `x-beamline` on every call (a
    /// gateway routes by it; an agent ignores it).
    async fn connect(target: &Target, access: Access<'_>) -> Result<Agent, Failure> {
        let timeout = access.timeout;
        // A beamline id is [A-Za-z0-9.-], so it is always valid ASCII metadata.
        let beamline = access.beamline.and_then(|b| b.as_str().parse().ok());
        let authorization = match access.token {
            None => None,
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--token is not valid ASCII metadata"))?,
            ),
        };
        let uri = match target {
            Target::Direct(uri) => uri.clone(),
            Target::Consul { addr, beamline: id } => {
                let mut consul = ConsulConfig::from_env_or(Some(addr)).context("--consul")?;
                consul.timeout = timeout;
                let settings = MeshSettings {
                    failfast: timeout,
                    ..MeshSettings::default()
                };
                let channel = Mesh::new(consul, settings).channel(id);
                return Ok(Agent {
                    client: BeamlineAgentClient::new(BoxCloneService::new(channel)),
                    beamline,
                    authorization,
                });
            }
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("{uri} is not a valid address"))?
            .connect_timeout(timeout);
        if uri.starts_with("https://") {
            let tls = match access.ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .with_context(|| format!("--ca-cert {}", path.display()))?;
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                }
                None => tonic::transport::ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .with_context(|| format!("TLS settings for {uri}"))?;
        }
        // connect_timeout bounds the TCP connect; the outer timeout bounds connect() as a whole.
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                return Err(Failure::Grpc(tonic::Status::unavailable(format!(
                    "cannot connect to {uri}: {}",
                    error_chain(&e)
                ))))
            }
            Err(_) => {
                return Err(Failure::Grpc(tonic::Status::unavailable(format!(
                    "cannot connect to {uri}: no connection within {timeout:?}"
                ))))
            }
        };
        let service = channel.map_err(BoxError::from);
        Ok(Agent {
            client: BeamlineAgentClient::new(BoxCloneService::new(service)),
            beamline,
            authorization,
        })
    }

    /// A request with `x-beamline` and, when given, a gRPC deadline (`grpc-timeout`, so the
    /// server and any gateway give up too).
    fn request<T>(&self, message: T, deadline: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            // tonic's channel also enforces `grpc-timeout`, reporting it as CANCELLED; the small
            // margin lets `bounded` fire first with the truthful DEADLINE_EXCEEDED.
            request.set_timeout(deadline + DEADLINE_MARGIN);
        }
        if let Some(beamline) = &self.beamline {
            request
                .metadata_mut()
                .insert("x-beamline", beamline.clone());
        }
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request
    }
}

/// How much later than the client the server is told to give up (see [`Agent::request`]).
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// `call` with a client-side deadline: `grpc-timeout` only tells the server, and a peer that
/// accepted the TCP connection but never speaks HTTP/2 would otherwise hold us forever.
async fn bounded<T>(
    deadline: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let expired =
        || tonic::Status::deadline_exceeded(format!("no answer to {what} within {deadline:?}"));
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(expired()))
}

/// `e: cause: cause`, skipping causes the text already quotes (tonic's transport errors say
/// little at the top level; some of our errors already include their source).
fn error_chain(e: &dyn std::error::Error) -> String {
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

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Prints generated messages as canonical proto3 JSON by re-reading them through the
/// descriptor set (prost's own types know nothing of JSON).
struct JsonPrinter {
    pool: DescriptorPool,
}

impl JsonPrinter {
    fn new() -> anyhow::Result<JsonPrinter> {
        let pool = DescriptorPool::decode(beamline_mesh::proto::FILE_DESCRIPTOR_SET)
            .context("the embedded descriptor set does not decode")?;
        Ok(JsonPrinter { pool })
    }

    fn to_json<M: prost::Message>(
        &self,
        full_name: &str,
        message: &M,
        pretty: bool,
    ) -> anyhow::Result<String> {
        let descriptor = self
            .pool
            .get_message_by_name(full_name)
            .with_context(|| format!("{full_name} is not in the descriptor set"))?;
        let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .with_context(|| format!("re-decoding a {full_name}"))?;
        let options = SerializeOptions::new();
        let mut out = Vec::new();
        if pretty {
            let mut ser = serde_json::Serializer::pretty(&mut out);
            dynamic.serialize_with_options(&mut ser, &options)?;
        } else {
            let mut ser = serde_json::Serializer::new(&mut out);
            dynamic.serialize_with_options(&mut ser, &options)?;
        }
        String::from_utf8(out).context("JSON output is not UTF-8")
    }

    /// One document, indented for people (jq reads it just as well).
    fn print_pretty<M: prost::Message>(&self, full_name: &str, message: &M) -> anyhow::Result<()> {
        let json = self.to_json(full_name, message, true)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")?;
        stdout.flush()?;
        Ok(())
    }

    /// One compact line, flushed at once so a pipe sees each event as it arrives.
    fn print_line<M: prost::Message>(&self, full_name: &str, message: &M) -> anyhow::Result<()> {
        let json = self.to_json(full_name, message, false)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")?;
        stdout.flush()?;
        Ok(())
    }
}

/// Progress of a running task on stderr: one bar redrawn in place on a terminal, plain lines
/// (only when something changed) otherwise, e.g. in CI logs.
struct ProgressView {
    tty: bool,
    /// A bar is on screen without its newline yet.
    drawn: bool,
    /// State and time of the last plain line.
    last_state: &'static str,
    last_line_at: Option<Instant>,
    fraction: Option<f64>,
    message: String,
}

/// Long messages would wrap, and `\r` only returns to the start of the last screen line.
const MAX_MESSAGE_CHARS: usize = 50;
const BAR_WIDTH: usize = 24;
/// Without a terminal, progress lines come at most this often (state changes always print).
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(1);

impl ProgressView {
    fn new(tty: bool) -> ProgressView {
        ProgressView {
            tty,
            drawn: false,
            last_state: "",
            last_line_at: None,
            fraction: None,
            message: String::new(),
        }
    }

    fn update(&mut self, event: &TaskEvent) {
        let Some(task) = &event.task else { return };
        let state = state_name(task.state());
        // An event without progress (a bare state change) keeps what the bar showed; a
        // progress without a fraction means unknown (not 0); a COMPLETED task is all done.
        if let Some(progress) = &event.progress {
            self.fraction = progress.fraction.map(|f| f.clamp(0.0, 1.0));
            self.message = progress.message.chars().take(MAX_MESSAGE_CHARS).collect();
        }
        if task.state() == TaskState::Completed {
            self.fraction = Some(1.0);
        }
        let (fraction, message) = (self.fraction, &self.message);
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let bar = match fraction {
                Some(f) => {
                    let filled = (f * BAR_WIDTH as f64).round() as usize;
                    format!(
                        "[{}{}] {:3.0}%",
                        "#".repeat(filled),
                        "-".repeat(BAR_WIDTH - filled),
                        f * 100.0
                    )
                }
                // Absent means unknown (not 0): show no amount rather than an empty bar.
                None => format!("[{:^w$}]     ", "…", w = BAR_WIDTH),
            };
            // \x1b[2K clears the previous, possibly longer, line.
            let _ = write!(
                stderr,
                "\r\x1b[2K{} {bar} {state:<9} {message}",
                task.capability
            );
            self.drawn = true;
        } else {
            // A log gets every state change but progress at most once a second: agents may
            // report many times a second, and each would be a line.
            let changed = self.last_state != state;
            let due = self
                .last_line_at
                .is_none_or(|at| at.elapsed() >= PLAIN_LINE_INTERVAL);
            if changed || due {
                let percent = fraction.map_or(String::new(), |f| format!(" {:.0}%", f * 100.0));
                let line = format!("task {} {state}{percent} {message}", task.task_id);
                let _ = writeln!(stderr, "{}", line.trim_end());
                self.last_state = state;
                self.last_line_at = Some(Instant::now());
            }
        }
        let _ = stderr.flush();
    }

    /// Ends the bar's line so later output starts on a fresh one.
    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
