//! The kill switch through the gateway: halt one beamline or all, resume, who may, and what stays working.
//!
//! Real processes: a registry, the demo agents of 5.3.1 and 7.0.1, and the gateway
//! (`--log-format json`, `--metrics-listen`). A halt is written into the registry's KV as the
//! Fleet service writes it (`support::gateway::halt_in_kv`). Agents refuse actuating work while
//! halted themselves too, so each refusal here is also checked to be the gateway's own: its
//! access-log line says `refused` and names no instance (the call never left the gateway).

use std::time::Duration;

use crate::support::agent::{execute_request, next_event, task_of};
use crate::support::gateway::*;
use crate::support::policy::{access_lines, log_text, parse_prometheus, Sample};
use crate::support::*;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::{CancelRequest, GetTaskRequest, SubscribeRequest};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

const HALTED: &str = "5.3.1";
const OTHER: &str = "7.0.1";
/// How long a halt written to KV may take to reach the gateway's refusals (the promise to users
/// is 1 s; the poll allows for a loaded CI machine).
const REACH: Duration = Duration::from_secs(10);

/// A registry, the demo agents of 5.3.1 and 7.0.1, and a gateway that has reached both, with
/// its JSON access log and its metrics listener.
struct Facility {
    gateway: GatewayProc,
    _agents: Vec<crate::support::agent::AgentProc>,
    registry: Registry,
}

impl Facility {
    async fn start(beamlines: &[&str]) -> Facility {
        let registry = Registry::start();
        let mut agents = Vec::new();
        for beamline in beamlines {
            agents.push(start_agent(&registry, beamline).await.0);
        }
        let gateway = GatewayProc::builder(&registry)
            .global_arg("--log-format", "json")
            .arg("--metrics-listen", "127.0.0.1:0")
            .start();
        let mut client = gateway.client().await;
        for beamline in beamlines {
            poll_for(
                secs(10),
                &format!("Describe of {beamline} through the gateway"),
                async || describe(&mut client, beamline).await.ok(),
            )
            .await;
        }
        Facility {
            gateway,
            _agents: agents,
            registry,
        }
    }

    async fn metrics(&self) -> Vec<Sample> {
        let addr = self
            .gateway
            .wait_stdout_line("metrics listening on ", secs(10))
            .await;
        let base = if addr.starts_with("http://") {
            addr
        } else {
            format!("http://{addr}")
        };
        let (status, _, body) = crate::support::policy::http_get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200, "GET /metrics: {body}");
        parse_prometheus(&body)
    }

    /// The value of `beamline_gateway_refusals_total` for `beamline` and `reason`.
    async fn refusals(&self, beamline: &str, reason: &str) -> f64 {
        self.metrics()
            .await
            .iter()
            .filter(|s| {
                s.name == "beamline_gateway_refusals_total"
                    && s.labels.get("beamline").is_some_and(|b| b == beamline)
                    && s.labels.get("reason").is_some_and(|r| r == reason)
            })
            .map(|s| s.value)
            .sum()
    }

    /// The gateway's own refusals of `capability` on `beamline` for `reason` in its access
    /// log: FAILED_PRECONDITION, `refused` set, no instance (the call never left the gateway).
    fn gateway_refusals(&self, beamline: &str, capability: &str, reason: &str) -> usize {
        let text = |l: &serde_json::Value, field: &str| log_text(l, field).unwrap_or_default();
        access_lines(&self.gateway.stderr())
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

    /// Polls an Execute of `capability` on `beamline` until the gateway itself refuses it
    /// for `reason`, as its access log says: an agent that refuses first (it follows the
    /// control state too) or a motor still moving (FAILED_PRECONDITION as well) does not count.
    async fn wait_refused(
        &self,
        client: &mut BeamlineAgentClient<Channel>,
        beamline: &str,
        capability: &str,
        params: serde_json::Value,
        reason: &str,
    ) {
        let before = self.gateway_refusals(beamline, capability, reason);
        poll_for(
            REACH,
            &format!("the gateway refusing {capability} on {beamline} ({reason})"),
            async || {
                let _ = execute(client, beamline, capability, params.clone()).await;
                // The line is written off the call's path: a later round may find it.
                (self.gateway_refusals(beamline, capability, reason) > before).then_some(())
            },
        )
        .await;
    }
}

/// An Execute of `capability` with `params` through the gateway: the status of the call, or
/// of its stream's first message (the task runs on: the stream is dropped).
async fn execute(
    client: &mut BeamlineAgentClient<Channel>,
    beamline: &str,
    capability: &str,
    params: serde_json::Value,
) -> Result<String, tonic::Status> {
    let request = to_with_timeout(
        beamline,
        execute_request(capability, params, ""),
        CALL_BOUND,
    );
    let mut stream = client.execute(request).await?.into_inner();
    match tokio::time::timeout(CALL_BOUND, stream.message()).await {
        Ok(Ok(Some(event))) => Ok(task_of(&event).task_id.clone()),
        Ok(Ok(None)) => Err(tonic::Status::unknown("TEST: the stream ended at once")),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "TEST: no first event within CALL_BOUND",
        )),
    }
}

fn small_move() -> serde_json::Value {
    json!({"motor": "sample_x", "position": 0.5})
}

