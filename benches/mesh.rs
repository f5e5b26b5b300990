//! Mesh and gateway benchmark: `cargo bench --bench mesh`.
//!
//! Starts the real release binary six times, over loopback only: a registry
//! (`registry --listen 127.0.0.1:0`), a demo agent (`agent --beamline 5.3.1 --consul …`), a
//! bare gateway (`gateway --listen 127.0.0.1:0 --consul … --insecure-no-auth --no-access-log`:
//! routing only, no policy layer), a policed gateway (`gateway --listen 127.0.0.1:0 --consul
//! … --auth-file FILE --allow-plaintext --metrics-listen 127.0.0.1:0`: every layer), a second
//! demo agent over mutual TLS (`agent --beamline 5.3.2 --consul … --tls-cert … --tls-key …
//! --client-ca … --health-listen 127.0.0.1:0`) and a third gateway dialling agents over mutual
//! TLS (the bare gateway's flags plus `--upstream-ca … --upstream-cert … --upstream-key …`),
//! plus a byte-copying TCP proxy to the first agent (this bench re-executed) and, when nginx is on
//! the machine, two nginx (`support/nginx.rs`); waits (bounded) until both agents are passing,
//! and then measures unary `Describe` side by side, in the same run, over eight paths, all but
//! the sixth to the plaintext agent:
//!
//! 1. **direct**: a tonic `Channel` (one HTTP/2 connection) to the agent under the generated
//!    `BeamlineAgentClient`;
//! 2. **mesh**: this process's own `Mesh` (`MeshSettings::default()`, Consul discovery, p2c over
//!    Peak-EWMA, the router, retries and deadlines), `mesh.agent("5.3.1")`;
//! 3. **tcp proxy**: a tonic `Channel` to a process that only copies bytes to the agent (this
//!    bench re-executed, `support/tcp_proxy.rs`), placed as the gateways are: what one more
//!    process on the path costs on this machine before any HTTP/2, routing or policy;
//! 4. **gateway**: a tonic `Channel` to the bare gateway, with `x-beamline: 5.3.1` on every
//!    request (the gateway runs its own mesh to the agent: one extra hop);
//! 5. **policed gateway**: the same to the second gateway, whose policy file (written by this
//!    bench into a temp dir) has one operator caller for every beamline, identified by the
//!    SHA-256 of an API key, and per-beamline and per-caller limits far above any rate reached
//!    here (10⁶/s, burst 10⁶), so that no call is refused; every request also carries
//!    `authorization: Bearer <key>`. The difference from path 4 is the cost of the whole policy
//!    stack on a call that passes it: metrics and the access log, authentication, rate limiting.
//!    The difference between paths 3 and 4 is what the gateway adds over a bare hop.
//! 6. **gateway (mTLS to agents)**: a plaintext tonic `Channel` to the third gateway, with
//!    `x-beamline: 5.3.2`: the caller's side is path 4's, and the gateway's hop to the agent is
//!    mutual TLS (the gateway presents its client certificate, DNS SAN
//!    `wire::tls::GATEWAY_NAME`, and verifies the agent's, DNS SAN `wire::tls::agent_name`).
//!    The certificates (a throwaway CA made with rcgen, the agent's server certificate and the
//!    gateway's client certificate) are written into a temp dir of this bench. The difference
//!    from path 4 (same binary, same flags but the `--upstream-*` and `--tls-*` ones, one more
//!    agent process of the same kind) is the cost of TLS on the gateway-to-agent hop: the
//!    connection is long-lived, so a call pays encryption and decryption, not a handshake.
//! 7. **nginx (no access log)**: a tonic `Channel` to nginx (`grpc_pass` to a static upstream of
//!    the plaintext agent, h2c listener, `keepalive` upstream, `access_log off`), with the
//!    gateway path's request (`x-beamline` included, which nginx passes on): what a proxy with
//!    no discovery and no policy costs (issue 16's yardstick);
//! 8. **nginx (access log)**: the same with one access-log line per call to a file.
//!
//! The nginx paths run when `nginx` is found (on `PATH` or in `/usr/sbin`); otherwise the bench
//! says they were skipped and how to install it (`apt-get install nginx`). Each nginx has a config
//! of its own in a temp dir (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`), one master and
//! `worker_processes 1`, placed as the gateways are; its CPU and RSS are its master's plus its
//! worker's.
//!
//! The policed gateway writes one access-log line per call to stderr; [`Proc`] sends every
//! child's stderr to a log file of its own (never a pipe that could fill).
//!
//! Each cell (path × concurrency 1 and 64) runs `WARMUP` then `MEASURE`, with `concurrency`
//! tasks each calling in a loop; a call counts when it completes inside the measured window.
//! Cells are repeated `REPEATS` times, the order of the paths rotated every round so machine
//! noise (other builds, the registry's health checks) hits all six alike; the report gives
//! the median of the rounds. Every request carries the same `grpc-timeout` (5 s), so the agent
//! does the same work on every path (the mesh would otherwise add its default deadline).
//!
//! The load generator (and, on the mesh path, the in-process mesh) shares the machine's cores
//! with the agents and, on the gateway paths, with that gateway: at concurrency 64 the cores are
//! saturated, so there latency is mostly queueing and throughput is bounded by the CPU that all
//! processes of a path spend per call. The CPU time each process spent per call (from
//! `/proc/<pid>/stat`) is reported beside the numbers for that reason, with the RSS of the
//! gateway, proxy or nginx of the path at the end of each cell. With `MESH_BENCH_GATEWAY_CPU=N`
//! the gateways, the tcp proxy and nginx run on CPU N alone and every other process on the
//! remaining CPUs (each runtime sizes itself to its CPUs), as when the gateway
//! has a node or a CPU limit of its own: then the gateway cells measure the hop, not a queue
//! for shared cores.
//!
//! Goals: mesh ≥ 0.95 × direct throughput and ≤ 50 µs added p50; gateway ≤ 150 µs
//! added p50 and ≤ 1 ms added p99; the policy layers add ≤ 20 µs p50 (policed gateway
//! vs bare gateway). The TLS hop (path 6 vs path 4) has no goal yet: the report gives its
//! added p50 and p99 and the CPU µs per call it adds to the gateway and to the agent. Against
//! nginx (issue 16's numbers, reported, not failed): the policed gateway (the default
//! configuration: access log, metrics, auth, limits) at or under nginx without an access log in
//! CPU per call at concurrency 1 and 64, its added p50 at concurrency 1 at or under nginx's, its
//! throughput at concurrency 64 at or above nginx's.
//!
//! Bounded in every way: every process is killed and reaped on drop, every wait has a deadline,
//! every cell a bound on its duration. The run takes about 300 s after the build (eight paths).
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) the binary only says
//! how to run it and exits.

