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
//!
//! "Idle" is measured once every process is registered and passing
//! (`GET /v1/health/service/<name>?passing` non-empty) and a further `CHECKS_SETTLE` has passed,
//! so the registry has run at least three gRPC health checks (2 s interval) and the agents'
//! keep-alive has confirmed its registration at least twice.
//!
//! Then, through real tonic clients (`BeamlineAgentClient`, `CONNECTIONS` HTTP/2 connections),
//! the demo agent runs 100 `monitor_pv` tasks at once (read-only, no motor, so any number may
//! run), each reporting progress every second, their 100 Execute streams open. It is measured
//! while they run, after Cancel (every stream has ended with CANCELLED), and after the client
//! closed its connections.
//!
//! Bounded in every way: every process is killed and reaped on drop, every request has a
//! timeout, every wait a deadline. The run takes about 15 s after the build.
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) the binary only says
//! how to run it and exits.

mod support;

use std::future::Future;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use beamline_mesh::agent::capabilities::json_to_struct;
use beamline_mesh::demo::capabilities::MONITOR_PV;
use beamline_mesh::demo::sim::PV_NAMES;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{
    CancelRequest, ExecuteRequest, GetTaskRequest, Task, TaskEvent, TaskState,
};

use support::{load_average, service_name, Breakdown, Memory, Proc};

const COMMAND: &str = "cargo bench --bench agent";

/// Re-executes this binary as the bare tonic + tonic-health baseline.
const SERVE_BARE: &str = "--serve-bare";

const DEMO_BEAMLINE: &str = "5.3.1";
const DEMO_QUIET_BEAMLINE: &str = "5.3.2";
const BARE_SERVICE: &str = "bench-bare";

/// `monitor_pv` tasks running at once on the demo agent, each with its Execute stream open.
const TASKS: usize = 100;
/// HTTP/2 connections the client spreads its streams over (round robin).
const CONNECTIONS: usize = 10;
/// How long a `monitor_pv` task runs unless cancelled (far longer than the bench).
const MONITOR_MS: u64 = 600_000;
/// Its progress interval (the capability's default).
const MONITOR_INTERVAL_MS: u64 = 1_000;

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
    if std::env::args().any(|a| a == SERVE_BARE) {
        return serve_bare();
    }
    if !support::invoked_as_bench("agent", COMMAND) {
        return Ok(());
    }
    support::print_header(
        "agent benchmark",
        COMMAND,
        "registry, agents and client share them (loopback)",
    );
    println!("load average at the start: {}", load_average());
    let rows = support::runtime()?.block_on(run())?;
    print_report(&rows);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes and the registry side
// ---------------------------------------------------------------------------------------------

