//! The task table an agent's `BeamlineAgent` impl builds on: task ids, snapshots, subscriber
//! fan-out, progress, cancellation, idempotency keys and retention of finished tasks, so that an
//! agent's code is mostly its capabilities.
//!
//! Owns task lifecycle and fan-out; it knows nothing of Consul, draining or capabilities' meaning.
//!
//! Each task's latest event lives in a `watch` channel: a subscriber holds one receiver, so a slow
//! one sees progress coalesced (never unbounded buffering), and since nothing is ever written
//! after a terminal event, every subscriber ends on it. Lock order: the table's mutex, then a
//! task's watch; progress takes only the watch, terminal transitions take both, so "who ended the
//! task" is decided exactly once.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::Stream;
use prost_types::{Struct, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::proto::{Progress, Task, TaskError, TaskEvent, TaskState};

/// The `TaskError.code` vocabulary.
pub mod codes {
    /// The agent is draining and did not start the task.
    pub const DRAINING: &str = "DRAINING";
    /// The agent stopped before the task ended.
    pub const DRAIN_TIMEOUT: &str = "DRAIN_TIMEOUT";
    /// The hardware reported a fault.
    pub const HARDWARE_FAULT: &str = "HARDWARE_FAULT";
    /// A limit (travel, range, rate) would be exceeded.
    pub const LIMIT: &str = "LIMIT";
    /// A bug or an unexpected condition in the agent.
    pub const INTERNAL: &str = "INTERNAL";
}

/// A stream of task events as tonic serves it.
pub type TaskEventStream = Pin<Box<dyn Stream<Item = Result<TaskEvent, Status>> + Send + 'static>>;

/// Settings of a task table.
#[derive(Debug, Clone)]
pub struct TaskTableConfig {
    /// How long a finished task stays readable.
    pub retention: Duration,
    /// At most this many finished tasks are kept (oldest dropped first).
    pub max_finished: usize,
}

impl Default for TaskTableConfig {
    fn default() -> Self {
        TaskTableConfig {
            retention: Duration::from_secs(3600),
            max_finished: 10_000,
        }
    }
}

/// Whether a `Task.state` value is final (COMPLETED, FAILED, CANCELLED or REJECTED).
pub fn is_terminal(state: i32) -> bool {
    matches!(
        TaskState::try_from(state),
        Ok(TaskState::Completed | TaskState::Failed | TaskState::Cancelled | TaskState::Rejected)
    )
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct TaskTable {
    inner: Arc<Inner>,
}

/// What the worker of one task holds: it reports progress and the outcome, and watches for
/// cancellation. Dropping it without an outcome fails the task (INTERNAL), so no task hangs.
pub struct TaskHandle {
    inner: Arc<Inner>,
    cell: Arc<Cell>,
    /// Set once an outcome was reported, so that `Drop` does not report another.
    reported: bool,
}

struct Inner {
    instance_id: String,
    config: TaskTableConfig,
    /// Set when the agent drains: existing tasks stay readable (and an Execute retried with
    /// their idempotency key still gets them), new ones are refused as never started.
    refusing: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    /// The number of non-terminal tasks, for `idle()`; written only under `state`'s lock.
    running: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Arc<Cell>>,
    /// Idempotency key → the task it created.
    keys: HashMap<String, String>,
    /// Finished tasks in the order they finished, for retention.
    finished: VecDeque<(Instant, String)>,
    running: usize,
}

/// One task: the table and its worker's handle both hold it.
struct Cell {
    id: String,
    capability: String,
    params: Struct,
    key: Option<String>,
    /// The latest event; its `task` is always set.
    tx: watch::Sender<TaskEvent>,
    cancel: CancellationToken,
}

/// How a task ended.
struct Outcome(TaskState, Option<Struct>, Option<TaskError>);

impl Outcome {
    fn failed(state: TaskState, code: &str, message: String, retryable: bool) -> Outcome {
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

fn now() -> Option<Timestamp> {
    Some(Timestamp::from(SystemTime::now()))
}

impl Cell {
    fn task(&self) -> Task {
        self.tx.borrow().task.clone().unwrap_or_default()
    }

    /// Applies `change` to a non-terminal task and publishes it; false if nothing changed.
    fn update(&self, change: impl FnOnce(&mut Task, &mut Option<Progress>) -> bool) -> bool {
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
    fn stream(&self) -> TaskEventStream {
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

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the whole table down with it.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.evict(&self.config);
        st
    }
}

impl State {
    /// Ends a non-terminal task; the caller holds the table lock (so one caller wins) and
    /// publishes `running` afterwards. Returns whether this call ended the task.
    fn finish(&mut self, cell: &Cell, Outcome(state, result, error): Outcome) -> bool {
        let won = cell.update(|task, progress| {
            (task.state, task.result, task.error) = (state as i32, result, error);
            // Progress describes running work; a terminal event carries only the outcome.
            *progress = None;
            true
        });
        if won {
            self.running = self.running.saturating_sub(1);
            self.finished.push_back((Instant::now(), cell.id.clone()));
        }
        won
    }

    fn entry(&self, task_id: &str) -> Result<Arc<Cell>, Status> {
        let not_found = || Status::not_found(format!("task \"{task_id}\" not found"));
        self.tasks.get(task_id).cloned().ok_or_else(not_found)
    }

    /// Drops finished tasks past their retention or beyond `max_finished`, oldest first.
    fn evict(&mut self, config: &TaskTableConfig) {
        let now = Instant::now();
        while let Some((at, _)) = self.finished.front() {
            let expired = now.saturating_duration_since(*at) >= config.retention;
            if !expired && self.finished.len() <= config.max_finished {
                break;
            }
            let Some((_, id)) = self.finished.pop_front() else {
                break;
            };
            let key = self.tasks.remove(&id).and_then(|cell| cell.key.clone());
            if let Some(key) = key.filter(|k| self.keys.get(k) == Some(&id)) {
                self.keys.remove(&key);
            }
        }
    }
}

impl TaskTable {
    pub fn new(instance_id: impl Into<String>, config: TaskTableConfig) -> TaskTable {
        let state = Mutex::new(State::default());
        let instance_id = instance_id.into();
        let running = watch::Sender::new(0);
        TaskTable {
            inner: Arc::new(Inner {
                instance_id,
                config,
                refusing: Default::default(),
                state,
                running,
            }),
        }
    }

    /// Starts a task for `capability` with `params` and runs `work` on its own Tokio task; returns
    /// the Execute stream (first event: the new task; then progress; ends after the terminal
    /// event). A repeated non-empty `idempotency_key` returns a stream over the existing task
    /// instead (same params) or ALREADY_EXISTS (other params). Dropping the stream does not
    /// cancel the task.
    pub fn execute<F, Fut>(
        &self,
        capability: &str,
        params: Struct,
        idempotency_key: &str,
        work: F,
    ) -> Result<TaskEventStream, Status>
    where
        F: FnOnce(TaskHandle) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        // tokio::spawn panics outside a runtime; refuse before any task exists instead.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Status::internal("task table used outside a Tokio runtime"))?;
        let inner = &self.inner;
        let mut st = inner.lock();
        let key = (!idempotency_key.is_empty()).then(|| idempotency_key.to_string());
        if let Some(key) = &key {
            if let Some(cell) = st.keys.get(key).and_then(|id| st.tasks.get(id)) {
                if cell.capability == capability && cell.params == params {
                    return Ok(cell.stream());
                }
                return Err(Status::already_exists(format!(
                    "idempotency key \"{key}\" was already used with other params"
                )));
            }
        }

        if inner.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(super::drain::not_started_status());
        }
        let id = format!("{}/{}", inner.instance_id, uuid::Uuid::new_v4().simple());
        let task = Task {
            task_id: id.clone(),
            capability: capability.to_string(),
            state: TaskState::Submitted as i32,
            created_at: now(),
            updated_at: now(),
            ..Task::default()
        };
        let cell = Arc::new(Cell {
            id: id.clone(),
            capability: capability.to_string(),
            params,
            key,
            tx: watch::Sender::new(TaskEvent {
                task: Some(task),
                progress: None,
            }),
            cancel: CancellationToken::new(),
        });
        // Subscribed before the work starts, so the stream's first event is SUBMITTED however
        // quickly the work runs.
        let stream = cell.stream();
        if let Some(key) = &cell.key {
            st.keys.insert(key.clone(), id.clone());
        }
        st.tasks.insert(id, cell.clone());
        st.running += 1;
        inner.running.send_replace(st.running);
        drop(st);

        let inner = inner.clone();
        runtime.spawn(work(TaskHandle {
            inner,
            cell,
            reported: false,
        }));
        Ok(stream)
    }

    /// The task's current snapshot, or NOT_FOUND naming the id.
    pub fn get(&self, task_id: &str) -> Result<Task, Status> {
        Ok(self.inner.lock().entry(task_id)?.task())
    }

    /// The current snapshot, then every update until the task is terminal.
    pub fn subscribe(&self, task_id: &str) -> Result<TaskEventStream, Status> {
        Ok(self.inner.lock().entry(task_id)?.stream())
    }

    /// Asks the task to stop and returns it; idempotent; a terminal task is returned unchanged.
    pub fn cancel(&self, task_id: &str) -> Result<Task, Status> {
        let cell = self.inner.lock().entry(task_id)?;
        let task = cell.task();
        if !is_terminal(task.state) {
            cell.cancel.cancel();
        }
        Ok(task)
    }

    /// From now on, Execute of new work is refused with the drain's not-started status; tasks
    /// already known (by id or idempotency key) are still served.
    pub fn refuse_new(&self) {
        self.inner
            .refusing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Tasks not yet terminal.
    pub fn running(&self) -> usize {
        *self.inner.running.borrow()
    }

    /// Resolves once no task is running.
    pub async fn idle(&self) {
        let mut rx = self.inner.running.subscribe();
        // The sender lives in `inner`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Ends every running task as FAILED with `code` (the drain deadline passed).
    pub fn fail_running(&self, code: &str, message: &str, retryable: bool) {
        let mut st = self.inner.lock();
        let cells: Vec<Arc<Cell>> = st.tasks.values().cloned().collect();
        for cell in cells {
            let outcome = Outcome::failed(TaskState::Failed, code, message.into(), retryable);
            if st.finish(&cell, outcome) {
                cell.cancel.cancel();
            }
        }
        self.inner.running.send_replace(st.running);
        st.evict(&self.inner.config);
    }
}

impl TaskHandle {
    pub fn task_id(&self) -> &str {
        &self.cell.id
    }

    pub fn params(&self) -> &Struct {
        &self.cell.params
    }

    /// The task's cancellation token, for `select!` or handing to helpers.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cell.cancel.clone()
    }

    /// Moves the task to WORKING (done implicitly by the first `progress`).
    pub fn working(&self) {
        self.cell.update(|task, _| {
            let submitted = task.state == TaskState::Submitted as i32;
            task.state = TaskState::Working as i32;
            submitted
        });
    }

    /// Reports progress; `fraction` None means unknown. A fraction that is not a finite number
    /// is reported as unknown; others are clamped to 0..=1.
    pub fn progress(&self, fraction: Option<f64>, message: impl Into<String>) {
        let fraction = fraction
            .filter(|f| f.is_finite())
            .map(|f| f.clamp(0.0, 1.0));
        let message = message.into();
        self.cell.update(|task, progress| {
            task.state = TaskState::Working as i32;
            *progress = Some(Progress { fraction, message });
            true
        });
    }

    pub fn is_cancelled(&self) -> bool {
        self.cell.cancel.is_cancelled()
    }

    /// Resolves when Cancel was called for this task (or the agent is failing running tasks).
    pub async fn cancelled(&self) {
        self.cell.cancel.cancelled().await
    }

    pub fn complete(mut self, result: Struct) {
        self.end(Outcome(TaskState::Completed, Some(result), None));
    }

    pub fn fail(mut self, code: &str, message: impl Into<String>, retryable: bool) {
        self.end(Outcome::failed(
            TaskState::Failed,
            code,
            message.into(),
            retryable,
        ));
    }

    /// Ends the task as CANCELLED (after the work stopped on `cancelled()`).
    pub fn cancelled_done(mut self) {
        self.end(Outcome(TaskState::Cancelled, None, None));
    }

    /// Ends the task as REJECTED: the work refused it before doing anything.
    pub fn reject(mut self, code: &str, message: impl Into<String>) {
        self.end(Outcome::failed(
            TaskState::Rejected,
            code,
            message.into(),
            false,
        ));
    }

    /// Outcomes after the task already ended (e.g. `fail_running` during a drain) are ignored.
    fn end(&mut self, outcome: Outcome) {
        self.reported = true;
        let mut st = self.inner.lock();
        if st.finish(&self.cell, outcome) {
            self.inner.running.send_replace(st.running);
            st.evict(&self.inner.config);
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if !self.reported {
            // Tokio drops a panicked future after unwinding: a panic looks the same as a return.
            let message = "the task's work ended (returned or panicked) without an outcome";
            self.end(Outcome::failed(
                TaskState::Failed,
                codes::INTERNAL,
                message.into(),
                false,
            ));
        }
    }
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
