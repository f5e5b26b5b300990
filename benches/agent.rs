//! Agent memory benchmark: `cargo bench --bench agent`.
//!
//! Measures what one beamline agent costs in memory (`VmRSS`, split into anonymous and
//! file-backed pages, and the high-water mark `VmHWM`, from `/proc/<pid>/status`), each process
//! started fresh in the same run, side by side, over loopback only:
//!
//! 1. **baseline**: a bare tonic server with tonic-health only (`grpc.health.v1.Health`, SERVING
//!    for ""), no reflection, no Consul client, no logging. It is this bench binary re-executed
//!    with `--serve-bare` (a bench may add no other target), on the same multi-threaded Tokio
//!    runtime as `#[tokio::main]`. It is registered in the registry from outside with the same
//!    gRPC check an agent registers, so the registry probes it exactly as it probes the agents.
//! 2. **demo agent**: the release binary, `beamline-mesh agent --beamline 5.3.1 --consul <registry>`
//!    (default `info` logging), and once more with `RUST_LOG=off` (beamline 5.3.2), idle.
//! 3. **hold agent**: the library's `AgentRuntime` (the same runtime as `beamline-mesh agent`:
//!    health, reflection, drain layer, Consul keep-alive) serving a one-capability agent,
//!    `hold {seconds}`, whose tasks report progress every second until cancelled. It is this bench
//!    binary re-executed with `--serve-hold <consul>`. The demo agent cannot hold 100 running
//!    tasks: `status` and `read_pv` finish at once, and `move_motor`/`scan` reserve one of its
//!    three motors (a second mover of a motor is refused with FAILED_PRECONDITION).
//!
//! "Idle" is measured once every process is registered and passing
//! (`GET /v1/health/service/<name>?passing` non-empty) and a further `CHECKS_SETTLE` has passed,
//! so the registry has run at least three gRPC health checks (2 s interval) and the agents'
//! keep-alive has confirmed its registration at least twice.
//!
//! Then, through real tonic clients (`BeamlineAgentClient`, `CONNECTIONS` HTTP/2 connections):
//! - demo agent: 3 scans (one per motor, the most it allows) with their Execute streams open, plus
//!   97 Subscribe streams over those 3 tasks: 100 open task streams, 3 running tasks;
//! - hold agent: 100 `hold` tasks, all running, their 100 Execute streams open.
//!
//! Each is measured while running, after Cancel (every stream has ended with CANCELLED), and
//! after the client closed its connections.
//!
//! Bounded in every way: every process is killed and reaped on drop, every request has a
//! timeout, every wait a deadline. The run takes about 25 s after the build.
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) the binary only says
//! how to run it and exits.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use beamline_mesh::agent::capabilities::{json_to_struct, Capabilities, CapabilitySpec};
use beamline_mesh::agent::tasks::{TaskEventStream, TaskHandle, TaskTable};
use beamline_mesh::agent::{AgentConfig, AgentRuntime, Instance};
use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::beamline_agent_server::BeamlineAgent;
use beamline_mesh::proto::{
    AgentCard, CancelRequest, DescribeRequest, ExecuteRequest, GetTaskRequest, SubscribeRequest,
    Task, TaskEvent, TaskState,
};

const COMMAND: &str = "cargo bench --bench agent";

/// Re-executes this binary as the bare tonic + tonic-health baseline.
const SERVE_BARE: &str = "--serve-bare";
/// Re-executes this binary as the `hold` agent on the library's runtime; the next argument is
/// the Consul address.
const SERVE_HOLD: &str = "--serve-hold";

const DEMO_BEAMLINE: &str = "5.3.1";
const DEMO_QUIET_BEAMLINE: &str = "5.3.2";
const HOLD_BEAMLINE: &str = "bench.hold";
const BARE_SERVICE: &str = "bench-bare";

/// Task streams held open on each agent.
const STREAMS: usize = 100;
/// HTTP/2 connections the client spreads its streams over (round robin).
const CONNECTIONS: usize = 10;
/// The demo agent's motors: at most one running scan each.
const MOTORS: [&str; 3] = ["sample_x", "sample_y", "mono_energy"];
/// How long a `hold` task runs unless cancelled (far longer than the bench).
const HOLD_SECONDS: u64 = 600;