fn demo_agent(name: &'static str, beamline: &str, consul: &str, quiet: bool) -> Result<Proc> {
    let mut command = support::bin();
    command.args(["agent", "--beamline", beamline, "--consul", consul]);
    if quiet {
        command.env("RUST_LOG", "off");
    }
    Proc::start(name, command)
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

async fn wait_passing(http: &reqwest::Client, base: &str, service: &str) -> Result<()> {
    support::wait_passing(http, base, service, PASSING_DEADLINE).await
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

struct Row {
    process: &'static str,
    phase: String,
    memory: Memory,
    /// Taken for the idle rows.
    breakdown: Option<Breakdown>,
}

struct Rows(Vec<Row>);

impl Rows {
    fn add(&mut self, proc: &Proc, label: &'static str, phase: &str) -> Result<Memory> {
        let memory = proc.memory()?;
        let breakdown = if phase == IDLE {
            Some(proc.breakdown()?)
        } else {
            None
        };
        self.0.push(Row {
            process: label,
            phase: phase.to_string(),
            memory,
            breakdown,
        });
        Ok(memory)
    }
}

const IDLE: &str = "idle";
const BARE_LABEL: &str = "baseline: tonic + tonic-health";
const DEMO_LABEL: &str = "demo agent (`beamline-mesh agent`)";
const QUIET_LABEL: &str = "demo agent, RUST_LOG=off";

async fn run() -> Result<Rows> {
    let mut registry = support::bin();
    registry.args(["registry", "--listen", "127.0.0.1:0"]);
    let registry = Proc::start("registry", registry)?;
    let base = registry.addr.clone();
    let http = support::http(REQUEST_TIMEOUT)?;

    let mut bare = support::this_bench()?;
    bare.arg(SERVE_BARE);
    let bare = Proc::start("baseline", bare)?;
    let demo = demo_agent("demo agent", DEMO_BEAMLINE, &base, false)?;
    let quiet = demo_agent("demo agent, RUST_LOG=off", DEMO_QUIET_BEAMLINE, &base, true)?;
    register_bare(&http, &base, &bare.addr).await?;

    for (proc, service) in [
        (&bare, BARE_SERVICE.to_string()),
        (&demo, service_name(DEMO_BEAMLINE)),
        (&quiet, service_name(DEMO_QUIET_BEAMLINE)),
    ] {
        wait_passing(&http, &base, &service)
            .await
            .with_context(|| format!("{}; its stderr:\n{}", proc.name, proc.stderr_tail()))?;
    }
    tokio::time::sleep(CHECKS_SETTLE).await;

    let mut rows = Rows(Vec::new());
    rows.add(&bare, BARE_LABEL, IDLE)?;
    rows.add(&demo, DEMO_LABEL, IDLE)?;
    rows.add(&quiet, QUIET_LABEL, IDLE)?;
    drop(quiet);

    monitor_load(&demo, &mut rows)
        .await
        .with_context(|| format!("demo agent stderr:\n{}", demo.stderr_tail()))?;
    // Registered and passing all along? (A process that died would have failed a measurement.)
    wait_passing(&http, &base, &service_name(DEMO_BEAMLINE)).await?;
    Ok(rows)
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

/// 100 `monitor_pv` tasks (over the demo's PVs in turn), all running, their Execute streams
/// open; then Cancel; then the client disconnects.
async fn monitor_load(demo: &Proc, rows: &mut Rows) -> Result<()> {
    let mut clients = connect(&demo.addr).await?;
    let mut streams = JoinSet::new();
    let mut tasks = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let params = json!({
            "name": PV_NAMES[i % PV_NAMES.len()],
            "duration_ms": MONITOR_MS,
            "interval_ms": MONITOR_INTERVAL_MS,
        });
        let request = ExecuteRequest {
            capability: MONITOR_PV.into(),
            params: Some(json_to_struct(&params)),
            idempotency_key: String::new(),
        };
        let call = clients[i % CONNECTIONS].execute(Request::new(request));
        tasks.push(
            open(&mut streams, call)
                .await
                .context("start a monitor_pv")?,
        );
    }
    tokio::time::sleep(LOAD_SETTLE).await;
    all_working(&mut clients, &tasks).await?;
    ensure!(streams.len() == TASKS, "a stream ended early");
    rows.add(
        demo,
        DEMO_LABEL,
        &format!("{TASKS} monitor_pv tasks running ({TASKS} Execute streams)"),
    )?;
    cancel_all(&mut clients, &tasks, &mut streams).await?;
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(demo, DEMO_LABEL, "after Cancel (streams ended)")?;
    drop(clients);
    tokio::time::sleep(AFTER_SETTLE).await;
    rows.add(demo, DEMO_LABEL, "after the client disconnected")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The re-executed baseline
// ---------------------------------------------------------------------------------------------

/// A tonic server with tonic-health only, SERVING for "", on the runtime `#[tokio::main]` builds.
fn serve_bare() -> Result<()> {
    support::runtime()?.block_on(async {
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

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1_000_000.0)
}

fn print_report(rows: &Rows) {
    let find = |process: &str, phase: &str| {
        rows.0
            .iter()
            .find(|r| r.process == process && r.phase == phase)
            .map(|r| r.memory)
    };
    let baseline = find(BARE_LABEL, IDLE);
    let demo_idle = find(DEMO_LABEL, IDLE);
    let goal_kib = 15_000_000 / 1024;

    println!("\n## Results\n");
    println!("| process | phase | VmRSS | RssAnon | RssFile | VmHWM | threads | note |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for row in &rows.0 {
        let m = row.memory;
        let mut notes = Vec::new();
        if let Some(b) = baseline.filter(|_| row.process != BARE_LABEL) {
            notes.push(format!(
                "{:.2}× baseline",
                m.rss_kib as f64 / b.rss_kib as f64
            ));
        }
        if row.phase == IDLE && row.process == DEMO_LABEL {
            notes.push(format!(
                "goal ≤ 15 MB: {}",
                support::verdict(m.rss_kib <= goal_kib)
            ));
        }
        if let Some(idle) = demo_idle.filter(|_| row.process == DEMO_LABEL && row.phase != IDLE) {
            let delta = m.rss_kib as i64 - idle.rss_kib as i64;
            notes.push(format!(
                "{delta:+} KiB vs idle ({:+.1} KiB per task)",
                delta as f64 / TASKS as f64
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
