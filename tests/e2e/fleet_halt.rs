//! The kill switch through the gateway: halt one beamline or all, resume, and what stays
//! working; the gateway failing closed when the halt state cannot be read; and the lock's rule
//! for cancels, which only the gateway enforces for callers it names.
//!
//! Real processes: a registry, the demo agents of 5.3.1 and 7.0.1, and a gateway with the
//! standard auth file (`support::policy`; `--log-format json`, `--metrics-listen`). Halts and
//! resumes are the Fleet RPCs, called by the JWT `control-room` (safety); agents' calls are
//! `ops-console`'s. Agents refuse actuating work while halted themselves too, so each refusal
//! here is also checked to be the gateway's own: its access-log line says `refused` and names
//! no instance (the call never left the gateway).

use std::time::Duration;

use crate::support::agent::{execute_request, next_event, task_of};
use crate::support::gateway::{first_task, CALL_BOUND};
use crate::support::policy::*;
use crate::support::*;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{CancelRequest, GetTaskRequest, SubscribeRequest, Task};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

const HALTED: &str = "5.3.1";
const OTHER: &str = "7.0.1";
/// How long a change of the control state may take to reach every refusal and every agent (the
/// promise to users is 1 s; the poll allows for a loaded CI machine).
const REACH: Duration = Duration::from_secs(10);

async fn stack(beamlines: &[&str]) -> PolicyStack {
    PolicyStack::start(beamlines, false, |g| {
        g.global_arg("--log-format", "json")
            .arg("--metrics-listen", "127.0.0.1:0")
    })
    .await
}

/// A field of an access-log line as text ("" when absent).
fn text(line: &Value, field: &str) -> String {
    log_text(line, field).unwrap_or_default()
}

/// The gateway's own refusals of `capability` on `beamline` for `reason` in its access log:
/// FAILED_PRECONDITION, `refused` set, no instance (the call never left the gateway).
fn gateway_refusals(stack: &PolicyStack, beamline: &str, capability: &str, reason: &str) -> usize {
    access_lines(&stack.gateway.stderr())
        .iter()
        .filter(|l| {
            text(l, "beamline") == beamline
                && text(l, "capability") == capability
                && text(l, "code") == "FAILED_PRECONDITION"
                && text(l, "refused") == reason
                && text(l, "instance").is_empty()
        })
        .count()
}

/// Polls an Execute of `capability` on `beamline` until the gateway itself refuses it for
/// `reason`, as its access log says: an agent that refuses first (it follows the control state
/// too) or a motor still moving (FAILED_PRECONDITION as well) does not count.
async fn wait_refused(
    stack: &PolicyStack,
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    capability: &str,
    params: Value,
    reason: &str,
) {
    let before = gateway_refusals(stack, beamline, capability, reason);
    poll_for(
        REACH,
        &format!("the gateway refusing {capability} on {beamline} ({reason})"),
        async || {
            let _ = execute(client, beamline, capability, params.clone()).await;
            // The line is written off the call's path: a later round may find it.
            (gateway_refusals(stack, beamline, capability, reason) > before).then_some(())
        },
    )
    .await;
}

/// The value of `beamline_gateway_refusals_total` for `beamline` and `reason`.
async fn refusals(stack: &PolicyStack, beamline: &str, reason: &str) -> f64 {
    let base = stack.metrics_base().await;
    let (status, _, body) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    parse_prometheus(&body)
        .iter()
        .filter(|s| {
            s.name == "beamline_gateway_refusals_total"
                && s.labels.get("beamline").is_some_and(|b| b == beamline)
                && s.labels.get("reason").is_some_and(|r| r == reason)
        })
        .map(|s| s.value)
        .sum()
}

/// Waits for the access-log line of a Fleet `method` call (Halt, Resume, Lock, …) about
/// `beamline` (lines are written off the call's path).
async fn fleet_line(stack: &PolicyStack, method: &str, beamline: &str) -> Value {
    poll_for(
        secs(10),
        &format!("an access-log line of {method} {beamline}"),
        async || {
            access_lines(&stack.gateway.stderr())
                .into_iter()
                .find(|l| text(l, "method") == method && text(l, "beamline") == beamline)
        },
    )
    .await
}

/// An Execute of `capability` with `params` through the gateway as `ops-console`: the task id
/// of its first event, or the status.
async fn execute(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    capability: &str,
    params: Value,
) -> Result<String, tonic::Status> {
    let request = execute_request(capability, params, "");
    let mut request = with_credential(beamline, Some(OPS_KEY), request);
    request.set_timeout(CALL_BOUND);
    first_task(client, request).await
}