/// How long a process may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Timeout of every unary request (HTTP or gRPC).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for every process to be registered and passing.
const PASSING_DEADLINE: Duration = Duration::from_secs(30);
/// After passing: at least three gRPC checks (2 s interval) and two keep-alive rounds (3 s).
const CHECKS_SETTLE: Duration = Duration::from_secs(7);
/// Deadline for all streams of a load phase to deliver their first event.
const OPEN_DEADLINE: Duration = Duration::from_secs(15);
/// With everything running: time for progress to flow before measuring.
const LOAD_SETTLE: Duration = Duration::from_secs(3);
/// Deadline for all streams to end after Cancel.
const END_DEADLINE: Duration = Duration::from_secs(15);
/// After streams ended or connections closed, before measuring.
const AFTER_SETTLE: Duration = Duration::from_secs(1);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == SERVE_BARE) {
        return serve_bare();
    }
    if let Some(i) = args.iter().position(|a| a == SERVE_HOLD) {
        let consul = args
            .get(i + 1)
            .context("--serve-hold needs the Consul address")?;
        return serve_hold(consul);
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("agent benchmark: skipped (run it with `{COMMAND}`)");
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("agent benchmark");
    println!("command: {COMMAND}");
    println!("date: {date}");
    println!("machine: {cores} cores; registry, agents and client share them (loopback)");
    println!("load average at the start: {}", load_average());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")?;
    let rows = runtime.block_on(run())?;
    print_report(&rows);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process; killed and reaped on drop, whatever happens.
struct Proc {
    name: &'static str,
    child: Child,
    /// What followed "listening on " in its first stdout line.
    addr: String,
    /// Holds the stderr log.
    work: tempfile::TempDir,
}

impl Proc {
    fn start(name: &'static str, mut command: Command) -> Result<Proc> {
        let work = tempfile::Builder::new()
            .prefix("beamline-agent-bench-")
            .tempdir()
            .context("create temp dir")?;
        let stderr = File::create(work.path().join("stderr.log")).context("create stderr log")?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        // From here on Drop kills the child, whichever way start() returns.
        let mut process = Proc {
            name,
            child,
            addr: String::new(),
            work,
        };
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining so the child never blocks on a full pipe; ends when it exits.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!(
                "{name} exited before listening; stderr:\n{}",
                process.stderr_tail()
            ),
            Err(_) => bail!("{name} did not print its listening line within {START_TIMEOUT:?}"),
        };
        process.addr = line
            .split_once(" listening on ")
            .with_context(|| format!("{name}: unexpected first line {line:?}"))?
            .1
            .trim()
            .to_string();
        Ok(process)
    }

    fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let field = |key: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(key))
                .with_context(|| format!("{}: no {key} line", self.name))?;
            line.split_whitespace()
                .nth(1)
                .with_context(|| format!("{key} value"))?
                .parse()
                .with_context(|| format!("{key} number"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            anon_kib: field("RssAnon:")?,
            file_kib: field("RssFile:")?,
            hwm_kib: field("VmHWM:")?,
            threads: field("Threads:")?,
        })
    }

    /// Where the resident pages are, from `/proc/<pid>/smaps`, by mapping: the executable's own
    /// image (code, read-only data, relocated data), shared libraries, and everything else
    /// (heap, thread stacks, anonymous mappings).
    fn breakdown(&self) -> Result<Breakdown> {
        let pid = self.child.id();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).context("read /proc/<pid>/exe")?;
        let exe = exe.to_string_lossy().into_owned();
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
            .context("read /proc/<pid>/smaps")?;
        let mut out = Breakdown::default();
        // Which bucket the mapping whose lines follow belongs to.
        let mut bucket = 2;
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if let Some(kib) = first.strip_prefix("Rss:").map(|_| words.next()) {
                let kib: u64 = kib.context("Rss value")?.parse().context("Rss number")?;
                out.0[bucket] += kib;
            } else if !first.ends_with(':') {
                // A mapping's header: "start-end perms offset dev inode [path]".
                let path = line.split_whitespace().nth(5).unwrap_or("");
                bucket = if path == exe {
                    0
                } else if path.starts_with('/') {
                    1
                } else {
                    2
                };
            }
        }
        Ok(out)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.work.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

