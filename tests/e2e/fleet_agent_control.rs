//! What an agent enforces itself from the control state in Consul KV: halts cancel its running actuating tasks and refuse new ones, direct calls included; locks with mutual TLS.
//!
//! The real `beamline-mesh agent` (the simulated beamline on the SDK) against the real
//! registry, called directly (no gateway: the agent alone stops the caller). The control state
//! is written straight into the registry's KV, as the gateway's Fleet service writes it
//! (`beamline_contract::control` values under `wire::kv` keys). Also: the registration's Meta
//! says the card's revision and what the agent enforces, and an agent that loses Consul
//! refuses actuating work without cancelling what runs.

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::support::agent::*;
use crate::support::mtls::{direct, name_of};
use crate::support::tls::TestCa;
use crate::support::*;
use beamline_contract::control::{Halt, Lock};
use beamline_mesh::beamline::BeamlineId;
use beamline_mesh::consul::{ConsulClient, ConsulConfig};
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{CancelRequest, DescribeRequest, TaskEvent, TaskState};
use beamline_mesh::wire::{kv, meta, tls::GATEWAY_NAME, NOT_STARTED_KEY};

const HALTED: &str = "5.3.1";
const OTHER: &str = "7.0.1";
/// How long a write to the KV may take to reach the agent in these tests (the goal is well
/// under 250 ms; the promise to users 1 s; a loaded CI machine gets slack).
const REACH: Duration = Duration::from_secs(5);
/// A running actuating task must reach CANCELLED within this after the halt is written.
const PROMISE: Duration = Duration::from_secs(1);

/// A Consul client of the registry, to write the control state as the gateway would.
fn consul(registry: &Registry) -> ConsulClient {
    ConsulClient::new(ConsulConfig::new(&registry.base).expect("the registry's address"))
}

fn halt_key(beamline: &str) -> String {
    kv::halt_key(&BeamlineId::parse(beamline).unwrap())
}

async fn put_halt(registry: &Registry, key: &str, by: &str, reason: &str) {
    let halt = Halt {
        by: by.into(),
        reason: reason.into(),
        since: SystemTime::now(),
    };
    let written = consul(registry).kv_put(key, &halt.to_json(), None).await;
    assert!(
        written.expect("write the halt"),
        "the halt {key} is written"
    );
}

async fn delete(registry: &Registry, key: &str) {
    let deleted = consul(registry).kv_delete(key, None).await;
    assert!(deleted.expect("delete the key"), "{key} is deleted");
}

fn small_move() -> serde_json::Value {
    json!({"motor": "sample_x", "position": 0.5})
}

/// A scan that takes about 20 s unless stopped.
fn long_scan(motor: &str) -> serde_json::Value {
    json!({"motor": motor, "start": 0.0, "stop": 1.0, "steps": 200, "dwell_ms": 100})
}

fn as_caller<T>(message: T, caller: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(name) = caller {
        let md = request.metadata_mut();
        md.insert("x-caller", name.parse().unwrap());
        md.insert("x-role", "operator".parse().unwrap());
    }
    request
}

/// Execute `capability` as `caller` (x-caller, x-role): the event stream and the id of the
/// task its first event names, or the refusal.
async fn try_start(
    client: &mut BeamlineAgentClient<Channel>,
    capability: &str,
    params: serde_json::Value,
    caller: Option<&str>,
) -> Result<(Streaming<TaskEvent>, String), Status> {
    let request = as_caller(execute_request(capability, params, ""), caller);
    let mut events = client.execute(request).await?.into_inner();
    let first = next_event(&mut events).await.expect("a first event");
    let id = task_of(&first).task_id.clone();
    Ok((events, id))
}

/// Polls until `capability` is refused FAILED_PRECONDITION saying `why`; the refusal. (A
/// motor still busy with an earlier move is FAILED_PRECONDITION too: asked again.)
async fn until_refused(
    client: &mut BeamlineAgentClient<Channel>,
    capability: &str,
    params: serde_json::Value,
    caller: Option<&str>,
    why: &str,
) -> Status {
    let what = format!("{capability} by {caller:?} to be refused FAILED_PRECONDITION: {why}");
    poll_for(REACH, &what, async || {
        match try_start(client, capability, params.clone(), caller).await {
            Err(status) if status.code() == Code::FailedPrecondition => {
                status.message().contains(why).then_some(status)
            }
            Err(status) => panic!("{capability}: unexpected {status:?}"),
            Ok((_, id)) => {
                // Started before the state reached the agent: stop it, and ask again.
                let _ = client
                    .cancel(as_caller(CancelRequest { task_id: id }, caller))
                    .await;
                None
            }
        }
    })
    .await
}