mod support;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use beamline_mesh::consul::ConsulConfig;
use beamline_mesh::gateway::auth::sha256_hex;
use beamline_mesh::mesh::{Mesh, MeshChannel, MeshSettings};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use beamline_mesh::wire::header::BEAMLINE as ROUTING_KEY;

use support::nginx::Nginx;
use support::{cpu_of, load_average, median, percentile, verdict, Proc};

const COMMAND: &str = "cargo bench --bench mesh";

const BEAMLINE: &str = "5.3.1";
const SERVICE: &str = "beamline-5-3-1";
/// The second agent's beamline, served over mutual TLS (path 6), and its Consul service.
const TLS_BEAMLINE: &str = "5.3.2";
const TLS_SERVICE: &str = "beamline-5-3-2";

/// The policed gateway's one caller: its API key, and the `authorization` value that carries it.
const API_KEY: &str = "bench-key-4f9c2e7a1d8b6035";
const BEARER: &str = "Bearer bench-key-4f9c2e7a1d8b6035";

/// Concurrent callers per cell.
const CONCURRENCY: [usize; 2] = [1, 64];
/// Calls before the measured window of each cell (not counted).
const WARMUP: Duration = Duration::from_millis(500);
/// The measured window of each cell.
const MEASURE: Duration = Duration::from_secs(3);
/// Rounds of every cell; the report gives the median.
const REPEATS: usize = 5;

/// What one run measures. The defaults are the run in docs/benchmarks.md; `MESH_BENCH_PATHS`
/// (`direct,mesh,proxy,gateway,policed,gateway-mtls,nginx,nginx-log`), `MESH_BENCH_CONCURRENCY`
/// (`1,64`), `MESH_BENCH_SECONDS` and `MESH_BENCH_ROUNDS` narrow or lengthen it, e.g. to hold
/// one path under a profiler (`perf record -p PID`; the processes' pids are printed at the
/// start).
struct Plan {
    paths: Vec<Path>,
    concurrency: Vec<usize>,
    measure: Duration,
    rounds: usize,
    /// `MESH_BENCH_GATEWAY_CPU=N`: the gateways and the tcp proxy run on CPU N alone, and
    /// everything else (this process, the agents, the registry) on the other CPUs, as when the
    /// gateway has a node or a CPU limit of its own. Unset: every process may run on every CPU.
    gateway_cpu: Option<usize>,
    /// The nginx executable, when the plan has an nginx path and the machine has nginx.
    nginx: Option<std::path::PathBuf>,
}

