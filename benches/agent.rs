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
//! 2. **template agent**: `templates/agent` (`thermometer-agent`, the crate a beamline team
//!    copies, on the agent SDK alone), release build, `--beamline 5.3.3 --consul <registry>`
//!    (default `info` logging), idle. The template is a crate of its own outside the workspace,
//!    so before anything starts the bench builds it itself, as a team would:
//!    `CARGO_TARGET_DIR=<workspace target>/template cargo build --release --locked
//!    --manifest-path templates/agent/Cargo.toml` (printed, bounded by
//!    `TEMPLATE_BUILD_DEADLINE`; quick when nothing changed), and runs
//!    `<workspace target>/template/release/thermometer-agent`.
//!    If that build fails or times out, the bench says so and reports the row as not measured;
//!    it never runs another binary in its place.
//! 3. **demo agent**: the release binary, `beamline-mesh agent --beamline 5.3.1 --consul <registry>`
//!    (default `info` logging), and once more with `RUST_LOG=off` (beamline 5.3.2), idle.
//! 4. **demo agent with mutual TLS**: the same demo agent, beamline 5.3.4 (default `info`
//!    logging), with `--tls-cert … --tls-key … --client-ca … --health-listen 127.0.0.1:0`: a
//!    server certificate for `wire::tls::agent_name` signed by a throwaway CA (rcgen) that this
//!    bench writes into a temp dir of its own, callers required to present a certificate of that
//!    CA, and the registry's gRPC check on the plaintext health-only port. Idle; what TLS adds
//!    beside the plaintext row.
//! 5. **template agent with mutual TLS**: the template agent, beamline 5.3.5, with the same
//!    flags (the SDK gives them to every agent). Idle; goal ≤ 12 MB (an agent a team deploys is
//!    the SDK alone, not the whole `beamline-mesh` binary).
//!
//! "Idle" is measured at one point for all of them: once every process is registered and passing
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
//! Bounded in every way: the template build has a deadline (on expiry cargo and every process it
//! started are killed), every process is killed and reaped on drop, every request has a timeout,
//! every wait a deadline. The run takes about 15 s after the builds.
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) the binary only says
//! how to run it and exits (and builds nothing).

mod support;

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
const TEMPLATE_BEAMLINE: &str = "5.3.3";
const DEMO_TLS_BEAMLINE: &str = "5.3.4";
const TEMPLATE_TLS_BEAMLINE: &str = "5.3.5";
const BARE_SERVICE: &str = "bench-bare";

/// The template crate (outside the workspace), relative to the workspace root and absolute.
const TEMPLATE_MANIFEST: &str = "templates/agent/Cargo.toml";
const TEMPLATE_MANIFEST_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/templates/agent/Cargo.toml");
/// Its binary, under `<CARGO_TARGET_DIR>/release/`.
const TEMPLATE_BIN: &str = "thermometer-agent";
/// Deadline of the template's release build (fat LTO; a clean one takes minutes on 2 cores, an
/// up-to-date one a second).
const TEMPLATE_BUILD_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// The template agent's idle goal (goal: ≤ 10 MB).
const TEMPLATE_GOAL_BYTES: u64 = 10_000_000;
/// The demo agent's idle goal (≤ 15 MB).
const DEMO_GOAL_BYTES: u64 = 15_000_000;
/// An agent's idle goal with mutual TLS on (≤ 12 MB): judged on the template agent (the SDK
/// alone, what a team deploys); the demo agent's row (the whole `beamline-mesh` binary) shows
/// what TLS adds beside its plaintext row.
const TLS_GOAL_BYTES: u64 = 12_000_000;

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
    // Built before any process starts, so the build competes with nothing being measured.
    let template = build_template();
    if let Err(why) = &template {
        println!("template agent: NOT MEASURED: {why}");
    }
    println!(
        "load average before the processes start: {}",
        load_average()
    );
    let rows = support::runtime()?.block_on(run(template))?;
    print_report(&rows);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The template agent's build
// ---------------------------------------------------------------------------------------------

