//! The simulated beamline behind the demo agent: three motors with limits and speeds, a detector,
//! a drifting storage-ring current, a shutter, and the named process variables (PVs) over them.
//!
//! Owns the hardware model and motion in (tokio) time. It must not know about tasks, gRPC or
//! params: callers pass a cancellation future and a progress callback, and must hold the motor's
//! [`MotorGuard`] to move it, so two movers of one motor cannot exist.
//!
//! Determinism: for one seed, the beam current is a fixed function of the time since start (a
//! mean-reverting walk with its own generator, stepped once per simulated second, so reads do not
//! perturb it), and detector noise is a fixed sequence over successive reads.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How often a moving motor updates its position and reports progress.
pub const TICK: Duration = Duration::from_millis(50);

/// The PVs `read_pv` serves (also the `enum` of its params schema).
pub const PV_NAMES: [&str; 7] = [
    "ring:current",
    "ring:energy",
    "shutter:open",
    "sample:x",
    "sample:y",
    "mono:energy",
    "detector:last_counts",
];

const RING_ENERGY_GEV: f64 = 1.9;
const NOMINAL_CURRENT_MA: f64 = 500.0;
// Top-up keeps the current near nominal: a small pull back each second plus a random kick.
const CURRENT_REVERSION: f64 = 0.05;
const CURRENT_KICK_MA: f64 = 0.1;
const CURRENT_READ_NOISE_MA: f64 = 0.02;
/// Counts per second at nominal current, on the beam spot and above the edge.
const PEAK_RATE: f64 = 1.0e5;
const DARK_RATE: f64 = 5.0;
const SPOT_SIGMA_MM: f64 = 1.5;
/// The Cu K edge: scanning `mono_energy` across it shows a step.
const EDGE_EV: f64 = 8979.0;
const EDGE_WIDTH_EV: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Motor {
    SampleX,
    SampleY,
    MonoEnergy,
}

/// Travel limits (inclusive), speed in units per second, and the position at start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotorSpec {
    pub low: f64,
    pub high: f64,
    pub speed: f64,
    pub units: &'static str,
    pub home: f64,
}

impl Motor {
    pub const ALL: [Motor; 3] = [Motor::SampleX, Motor::SampleY, Motor::MonoEnergy];

    pub fn name(self) -> &'static str {
        match self {
            Motor::SampleX => "sample_x",
            Motor::SampleY => "sample_y",
            Motor::MonoEnergy => "mono_energy",
        }
    }

    pub fn parse(name: &str) -> Option<Motor> {
        Motor::ALL.into_iter().find(|m| m.name() == name)
    }

    // Speeds are high enough that the moves tests make take well under 2 s.
    pub fn spec(self) -> MotorSpec {
        match self {
            Motor::SampleX | Motor::SampleY => MotorSpec {
                low: -10.0,
                high: 10.0,
                speed: 5.0,
                units: "mm",
                home: 0.0,
            },
            Motor::MonoEnergy => MotorSpec {
                low: 2000.0,
                high: 12000.0,
                speed: 1000.0,
                units: "eV",
                home: 8000.0,
            },
        }
    }

    /// Ok when `position` is within the travel limits; else a message naming all three.
    pub fn check_target(self, position: f64) -> Result<(), String> {
        let s = self.spec();
        if position.is_finite() && (s.low..=s.high).contains(&position) {
            return Ok(());
        }
        Err(format!(
            "{}: position {position} {u} is outside the limits [{}, {}] {u}",
            self.name(),
            s.low,
            s.high,
            u = s.units
        ))
    }
}

/// Another task holds the motor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("motor {} is busy with another task; wait for it to end or cancel it", .0.name())]
pub struct MotorBusy(pub Motor);

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MoveEnd {
    Arrived(f64),
    /// Cancelled: the motor stopped here.
    Stopped(f64),
}

/// The simulated beamline; cheap to clone, all clones share the hardware.
#[derive(Clone)]
pub struct Sim {
    state: Arc<Mutex<State>>,
    started: Instant,
}