/// Resident KiB in: the executable's image, shared libraries, the rest (heap, stacks, anon).
#[derive(Clone, Copy, Default)]
struct Breakdown([u64; 3]);

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
    command.env_remove("RUST_LOG");
    command.env_remove("CONSUL_HTTP_ADDR");
    command.env_remove("CONSUL_HTTP_TOKEN");
    command
}

fn this_bench() -> Result<Command> {
    let exe = std::env::current_exe().context("locate the bench binary")?;
    let mut command = Command::new(exe);
    command.env_remove("RUST_LOG");
    command.env_remove("CONSUL_HTTP_ADDR");
    command.env_remove("CONSUL_HTTP_TOKEN");
    Ok(command)
}

fn demo_agent(name: &'static str, beamline: &str, consul: &str, quiet: bool) -> Result<Proc> {
    let mut command = bin();
    command.args(["agent", "--beamline", beamline, "--consul", consul]);
    if quiet {
        command.env("RUST_LOG", "off");
    }
    Proc::start(name, command)
}

// ---------------------------------------------------------------------------------------------
// The registry side
// ---------------------------------------------------------------------------------------------

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("build reqwest client")
}

/// Registers the bare baseline with the check an agent registers for itself (runtime defaults).
async fn register_bare(http: &reqwest::Client, base: &str, addr: &str) -> Result<()> {
    let (host, port) = addr.rsplit_once(':').context("bare address")?;
    let port: u16 = port.parse().context("bare port")?;
    let body = json!({
        "ID": BARE_SERVICE,
        "Name": BARE_SERVICE,
        "Address": host,
        "Port": port,
        "Check": {
            "Name": "gRPC health of the baseline",
            "GRPC": addr,
            "Interval": "2s",
            "Timeout": "1s",
            "DeregisterCriticalServiceAfter": "1m",
        },
    });
    let url = format!("{base}/v1/agent/service/register");
    let response = http.put(&url).json(&body).send().await?;
    ensure!(
        response.status().is_success(),
        "PUT {url}: {}",
        response.status()
    );
    Ok(())
}

/// Polls (bounded) until `service` has a passing instance.
async fn wait_passing(http: &reqwest::Client, base: &str, service: &str) -> Result<()> {
    let url = format!("{base}/v1/health/service/{service}?passing");
    let deadline = tokio::time::Instant::now() + PASSING_DEADLINE;
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                let entries: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
                if !entries.is_empty() {
                    return Ok(());
                }
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{service} was not passing within {PASSING_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

struct Row {
    process: String,
    phase: String,
    memory: Memory,
    /// Taken for the idle rows.
    breakdown: Option<Breakdown>,
}

struct Rows(Vec<Row>);

impl Rows {
    fn add(&mut self, proc: &Proc, label: &str, phase: &str) -> Result<Memory> {
        let memory = proc.memory()?;
        let breakdown = if phase == "idle" {
            Some(proc.breakdown()?)
        } else {
            None
        };
        self.0.push(Row {
            process: label.to_string(),
            phase: phase.to_string(),
            memory,
            breakdown,
        });
        Ok(memory)
    }
}

async fn run() -> Result<Rows> {
    let mut registry = bin();
    registry.args(["registry", "--listen", "127.0.0.1:0"]);
    let registry = Proc::start("registry", registry)?;
    let base = registry.addr.clone();
    let http = http()?;

    let mut bare = this_bench()?;
    bare.arg(SERVE_BARE);
    let bare = Proc::start("baseline", bare)?;
    let demo = demo_agent("demo agent", DEMO_BEAMLINE, &base, false)?;
    let quiet = demo_agent("demo agent, RUST_LOG=off", DEMO_QUIET_BEAMLINE, &base, true)?;
    let mut hold = this_bench()?;
    hold.args([SERVE_HOLD, &base]);
    let hold = Proc::start("hold agent", hold)?;
    register_bare(&http, &base, &bare.addr).await?;

    for (proc, service) in [
        (&bare, BARE_SERVICE.to_string()),
        (&demo, service_name(DEMO_BEAMLINE)),
        (&quiet, service_name(DEMO_QUIET_BEAMLINE)),
        (&hold, service_name(HOLD_BEAMLINE)),
    ] {
        wait_passing(&http, &base, &service)
            .await
            .with_context(|| format!("{}; its stderr:\n{}", proc.name, proc.stderr_tail()))?;
    }
    tokio::time::sleep(CHECKS_SETTLE).await;

    let mut rows = Rows(Vec::new());
    rows.add(&bare, "baseline: tonic + tonic-health", "idle")?;
    rows.add(&demo, "demo agent (`beamline-mesh agent`)", "idle")?;
    rows.add(&quiet, "demo agent, RUST_LOG=off", "idle")?;
    rows.add(&hold, "hold agent (runtime, bench binary)", "idle")?;
    drop(quiet);

    demo_load(&demo, &mut rows).await?;
    hold_load(&hold, &mut rows).await?;
    // Registered and passing all along? (A process that died would have failed a measurement.)
    wait_passing(&http, &base, &service_name(DEMO_BEAMLINE)).await?;
    wait_passing(&http, &base, &service_name(HOLD_BEAMLINE)).await?;
    Ok(rows)
}

fn service_name(beamline: &str) -> String {
    format!(
        "beamline-{}",
        beamline.to_ascii_lowercase().replace('.', "-")
    )
}

async fn connect(addr: &str) -> Result<Vec<BeamlineAgentClient<Channel>>> {
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        // One Endpoint per connection: each connect() opens its own HTTP/2 connection.
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("connect to {addr}"))?;
        clients.push(BeamlineAgentClient::new(channel));
    }
    Ok(clients)
}

