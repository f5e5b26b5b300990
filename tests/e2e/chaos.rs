//! The chaos suite: a registry, three demo agents of one beamline and a gateway (real
//! `beamline-mesh` processes), a mixed load through the gateway (Describe, and GetTask and
//! Subscribe of running `monitor_pv` tasks, with the Executes that start them), and one kind of
//! failure per scenario, driven by a schedule (`tokio::time::sleep_until`):
//!
//! - `kill9_one_of_three_every_5s`: kill -9 of the oldest of 3 instances every 5 s (each
//!   replaced by a new agent at once) for 30 s — 0 failed Describe, GetTask, Subscribe and
//!   keyed Executes of an idempotent capability.
//! - `sigstop_one_of_three`: one of 3 frozen (SIGSTOP) for 15 s (full: 30 s) — no call to
//!   another instance fails, and the frozen one leaves the balancer (`/status.json`: not
//!   routable) within 1.5 s; no Describe started later than that waits on it.
//! - `rolling_restart_of_three`: each of 3 agents SIGTERM'd and replaced by a new one, one after
//!   the other, waiting for the new one to pass in the registry — 0 failed calls of any kind
//!   (Executes included).
//! - `registry_down`: the registry kill -9'd for 20 s (full: 60 s) while calls go on, then
//!   restarted (same port, no data dir: the agents register again) — 0 failed calls of any kind.
//!
//! Two kinds of Execute: the task workers' Executes of `monitor_pv` carry no idempotency key, so
//! the mesh never sends them twice; under kill -9 and SIGSTOP they are reported, not asserted
//! (an Execute in flight on a killed or frozen instance may fail by design). The keyed workers'
//! Executes carry a fresh idempotency key each and go to `monitor_pv`, which the SDK marks
//! idempotent (it moves nothing): one that fails before its first event is sent to another
//! instance, so they are held to the zero-failure goal in every scenario, as Describe is.
//!
//! Which task calls count: a task lives only on its owner (the instance id before the `/` of its
//! task id), so GetTask/Subscribe of a task whose owner was killed, frozen or SIGTERM'd are
//! expected to fail (NOT_FOUND, UNAVAILABLE) once it is gone. The scenario marks an instance
//! "disturbed" (with the time) *before* it signals it, and a task call counts toward the goals
//! only if its owner was not disturbed when the call finished; the others are reported as
//! "excluded" with their codes. Task workers start a new task as soon as their owner is disturbed.
//! (A SIGTERM'd owner is marked at the SIGTERM, so reads of its tasks while it drains are not
//! held to the goal here; `gateway_tasks.rs` covers them.)
//!
//! Durations: `CHAOS_SCALE` unset or `short` is the CI mode (kill -9 every 5 s for 30 s, SIGSTOP
//! 15 s, one rolling restart of 3, registry down 20 s; the four run one after another, well under
//! 3 minutes on 2 cores); `CHAOS_SCALE=full` is the bench (SIGSTOP 30 s, registry down 60 s).
//! Each scenario prints a `CHAOS …` summary line (run with `--nocapture`): duration, calls,
//! failures by gRPC code, max and p99 latency; a failed goal repeats it in the panic message.
//!
//! Scenarios take a process-wide lock: each runs 5 processes on the machine's cores, and their
//! latencies are only meaningful alone. The test body runs on the thread driving the runtime,
//! not on one of its 2 workers, so the harness's blocking process starts (`AgentProc::start`,
//! `Registry::restart`) do not stall the load (which runs on the workers).

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::*;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{GetTaskRequest, SubscribeRequest};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

