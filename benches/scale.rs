//! Scale benchmark: `cargo bench --bench scale`.
//!
//! Measures the gateway and the registry at 100 and then at 1,000 beamlines, one agent instance
//! per beamline, each case with fresh processes, over loopback only:
//!
//! - a registry (`registry --listen 127.0.0.1:0`, the release binary);
//! - the agents: real SDK agents (`beamline_mesh::agent::Agent`, one read-only capability, the
//!   default gRPC health check every 2 s and keep-alive every 3 s), up to 250 per process in one
//!   Tokio runtime (`support::agents`: this bench re-executed with `--serve-agents`). Agent `i`
//!   serves beamline `9.<i/100>.<i%100>` on its own 127.0.0.1:0 port and registers itself in
//!   the registry, as `beamline-mesh agent` does;
//! - once every agent is passing in the registry (`/v1/health/state/passing`), the gateway,
//!   started with the policed gateway's flags of the mesh bench (`--auth-file` with one operator
//!   caller, `--allow-plaintext`, `--metrics-listen`) and a hard and soft limit of 1,024 open
//!   files (`setrlimit` before exec, as `prlimit --nofile=1024:1024` does).
//!
//! Measured, and the goals of the reliability issue (item 11) they are checked against:
//!
//! - **time to routable**: from the gateway's spawn until a Describe through it (`x-beamline`,
//!   the caller's API key, a 5 s timeout) has succeeded for every beamline, `IN_FLIGHT` calls at
//!   once over one HTTP/2 connection, a beamline that failed queued again; the failures are
//!   counted by gRPC code. Goal: ≤ 5 s at 1,000 under the 1,024-descriptor limit;
//! - **the gateway's connections to the registry**: its sockets (`/proc/<pid>/fd` inodes matched
//!   in `/proc/net/tcp{,6}`) whose remote port is the registry's, once routable and after the
//!   steady window. Goal: ≤ 10 at 1,000 beamlines, i.e. not growing with the beamlines;
//! - **gateway RSS** after the steady window. Goal: ≤ 50 MB at 1,000;
//! - **TIME_WAIT** sockets (`st == 06` in `/proc/net/tcp{,6}`): machine-wide before the registry
//!   starts and after `STEADY` (30 s) of health checks, and those with an agent's port at either
//!   end (the registry's checks and the gateway's calls). Goal: ≤ 1,000 at 1,000 instances (a
//!   connection per check would leave ≈ 15 per instance: 30 s / 2 s);
//! - and, not against a goal: the gateway's open descriptors and connections to agents, the
//!   registry's RSS, descriptors and connections (inbound: the agents' keep-alives and the
//!   gateway; outbound: the health checks), the agent processes' RSS, the load average;
//! - **idle**: then no call for the gateway's idle bound (`--idle-connection-timeout`, 60 s by
//!   default, left at it): how long after routing until the gateway holds no agent connection
//!   (polled every second; deadline [`IDLE_DEADLINE`]), its RSS [`SETTLE`] later (goal ≤ 50 MB
//!   at 1,000 here too: this is a fleet at rest), descriptors and connections; and every beamline
//!   Described again the same way (each connection dialled again): the time and the failures.
//!
//! Everything shares the machine's cores (the agents' processes too), so the times include
//! queueing behind 1,000 agents' checks and keep-alives; the load average is printed for that.
//! Bounded in every way: every process is killed and reaped on drop (and killed by the kernel if
//! this bench dies), every wait polls with a deadline, every request has a timeout. The run
//! takes about 4 minutes after the build.
//!
//! `cargo bench` passes `--bench`; without it (e.g. `cargo test --benches`) the binary only says
//! how to run it and exits.
//!
//! For profiling, not for the recorded numbers: `SCALE_BENCH_CASES=1000` runs only the cases
//! named (comma-separated beamline counts), and `SCALE_BENCH_GATEWAY_ENV="K=V K2=V2"` sets
//! environment variables of the gateway alone, e.g. heaptrack's preload library and its pipe
//! (`LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
//! DUMP_HEAPTRACK_OUTPUT=/tmp/gw.fifo`, with `heaptrack_interpret < /tmp/gw.fifo` reading it)
//! or `MALLOC_ARENA_MAX=1`. The gateway is killed (SIGKILL) when its case ends, so what such a
//! profiler saw still allocated then is what the gateway held after the steady window.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::Request;