/// A Cancel of `task_id` on `beamline` as `credential`.
async fn cancel(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    task_id: &str,
    credential: &str,
) -> Result<Task, tonic::Status> {
    let message = CancelRequest {
        task_id: task_id.to_string(),
    };
    let mut request = with_credential(beamline, Some(credential), message);
    request.set_timeout(CALL_BOUND);
    client
        .cancel(request)
        .await
        .map(tonic::Response::into_inner)
}

fn small_move() -> Value {
    json!({"motor": "sample_x", "position": 0.5})
}

/// 10 mm at 5 mm/s: a 2 s move, long enough to be read, halted and cancelled.
fn long_move() -> Value {
    json!({"motor": "sample_y", "position": 10.0})
}

fn scan() -> Value {
    json!({"motor": "sample_x", "start": 0.0, "stop": 1.0, "steps": 3, "dwell_ms": 10})
}

fn read_pv() -> Value {
    json!({"name": "ring:current"})
}

/// An Execute of move_motor on `beamline` that must be refused FAILED_PRECONDITION; the
/// refusal's message.
async fn refused_move(client: &mut BeamlineAgentClient<Channel>, beamline: &str) -> String {
    let status = execute(client, beamline, "move_motor", small_move())
        .await
        .expect_err("move_motor refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    status.message().to_string()
}

/// Polls an Execute of `capability` on `beamline` until it starts (after a resume reached the
/// gateway and the agent, or the catalog learnt the card).
async fn works(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    capability: &str,
    params: Value,
) {
    poll_for(
        REACH,
        &format!("{capability} on {beamline} to start"),
        async || {
            execute(client, beamline, capability, params.clone())
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_actuating_calls_on_its_beamline_only_then_all_then_none() {
    let s = stack(&[HALTED, OTHER]).await;
    let mut client = s.client().await;
    let mut safety = s.fleet_as(Some(&safety_token())).await;

    let running = execute(&mut client, HALTED, "move_motor", long_move())
        .await
        .expect("a move before the halt");

    let halted = safety
        .halt(HALTED, false, "sample on fire")
        .await
        .expect("Halt 5.3.1 as safety");
    let since = halted.since.expect("the halt's time").to_string();
    // Halt answers once the gateway's own view has it: the next actuating call is refused.
    let message = refused_move(&mut client, HALTED).await;
    assert_eq!(
        message,
        format!("beamline {HALTED} is halted by \"control-room\" since {since}: sample on fire")
    );
    wait_refused(&s, &mut client, HALTED, "move_motor", small_move(), "halt").await;
    let scan_refused = execute(&mut client, HALTED, "scan", scan())
        .await
        .expect_err("a scan while halted");
    assert_eq!(scan_refused.code(), Code::FailedPrecondition);
    assert_eq!(scan_refused.message(), message);
    wait_refused(&s, &mut client, HALTED, "scan", scan(), "halt").await;
    let line = fleet_line(&s, "Halt", HALTED).await;
    assert_eq!(text(&line, "caller"), "control-room", "{line}");
    assert_eq!(text(&line, "code"), "OK", "{line}");

    // Reads, read-only capabilities and cancels go on.
    describe_as(&mut client, HALTED, Some(OPS_KEY))
        .await
        .expect("Describe while halted");
    works(&mut client, HALTED, "read_pv", read_pv()).await;
    let message = GetTaskRequest {
        task_id: running.clone(),
    };
    client
        .get_task(with_credential(HALTED, Some(OPS_KEY), message))
        .await
        .expect("GetTask while halted");
    let message = SubscribeRequest {
        task_id: running.clone(),
    };
    let mut watched = client
        .subscribe(with_credential(HALTED, Some(OPS_KEY), message))
        .await
        .expect("Subscribe while halted")
        .into_inner();
    let snapshot = next_event(&mut watched).await.expect("a snapshot event");
    assert_eq!(task_of(&snapshot).task_id, running);
    cancel(&mut client, HALTED, &running, OPS_KEY)
        .await
        .expect("Cancel while halted");

    // The other beamline is not halted.
    execute(&mut client, OTHER, "move_motor", small_move())
        .await
        .expect("move_motor on the beamline not halted");

    // Every beamline.
    safety
        .halt("", true, "beam dump")
        .await
        .expect("Halt all as safety");
    fleet_line(&s, "Halt", "*").await;
    for beamline in [HALTED, OTHER] {
        let message = refused_move(&mut client, beamline).await;
        assert!(
            message.starts_with("every beamline is halted by \"control-room\" since "),
            "{message}"
        );
        assert!(message.ends_with(": beam dump"), "{message}");
        describe_as(&mut client, beamline, Some(OPS_KEY))
            .await
            .expect("Describe while every beamline is halted");
    }
    wait_refused(&s, &mut client, OTHER, "move_motor", small_move(), "halt").await;

    // Resumed: the fleet-wide halt first (5.3.1 stays halted by its own), then 5.3.1's.
    safety.resume("", true).await.expect("Resume all");
    works(&mut client, OTHER, "move_motor", small_move()).await;
    let still = refused_move(&mut client, HALTED).await;
    assert!(still.starts_with("beamline 5.3.1 is halted"), "{still}");
    safety.resume(HALTED, false).await.expect("Resume 5.3.1");
    fleet_line(&s, "Resume", HALTED).await;
    works(&mut client, HALTED, "move_motor", small_move()).await;

    // Counted by beamline and reason: at least the refusals above.
    assert!(refusals(&s, HALTED, "halt").await >= 4.0);
    assert!(refusals(&s, OTHER, "halt").await >= 2.0);
}

/// Agents over plaintext do not know who calls, so a lock's rule for Cancel is the gateway's:
/// another caller cannot cancel the holder's actuating task, the holder can, and a read-only
/// task is anyone's to cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_keeps_others_from_cancelling_an_actuating_task() {
    let s = stack(&[HALTED]).await;
    let mut client = s.client().await;
    let mut team = s.fleet_as(Some(TEAM_531_KEY)).await;
    // read_pv is known read-only once the catalog has the card.
    works(&mut client, HALTED, "read_pv", read_pv()).await;
    let moving = execute(&mut client, HALTED, "move_motor", long_move())
        .await
        .expect("a move before the lock");
    team.lock(HALTED, "aligning by hand", None)
        .await
        .expect("Lock 5.3.1 as team-531");
    let line = fleet_line(&s, "Lock", HALTED).await;
    assert_eq!(text(&line, "caller"), "team-531", "{line}");

    let refused = cancel(&mut client, HALTED, &moving, OPS_KEY)
        .await
        .expect_err("ops-console cancelling under team-531's lock");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("beamline 5.3.1 is locked by \"team-531\" until "),
        "{refused:?}"
    );
    assert!(refused.message().ends_with(": aligning by hand"));
    let line = poll_for(
        secs(10),
        "the refused Cancel's access-log line",
        async || {
            access_lines(&s.gateway.stderr())
                .into_iter()
                .find(|l| text(l, "method") == "Cancel" && text(l, "refused") == "lock")
        },
    )
    .await;
    assert_eq!(text(&line, "task_id"), moving, "{line}");
    assert_eq!(text(&line, "caller"), "ops-console", "{line}");
    assert!(refusals(&s, HALTED, "lock").await >= 1.0);

    // ops-console's actuating Execute is refused too; its reads are not.
    let message = refused_move(&mut client, HALTED).await;
    assert!(message.contains("locked by \"team-531\""), "{message}");
    works(&mut client, HALTED, "read_pv", read_pv()).await;

    // The holder cancels its own beamline's task.
    let cancelled = cancel(&mut client, HALTED, &moving, TEAM_531_KEY)
        .await
        .expect("the holder's Cancel");
    assert_eq!(cancelled.task_id, moving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_halt_state_cannot_be_read_actuating_calls_are_refused_and_reads_go_on() {
    let mut s = stack(&[HALTED]).await;
    let mut client = s.client().await;
    execute(&mut client, HALTED, "move_motor", small_move())
        .await
        .expect("move_motor while the registry answers");

    s.registry_mut().kill9();
    wait_refused(
        &s,
        &mut client,
        HALTED,
        "move_motor",
        small_move(),
        "unreadable",
    )
    .await;
    let message = refused_move(&mut client, HALTED).await;
    assert!(
        message.starts_with("actuating calls are refused while the halt state cannot be read"),
        "{message}"
    );
    // The mesh still knows the instance: reads are answered.
    describe_as(&mut client, HALTED, Some(OPS_KEY))
        .await
        .expect("Describe with the registry down");
    assert!(refusals(&s, HALTED, "unreadable").await >= 1.0);
}