/// One scenario at a time (see the module doc).
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BEAMLINE: &str = "5.3.1";
/// Describe callers, each on its own connection, and their pause between two calls.
const DESCRIBE_WORKERS: usize = 4;
const DESCRIBE_PACE: Duration = Duration::from_millis(5);
/// Task callers (each keeps one `monitor_pv` task and polls it), and their pause.
const TASK_WORKERS: usize = 3;
const TASK_PACE: Duration = Duration::from_millis(20);
/// Keyed Execute callers (a short `monitor_pv` each, read up to its first event), and their
/// pause.
const KEYED_WORKERS: usize = 2;
const KEYED_PACE: Duration = Duration::from_millis(20);
/// Every 4th task call is a Subscribe (read up to its first event), the others GetTask.
const SUBSCRIBE_EVERY: u64 = 4;
/// A task runs this long, so tasks end and new ones start during a scenario too.
const TASK_MS: u64 = 8_000;
/// The SIGSTOP goal: the frozen instance leaves the balancer within this.
const OUT_OF_ROTATION: Duration = Duration::from_millis(1500);
/// A Describe that waited on the frozen instance takes about the mesh's unresponsive bound
/// (1 s) before it fails over; none started after [`OUT_OF_ROTATION`] may take that long.
const WAITED_ON_FROZEN: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Scale {
    name: &'static str,
    kill_every: Duration,
    kill_for: Duration,
    freeze_for: Duration,
    registry_down: Duration,
}

fn scale() -> Scale {
    let short = Scale {
        name: "short",
        kill_every: secs(5),
        kill_for: secs(30),
        freeze_for: secs(15),
        registry_down: secs(20),
    };
    match std::env::var("CHAOS_SCALE").as_deref() {
        Err(_) | Ok("") | Ok("short") => short,
        Ok("full") => Scale {
            name: "full",
            freeze_for: secs(30),
            registry_down: secs(60),
            ..short
        },
        Ok(other) => panic!("CHAOS_SCALE={other:?}: want `short` (default) or `full`"),
    }
}

// ---------------------------------------------------------------------------------------------
// Which instances were disturbed, and when
// ---------------------------------------------------------------------------------------------

/// Instance id → when the scenario started killing, freezing or stopping it.
#[derive(Clone, Default)]
struct Disturbed(Arc<Mutex<HashMap<String, Instant>>>);

impl Disturbed {
    /// Marks `id` disturbed now; call it *before* signalling the process.
    fn mark(&self, id: &str) {
        self.0
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(Instant::now);
    }

    fn is_disturbed(&self, id: &str) -> bool {
        self.0.lock().unwrap().contains_key(id)
    }

    fn snapshot(&self) -> HashMap<String, Instant> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The mixed load
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rpc {
    Describe,
    GetTask,
    Subscribe,
    Execute,
    /// An Execute with an idempotency key, of an idempotent capability.
    KeyedExecute,
}

/// One call of the load.
#[derive(Debug, Clone)]
struct Call {
    rpc: Rpc,
    started: Instant,
    finished: Instant,
    code: Code,
    message: String,
    /// The instance that answered (Describe), or the task's owner (GetTask, Subscribe, and a
    /// successful Execute).
    instance: Option<String>,
}

impl Call {
    fn latency(&self) -> Duration {
        self.finished.duration_since(self.started)
    }
}

type Calls = Arc<Mutex<Vec<Call>>>;

fn record(
    calls: &Calls,
    rpc: Rpc,
    started: Instant,
    result: Result<Option<String>, tonic::Status>,
) {
    let (code, message, instance) = match result {
        Ok(instance) => (Code::Ok, String::new(), instance),
        Err(status) => (status.code(), status.message().to_string(), None),
    };
    push(calls, rpc, started, code, message, instance);
}

/// A GetTask or Subscribe: the task's owner is recorded whether the call failed or not.
fn record_task(
    calls: &Calls,
    rpc: Rpc,
    started: Instant,
    result: Result<(), tonic::Status>,
    owner: &str,
) {
    let (code, message) = match result {
        Ok(()) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_string()),
    };
    push(calls, rpc, started, code, message, Some(owner.to_string()));
}

fn push(
    calls: &Calls,
    rpc: Rpc,
    started: Instant,
    code: Code,
    message: String,
    instance: Option<String>,
) {
    let finished = Instant::now();
    calls.lock().unwrap().push(Call {
        rpc,
        started,
        finished,
        code,
        message,
        instance,
    });
}

/// A bound on one call, as in `support::gateway::describe`: a hang is a made-up
/// DEADLINE_EXCEEDED that says so.
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL_BOUND, f).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "TEST: no answer through the gateway within {CALL_BOUND:?}"
        ))),
    }
}

fn owner_of(task_id: &str) -> String {
    task_id
        .rsplit_once('/')
        .map_or(task_id, |(owner, _)| owner)
        .to_string()
}

