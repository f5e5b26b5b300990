//! The decisions through an `AgentService` given a control state the test publishes:
//! refusals, the HALTED cancel of running actuating tasks, reads going on, Cancel under a halt
//! and under a lock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tonic::{Code, Request, Status};

use super::{halt, halted, locked_by, view, HERE, OTHER};
use crate::capabilities::json_to_struct;
use crate::control::{Actuating, Control, Locks};
use crate::identity::Caller;
use crate::tasks::{codes, TaskTable, TaskTableConfig};
use crate::{Actuating as ActuatingEffect, Agent, AgentService, Instance, NoParams, ReadOnly};
use crate::{TaskHandle, TaskResult};
use beamline_consul::control::ControlView;
use beamline_contract::beamline::BeamlineId;
use beamline_contract::control::ControlState;
use beamline_contract::proto::beamline_agent_server::BeamlineAgent;
use beamline_contract::proto::{CancelRequest, ExecuteRequest, Task, TaskState};

struct Fixture {
    service: AgentService,
    publish: watch::Sender<Arc<ControlView>>,
    control: Control,
}

/// An agent of [`HERE`] with `status` (read-only, at once), `watch` (read-only, until
/// cancelled) and `move` (actuating, until cancelled), enforcing the view the test publishes.
fn fixture(first: ControlView, locks: Locks) -> Fixture {
    let instance = Instance::new(BeamlineId::parse(HERE).unwrap(), "1.0.0");
    let tasks = TaskTable::new(instance.instance_id.clone(), TaskTableConfig::default());
    let (publish, rx) = watch::channel(Arc::new(first));
    let control = Control::new(rx, HERE, locks);
    let until_cancelled = |_: NoParams, task: TaskHandle| async move {
        task.cancelled().await;
        task.cancelled_done();
    };
    let service = Agent::new("1.0.0")
        .capability(
            "status",
            "Status",
            ReadOnly,
            |_: NoParams, task: TaskHandle| async move {
                task.complete(TaskResult::from(json!({"ok": true})))
            },
        )
        .capability("watch", "Watches", ReadOnly, until_cancelled)
        .capability("move", "Moves", ActuatingEffect, until_cancelled)
        .service(&instance, tasks)
        .unwrap()
        .with_control(control.clone());
    Fixture {
        service,
        publish,
        control,
    }
}

fn request(capability: &str, caller: Option<&str>) -> Request<ExecuteRequest> {
    let mut request = Request::new(ExecuteRequest {
        capability: capability.into(),
        params: Some(json_to_struct(&json!({}))),
        idempotency_key: String::new(),
    });
    if let Some(name) = caller {
        request.extensions_mut().insert(Caller {
            name: name.into(),
            role: "operator".into(),
        });
    }
    request
}

/// Starts `capability`: its task as first reported, or the refusal.
async fn start(f: &Fixture, capability: &str, caller: Option<&str>) -> Result<Task, Status> {
    let mut events = f
        .service
        .execute(request(capability, caller))
        .await?
        .into_inner();
    let first = events.next().await.expect("a first event")?;
    Ok(first.task.expect("a task"))
}

async fn cancel(f: &Fixture, task_id: &str, caller: Option<&str>) -> Result<Task, Status> {
    let mut request = Request::new(CancelRequest {
        task_id: task_id.into(),
    });
    if let Some(name) = caller {
        request.extensions_mut().insert(Caller {
            name: name.into(),
            role: "operator".into(),
        });
    }
    f.service.cancel(request).await.map(|r| r.into_inner())
}

/// The task once terminal (bounded).
async fn ended(f: &Fixture, task_id: &str) -> Task {
    let mut events = f.service.tasks().subscribe(task_id).unwrap();
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            last = event.unwrap().task;
        }
    })
    .await
    .expect("the task ends within 5 s");
    last.expect("a terminal event")
}

fn is_running(f: &Fixture, task_id: &str) -> bool {
    !crate::tasks::is_terminal(f.service.tasks().get(task_id).unwrap().state)
}

