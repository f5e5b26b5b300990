//! The drain's wait as the runtime drives it, on paused time: the grace is served, quiet stops
//! it, and at the timeout what still runs is failed as DRAIN_TIMEOUT.

use std::time::Duration;

use prost_types::Struct;
use tokio::time::Instant;

use super::*;
use beamline_consul::ConsulConfig;
use beamline_contract::proto::TaskState;

fn config() -> AgentConfig {
    let consul = ConsulConfig::new("127.0.0.1:8500").unwrap();
    let mut config = AgentConfig::new("127.0.0.1:0".parse().unwrap(), consul);
    config.drain_grace = Duration::from_secs(2);
    config.drain_timeout = Duration::from_secs(30);
    config
}

/// Starts a task whose work ends when `end` is cancelled (or when the task is failed).
async fn task(tasks: &TaskTable, end: CancellationToken) -> String {
    let mut stream = tasks
        .execute("c", Struct::default(), "", move |handle| async move {
            tokio::select! {
                _ = end.cancelled() => handle.complete(serde_json::json!({})),
                _ = handle.cancelled() => {}
            }
        })
        .unwrap();
    let first = futures::StreamExt::next(&mut stream).await;
    first.unwrap().unwrap().task.unwrap().task_id
}

#[tokio::test(start_paused = true)]
async fn with_nothing_running_the_whole_grace_is_served() {
    let (drain, tasks, config) = (
        Drain::default(),
        TaskTable::new("i", Default::default()),
        config(),
    );
    let t0 = Instant::now();
    wait_out_the_drain(&drain, &tasks, &config).await;
    assert_eq!(t0.elapsed(), config.drain_grace);
}

#[tokio::test(start_paused = true)]
async fn a_task_ending_after_the_grace_is_waited_for() {
    let (drain, tasks, config) = (
        Drain::default(),
        TaskTable::new("i", Default::default()),
        config(),
    );
    let end = CancellationToken::new();
    let id = task(&tasks, end.clone()).await;
    let ender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        end.cancel();
    });
    let t0 = Instant::now();
    wait_out_the_drain(&drain, &tasks, &config).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    assert_eq!(tasks.get(&id).unwrap().state, TaskState::Completed as i32);
    ender.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn at_the_timeout_a_running_task_is_failed_as_drain_timeout() {
    let (drain, tasks, config) = (
        Drain::default(),
        TaskTable::new("i", Default::default()),
        config(),
    );
    let id = task(&tasks, CancellationToken::new()).await;
    let t0 = Instant::now();
    wait_out_the_drain(&drain, &tasks, &config).await;
    assert_eq!(t0.elapsed(), config.drain_timeout);
    let failed = tasks.get(&id).unwrap();
    assert_eq!(failed.state, TaskState::Failed as i32);
    assert_eq!(failed.error.unwrap().code, codes::DRAIN_TIMEOUT);
    assert_eq!(tasks.running(), 0);
}