/// The first event of a task stream (bounded), then the rest drained in the background; the
/// joined value is the state of the last event.
async fn open(
    streams: &mut JoinSet<Result<i32>>,
    call: impl Future<Output = Result<Response<Streaming<TaskEvent>>, Status>>,
) -> Result<Task> {
    let mut stream = tokio::time::timeout(OPEN_DEADLINE, call)
        .await
        .context("open a stream: timed out")??
        .into_inner();
    let first = tokio::time::timeout(OPEN_DEADLINE, stream.message())
        .await
        .context("first event: timed out")??
        .context("stream ended before its first event")?;
    let task = first.task.context("event without a task")?;
    let mut last = task.state;
    streams.spawn(async move {
        while let Some(event) = stream.message().await? {
            last = event.task.map_or(last, |t| t.state);
        }
        Ok(last)
    });
    Ok(task)
}

/// Cancels `tasks`, then waits (bounded) until every stream has ended on CANCELLED.
async fn cancel_all(
    clients: &mut [BeamlineAgentClient<Channel>],
    tasks: &[Task],
    streams: &mut JoinSet<Result<i32>>,
) -> Result<()> {
    for (i, task) in tasks.iter().enumerate() {
        let client = &mut clients[i % CONNECTIONS];
        client
            .cancel(Request::new(CancelRequest {
                task_id: task.task_id.clone(),
            }))
            .await
            .with_context(|| format!("cancel {}", task.task_id))?;
    }
    let ended = tokio::time::timeout(END_DEADLINE, async {
        let mut states = Vec::new();
        while let Some(joined) = streams.join_next().await {
            states.push(joined.context("stream task")??);
        }
        anyhow::Ok(states)
    })
    .await
    .context("streams did not end after Cancel in time")??;
    let cancelled = TaskState::Cancelled as i32;
    let other = ended.iter().filter(|&&s| s != cancelled).count();
    ensure!(
        other == 0,
        "{other} of {} streams ended on a state other than CANCELLED",
        ended.len()
    );
    Ok(())
}

/// Checks every task is still WORKING (none ended early).
async fn all_working(clients: &mut [BeamlineAgentClient<Channel>], tasks: &[Task]) -> Result<()> {
    for (i, task) in tasks.iter().enumerate() {
        let now = clients[i % CONNECTIONS]
            .get_task(Request::new(GetTaskRequest {
                task_id: task.task_id.clone(),
            }))
            .await?
            .into_inner();
        ensure!(
            now.state == TaskState::Working as i32,
            "task {} is {:?}, not WORKING",
            now.task_id,
            TaskState::try_from(now.state)
        );
    }
    Ok(())
}

const DEMO_LABEL: &str = "demo agent (`beamline-mesh agent`)";
const HOLD_LABEL: &str = "hold agent (runtime, bench binary)";

