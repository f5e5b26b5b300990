//! Unit tests of the simulated beamline alone: determinism per seed, limits, reservation, and
//! motion in real (tokio) time. Every wait is bounded; moves are kept well under a second.

use std::time::Duration;

use tokio::time::{timeout, Instant};

use crate::demo::sim::{Motor, MotorBusy, MoveEnd, Sim, PV_NAMES, TICK};

const BOUND: Duration = Duration::from_secs(5);

#[test]
fn beam_current_is_a_function_of_seed_and_time() {
    let (a, b, other) = (Sim::new(7), Sim::new(7), Sim::new(8));
    let at = |sim: &Sim| -> Vec<f64> {
        (0..600)
            .step_by(7)
            .map(|s| sim.beam_current_at(Duration::from_secs(s)))
            .collect()
    };
    let (ca, cb, co) = (at(&a), at(&b), at(&other));
    assert_eq!(ca, cb);
    assert_ne!(ca, co);
    // It drifts, but top-up keeps it near nominal.
    assert!(ca.windows(2).any(|w| w[0] != w[1]));
    assert!(ca.iter().all(|c| (495.0..505.0).contains(c)), "{ca:?}");
}

#[test]
fn detector_reads_repeat_for_a_seed() {
    let reads = |seed| {
        let sim = Sim::new(seed);
        (0..20)
            .map(|i| sim.read_detector_at(Duration::from_secs(i), Duration::from_millis(100)))
            .collect::<Vec<_>>()
    };
    assert_eq!(reads(3), reads(3));
    assert_ne!(reads(3), reads(4));
}

#[test]
fn detector_depends_on_dwell_position_and_shutter() {
    let sim = Sim::new(11);
    let t = Duration::from_secs(1);
    let short = sim.read_detector_at(t, Duration::from_millis(100));
    let long = sim.read_detector_at(t, Duration::from_secs(1));
    assert!(long > 5 * short, "1 s gave {long}, 100 ms gave {short}");
    assert_eq!(
        sim.read_pv("detector:last_counts"),
        Some(serde_json::json!(long))
    );

    // Far from the (seeded) spot, the sample sees little beam.
    let on_spot = long;
    let far = {
        let guard = sim.reserve(Motor::SampleX).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // timeout() needs the runtime when it is built, not only when polled.
        let moved = sim.move_to(&guard, 10.0, std::future::pending(), |_| {});
        let end = rt.block_on(async { timeout(BOUND, moved).await });
        assert_eq!(end.unwrap(), MoveEnd::Arrived(10.0));
        sim.read_detector_at(t, Duration::from_secs(1))
    };
    let (sx, _) = sim.beam_spot();
    assert!(sx.abs() < 2.0);
    assert!(far * 10 < on_spot, "on the spot {on_spot}, at x=10 {far}");

    sim.set_shutter(false);
    let dark = sim.read_detector_at(t, Duration::from_secs(1));
    assert!(dark < 30, "shutter closed but {dark} counts");
}

