//! The worker's side of a task: WORKING and progress, cancellation as the work sees it, and a
//! handle dropped without an outcome.

use prost_types::Struct;

use super::*;

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

#[test]
fn table_and_handle_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TaskTable>();
    assert_send_sync::<TaskHandle>();
}
