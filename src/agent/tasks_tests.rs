use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;

const DEADLINE: Duration = Duration::from_secs(5);

/// What a test tells a driven task's work to do next.
enum Cmd {
    Working,
    Progress(Option<f64>, &'static str),
    Complete(Struct),
    Fail,
    Reject,
    /// Waits for cancellation, then reports CANCELLED.
    CancelledDone,
    /// Returns without an outcome.
    Return,
    Panic,
}

fn params(n: f64) -> Struct {
    let mut s = Struct::default();
    s.fields.insert(
        "n".into(),
        Value {
            kind: Some(Kind::NumberValue(n)),
        },
    );
    s
}

fn table() -> TaskTable {
    TaskTable::new("inst-1", TaskTableConfig::default())
}

/// Starts a task whose work obeys the commands sent on the returned channel.
fn driven(
    table: &TaskTable,
    key: &str,
    p: Struct,
) -> Result<(TaskEventStream, mpsc::UnboundedSender<Cmd>), Status> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = table.execute("cap", p, key, move |h: TaskHandle| async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Working => h.working(),
                Cmd::Progress(f, m) => h.progress(f, m),
                Cmd::Complete(r) => return h.complete(r),
                Cmd::Fail => return h.fail(codes::HARDWARE_FAULT, "motor stalled", true),
                Cmd::Reject => return h.reject(codes::LIMIT, "out of range"),
                Cmd::CancelledDone => {
                    h.cancelled().await;
                    return h.cancelled_done();
                }
                Cmd::Return => return,
                Cmd::Panic => panic!("work panicked on purpose"),
            }
        }
    })?;
    Ok((stream, tx))
}

async fn next(stream: &mut TaskEventStream) -> Option<TaskEvent> {
    timeout(DEADLINE, stream.next())
        .await
        .expect("stream stalled")
        .map(|r| r.expect("stream error"))
}

fn state(ev: &TaskEvent) -> TaskState {
    TaskState::try_from(ev.task.as_ref().unwrap().state).unwrap()
}

/// Reads the stream to its end and returns the last event.
async fn last(stream: &mut TaskEventStream) -> TaskEvent {
    let mut last = None;
    while let Some(ev) = next(stream).await {
        last = Some(ev);
    }
    last.expect("stream had no events")
}

#[tokio::test]
async fn execute_streams_submitted_progress_then_terminal() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    let first = next(&mut s).await.unwrap();
    let task = first.task.clone().unwrap();
    assert_eq!(state(&first), TaskState::Submitted);
    assert!(task.task_id.starts_with("inst-1/") && task.task_id.len() > "inst-1/".len());
    assert_eq!(task.capability, "cap");
    assert!(task.created_at.is_some() && task.updated_at.is_some());
    assert_eq!(t.running(), 1);

    tx.send(Cmd::Progress(None, "homing")).unwrap();
    let ev = next(&mut s).await.unwrap();
    assert_eq!(state(&ev), TaskState::Working);
    let p = ev.progress.unwrap();
    assert_eq!((p.fraction, p.message.as_str()), (None, "homing"));

    tx.send(Cmd::Progress(Some(0.5), "half")).unwrap();
    let ev = next(&mut s).await.unwrap();
    assert_eq!(ev.progress.unwrap().fraction, Some(0.5));

    tx.send(Cmd::Complete(params(7.0))).unwrap();
    let ev = next(&mut s).await.unwrap();
    assert_eq!(state(&ev), TaskState::Completed);
    assert_eq!(ev.task.as_ref().unwrap().result, Some(params(7.0)));
    assert!(ev.progress.is_none());
    assert!(
        next(&mut s).await.is_none(),
        "stream ends after the terminal event"
    );
    assert_eq!(
        t.get(&task.task_id).unwrap().state,
        TaskState::Completed as i32
    );
    assert_eq!(t.running(), 0);
}

#[tokio::test]
async fn first_event_is_submitted_even_if_work_finishes_at_once() {
    let t = table();
    let mut s = t
        .execute("cap", Struct::default(), "", |h| async move {
            h.complete(Struct::default())
        })
        .unwrap();
    assert_eq!(state(&next(&mut s).await.unwrap()), TaskState::Submitted);
    assert_eq!(state(&last(&mut s).await), TaskState::Completed);
}