#[test]
fn limits_are_checked_and_named() {
    assert!(Motor::SampleX.check_target(-10.0).is_ok());
    assert!(Motor::SampleX.check_target(10.0).is_ok());
    assert!(Motor::MonoEnergy.check_target(8979.0).is_ok());
    let err = Motor::SampleX.check_target(12.5).unwrap_err();
    for part in ["sample_x", "12.5", "-10", "10", "mm"] {
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
    assert!(Motor::MonoEnergy
        .check_target(1999.0)
        .unwrap_err()
        .contains("eV"));
    assert!(Motor::SampleY.check_target(f64::NAN).is_err());
    assert!(Motor::SampleY.check_target(f64::INFINITY).is_err());
}

#[test]
fn motors_parse_by_name_and_start_home() {
    let sim = Sim::new(1);
    for m in Motor::ALL {
        assert_eq!(Motor::parse(m.name()), Some(m));
        assert_eq!(sim.position(m), m.spec().home);
        assert!(!sim.is_busy(m));
    }
    assert_eq!(Motor::parse("sample_z"), None);
}

#[test]
fn every_pv_reads_and_unknown_ones_do_not() {
    let sim = Sim::new(1);
    for name in PV_NAMES {
        assert!(sim.read_pv(name).is_some(), "{name}");
    }
    assert_eq!(sim.read_pv("sample:x"), Some(serde_json::json!(0.0)));
    assert_eq!(sim.read_pv("shutter:open"), Some(serde_json::json!(true)));
    assert_eq!(sim.read_pv("ring:nope"), None);
    let status = sim.status();
    assert_eq!(status["motors"]["mono_energy"]["position"], 8000.0);
    assert_eq!(status["shutter_open"], true);
    assert!(status["ring_current_ma"].as_f64().unwrap() > 490.0);
}

#[test]
fn a_motor_has_one_mover_at_a_time() {
    let sim = Sim::new(1);
    let guard = sim.reserve(Motor::SampleX).unwrap();
    assert!(sim.is_busy(Motor::SampleX));
    assert_eq!(
        sim.reserve(Motor::SampleX).err(),
        Some(MotorBusy(Motor::SampleX))
    );
    assert!(sim.reserve(Motor::SampleY).is_ok());
    drop(guard);
    assert!(!sim.is_busy(Motor::SampleX));
    assert!(sim.reserve(Motor::SampleX).is_ok());
}

#[tokio::test]
async fn a_move_takes_distance_over_speed_and_ticks() {
    let sim = Sim::new(1);
    let guard = sim.reserve(Motor::SampleX).unwrap();
    let mut ticks = Vec::new();
    let t0 = Instant::now();
    // 2 mm at 5 mm/s: 400 ms.
    let fut = sim.move_to(&guard, 2.0, std::future::pending(), |p| {
        ticks.push((t0.elapsed(), p))
    });
    let end = timeout(BOUND, fut).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(end, MoveEnd::Arrived(2.0));
    assert_eq!(sim.position(Motor::SampleX), 2.0);
    assert!(took >= Duration::from_millis(395), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(ticks.len() >= 5, "{ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[0].1 < w[1].1),
        "not monotonic: {ticks:?}"
    );
    assert!(ticks.iter().all(|&(_, p)| 0.0 < p && p < 2.0));
    // No report gap longer than a few ticks (a loaded machine may wake late).
    assert!(
        ticks.windows(2).all(|w| w[1].0 - w[0].0 < 4 * TICK),
        "{ticks:?}"
    );

    // Back down, in the negative direction.
    let end = timeout(
        BOUND,
        sim.move_to(&guard, -0.5, std::future::pending(), |_| {}),
    )
    .await;
    assert_eq!(end.unwrap(), MoveEnd::Arrived(-0.5));
}

#[tokio::test]
async fn a_zero_move_arrives_at_once() {
    let sim = Sim::new(1);
    let guard = sim.reserve(Motor::MonoEnergy).unwrap();
    let end = timeout(
        Duration::from_millis(100),
        sim.move_to(&guard, 8000.0, std::future::pending(), |_| {}),
    );
    assert_eq!(end.await.unwrap(), MoveEnd::Arrived(8000.0));
}

#[tokio::test]
async fn a_cancelled_move_stops_where_it_is() {
    let sim = Sim::new(1);
    let guard = sim.reserve(Motor::SampleY).unwrap();
    // 5 mm at 5 mm/s would take 1 s; the cancel comes after about 200 ms.
    let cancel = tokio::time::sleep(Duration::from_millis(200));
    let end = timeout(BOUND, sim.move_to(&guard, 5.0, cancel, |_| {}))
        .await
        .unwrap();
    let MoveEnd::Stopped(p) = end else {
        panic!("not stopped: {end:?}")
    };
    assert!(0.5 < p && p < 4.0, "stopped at {p}");
    assert_eq!(sim.position(Motor::SampleY), p);
}

#[tokio::test]
async fn counting_takes_the_dwell_and_can_be_cancelled() {
    let sim = Sim::new(1);
    let t0 = Instant::now();
    let counts = timeout(
        BOUND,
        sim.count(Duration::from_millis(100), std::future::pending()),
    )
    .await;
    assert!(counts.unwrap().unwrap() > 0);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let cancelled = timeout(
        BOUND,
        sim.count(Duration::from_secs(60), std::future::ready(())),
    )
    .await;
    assert_eq!(cancelled.unwrap(), None);
}
