//! The demo agent's capabilities, declared on the agent SDK as a beamline team declares its own:
//! name, description, effect and tags, typed params (see `params`), an admission for the motion
//! capabilities (the target within the motor's limits, INVALID_ARGUMENT; the motor free,
//! FAILED_PRECONDITION — refused rather than queued, so a caller never waits behind work it
//! cannot see), and the work each does inside its task.
//!
//! Owns what each capability means; the SDK owns tasks, schemas and the RPCs.

use std::time::Duration;

use serde_json::{json, Value};
use tonic::Status;

use super::params::{MonitorPv, MoveMotor, ReadPv, Scan};
use super::sim::{Motor, MotorGuard, MoveEnd, Sim};
use crate::agent::tasks::{codes, TaskHandle};
use crate::agent::{Actuating, Agent, Call, NoParams, ReadOnly};

pub const STATUS: &str = "status";
pub const READ_PV: &str = "read_pv";
pub const MOVE_MOTOR: &str = "move_motor";
pub const SCAN: &str = "scan";
pub const MONITOR_PV: &str = "monitor_pv";

/// "sample_x [-10, 10] mm at 5 mm/s; …", so callers see the limits without trying them.
fn motor_limits_text() -> String {
    Motor::ALL
        .iter()
        .map(|m| {
            let s = m.spec();
            let u = s.units;
            format!(
                "{} [{}, {}] {u} at {} {u}/s",
                m.name(),
                s.low,
                s.high,
                s.speed
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `agent` with the five capabilities of the demo beamline over `sim`.
pub fn declare(agent: Agent, sim: &Sim) -> Agent {
    let (s1, s2, s3, s4, s5) = (
        sim.clone(),
        sim.clone(),
        sim.clone(),
        sim.clone(),
        sim.clone(),
    );
    agent
        .capability(
            STATUS,
            "Beam current, shutter and every motor's position, limits and whether it moves.",
            ReadOnly.tagged(["read-only", "quick"]),
            move |_: NoParams, task: TaskHandle| {
                let status = s1.status();
                async move { task.complete(status) }
            },
        )
        .capability(
            READ_PV,
            "The value of one named process variable.",
            ReadOnly.tagged(["read-only", "quick"]),
            move |p: ReadPv, task: TaskHandle| {
                let value = s2.read_pv(p.name.0);
                async move {
                    match value {
                        Some(value) => task.complete(json!({"name": p.name.0, "value": value})),
                        None => task.fail(codes::INTERNAL, "the PV has no reader", false),
                    }
                }
            },
        )
        .admitted_capability(
            MOVE_MOTOR,
            &format!(
                "Moves a motor to an absolute position; takes |distance|/speed; cancellable. \
                 Motors: {}.",
                motor_limits_text()
            ),
            Actuating.tagged(["motion", "long-running"]),
            move |p: MoveMotor, _: &Call<'_>| {
                p.motor
                    .check_target(p.position)
                    .map_err(Status::invalid_argument)?;
                let guard = reserve(&s3, p.motor)?;
                let sim = s3.clone();
                Ok(move |task| run_move(task, sim, guard, p.position))
            },
        )
        .admitted_capability(
            SCAN,
            &format!(
                "Steps a motor through `steps` evenly spaced points from start to stop (both \
                 included), counting the detector for dwell_ms at each; result: the points. \
                 Cancellable. Motors: {}.",
                motor_limits_text()
            ),
            Actuating.tagged(["motion", "detector", "long-running"]),
            move |p: Scan, _: &Call<'_>| {
                let plan = ScanPlan {
                    motor: p.motor,
                    start: p.start,
                    stop: p.stop,
                    steps: p.steps,
                    dwell: Duration::from_millis(p.dwell_ms),
                };
                // Points lie between start and stop, so checking both ends checks them all.
                for end in [plan.start, plan.stop] {
                    plan.motor
                        .check_target(end)
                        .map_err(Status::invalid_argument)?;
                }
                let guard = reserve(&s4, plan.motor)?;
                let sim = s4.clone();
                Ok(move |task| run_scan(task, sim, guard, plan))
            },
        )
        .capability(
            MONITOR_PV,
            "Watches a process variable for duration_ms, reporting its value as progress every \
             interval_ms; result: min, max and last value. Read-only, cancellable, and any \
             number may run at once.",
            ReadOnly.tagged(["read-only", "long-running"]),
            move |p: MonitorPv, task: TaskHandle| {
                run_monitor(
                    task,
                    s5.clone(),
                    p.name.0,
                    Duration::from_millis(p.duration_ms),
                    Duration::from_millis(p.interval_ms),
                )
            },
        )
}

/// The motor's reservation, or FAILED_PRECONDITION while another task moves it.
fn reserve(sim: &Sim, motor: Motor) -> Result<MotorGuard, Status> {
    sim.reserve(motor)
        .map_err(|busy| Status::failed_precondition(busy.to_string()))
}

/// A scan's points, evenly spaced from `start` to `stop` inclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPlan {
    pub motor: Motor,
    pub start: f64,
    pub stop: f64,
    pub steps: u64,
    pub dwell: Duration,
}

impl ScanPlan {
    pub fn positions(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.steps).map(move |i| match i {
            0 => self.start,
            // The last point is `stop` exactly, not whatever the arithmetic rounds to.
            i if i + 1 == self.steps => self.stop,
            i => self.start + (self.stop - self.start) * i as f64 / (self.steps - 1) as f64,
        })
    }
}