struct State {
    positions: [f64; 3],
    busy: [bool; 3],
    shutter_open: bool,
    beam: BeamWalk,
    noise: StdRng,
    spot: (f64, f64),
    last_counts: u64,
}

struct BeamWalk {
    rng: StdRng,
    second: u64,
    current: f64,
}

impl BeamWalk {
    fn at(&mut self, second: u64) -> f64 {
        // Time only moves forward, so an earlier second than the last one asked reads the latest.
        while self.second < second {
            let kick = gaussian(&mut self.rng) * CURRENT_KICK_MA;
            self.current += CURRENT_REVERSION * (NOMINAL_CURRENT_MA - self.current) + kick;
            self.second += 1;
        }
        self.current
    }
}

/// Standard normal sample (Box–Muller), to avoid another dependency for one distribution.
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let mut params = StdRng::seed_from_u64(seed);
        let spot = (
            params.random_range(-2.0..2.0),
            params.random_range(-2.0..2.0),
        );
        let state = State {
            positions: Motor::ALL.map(|m| m.spec().home),
            busy: [false; 3],
            shutter_open: true,
            beam: BeamWalk {
                rng: StdRng::seed_from_u64(params.random()),
                second: 0,
                current: NOMINAL_CURRENT_MA,
            },
            noise: StdRng::seed_from_u64(params.random()),
            spot,
            last_counts: 0,
        };
        Sim {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No invariant spans a panic here (every write is one assignment), so poison is harmless.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn position(&self, motor: Motor) -> f64 {
        self.lock().positions[motor as usize]
    }

    pub fn is_busy(&self, motor: Motor) -> bool {
        self.lock().busy[motor as usize]
    }

    pub fn shutter_open(&self) -> bool {
        self.lock().shutter_open
    }

    pub fn set_shutter(&self, open: bool) {
        self.lock().shutter_open = open;
    }

    /// Where the spot is (seeded): the detector peaks with the sample there.
    pub fn beam_spot(&self) -> (f64, f64) {
        self.lock().spot
    }

    /// The only way to get the right to move `motor`; released when the guard is dropped.
    pub fn reserve(&self, motor: Motor) -> Result<MotorGuard, MotorBusy> {
        let mut s = self.lock();
        if s.busy[motor as usize] {
            return Err(MotorBusy(motor));
        }
        s.busy[motor as usize] = true;
        Ok(MotorGuard {
            state: self.state.clone(),
            motor,
        })
    }

    /// The drift of the ring current at `elapsed` since start, without read noise.
    pub fn beam_current_at(&self, elapsed: Duration) -> f64 {
        self.lock().beam.at(elapsed.as_secs())
    }

    /// A reading of the ring current now, in mA (drift plus read noise).
    pub fn beam_current(&self) -> f64 {
        let second = self.now_second();
        let mut s = self.lock();
        let drift = s.beam.at(second);
        drift + gaussian(&mut s.noise) * CURRENT_READ_NOISE_MA
    }

    /// Counts over `dwell` ending at `elapsed` since start, at the current positions.
    pub fn read_detector_at(&self, elapsed: Duration, dwell: Duration) -> u64 {
        let mut s = self.lock();
        let current = s.beam.at(elapsed.as_secs());
        let dwell_s = dwell.as_secs_f64();
        let mut mean = DARK_RATE * dwell_s;
        if s.shutter_open {
            let [x, y, energy] = s.positions;
            let (dx, dy) = (x - s.spot.0, y - s.spot.1);
            let spot = (-(dx * dx + dy * dy) / (2.0 * SPOT_SIGMA_MM * SPOT_SIGMA_MM)).exp();
            let edge = 0.5 + 0.5 / (1.0 + (-(energy - EDGE_EV) / EDGE_WIDTH_EV).exp());
            mean += PEAK_RATE * (current / NOMINAL_CURRENT_MA) * spot * edge * dwell_s;
        }
        // Poisson-like noise: a normal with sd sqrt(mean) is close enough at these rates.
        let counts = (mean + gaussian(&mut s.noise) * mean.sqrt())
            .round()
            .max(0.0) as u64;
        s.last_counts = counts;
        counts
    }

    /// Counts for `dwell` (taking that long); None when `cancel` resolves first.
    pub async fn count(&self, dwell: Duration, cancel: impl Future<Output = ()>) -> Option<u64> {
        tokio::select! {
            biased;
            _ = cancel => None,
            _ = tokio::time::sleep(dwell) => Some(self.read_detector_at(self.started.elapsed(), dwell)),
        }
    }

    /// A PV's value, or None for a name not in [`PV_NAMES`].
    pub fn read_pv(&self, name: &str) -> Option<Value> {
        Some(match name {
            "ring:current" => json!(self.beam_current()),
            "ring:energy" => json!(RING_ENERGY_GEV),
            "shutter:open" => json!(self.shutter_open()),
            "sample:x" => json!(self.position(Motor::SampleX)),
            "sample:y" => json!(self.position(Motor::SampleY)),
            "mono:energy" => json!(self.position(Motor::MonoEnergy)),
            "detector:last_counts" => json!(self.lock().last_counts),
            _ => return None,
        })
    }

    /// Beam current, shutter and every motor, as the `status` capability returns them.
    pub fn status(&self) -> Value {
        let current = self.beam_current();
        let s = self.lock();
        let motors: serde_json::Map<String, Value> = Motor::ALL
            .iter()
            .map(|&m| {
                let spec = m.spec();
                let v = json!({
                    "position": s.positions[m as usize],
                    "units": spec.units,
                    "low": spec.low,
                    "high": spec.high,
                    "speed": spec.speed,
                    "moving": s.busy[m as usize],
                });
                (m.name().to_string(), v)
            })
            .collect();
        json!({
            "ring_current_ma": current,
            "ring_energy_gev": RING_ENERGY_GEV,
            "shutter_open": s.shutter_open,
            "motors": motors,
        })
    }

    /// Moves the guarded motor to `target` at its speed, taking |distance|/speed; calls
    /// `on_tick(position)` every [`TICK`] while moving. When `cancel` resolves first the motor
    /// stops where it is. The caller checks limits first (a target outside them is clamped).
    pub async fn move_to(
        &self,
        guard: &MotorGuard,
        target: f64,
        cancel: impl Future<Output = ()>,
        mut on_tick: impl FnMut(f64),
    ) -> MoveEnd {
        let motor = guard.motor;
        let spec = motor.spec();
        let target = target.clamp(spec.low, spec.high);
        let start = self.position(motor);
        let travel = Duration::from_secs_f64((target - start).abs() / spec.speed);
        let t0 = Instant::now();
        let position_at = |now: Instant| {
            let done = (now - t0).as_secs_f64() * spec.speed;
            start + (target - start).signum() * done.min((target - start).abs())
        };
        let set = |p: f64| self.lock().positions[motor as usize] = p;
        tokio::pin!(cancel);
        let mut next_tick = t0 + TICK;
        loop {
            let wake = next_tick.min(t0 + travel);
            tokio::select! {
                biased;
                _ = &mut cancel => {
                    let p = position_at(Instant::now());
                    set(p);
                    return MoveEnd::Stopped(p);
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= t0 + travel {
                        set(target);
                        return MoveEnd::Arrived(target);
                    }
                    let p = position_at(now);
                    set(p);
                    on_tick(p);
                    // From now, not from the last tick: a late wake-up must not cause a burst.
                    next_tick = now + TICK;
                }
            }
        }
    }
}

/// The right to move one motor; dropping it frees the motor.
pub struct MotorGuard {
    state: Arc<Mutex<State>>,
    motor: Motor,
}

impl MotorGuard {
    pub fn motor(&self) -> Motor {
        self.motor
    }
}

impl Drop for MotorGuard {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.busy[self.motor as usize] = false;
    }
}
