//! The demo agent's capabilities: their specs (description, JSON Schema, actuating, tags), the
//! parse of schema-checked params into an [`Action`] with the checks a schema cannot express
//! (per-motor travel limits), and the work each action does inside its task.
//!
//! Owns what each capability means. It must not create tasks or reserve motors: mod.rs does both,
//! after every check that has to fail before a task exists.

use std::time::Duration;

use serde_json::{json, Value};
use tonic::Status;

use super::sim::{Motor, MotorGuard, MoveEnd, Sim, PV_NAMES};
use crate::agent::capabilities::{json_to_struct, CapabilitySpec};
use crate::agent::tasks::{codes, TaskHandle};

pub const STATUS: &str = "status";
pub const READ_PV: &str = "read_pv";
pub const MOVE_MOTOR: &str = "move_motor";
pub const SCAN: &str = "scan";
pub const MONITOR_PV: &str = "monitor_pv";

pub const MAX_SCAN_STEPS: u64 = 1000;
pub const MAX_DWELL_MS: u64 = 10_000;
pub const MAX_MONITOR_MS: u64 = 24 * 3600 * 1000;

fn motor_names() -> Vec<&'static str> {
    Motor::ALL.iter().map(|m| m.name()).collect()
}

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

fn spec(
    name: &str,
    description: String,
    schema: Value,
    actuating: bool,
    tags: &[&str],
) -> CapabilitySpec {
    CapabilitySpec {
        name: name.to_string(),
        description,
        params_schema: schema,
        actuating,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// The four capabilities the demo agent serves.
pub fn specs() -> Vec<CapabilitySpec> {
    let motor = json!({"type": "string", "enum": motor_names()});
    vec![
        spec(
            STATUS,
            "Beam current, shutter and every motor's position, limits and whether it moves.".into(),
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            false,
            &["read-only", "quick"],
        ),
        spec(
            READ_PV,
            "The value of one named process variable.".into(),
            json!({
                "type": "object",
                "properties": {"name": {"type": "string", "enum": PV_NAMES}},
                "required": ["name"],
                "additionalProperties": false,
            }),
            false,
            &["read-only", "quick"],
        ),
        spec(
            MOVE_MOTOR,
            format!(
                "Moves a motor to an absolute position; takes |distance|/speed; cancellable. \
                 Motors: {}.",
                motor_limits_text()
            ),
            json!({
                "type": "object",
                "properties": {"motor": motor, "position": {"type": "number"}},
                "required": ["motor", "position"],
                "additionalProperties": false,
            }),
            true,
            &["motion", "long-running"],
        ),
        spec(
            SCAN,
            format!(
                "Steps a motor through `steps` evenly spaced points from start to stop (both \
                 included), counting the detector for dwell_ms at each; result: the points. \
                 Cancellable. Motors: {}.",
                motor_limits_text()
            ),
            json!({
                "type": "object",
                "properties": {
                    "motor": motor,
                    "start": {"type": "number"},
                    "stop": {"type": "number"},
                    "steps": {"type": "integer", "minimum": 1, "maximum": MAX_SCAN_STEPS},
                    "dwell_ms": {"type": "integer", "minimum": 1, "maximum": MAX_DWELL_MS},
                },
                "required": ["motor", "start", "stop", "steps", "dwell_ms"],
                "additionalProperties": false,
            }),
            true,
            &["motion", "detector", "long-running"],
        ),
        spec(
            MONITOR_PV,
            "Watches a process variable for duration_ms, reporting its value as progress every \
             interval_ms; result: min, max and last value. Read-only, cancellable, and any \
             number may run at once."
                .into(),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": PV_NAMES},
                    "duration_ms": {"type": "integer", "minimum": 1, "maximum": MAX_MONITOR_MS},
                    "interval_ms": {"type": "integer", "minimum": 10, "maximum": 60_000},
                },
                "required": ["name", "duration_ms"],
                "additionalProperties": false,
            }),
            false,
            &["read-only", "long-running"],
        ),
    ]
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

/// One validated request, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Status,
    ReadPv(String),
    Move {
        motor: Motor,
        position: f64,
    },
    Scan(ScanPlan),
    Monitor {
        name: String,
        duration: Duration,
        interval: Duration,
    },
}

fn bad(msg: String) -> Status {
    Status::invalid_argument(msg)
}

// The schema has already checked types; these only guard against a laxer validator.
fn field<'a>(params: &'a Value, key: &str) -> Result<&'a Value, Status> {
    params
        .get(key)
        .ok_or_else(|| bad(format!("missing required parameter {key:?}")))
}