use beamline_mesh::gateway::auth::sha256_hex;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::DescribeRequest;
use beamline_mesh::wire::header::BEAMLINE as ROUTING_KEY;

use support::agents::{self, beamline, PREFIX};
use support::{load_average, tcp_sockets_of, tcp_table, verdict, Proc};

const COMMAND: &str = "cargo bench --bench scale";

/// Beamlines (one agent instance each) of the two cases, run in this order.
const CASES: [usize; 2] = [100, 1_000];

const API_KEY: &str = "bench-key-4f9c2e7a1d8b6035";
const BEARER: &str = "Bearer bench-key-4f9c2e7a1d8b6035";

/// The gateway's open-file limit, soft and hard.
const GATEWAY_NOFILE: u64 = 1_024;
/// Describe calls in flight while routing every beamline.
const IN_FLIGHT: usize = 64;
/// Timeout of every request (HTTP or gRPC).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for every agent to be registered and passing.
const PASSING_DEADLINE: Duration = Duration::from_secs(180);
/// Deadline for every beamline to be routable (the goal is far below it).
const ROUTABLE_DEADLINE: Duration = Duration::from_secs(60);
/// Health checks (and keep-alives) run this long before TIME_WAIT and memory are read.
const STEADY: Duration = Duration::from_secs(30);
/// From the end of routing, the longest wait for the gateway to let every idle agent connection
/// go: its 60 s bound, a quarter of it (it looks four times per bound), and 15 s of slack.
const IDLE_DEADLINE: Duration = Duration::from_secs(90);
/// How long the gateway's resident size is followed once its idle connections are gone: its
/// heap trim runs every 10 s.
const SETTLE: Duration = Duration::from_secs(15);

const GOAL_REGISTRY_CONNS: usize = 10;
const GOAL_GATEWAY_RSS_MB: f64 = 50.0;
const GOAL_ROUTABLE: Duration = Duration::from_secs(5);
const GOAL_TIME_WAIT: usize = 1_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if agents::asked_to_serve(&args) {
        return agents::serve(&args);
    }
    if !support::invoked_as_bench("scale", COMMAND) {
        return Ok(());
    }
    support::print_header(
        "scale benchmark (gateway and registry at 100 and 1,000 beamlines)",
        COMMAND,
        "registry, gateway, agents and client share them (loopback)",
    );
    println!("load average at the start: {}", load_average());
    let runtime = support::runtime()?;
    let mut cases = Vec::new();
    for beamlines in chosen_cases()? {
        println!("\n--- {beamlines} beamlines ---");
        let case = runtime.block_on(run_case(beamlines));
        if let Err(why) = &case {
            println!("{beamlines} beamlines: NOT MEASURED: {why:#}");
        }
        cases.push((beamlines, case));
    }
    print_report(&cases);
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

/// [`CASES`], or those `SCALE_BENCH_CASES` names.
fn chosen_cases() -> Result<Vec<usize>> {
    match std::env::var("SCALE_BENCH_CASES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .context("SCALE_BENCH_CASES: beamline counts")
            })
            .collect(),
        Err(_) => Ok(CASES.to_vec()),
    }
}