impl Plan {
    fn from_env() -> Result<Plan> {
        fn list<T>(
            name: &str,
            default: Vec<T>,
            parse: impl Fn(&str) -> Option<T>,
        ) -> Result<Vec<T>> {
            let Ok(value) = std::env::var(name) else {
                return Ok(default);
            };
            let items = value
                .split(',')
                .map(|item| {
                    parse(item.trim()).with_context(|| format!("{name}: bad item {item:?}"))
                })
                .collect::<Result<Vec<T>>>()?;
            ensure!(!items.is_empty(), "{name} is empty");
            Ok(items)
        }
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{name}: want a positive whole number, got {v:?}")),
                Err(_) => Ok(default),
            }
        };
        let mut paths = list("MESH_BENCH_PATHS", PATHS.to_vec(), |item| {
            PATHS.into_iter().find(|p| p.key() == item)
        })?;
        let mut nginx = None;
        if paths.iter().any(|p| p.is_nginx()) {
            nginx = support::nginx::find();
            if nginx.is_none() {
                println!(
                    "nginx paths skipped: no nginx on PATH or in /usr/sbin (install it with `{}`)",
                    support::nginx::INSTALL
                );
                paths.retain(|p| !p.is_nginx());
            }
        }
        Ok(Plan {
            paths,
            concurrency: list("MESH_BENCH_CONCURRENCY", CONCURRENCY.to_vec(), |item| {
                item.parse().ok().filter(|n| *n > 0)
            })?,
            measure: Duration::from_secs(number("MESH_BENCH_SECONDS", MEASURE.as_secs())?),
            rounds: number("MESH_BENCH_ROUNDS", REPEATS as u64)? as usize,
            gateway_cpu: match std::env::var("MESH_BENCH_GATEWAY_CPU") {
                Ok(v) => Some(v.trim().parse::<usize>().with_context(|| {
                    format!("MESH_BENCH_GATEWAY_CPU: want a CPU number, got {v:?}")
                })?),
                Err(_) => None,
            },
            nginx,
        })
    }

    /// Pins this process (and so the agent and registry it starts) off the gateway's CPU;
    /// what the report should say about placement.
    fn place(&self) -> Result<String> {
        let Some(gateway_cpu) = self.gateway_cpu else {
            return Ok(
                "load generator, in-process mesh, both agents, the three gateways, nginx and \
                 registry all share them (loopback)"
                    .to_string(),
            );
        };
        let allowed = support::allowed_cpus()?;
        ensure!(
            allowed.contains(&gateway_cpu),
            "MESH_BENCH_GATEWAY_CPU={gateway_cpu}: not one of this process's CPUs {allowed:?}"
        );
        let rest: Vec<usize> = allowed.into_iter().filter(|&c| c != gateway_cpu).collect();
        ensure!(
            !rest.is_empty(),
            "MESH_BENCH_GATEWAY_CPU needs at least two CPUs"
        );
        support::pin_self(&rest)?;
        Ok(format!(
            "the three gateways, the tcp proxy and nginx on CPU {gateway_cpu} alone \
             (MESH_BENCH_GATEWAY_CPU); load generator, in-process mesh, both agents and registry \
             on CPUs {rest:?} (loopback)"
        ))
    }
}

/// `grpc-timeout` of every benchmark call, and the timeout of every set-up request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for the agent to be registered and passing.
const PASSING_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline for the first successful call over each path.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Goals.
const GOAL_MESH_THROUGHPUT: f64 = 0.95;
const GOAL_MESH_ADDED_P50: Duration = Duration::from_micros(50);
const GOAL_GATEWAY_ADDED_P50: Duration = Duration::from_micros(150);
const GOAL_GATEWAY_ADDED_P99: Duration = Duration::from_millis(1);
/// Goal: added p50 of the policy layers (policed gateway vs bare gateway).
const GOAL_POLICY_ADDED_P50: Duration = Duration::from_micros(20);

fn main() -> Result<()> {
    if let Some(upstream) = support::tcp_proxy::requested() {
        return support::tcp_proxy::serve(&upstream);
    }
    if !support::invoked_as_bench("mesh", COMMAND) {
        return Ok(());
    }
    let plan = Plan::from_env()?;
    if plan.paths.is_empty() {
        println!("mesh benchmark: nothing left to measure");
        return Ok(());
    }
    let placement = plan.place()?;
    support::print_header("mesh and gateway benchmark", COMMAND, &placement);
    println!(
        "cells: unary Describe over {:?}, concurrency {:?}, {WARMUP:?} warm-up + {:?} measured, {} rounds (paths rotated), medians reported",
        plan.paths.iter().map(|p| p.key()).collect::<Vec<_>>(),
        plan.concurrency,
        plan.measure,
        plan.rounds,
    );
    if let Some(nginx) = &plan.nginx {
        println!(
            "nginx: {} ({})",
            nginx.display(),
            support::nginx::version(nginx)
        );
    }
    println!("load average at the start: {}", load_average());
    let runtime = support::runtime()?;
    let cells = runtime.block_on(run(&plan))?;
    drop(runtime);
    print_report(&plan, &cells);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The release binary with `args`.
fn binary(args: &[&str]) -> std::process::Command {
    let mut command = support::bin();
    command.args(args);
    command
}

/// The release binary with `args`; see [`Proc::start`].
fn start(name: &'static str, args: &[&str]) -> Result<Proc> {
    Proc::start(name, binary(args))
}

/// `command` as [`Proc::start`] does, on `cpu` alone if one is given.
fn start_on(
    name: &'static str,
    mut command: std::process::Command,
    cpu: Option<usize>,
) -> Result<Proc> {
    if let Some(cpu) = cpu {
        support::pin_command(&mut command, &[cpu])?;
    }
    Proc::start(name, command)
}

/// Polls (bounded) until `service` has a passing instance.
async fn wait_passing(consul: &str, service: &str) -> Result<()> {
    let http = support::http(REQUEST_TIMEOUT)?;
    support::wait_passing(
        &http,
        &format!("http://{consul}"),
        service,
        PASSING_DEADLINE,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The eight paths
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Mesh,
    Proxy,
    Gateway,
    Policed,
    GatewayMtls,
    /// nginx, `access_log off`.
    Nginx,
    /// nginx with an access log to a file.
    NginxLog,
}

const PATHS: [Path; 8] = [
    Path::Direct,
    Path::Mesh,
    Path::Proxy,
    Path::Gateway,
    Path::Policed,
    Path::GatewayMtls,
    Path::Nginx,
    Path::NginxLog,
];

impl Path {
    /// Its name in `MESH_BENCH_PATHS`.
    fn key(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Mesh => "mesh",
            Path::Proxy => "proxy",
            Path::Gateway => "gateway",
            Path::Policed => "policed",
            Path::GatewayMtls => "gateway-mtls",
            Path::Nginx => "nginx",
            Path::NginxLog => "nginx-log",
        }
    }

    fn is_nginx(self) -> bool {
        matches!(self, Path::Nginx | Path::NginxLog)
    }

    /// A process between the bench and the agent (its CPU and RSS are reported).
    fn has_hop(self) -> bool {
        !matches!(self, Path::Direct | Path::Mesh)
    }

    fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Mesh => "mesh",
            Path::Proxy => "tcp proxy",
            Path::Gateway => "gateway",
            Path::Policed => "policed gateway",
            Path::GatewayMtls => "gateway (mTLS to agents)",
            Path::Nginx => "nginx (no access log)",
            Path::NginxLog => "nginx (access log)",
        }
    }
}

