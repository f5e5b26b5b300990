//! `TaskHandle`, what the worker of one task holds: progress, cancellation and the outcome.
//!
//! Owns the worker's side of a task, including failing a task whose worker ended without an
//! outcome; it must not create tasks or serve readers (the table does).

use std::sync::Arc;

use prost_types::Struct;
use tokio_util::sync::CancellationToken;

use super::record::{Cell, Outcome};
use super::{codes, Inner};
use beamline_contract::proto::{Progress, TaskState};

/// A task's result as it travels: a `google.protobuf.Struct`.
pub struct TaskResult(Struct);

impl From<Struct> for TaskResult {
    fn from(result: Struct) -> TaskResult {
        TaskResult(result)
    }
}

impl From<serde_json::Value> for TaskResult {
    fn from(result: serde_json::Value) -> TaskResult {
        TaskResult(crate::capabilities::json_to_struct(&result))
    }
}

/// What the worker of one task holds: it reports progress and the outcome, and watches for
/// cancellation. Dropping it without an outcome fails the task (INTERNAL), so no task hangs.
pub struct TaskHandle {
    inner: Arc<Inner>,
    cell: Arc<Cell>,
    /// Set once an outcome was reported, so that `Drop` does not report another.
    reported: bool,
}

impl TaskHandle {
    /// The handle for `cell`'s worker, before any outcome.
    pub(super) fn new(inner: Arc<Inner>, cell: Arc<Cell>) -> TaskHandle {
        TaskHandle {
            inner,
            cell,
            reported: false,
        }
    }

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

    /// Completes the task with `result`: a `Struct`, or JSON (`serde_json::json!`) — an object
    /// becomes the Struct's fields, any other value `{"value": …}`.
    pub fn complete(mut self, result: impl Into<TaskResult>) {
        self.end(Outcome(TaskState::Completed, Some(result.into().0), None));
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
            st.evict();
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