/// Polls until `capability` starts; its events and task id.
async fn until_started(
    client: &mut BeamlineAgentClient<Channel>,
    capability: &str,
    params: serde_json::Value,
    caller: Option<&str>,
) -> (Streaming<TaskEvent>, String) {
    let what = format!("{capability} by {caller:?} to start");
    poll_for(REACH, &what, async || {
        try_start(client, capability, params.clone(), caller)
            .await
            .ok()
    })
    .await
}

/// Runs a read-only `capability` to its end: it must complete.
async fn read(
    client: &mut BeamlineAgentClient<Channel>,
    capability: &str,
    params: serde_json::Value,
) {
    let (mut events, _) = try_start(client, capability, params, None)
        .await
        .unwrap_or_else(|e| panic!("{capability} is served: {e:?}"));
    let rest = rest_of(&mut events, secs(5)).await;
    let last = rest.last().expect("a terminal event");
    assert_eq!(state_of(last), TaskState::Completed, "{rest:?}");
}

/// Reads `events` to the terminal one (bounded by `within`): the terminal task's state and
/// error.
async fn terminal(events: &mut Streaming<TaskEvent>, within: Duration) -> TaskEvent {
    let rest = rest_of(events, within).await;
    rest.last().cloned().expect("a terminal event")
}

async fn task_state_of(client: &mut BeamlineAgentClient<Channel>, task_id: &str) -> TaskState {
    task_state(&get_task(client, task_id).await)
}

