//! The demo's facility-control steps, every call through the gateway as one of the demo's
//! callers (`callers`):
//! 6. the stop button: a long scan and a `monitor_pv` stream run on one beamline; the control
//!    room halts it; the scan must end CANCELLED within a second of the halt returning while the
//!    monitor keeps streaming; an actuating call is refused and a read answered; then resume;
//! 7. a lock: the scientist locks a beamline; the planner's motor move is refused naming the
//!    holder and the note; the scientist's own move goes through; unlock.
//!
//! Owns those two steps and what they print; starting the stack and the tour are `demo`'s.

use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use beamline_mesh::agent::capabilities::json_to_struct;
use beamline_mesh::agent::tasks::is_terminal;
use beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient;
use beamline_mesh::proto::fleet_client::FleetClient;
use beamline_mesh::proto::{
    CancelRequest, ExecuteRequest, HaltRequest, LockRequest, ResumeRequest, Task, TaskEvent,
    TaskState, UnlockRequest,
};

use super::callers::{Bearer, DemoCallers};
use super::{ms, request, state_name};

/// A client of the agents' service through the gateway, as one caller.
pub type AgentClient = BeamlineAgentClient<InterceptedService<Channel, Bearer>>;

/// The promise to users: a halt stops running actuating work within this.
const HALT_PROMISE: Duration = Duration::from_secs(1);
/// The beamlines of the two steps.
const HALTED: &str = "12.3.1";
const LOCKED: &str = "7.0.1";

/// Step 6; returns the milliseconds from the halt returning to the scan's CANCELLED.
pub async fn stop_button(channel: &Channel, callers: &DemoCallers) -> anyhow::Result<f64> {
    let planner = BeamlineAgentClient::with_interceptor(channel.clone(), callers.planner.bearer());
    let mut control_room =
        FleetClient::with_interceptor(channel.clone(), callers.control_room.bearer());
    println!(
        "6. The stop button: a scan and a monitor_pv stream on {HALTED} (as {}), halted by {}",
        callers.planner.name, callers.control_room.name
    );
    let scan = serde_json::json!({
        "motor": "sample_y", "start": 0.0, "stop": 2.0, "steps": 50, "dwell_ms": 200,
    });
    let monitor = serde_json::json!({
        "name": "ring:current", "duration_ms": 30_000, "interval_ms": 100,
    });
    let mut scan = execute(&planner, HALTED, "scan", &scan).await?;
    let mut monitor = execute(&planner, HALTED, "monitor_pv", &monitor).await?;
    // The scan is running once it reports progress.
    let scan_task = until(&mut scan, |e| e.progress.is_some()).await?;
    let monitor_task = until(&mut monitor, |e| e.progress.is_some()).await?;
    println!(
        "   scan {} and monitor_pv {} running",
        scan_task.task_id, monitor_task.task_id
    );

    let reason = "demo: sample on fire";
    let asked = Instant::now();
    let halted = control_room
        .halt(request(
            HALTED,
            HaltRequest {
                beamline: HALTED.into(),
                all: false,
                reason: reason.into(),
            },
        ))
        .await
        .context("Halt")?
        .into_inner();
    let at = Instant::now();
    println!(
        "   halt {HALTED} --reason {reason:?}: halted by {} (the call took {:.0} ms)",
        halted.by,
        ms(at - asked)
    );

    // The scan ends; the monitor keeps streaming meanwhile.
    let ended = tokio::time::timeout(HALT_PROMISE * 5, last(&mut scan))
        .await
        .context("the scan did not end within 5 s of the halt")??;
    let stopped_after = at.elapsed();
    let error = ended.error.clone().unwrap_or_default();
    println!(
        "   scan {} {:.0} ms after the halt was sent, {:.0} ms after it returned ({}: {})",
        state_name(ended.state()),
        ms(stopped_after + (at - asked)),
        ms(stopped_after),
        error.code,
        error.message
    );
    anyhow::ensure!(
        ended.state() == TaskState::Cancelled,
        "the halt did not cancel the scan: it ended {}",
        state_name(ended.state())
    );
    anyhow::ensure!(
        stopped_after <= HALT_PROMISE,
        "the scan ended {:.0} ms after the halt (the promise is {HALT_PROMISE:?})",
        ms(stopped_after)
    );
    let streamed = count_for(&mut monitor, HALT_PROMISE).await?;
    println!("   monitor_pv kept streaming: {streamed} updates in the second after the halt");
    anyhow::ensure!(streamed > 0, "monitor_pv stopped streaming after the halt");

    let refused = try_execute(
        &planner,
        HALTED,
        "move_motor",
        &serde_json::json!({"motor": "sample_x", "position": 0.5}),
    )
    .await;
    match refused {
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            println!("   move_motor refused: {}", refusal(&status))
        }
        Err(status) => anyhow::bail!("move_motor on a halted beamline: {}", refusal(&status)),
        Ok(_) => anyhow::bail!("move_motor was accepted on a halted beamline"),
    }
    let resumed = control_room
        .resume(request(
            HALTED,
            ResumeRequest {
                beamline: HALTED.into(),
                all: false,
            },
        ))
        .await
        .context("Resume")?
        .into_inner();
    anyhow::ensure!(!resumed.halted, "still halted after Resume");
    let mut moved = execute(
        &planner,
        HALTED,
        "move_motor",
        &serde_json::json!({"motor": "sample_x", "position": 0.5}),
    )
    .await?;
    let moved = last(&mut moved).await?;
    println!(
        "   resume {HALTED}; move_motor {}",
        state_name(moved.state())
    );
    planner
        .clone()
        .cancel(request(
            HALTED,
            CancelRequest {
                task_id: monitor_task.task_id,
            },
        ))
        .await
        .context("Cancel the monitor")?;
    Ok(ms(stopped_after))
}