/// Describe callers and task callers through the gateway until stopped.
struct MixedLoad {
    stop: Arc<AtomicBool>,
    calls: Calls,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl MixedLoad {
    async fn start(gateway: &GatewayProc, disturbed: &Disturbed) -> MixedLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let calls: Calls = Arc::default();
        let mut workers = Vec::new();
        for _ in 0..DESCRIBE_WORKERS {
            let mut client = gateway.client().await;
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = describe(&mut client, BEAMLINE).await;
                    record(&calls, Rpc::Describe, started, result.map(Some));
                    tokio::time::sleep(DESCRIBE_PACE).await;
                }
            }));
        }
        for worker in 0..KEYED_WORKERS {
            let mut client = gateway.client().await;
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("chaos-{}-{worker}-{n}", std::process::id());
                    let started = Instant::now();
                    let result = keyed_monitor(&mut client, &key).await;
                    record(&calls, Rpc::KeyedExecute, started, result.map(Some));
                    tokio::time::sleep(KEYED_PACE).await;
                }
            }));
        }
        for _ in 0..TASK_WORKERS {
            let client = gateway.client().await;
            let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
            let disturbed = disturbed.clone();
            workers.push(tokio::spawn(task_worker(client, stop, calls, disturbed)));
        }
        MixedLoad {
            stop,
            calls,
            workers,
        }
    }

    fn len(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Waits (polling) until at least `n` calls have finished.
    async fn wait_calls(&self, n: usize, timeout: Duration) {
        poll_until(
            timeout,
            &format!("{n} calls of the load"),
            async || self.len(),
            |len| *len >= n,
        )
        .await;
    }

    async fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("a load worker panicked");
        }
        let calls = self.calls.lock().unwrap().clone();
        calls
    }
}

/// Keeps one `monitor_pv` task (a new one when it ends or its owner is disturbed) and reads it:
/// GetTask, and every [`SUBSCRIBE_EVERY`]th call a Subscribe up to its first event.
async fn task_worker(
    mut client: BeamlineAgentClient<Channel>,
    stop: Arc<AtomicBool>,
    calls: Calls,
    disturbed: Disturbed,
) {
    let mut task: Option<(String, String)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let current = match task.take() {
            Some((id, owner)) if !disturbed.is_disturbed(&owner) => Some((id, owner)),
            _ => start_monitor(&mut client, &calls).await,
        };
        let Some((id, owner)) = current else {
            tokio::time::sleep(TASK_PACE).await;
            continue;
        };
        n += 1;
        let started = Instant::now();
        let (rpc, result) = if n % SUBSCRIBE_EVERY == 0 {
            (Rpc::Subscribe, subscribe_first(&mut client, &id).await)
        } else {
            (Rpc::GetTask, get_task_state(&mut client, &id).await)
        };
        let ended = matches!(result, Ok(true));
        record_task(&calls, rpc, started, result.map(|_| ()), &owner);
        if !ended {
            task = Some((id, owner));
        }
        tokio::time::sleep(TASK_PACE).await;
    }
}

/// Execute `monitor_pv` (no idempotency key) through the gateway; the task id and its owner
/// once the first event came. The Execute stream is dropped: the task runs on.
async fn start_monitor(
    client: &mut BeamlineAgentClient<Channel>,
    calls: &Calls,
) -> Option<(String, String)> {
    let started = Instant::now();
    let request = execute_request(
        "monitor_pv",
        json!({"name": "ring:current", "duration_ms": TASK_MS, "interval_ms": 200}),
        "",
    );
    let result = bounded(async {
        let mut events = client.execute(to(BEAMLINE, request)).await?.into_inner();
        match events.message().await? {
            Some(event) => Ok(task_of(&event).task_id.clone()),
            None => Err(tonic::Status::internal(
                "TEST: the Execute stream ended without an event",
            )),
        }
    })
    .await;
    let task = result.as_ref().ok().map(|id| (id.clone(), owner_of(id)));
    record(
        calls,
        Rpc::Execute,
        started,
        result.map(|id| Some(owner_of(&id))),
    );
    task
}