/// Builds `templates/agent` (release, `--locked`) into `<workspace target>/template` as a team
/// would build its copy, bounded by [`TEMPLATE_BUILD_DEADLINE`], and returns the binary it
/// built; or why there is none (the row is then reported as not measured).
fn build_template() -> Result<PathBuf, String> {
    // CARGO_TARGET_TMPDIR is `<workspace target>/tmp` (cargo sets it for benches).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .ok_or("no workspace target directory")?
        .join("template");
    // The cargo that runs this bench (cargo sets CARGO for what it runs).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!(
        "building the template agent: CARGO_TARGET_DIR={} cargo build --release --locked \
         --manifest-path {TEMPLATE_MANIFEST} (deadline {} min)",
        target.display(),
        TEMPLATE_BUILD_DEADLINE.as_secs() / 60
    );
    let log = tempfile::NamedTempFile::new().map_err(|e| format!("create a build log: {e}"))?;
    let stderr = log
        .reopen()
        .map_err(|e| format!("open the build log: {e}"))?;
    let started = Instant::now();
    let child = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(TEMPLATE_MANIFEST_PATH)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", Path::new(&cargo).display()))?;
    let mut build = Build(child);
    let status = loop {
        match build.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < TEMPLATE_BUILD_DEADLINE => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) => {
                drop(build);
                return Err(format!(
                    "the template build did not finish within {} min (killed)",
                    TEMPLATE_BUILD_DEADLINE.as_secs() / 60
                ));
            }
            Err(e) => return Err(format!("wait for cargo: {e}")),
        }
    };
    let elapsed = started.elapsed();
    let mut output = String::new();
    let _ = log.as_file().read_to_string(&mut output);
    let compiled: Vec<&str> = output
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
        .collect();
    if !status.success() {
        let lines: Vec<&str> = output.lines().collect();
        return Err(format!(
            "the template build failed ({status}) after {:.0} s; cargo's last lines:\n{}",
            elapsed.as_secs_f64(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        ));
    }
    let finished = output
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Finished"))
        .unwrap_or("")
        .trim();
    println!(
        "template build: ok in {:.1} s, {} crates compiled{}; {finished}",
        elapsed.as_secs_f64(),
        compiled.len(),
        if compiled.is_empty() {
            " (up to date)"
        } else {
            ""
        }
    );
    let bin = target.join("release").join(TEMPLATE_BIN);
    if !bin.is_file() {
        return Err(format!(
            "the build succeeded but {} is missing",
            bin.display()
        ));
    }
    println!("template agent binary: {}", bin.display());
    Ok(bin)
}

/// The cargo build; on drop, if still running, it and every process under it (rustc, build
/// scripts, the linker) are killed and cargo is reaped.
struct Build(Child);