/// Step 7.
pub async fn lock(channel: &Channel, callers: &DemoCallers) -> anyhow::Result<()> {
    let planner = BeamlineAgentClient::with_interceptor(channel.clone(), callers.planner.bearer());
    let scientist =
        BeamlineAgentClient::with_interceptor(channel.clone(), callers.scientist.bearer());
    let mut fleet = FleetClient::with_interceptor(channel.clone(), callers.scientist.bearer());
    let note = "aligning the beam by hand";
    println!(
        "7. A lock: {} locks {LOCKED} for 2 h; {} tries to move a motor",
        callers.scientist.name, callers.planner.name
    );
    let locked = fleet
        .lock(request(
            LOCKED,
            LockRequest {
                beamline: LOCKED.into(),
                note: note.into(),
                duration: Some(prost_types::Duration {
                    seconds: 2 * 3600,
                    nanos: 0,
                }),
            },
        ))
        .await
        .context("Lock")?
        .into_inner();
    println!(
        "   lock {LOCKED} --note {note:?}: held by {}",
        locked.holder
    );
    let params = serde_json::json!({"motor": "sample_x", "position": 1.0});
    match try_execute(&planner, LOCKED, "move_motor", &params).await {
        Err(status) if status.code() == tonic::Code::FailedPrecondition => println!(
            "   {}'s move_motor refused: {}",
            callers.planner.name,
            refusal(&status)
        ),
        Err(status) => anyhow::bail!("move_motor on a locked beamline: {}", refusal(&status)),
        Ok(_) => anyhow::bail!("the planner's move_motor was accepted on a locked beamline"),
    }
    let mut own = execute(&scientist, LOCKED, "move_motor", &params).await?;
    let own = last(&mut own).await?;
    println!(
        "   {}'s own move_motor {}",
        callers.scientist.name,
        state_name(own.state())
    );
    anyhow::ensure!(
        own.state() == TaskState::Completed,
        "the holder's move ended {}",
        state_name(own.state())
    );
    fleet
        .unlock(request(
            LOCKED,
            UnlockRequest {
                beamline: LOCKED.into(),
            },
        ))
        .await
        .context("Unlock")?;
    println!("   unlock {LOCKED}");
    Ok(())
}

type Events = tonic::Streaming<TaskEvent>;

async fn execute(
    client: &AgentClient,
    beamline: &str,
    capability: &str,
    params: &serde_json::Value,
) -> anyhow::Result<Events> {
    try_execute(client, beamline, capability, params)
        .await
        .with_context(|| format!("Execute {capability} on {beamline}"))
}

/// An Execute that the caller expects may be refused: the refusal's status as it came.
async fn try_execute(
    client: &AgentClient,
    beamline: &str,
    capability: &str,
    params: &serde_json::Value,
) -> Result<Events, tonic::Status> {
    let call = ExecuteRequest {
        capability: capability.into(),
        params: Some(json_to_struct(params)),
        idempotency_key: String::new(),
    };
    let mut call = request(beamline, call);
    // Streams outlive the tour's per-call deadline.
    call.set_timeout(Duration::from_secs(60));
    Ok(client.clone().execute(call).await?.into_inner())
}

/// A refusal as people read it: `FAILED_PRECONDITION: beamline … is halted by …`.
fn refusal(status: &tonic::Status) -> String {
    format!(
        "{}: {}",
        beamline_mesh::gateway::observe::code_name(status.code()),
        status.message()
    )
}

/// The next event (bounded), or an error when the stream ends or fails.
async fn next(events: &mut Events) -> anyhow::Result<TaskEvent> {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .context("nothing for 10 s")?
        .context("the stream failed")?
        .context("the stream ended")
}

/// Reads until an event matches; its task.
async fn until(events: &mut Events, wanted: impl Fn(&TaskEvent) -> bool) -> anyhow::Result<Task> {
    loop {
        let event = next(events).await?;
        if wanted(&event) {
            return event.task.context("an event without its task");
        }
    }
}

/// Reads to the terminal event; its task.
async fn last(events: &mut Events) -> anyhow::Result<Task> {
    until(events, |e| {
        e.task.as_ref().is_some_and(|t| is_terminal(t.state))
    })
    .await
}

/// Events received within `window`.
async fn count_for(events: &mut Events, window: Duration) -> anyhow::Result<usize> {
    let end = tokio::time::Instant::now() + window;
    let mut n = 0;
    while let Ok(next) = tokio::time::timeout_at(end, events.message()).await {
        match next.context("the monitor's stream failed")? {
            Some(_) => n += 1,
            None => break,
        }
    }
    Ok(n)
}