#[tokio::test]
async fn working_and_progress_fraction_sanitised() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    next(&mut s).await.unwrap();
    tx.send(Cmd::Working).unwrap();
    let ev = next(&mut s).await.unwrap();
    assert_eq!(state(&ev), TaskState::Working);
    assert!(ev.progress.is_none());
    tx.send(Cmd::Progress(Some(f64::NAN), "nan")).unwrap();
    assert_eq!(next(&mut s).await.unwrap().progress.unwrap().fraction, None);
    tx.send(Cmd::Progress(Some(3.0), "over")).unwrap();
    assert_eq!(
        next(&mut s).await.unwrap().progress.unwrap().fraction,
        Some(1.0)
    );
    tx.send(Cmd::Fail).unwrap();
    let ev = last(&mut s).await;
    assert_eq!(state(&ev), TaskState::Failed);
    let err = ev.task.unwrap().error.unwrap();
    assert_eq!(
        (err.code.as_str(), err.retryable),
        (codes::HARDWARE_FAULT, true)
    );
}

#[tokio::test]
async fn task_ids_are_unique() {
    let t = table();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        let mut s = t
            .execute("cap", Struct::default(), "", |h| async move {
                h.complete(Struct::default())
            })
            .unwrap();
        let id = next(&mut s).await.unwrap().task.unwrap().task_id;
        assert!(ids.insert(id));
    }
}

#[tokio::test]
async fn dropping_the_stream_does_not_cancel_the_task() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    drop(s);
    tx.send(Cmd::Progress(Some(0.1), "still going")).unwrap();
    let mut sub = t.subscribe(&id).unwrap();
    let snap = next(&mut sub).await.unwrap();
    assert!(!is_terminal(snap.task.unwrap().state));
    tx.send(Cmd::Complete(params(2.0))).unwrap();
    let ev = last(&mut sub).await;
    assert_eq!(state(&ev), TaskState::Completed);
    assert_eq!(t.get(&id).unwrap().result, Some(params(2.0)));
}

#[tokio::test]
async fn slow_subscriber_sees_coalesced_progress_and_the_terminal_event() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    next(&mut s).await.unwrap();
    for _ in 0..1000 {
        tx.send(Cmd::Progress(Some(0.5), "tick")).unwrap();
    }
    tx.send(Cmd::Complete(Struct::default())).unwrap();
    // Wait for the end without reading `s`, then read everything it kept.
    timeout(DEADLINE, t.idle()).await.unwrap();
    let mut events = Vec::new();
    while let Some(ev) = next(&mut s).await {
        events.push(ev);
    }
    assert_eq!(events.len(), 1, "progress coalesced into the latest value");
    assert_eq!(state(&events[0]), TaskState::Completed);
}

#[tokio::test]
async fn subscribe_on_terminal_task_yields_one_event() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    tx.send(Cmd::Reject).unwrap();
    assert_eq!(state(&last(&mut s).await), TaskState::Rejected);
    let mut sub = t.subscribe(&id).unwrap();
    assert_eq!(state(&next(&mut sub).await.unwrap()), TaskState::Rejected);
    assert!(next(&mut sub).await.is_none());
}

