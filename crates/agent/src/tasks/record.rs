//! Task records: one task's `Cell` (its latest event, the subscribers' channel, its
//! cancellation) and the table's `State` (records by id and by idempotency key, and the
//! finished ones' retention).
//!
//! Owns how a record changes, and drops the finished ones `retention` says are due (reading the
//! clock for it); it must not decide who may start or end a task (the table and the worker's
//! handle do) nor lock the table itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prost_types::{Struct, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::retention::Retention;
use super::{is_terminal, TaskEventStream, TaskTableConfig};
use beamline_contract::proto::{Progress, Task, TaskError, TaskEvent, TaskState};
use beamline_contract::quote::quote;

/// Every record the table holds; only ever touched under the table's lock.
pub(super) struct State {
    pub(super) tasks: HashMap<String, Arc<Cell>>,
    /// Idempotency key → the task it created.
    pub(super) keys: HashMap<String, String>,
    /// Which finished tasks to drop, and when.
    retention: Retention,
    pub(super) running: usize,
}

/// One task: the table and its worker's handle both hold it.
pub(super) struct Cell {
    pub(super) id: String,
    pub(super) capability: String,
    pub(super) params: Struct,
    pub(super) key: Option<String>,
    /// The latest event; its `task` is always set.
    pub(super) tx: watch::Sender<TaskEvent>,
    pub(super) cancel: CancellationToken,
}

/// How a task ended.
pub(super) struct Outcome(
    pub(super) TaskState,
    pub(super) Option<Struct>,
    pub(super) Option<TaskError>,
);

impl Outcome {
    pub(super) fn failed(
        state: TaskState,
        code: &str,
        message: String,
        retryable: bool,
    ) -> Outcome {
        let code = code.to_string();
        Outcome(
            state,
            None,
            Some(TaskError {
                code,
                message,
                retryable,
            }),
        )
    }
}

pub(super) fn now() -> Option<Timestamp> {
    Some(Timestamp::from(SystemTime::now()))
}

impl Cell {
    pub(super) fn task(&self) -> Task {
        self.tx.borrow().task.clone().unwrap_or_default()
    }

    /// Applies `change` to a non-terminal task and publishes it; false if nothing changed.
    pub(super) fn update(
        &self,
        change: impl FnOnce(&mut Task, &mut Option<Progress>) -> bool,
    ) -> bool {
        self.tx.send_if_modified(|ev| {
            let task = ev.task.get_or_insert_with(Task::default);
            if is_terminal(task.state) || !change(task, &mut ev.progress) {
                return false;
            }
            task.updated_at = now();
            true
        })
    }

    /// The current snapshot, then every update until the task is terminal.
    pub(super) fn stream(&self) -> TaskEventStream {
        let mut rx = self.tx.subscribe();
        let first = rx.borrow_and_update().clone();
        let stream = futures::stream::unfold(Some((Some(first), rx)), |state| async move {
            let (first, mut rx) = state?;
            let event = match first {
                Some(event) => event,
                // Err: the sender is gone, which only happens after a terminal value we yielded.
                None => match rx.changed().await {
                    Ok(()) => rx.borrow_and_update().clone(),
                    Err(_) => return None,
                },
            };
            let terminal = event.task.as_ref().is_none_or(|t| is_terminal(t.state));
            Some((Ok(event), (!terminal).then_some((None, rx))))
        });
        Box::pin(stream)
    }
}

impl State {
    /// No task yet; finished ones are kept as `config` says.
    pub(super) fn new(config: &TaskTableConfig) -> State {
        State {
            tasks: HashMap::new(),
            keys: HashMap::new(),
            retention: Retention::new(config.retention, config.max_finished),
            running: 0,
        }
    }

    /// See [`super::TaskTable::existing`]; the caller holds the table lock.
    pub(super) fn existing(
        &self,
        capability: &str,
        params: &prost_types::Struct,
        idempotency_key: &str,
    ) -> Option<Result<super::TaskEventStream, tonic::Status>> {
        if idempotency_key.is_empty() {
            return None;
        }
        let cell = self.tasks.get(self.keys.get(idempotency_key)?)?;
        if cell.capability == capability && cell.params == *params {
            return Some(Ok(cell.stream()));
        }
        // The key is caller input: quote a bounded part of it.
        let key: String = idempotency_key.chars().take(64).collect();
        let cut = if key.len() < idempotency_key.len() {
            "…"
        } else {
            ""
        };
        Some(Err(tonic::Status::already_exists(format!(
            "idempotency key \"{key}{cut}\" was already used with other params"
        ))))
    }

    /// Ends a non-terminal task; the caller holds the table lock (so one caller wins) and
    /// publishes `running` afterwards. Returns whether this call ended the task.
    pub(super) fn finish(&mut self, cell: &Cell, Outcome(state, result, error): Outcome) -> bool {
        let won = cell.update(|task, progress| {
            (task.state, task.result, task.error) = (state as i32, result, error);
            // Progress describes running work; a terminal event carries only the outcome.
            *progress = None;
            true
        });
        if won {
            self.running = self.running.saturating_sub(1);
            self.retention.on_finished(cell.id.clone(), Instant::now());
        }
        won
    }

    pub(super) fn entry(&self, task_id: &str) -> Result<Arc<Cell>, Status> {
        let not_found = || Status::not_found(format!("task {} not found", quote(task_id)));
        self.tasks.get(task_id).cloned().ok_or_else(not_found)
    }

    /// Drops the finished tasks past their retention or beyond `max_finished`, oldest first,
    /// with the idempotency keys that still name them.
    pub(super) fn evict(&mut self) {
        for id in self.retention.expired(Instant::now()) {
            let key = self.tasks.remove(&id).and_then(|cell| cell.key.clone());
            if let Some(key) = key.filter(|k| self.keys.get(k) == Some(&id)) {
                self.keys.remove(&key);
            }
        }
    }
}