fn scan() -> serde_json::Value {
    json!({"motor": "sample_x", "start": 0.0, "stop": 1.0, "steps": 3, "dwell_ms": 10})
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

/// Polls an Execute of move_motor on `beamline` until it starts (after a resume reached the
/// gateway and the agent).
async fn moves_again(client: &mut BeamlineAgentClient<Channel>, beamline: &str) {
    poll_for(
        REACH,
        &format!("move_motor on {beamline} after the resume"),
        async || {
            execute(client, beamline, "move_motor", small_move())
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_stops_actuating_calls_on_its_beamline_only_then_all_then_none() {
    let f = Facility::start(&[HALTED, OTHER]).await;
    let mut client = f.gateway.client().await;

    // A long move, started before the halt: what is read about a task goes on during it.
    let running = execute(
        &mut client,
        HALTED,
        "move_motor",
        json!({"motor": "sample_y", "position": 10.0}),
    )
    .await
    .expect("a move before the halt");

    let halt = halt_in_kv(
        &f.registry,
        HaltScope::Beamline(HALTED),
        "control-room",
        "sample on fire",
    )
    .await;
    f.wait_refused(&mut client, HALTED, "move_motor", small_move(), "halt")
        .await;
    let message = refused_move(&mut client, HALTED).await;
    let since = beamline_contract::control::rfc3339::format(halt.since);
    assert_eq!(
        message,
        format!("beamline {HALTED} is halted by \"control-room\" since {since}: sample on fire")
    );
    let scan_refused = execute(&mut client, HALTED, "scan", scan())
        .await
        .expect_err("a scan while halted");
    assert_eq!(scan_refused.code(), Code::FailedPrecondition);
    assert_eq!(scan_refused.message(), message);
    f.wait_refused(&mut client, HALTED, "scan", scan(), "halt")
        .await;

    // Reads and cancels go on.
    describe(&mut client, HALTED)
        .await
        .expect("Describe while halted");
    client
        .get_task(to_with_timeout(
            HALTED,
            GetTaskRequest {
                task_id: running.clone(),
            },
            CALL_BOUND,
        ))
        .await
        .expect("GetTask while halted");
    let mut watched = client
        .subscribe(to_with_timeout(
            HALTED,
            SubscribeRequest {
                task_id: running.clone(),
            },
            CALL_BOUND,
        ))
        .await
        .expect("Subscribe while halted")
        .into_inner();
    let snapshot = next_event(&mut watched).await.expect("a snapshot event");
    assert_eq!(task_of(&snapshot).task_id, running);
    client
        .cancel(to_with_timeout(
            HALTED,
            CancelRequest {
                task_id: running.clone(),
            },
            CALL_BOUND,
        ))
        .await
        .expect("Cancel while halted");

    // The other beamline is not halted.
    execute(&mut client, OTHER, "move_motor", small_move())
        .await
        .expect("move_motor on the beamline not halted");

    // Every beamline.
    halt_in_kv(&f.registry, HaltScope::All, "safety-officer", "beam dump").await;
    for beamline in [HALTED, OTHER] {
        f.wait_refused(&mut client, beamline, "move_motor", small_move(), "halt")
            .await;
        let message = refused_move(&mut client, beamline).await;
        assert!(
            message.starts_with("every beamline is halted by \"safety-officer\" since "),
            "{message}"
        );
        assert!(message.ends_with(": beam dump"), "{message}");
        describe(&mut client, beamline)
            .await
            .expect("Describe while every beamline is halted");
    }

    // Resumed: the fleet-wide halt first (5.3.1 stays halted by its own), then 5.3.1's.
    resume_in_kv(&f.registry, HaltScope::All).await;
    moves_again(&mut client, OTHER).await;
    let still = execute(&mut client, HALTED, "move_motor", small_move())
        .await
        .expect_err("5.3.1 is still halted by its own halt");
    assert!(
        still.message().starts_with("beamline 5.3.1 is halted"),
        "{still:?}"
    );
    resume_in_kv(&f.registry, HaltScope::Beamline(HALTED)).await;
    moves_again(&mut client, HALTED).await;

    // Counted by beamline and reason: at least the refusals asserted above.
    assert!(f.refusals(HALTED, "halt").await >= 4.0);
    assert!(f.refusals(OTHER, "halt").await >= 1.0);
}

/// The catalog has learnt the agent's card: its read-only capabilities go on through the halt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_capability_works_while_halted() {
    let f = Facility::start(&[HALTED]).await;
    let mut client = f.gateway.client().await;
    halt_in_kv(
        &f.registry,
        HaltScope::Beamline(HALTED),
        "control-room",
        "vacuum",
    )
    .await;
    f.wait_refused(&mut client, HALTED, "move_motor", small_move(), "halt")
        .await;
    // The catalog learns the card by itself (its own Describe): until then read_pv is not
    // known, and refused (fail closed).
    poll_for(REACH, "read_pv through the halt", async || {
        execute(
            &mut client,
            HALTED,
            "read_pv",
            json!({"name": "ring:current"}),
        )
        .await
        .ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_halt_state_cannot_be_read_actuating_calls_are_refused_and_reads_go_on() {
    let mut f = Facility::start(&[HALTED]).await;
    let mut client = f.gateway.client().await;
    execute(&mut client, HALTED, "move_motor", small_move())
        .await
        .expect("move_motor while the registry answers");

    f.registry.kill9();
    f.wait_refused(
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
    describe(&mut client, HALTED)
        .await
        .expect("Describe with the registry down");
    assert!(f.refusals(HALTED, "unreadable").await >= 1.0);
}