/// 3 scans (one per motor) + 97 Subscribe streams over them.
async fn demo_load(demo: &Proc, rows: &mut Rows) -> Result<()> {
    let mut clients = connect(&demo.addr).await?;
    let mut streams = JoinSet::new();
    let mut tasks = Vec::new();
    for (i, motor) in MOTORS.iter().enumerate() {
        let (start, stop) = if *motor == "mono_energy" {
            (2000.0, 12000.0)
        } else {
            (-10.0, 10.0)
        };
        let params = json!({
            "motor": motor, "start": start, "stop": stop, "steps": 1000, "dwell_ms": 10_000,
        });
        let request = ExecuteRequest {
            capability: "scan".into(),
            params: Some(json_to_struct(&params)),
            idempotency_key: String::new(),
        };
        let call = clients[i % CONNECTIONS].execute(Request::new(request));
        tasks.push(open(&mut streams, call).await.context("start a scan")?);
    }
    for i in tasks.len()..STREAMS {
        let task_id = tasks[i % tasks.len()].task_id.clone();
        let call = clients[i % CONNECTIONS].subscribe(Request::new(SubscribeRequest { task_id }));
        open(&mut streams, call).await.context("subscribe")?;
    }
    tokio::time::sleep(LOAD_SETTLE).await;
    all_working(&mut clients, &tasks).await?;
    ensure!(streams.len() == STREAMS, "a stream ended early");
    rows.add(
        demo,
        DEMO_LABEL,
        "3 scans running (Execute) + 97 Subscribe = 100 streams",
    )?;
    cancel_all(&mut clients, &tasks, &mut streams).await?;
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(demo, DEMO_LABEL, "after Cancel (streams ended)")?;
    drop(clients);
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(demo, DEMO_LABEL, "after the client disconnected")?;
    Ok(())
}

/// 100 `hold` tasks, all running, their Execute streams open.
async fn hold_load(hold: &Proc, rows: &mut Rows) -> Result<()> {
    let mut clients = connect(&hold.addr).await?;
    let mut streams = JoinSet::new();
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let request = ExecuteRequest {
            capability: "hold".into(),
            params: Some(json_to_struct(&json!({ "seconds": HOLD_SECONDS }))),
            idempotency_key: String::new(),
        };
        let call = clients[i % CONNECTIONS].execute(Request::new(request));
        tasks.push(open(&mut streams, call).await.context("start a hold")?);
    }
    tokio::time::sleep(LOAD_SETTLE).await;
    all_working(&mut clients, &tasks).await?;
    ensure!(streams.len() == STREAMS, "a stream ended early");
    rows.add(
        hold,
        HOLD_LABEL,
        "100 hold tasks running (100 Execute streams)",
    )?;
    cancel_all(&mut clients, &tasks, &mut streams).await?;
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(hold, HOLD_LABEL, "after Cancel (streams ended)")?;
    drop(clients);
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(hold, HOLD_LABEL, "after the client disconnected")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The re-executed servers
// ---------------------------------------------------------------------------------------------

/// The same runtime `#[tokio::main]` builds.
fn server_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")
}

/// A tonic server with tonic-health only, SERVING for "".
fn serve_bare() -> Result<()> {
    server_runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        println!("baseline listening on {addr}");
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await?;
        Ok(())
    })
}

/// An agent on the library's runtime (as `beamline-mesh agent` runs, with its logging) whose
/// one capability, `hold`, runs until cancelled or `seconds` passed.
fn serve_hold(consul: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    server_runtime()?.block_on(async {
        let config = AgentConfig::new("127.0.0.1:0".parse()?, ConsulConfig::new(consul)?);
        let instance = Instance::new(HOLD_BEAMLINE.parse()?, env!("CARGO_PKG_VERSION"));
        let runtime = AgentRuntime::bind(instance, config).await?;
        let capabilities = Capabilities::new(vec![CapabilitySpec {
            name: "hold".into(),
            description: "Runs until cancelled or `seconds` passed; progress every second".into(),
            params_schema: json!({
                "type": "object",
                "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 3600}},
                "required": ["seconds"],
                "additionalProperties": false,
            }),
            actuating: false,
            tags: vec!["bench".into()],
        }])?;
        let agent = HoldAgent {
            instance: runtime.instance().clone(),
            tasks: runtime.tasks(),
            capabilities,
        };
        println!("hold agent listening on {}", runtime.local_addr());
        runtime.serve(agent, std::future::pending()).await?;
        Ok(())
    })
}

