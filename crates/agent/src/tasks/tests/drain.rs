//! What the agent's drain relies on: `idle` and `fail_running`, including `fail_running` racing
//! the work's own outcomes.

use prost_types::Struct;
use tokio::time::timeout;

use super::*;

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
