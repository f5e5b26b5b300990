//! `beamline-mesh demo`: starts the `dev` stack on free ports (so it runs beside a `dev`), takes
//! a short scripted tour through the gateway, stops the stack and exits 0 — or non-zero if any
//! step, or any call of the failover burst, failed.
//!
//! The tour, every call through the gateway with `x-beamline` (a plain tonic client):
//! 1. Describe every beamline;
//! 2. a scan on 12.3.1, its progress printed as it streams;
//! 3. a burst of concurrent Describe calls to 5.3.1 during which one of its two instances is
//!    killed with SIGKILL: the mesh behind the gateway must route around it (0 failed calls);
//! 4. the agents table, as `beamline-mesh agents` prints it (the killed instance critical);
//! 5. with `--mtls` only (the gateway and agents over mutual TLS, throwaway certificates): a
//!    forged Describe straight to an agent's TLS port, claiming a caller in `x-caller`/`x-role`,
//!    without a client certificate and then with a gateway certificate from another CA — both
//!    must fail in the TLS handshake — while the same Describe through the gateway is answered.
//!
//! 6. the stop button: a scan and a `monitor_pv` stream on one beamline, the control room halts
//!    it, the scan ends CANCELLED within a second while the monitor keeps streaming (`control`);
//! 7. a lock: a scientist locks a beamline, the planner's motor move is refused naming the
//!    holder, the scientist's own goes through.
//!
//! Without `--mtls` the stack is plaintext on loopback, and the demo says so. The demo's
//! gateway authenticates callers (`callers`: a policy file with fresh keys for a planner, a
//! scientist and the control room, over plaintext on loopback only).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Endpoint;

use beamline_mesh::consul::{ConsulClient, ConsulConfig};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{DescribeRequest, ExecuteRequest, TaskState};

use super::stack::{Stack, StackConfig};

mod callers;
mod control;
mod forged;

use callers::DemoCallers;
use control::AgentClient;