struct HoldAgent {
    instance: Instance,
    tasks: TaskTable,
    capabilities: Capabilities,
}

async fn hold(task: TaskHandle, seconds: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut held = 0;
    let cancelled = loop {
        tokio::select! {
            _ = task.cancelled() => break true,
            _ = tick.tick() => {}
        }
        if held >= seconds {
            break false;
        }
        task.progress(
            Some(held as f64 / seconds as f64),
            format!("held {held}/{seconds} s"),
        );
        held += 1;
    };
    if cancelled {
        task.cancelled_done();
    } else {
        task.complete(json_to_struct(&json!({ "held_seconds": held })));
    }
}

#[tonic::async_trait]
impl BeamlineAgent for HoldAgent {
    type ExecuteStream = TaskEventStream;
    type SubscribeStream = TaskEventStream;

    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<AgentCard>, Status> {
        Ok(Response::new(self.capabilities.card(&self.instance)))
    }

    async fn execute(
        &self,
        r: Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let r = r.into_inner();
        let params = self
            .capabilities
            .validate(&r.capability, r.params.as_ref())?;
        let seconds = params["seconds"].as_u64().unwrap_or(1);
        let stream = self.tasks.execute(
            &r.capability,
            r.params.unwrap_or_default(),
            &r.idempotency_key,
            move |task| hold(task, seconds),
        )?;
        Ok(Response::new(stream))
    }

    async fn get_task(&self, r: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        self.tasks.get(&r.into_inner().task_id).map(Response::new)
    }

    async fn subscribe(
        &self,
        r: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.tasks
            .subscribe(&r.into_inner().task_id)
            .map(Response::new)
    }

    async fn cancel(&self, r: Request<CancelRequest>) -> Result<Response<Task>, Status> {
        self.tasks
            .cancel(&r.into_inner().task_id)
            .map(Response::new)
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// The machine's 1/5/15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1_000_000.0)
}

fn print_report(rows: &Rows) {
    let find = |process: &str, phase: &str| {
        rows.0
            .iter()
            .find(|r| r.process.starts_with(process) && r.phase.starts_with(phase))
            .map(|r| r.memory)
    };
    let baseline = find("baseline", "idle");
    let demo_idle = find("demo agent (", "idle");
    let hold_idle = find("hold agent", "idle");
    let goal_kib = 15_000_000 / 1024;

    println!("\n## Results\n");
    println!("| process | phase | VmRSS | RssAnon | RssFile | VmHWM | threads | note |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for row in &rows.0 {
        let m = row.memory;
        let mut notes = Vec::new();
        if let Some(b) = baseline.filter(|_| !row.process.starts_with("baseline")) {
            notes.push(format!(
                "{:.2}× baseline",
                m.rss_kib as f64 / b.rss_kib as f64
            ));
        }
        if row.phase == "idle" && row.process.starts_with("demo agent (") {
            let verdict = if m.rss_kib <= goal_kib {
                "met"
            } else {
                "MISSED"
            };
            notes.push(format!("goal ≤ 15 MB: {verdict}"));
        }
        let idle = if row.process.starts_with("demo agent (") {
            demo_idle
        } else if row.process.starts_with("hold agent") {
            hold_idle
        } else {
            None
        };
        if let Some(idle) = idle.filter(|_| row.phase != "idle") {
            let delta = m.rss_kib as i64 - idle.rss_kib as i64;
            notes.push(format!(
                "{delta:+} KiB vs idle ({:+.1} KiB per stream)",
                delta as f64 / STREAMS as f64
            ));
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.process,
            row.phase,
            mb(m.rss_kib),
            mb(m.anon_kib),
            mb(m.file_kib),
            mb(m.hwm_kib),
            m.threads,
            notes.join("; ")
        );
    }
    println!("\nWhere the idle RSS is (`/proc/<pid>/smaps`, resident pages by mapping):\n");
    println!("| process | executable image | shared libraries | heap, stacks, anonymous |");
    println!("|---|---:|---:|---:|");
    for row in &rows.0 {
        if let Some(Breakdown([image, libs, anon])) = row.breakdown {
            println!(
                "| {} | {} | {} | {} |",
                row.process,
                mb(image),
                mb(libs),
                mb(anon)
            );
        }
    }
}