/// Asserts the halted task ended CANCELLED with code HALTED naming `reason`.
fn assert_halted(event: &TaskEvent, reason: &str) {
    let task = task_of(event);
    assert_eq!(task_state(task), TaskState::Cancelled, "{task:?}");
    let error = task.error.as_ref().expect("a halted task says why");
    assert_eq!(error.code, "HALTED", "{error:?}");
    assert!(error.message.contains(reason), "{error:?}");
    assert!(!error.retryable, "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_agent_refuses_a_direct_actuating_execute_and_serves_reads_until_resumed() {
    let registry = Registry::start();
    let agent = AgentProc::start(HALTED, &registry);
    let mut client = agent.client().await;
    until_started(&mut client, "move_motor", small_move(), None).await;

    put_halt(
        &registry,
        &halt_key(HALTED),
        "ops-console",
        "sample on fire",
    )
    .await;
    let refused = until_refused(&mut client, "move_motor", small_move(), None, "halted").await;
    let message = refused.message();
    assert!(message.contains("beamline 5.3.1 is halted"), "{message}");
    assert!(message.contains("\"ops-console\""), "{message}");
    assert!(message.contains("sample on fire"), "{message}");
    assert!(
        refused.metadata().get(NOT_STARTED_KEY).is_none(),
        "every instance refuses alike: not to be retried elsewhere: {refused:?}"
    );
    let refused = try_start(&mut client, "scan", long_scan("sample_y"), None)
        .await
        .expect_err("a scan is refused too");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Reads go on.
    read(&mut client, "read_pv", json!({"name": "ring:current"})).await;
    read(&mut client, "status", json!({})).await;
    client
        .describe(DescribeRequest {})
        .await
        .expect("Describe is served");

    // Resumed: actuating work starts again.
    delete(&registry, &halt_key(HALTED)).await;
    let (mut events, _) = until_started(&mut client, "move_motor", small_move(), None).await;
    let last = terminal(&mut events, secs(5)).await;
    assert_eq!(state_of(&last), TaskState::Completed, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_cancels_running_scans_of_its_beamline_while_monitoring_streams_on() {
    let registry = Registry::start();
    let (halted, other) = (
        AgentProc::start(HALTED, &registry),
        AgentProc::start(OTHER, &registry),
    );
    let (mut here, mut there) = (halted.client().await, other.client().await);
    let (mut scan, scan_id) = until_started(&mut here, "scan", long_scan("sample_y"), None).await;
    let monitor_pv = json!({"name": "ring:current", "duration_ms": 60_000, "interval_ms": 50});
    let (mut monitor, _) = try_start(&mut here, "monitor_pv", monitor_pv, None)
        .await
        .expect("monitor_pv starts");
    let (mut other_scan, other_id) =
        until_started(&mut there, "scan", long_scan("sample_y"), None).await;

    // From before the write: its answer may come after the agent has acted on it.
    let written = Instant::now();
    put_halt(
        &registry,
        &halt_key(HALTED),
        "ops-console",
        "planner looping",
    )
    .await;
    let last = terminal(&mut scan, PROMISE + secs(4)).await;
    let took = written.elapsed();
    assert_halted(&last, "planner looping");
    eprintln!("halt write sent → scan CANCELLED seen by the caller: {took:?}");
    assert!(
        took < PROMISE,
        "the scan reached CANCELLED {took:?} after the halt was written"
    );
    assert_eq!(
        task_state_of(&mut here, &scan_id).await,
        TaskState::Cancelled
    );

    // The monitor on the same agent keeps streaming after the halt.
    for _ in 0..3 {
        let event = next_event(&mut monitor)
            .await
            .expect("monitor_pv keeps streaming");
        assert_eq!(state_of(&event), TaskState::Working, "{event:?}");
    }
    // Another beamline is not halted: its scan runs on and it takes new actuating work.
    let state = task_state_of(&mut there, &other_id).await;
    assert!(!is_terminal(state), "{state:?}");
    until_started(&mut there, "move_motor", small_move(), None).await;

    // The fleet-wide halt stops the other beamline too.
    put_halt(
        &registry,
        kv::HALT_ALL,
        "safety-officer",
        "evacuation drill",
    )
    .await;
    let last = terminal(&mut other_scan, PROMISE + secs(4)).await;
    assert_halted(&last, "evacuation drill");
    let refused = until_refused(&mut there, "move_motor", small_move(), None, "halted").await;
    assert!(
        refused.message().contains("every beamline is halted"),
        "{refused:?}"
    );
    let event = next_event(&mut monitor)
        .await
        .expect("monitor_pv still streams");
    assert_eq!(state_of(&event), TaskState::Working, "{event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_a_lock_lets_its_holder_through_the_gateway_alone() {
    let registry = Registry::start();
    let mesh_ca = TestCa::new("mesh CA");
    let (cert, key) = mesh_ca.leaf(&[&name_of(HALTED)], "agent");
    let agent = AgentProc::builder(HALTED)
        .registry(&registry)
        .arg("--tls-cert", cert.display())
        .arg("--tls-key", key.display())
        .arg("--client-ca", mesh_ca.cert().display())
        .arg("--health-listen", "127.0.0.1:0")
        .start();
    let addr = agent.addr.to_string();
    let (gw_cert, gw_key) = mesh_ca.leaf(&[GATEWAY_NAME], "gateway");
    let (peer_cert, peer_key) = mesh_ca.leaf(&["monitoring.example"], "peer");
    let dial = async |identity: (&std::path::Path, &std::path::Path)| {
        direct(&addr, &mesh_ca.cert(), &name_of(HALTED), Some(identity))
            .await
            .expect("a mesh-CA client is let in")
    };
    let mut gateway = dial((&gw_cert, &gw_key)).await;
    let mut peer = dial((&peer_cert, &peer_key)).await;
    until_started(&mut gateway, "move_motor", small_move(), Some("bob")).await;

    // Over mutual TLS it enforces locks too, and its registration says so.
    let card = gateway
        .describe(DescribeRequest {})
        .await
        .expect("Describe")
        .into_inner();
    let service = BeamlineId::parse(HALTED).unwrap().service_name();
    let entry = wait_passing(&registry, &service, &card.instance_id, secs(10)).await;
    let registered = &entry["Service"]["Meta"];
    assert_eq!(
        registered[meta::CONTROLS],
        meta::CONTROLS_ENFORCED,
        "{registered}"
    );
    assert_eq!(meta::CONTROLS_ENFORCED, "halt,lock");

    let now = SystemTime::now();
    let lock = Lock {
        holder: "alice".into(),
        note: "aligning the beam by hand".into(),
        since: now,
        expires: now + Duration::from_secs(2 * 3600),
    };
    let key = kv::lock_key(&BeamlineId::parse(HALTED).unwrap());
    let written = consul(&registry)
        .kv_put(&key, &lock.to_json(), Some(0))
        .await;
    assert!(written.expect("write the lock"), "the lock is taken");

    // Through the gateway as bob: refused, naming the holder and the note.
    let refused = until_refused(
        &mut gateway,
        "move_motor",
        small_move(),
        Some("bob"),
        "locked",
    )
    .await;
    let message = refused.message();
    assert!(message.contains("locked by \"alice\""), "{message}");
    assert!(message.contains("aligning the beam by hand"), "{message}");
    // Through the gateway as alice: served.
    let (mut scan, scan_id) = try_start(&mut gateway, "scan", long_scan("sample_y"), Some("alice"))
        .await
        .expect("the holder's scan starts");
    // A peer that is not the gateway cannot claim to be alice (its headers are dropped).
    let refused = try_start(&mut peer, "move_motor", small_move(), Some("alice"))
        .await
        .expect_err("a direct caller is not the holder");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("alice"), "{refused:?}");
    // Nor may bob, or a direct caller, cancel alice's scan; reads are everyone's.
    for (client, caller) in [(&mut gateway, Some("bob")), (&mut peer, Some("alice"))] {
        let request = as_caller(
            CancelRequest {
                task_id: scan_id.clone(),
            },
            caller,
        );
        let refused = client.cancel(request).await.expect_err("not the holder");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    read(&mut peer, "read_pv", json!({"name": "ring:current"})).await;
    let state = task_state_of(&mut peer, &scan_id).await;
    assert!(!is_terminal(state), "{state:?}");

    // The holder cancels her own scan.
    let request = as_caller(
        CancelRequest {
            task_id: scan_id.clone(),
        },
        Some("alice"),
    );
    gateway.cancel(request).await.expect("the holder cancels");
    let last = terminal(&mut scan, secs(5)).await;
    assert_eq!(state_of(&last), TaskState::Cancelled, "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_says_the_cards_revision_and_that_a_plaintext_agent_enforces_halts() {
    let registry = Registry::start();
    let agent = AgentProc::start(HALTED, &registry);
    let card = agent.card().await;
    assert!(!card.card_revision.is_empty(), "{card:?}");
    let service = BeamlineId::parse(HALTED).unwrap().service_name();
    let entry = wait_passing(&registry, &service, &card.instance_id, secs(10)).await;
    let registered = &entry["Service"]["Meta"];
    assert_eq!(
        registered[meta::CARD_REVISION],
        card.card_revision,
        "{registered}"
    );
    // In plaintext the agent cannot tell who calls: locks are the gateway's, halts its own.
    assert_eq!(
        registered[meta::CONTROLS],
        meta::CONTROLS_HALT_ONLY,
        "{registered}"
    );
    assert_eq!(meta::CONTROLS_HALT_ONLY, "halt");

    // The framework's keys cannot be set with --meta.
    for reserved in [meta::CARD_REVISION, meta::CONTROLS] {
        let flag = format!("{reserved}=forged");
        let out = run_to_exit(&["agent", "--beamline", HALTED, "--meta", &flag], secs(10));
        assert!(!out.status.success(), "--meta {reserved}=… is refused");
        assert!(out.stderr.contains("reserved"), "{}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_loses_consul_refuses_actuating_work_and_cancels_nothing() {
    let port = closed_port_addr();
    let mut registry = Registry::builder().listen(port).start();
    let agent = AgentProc::start(HALTED, &registry);
    let mut client = agent.client().await;
    let (_scan, scan_id) = until_started(&mut client, "scan", long_scan("sample_y"), None).await;

    registry.kill9();
    let refused = until_refused(
        &mut client,
        "move_motor",
        small_move(),
        None,
        "cannot be read",
    )
    .await;
    assert!(refused.message().contains("cannot be read"), "{refused:?}");
    read(&mut client, "read_pv", json!({"name": "ring:current"})).await;
    let state = task_state_of(&mut client, &scan_id).await;
    assert!(
        !is_terminal(state),
        "losing Consul is not a halt: {state:?}"
    );

    registry.restart();
    until_started(&mut client, "move_motor", small_move(), None).await;
    let state = task_state_of(&mut client, &scan_id).await;
    assert!(!is_terminal(state), "{state:?}");
}