#[derive(Clone)]
enum Client {
    Direct(BeamlineAgentClient<Channel>),
    Mesh(BeamlineAgentClient<MeshChannel>),
    Proxy(BeamlineAgentClient<Channel>),
    Gateway(BeamlineAgentClient<Channel>),
    Policed(BeamlineAgentClient<Channel>),
    /// To the gateway that dials agents over mutual TLS; routed to the TLS agent.
    GatewayMtls(BeamlineAgentClient<Channel>),
    /// To either nginx; the gateway path's request (nginx passes `x-beamline` on).
    Nginx(BeamlineAgentClient<Channel>),
}

impl Client {
    async fn describe(&mut self) -> Result<(), tonic::Status> {
        let mut request = Request::new(DescribeRequest {});
        request.set_timeout(REQUEST_TIMEOUT);
        match self {
            Client::Direct(client) => client.describe(request).await.map(drop),
            Client::Mesh(client) => client.describe(request).await.map(drop),
            Client::Proxy(client) => client.describe(request).await.map(drop),
            Client::Gateway(client) | Client::Nginx(client) => {
                request
                    .metadata_mut()
                    .insert(ROUTING_KEY, MetadataValue::from_static(BEAMLINE));
                client.describe(request).await.map(drop)
            }
            Client::Policed(client) => {
                let metadata = request.metadata_mut();
                metadata.insert(ROUTING_KEY, MetadataValue::from_static(BEAMLINE));
                metadata.insert("authorization", MetadataValue::from_static(BEARER));
                client.describe(request).await.map(drop)
            }
            Client::GatewayMtls(client) => {
                request
                    .metadata_mut()
                    .insert(ROUTING_KEY, MetadataValue::from_static(TLS_BEAMLINE));
                client.describe(request).await.map(drop)
            }
        }
    }

    /// Calls until one succeeds (each attempt bounded), within `READY_DEADLINE`.
    async fn first_success(&mut self, what: &str) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let last = match tokio::time::timeout(REQUEST_TIMEOUT, self.describe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) => format!("{status}"),
                Err(_) => "timed out".to_string(),
            };
            ensure!(
                Instant::now() < deadline,
                "{what}: no successful Describe within {READY_DEADLINE:?} (last: {last})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn channel(addr: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connect to {addr}"))
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// The policed gateway's `--auth-file`: one operator caller for every beamline, and limits no
/// cell comes near, so every call passes all the policy layers.
fn policy_file() -> String {
    format!(
        "[[caller]]\n\
         name = \"bench\"\n\
         api_key_sha256 = \"{}\"\n\
         role = \"operator\"\n\
         beamlines = [\"*\"]\n\
         [limits]\n\
         per_beamline = {{ rate = 1000000, burst = 1000000 }}\n\
         per_caller = {{ rate = 1000000, burst = 1000000 }}\n",
        sha256_hex(API_KEY.as_bytes())
    )
}

/// One measured cell.
struct Cell {
    path: Path,
    concurrency: usize,
    measure: Duration,
    calls: usize,
    errors: usize,
    /// Latencies of the successful calls completed in the window, sorted.
    latencies: Vec<Duration>,
    /// CPU time spent during the window by this process (load generator + in-process mesh),
    /// the agent of the path (the TLS one on the mTLS path) and the gateway or proxy of the
    /// path.
    cpu: [Duration; 3],
    /// RSS of the gateway, proxy or nginx of the path at the end of the window, in KiB.
    hop_rss_kib: u64,
}

impl Cell {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.measure.as_secs_f64()
    }

    /// Nearest-rank percentile, `p` in 0..=100.
    fn pct(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// CPU µs per call of each process.
    fn cpu_per_call(&self) -> [f64; 3] {
        let calls = self.calls.max(1) as f64;
        self.cpu.map(|d| d.as_secs_f64() * 1e6 / calls)
    }
}

