//! Tasks through the gateway, end to end (registry, three demo agents of 5.3.1, gateway, real
//! tonic clients): calls about a task reach the instance that owns it (20 GetTask in a row,
//! Subscribe, Cancel), an Execute repeated with the same idempotency key gets the same task,
//! a scan's progress is forwarded as it comes (not buffered to the end), and a stream honours
//! the caller's deadline; a task on an instance that is draining (deregistered, still running it)
//! can be read and cancelled through the gateway until the instance stops; a keyed Execute that
//! fails before its first event goes to another instance when idempotent, and says the task may
//! have started (with its key) when not.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::agent::*;
use crate::support::gateway::*;
use crate::support::*;
use beamline_mesh::proto::{CancelRequest, GetTaskRequest, SubscribeRequest, TaskState};
use serde_json::json;
use tonic::Code;

const BEAMLINE: &str = "5.3.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_about_a_task_reach_its_owner_among_three_instances() {
    let c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let mut client = c.gateway.client().await;

    // 10 mm at 5 mm/s: a 2 s move.
    let mut exec = client
        .execute(to(
            BEAMLINE,
            execute_request(
                "move_motor",
                json!({"motor": "sample_x", "position": 10.0}),
                "",
            ),
        ))
        .await
        .expect("Execute move_motor through the gateway")
        .into_inner();
    let first = next_event(&mut exec).await.expect("a first event");
    let task_id = task_of(&first).task_id.clone();
    let (owner, _) = task_id.rsplit_once('/').expect("task id has a '/'");
    assert!(
        c.ids.iter().any(|id| id == owner),
        "owner {owner} of {task_id} is not one of {:?}",
        c.ids
    );

    for i in 0..20 {
        let task = client
            .get_task(to(
                BEAMLINE,
                GetTaskRequest {
                    task_id: task_id.clone(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("GetTask #{i} of {task_id} through the gateway: {e:?}"))
            .into_inner();
        assert_eq!(task.task_id, task_id);
        assert!(
            !is_terminal(task_state(&task)),
            "GetTask #{i}: the move ended already? {task:?}"
        );
    }

    let mut sub = client
        .subscribe(to(
            BEAMLINE,
            SubscribeRequest {
                task_id: task_id.clone(),
            },
        ))
        .await
        .expect("Subscribe through the gateway")
        .into_inner();
    let snapshot = next_event(&mut sub).await.expect("a snapshot event");
    assert_eq!(task_of(&snapshot).task_id, task_id);
    assert!(!is_terminal(state_of(&snapshot)), "{snapshot:?}");

    let cancelled = client
        .cancel(to(
            BEAMLINE,
            CancelRequest {
                task_id: task_id.clone(),
            },
        ))
        .await
        .expect("Cancel through the gateway")
        .into_inner();
    assert_eq!(cancelled.task_id, task_id);

    let exec_events = rest_of(&mut exec, secs(5)).await;
    let last = exec_events.last().unwrap_or(&first);
    assert_eq!(
        state_of(last),
        TaskState::Cancelled,
        "Execute stream: {exec_events:?}"
    );
    let sub_events = rest_of(&mut sub, secs(5)).await;
    let last = sub_events.last().unwrap_or(&snapshot);
    assert_eq!(
        state_of(last),
        TaskState::Cancelled,
        "Subscribe stream: {sub_events:?}"
    );
    let task = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: task_id.clone(),
            },
        ))
        .await
        .expect("GetTask after Cancel")
        .into_inner();
    assert_eq!(task_state(&task), TaskState::Cancelled, "{task:?}");
}