/// `SCALE_BENCH_GATEWAY_ENV`'s `K=V` pairs (space-separated), for the gateway alone.
fn gateway_env() -> Result<Vec<(String, String)>> {
    let list = std::env::var("SCALE_BENCH_GATEWAY_ENV").unwrap_or_default();
    list.split_whitespace()
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .context("SCALE_BENCH_GATEWAY_ENV: K=V pairs")?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// What one case measured.
struct Case {
    passing_after: Duration,
    routing: Routing,
    /// The gateway's connections to the registry: once routable, after the steady window.
    gateway_registry_conns: [usize; 2],
    gateway_agent_conns: usize,
    gateway_rss: u64,
    gateway_anon: u64,
    gateway_fds: usize,
    registry_rss: u64,
    registry_fds: usize,
    /// The registry's connections: accepted (on its port), dialled (its checks).
    registry_conns: [usize; 2],
    agents_rss: u64,
    /// Machine-wide TIME_WAIT before the registry started, and after the steady window.
    time_wait: [usize; 2],
    /// After the steady window, TIME_WAIT with an agent's port at either end.
    time_wait_agents: usize,
    load: String,
    idle: Idle,
}

/// The fleet at rest, after the gateway's idle bound.
struct Idle {
    /// From the end of routing until the gateway held no agent connection; None if it still
    /// held some at [`IDLE_DEADLINE`].
    let_go_after: Option<Duration>,
    agent_conns: usize,
    rss: u64,
    anon: u64,
    fds: usize,
    /// Every beamline Described again.
    again: Routing,
}

/// How routing every beamline through the gateway went.
struct Routing {
    /// From the gateway's spawn until the last beamline's first success; None if not all were.
    elapsed: Option<Duration>,
    routed: usize,
    /// Failed attempts by gRPC code (or "timeout").
    failures: BTreeMap<String, usize>,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn run_case(beamlines: usize) -> Result<Case> {
    let time_wait_before = support::time_wait(&tcp_table()?, None);
    let mut registry = support::bin();
    registry.args(["registry", "--listen", "127.0.0.1:0"]);
    support::die_with_parent(&mut registry);
    let registry = Proc::start("registry", registry)?;
    let base = registry.addr.clone();
    let consul = registry.authority().to_string();
    let registry_port: u16 = consul
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .context("registry port")?;

    let started = Instant::now();
    let agents = agents::spawn(beamlines, 1, &consul)?;
    let http = support::http(REQUEST_TIMEOUT)?;
    support::wait_passing_count(&http, &base, PREFIX, beamlines, PASSING_DEADLINE)
        .await
        .with_context(|| format!("registry stderr:\n{}", registry.stderr_tail()))?;
    let passing_after = started.elapsed();
    let agent_ports = support::registered_ports(&http, &base, PREFIX).await?;
    ensure!(
        agent_ports.len() == beamlines,
        "{} agent ports in the registry, {beamlines} expected",
        agent_ports.len()
    );
    println!(
        "{beamlines} agents passing after {:.1} s (registry pid {}, agent pids {:?})",
        passing_after.as_secs_f64(),
        registry.pid(),
        agents.iter().map(Proc::pid).collect::<Vec<_>>()
    );

    let policy_dir = tempfile::Builder::new()
        .prefix("beamline-bench-policy-")
        .tempdir()
        .context("create policy temp dir")?;
    let policy_path = policy_dir.path().join("policy.toml");
    std::fs::write(
        &policy_path,
        support::open_policy(&sha256_hex(API_KEY.as_bytes())),
    )
    .context("write policy file")?;
    let mut gateway = support::bin();
    gateway
        .args(["gateway", "--listen", "127.0.0.1:0", "--consul", &consul])
        .arg("--auth-file")
        .arg(&policy_path)
        .args(["--allow-plaintext", "--metrics-listen", "127.0.0.1:0"])
        .envs(gateway_env()?);
    support::limit_nofile(&mut gateway, GATEWAY_NOFILE);
    support::die_with_parent(&mut gateway);
    let gateway_started = Instant::now();
    let gateway = Proc::start("gateway", gateway)?;
    let routing = route_all(gateway.authority(), beamlines, gateway_started).await?;
    let routed_at = Instant::now();
    let conns_to = |pid: u32, table: &[support::TcpRow]| -> Result<usize> {
        Ok(tcp_sockets_of(pid, table)?
            .iter()
            .filter(|r| r.remote_port == registry_port)
            .count())
    };
    let routable_conns = conns_to(gateway.pid(), &tcp_table()?)?;
    println!(
        "routing: {} of {beamlines} in {}; failed attempts {:?}; gateway pid {}; steady {} s",
        routing.routed,
        routing
            .elapsed
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        routing.failures,
        gateway.pid(),
        STEADY.as_secs()
    );

    tokio::time::sleep(STEADY).await;
    let table = tcp_table()?;
    let on_agent_port = |r: &&support::TcpRow| {
        agent_ports.contains(&r.local_port) || agent_ports.contains(&r.remote_port)
    };
    let registry_sockets = tcp_sockets_of(registry.pid(), &table)?;
    let accepted = registry_sockets
        .iter()
        .filter(|r| r.local_port == registry_port)
        .count();
    let [image, libraries, other] = gateway.breakdown()?.0;
    println!(
        "gateway resident after steady: executable image {:.1} MB, libraries {:.1} MB, \
         heap, stacks and other anonymous {:.1} MB",
        image as f64 * 1024.0 / 1e6,
        libraries as f64 * 1024.0 / 1e6,
        other as f64 * 1024.0 / 1e6,
    );
    let mut agents_rss = 0;
    for process in &agents {
        agents_rss += process.rss()?;
    }
    let gateway_agent_conns = |table: &[support::TcpRow]| -> Result<usize> {
        Ok(tcp_sockets_of(gateway.pid(), table)?
            .iter()
            .filter(on_agent_port)
            .count())
    };
    let steady_agent_conns = gateway_agent_conns(&table)?;
    let steady_rss = gateway.rss()?;
    let steady_anon = gateway.memory()?.anon_kib * 1024;
    let steady_fds = support::open_fds(gateway.pid())?;
    let load = load_average();

    // At rest: no call until the gateway lets its agent connections go.
    let mut idle_conns = steady_agent_conns;
    while idle_conns > 0 && routed_at.elapsed() < IDLE_DEADLINE {
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle_conns = gateway_agent_conns(&tcp_table()?)?;
    }
    let let_go_after = (idle_conns == 0).then(|| routed_at.elapsed());
    // The gateway gives freed heap back to the kernel on its own clock (every 10 s, when
    // malloc's free bytes grew): the resident size is read for the next [`SETTLE`], and the
    // last reading kept.
    let settle_until = Instant::now() + SETTLE;
    let mut rss = gateway.rss()?;
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = gateway.rss()?;
    }
    let [image, libraries, other] = gateway.breakdown()?.0;
    println!(
        "idle: {idle_conns} agent connections {} s after routing; gateway resident: executable \
         image {:.1} MB, libraries {:.1} MB, heap, stacks and other anonymous {:.1} MB",
        routed_at.elapsed().as_secs(),
        image as f64 * 1024.0 / 1e6,
        libraries as f64 * 1024.0 / 1e6,
        other as f64 * 1024.0 / 1e6,
    );
    let (anon, fds) = (
        gateway.memory()?.anon_kib * 1024,
        support::open_fds(gateway.pid())?,
    );
    let again = route_all(gateway.authority(), beamlines, Instant::now()).await?;
    let idle = Idle {
        let_go_after,
        agent_conns: idle_conns,
        rss,
        anon,
        fds,
        again,
    };
    Ok(Case {
        passing_after,
        routing,
        gateway_registry_conns: [routable_conns, conns_to(gateway.pid(), &table)?],
        gateway_agent_conns: steady_agent_conns,
        gateway_rss: steady_rss,
        gateway_anon: steady_anon,
        gateway_fds: steady_fds,
        registry_rss: registry.rss()?,
        registry_fds: support::open_fds(registry.pid())?,
        registry_conns: [accepted, registry_sockets.len() - accepted],
        agents_rss,
        time_wait: [time_wait_before, support::time_wait(&table, None)],
        time_wait_agents: support::time_wait(&table, Some(&agent_ports)),
        load,
        idle,
    })
}

/// Describes every beamline through the gateway, `IN_FLIGHT` at once, until each has succeeded
/// once or `ROUTABLE_DEADLINE` (from `started`) passes.
async fn route_all(gateway: &str, beamlines: usize, started: Instant) -> Result<Routing> {
    let channel = Endpoint::from_shared(format!("http://{gateway}"))?
        .connect_timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .connect_lazy();
    let client = BeamlineAgentClient::new(channel);
    let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..beamlines).collect()));
    let failures: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let deadline = started + ROUTABLE_DEADLINE;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (mut client, queue, failures) = (client.clone(), queue.clone(), failures.clone());
        workers.spawn(async move {
            let mut routed = 0;
            let mut last = started;
            while Instant::now() < deadline {
                let Some(i) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let id = beamline(i);
                let mut request = Request::new(DescribeRequest {});
                request.set_timeout(REQUEST_TIMEOUT);
                let metadata = request.metadata_mut();
                metadata.insert(ROUTING_KEY, MetadataValue::try_from(&id).expect("ascii id"));
                metadata.insert("authorization", MetadataValue::from_static(BEARER));
                let outcome = tokio::time::timeout(REQUEST_TIMEOUT, client.describe(request)).await;
                let failure = match outcome {
                    Ok(Ok(card)) if card.get_ref().beamline == id => None,
                    Ok(Ok(card)) => Some(format!("wrong card {}", card.get_ref().beamline)),
                    Ok(Err(status)) => Some(format!("{:?}", status.code())),
                    Err(_) => Some("timeout".to_string()),
                };
                match failure {
                    None => {
                        routed += 1;
                        last = Instant::now();
                    }
                    Some(code) => {
                        *failures.lock().unwrap().entry(code).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        queue.lock().unwrap().push_back(i);
                    }
                }
            }
            (routed, last)
        });
    }
    let (mut routed, mut last) = (0, started);
    while let Some(result) = workers.join_next().await {
        let (n, at) = result.context("routing worker")?;
        routed += n;
        last = last.max(at);
    }
    let failures = failures.lock().unwrap().clone();
    if routed > beamlines {
        bail!("{routed} successes for {beamlines} beamlines");
    }
    Ok(Routing {
        elapsed: (routed == beamlines).then(|| last - started),
        routed,
        failures,
    })
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// The report's rows: label and goal at 1,000 (empty: none).
const ROWS: [(&str, &str); 18] = [
    ("agents passing in the registry after", ""),
    ("time to routable, all beamlines (from spawn)", "≤ 5 s"),
    ("failed Describe attempts while routing", ""),
    ("gateway → registry conns (routable / steady)", "≤ 10"),
    ("gateway RSS (anonymous)", "≤ 50 MB"),
    ("gateway open fds (limit 1,024)", ""),
    ("gateway → agent conns", ""),
    ("registry RSS", ""),
    ("registry open fds", ""),
    ("registry conns (accepted / dialled)", ""),
    ("TIME_WAIT, machine (before / after steady)", ""),
    ("TIME_WAIT on agents' ports after steady", "≤ 1,000"),
    ("agent processes' RSS (all)", ""),
    ("load average at measurement", ""),
    ("idle: agent conns let go after (from routed)", ""),
    ("idle: gateway RSS (anonymous)", "≤ 50 MB"),
    ("idle: gateway open fds / agent conns", ""),
    ("idle: all called again in (failed attempts)", "≤ 5 s"),
];

