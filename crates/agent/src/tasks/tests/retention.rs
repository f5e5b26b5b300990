//! How long finished tasks stay readable: the retention period and `max_finished`.

use std::time::Duration;

use prost_types::Struct;

use super::*;

#[tokio::test]
async fn finished_tasks_expire_but_running_ones_stay() {
    let config = TaskTableConfig {
        retention: Duration::ZERO,
        max_finished: 100,
        ..TaskTableConfig::default()
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
        ..TaskTableConfig::default()
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
