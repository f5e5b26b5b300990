//! Stderr for the servers (registry, agent, gateway): log lines are appended to a buffer that a
//! thread of its own writes out a few milliseconds after the first line of a batch, or sooner
//! when it fills; with nothing to write the thread sleeps.
//!
//! Why: the gateway writes an access-log line per call. Written in place, each line is a
//! `write(2)` on the call's path; handed to a writer thread one by one (tracing-appender), each
//! line wakes that thread — either costs more than the rest of the policy layers together. Here
//! a line costs a short lock and a copy, and the writer is woken once per batch. Nothing is dropped:
//! a logger that finds the buffer over its bound writes it out itself (ordered with the
//! writer thread's output). Lines can lag by up to `FLUSH_EVERY`; `kill -9` loses at most that.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread gathers lines after the first of a batch.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this many buffered bytes the writer thread is woken early.
const WAKE_AT: usize = 256 * 1024;
/// Past this many, the logger writes the buffer itself (backpressure instead of loss).
const WRITE_INLINE_AT: usize = 4 * 1024 * 1024;

struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Stderr. Held while a chunk is taken and written, so chunks reach it in order.
    output: Mutex<Box<dyn Write + Send>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn write_out(&self) {
        let mut output = lock(&self.output);
        let chunk = std::mem::take(&mut lock(&self.pending).lines);
        if chunk.is_empty() {
            return;
        }
        // Nowhere to report a failing stderr; the lines are gone either way.
        let _ = output.write_all(&chunk);
        let _ = output.flush();
    }
}

/// The `MakeWriter` for `tracing_subscriber::fmt`.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writer thread when dropped (hold it until `main` ends).
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedStderr {
    /// The writer, and the guard whose drop writes the rest; starts the writer thread.
    pub fn start() -> std::io::Result<(BatchedStderr, WriterGuard)> {
        BatchedStderr::to(Box::new(std::io::stderr()))
    }

    fn to(output: Box<dyn Write + Send>) -> std::io::Result<(BatchedStderr, WriterGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            output: Mutex::new(output),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&writer))?;
        Ok((
            BatchedStderr {
                shared: shared.clone(),
            },
            WriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

/// Sleeps while there is nothing to write (an idle server wakes no one), gathers lines for
/// `FLUSH_EVERY` after the first of a batch, writes them.
fn write_batches(shared: &Shared) {
    loop {
        let mut pending = lock(&shared.pending);
        while pending.lines.is_empty() && !pending.closed {
            pending = shared.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        let (pending, _) = shared
            .wake
            .wait_timeout_while(pending, FLUSH_EVERY, |p| {
                !p.closed && p.lines.len() < WAKE_AT
            })
            .unwrap_or_else(|e| e.into_inner());
        let closed = pending.closed;
        drop(pending);
        shared.write_out();
        if closed {
            return;
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged after the thread saw `closed` (other threads still running).
        self.shared.write_out();
    }
}

/// One event's output: appended to the buffer.
pub struct Appender<'a> {
    shared: &'a Shared,
}

impl Write for Appender<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let (buffered, first) = {
            let mut pending = lock(&self.shared.pending);
            let first = pending.lines.is_empty();
            pending.lines.extend_from_slice(bytes);
            (pending.lines.len(), first)
        };
        if buffered >= WRITE_INLINE_AT {
            self.shared.write_out();
        } else if first || buffered >= WAKE_AT {
            // The first line of a batch starts the writer's clock; a full buffer cuts it short.
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Appender<'a>;

    fn make_writer(&'a self) -> Appender<'a> {
        Appender {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests;