#[tokio::test]
async fn a_halted_agent_refuses_actuating_execute_and_serves_reads() {
    let f = fixture(halted(HERE), Locks::AtGateway);
    let refused = start(&f, "move", None).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("sample on fire"), "{refused:?}");
    assert!(
        refused
            .metadata()
            .get(beamline_contract::wire::NOT_STARTED_KEY)
            .is_none(),
        "every instance refuses alike: not to be sent elsewhere"
    );
    let status = start(&f, "status", None).await.expect("a read is served");
    assert_eq!(
        ended(&f, &status.task_id).await.state,
        TaskState::Completed as i32
    );

    // Resumed: actuating work starts again.
    f.publish
        .send_replace(Arc::new(view(ControlState::default())));
    start(&f, "move", None).await.expect("served once resumed");
}

#[tokio::test]
async fn a_halt_cancels_running_actuating_tasks_and_leaves_reads_running() {
    let f = fixture(view(ControlState::default()), Locks::AtGateway);
    let moving = start(&f, "move", None).await.unwrap();
    let watching = start(&f, "watch", None).await.unwrap();
    // Another beamline's halt is not this one's.
    f.publish.send_replace(Arc::new(halted(OTHER)));
    tokio::task::yield_now().await;
    assert!(is_running(&f, &moving.task_id));

    f.publish.send_replace(Arc::new(halted(HERE)));
    let moved = ended(&f, &moving.task_id).await;
    assert_eq!(moved.state, TaskState::Cancelled as i32, "{moved:?}");
    let error = moved.error.expect("an error says why");
    assert_eq!(error.code, codes::HALTED);
    assert!(error.message.contains("sample on fire"), "{error:?}");
    assert!(!error.retryable);
    assert!(is_running(&f, &watching.task_id), "a read goes on");
    assert_eq!(f.service.tasks().running(), 1);
}

#[tokio::test]
async fn losing_consul_refuses_new_actuating_work_but_cancels_nothing() {
    let f = fixture(view(ControlState::default()), Locks::AtGateway);
    let moving = start(&f, "move", None).await.unwrap();
    let mut lost = view(ControlState::default());
    lost.unreadable = Some("connection refused".into());
    f.publish.send_replace(Arc::new(lost));
    tokio::task::yield_now().await;
    assert!(is_running(&f, &moving.task_id));
    let refused = start(&f, "move", None).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("cannot be read"), "{refused:?}");
    start(&f, "status", None).await.expect("reads go on");
}