/// Execute through the gateway; the task id of the first event, and the stream.
async fn execute_id(
    client: &mut beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient<
        tonic::transport::Channel,
    >,
    capability: &str,
    params: serde_json::Value,
    key: &str,
) -> (String, tonic::Streaming<beamline_mesh::proto::TaskEvent>) {
    let mut stream = client
        .execute(to(BEAMLINE, execute_request(capability, params, key)))
        .await
        .unwrap_or_else(|e| panic!("Execute {capability} key {key:?} through the gateway: {e:?}"))
        .into_inner();
    let first = next_event(&mut stream).await.expect("a first event");
    (task_of(&first).task_id.clone(), stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execute_repeated_with_its_idempotency_key_gets_the_same_task() {
    let c = Cluster::start(BEAMLINE, 3, |g| g).await;
    let mut client = c.gateway.client().await;
    let mut owners = std::collections::BTreeSet::new();

    // Quick tasks, repeated after they finished; several keys, so several owners.
    for k in 0..8 {
        let key = format!("read-{k}");
        let p = json!({"name": "ring:current"});
        let (a, mut sa) = execute_id(&mut client, "read_pv", p.clone(), &key).await;
        rest_of(&mut sa, secs(5)).await;
        let (b, mut sb) = execute_id(&mut client, "read_pv", p, &key).await;
        rest_of(&mut sb, secs(5)).await;
        assert_eq!(
            a, b,
            "key {key}: the same key and params must return the same task"
        );
        owners.insert(a.rsplit_once('/').unwrap().0.to_string());
    }
    assert!(
        owners.len() >= 2,
        "8 keys all went to {owners:?} (rendezvous over 3 instances should spread them)"
    );

    // A long task, repeated while it runs.
    let p = json!({"motor": "sample_y", "position": 5.0});
    let (a, _sa) = execute_id(&mut client, "move_motor", p.clone(), "move-1").await;
    let (b, _sb) = execute_id(&mut client, "move_motor", p, "move-1").await;
    assert_eq!(a, b, "a running task's key must return that task");

    // The same key with other params: the owner says ALREADY_EXISTS.
    let err = client
        .execute(to(
            BEAMLINE,
            execute_request("read_pv", json!({"name": "ring:energy"}), "read-0"),
        ))
        .await
        .expect_err("the same key with other params");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scans_progress_is_forwarded_as_it_comes() {
    let c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut client = c.gateway.client().await;
    // 5 points 1 mm apart (0.2 s moves) with 200 ms dwells: about 2 s.
    let started = Instant::now();
    let mut stream = client
        .execute(to(
            BEAMLINE,
            execute_request(
                "scan",
                json!({"motor": "sample_x", "start": 0.0, "stop": 4.0, "steps": 5, "dwell_ms": 200}),
                "",
            ),
        ))
        .await
        .expect("Execute scan through the gateway")
        .into_inner();
    let mut arrivals: Vec<(Duration, beamline_mesh::proto::TaskEvent)> = Vec::new();
    while let Some(event) = next_event(&mut stream).await {
        arrivals.push((started.elapsed(), event));
    }
    let (end_at, last) = arrivals.last().expect("events").clone();
    assert_eq!(state_of(&last), TaskState::Completed, "{last:?}");
    let progress: Vec<Duration> = arrivals
        .iter()
        .filter(|(_, e)| e.progress.is_some() && !is_terminal(state_of(e)))
        .map(|(t, _)| *t)
        .collect();
    assert!(progress.len() >= 5, "progress events: {arrivals:?}");
    let first = progress[0];
    assert!(
        end_at.saturating_sub(first) >= ms(1000),
        "the first progress event arrived at {first:?}, the terminal one at {end_at:?}: progress \
         was not forwarded as it came"
    );
    // Spread over the run, not in one burst.
    let mid = progress
        .iter()
        .filter(|t| **t < end_at.saturating_sub(ms(500)))
        .count();
    assert!(
        mid >= 3,
        "only {mid} progress events arrived 500 ms or more before the end: {progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_honours_the_callers_deadline() {
    let c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut client = c.gateway.client().await;
    // A 2 s move with a 600 ms deadline: the call must end with DEADLINE_EXCEEDED by ~1 s, not
    // run to completion.
    let started = Instant::now();
    let mut request = to(
        BEAMLINE,
        execute_request(
            "move_motor",
            json!({"motor": "sample_x", "position": -10.0}),
            "",
        ),
    );
    request.set_timeout(ms(600));
    let outcome = match client.execute(request).await {
        Err(status) => Err(status),
        Ok(response) => {
            let mut stream = response.into_inner();
            let deadline = tokio::time::Instant::now() + secs(5);
            let mut events = Vec::new();
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Ok(Ok(Some(event))) => events.push(event),
                    Ok(Ok(None)) => break Ok(events),
                    Ok(Err(status)) => break Err(status),
                    Err(_) => panic!("the stream neither ended nor failed within 5 s"),
                }
            }
        }
    };
    let took = started.elapsed();
    match outcome {
        Err(status) => {
            assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
            assert!(took < ms(1500), "DEADLINE_EXCEEDED came after {took:?}");
        }
        Ok(events) => panic!(
            "a stream with a 600 ms deadline ran for {took:?} to its end ({:?}): the caller's \
             deadline was not honoured",
            events.last().map(state_of)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_on_a_draining_instance_can_be_read_and_cancelled_through_the_gateway() {
    let mut c = Cluster::start(BEAMLINE, 1, |g| g).await;
    let mut client = c.gateway.client().await;
    // An actuating scan of at least 10 s (100 points, 100 ms each).
    let params = json!({"motor": "sample_x", "start": 0, "stop": 1, "steps": 100, "dwell_ms": 100});
    let (id, _stream) = execute_id(&mut client, "scan", params, "").await;

    // A deploy: SIGTERM, and the agent deregisters at once while its scan runs on.
    c.agents[0].sigterm();
    support::agent::wait_gone(&c.registry, &c.ids[0], secs(10)).await;

    // The gateway still reaches the task's owner: GetTask, Subscribe, then Cancel.
    let task = client
        .get_task(to(
            BEAMLINE,
            GetTaskRequest {
                task_id: id.clone(),
            },
        ))
        .await
        .expect("GetTask of a task on a draining instance")
        .into_inner();
    assert!(
        !is_terminal(task_state(&task)),
        "the scan still runs: {task:?}"
    );
    let mut events = client
        .subscribe(to(
            BEAMLINE,
            SubscribeRequest {
                task_id: id.clone(),
            },
        ))
        .await
        .expect("Subscribe to a task on a draining instance")
        .into_inner();
    next_event(&mut events).await.expect("a first event");
    client
        .cancel(to(
            BEAMLINE,
            CancelRequest {
                task_id: id.clone(),
            },
        ))
        .await
        .expect("Cancel of a task on a draining instance");
    let rest = rest_of(&mut events, secs(10)).await;
    let last = rest
        .last()
        .map(task_of)
        .expect("the stream ends on the terminal event");
    assert_eq!(task_state(last), TaskState::Cancelled, "{last:?}");

    // With its tasks ended the agent stops; then the task's instance is gone: NOT_FOUND.
    let status = c.agents[0].wait_exit(secs(10)).await;
    assert!(status.success(), "the drained agent exited with {status}");
    let err = poll_for(
        secs(5),
        "GetTask to say the instance is gone",
        async || match client
            .get_task(to(
                BEAMLINE,
                GetTaskRequest {
                    task_id: id.clone(),
                },
            ))
            .await
        {
            Err(e) if e.code() == Code::NotFound => Some(e),
            _ => None,
        },
    )
    .await;
    assert!(err.message().contains("gone"), "{err:?}");
}

/// A key whose keyed Execute of `status` the gateway sends to instance `owner` (found by
/// trying keys: each try runs a quick `status` task).
async fn key_owned_by(
    client: &mut beamline_mesh::proto::beamline_agent_client::BeamlineAgentClient<
        tonic::transport::Channel,
    >,
    owner: &str,
    prefix: &str,
) -> String {
    for n in 0..64 {
        let key = format!("{prefix}-{n}");
        let (id, _) = execute_id(client, "status", json!({}), &key).await;
        if id.starts_with(&format!("{owner}/")) {
            return key;
        }
    }
    panic!("no key of 64 went to {owner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_execute_fails_over_if_idempotent_and_says_it_may_have_started_if_not() {
    let c = Cluster::start(BEAMLINE, 2, |g| g).await;
    let mut client = c.gateway.client().await;
    let read_key = key_owned_by(&mut client, &c.ids[0], "read").await;
    let move_key = key_owned_by(&mut client, &c.ids[0], "move").await;

    // The instance both keys go to freezes: the calls reach it, then nothing answers.
    c.agents[0].freeze();
    let started = Instant::now();
    let mut reader = client.clone();
    let (read, moved) = tokio::join!(
        execute_id(&mut reader, "status", json!({}), &read_key),
        async {
            client
                .execute(to(
                    BEAMLINE,
                    execute_request(
                        "move_motor",
                        json!({"motor": "sample_x", "position": 1}),
                        &move_key,
                    ),
                ))
                .await
        }
    );
    let took = started.elapsed();
    c.agents[0].thaw();

    // `status` is read-only, so idempotent by default: sent again to the other instance.
    assert!(
        read.0.starts_with(&format!("{}/", c.ids[1])),
        "the idempotent keyed Execute ran on {} (want {})",
        read.0,
        c.ids[1]
    );
    assert!(took < secs(5), "took {took:?}");
    // `move_motor` actuates: never sent twice; the caller is told the task may run, and its key.
    let err = moved.expect_err("an actuating keyed Execute to a frozen instance");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("may have started") && err.message().contains(&move_key),
        "{err:?}"
    );
}
