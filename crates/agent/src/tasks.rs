//! The task table an agent's `BeamlineAgent` impl builds on: task ids, snapshots, subscriber
//! fan-out, progress, cancellation, idempotency keys and retention of finished tasks, so that an
//! agent's code is mostly its capabilities.
//!
//! Owns task lifecycle and fan-out; it knows nothing of Consul, draining or capabilities' meaning.
//! This module is the table callers use; the records are `record`, when finished ones are dropped
//! is `retention`, the worker's side of a task is `handle`.
//!
//! Each task's latest event lives in a `watch` channel: a subscriber holds one receiver, so a slow
//! one sees progress coalesced (never unbounded buffering), and since nothing is ever written
//! after a terminal event, every subscriber ends on it. Lock order: the table's mutex, then a
//! task's watch; progress takes only the watch, terminal transitions take both, so "who ended the
//! task" is decided exactly once.

mod handle;
mod record;
mod retention;

pub use handle::{TaskHandle, TaskResult};

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::Stream;
use prost_types::Struct;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use beamline_contract::proto::{Task, TaskEvent, TaskState};
use record::{now, Cell, Outcome, State};

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
    /// The beamline (or every beamline) was halted while the task ran: it ended CANCELLED, the
    /// message says who halted it, when and why.
    pub const HALTED: &str = "HALTED";
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
    /// At most this many tasks run at once; another Execute is RESOURCE_EXHAUSTED.
    pub max_running: usize,
}

impl Default for TaskTableConfig {
    fn default() -> Self {
        TaskTableConfig {
            retention: Duration::from_secs(3600),
            max_finished: 10_000,
            max_running: 1_000,
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

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the whole table down with it.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.evict();
        st
    }
}

impl TaskTable {
    pub fn new(instance_id: impl Into<String>, config: TaskTableConfig) -> TaskTable {
        let state = Mutex::new(State::new(&config));
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
    /// cancel the task. A task ended before its work starts (a halt, a drain) never starts it.
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
        self.execute_checked(capability, params, idempotency_key, || Ok(()), work)
    }

    /// [`TaskTable::execute`], asking `check` first under the table's lock, after a repeated
    /// idempotency key was answered and before anything else: its refusal is Execute's, and
    /// no task exists. Whatever ends tasks in bulk ([`TaskTable::cancel_running`]) takes the
    /// same lock, so a check that passes and the task it admits are one step for it: a halt
    /// published before the check is refused by it, one published after finds the task in
    /// the table (and the work, if not started yet, never starts).
    pub fn execute_checked<F, Fut>(
        &self,
        capability: &str,
        params: Struct,
        idempotency_key: &str,
        check: impl FnOnce() -> Result<(), Status>,
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
        if let Some(existing) = st.existing(capability, &params, idempotency_key) {
            return existing;
        }
        check()?;
        let key = (!idempotency_key.is_empty()).then(|| idempotency_key.to_string());

        if inner.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(super::drain::not_started_status());
        }
        if st.running >= inner.config.max_running {
            return Err(Status::resource_exhausted(format!(
                "the agent already runs {} tasks, its limit (--max-tasks); try again when one \
                 has ended",
                st.running
            )));
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
        runtime.spawn(async move {
            // Ended between here and now (a halt's sweep, a drain's deadline): the work, which
            // may move hardware before it looks at its cancellation, is dropped unrun.
            if is_terminal(cell.task().state) {
                return;
            }
            work(TaskHandle::new(inner, cell)).await
        });
        Ok(stream)
    }

    /// What Execute answers for a repeated `idempotency_key` without running anything: a stream
    /// over the task the key already names (same capability and params), or ALREADY_EXISTS
    /// (other ones); `None` when the key is empty or names no task. An agent asks this before
    /// its admission checks, so a retry of the very call that holds a resource is answered with
    /// its task, not refused because the resource is busy.
    pub fn existing(
        &self,
        capability: &str,
        params: &Struct,
        idempotency_key: &str,
    ) -> Option<Result<TaskEventStream, Status>> {
        self.inner
            .lock()
            .existing(capability, params, idempotency_key)
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
        self.end_running(|_| true, TaskState::Failed, code, message, retryable);
    }

    /// Ends every running task whose capability `which` names as CANCELLED with `code` (not
    /// retryable), and tells its work to stop; returns how many it ended. The task is ended
    /// here, not when its work notices: a halt promises a bounded time, whatever the work does
    /// (what it reports afterwards is ignored, as after a drain).
    pub fn cancel_running(&self, which: impl Fn(&str) -> bool, code: &str, message: &str) -> usize {
        self.end_running(which, TaskState::Cancelled, code, message, false)
    }

    fn end_running(
        &self,
        which: impl Fn(&str) -> bool,
        state: TaskState,
        code: &str,
        message: &str,
        retryable: bool,
    ) -> usize {
        let mut st = self.inner.lock();
        let cells: Vec<Arc<Cell>> = st
            .tasks
            .values()
            .filter(|cell| which(&cell.capability))
            .cloned()
            .collect();
        let mut ended = 0;
        for cell in cells {
            let outcome = Outcome::failed(state, code, message.into(), retryable);
            if st.finish(&cell, outcome) {
                cell.cancel.cancel();
                ended += 1;
            }
        }
        self.inner.running.send_replace(st.running);
        st.evict();
        ended
    }
}

#[cfg(test)]
mod tests;
