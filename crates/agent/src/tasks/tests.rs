//! Tests of the task table and its handles, driven through their public API.
//!
//! One child module per concern; this one keeps the fixtures they share: a table, and a task
//! whose work a test steers command by command.

use std::time::Duration;

use futures::StreamExt;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;

mod drain;
mod handle;
mod retention;
mod stream;

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
async fn past_the_running_limit_execute_is_resource_exhausted_until_one_ends() {
    let config = TaskTableConfig {
        max_running: 2,
        ..TaskTableConfig::default()
    };
    let table = TaskTable::new("inst-1", config);
    let (mut first, first_cmd) = driven(&table, "", params(1.0)).unwrap();
    let (_second, _second_cmd) = driven(&table, "", params(2.0)).unwrap();
    let Err(status) = driven(&table, "", params(3.0)) else {
        panic!("a third task started past the limit of 2");
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    first_cmd.send(Cmd::Complete(params(9.0))).unwrap();
    last(&mut first).await;
    let (_third, _) = driven(&table, "", params(3.0)).expect("room again once one ended");
}