#[tokio::test]
async fn idempotency_key_returns_existing_task() {
    let t = table();
    let spawned = Arc::new(AtomicUsize::new(0));
    let start = |key: &str, p: Struct| {
        let spawned = spawned.clone();
        t.execute("cap", p, key, move |h| async move {
            spawned.fetch_add(1, Ordering::SeqCst);
            h.cancelled().await;
            h.cancelled_done();
        })
    };
    let mut a = start("k1", params(1.0)).unwrap();
    let id = next(&mut a).await.unwrap().task.unwrap().task_id;
    let mut b = start("k1", params(1.0)).unwrap();
    assert_eq!(next(&mut b).await.unwrap().task.unwrap().task_id, id);

    let err = start("k1", params(2.0)).err().unwrap();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains("k1"), "{}", err.message());

    let mut other = start("", params(1.0)).unwrap();
    assert_ne!(next(&mut other).await.unwrap().task.unwrap().task_id, id);

    t.cancel(&id).unwrap();
    assert_eq!(state(&last(&mut b).await), TaskState::Cancelled);
    // Still the same task once it ended: a single terminal event.
    let mut c = start("k1", params(1.0)).unwrap();
    let ev = next(&mut c).await.unwrap();
    assert_eq!(
        (ev.task.as_ref().unwrap().task_id.as_str(), state(&ev)),
        (id.as_str(), TaskState::Cancelled)
    );
    assert!(next(&mut c).await.is_none());
    t.fail_running("X", "stop", false);
    assert_eq!(
        spawned.load(Ordering::SeqCst),
        2,
        "no work spawned for repeats"
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_named() {
    let t = table();
    for err in [
        t.get("inst-1/missing").unwrap_err(),
        t.subscribe("inst-1/missing").err().unwrap(),
        t.cancel("inst-1/missing").unwrap_err(),
    ] {
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(
            err.message().contains("inst-1/missing"),
            "{}",
            err.message()
        );
    }
}

#[tokio::test]
async fn cancel_is_idempotent_and_ends_cancelled_when_the_work_stops() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    tx.send(Cmd::CancelledDone).unwrap();
    let first = t.cancel(&id).unwrap();
    assert!(!is_terminal(first.state), "cancel returns the current task");
    assert!(t.cancel(&id).is_ok());
    let ev = last(&mut s).await;
    assert_eq!(state(&ev), TaskState::Cancelled);
    let ended = t.get(&id).unwrap();
    let again = t.cancel(&id).unwrap();
    assert_eq!(again, ended, "a terminal task is returned unchanged");
}

#[tokio::test]
async fn work_that_ignores_cancel_keeps_running() {
    let t = table();
    let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    t.cancel(&id).unwrap();
    tx.send(Cmd::Progress(Some(0.9), "ignoring")).unwrap();
    assert_eq!(state(&next(&mut s).await.unwrap()), TaskState::Working);
    tx.send(Cmd::Complete(Struct::default())).unwrap();
    assert_eq!(state(&last(&mut s).await), TaskState::Completed);
}

#[tokio::test]
async fn handle_dropped_without_outcome_fails_internal() {
    let t = table();
    for cmd in [Cmd::Return, Cmd::Panic] {
        let (mut s, tx) = driven(&t, "", params(1.0)).unwrap();
        tx.send(cmd).unwrap();
        let ev = last(&mut s).await;
        assert_eq!(state(&ev), TaskState::Failed);
        assert_eq!(ev.task.unwrap().error.unwrap().code, codes::INTERNAL);
    }
    assert_eq!(t.running(), 0);
}

#[tokio::test]
async fn idle_waits_for_running_tasks() {
    let t = table();
    timeout(DEADLINE, t.idle())
        .await
        .expect("idle with no tasks");
    let (_s1, tx1) = driven(&t, "", params(1.0)).unwrap();
    let (_s2, tx2) = driven(&t, "", params(2.0)).unwrap();
    assert_eq!(t.running(), 2);
    let idle = t.idle();
    tokio::pin!(idle);
    assert!(futures::poll!(idle.as_mut()).is_pending());
    tx1.send(Cmd::Complete(Struct::default())).unwrap();
    tx2.send(Cmd::Fail).unwrap();
    timeout(DEADLINE, idle)
        .await
        .expect("idle after both ended");
    assert_eq!(t.running(), 0);
}