async fn run(plan: &Plan) -> Result<Vec<Cell>> {
    let registry = start("registry", &["registry", "--listen", "127.0.0.1:0"])?;
    let consul = registry.authority().to_string();
    let agent = start(
        "agent",
        &["agent", "--beamline", BEAMLINE, "--consul", &consul],
    )?;
    let gateway = start_on(
        "gateway",
        binary(&[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            &consul,
            "--insecure-no-auth",
            "--no-access-log",
        ]),
        plan.gateway_cpu,
    )?;
    let mut proxy = support::this_bench()?;
    proxy.args([support::tcp_proxy::FLAG, agent.authority()]);
    let proxy = start_on("tcp proxy", proxy, plan.gateway_cpu)?;
    let policy_dir = tempfile::Builder::new()
        .prefix("beamline-bench-policy-")
        .tempdir()
        .context("create policy temp dir")?;
    let policy_path = policy_dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy_file()).context("write policy file")?;
    let policy_arg = policy_path.to_str().context("policy path is not UTF-8")?;
    let policed = start_on(
        "policed gateway",
        binary(&[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--consul",
            &consul,
            "--auth-file",
            policy_arg,
            "--allow-plaintext",
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
        plan.gateway_cpu,
    )?;
    // Path 6: a CA, the TLS agent's certificate and the gateway's client certificate, in a temp
    // dir removed on drop (after the processes that read them: declared before them).
    let tls_dir = tempfile::Builder::new()
        .prefix("beamline-bench-tls-")
        .tempdir()
        .context("create TLS temp dir")?;
    let certs = support::write_mesh_certs(tls_dir.path(), TLS_BEAMLINE)?;
    let mut tls_agent_args: Vec<String> =
        ["agent", "--beamline", TLS_BEAMLINE, "--consul", &consul]
            .map(str::to_string)
            .to_vec();
    tls_agent_args.extend(certs.agent_args()?);
    let tls_agent = Proc::start("TLS agent", {
        let mut command = support::bin();
        command.args(&tls_agent_args);
        command
    })?;
    let mut mtls_gateway = binary(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--consul",
        &consul,
        "--insecure-no-auth",
        "--no-access-log",
    ]);
    mtls_gateway.args(certs.gateway_args()?);
    let mtls_gateway = start_on("mTLS gateway", mtls_gateway, plan.gateway_cpu)?;
    wait_passing(&consul, SERVICE)
        .await
        .with_context(|| format!("agent stderr:\n{}", agent.stderr_tail()))?;
    wait_passing(&consul, TLS_SERVICE)
        .await
        .with_context(|| format!("TLS agent stderr:\n{}", tls_agent.stderr_tail()))?;
    println!(
        "registry {consul}, agent {} (passing, pid {}), TLS agent {} (passing, pid {}), tcp proxy {} (pid {}), gateway {} (pid {}), policed gateway {} (pid {}), mTLS gateway {} (pid {}), bench pid {}",
        agent.authority(),
        agent.pid(),
        tls_agent.authority(),
        tls_agent.pid(),
        proxy.authority(),
        proxy.pid(),
        gateway.authority(),
        gateway.pid(),
        policed.authority(),
        policed.pid(),
        mtls_gateway.authority(),
        mtls_gateway.pid(),
        std::process::id(),
    );

    // Paths 7 and 8: nginx to the agent the gateway paths reach.
    let nginx = match &plan.nginx {
        Some(exe) => {
            let start = |name, access_log| {
                Nginx::start(
                    name,
                    exe,
                    &[agent.authority()],
                    access_log,
                    plan.gateway_cpu,
                )
            };
            Some((start("nginx", false)?, start("nginx (access log)", true)?))
        }
        None => None,
    };
    if let Some((bare, logged)) = &nginx {
        println!(
            "nginx {} (master pid {}), nginx with access log {} (master pid {})",
            bare.authority(),
            bare.pid(),
            logged.authority(),
            logged.pid()
        );
    }

    let mesh = Mesh::new(ConsulConfig::new(&consul)?, MeshSettings::default());
    let mut clients = Vec::new();
    for path in plan.paths.iter().copied() {
        let client = match path {
            Path::Direct => {
                Client::Direct(BeamlineAgentClient::new(channel(agent.authority()).await?))
            }
            Path::Mesh => Client::Mesh(mesh.agent(BEAMLINE)?),
            Path::Proxy => {
                Client::Proxy(BeamlineAgentClient::new(channel(proxy.authority()).await?))
            }
            Path::Gateway => Client::Gateway(BeamlineAgentClient::new(
                channel(gateway.authority()).await?,
            )),
            Path::Policed => Client::Policed(BeamlineAgentClient::new(
                channel(policed.authority()).await?,
            )),
            Path::GatewayMtls => Client::GatewayMtls(BeamlineAgentClient::new(
                channel(mtls_gateway.authority()).await?,
            )),
            Path::Nginx | Path::NginxLog => {
                let (bare, logged) = nginx.as_ref().context("nginx path without nginx")?;
                let which = if path == Path::Nginx { bare } else { logged };
                Client::Nginx(BeamlineAgentClient::new(channel(which.authority()).await?))
            }
        };
        clients.push((path, client));
    }
    for (path, client) in &mut clients {
        let path = *path;
        client
            .first_success(path.label())
            .await
            .with_context(|| match path {
                Path::Proxy => format!("tcp proxy stderr:\n{}", proxy.stderr_tail()),
                Path::Gateway => format!("gateway stderr:\n{}", gateway.stderr_tail()),
                Path::Policed => {
                    format!("policed gateway stderr:\n{}", policed.stderr_tail())
                }
                Path::GatewayMtls => format!(
                    "mTLS gateway stderr:\n{}\nTLS agent stderr:\n{}",
                    mtls_gateway.stderr_tail(),
                    tls_agent.stderr_tail()
                ),
                Path::Nginx | Path::NginxLog => match &nginx {
                    Some((bare, logged)) => format!(
                        "nginx error log:\n{}\nnginx (access log) error log:\n{}",
                        bare.error_tail(),
                        logged.error_tail()
                    ),
                    None => String::new(),
                },
                _ => format!("agent stderr:\n{}", agent.stderr_tail()),
            })?;
    }

    let mut cells = Vec::new();
    for round in 0..plan.rounds {
        for &concurrency in &plan.concurrency {
            for i in 0..plan.paths.len() {
                let (path, client) = &clients[(i + round) % clients.len()];
                let path = *path;
                let hop = match (path, &nginx) {
                    (Path::Policed, _) => Hop::Proc(&policed),
                    (Path::Proxy, _) => Hop::Proc(&proxy),
                    (Path::GatewayMtls, _) => Hop::Proc(&mtls_gateway),
                    (Path::Nginx, Some((bare, _))) => Hop::Nginx(bare),
                    (Path::NginxLog, Some((_, logged))) => Hop::Nginx(logged),
                    // Direct and mesh have no hop; the bare gateway's numbers are not reported.
                    _ => Hop::Proc(&gateway),
                };
                let target = match path {
                    Path::GatewayMtls => &tls_agent,
                    _ => &agent,
                };
                let cell = measure(path, client, concurrency, plan.measure, target, hop).await?;
                println!(
                    "round {} c={concurrency:>2} {:<24}: {:>7.0} calls/s, p50 {:>8}, p99 {:>8}, {} errors",
                    round + 1,
                    cell.path.label(),
                    cell.per_second(),
                    micros(cell.pct(50.0)),
                    micros(cell.pct(99.0)),
                    cell.errors,
                );
                cells.push(cell);
            }
        }
    }
    if let Some((_, logged)) = &nginx {
        println!(
            "nginx (access log) wrote {} lines to its access log",
            logged.access_log_lines()
        );
    }
    // The agents served every cell: they must still be passing.
    wait_passing(&consul, SERVICE).await?;
    wait_passing(&consul, TLS_SERVICE).await?;
    drop(mesh);
    Ok(cells)
}

