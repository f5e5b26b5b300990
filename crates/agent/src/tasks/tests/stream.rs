//! What callers of the table see: Execute's stream, Subscribe and Get, task ids, idempotency
//! keys, and the errors for unknown ids or a missing runtime.

use std::sync::atomic::{AtomicUsize, Ordering};

use prost_types::Struct;
use tokio::time::timeout;

use super::*;

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
