//! The demo agent's motion capabilities end to end through the `BeamlineAgent` trait: move and
//! scan with progress, busy motors, cancel, and an idempotent retry of a running move. Every wait
//! is bounded by a timeout.

use std::time::Duration;

use serde_json::json;
use tonic::{Code, Request};

use super::agent::{agent, code_of, drain, execute, next, progress, result, state, task};
use crate::demo::sim::Motor;
use crate::proto::beamline_agent_server::BeamlineAgent;
use crate::proto::{CancelRequest, GetTaskRequest, SubscribeRequest, TaskState};

#[tokio::test]
async fn move_motor_reports_progress_and_arrives() {
    let a = agent(1);
    let t0 = std::time::Instant::now();
    let stream = execute(
        &a,
        "move_motor",
        json!({"motor": "sample_x", "position": 1.5}),
        "",
    )
    .await;
    let events = drain(stream.unwrap()).await;
    // 1.5 mm at 5 mm/s.
    assert!(
        t0.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t0.elapsed()
    );
    let first = state(task(&events[0]));
    assert!(
        matches!(first, TaskState::Submitted | TaskState::Working),
        "{first:?}"
    );
    let ids: Vec<_> = events.iter().map(|e| task(e).task_id.clone()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]));
    assert!(ids[0].starts_with("beamline-5-3-1-"));
    let fractions: Vec<f64> = progress(&events).into_iter().map(|(f, _)| f).collect();
    // Ticks come every 50 ms (see sim_tests); a slow reader sees them coalesced.
    assert!(fractions.len() >= 2, "{fractions:?}");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(fractions.iter().all(|f| (0.0..=1.0).contains(f)));
    assert_eq!(
        result(&events),
        json!({"motor": "sample_x", "position": 1.5, "units": "mm"})
    );
    assert_eq!(a.sim().position(Motor::SampleX), 1.5);
    // The motor is free as soon as the terminal event is out.
    assert!(!a.sim().is_busy(Motor::SampleX));

    let id = ids[0].clone();
    let got = a
        .service()
        .get_task(Request::new(GetTaskRequest {
            task_id: id.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(state(&got.into_inner()), TaskState::Completed);
    let sub = a
        .service()
        .subscribe(Request::new(SubscribeRequest { task_id: id }))
        .await
        .unwrap();
    let events = drain(sub.into_inner()).await;
    assert_eq!(
        events.len(),
        1,
        "a finished task's subscription is its snapshot"
    );
}

#[tokio::test]
async fn a_busy_motor_is_refused_and_a_cancelled_move_stops() {
    let a = agent(1);
    // 5 mm: a second at 5 mm/s.
    let mut stream = execute(
        &a,
        "move_motor",
        json!({"motor": "sample_y", "position": 5}),
        "",
    )
    .await
    .unwrap();
    let first = next(&mut stream).await;
    let id = task(&first).task_id.clone();

    let (code, msg) = code_of(
        &a,
        "move_motor",
        json!({"motor": "sample_y", "position": -1}),
    )
    .await;
    assert_eq!(code, Code::FailedPrecondition);
    assert!(msg.contains("sample_y"), "{msg}");
    let scan = json!({"motor": "sample_y", "start": 0, "stop": 1, "steps": 2, "dwell_ms": 1});
    assert_eq!(code_of(&a, "scan", scan).await.0, Code::FailedPrecondition);
    // Other motors and read-only capabilities are not held up.
    let other = execute(
        &a,
        "move_motor",
        json!({"motor": "sample_x", "position": 0.2}),
        "",
    )
    .await;
    result(&drain(other.unwrap()).await);
    result(&drain(execute(&a, "status", json!({}), "").await.unwrap()).await);

    // Cancel once it has really moved.
    loop {
        let e = next(&mut stream).await;
        if e.progress.as_ref().and_then(|p| p.fraction).unwrap_or(0.0) > 0.0 {
            break;
        }
    }
    let cancel = |id: String| {
        a.service()
            .cancel(Request::new(CancelRequest { task_id: id }))
    };
    cancel(id.clone()).await.unwrap();
    let rest = drain(stream).await;
    assert_eq!(state(task(rest.last().unwrap())), TaskState::Cancelled);
    let y = a.sim().position(Motor::SampleY);
    assert!(0.0 < y && y < 5.0, "stopped at {y}");
    // Idempotent, and the motor is free again.
    let again = cancel(id).await.unwrap().into_inner();
    assert_eq!(state(&again), TaskState::Cancelled);
    let back = execute(
        &a,
        "move_motor",
        json!({"motor": "sample_y", "position": 0}),
        "",
    )
    .await;
    result(&drain(back.unwrap()).await);
}

#[tokio::test]
async fn a_retry_with_the_same_key_joins_the_running_move() {
    let a = agent(1);
    let p = json!({"motor": "sample_x", "position": 2});
    let mut first = execute(&a, "move_motor", p.clone(), "retry-1")
        .await
        .unwrap();
    let e = next(&mut first).await;
    let id = task(&e).task_id.clone();
    // The motor is busy, but this is the same request again: same task, no refusal.
    let second = execute(&a, "move_motor", p, "retry-1").await.unwrap();
    let events = drain(second).await;
    assert!(events.iter().all(|e| task(e).task_id == id));
    assert_eq!(result(&events)["position"], 2.0);
    // Same key, other params.
    let other = json!({"motor": "sample_x", "position": 3});
    let status = execute(&a, "move_motor", other, "retry-1")
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::AlreadyExists);
    drain(first).await;
}

#[tokio::test]
async fn scan_reads_every_point() {
    let a = agent(5);
    let p = json!({"motor": "sample_x", "start": -1, "stop": 1, "steps": 5, "dwell_ms": 20});
    let events = drain(execute(&a, "scan", p, "").await.unwrap()).await;
    let r = result(&events);
    assert_eq!(r["motor"], "sample_x");
    let points = r["points"].as_array().unwrap();
    let positions: Vec<f64> = points
        .iter()
        .map(|p| p["position"].as_f64().unwrap())
        .collect();
    assert_eq!(positions, [-1.0, -0.5, 0.0, 0.5, 1.0]);
    assert!(
        points.iter().all(|p| p["counts"].as_u64().unwrap() > 0),
        "{points:?}"
    );
    let per_point: Vec<_> = progress(&events)
        .into_iter()
        .filter(|(_, m)| m.starts_with("point "))
        .collect();
    // The table coalesces progress for a slow reader (and the last point's report is replaced
    // by the terminal event), so only order and a few reports are certain.
    assert!(per_point.len() >= 2, "{per_point:?}");
    assert!(
        per_point.windows(2).all(|w| w[0].0 < w[1].0),
        "{per_point:?}"
    );
    assert_eq!(a.sim().position(Motor::SampleX), 1.0);
    assert!(!a.sim().is_busy(Motor::SampleX));
}

#[tokio::test]
async fn a_cancelled_scan_ends_cancelled() {
    let a = agent(5);
    let p =
        json!({"motor": "mono_energy", "start": 8000, "stop": 8100, "steps": 100, "dwell_ms": 50});
    let mut stream = execute(&a, "scan", p, "").await.unwrap();
    let first = next(&mut stream).await;
    let id = task(&first).task_id.clone();
    // Wait for the first point, then cancel.
    loop {
        let e = next(&mut stream).await;
        if e.progress.is_some_and(|p| p.message.starts_with("point ")) {
            break;
        }
    }
    a.service()
        .cancel(Request::new(CancelRequest { task_id: id }))
        .await
        .unwrap();
    let rest = drain(stream).await;
    assert_eq!(state(task(rest.last().unwrap())), TaskState::Cancelled);
    assert!(!a.sim().is_busy(Motor::MonoEnergy));
}