/// The process of a path between the bench and the agent: a gateway or proxy, or an nginx.
#[derive(Clone, Copy)]
enum Hop<'a> {
    Proc(&'a Proc),
    Nginx(&'a Nginx),
}

impl Hop<'_> {
    fn cpu(self) -> Duration {
        match self {
            Hop::Proc(p) => p.cpu(),
            Hop::Nginx(n) => n.cpu(),
        }
    }

    fn rss_kib(self) -> u64 {
        match self {
            Hop::Proc(p) => p.memory().map_or(0, |m| m.rss_kib),
            Hop::Nginx(n) => n.rss_kib(),
        }
    }
}

/// One cell: `concurrency` callers, warm-up, then the measured window.
async fn measure(
    path: Path,
    client: &Client,
    concurrency: usize,
    window: Duration,
    agent: &Proc,
    hop: Hop<'_>,
) -> Result<Cell> {
    let start = Instant::now() + Duration::from_millis(5);
    let from = start + WARMUP;
    let until = from + window;
    let mut callers = JoinSet::new();
    for _ in 0..concurrency {
        let mut client = client.clone();
        callers.spawn(async move {
            let mut latencies = Vec::with_capacity(64 * 1024);
            let mut errors = 0usize;
            tokio::time::sleep_until(start).await;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let result = client.describe().await;
                let done = Instant::now();
                if done < from || done >= until {
                    continue;
                }
                match result {
                    Ok(()) => latencies.push(done - sent),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let cpu_now = || [cpu_of("self"), agent.cpu(), hop.cpu()];
    tokio::time::sleep_until(from).await;
    let cpu_from = cpu_now();
    tokio::time::sleep_until(until).await;
    let cpu_until = cpu_now();
    let hop_rss_kib = hop.rss_kib();
    // Every caller stops sending at `until`; its last call is bounded by its grpc-timeout.
    let bound = REQUEST_TIMEOUT + Duration::from_secs(2);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let joined = tokio::time::timeout(bound, async {
        while let Some(caller) = callers.join_next().await {
            let (mut l, e) = caller.context("caller task")?;
            latencies.append(&mut l);
            errors += e;
        }
        anyhow::Ok(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => bail!(
            "{} c={concurrency}: callers did not stop within {bound:?}",
            path.label()
        ),
    }
    latencies.sort_unstable();
    let cpu = std::array::from_fn(|i| cpu_until[i].saturating_sub(cpu_from[i]));
    Ok(Cell {
        path,
        concurrency,
        measure: window,
        calls: latencies.len(),
        errors,
        latencies,
        cpu,
        hop_rss_kib,
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// The medians over the rounds of one path × concurrency.
struct Summary {
    per_second: f64,
    min_per_second: f64,
    max_per_second: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_call: [f64; 3],
    /// RSS of the path's gateway, proxy or nginx at the end of a cell, MB.
    hop_rss_mb: f64,
    errors: usize,
}

fn summarize(cells: &[Cell], path: Path, concurrency: usize) -> Option<Summary> {
    let mine: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.path == path && c.concurrency == concurrency)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let rates: Vec<f64> = mine.iter().map(|c| c.per_second()).collect();
    let cpu = |i: usize| median(mine.iter().map(|c| c.cpu_per_call()[i]).collect());
    Some(Summary {
        per_second: median(rates.clone()),
        min_per_second: rates.iter().copied().fold(f64::INFINITY, f64::min),
        max_per_second: rates.iter().copied().fold(0.0, f64::max),
        p50: median(mine.iter().map(|c| c.pct(50.0)).collect()),
        p99: median(mine.iter().map(|c| c.pct(99.0)).collect()),
        cpu_per_call: [cpu(0), cpu(1), cpu(2)],
        hop_rss_mb: median(mine.iter().map(|c| c.hop_rss_kib as f64 / 1024.0).collect()),
        errors: mine.iter().map(|c| c.errors).sum(),
    })
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `a - b` in µs, signed.
fn added(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e6
}

fn print_report(plan: &Plan, cells: &[Cell]) {
    println!("\n## Results (median of {} rounds)\n", plan.rounds);
    println!(
        "| path | concurrency | calls/s (min–max) | p50 | p99 | CPU µs/call: bench process | agent | gateway, proxy or nginx | RSS MB: gateway, proxy or nginx | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &plan.concurrency {
        for path in PATHS {
            let Some(s) = summarize(cells, path, concurrency) else {
                continue;
            };
            let [client, agent, gateway] = s.cpu_per_call;
            let (gateway, rss) = if path.has_hop() {
                (format!("{gateway:.1}"), format!("{:.1}", s.hop_rss_mb))
            } else {
                ("–".into(), "–".into())
            };
            println!(
                "| {} | {concurrency} | {:.0} ({:.0}–{:.0}) | {} | {} | {client:.1} | {agent:.1} | {gateway} | {rss} | {} |",
                path.label(),
                s.per_second,
                s.min_per_second,
                s.max_per_second,
                micros(s.p50),
                micros(s.p99),
                s.errors,
            );
        }
    }
    println!();
    println!(
        "| concurrency | mesh/direct calls/s (goal ≥ {GOAL_MESH_THROUGHPUT}) | mesh added p50 (goal ≤ {} µs) | gateway/direct calls/s | gateway added p50 (goal ≤ {} µs) | gateway added p99 (goal ≤ {} µs) |",
        GOAL_MESH_ADDED_P50.as_micros(),
        GOAL_GATEWAY_ADDED_P50.as_micros(),
        GOAL_GATEWAY_ADDED_P99.as_micros(),
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &plan.concurrency {
        let (Some(direct), Some(mesh), Some(gateway)) = (
            summarize(cells, Path::Direct, concurrency),
            summarize(cells, Path::Mesh, concurrency),
            summarize(cells, Path::Gateway, concurrency),
        ) else {
            continue;
        };
        let ratio = mesh.per_second / direct.per_second;
        let mesh_p50 = added(mesh.p50, direct.p50);
        let gateway_p50 = added(gateway.p50, direct.p50);
        let gateway_p99 = added(gateway.p99, direct.p99);
        println!(
            "| {concurrency} | {ratio:.3}: {} | {mesh_p50:+.0} µs: {} | {:.3} | {gateway_p50:+.0} µs: {} | {gateway_p99:+.0} µs: {} |",
            verdict(ratio >= GOAL_MESH_THROUGHPUT),
            verdict(mesh_p50 <= GOAL_MESH_ADDED_P50.as_secs_f64() * 1e6),
            gateway.per_second / direct.per_second,
            verdict(gateway_p50 <= GOAL_GATEWAY_ADDED_P50.as_secs_f64() * 1e6),
            verdict(gateway_p99 <= GOAL_GATEWAY_ADDED_P99.as_secs_f64() * 1e6),
        );
    }
    println!();
    println!(
        "| concurrency | tcp proxy added p50 | tcp proxy added p99 | gateway added p50 over the proxy | gateway added p99 over the proxy |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &concurrency in &plan.concurrency {
        let (Some(direct), Some(proxy), Some(gateway)) = (
            summarize(cells, Path::Direct, concurrency),
            summarize(cells, Path::Proxy, concurrency),
            summarize(cells, Path::Gateway, concurrency),
        ) else {
            continue;
        };
        println!(
            "| {concurrency} | {:+.0} µs | {:+.0} µs | {:+.0} µs | {:+.0} µs |",
            added(proxy.p50, direct.p50),
            added(proxy.p99, direct.p99),
            added(gateway.p50, proxy.p50),
            added(gateway.p99, proxy.p99),
        );
    }
    println!();
    println!(
        "| concurrency | policed/bare gateway calls/s | policy added p50 (goal ≤ {} µs) | policy added p99 |",
        GOAL_POLICY_ADDED_P50.as_micros(),
    );
    println!("|---:|---:|---:|---:|");
    for &concurrency in &plan.concurrency {
        let (Some(gateway), Some(policed)) = (
            summarize(cells, Path::Gateway, concurrency),
            summarize(cells, Path::Policed, concurrency),
        ) else {
            continue;
        };
        let policy_p50 = added(policed.p50, gateway.p50);
        println!(
            "| {concurrency} | {:.3} | {policy_p50:+.0} µs: {} | {:+.0} µs |",
            policed.per_second / gateway.per_second,
            verdict(policy_p50 <= GOAL_POLICY_ADDED_P50.as_secs_f64() * 1e6),
            added(policed.p99, gateway.p99),
        );
    }
    println!();
    println!(
        "| concurrency | mTLS/plaintext gateway calls/s | TLS hop added p50 | TLS hop added p99 | gateway CPU µs/call added | agent CPU µs/call added |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for &concurrency in &plan.concurrency {
        let (Some(gateway), Some(mtls)) = (
            summarize(cells, Path::Gateway, concurrency),
            summarize(cells, Path::GatewayMtls, concurrency),
        ) else {
            continue;
        };
        println!(
            "| {concurrency} | {:.3} | {:+.0} µs | {:+.0} µs | {:+.1} ({:.1} vs {:.1}) | {:+.1} ({:.1} vs {:.1}) |",
            mtls.per_second / gateway.per_second,
            added(mtls.p50, gateway.p50),
            added(mtls.p99, gateway.p99),
            mtls.cpu_per_call[2] - gateway.cpu_per_call[2],
            mtls.cpu_per_call[2],
            gateway.cpu_per_call[2],
            mtls.cpu_per_call[1] - gateway.cpu_per_call[1],
            mtls.cpu_per_call[1],
            gateway.cpu_per_call[1],
        );
    }
    print_nginx_comparison(plan, cells);
    let sharing = if plan.gateway_cpu.is_some() {
        "shares its CPUs with the agent, and the gateway runs on a CPU of its own, so at \
         concurrency 64 the load generator's CPUs are saturated on every path and the gateway's \
         CPU is not"
    } else {
        "shares the cores with the agent (and the gateway of the path), so at concurrency 64 the \
         cores are saturated and latency there is mostly queueing"
    };
    println!(
        "\nThe bench process is the load generator plus, on the mesh path, the in-process mesh; it \
         {sharing}."
    );
}

/// Issue 16's table: each gateway beside nginx without an access log, and its goals (reported,
/// not failed): the policed gateway (the default configuration) at or under nginx in CPU per
/// call at every concurrency and in added p50 at concurrency 1, at or above it in calls/s at 64.
fn print_nginx_comparison(plan: &Plan, cells: &[Cell]) {
    if !plan.paths.contains(&Path::Nginx) {
        return;
    }
    println!();
    println!(
        "| concurrency | path | calls/s | × nginx | added p50 | added p99 | CPU µs/call of the hop | × nginx | RSS MB |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut goals = Vec::new();
    for &concurrency in &plan.concurrency {
        let (Some(direct), Some(nginx)) = (
            summarize(cells, Path::Direct, concurrency),
            summarize(cells, Path::Nginx, concurrency),
        ) else {
            continue;
        };
        for path in [Path::Nginx, Path::NginxLog, Path::Gateway, Path::Policed] {
            let Some(s) = summarize(cells, path, concurrency) else {
                continue;
            };
            println!(
                "| {concurrency} | {} | {:.0} | {:.3} | {:+.0} µs | {:+.0} µs | {:.1} | {:.2} | {:.1} |",
                path.label(),
                s.per_second,
                s.per_second / nginx.per_second,
                added(s.p50, direct.p50),
                added(s.p99, direct.p99),
                s.cpu_per_call[2],
                s.cpu_per_call[2] / nginx.cpu_per_call[2],
                s.hop_rss_mb,
            );
        }
        let Some(policed) = summarize(cells, Path::Policed, concurrency) else {
            continue;
        };
        goals.push(format!(
            "c={concurrency}: policed gateway CPU per call {:.1} µs ≤ nginx's {:.1} µs: {}",
            policed.cpu_per_call[2],
            nginx.cpu_per_call[2],
            verdict(policed.cpu_per_call[2] <= nginx.cpu_per_call[2]),
        ));
        if concurrency == 1 {
            let (gateway, proxy) = (added(policed.p50, direct.p50), added(nginx.p50, direct.p50));
            goals.push(format!(
                "c=1: policed gateway added p50 {gateway:+.0} µs ≤ nginx's {proxy:+.0} µs: {}",
                verdict(gateway <= proxy),
            ));
        } else {
            goals.push(format!(
                "c={concurrency}: policed gateway calls/s {:.0} ≥ nginx's {:.0}: {}",
                policed.per_second,
                nginx.per_second,
                verdict(policed.per_second >= nginx.per_second),
            ));
        }
    }
    if !goals.is_empty() {
        println!("\nIssue 16's goals (policed gateway = the default configuration, against nginx without an access log):");
        for goal in goals {
            println!("- {goal}");
        }
    }
}