/// One case's cells, in the order of [`ROWS`], each with whether it meets its goal.
type Cells = [(String, Option<bool>); 18];

fn cells(c: &Case) -> Cells {
    let r = &c.routing;
    let routable = r.elapsed.map_or(format!("{} routed", r.routed), |d| {
        format!("{:.2} s", d.as_secs_f64())
    });
    let [at_routable, steady] = c.gateway_registry_conns;
    let i = &c.idle;
    let again = &i.again;
    [
        (format!("{:.1} s", c.passing_after.as_secs_f64()), None),
        (
            routable,
            Some(r.elapsed.is_some_and(|d| d <= GOAL_ROUTABLE)),
        ),
        (r.failures.values().sum::<usize>().to_string(), None),
        (
            format!("{at_routable} / {steady}"),
            Some(at_routable.max(steady) <= GOAL_REGISTRY_CONNS),
        ),
        (
            format!("{:.1} MB ({:.1})", mb(c.gateway_rss), mb(c.gateway_anon)),
            Some(mb(c.gateway_rss) <= GOAL_GATEWAY_RSS_MB),
        ),
        (c.gateway_fds.to_string(), None),
        (c.gateway_agent_conns.to_string(), None),
        (format!("{:.1} MB", mb(c.registry_rss)), None),
        (c.registry_fds.to_string(), None),
        (
            format!("{} / {}", c.registry_conns[0], c.registry_conns[1]),
            None,
        ),
        (format!("{} / {}", c.time_wait[0], c.time_wait[1]), None),
        (
            c.time_wait_agents.to_string(),
            Some(c.time_wait_agents <= GOAL_TIME_WAIT),
        ),
        (format!("{:.0} MB", mb(c.agents_rss)), None),
        (c.load.clone(), None),
        (
            i.let_go_after
                .map_or(format!("{} held", i.agent_conns), |d| {
                    format!("{:.0} s", d.as_secs_f64())
                }),
            None,
        ),
        (
            format!("{:.1} MB ({:.1})", mb(i.rss), mb(i.anon)),
            Some(mb(i.rss) <= GOAL_GATEWAY_RSS_MB),
        ),
        (format!("{} / {}", i.fds, i.agent_conns), None),
        (
            format!(
                "{} ({})",
                again
                    .elapsed
                    .map_or(format!("{} routed", again.routed), |d| {
                        format!("{:.2} s", d.as_secs_f64())
                    }),
                again.failures.values().sum::<usize>()
            ),
            Some(again.elapsed.is_some_and(|d| d <= GOAL_ROUTABLE)),
        ),
    ]
}