/// Describe calls in the failover burst.
const BURST_CALLS: usize = 200;
/// Calls in flight at once.
const BURST_CONCURRENCY: usize = 8;
/// The burst is paced over this long…
const BURST_DURATION: Duration = Duration::from_secs(2);
/// …and the instance is killed this far into it.
const KILL_AT: Duration = Duration::from_millis(700);
/// Deadline of each call of the tour.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The beamline the forged call of step 5 goes to (one whose only instance stays up).
const FORGED_TARGET: &str = "7.0.1";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Run the gateway and the agents over mutual TLS (a throwaway CA and certificates, removed
    /// on exit), and show a forged direct call to an agent being refused.
    #[arg(long)]
    mtls: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let callers = DemoCallers::generate().context("cannot make the demo's callers")?;
    let config = StackConfig {
        mtls: args.mtls,
        auth_file: Some(callers.file.clone()),
        ..StackConfig::on_free_ports()
    };
    let mut stack = Stack::new(config)?;
    let mut stop = std::pin::pin!(super::shutdown_signal());

    println!("beamline-mesh demo: a registry, a gateway and 4 demo agents, on free ports");
    println!("{}", stack.transport_line());
    let outcome = tokio::select! {
        result = async {
            stack.start().await?;
            tour(&mut stack, &callers).await
        } => Some(result),
        _ = &mut stop => None,
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => Err(anyhow::anyhow!("interrupted")),
    };

    println!();
    println!("stopping the stack: agents (draining), then the gateway, then the registry");
    let killed = stack.stop().await;
    if killed.is_empty() {
        println!("stopped");
    } else {
        println!("stopped; killed after a timeout: {}", killed.join(", "));
    }
    match outcome {
        Ok(summary) => {
            println!();
            println!(
                "demo finished in {:.1} s: {summary}",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("the last log lines of the stack:\n{}", stack.log_tails(10));
            Err(e.context("the demo failed"))
        }
    }
}

/// The scripted tour; returns the summary line.
async fn tour(stack: &mut Stack, callers: &DemoCallers) -> anyhow::Result<String> {
    let gateway = stack.gateway.clone().context("no gateway")?;
    let channel = Endpoint::from_shared(format!("http://{gateway}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to the gateway at {gateway}"))?;
    let client = BeamlineAgentClient::with_interceptor(channel.clone(), callers.planner.bearer());

    // 1. Describe.
    println!();
    println!("1. Describe every beamline through the gateway (routed by x-beamline)");
    let mut beamlines: Vec<String> = stack.agents.iter().map(|a| a.beamline.clone()).collect();
    beamlines.sort_by(|a, b| beamline_mesh::beamline::natural_cmp(a, b));
    beamlines.dedup();
    for beamline in &beamlines {
        let card = client
            .clone()
            .describe(request(beamline, DescribeRequest {}))
            .await
            .with_context(|| format!("Describe {beamline} through the gateway"))?
            .into_inner();
        let mut caps: Vec<&str> = card.capabilities.iter().map(|c| c.name.as_str()).collect();
        caps.sort();
        println!(
            "   {:<7} answered by {}: {}",
            card.beamline,
            card.instance_id,
            caps.join(", ")
        );
    }

    // 2. A scan with progress.
    println!();
    println!("2. A scan on 12.3.1 through the gateway, progress streamed as it happens");
    let (points, updates) = scan(&client, "12.3.1").await?;

    // 3. Failover.
    println!();
    let victim = stack
        .agents
        .iter()
        .position(|a| a.beamline == "5.3.1")
        .context("no 5.3.1 agent")?;
    let victim_id = stack.agents[victim].instance_id.clone();
    println!(
        "3. {BURST_CALLS} Describe calls to 5.3.1 ({BURST_CONCURRENCY} at a time over \
         {BURST_DURATION:?}); {victim_id} is killed with SIGKILL {KILL_AT:?} in"
    );
    let burst = burst(&client, "5.3.1");
    let kill = async {
        tokio::time::sleep(KILL_AT).await;
        let pid = stack.agents[victim].proc.pid();
        stack.agents[victim].proc.kill9().await;
        println!(
            "   kill -9 {} (pid {})",
            victim_id,
            pid.map_or("?".into(), |p| p.to_string())
        );
    };
    let (result, ()) = tokio::join!(burst, kill);
    let result = result?;
    println!(
        "   {} calls: {} succeeded, {} failed (p50 {:.1} ms, max {:.1} ms)",
        result.calls,
        result.ok,
        result.failed.len(),
        ms(result.p50),
        ms(result.max)
    );
    let served: Vec<String> = result
        .served
        .iter()
        .map(|(id, n)| {
            let mark = if *id == victim_id { " (killed)" } else { "" };
            format!("{id}{mark}: {n}")
        })
        .collect();
    println!("   answered by {}", served.join(", "));
    for (i, why) in result.failed.iter().take(5).enumerate() {
        println!("   failure {}: {why}", i + 1);
    }

    // 4. The agents table, once Consul has noticed the kill (bounded).
    println!();
    println!("4. The agents, as `beamline-mesh agents` shows them");
    let consul = ConsulConfig::new(stack.consul.as_deref().context("no registry")?)?;
    wait_critical(&consul, "beamline-5-3-1", &victim_id).await;
    let table = super::agents::table(&super::agents::list(&consul).await?);
    for line in table.lines() {
        println!("   {line}");
    }

    // 5. With mutual TLS: a forged direct call, refused.
    let forged = if stack.certs.is_some() {
        println!();
        forged::forged_call(stack, &client).await?;
        "; forged direct calls refused in the TLS handshake"
    } else {
        ""
    };

    // 6 and 7. The stop button and a lock.
    println!();
    let halt_ms = control::stop_button(&channel, callers).await?;
    println!();
    control::lock(&channel, callers).await?;

    let failed = result.failed.len();
    let summary = format!(
        "{} beamlines described; a {points}-point scan completed ({updates} progress updates); \
         {} of {} calls succeeded while an instance was killed, {failed} failed{forged}; a halt \
         stopped a running scan in {halt_ms:.0} ms while monitor_pv streamed; a lock refused a \
         second caller",
        beamlines.len(),
        result.ok,
        result.calls
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} calls failed during the failover",
            result.calls
        );
    }
    Ok(summary)
}

/// A request routed to `beamline` by the gateway, with a deadline.
fn request<T>(beamline: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request.metadata_mut().insert(
        beamline_mesh::wire::header::BEAMLINE,
        beamline.parse().expect("a beamline id is valid metadata"),
    );
    request
}

