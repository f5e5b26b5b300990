//! `beamline-mesh call` end to end: the real binary against the real `beamline-mesh agent` (and,
//! for `--consul`, the real registry). Checks the proto3 JSON on stdout, the `error: <Code>: …`
//! line and exit codes on failure, `--events` JSON lines, progress on stderr, Ctrl-C, and the
//! `x-beamline` metadata of `--gateway` (against an in-process agent that records it).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::support::agent::*;
use crate::support::cli::*;
use crate::support::*;
use serde_json::Value;

const BEAMLINE: &str = "5.3.1";

/// An agent called directly, with a registry of its own: these tests need no discovery, but an
/// agent refuses actuating work until it has read the halt state there (fail closed).
fn lone_agent() -> (Registry, AgentProc) {
    let registry = Registry::start();
    let agent = AgentProc::builder(BEAMLINE).registry(&registry).start();
    (registry, agent)
}

/// `call --addr <agent> <args…>`.
fn call_agent(agent: &AgentProc, args: &[&str]) -> CallOutput {
    let addr = agent.addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    call(&all)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

/// `call execute move_motor` of `mono_energy` to `position` (1000 eV/s from 8000 eV), once it
/// prints its first WORKING line: the running call and its task id.
fn moving_energy(addr: &str, position: u32) -> (CallProc, String) {
    let params = format!(r#"{{"motor": "mono_energy", "position": {position}}}"#);
    let running = CallProc::spawn(&["--addr", addr, "execute", "move_motor", "--params", &params]);
    let line = running.wait_stderr_line(secs(10), |l| l.contains(" WORKING"));
    let task_id = task_id_in_progress_line(&line);
    (running, task_id)
}

/// `task <id> <STATE> …` (the plain progress lines on a non-terminal stderr) → the id.
fn task_id_in_progress_line(line: &str) -> String {
    line.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no task id in {line:?}"))
        .to_string()
}

#[test]
fn describe_prints_the_agent_card_as_proto3_json() {
    let (_registry, agent) = lone_agent();
    let out = call_agent(&agent, &["describe"]).expect_code(0);
    let card = out.json();
    assert_eq!(card["beamline"], BEAMLINE, "{card}");
    // The canonical mapping: lowerCamelCase names.
    assert!(
        str_of(&card, "instanceId").starts_with("beamline-5-3-1-"),
        "{card}"
    );
    assert!(card.get("instance_id").is_none(), "{card}");
    assert!(!str_of(&card, "cardRevision").is_empty(), "{card}");
    let caps = card["capabilities"].as_array().expect("capabilities array");
    let names: BTreeSet<&str> = caps.iter().map(|c| str_of(c, "name")).collect();
    assert_eq!(
        names,
        BTreeSet::from(["monitor_pv", "move_motor", "read_pv", "scan", "status"])
    );
    for cap in caps {
        let schema: Value = serde_json::from_str(str_of(cap, "paramsSchema")).expect("schema");
        assert_eq!(schema["type"], "object", "{cap}");
        // proto3 JSON omits false booleans: only the actuating ones carry the field.
        let actuating = matches!(str_of(cap, "name"), "move_motor" | "scan");
        assert_eq!(
            cap["actuating"].as_bool().unwrap_or(false),
            actuating,
            "{cap}"
        );
    }
}

#[test]
fn execute_status_prints_the_completed_task_and_get_reads_it_back() {
    let (_registry, agent) = lone_agent();
    let out = call_agent(&agent, &["execute", "status"]).expect_code(0);
    let task = out.json();
    assert_eq!(task["state"], "TASK_STATE_COMPLETED", "{task}");
    assert_eq!(task["capability"], "status");
    let task_id = str_of(&task, "taskId").to_string();
    assert!(task_id.starts_with("beamline-5-3-1-") && task_id.contains('/'));
    // Struct as plain JSON, Timestamp as RFC 3339.
    assert!(task["result"]["motors"]["sample_x"].is_object(), "{task}");
    assert!(str_of(&task, "createdAt").ends_with('Z'), "{task}");
    assert!(task.get("error").is_none(), "{task}");
    // Not a terminal: progress as plain lines, ending with the terminal state.
    assert!(
        out.stderr.contains(&format!("task {task_id} COMPLETED")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains('\r'),
        "no bar redraws without a terminal"
    );

    let got = call_agent(&agent, &["get", &task_id]).expect_code(0).json();
    assert_eq!(got["taskId"], task_id.as_str());
    assert_eq!(got["state"], "TASK_STATE_COMPLETED");
}

#[test]
fn execute_with_params_and_events_prints_one_json_line_per_event() {
    let (_registry, agent) = lone_agent();
    let out = call_agent(
        &agent,
        &[
            "execute",
            "move_motor",
            "--params",
            r#"{"motor": "sample_x", "position": 1}"#,
            "--events",
        ],
    )
    .expect_code(0);
    assert!(
        out.stdout.lines().all(|l| !l.trim().is_empty()),
        "{}",
        out.stdout
    );
    let events = out.json_lines();
    assert!(events.len() >= 2, "{events:?}");
    let first_id = str_of(&events[0]["task"], "taskId").to_string();
    for event in &events {
        assert_eq!(event["task"]["taskId"], first_id.as_str(), "{event}");
    }
    assert!(
        matches!(
            str_of(&events[0]["task"], "state"),
            "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING"
        ),
        "{}",
        events[0]
    );
    let last = events.last().unwrap();
    assert_eq!(last["task"]["state"], "TASK_STATE_COMPLETED", "{last}");
    assert_eq!(last["task"]["result"]["position"], 1.0, "{last}");
    assert!(
        events.iter().any(|e| e["progress"]["fraction"].is_number()),
        "a move reports progress: {events:?}"
    );
    // Only the terminal event is terminal.
    for event in &events[..events.len() - 1] {
        assert!(
            matches!(
                str_of(&event["task"], "state"),
                "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING"
            ),
            "{event}"
        );
    }
}

#[test]
fn agent_errors_print_the_grpc_code_and_exit_non_zero() {
    let (_registry, agent) = lone_agent();

    let out = call_agent(&agent, &["execute", "no_such_capability"]).expect_code(1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    out.expect_stderr("error: NotFound: ")
        .expect_stderr("no_such_capability");

    call_agent(
        &agent,
        &[
            "execute",
            "move_motor",
            "--params",
            r#"{"motor": "sample_x", "position": 200}"#,
        ],
    )
    .expect_code(1)
    .expect_stderr("error: InvalidArgument: ");

    call_agent(&agent, &["get", "beamline-5-3-1-nope/123"])
        .expect_code(1)
        .expect_stderr("error: NotFound: ");
    call_agent(&agent, &["cancel", "beamline-5-3-1-nope/123"])
        .expect_code(1)
        .expect_stderr("error: NotFound: ");
}

#[test]
fn bad_params_are_refused_before_any_call() {
    // Nothing listens there: the error must come from checking --params, not from connecting.
    let addr = closed_port_addr().to_string();
    for bad in ["{not json", "[1, 2]", "42"] {
        let out = call(&["--addr", &addr, "execute", "status", "--params", bad])
            .expect_code(1)
            .expect_stderr("--params");
        assert!(!out.stderr.contains("Unavailable"), "{}", out.stderr);
    }
    call(&["--addr", &addr, "execute", "status", "--params", "[]"])
        .expect_code(1)
        .expect_stderr("must be a JSON object");
}

#[test]
fn unreachable_agent_is_unavailable_and_quick() {
    let addr = closed_port_addr().to_string();
    let started = Instant::now();
    call(&["--addr", &addr, "describe"])
        .expect_code(1)
        .expect_stderr("error: Unavailable: ");
    assert!(started.elapsed() < secs(10), "{:?}", started.elapsed());

    // No target at all, and a half target.
    call(&["describe"]).expect_code(1).expect_stderr("--addr");
    call(&["--consul", &addr, "describe"])
        .expect_code(1)
        .expect_stderr("--beamline");
}

#[test]
fn a_task_that_ends_cancelled_prints_it_and_exits_2() {
    let (_registry, agent) = lone_agent();
    let addr = agent.addr.to_string();
    // 8000 → 2000 eV at 1000 eV/s: six seconds, time enough to cancel it.
    let (running, task_id) = moving_energy(&addr, 2000);

    let cancelled = call_agent(&agent, &["cancel", &task_id])
        .expect_code(0)
        .json();
    assert_eq!(cancelled["taskId"], task_id.as_str());

    let out = running.wait(secs(15)).expect_code(2);
    let task = out.json();
    assert_eq!(task["taskId"], task_id.as_str());
    assert_eq!(task["state"], "TASK_STATE_CANCELLED", "{task}");
    out.expect_stderr(&format!("task {task_id} ended CANCELLED"));
}

#[test]
fn ctrl_c_stops_waiting_but_not_the_task() {
    let (_registry, agent) = lone_agent();
    let addr = agent.addr.to_string();
    // 8000 → 12000 eV: four seconds.
    let (running, task_id) = moving_energy(&addr, 12000);
    running.sigint();
    let out = running.wait(secs(5)).expect_code(130);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let out = out.expect_stderr("interrupted");
    out.expect_stderr(&task_id);

    // The contract: dropping the Execute stream does not cancel the task.
    let task = call_agent(&agent, &["get", &task_id]).expect_code(0).json();
    assert!(
        matches!(
            str_of(&task, "state"),
            "TASK_STATE_WORKING" | "TASK_STATE_COMPLETED"
        ),
        "{task}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_and_beamline_resolve_a_passing_instance() {
    let reg = Registry::start();
    let agent = AgentProc::start(BEAMLINE, &reg);
    let card = call_agent(&agent, &["describe"]).expect_code(0).json();
    let instance_id = str_of(&card, "instanceId").to_string();
    wait_passing(&reg, "beamline-5-3-1", &instance_id, secs(15)).await;

    let consul = reg.addr.to_string();
    let via_consul = call_async(&["--consul", &consul, "--beamline", BEAMLINE, "describe"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(via_consul["instanceId"], instance_id.as_str());

    let task = call_async(&[
        "--consul",
        &consul,
        "--beamline",
        BEAMLINE,
        "execute",
        "read_pv",
        "--params",
        r#"{"name": "ring:current"}"#,
    ])
    .await
    .expect_code(0)
    .json();
    assert_eq!(task["state"], "TASK_STATE_COMPLETED", "{task}");

    // A beamline nobody serves: NOT_FOUND, naming it.
    call_async(&["--consul", &consul, "--beamline", "9.9.9", "describe"])
        .await
        .expect_code(1)
        .expect_stderr("error: NotFound: ")
        .expect_stderr("beamline 9.9.9");
    // Registered but not healthy (killed; its check turns critical): UNAVAILABLE, quickly.
    let mut agent = agent;
    agent.kill9();
    poll_until(
        secs(15),
        "the killed agent's check to fail",
        async || health_entry(&reg, "beamline-5-3-1", &instance_id, true).await,
        Option::is_none,
    )
    .await;
    let started = Instant::now();
    call_async(&[
        "--consul",
        &consul,
        "--beamline",
        BEAMLINE,
        "--connect-timeout",
        "2s",
        "describe",
    ])
    .await
    .expect_code(1)
    .expect_stderr("error: Unavailable: ")
    .expect_stderr("beamline 5.3.1");
    assert!(started.elapsed() < secs(10), "{:?}", started.elapsed());
}

/// `5.3.1` and `5-3-1` share the Consul service `beamline-5-3-1`; the id is `Meta.beamline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_beamline_ids_sharing_a_service_name_are_told_apart() {
    let reg = Registry::start();
    let agent = AgentProc::start(BEAMLINE, &reg);
    let card = call_agent(&agent, &["describe"]).expect_code(0).json();
    let instance_id = str_of(&card, "instanceId").to_string();
    wait_passing(&reg, "beamline-5-3-1", &instance_id, secs(15)).await;
    let consul = reg.addr.to_string();
    call_async(&["--consul", &consul, "--beamline", "5-3-1", "describe"])
        .await
        .expect_code(1)
        .expect_stderr("error: NotFound: ")
        .expect_stderr("beamline 5-3-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_calls_carry_x_beamline() {
    use beamline_mesh::agent::Instance;
    use beamline_mesh::beamline::BeamlineId;
    use beamline_mesh::demo::DemoAgent;
    use beamline_mesh::proto::beamline_agent_server::BeamlineAgentServer;

    // The demo agent in-process, behind an interceptor that records the routing key, stands in
    // for the gateway (which routes by it).
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let instance = Instance::new(BeamlineId::parse(BEAMLINE).unwrap(), "test");
    let service = BeamlineAgentServer::with_interceptor(
        DemoAgent::standalone(&instance, 1).into_service(),
        move |request: tonic::Request<()>| {
            let key = request
                .metadata()
                .get("x-beamline")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            record.lock().unwrap().push(key);
            Ok(request)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let url = format!("http://{addr}");
    let card = call_async(&["--gateway", &url, "--beamline", BEAMLINE, "describe"])
        .await
        .expect_code(0)
        .json();
    assert_eq!(card["beamline"], BEAMLINE);
    call_async(&[
        "--gateway",
        &url,
        "--beamline",
        BEAMLINE,
        "execute",
        "status",
    ])
    .await
    .expect_code(0);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some(BEAMLINE.to_string()), Some(BEAMLINE.to_string())]
    );

    // A gateway needs to know where to route.
    call_async(&["--gateway", &url, "describe"])
        .await
        .expect_code(1)
        .expect_stderr("--beamline");
    server.abort();
}
