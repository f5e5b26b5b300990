//! Fleet benchmark: `cargo bench --bench fleet`.
//!
//! The facility-control numbers of the fleet issue, at 100 beamlines × 2 instances, over
//! loopback with the release binary:
//!
//! - a registry; 99 beamlines `9.x.y` × 2 real SDK agents (`support::agents`, one read-only
//!   capability each) and the demo beamline 5.3.1 × 2 (`beamline-mesh agent`: `scan`,
//!   `move_motor`, …); the gateway with a policy of an operator (`bench`) and a `safety` caller
//!   (`desk`), `--allow-plaintext`;
//! - once ListBeamlines shows all 100 beamlines with their cards:
//!
//! 1. **ListBeamlines**: `LIST_CALLS` calls one after another: p50 and p99 time, and the size of
//!    the encoded answer; the gateway's RSS then (the catalog has Described, so routed, every
//!    beamline) and at the end.
//! 2. **WatchFleet**: `WATCH_TRIALS` times, a new beamline `8.0.<n>` is registered through the
//!    registry's Consul API with a TTL check and the check set passing; measured from the pass
//!    answer returning to the WatchFleet event that shows the instance healthy.
//! 3. **Halt**: `HALT_TRIALS` trials on 5.3.1: two long scans are started through the gateway
//!    and stream progress; `desk` halts 5.3.1; from Halt returning, (a) until an actuating
//!    Execute (`move_motor`) sent at once is refused FAILED_PRECONDITION, and (b) until every
//!    running scan's stream says CANCELLED (the agents cancel them from their own watch of the
//!    KV key). Then Resume, and the next trial starts once a scan is accepted again. Goal:
//!    p99 ≤ 250 ms for both (the promise to users is 1 s).
//!
//! Everything shares the machine's cores; the load average is printed. Bounded: every process is
//! killed on drop, every wait has a deadline, every call a timeout. About a minute after the
//! build.

mod support;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use beamline_mesh::agent::capabilities::json_to_struct;
use beamline_mesh::gateway::auth::sha256_hex;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::fleet_event::Event;
use beamline_mesh::proto::{
    ExecuteRequest, FleetSnapshot, HaltRequest, ListBeamlinesRequest, ResumeRequest, TaskEvent,
    TaskState, WatchFleetRequest,
};
use beamline_mesh::wire::header::BEAMLINE as ROUTING_KEY;

use support::agents;
use support::{load_average, percentile, verdict, Proc};

const COMMAND: &str = "cargo bench --bench fleet";

/// Synthetic beamlines (× 2 instances), beside the demo beamline's 2.
const SYNTHETIC: usize = 99;
const PER_BEAMLINE: usize = 2;
const DEMO_BEAMLINE: &str = "5.3.1";

const OPERATOR_KEY: &str = "bench-operator-key-6a1f0c93";
const SAFETY_KEY: &str = "bench-safety-key-2d7e84b5";

const LIST_CALLS: usize = 200;
const WATCH_TRIALS: usize = 20;
const HALT_TRIALS: usize = 50;
/// Scans running on the halted beamline in each trial.
const SCANS: [&str; 2] = ["sample_x", "sample_y"];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const PASSING_DEADLINE: Duration = Duration::from_secs(120);
const CATALOG_DEADLINE: Duration = Duration::from_secs(60);
const GOAL_HALT_P99: Duration = Duration::from_millis(250);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if agents::asked_to_serve(&args) {
        return agents::serve(&args);
    }
    if !support::invoked_as_bench("fleet", COMMAND) {
        return Ok(());
    }
    support::print_header(
        "fleet benchmark (catalog, WatchFleet and the kill switch at 100 beamlines × 2)",
        COMMAND,
        "registry, gateway, agents and client share them (loopback)",
    );
    println!("load average at the start: {}", load_average());
    let report = support::runtime()?.block_on(run())?;
    println!("load average at the end: {}", load_average());
    report.print();
    Ok(())
}

fn policy() -> String {
    support::policy_of(&[
        ("bench", &sha256_hex(OPERATOR_KEY.as_bytes()), "operator"),
        ("desk", &sha256_hex(SAFETY_KEY.as_bytes()), "safety"),
    ])
}

/// A request as `key`'s caller, routed to `beamline` when given.
fn request<T>(key: &str, beamline: Option<&str>, message: T) -> Result<Request<T>> {
    let mut request = Request::new(message);
    request.set_timeout(REQUEST_TIMEOUT);
    let bearer: MetadataValue<_> = format!("Bearer {key}").parse()?;
    request.metadata_mut().insert("authorization", bearer);
    if let Some(beamline) = beamline {
        request
            .metadata_mut()
            .insert(ROUTING_KEY, beamline.parse()?);
    }
    Ok(request)
}