/// Execute a short `monitor_pv` with idempotency key `key` through the gateway, up to its first
/// event: the task's owner. The stream is dropped then; the task ends by itself.
async fn keyed_monitor(
    client: &mut BeamlineAgentClient<Channel>,
    key: &str,
) -> Result<String, tonic::Status> {
    let request = execute_request(
        "monitor_pv",
        json!({"name": "ring:current", "duration_ms": 300, "interval_ms": 100}),
        key,
    );
    bounded(async {
        let mut events = client.execute(to(BEAMLINE, request)).await?.into_inner();
        match events.message().await? {
            Some(event) => Ok(owner_of(&task_of(&event).task_id)),
            None => Err(tonic::Status::internal(
                "TEST: the keyed Execute stream ended without an event",
            )),
        }
    })
    .await
}

/// GetTask through the gateway: whether the task has ended.
async fn get_task_state(
    client: &mut BeamlineAgentClient<Channel>,
    task_id: &str,
) -> Result<bool, tonic::Status> {
    let request = GetTaskRequest {
        task_id: task_id.to_string(),
    };
    let task = bounded(client.get_task(to(BEAMLINE, request))).await?;
    Ok(is_terminal(task_state(&task.into_inner())))
}

/// Subscribe through the gateway and read the first event (the task as it is now): whether the
/// task has ended.
async fn subscribe_first(
    client: &mut BeamlineAgentClient<Channel>,
    task_id: &str,
) -> Result<bool, tonic::Status> {
    let request = SubscribeRequest {
        task_id: task_id.to_string(),
    };
    bounded(async {
        let mut events = client.subscribe(to(BEAMLINE, request)).await?.into_inner();
        match events.message().await? {
            Some(event) => Ok(is_terminal(state_of(&event))),
            None => Err(tonic::Status::internal(
                "TEST: the Subscribe stream ended without an event",
            )),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// The calls of a scenario, split into those the goals are about and the rest.
struct Report {
    line: String,
    /// Failed calls the goals count.
    failed: Vec<Call>,
    /// Calls the goals count.
    counted: Vec<Call>,
}

/// `executes_count`: whether Executes are held to the zero-failure goal too.
fn report(
    scenario: &str,
    chaos_for: Duration,
    calls: &[Call],
    disturbed: &Disturbed,
    executes_count: bool,
) -> Report {
    let disturbed = disturbed.snapshot();
    let mut counted = Vec::new();
    let mut excluded = Vec::new();
    let mut executes = Vec::new();
    for call in calls {
        match call.rpc {
            Rpc::Describe | Rpc::KeyedExecute => counted.push(call.clone()),
            Rpc::Execute if executes_count => counted.push(call.clone()),
            Rpc::Execute => executes.push(call.clone()),
            Rpc::GetTask | Rpc::Subscribe => {
                let owner = call.instance.as_deref().unwrap_or_default();
                match disturbed.get(owner) {
                    Some(at) if *at <= call.finished => excluded.push(call.clone()),
                    _ => counted.push(call.clone()),
                }
            }
        }
    }
    let failed: Vec<Call> = counted
        .iter()
        .filter(|c| c.code != Code::Ok)
        .cloned()
        .collect();
    let mut by_rpc: BTreeMap<Rpc, usize> = BTreeMap::new();
    for c in &counted {
        *by_rpc.entry(c.rpc).or_default() += 1;
    }
    let mut latencies: Vec<Duration> = counted.iter().map(Call::latency).collect();
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    let mut line = format!(
        "CHAOS {scenario} [{}]: {:.1} s of chaos; {} calls (",
        scale().name,
        chaos_for.as_secs_f64(),
        counted.len()
    );
    let parts: Vec<String> = by_rpc.iter().map(|(r, n)| format!("{r:?} {n}")).collect();
    line.push_str(&parts.join(", "));
    let _ = write!(
        line,
        "); failures: {}; max latency {:.1} ms, p99 {:.1} ms",
        codes(&failed),
        ms_of(max),
        ms_of(p99)
    );
    if !executes_count {
        let failed_exec: Vec<Call> = executes
            .iter()
            .filter(|c| c.code != Code::Ok)
            .cloned()
            .collect();
        let _ = write!(
            line,
            "; not held to the goal: Execute {} (failures: {})",
            executes.len(),
            codes(&failed_exec)
        );
    }
    let failed_excluded: Vec<Call> = excluded
        .iter()
        .filter(|c| c.code != Code::Ok)
        .cloned()
        .collect();
    let _ = write!(
        line,
        "; task calls on disturbed owners, excluded: {} (failures: {})",
        excluded.len(),
        codes(&failed_excluded)
    );
    Report {
        line,
        failed,
        counted,
    }
}

fn ms_of(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "none", or "Unavailable 3, NotFound 1".
fn codes(calls: &[Call]) -> String {
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    for c in calls {
        *by_code
            .entry(format!("{:?} {:?}", c.rpc, c.code))
            .or_default() += 1;
    }
    if by_code.is_empty() {
        return "none".to_string();
    }
    by_code
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first few failures, for a panic message.
fn first_failures(failed: &[Call], origin: Instant) -> String {
    failed
        .iter()
        .take(8)
        .map(|c| {
            format!(
                "\n  {:?} at +{:.3} s took {:.1} ms: {:?} {:?}",
                c.rpc,
                c.started.saturating_duration_since(origin).as_secs_f64(),
                ms_of(c.latency()),
                c.code,
                c.message
            )
        })
        .collect()
}

/// Calls answered per instance (Describe).
fn per_instance<'a>(calls: impl Iterator<Item = &'a Call>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in calls {
        if let (Rpc::Describe, Code::Ok, Some(id)) = (c.rpc, c.code, &c.instance) {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Assembling a cluster
// ---------------------------------------------------------------------------------------------

/// An agent of [`BEAMLINE`] in `registry` (drain grace 500 ms, drain timeout 2 s so a SIGTERM'd
/// agent with running tasks stops within seconds), passing in Consul; and its instance id.
async fn spawn_agent(registry: &Registry) -> (AgentProc, String) {
    let (agent, id, _) = start_agent_with(registry, BEAMLINE, |agent| {
        agent.arg("--drain-timeout", "2s")
    })
    .await;
    (agent, id)
}

/// Three agents from [`spawn_agent`] in `registry` and a gateway (with a metrics listener) that
/// has seen each answer; and the gateway's metrics base URL.
async fn cluster_over(registry: Registry) -> (Cluster, String) {
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (agent, id) = spawn_agent(&registry).await;
        agents.push(agent);
        ids.push(id);
    }
    let gateway = GatewayProc::builder(&registry)
        .arg("--metrics-listen", "127.0.0.1:0")
        .start();
    let metrics = gateway
        .wait_stdout_line("metrics listening on ", secs(10))
        .await;
    let cluster = Cluster {
        gateway,
        agents,
        ids,
        beamline: BEAMLINE.to_string(),
        registry,
    };
    cluster.wait_all_reached(secs(10)).await;
    (cluster, metrics)
}

/// Whether the gateway's balancer routes to instance `id` (`/status.json`).
async fn routable(metrics: &str, id: &str) -> Option<bool> {
    let (code, _, body) = support::policy::http_get(&format!("{metrics}/status.json")).await;
    if code != 200 {
        return None;
    }
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    let beamline = status["beamlines"]
        .as_array()?
        .iter()
        .find(|b| b["beamline"] == BEAMLINE)?;
    let instance = beamline["instances"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)?;
    instance["routable"].as_bool()
}

/// Calls before the chaos starts, so every connection is warm.
const WARM_UP_CALLS: usize = 200;

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the machine to itself: cargo test --test e2e -- --ignored --test-threads 1 chaos::"]
async fn kill9_one_of_three_every_5s() {
    let _alone = ALONE.lock().await;
    let sc = scale();
    let registry = Registry::start();
    let (mut c, _metrics) = cluster_over(registry).await;
    let disturbed = Disturbed::default();
    let load = MixedLoad::start(&c.gateway, &disturbed).await;
    load.wait_calls(WARM_UP_CALLS, secs(15)).await;

    let origin = tokio::time::Instant::now();
    let kills = (sc.kill_for.as_millis() / sc.kill_every.as_millis()) as u32;
    let mut log = Vec::new();
    let mut killed = Vec::new();
    for k in 0..kills {
        tokio::time::sleep_until(origin + sc.kill_every * k).await;
        // The oldest instance goes; a new one takes its place at once (as a supervisor would).
        let mut victim = c.agents.remove(0);
        let victim_id = c.ids.remove(0);
        disturbed.mark(&victim_id);
        victim.kill9();
        killed.push(victim);
        let (agent, id) = spawn_agent(&c.registry).await;
        log.push(format!(
            "+{:.1} s kill -9 {victim_id}, +{:.1} s {id} passing",
            (sc.kill_every * k).as_secs_f64(),
            origin.elapsed().as_secs_f64()
        ));
        c.agents.push(agent);
        c.ids.push(id);
    }
    tokio::time::sleep_until(origin + sc.kill_for).await;
    let calls = load.stop().await;

    let r = report(
        "kill9 (1 of 3 every 5 s)",
        sc.kill_for,
        &calls,
        &disturbed,
        false,
    );
    println!("{}", r.line);
    println!("  schedule: {}", log.join("; "));
    assert!(
        r.failed.is_empty(),
        "{}\n  schedule: {}\n  first failures:{}\n--- gateway stderr (tail) ---\n{}",
        r.line,
        log.join("; "),
        first_failures(&r.failed, origin.into_std()),
        c.gateway.stderr_tail(6000)
    );
    assert!(r.counted.len() > WARM_UP_CALLS, "{}", r.line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the machine to itself: cargo test --test e2e -- --ignored --test-threads 1 chaos::"]
async fn sigstop_one_of_three() {
    let _alone = ALONE.lock().await;
    let sc = scale();
    let registry = Registry::start();
    let (c, metrics) = cluster_over(registry).await;
    let disturbed = Disturbed::default();
    let load = MixedLoad::start(&c.gateway, &disturbed).await;
    load.wait_calls(WARM_UP_CALLS, secs(15)).await;
    assert_eq!(routable(&metrics, &c.ids[0]).await, Some(true));

    let victim = c.ids[0].clone();
    let origin = tokio::time::Instant::now();
    disturbed.mark(&victim);
    c.agents[0].freeze();
    let frozen_at = Instant::now();
    // How long until the balancer stops routing to it: polled, bounded well inside the freeze.
    let left = poll_until(
        secs(5),
        "the frozen instance to leave the balancer",
        async || (routable(&metrics, &victim).await, frozen_at.elapsed()),
        |(routable, _)| *routable != Some(true),
    )
    .await
    .1;
    tokio::time::sleep_until(origin + sc.freeze_for).await;
    let thawed_at = Instant::now();
    c.agents[0].thaw();
    let calls = load.stop().await;

    let r = report("sigstop (1 of 3)", sc.freeze_for, &calls, &disturbed, false);
    // Describes started once the instance should be out of rotation, while it was frozen.
    let late = calls
        .iter()
        .filter(|c| c.rpc == Rpc::Describe)
        .filter(|c| c.started >= frozen_at + OUT_OF_ROTATION && c.finished <= thawed_at);
    let late_max = late.clone().map(Call::latency).max().unwrap_or_default();
    let late_count = late.count();
    let line = format!(
        "{}; out of rotation after {:.0} ms; Describes started ≥ {:.1} s into the freeze: {late_count}, \
         max latency {:.1} ms",
        r.line,
        ms_of(left),
        OUT_OF_ROTATION.as_secs_f64(),
        ms_of(late_max)
    );
    println!("{line}");
    assert!(
        r.failed.is_empty(),
        "{line}\n  first failures:{}\n--- gateway stderr (tail) ---\n{}",
        first_failures(&r.failed, frozen_at),
        c.gateway.stderr_tail(6000)
    );
    assert!(
        left <= OUT_OF_ROTATION,
        "{line}\n  the frozen instance {victim} was still routable {left:?} into the freeze"
    );
    assert!(
        late_count > 0 && late_max < WAITED_ON_FROZEN,
        "{line}\n  a Describe started after {OUT_OF_ROTATION:?} waited on the frozen instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the machine to itself: cargo test --test e2e -- --ignored --test-threads 1 chaos::"]
async fn rolling_restart_of_three() {
    let _alone = ALONE.lock().await;
    let registry = Registry::start();
    let (mut c, _metrics) = cluster_over(registry).await;
    let disturbed = Disturbed::default();
    let load = MixedLoad::start(&c.gateway, &disturbed).await;
    load.wait_calls(WARM_UP_CALLS, secs(15)).await;

    let origin = Instant::now();
    let mut log = Vec::new();
    for _ in 0..3 {
        let mut old = c.agents.remove(0);
        let old_id = c.ids.remove(0);
        disturbed.mark(&old_id);
        let step = Instant::now();
        old.sigterm();
        let (agent, id) = spawn_agent(&c.registry).await;
        let passing = step.elapsed();
        let status = old.wait_exit(secs(15)).await;
        assert!(
            status.success(),
            "{old_id} exited with {status} after SIGTERM"
        );
        log.push(format!(
            "SIGTERM {old_id} at +{:.1} s: {id} passing after {:.1} s, old exited after {:.1} s",
            step.duration_since(origin).as_secs_f64(),
            passing.as_secs_f64(),
            step.elapsed().as_secs_f64()
        ));
        c.agents.push(agent);
        c.ids.push(id);
        // A second of calls in each state of the roll.
        tokio::time::sleep_until(tokio::time::Instant::now() + secs(1)).await;
    }
    let rolled = origin.elapsed();
    let settled = Instant::now();
    let calls = load.stop().await;

    let r = report("rolling restart (3)", rolled, &calls, &disturbed, true);
    let answered = per_instance(calls.iter().filter(|c| c.started >= settled - secs(1)));
    println!("{}", r.line);
    println!("  {}", log.join("; "));
    assert!(
        r.failed.is_empty(),
        "{}\n  {}\n  first failures:{}\n--- gateway stderr (tail) ---\n{}",
        r.line,
        log.join("; "),
        first_failures(&r.failed, origin),
        c.gateway.stderr_tail(6000)
    );
    // The new instances get the traffic.
    for id in &c.ids {
        assert!(
            answered.contains_key(id),
            "{}\n  new instance {id} answered no Describe in the last second: {answered:?}",
            r.line
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the machine to itself: cargo test --test e2e -- --ignored --test-threads 1 chaos::"]
async fn registry_down() {
    let _alone = ALONE.lock().await;
    let sc = scale();
    // A fixed port, so that the restarted registry is where the agents and gateway look.
    let registry = Registry::builder().listen(closed_port_addr()).start();
    let (mut c, _metrics) = cluster_over(registry).await;
    let disturbed = Disturbed::default();
    let load = MixedLoad::start(&c.gateway, &disturbed).await;
    load.wait_calls(WARM_UP_CALLS, secs(15)).await;

    let origin = tokio::time::Instant::now();
    let down_at = Instant::now();
    c.registry.kill9();
    tokio::time::sleep_until(origin + sc.registry_down).await;
    let port = c.registry.addr;
    c.registry.restart();
    assert_eq!(
        c.registry.addr, port,
        "the registry came back on another port"
    );
    let up_at = Instant::now();
    // No data dir: the registry starts empty and each agent registers again.
    for id in &c.ids {
        wait_passing(&c.registry, &service_name(BEAMLINE), id, secs(15)).await;
    }
    let passing_again = up_at.elapsed();
    // Two more seconds of calls with the registry back.
    tokio::time::sleep_until(tokio::time::Instant::now() + secs(2)).await;
    let calls = load.stop().await;

    let r = report("registry down", sc.registry_down, &calls, &disturbed, true);
    let during = per_instance(
        calls
            .iter()
            .filter(|c| c.started >= down_at && c.finished <= up_at),
    );
    let line = format!(
        "{}; answered while down: {during:?}; all 3 passing again {:.1} s after the restart",
        r.line,
        passing_again.as_secs_f64()
    );
    println!("{line}");
    assert!(
        r.failed.is_empty(),
        "{line}\n  first failures:{}\n--- gateway stderr (tail) ---\n{}",
        first_failures(&r.failed, down_at),
        c.gateway.stderr_tail(6000)
    );
    assert_eq!(
        during.len(),
        3,
        "{line}\n  with the registry down, Describes did not reach all 3 known instances"
    );
}
