//! The queue that writes access-log lines off the call's path.
//!
//! Why a queue: formatting a line (`tracing`'s formatter: fields, timestamp) costs a few
//! microseconds, and at the end of a call it sits between the agent's trailers and the caller —
//! more than the rest of the policy layers together. Queued, a call only moves its record into a
//! vector; a thread of the queue's own emits the lines (through the `tracing` dispatcher that
//! was current where the queue was made) in batches, woken once per batch. Lines keep their
//! order, and each carries its call's start time (`started`), so the log time of a line, which
//! may trail the call by up to `BATCH_WINDOW`, is never the only time it has.
//!
//! Owns when lines are emitted; it must not shape a line (`access_log`'s).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::access_log::AccessLine;

/// How long the queue's thread gathers lines after the first one of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

struct Pending {
    lines: Vec<AccessLine>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Pending> {
    shared.pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines waiting for the queue's thread. Dropping the queue emits what is left and ends the
/// thread.
pub struct LineQueue {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LineQueue {
    /// A queue whose thread emits through the `tracing` dispatcher current here.
    pub fn start() -> std::io::Result<LineQueue> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || emit_batches(&worker))
            })?;
        Ok(LineQueue {
            shared,
            thread: Some(thread),
        })
    }

    pub fn push(&self, line: AccessLine) {
        let first = {
            let mut pending = lock(&self.shared);
            pending.lines.push(line);
            pending.lines.len() == 1
        };
        if first {
            self.shared.wake.notify_one();
        }
    }
}

fn emit_batches(shared: &Shared) {
    loop {
        let mut pending = lock(shared);
        while pending.lines.is_empty() && !pending.closed {
            pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(BATCH_WINDOW);
            pending = lock(shared);
        }
        let batch = std::mem::take(&mut pending.lines);
        let closed = pending.closed;
        drop(pending);
        for line in &batch {
            line.emit();
        }
        if closed {
            return;
        }
    }
}

impl Drop for LineQueue {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines pushed after the thread's last batch.
        for line in std::mem::take(&mut lock(&self.shared).lines) {
            line.emit();
        }
    }
}