#[tokio::test]
async fn before_the_first_read_actuating_work_is_refused() {
    let f = fixture(ControlView::starting(), Locks::Enforced);
    let refused = start(&f, "move", Some("alice")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    start(&f, "status", None).await.expect("reads are served");
}

#[tokio::test]
async fn an_enforced_lock_refuses_others_execute_and_cancel_and_serves_its_holder() {
    let far = SystemTime::now() + Duration::from_secs(3600);
    let f = fixture(locked_by("alice", far), Locks::Enforced);
    let mine = start(&f, "move", Some("alice"))
        .await
        .expect("the holder acts");
    for caller in [Some("bob"), None] {
        let refused = start(&f, "move", caller).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{caller:?}");
        assert!(refused.message().contains("\"alice\""), "{refused:?}");
        let refused = cancel(&f, &mine.task_id, caller).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{caller:?}");
    }
    // Reads, and cancels of reads, are anyone's.
    let watching = start(&f, "watch", Some("bob")).await.unwrap();
    cancel(&f, &watching.task_id, None)
        .await
        .expect("a read's cancel");
    cancel(&f, &mine.task_id, Some("alice"))
        .await
        .expect("the holder cancels");
    assert_eq!(
        ended(&f, &mine.task_id).await.state,
        TaskState::Cancelled as i32
    );
}

#[tokio::test]
async fn under_a_halt_anyone_may_cancel() {
    let far = SystemTime::now() + Duration::from_secs(3600);
    let f = fixture(locked_by("alice", far), Locks::Enforced);
    let watching = start(&f, "watch", None).await.unwrap();
    let mut v = locked_by("alice", far);
    v.state.all = Some(halt("safety-officer", "stop"));
    f.publish.send_replace(Arc::new(v));
    cancel(&f, &watching.task_id, Some("bob"))
        .await
        .expect("cancels keep working");
}

#[tokio::test]
async fn a_task_started_as_a_halt_arrives_is_cancelled_too() {
    let f = fixture(view(ControlState::default()), Locks::AtGateway);
    let moving = start(&f, "move", None).await.unwrap();
    // The halt is in the view, but no sweep ran yet: the next actuating start sweeps.
    f.publish.send_replace(Arc::new(halted(HERE)));
    let actuating: Actuating = Arc::new(|c: &str| c == "move");
    assert_eq!(f.control.cancel_if_halted(f.service.tasks(), &actuating), 1);
    assert_eq!(
        ended(&f, &moving.task_id).await.state,
        TaskState::Cancelled as i32
    );
    assert!(f.control.is_enforced());
}

#[tokio::test]
async fn the_registration_says_halt_alone_unless_the_agent_enforces_locks() {
    for (locks, advertised) in [
        (
            Locks::AtGateway,
            beamline_contract::wire::meta::CONTROLS_HALT_ONLY,
        ),
        (
            Locks::Enforced,
            beamline_contract::wire::meta::CONTROLS_ENFORCED,
        ),
    ] {
        let f = fixture(view(ControlState::default()), locks);
        assert_eq!(f.control.advertised(), Some(advertised), "{locks:?}");
    }
    // A handle no service enforces claims nothing.
    let (_publish, rx) = watch::channel(Arc::new(view(ControlState::default())));
    assert_eq!(Control::new(rx, HERE, Locks::Enforced).advertised(), None);
}

/// An agent of [`HERE`] whose one capability, `move` (actuating), records that its work body
/// ran before doing anything else (where a real one would start a motor).
fn recording_fixture() -> (Fixture, Arc<std::sync::atomic::AtomicUsize>) {
    let instance = Instance::new(BeamlineId::parse(HERE).unwrap(), "1.0.0");
    let tasks = TaskTable::new(instance.instance_id.clone(), TaskTableConfig::default());
    let (publish, rx) = watch::channel(Arc::new(view(ControlState::default())));
    let control = Control::new(rx, HERE, Locks::AtGateway);
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = ran.clone();
    let service = Agent::new("1.0.0")
        .capability(
            "move",
            "Moves",
            ActuatingEffect,
            move |_: NoParams, task: TaskHandle| {
                let body = body.clone();
                async move {
                    body.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    task.cancelled().await;
                    task.cancelled_done();
                }
            },
        )
        .service(&instance, tasks)
        .unwrap()
        .with_control(control.clone());
    let f = Fixture {
        service,
        publish,
        control,
    };
    (f, ran)
}

/// The halt lands after the check admitted the task and before its work started (on this
/// single-threaded runtime the spawned work runs only when the test yields), and the sweep
/// ends the task first: the work body never runs. Before the fix it ran, with its task
/// already CANCELLED, and could move hardware before looking at its token.
#[tokio::test]
async fn no_actuating_work_starts_once_a_halt_landed_after_its_check() {
    let (f, ran) = recording_fixture();
    let mut events = f
        .service
        .execute(request("move", None))
        .await
        .expect("not halted at the check")
        .into_inner();
    f.publish.send_replace(Arc::new(halted(HERE)));
    let actuating: Actuating = Arc::new(|c: &str| c == "move");
    assert_eq!(f.control.cancel_if_halted(f.service.tasks(), &actuating), 1);
    let mut last = None;
    while let Some(event) = events.next().await {
        last = event.unwrap().task;
    }
    let task = last.expect("a terminal event");
    assert_eq!(task.state, TaskState::Cancelled as i32, "{task:?}");
    assert_eq!(task.error.expect("why").code, codes::HALTED);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the work of a task ended before it started never runs"
    );
    assert_eq!(f.service.tasks().running(), 0);
}

/// The halt is in the view when the table is about to insert the task (the check runs under
/// the table's lock, where the sweep looks): refused, nothing inserted, nothing run, even
/// though no sweep ran yet.
#[tokio::test]
async fn a_halt_in_the_view_at_insertion_refuses_before_any_task_exists() {
    let (f, ran) = recording_fixture();
    f.publish.send_replace(Arc::new(halted(HERE)));
    let refused = match f.service.execute(request("move", None)).await {
        Ok(_) => panic!("halted: refused"),
        Err(status) => status,
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    tokio::task::yield_now().await;
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(f.service.tasks().running(), 0);
}