fn number(params: &Value, key: &str) -> Result<f64, Status> {
    field(params, key)?
        .as_f64()
        .ok_or_else(|| bad(format!("parameter {key:?} must be a number")))
}

fn integer(params: &Value, key: &str) -> Result<u64, Status> {
    field(params, key)?
        .as_u64()
        .ok_or_else(|| bad(format!("parameter {key:?} must be a non-negative integer")))
}

fn motor(params: &Value) -> Result<Motor, Status> {
    let name = field(params, "motor")?.as_str().unwrap_or_default();
    Motor::parse(name).ok_or_else(|| bad(format!("unknown motor {name:?}")))
}

impl Action {
    /// Params that passed the capability's schema → an action, or INVALID_ARGUMENT for what the
    /// schema cannot say (a target outside the motor's limits).
    pub fn parse(capability: &str, params: &Value) -> Result<Action, Status> {
        let limit = |m: Motor, p: f64| m.check_target(p).map_err(bad);
        match capability {
            STATUS => Ok(Action::Status),
            READ_PV => {
                let name = field(params, "name")?.as_str().unwrap_or_default();
                if !PV_NAMES.contains(&name) {
                    return Err(bad(format!("unknown PV {name:?}; known: {PV_NAMES:?}")));
                }
                Ok(Action::ReadPv(name.to_string()))
            }
            MOVE_MOTOR => {
                let (motor, position) = (motor(params)?, number(params, "position")?);
                limit(motor, position)?;
                Ok(Action::Move { motor, position })
            }
            SCAN => {
                let plan = ScanPlan {
                    motor: motor(params)?,
                    start: number(params, "start")?,
                    stop: number(params, "stop")?,
                    steps: integer(params, "steps")?,
                    dwell: Duration::from_millis(integer(params, "dwell_ms")?),
                };
                if !(1..=MAX_SCAN_STEPS).contains(&plan.steps) {
                    return Err(bad(format!("steps must be 1..={MAX_SCAN_STEPS}")));
                }
                // Points lie between start and stop, so checking both ends checks them all.
                limit(plan.motor, plan.start)?;
                limit(plan.motor, plan.stop)?;
                Ok(Action::Scan(plan))
            }
            MONITOR_PV => {
                let name = field(params, "name")?.as_str().unwrap_or_default();
                if !PV_NAMES.contains(&name) {
                    return Err(bad(format!("unknown PV {name:?}; known: {PV_NAMES:?}")));
                }
                let interval_ms = match params.get("interval_ms") {
                    Some(_) => integer(params, "interval_ms")?,
                    None => 1000,
                };
                Ok(Action::Monitor {
                    name: name.to_string(),
                    duration: Duration::from_millis(integer(params, "duration_ms")?),
                    interval: Duration::from_millis(interval_ms.max(10)),
                })
            }
            other => Err(Status::not_found(format!("unknown capability {other:?}"))),
        }
    }

    /// The motor this action moves, which it must hold for its whole run.
    pub fn motor(&self) -> Option<Motor> {
        match self {
            Action::Move { motor, .. } => Some(*motor),
            Action::Scan(plan) => Some(plan.motor),
            Action::Status | Action::ReadPv(_) | Action::Monitor { .. } => None,
        }
    }

    /// The task's work. `guard` is the reservation of [`Action::motor`], taken before the task.
    pub async fn run(self, handle: TaskHandle, sim: Sim, guard: Option<MotorGuard>) {
        match (self, guard) {
            (Action::Status, _) => handle.complete(json_to_struct(&sim.status())),
            (Action::ReadPv(name), _) => match sim.read_pv(&name) {
                Some(value) => {
                    handle.complete(json_to_struct(&json!({"name": name, "value": value})))
                }
                None => handle.fail(codes::INTERNAL, format!("PV {name} has no reader"), false),
            },
            (Action::Move { position, .. }, Some(guard)) => {
                run_move(handle, sim, guard, position).await
            }
            (Action::Scan(plan), Some(guard)) => run_scan(handle, sim, guard, plan).await,
            (
                Action::Monitor {
                    name,
                    duration,
                    interval,
                },
                _,
            ) => run_monitor(handle, sim, name, duration, interval).await,
            (action, None) => handle.fail(
                codes::INTERNAL,
                format!("{action:?} started without reserving its motor"),
                false,
            ),
        }
    }
}

async fn run_monitor(
    handle: TaskHandle,
    sim: Sim,
    name: String,
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
        let Some(value) = sim.read_pv(&name) else {
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
    handle.complete(json_to_struct(
        &json!({"name": name, "min": min, "max": max, "last": last}),
    ));
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
            handle.complete(json_to_struct(&result));
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
    handle.complete(json_to_struct(&result));
}