impl Drop for Build {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; `pid` is our unreaped child, so it cannot
        // have been reused. Stopped first, it starts nothing new while its tree is killed.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        for descendant in descendants(pid) {
            // SAFETY: as above; a descendant that already exited is at worst a stale pid.
            unsafe { libc::kill(descendant, libc::SIGKILL) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every process under `root` (children, grandchildren, ...), from `/proc/<pid>/stat`.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command in parentheses: state, then the parent pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
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

/// The demo agent over mutual TLS with `certs` (and a plaintext health-only port).
fn demo_tls_agent(beamline: &str, consul: &str, certs: &support::MeshCerts) -> Result<Proc> {
    let mut command = support::bin();
    command.args(["agent", "--beamline", beamline, "--consul", consul]);
    command.args(certs.agent_args()?);
    Proc::start("demo agent, mutual TLS", command)
}

/// The template agent built by [`build_template`], with the environment the demo agents get
/// (no `RUST_LOG`, no `CONSUL_HTTP_*`).
fn template_agent(bin: &Path, consul: &str) -> Result<Proc> {
    template_agent_with(bin, "template agent", TEMPLATE_BEAMLINE, consul, Vec::new())
}

/// The template agent of `beamline` with `extra` arguments (the TLS flags).
fn template_agent_with(
    bin: &Path,
    name: &'static str,
    beamline: &str,
    consul: &str,
    extra: Vec<String>,
) -> Result<Proc> {
    let mut command = Command::new(bin);
    command.args(["--beamline", beamline, "--consul", consul]);
    command.args(extra);
    command.env_remove("RUST_LOG");
    command.env_remove("CONSUL_HTTP_ADDR");
    command.env_remove("CONSUL_HTTP_TOKEN");
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

struct Rows {
    rows: Vec<Row>,
    /// Why the template agent was not measured, if it was not.
    template_skipped: Option<String>,
}

impl Rows {
    fn add(&mut self, proc: &Proc, label: &'static str, phase: &str) -> Result<Memory> {
        let memory = proc.memory()?;
        let breakdown = if phase == IDLE {
            Some(proc.breakdown()?)
        } else {
            None
        };
        self.rows.push(Row {
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
const TEMPLATE_LABEL: &str = "template agent (`thermometer-agent`)";
const DEMO_LABEL: &str = "demo agent (`beamline-mesh agent`)";
const QUIET_LABEL: &str = "demo agent, RUST_LOG=off";
const TLS_LABEL: &str = "demo agent, mutual TLS (`--tls-cert … --health-listen`)";
const TEMPLATE_TLS_LABEL: &str = "template agent, mutual TLS";

async fn run(template: Result<PathBuf, String>) -> Result<Rows> {
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
    // Removed on drop, after the TLS agent (declared before it).
    let tls_dir = tempfile::Builder::new()
        .prefix("beamline-bench-tls-")
        .tempdir()
        .context("create TLS temp dir")?;
    let certs = support::write_mesh_certs(tls_dir.path(), DEMO_TLS_BEAMLINE)?;
    let tls = demo_tls_agent(DEMO_TLS_BEAMLINE, &base, &certs)?;
    let template_dir = tls_dir.path().join("template");
    std::fs::create_dir_all(&template_dir).context("create the template's TLS dir")?;
    let template_certs = support::write_mesh_certs(&template_dir, TEMPLATE_TLS_BEAMLINE)?;
    let (template, template_tls, template_skipped) = match template {
        Ok(bin) => (
            Some(template_agent(&bin, &base)?),
            Some(template_agent_with(
                &bin,
                "template agent, mutual TLS",
                TEMPLATE_TLS_BEAMLINE,
                &base,
                template_certs.agent_args()?,
            )?),
            None,
        ),
        Err(why) => (None, None, Some(why)),
    };
    register_bare(&http, &base, &bare.addr).await?;

    let mut waits = vec![
        (&bare, BARE_SERVICE.to_string()),
        (&demo, service_name(DEMO_BEAMLINE)),
        (&quiet, service_name(DEMO_QUIET_BEAMLINE)),
        (&tls, service_name(DEMO_TLS_BEAMLINE)),
    ];
    if let Some(template) = &template {
        waits.push((template, service_name(TEMPLATE_BEAMLINE)));
    }
    if let Some(template_tls) = &template_tls {
        waits.push((template_tls, service_name(TEMPLATE_TLS_BEAMLINE)));
    }
    for (proc, service) in waits {
        wait_passing(&http, &base, &service)
            .await
            .with_context(|| format!("{}; its stderr:\n{}", proc.name, proc.stderr_tail()))?;
    }
    tokio::time::sleep(CHECKS_SETTLE).await;

    // One idle measurement point for all of them.
    let mut rows = Rows {
        rows: Vec::new(),
        template_skipped,
    };
    rows.add(&bare, BARE_LABEL, IDLE)?;
    if let Some(template) = &template {
        rows.add(template, TEMPLATE_LABEL, IDLE)?;
    }
    if let Some(template_tls) = &template_tls {
        rows.add(template_tls, TEMPLATE_TLS_LABEL, IDLE)?;
    }
    rows.add(&demo, DEMO_LABEL, IDLE)?;
    rows.add(&quiet, QUIET_LABEL, IDLE)?;
    rows.add(&tls, TLS_LABEL, IDLE)?;
    // Still registered and passing after the measurement (its health port answers).
    wait_passing(&http, &base, &service_name(DEMO_TLS_BEAMLINE))
        .await
        .with_context(|| format!("TLS agent stderr:\n{}", tls.stderr_tail()))?;
    if let Some(template) = &template {
        // Still registered and passing after the measurement (it did not die meanwhile).
        wait_passing(&http, &base, &service_name(TEMPLATE_BEAMLINE))
            .await
            .with_context(|| format!("template agent stderr:\n{}", template.stderr_tail()))?;
    }
    drop(template);
    drop(template_tls);
    drop(quiet);
    drop(tls);

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

/// "goal ≤ N MB: met" (decimal MB, as the table prints them).
fn goal(m: Memory, bytes: u64) -> String {
    format!(
        "goal ≤ {} MB: {}",
        bytes / 1_000_000,
        support::verdict(m.rss_kib * 1024 <= bytes)
    )
}

fn print_report(rows: &Rows) {
    let find = |process: &str, phase: &str| {
        rows.rows
            .iter()
            .find(|r| r.process == process && r.phase == phase)
            .map(|r| r.memory)
    };
    let baseline = find(BARE_LABEL, IDLE);
    let demo_idle = find(DEMO_LABEL, IDLE);

    println!("\n## Results\n");
    println!("| process | phase | VmRSS | RssAnon | RssFile | VmHWM | threads | note |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for row in &rows.rows {
        let m = row.memory;
        let mut notes = Vec::new();
        if let Some(b) = baseline.filter(|_| row.process != BARE_LABEL) {
            notes.push(format!(
                "{:.2}× baseline",
                m.rss_kib as f64 / b.rss_kib as f64
            ));
        }
        if row.phase == IDLE && row.process == DEMO_LABEL {
            notes.push(goal(m, DEMO_GOAL_BYTES));
        }
        if row.phase == IDLE && row.process == TLS_LABEL {
            if let Some(plain) = demo_idle {
                notes.push(format!(
                    "{:+} KiB vs plaintext demo agent",
                    m.rss_kib as i64 - plain.rss_kib as i64
                ));
            }
        }
        if row.phase == IDLE && row.process == TEMPLATE_LABEL {
            notes.push(goal(m, TEMPLATE_GOAL_BYTES));
        }
        if row.phase == IDLE && row.process == TEMPLATE_TLS_LABEL {
            notes.push(goal(m, TLS_GOAL_BYTES));
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
    if let Some(why) = &rows.template_skipped {
        let why = why.lines().next().unwrap_or("");
        println!("| {TEMPLATE_LABEL} | {IDLE} | — | — | — | — | — | NOT MEASURED: {why} |");
    }
    println!("\nWhere the idle RSS is (`/proc/<pid>/smaps`, resident pages by mapping):\n");
    println!("| process | executable image | shared libraries | heap, stacks, anonymous |");
    println!("|---|---:|---:|---:|");
    for row in &rows.rows {
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