async fn run_monitor(
    handle: TaskHandle,
    sim: Sim,
    name: &'static str,
    duration: Duration,
    interval: Duration,
) {
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(interval);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let last = loop {
        tokio::select! {
            _ = handle.cancelled() => return handle.cancelled_done(),
            _ = ticks.tick() => {}
        }
        let Some(value) = sim.read_pv(name) else {
            return handle.fail(codes::INTERNAL, format!("PV {name} has no reader"), false);
        };
        if let Some(x) = value.as_f64() {
            min = min.min(x);
            max = max.max(x);
        }
        let elapsed = started.elapsed();
        let fraction = (elapsed.as_secs_f64() / duration.as_secs_f64()).min(1.0);
        handle.progress(Some(fraction), format!("{name} = {value}"));
        if elapsed >= duration {
            break value;
        }
    };
    let (min, max) = if min.is_finite() {
        (json!(min), json!(max))
    } else {
        (Value::Null, Value::Null)
    };
    handle.complete(json!({"name": name, "min": min, "max": max, "last": last}));
}

async fn run_move(handle: TaskHandle, sim: Sim, guard: MotorGuard, target: f64) {
    let motor = guard.motor();
    let (name, units) = (motor.name(), motor.spec().units);
    let start = sim.position(motor);
    let distance = (target - start).abs();
    handle.progress(
        Some(0.0),
        format!("{name} at {start} {units}, moving to {target} {units}"),
    );
    let on_tick = |p: f64| {
        let fraction = ((p - start).abs() / distance).min(1.0);
        handle.progress(
            Some(fraction),
            format!("{name} at {p:.3} {units}, moving to {target} {units}"),
        );
    };
    let end = sim
        .move_to(&guard, target, handle.cancelled(), on_tick)
        .await;
    // Free the motor before the terminal event, so a caller that sees it can move it at once.
    drop(guard);
    match end {
        MoveEnd::Arrived(p) => {
            let result = json!({"motor": name, "position": p, "units": units});
            handle.complete(result);
        }
        MoveEnd::Stopped(_) => handle.cancelled_done(),
    }
}

async fn run_scan(handle: TaskHandle, sim: Sim, guard: MotorGuard, plan: ScanPlan) {
    let (name, units) = (plan.motor.name(), plan.motor.spec().units);
    let n = plan.steps;
    let mut points = Vec::with_capacity(n as usize);
    for (i, target) in plan.positions().enumerate() {
        let done = i as f64 / n as f64;
        let point = i + 1;
        let on_tick = |p: f64| {
            let msg = format!("moving to point {point}/{n}: {name} at {p:.3} {units}");
            handle.progress(Some(done), msg);
        };
        let end = sim
            .move_to(&guard, target, handle.cancelled(), on_tick)
            .await;
        let counts = match end {
            MoveEnd::Arrived(_) => sim.count(plan.dwell, handle.cancelled()).await,
            MoveEnd::Stopped(_) => None,
        };
        let Some(counts) = counts else {
            drop(guard);
            handle.cancelled_done();
            return;
        };
        points.push(json!({"position": target, "counts": counts}));
        let msg = format!("point {point}/{n}: {name} = {target} {units}, {counts} counts");
        handle.progress(Some(point as f64 / n as f64), msg);
    }
    drop(guard);
    let result = json!({
        "motor": name,
        "units": units,
        "dwell_ms": plan.dwell.as_millis() as u64,
        "points": points,
    });
    handle.complete(result);
}