/// Runs a short scan, printing each point's progress; returns (points, progress updates).
async fn scan(client: &AgentClient, beamline: &str) -> anyhow::Result<(usize, usize)> {
    let params = serde_json::json!({
        "motor": "sample_x", "start": -1.0, "stop": 1.0, "steps": 5, "dwell_ms": 100,
    });
    println!("   execute scan {params}");
    let started = Instant::now();
    let mut request = tonic::Request::new(ExecuteRequest {
        capability: "scan".into(),
        params: Some(beamline_mesh::agent::capabilities::json_to_struct(&params)),
        idempotency_key: String::new(),
    });
    request.metadata_mut().insert(
        beamline_mesh::wire::header::BEAMLINE,
        beamline.parse().expect("a beamline id is valid metadata"),
    );
    let mut stream = client
        .clone()
        .execute(request)
        .await
        .context("Execute scan through the gateway")?
        .into_inner();
    let mut updates = 0;
    let mut last_state = None;
    let mut last_task = None;
    loop {
        let next = tokio::time::timeout(CALL_TIMEOUT, stream.message())
            .await
            .context("the scan sent nothing for 10 s")?
            .context("the scan's stream failed")?;
        let Some(event) = next else { break };
        let Some(task) = event.task else { continue };
        if last_state != Some(task.state()) {
            println!("   task {} {}", task.task_id, state_name(task.state()));
            last_state = Some(task.state());
        }
        if let Some(progress) = &event.progress {
            updates += 1;
            // Each point's line; the moves between points report many small steps.
            if progress.message.starts_with("point ") {
                let percent = progress.fraction.unwrap_or(0.0) * 100.0;
                println!("   {percent:>5.0}%  {}", progress.message);
            }
        }
        let done = matches!(
            task.state(),
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected
        );
        last_task = Some(task);
        if done {
            break;
        }
    }
    let task = last_task.context("the scan's stream ended without a task")?;
    anyhow::ensure!(
        task.state() == TaskState::Completed,
        "the scan ended {} ({:?})",
        state_name(task.state()),
        task.error
    );
    let points = task
        .result
        .as_ref()
        .and_then(|r| r.fields.get("points"))
        .and_then(|v| match &v.kind {
            Some(prost_types::value::Kind::ListValue(list)) => Some(list.values.len()),
            _ => None,
        })
        .unwrap_or(0);
    println!(
        "   {points} points in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((points, updates))
}

fn state_name(state: TaskState) -> &'static str {
    let name = state.as_str_name();
    name.strip_prefix("TASK_STATE_").unwrap_or(name)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One call of the burst: its latency, and the instance that answered or why it failed.
type Outcome = (Duration, Result<String, String>);

struct BurstResult {
    calls: usize,
    ok: usize,
    failed: Vec<String>,
    /// Instance id → calls it answered.
    served: BTreeMap<String, usize>,
    p50: Duration,
    max: Duration,
}

/// [`BURST_CALLS`] Describe calls to `beamline`, paced evenly over [`BURST_DURATION`], at most
/// [`BURST_CONCURRENCY`] in flight.
async fn burst(client: &AgentClient, beamline: &str) -> anyhow::Result<BurstResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let start = tokio::time::Instant::now();
    let interval = BURST_DURATION / BURST_CALLS as u32;
    let workers = (0..BURST_CONCURRENCY).map(|_| {
        let (next, outcomes, mut client) = (next.clone(), outcomes.clone(), client.clone());
        let beamline = beamline.to_string();
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= BURST_CALLS {
                    return;
                }
                tokio::time::sleep_until(start + interval * i as u32).await;
                let sent = Instant::now();
                let outcome = match client
                    .describe(request(&beamline, DescribeRequest {}))
                    .await
                {
                    Ok(card) => Ok(card.into_inner().instance_id),
                    Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
                };
                let took = sent.elapsed();
                outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((took, outcome));
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.context("a burst worker panicked")?;
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    let mut latencies: Vec<Duration> = outcomes.iter().map(|(d, _)| *d).collect();
    latencies.sort();
    let mut result = BurstResult {
        calls: outcomes.len(),
        ok: 0,
        failed: Vec::new(),
        served: BTreeMap::new(),
        p50: latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
        max: latencies.last().copied().unwrap_or_default(),
    };
    for (_, outcome) in outcomes {
        match outcome {
            Ok(id) => {
                result.ok += 1;
                *result.served.entry(id).or_default() += 1;
            }
            Err(why) => result.failed.push(why),
        }
    }
    Ok(result)
}

/// Waits (bounded) until Consul's check has noticed that instance `id` of `service` is gone.
async fn wait_critical(consul: &ConsulConfig, service: &str, id: &str) {
    let client = ConsulClient::new(consul.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(answer) = client.health_service(service, 0, Duration::ZERO).await {
            let noticed = answer
                .value
                .iter()
                .find(|e| e.service.id == id)
                .is_none_or(|e| !e.is_passing());
            if noticed {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