fn print_report(cases: &[(usize, Result<Case>)]) {
    println!(
        "\nscale: one agent instance per beamline; gateway under a {GATEWAY_NOFILE}-file limit; \
         measured after {} s of steady health checks",
        STEADY.as_secs()
    );
    let table: Vec<Option<Cells>> = cases
        .iter()
        .map(|(_, c)| c.as_ref().ok().map(cells))
        .collect();
    print!("{:<46}", "");
    for (n, _) in cases {
        print!(" {:>20}", format!("{n} beamlines"));
    }
    println!("   goal at 1,000");
    for (row, (label, goal)) in ROWS.iter().enumerate() {
        print!("{label:<46}");
        for case in &table {
            let cell = case.as_ref().map_or("not measured", |c| c[row].0.as_str());
            print!(" {cell:>20}");
        }
        let met = table.last().map(|c| c.as_ref().and_then(|c| c[row].1));
        match met {
            Some(Some(met)) if !goal.is_empty() => println!("   {goal}: {}", verdict(met)),
            _ if !goal.is_empty() => println!("   {goal}: not measured"),
            _ => println!(),
        }
    }
    for (n, case) in cases {
        if let Ok(c) = case {
            if !c.routing.failures.is_empty() {
                println!(
                    "{n} beamlines: failed attempts by code {:?}",
                    c.routing.failures
                );
            }
        }
    }
}