struct Report {
    list: Vec<Duration>,
    list_bytes: usize,
    /// The gateway's RSS once the catalog is complete, and at the end.
    gateway_rss: (u64, u64),
    watch: Vec<Duration>,
    refused: Vec<Duration>,
    cancelled: Vec<Duration>,
    cancelled_from_sent: Vec<Duration>,
    halt_rpc: Vec<Duration>,
}

async fn run() -> Result<Report> {
    let mut registry = support::bin();
    registry.args(["registry", "--listen", "127.0.0.1:0"]);
    support::die_with_parent(&mut registry);
    let registry = Proc::start("registry", registry)?;
    let base = registry.addr.clone();
    let consul = registry.authority().to_string();

    let _agents = agents::spawn(SYNTHETIC * PER_BEAMLINE, PER_BEAMLINE, &consul)?;
    let mut demo = Vec::new();
    for seed in 1..=PER_BEAMLINE {
        let mut agent = support::bin();
        agent.args([
            "agent",
            "--beamline",
            DEMO_BEAMLINE,
            "--listen",
            "127.0.0.1:0",
        ]);
        agent.args(["--consul", &consul, "--seed", &seed.to_string()]);
        support::die_with_parent(&mut agent);
        demo.push(Proc::start("agent", agent)?);
    }
    let http = support::http(REQUEST_TIMEOUT)?;
    support::wait_passing_count(
        &http,
        &base,
        agents::PREFIX,
        SYNTHETIC * PER_BEAMLINE,
        PASSING_DEADLINE,
    )
    .await?;

    let dir = tempfile::Builder::new()
        .prefix("beamline-bench-fleet-")
        .tempdir()?;
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy())?;
    let mut gateway = support::bin();
    gateway
        .args(["gateway", "--listen", "127.0.0.1:0", "--consul", &consul])
        .arg("--auth-file")
        .arg(&policy_path)
        .arg("--allow-plaintext");
    support::die_with_parent(&mut gateway);
    let gateway = Proc::start("gateway", gateway)?;
    let channel = Endpoint::from_shared(format!("http://{}", gateway.authority()))?
        .connect()
        .await?;

    let snapshot = wait_catalog(&channel)
        .await
        .with_context(|| format!("gateway stderr:\n{}", gateway.stderr_tail()))?;
    println!(
        "catalog complete: {} beamlines, {} instances",
        snapshot.beamlines.len(),
        snapshot
            .beamlines
            .iter()
            .map(|b| b.instances.len())
            .sum::<usize>()
    );

    let rss_complete = gateway.rss()?;
    let (list, list_bytes) = measure_list(&channel).await?;
    let watch = measure_watch(&channel, &http, &base).await?;
    let halts = measure_halts(&channel)
        .await
        .with_context(|| format!("gateway stderr:\n{}", gateway.stderr_tail()))?;
    Ok(Report {
        list,
        list_bytes,
        watch,
        refused: halts.refused,
        cancelled: halts.cancelled,
        cancelled_from_sent: halts.cancelled_from_sent,
        halt_rpc: halts.rpc,
        gateway_rss: (rss_complete, gateway.rss()?),
    })
}