#[tokio::test]
async fn fail_running_ends_running_tasks_and_later_outcomes_are_ignored() {
    let t = table();
    let (mut done, done_tx) = driven(&t, "", params(1.0)).unwrap();
    done_tx.send(Cmd::Complete(Struct::default())).unwrap();
    let done_id = last(&mut done).await.task.unwrap().task_id;

    let (tok_tx, tok_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let mut s = t
        .execute("cap", Struct::default(), "", move |h| async move {
            let _ = tok_tx.send(h.cancellation_token());
            let _ = go_rx.await;
            h.complete(Struct::default());
        })
        .unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    let token = timeout(DEADLINE, tok_rx).await.unwrap().unwrap();

    t.fail_running(codes::DRAIN_TIMEOUT, "drain deadline passed", true);
    assert!(token.is_cancelled());
    assert_eq!(t.running(), 0);
    let ev = last(&mut s).await;
    let err = ev.task.unwrap().error.unwrap();
    assert_eq!(
        (err.code.as_str(), err.retryable),
        (codes::DRAIN_TIMEOUT, true)
    );
    go_tx.send(()).unwrap();
    timeout(DEADLINE, t.idle()).await.unwrap();
    assert_eq!(t.get(&id).unwrap().state, TaskState::Failed as i32);
    assert_eq!(t.get(&done_id).unwrap().state, TaskState::Completed as i32);
}

#[tokio::test]
async fn finished_tasks_expire_but_running_ones_stay() {
    let config = TaskTableConfig {
        retention: Duration::ZERO,
        max_finished: 100,
    };
    let t = TaskTable::new("inst-1", config);
    let (mut run, run_tx) = driven(&t, "", params(1.0)).unwrap();
    let run_id = next(&mut run).await.unwrap().task.unwrap().task_id;
    let (mut s, tx) = driven(&t, "key", params(1.0)).unwrap();
    let id = next(&mut s).await.unwrap().task.unwrap().task_id;
    tx.send(Cmd::Complete(Struct::default())).unwrap();
    // The stream still gets its terminal event after the task left the table.
    assert_eq!(state(&last(&mut s).await), TaskState::Completed);
    assert_eq!(t.get(&id).unwrap_err().code(), tonic::Code::NotFound);
    assert!(t.get(&run_id).is_ok(), "running tasks are never evicted");
    // The key left with its task, so it starts a new one.
    let (mut again, again_tx) = driven(&t, "key", params(9.0)).unwrap();
    assert_ne!(next(&mut again).await.unwrap().task.unwrap().task_id, id);
    run_tx.send(Cmd::Fail).unwrap();
    again_tx.send(Cmd::Fail).unwrap();
}

#[tokio::test]
async fn at_most_max_finished_are_kept_oldest_first() {
    let config = TaskTableConfig {
        retention: Duration::from_secs(3600),
        max_finished: 2,
    };
    let t = TaskTable::new("inst-1", config);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (mut s, tx) = driven(&t, "", params(f64::from(i))).unwrap();
        tx.send(Cmd::Complete(Struct::default())).unwrap();
        ids.push(last(&mut s).await.task.unwrap().task_id);
    }
    assert_eq!(t.get(&ids[0]).unwrap_err().code(), tonic::Code::NotFound);
    assert!(t.get(&ids[1]).is_ok() && t.get(&ids[2]).is_ok());
}

#[test]
fn execute_outside_a_runtime_is_an_error_not_a_panic() {
    let t = table();
    let err = t
        .execute("cap", Struct::default(), "", |h| async move {
            h.complete(Struct::default())
        })
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert_eq!(t.running(), 0);
}

#[test]
fn table_and_handle_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskTable>();
    assert_send_sync::<TaskHandle>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_outcomes_and_fail_running_end_every_task_once() {
    let t = table();
    let mut streams = Vec::new();
    for i in 0..50 {
        let s = t
            .execute("cap", params(f64::from(i)), "", |h| async move {
                for n in 0..20 {
                    h.progress(Some(f64::from(n) / 20.0), "step");
                    tokio::task::yield_now().await;
                }
                h.complete(Struct::default());
            })
            .unwrap();
        streams.push(s);
    }
    t.fail_running(codes::DRAIN_TIMEOUT, "stop", true);
    timeout(DEADLINE, t.idle()).await.unwrap();
    assert_eq!(t.running(), 0);
    for mut s in streams {
        let ev = last(&mut s).await;
        let task = ev.task.unwrap();
        assert!(is_terminal(task.state));
        assert_eq!(
            t.get(&task.task_id).unwrap(),
            task,
            "the terminal snapshot never changes"
        );
    }
}