/// Polls ListBeamlines until all 100 beamlines are there with their cards.
async fn wait_catalog(channel: &Channel) -> Result<FleetSnapshot> {
    let mut fleet = FleetClient::new(channel.clone());
    let until = Instant::now() + CATALOG_DEADLINE;
    loop {
        let snapshot = fleet
            .list_beamlines(request(OPERATOR_KEY, None, ListBeamlinesRequest {})?)
            .await?
            .into_inner();
        let complete = snapshot.beamlines.len() == SYNTHETIC + 1
            && snapshot
                .beamlines
                .iter()
                .all(|b| b.card.is_some() && b.instances.len() == PER_BEAMLINE);
        if complete {
            return Ok(snapshot);
        }
        if Instant::now() > until {
            let carded = snapshot
                .beamlines
                .iter()
                .filter(|b| b.card.is_some())
                .count();
            bail!(
                "after {CATALOG_DEADLINE:?} the catalog has {} beamlines, {carded} with cards",
                snapshot.beamlines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn measure_list(channel: &Channel) -> Result<(Vec<Duration>, usize)> {
    let mut fleet = FleetClient::new(channel.clone());
    let mut times = Vec::with_capacity(LIST_CALLS);
    let mut bytes = 0;
    for _ in 0..LIST_CALLS {
        let started = Instant::now();
        let snapshot = fleet
            .list_beamlines(request(OPERATOR_KEY, None, ListBeamlinesRequest {})?)
            .await?
            .into_inner();
        times.push(started.elapsed());
        bytes = snapshot.encoded_len();
    }
    times.sort();
    Ok((times, bytes))
}

/// Registers `8.0.<n>` with a TTL check, sets it passing, and times the WatchFleet event that
/// shows it healthy.
async fn measure_watch(
    channel: &Channel,
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<Duration>> {
    let mut fleet = FleetClient::new(channel.clone());
    let mut watch_request = request(OPERATOR_KEY, None, WatchFleetRequest {})?;
    watch_request.set_timeout(Duration::from_secs(600));
    let mut events = fleet.watch_fleet(watch_request).await?.into_inner();
    match events.message().await?.and_then(|e| e.event) {
        Some(Event::Snapshot(_)) => {}
        other => bail!("WatchFleet began with {other:?}, not a snapshot"),
    }
    let mut times = Vec::with_capacity(WATCH_TRIALS);
    for n in 0..WATCH_TRIALS {
        let beamline = format!("8.0.{n}");
        let id = format!("bench-watch-{n}");
        let registration = serde_json::json!({
            "ID": id,
            "Name": support::service_name(&beamline),
            "Address": "127.0.0.1",
            "Port": 9,
            "Tags": [beamline_mesh::beamline::AGENT_TAG],
            "Meta": { "beamline": beamline },
            "Check": { "CheckID": format!("service:{id}"), "TTL": "10m" },
        });
        let put = |url: String| http.put(url);
        let answer = put(format!("{base}/v1/agent/service/register"))
            .json(&registration)
            .send()
            .await?;
        ensure!(
            answer.status().is_success(),
            "register: {}",
            answer.status()
        );
        let answer = put(format!("{base}/v1/agent/check/pass/service:{id}"))
            .send()
            .await?;
        ensure!(answer.status().is_success(), "pass: {}", answer.status());
        let passed = Instant::now();
        let until = passed + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(until, events.message())
                .await
                .with_context(|| format!("no WatchFleet event for {beamline} within 10 s"))??
                .context("WatchFleet ended")?;
            let healthy = match next.event {
                Some(Event::Beamline(entry)) => {
                    entry.beamline == beamline && entry.instances.iter().any(|i| i.healthy)
                }
                Some(Event::Snapshot(s)) => s
                    .beamlines
                    .iter()
                    .any(|b| b.beamline == beamline && b.instances.iter().any(|i| i.healthy)),
                _ => false,
            };
            if healthy {
                times.push(passed.elapsed());
                break;
            }
        }
        let answer = put(format!("{base}/v1/agent/service/deregister/{id}"))
            .send()
            .await?;
        ensure!(
            answer.status().is_success(),
            "deregister: {}",
            answer.status()
        );
    }
    times.sort();
    Ok(times)
}

type Events = tonic::Streaming<TaskEvent>;

async fn start_scan(agent: &mut BeamlineAgentClient<Channel>, motor: &str) -> Result<Events> {
    let params = serde_json::json!({
        "motor": motor, "start": 0.0, "stop": 1.0, "steps": 1000, "dwell_ms": 100,
    });
    let mut call = request(
        OPERATOR_KEY,
        Some(DEMO_BEAMLINE),
        ExecuteRequest {
            capability: "scan".into(),
            params: Some(json_to_struct(&params)),
            idempotency_key: String::new(),
        },
    )?;
    call.set_timeout(Duration::from_secs(300));
    let mut events = agent.execute(call).await?.into_inner();
    // Running once it reports progress.
    loop {
        let event = tokio::time::timeout(REQUEST_TIMEOUT, events.message())
            .await
            .context("a scan sent nothing for 5 s")??
            .context("a scan's stream ended before it ran")?;
        if event.progress.is_some() {
            return Ok(events);
        }
    }
}

/// Starts a scan, retrying while the agents have not yet seen the last Resume (bounded).
async fn start_scan_when_resumed(
    agent: &mut BeamlineAgentClient<Channel>,
    motor: &str,
) -> Result<Events> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match start_scan(agent, motor).await {
            Ok(events) => return Ok(events),
            Err(e) if Instant::now() < until => {
                let refused = e
                    .downcast_ref::<tonic::Status>()
                    .is_some_and(|s| s.code() == Code::FailedPrecondition);
                if !refused {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.context("a scan was still refused 5 s after Resume")),
        }
    }
}

async fn until_cancelled(mut events: Events) -> Result<Instant> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .context("a scan went on 5 s after the halt")??
            .context("a scan's stream ended without a terminal event")?;
        if let Some(task) = event.task {
            match task.state() {
                TaskState::Cancelled => return Ok(Instant::now()),
                TaskState::Completed | TaskState::Failed | TaskState::Rejected => {
                    bail!("a scan ended {:?}, not CANCELLED", task.state())
                }
                _ => {}
            }
        }
    }
}

/// Each trial's times, sorted.
#[derive(Default)]
struct Halts {
    /// The Halt RPC itself.
    rpc: Vec<Duration>,
    /// From Halt returning to the refusal of an actuating Execute sent then.
    refused: Vec<Duration>,
    /// From Halt returning to the last running scan's CANCELLED (0 when the agents were first).
    cancelled: Vec<Duration>,
    /// The same from Halt being sent (the agents follow KV themselves, so they may cancel
    /// before the gateway's answer comes back).
    cancelled_from_sent: Vec<Duration>,
}

async fn measure_halts(channel: &Channel) -> Result<Halts> {
    let mut agent = BeamlineAgentClient::new(channel.clone());
    let mut fleet = FleetClient::new(channel.clone());
    let mut h = Halts::default();
    for _ in 0..HALT_TRIALS {
        let mut scans = Vec::new();
        for motor in SCANS {
            scans.push(start_scan_when_resumed(&mut agent, motor).await?);
        }
        let waits: Vec<_> = scans
            .into_iter()
            .map(|s| tokio::spawn(until_cancelled(s)))
            .collect();
        let asked = Instant::now();
        fleet
            .halt(request(
                SAFETY_KEY,
                None,
                HaltRequest {
                    beamline: DEMO_BEAMLINE.into(),
                    all: false,
                    reason: "fleet bench".into(),
                },
            )?)
            .await?;
        let halted = Instant::now();
        h.rpc.push(halted - asked);
        let refusal = agent
            .execute(request(
                OPERATOR_KEY,
                Some(DEMO_BEAMLINE),
                ExecuteRequest {
                    capability: "move_motor".into(),
                    params: Some(json_to_struct(
                        &serde_json::json!({"motor": "mono_energy", "position": 8000.0}),
                    )),
                    idempotency_key: String::new(),
                },
            )?)
            .await;
        match refusal {
            Err(status) if status.code() == Code::FailedPrecondition => {
                h.refused.push(halted.elapsed())
            }
            Err(status) => bail!("move_motor after Halt: {status}"),
            Ok(_) => bail!("move_motor was accepted after Halt returned"),
        }
        let mut last = asked;
        for wait in waits {
            last = last.max(wait.await??);
        }
        h.cancelled.push(last.saturating_duration_since(halted));
        h.cancelled_from_sent.push(last - asked);
        fleet
            .resume(request(
                SAFETY_KEY,
                None,
                ResumeRequest {
                    beamline: DEMO_BEAMLINE.into(),
                    all: false,
                },
            )?)
            .await?;
    }
    for times in [
        &mut h.rpc,
        &mut h.refused,
        &mut h.cancelled,
        &mut h.cancelled_from_sent,
    ] {
        times.sort();
    }
    Ok(h)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl Report {
    fn print(&self) {
        let line = |name: &str, sorted: &[Duration]| {
            println!(
                "  {name:<44} p50 {:>9}  p99 {:>9}  max {:>9}  (n = {})",
                ms(percentile(sorted, 50.0)),
                ms(percentile(sorted, 99.0)),
                ms(sorted.last().copied().unwrap_or_default()),
                sorted.len()
            )
        };
        println!("\nresults");
        line("ListBeamlines at 100 × 2", &self.list);
        println!(
            "  {:<44} {} bytes ({:.1} KB)",
            "ListBeamlines answer size",
            self.list_bytes,
            self.list_bytes as f64 / 1024.0
        );
        println!(
            "  {:<44} {:.1} MB with the catalog complete, {:.1} MB at the end",
            "gateway RSS (every beamline routed)",
            self.gateway_rss.0 as f64 / 1e6,
            self.gateway_rss.1 as f64 / 1e6
        );
        line("WatchFleet: instance passing → event", &self.watch);
        line("Halt RPC (KV write + the gateway's view)", &self.halt_rpc);
        line("Halt returned → actuating Execute refused", &self.refused);
        line(
            "Halt returned → every running scan CANCELLED",
            &self.cancelled,
        );
        line(
            "Halt sent → every running scan CANCELLED",
            &self.cancelled_from_sent,
        );
        let p99_refused = percentile(&self.refused, 99.0);
        let p99_cancelled = percentile(&self.cancelled, 99.0);
        println!(
            "\ngoal: p99 ≤ {} from Halt returning: refusal {} {}, cancellation {} {}",
            ms(GOAL_HALT_P99),
            ms(p99_refused),
            verdict(p99_refused <= GOAL_HALT_P99),
            ms(p99_cancelled),
            verdict(p99_cancelled <= GOAL_HALT_P99)
        );
    }
}
