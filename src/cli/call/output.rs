//! What `call` writes: messages as canonical proto3 JSON on stdout, and a running task's progress
//! on stderr (a bar redrawn in place on a terminal, plain lines otherwise).
//!
//! Owns formatting only; it must not call anything or decide exit codes.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use beamline_mesh::proto::{TaskEvent, TaskState};

/// `TASK_STATE_WORKING` → `WORKING`.
pub(super) fn state_name(state: TaskState) -> &'static str {
    let name = state.as_str_name();
    name.strip_prefix("TASK_STATE_").unwrap_or(name)
}

/// Prints generated messages as canonical proto3 JSON by re-reading them through the
/// descriptor set (prost's own types know nothing of JSON).
pub(super) struct JsonPrinter {
    pool: DescriptorPool,
}

impl JsonPrinter {
    pub(super) fn new() -> anyhow::Result<JsonPrinter> {
        let pool = DescriptorPool::decode(beamline_mesh::proto::FILE_DESCRIPTOR_SET)
            .context("the embedded descriptor set does not decode")?;
        Ok(JsonPrinter { pool })
    }

    fn to_json<M: prost::Message>(
        &self,
        full_name: &str,
        message: &M,
        pretty: bool,
    ) -> anyhow::Result<String> {
        let descriptor = self
            .pool
            .get_message_by_name(full_name)
            .with_context(|| format!("{full_name} is not in the descriptor set"))?;
        let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .with_context(|| format!("re-decoding a {full_name}"))?;
        let options = SerializeOptions::new();
        let mut out = Vec::new();
        if pretty {
            let mut ser = serde_json::Serializer::pretty(&mut out);
            dynamic.serialize_with_options(&mut ser, &options)?;
        } else {
            let mut ser = serde_json::Serializer::new(&mut out);
            dynamic.serialize_with_options(&mut ser, &options)?;
        }
        String::from_utf8(out).context("JSON output is not UTF-8")
    }

    /// One document, indented for people (jq reads it just as well).
    pub(super) fn print_pretty<M: prost::Message>(
        &self,
        full_name: &str,
        message: &M,
    ) -> anyhow::Result<()> {
        let json = self.to_json(full_name, message, true)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")?;
        stdout.flush()?;
        Ok(())
    }

    /// One compact line, flushed at once so a pipe sees each event as it arrives.
    pub(super) fn print_line<M: prost::Message>(
        &self,
        full_name: &str,
        message: &M,
    ) -> anyhow::Result<()> {
        let json = self.to_json(full_name, message, false)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")?;
        stdout.flush()?;
        Ok(())
    }
}

/// Progress of a running task on stderr: one bar redrawn in place on a terminal, plain lines
/// (only when something changed) otherwise, e.g. in CI logs.
pub(super) struct ProgressView {
    tty: bool,
    /// A bar is on screen without its newline yet.
    drawn: bool,
    /// State and time of the last plain line.
    last_state: &'static str,
    last_line_at: Option<Instant>,
    fraction: Option<f64>,
    message: String,
}

/// Long messages would wrap, and `\r` only returns to the start of the last screen line.
const MAX_MESSAGE_CHARS: usize = 50;
const BAR_WIDTH: usize = 24;
/// Without a terminal, progress lines come at most this often (state changes always print).
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(1);

impl ProgressView {
    pub(super) fn new(tty: bool) -> ProgressView {
        ProgressView {
            tty,
            drawn: false,
            last_state: "",
            last_line_at: None,
            fraction: None,
            message: String::new(),
        }
    }

    pub(super) fn update(&mut self, event: &TaskEvent) {
        let Some(task) = &event.task else { return };
        let state = state_name(task.state());
        // An event without progress (a bare state change) keeps what the bar showed; a
        // progress without a fraction means unknown (not 0); a COMPLETED task is all done.
        if let Some(progress) = &event.progress {
            self.fraction = progress.fraction.map(|f| f.clamp(0.0, 1.0));
            self.message = progress.message.chars().take(MAX_MESSAGE_CHARS).collect();
        }
        if task.state() == TaskState::Completed {
            self.fraction = Some(1.0);
        }
        let (fraction, message) = (self.fraction, &self.message);
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let bar = match fraction {
                Some(f) => {
                    let filled = (f * BAR_WIDTH as f64).round() as usize;
                    format!(
                        "[{}{}] {:3.0}%",
                        "#".repeat(filled),
                        "-".repeat(BAR_WIDTH - filled),
                        f * 100.0
                    )
                }
                // Absent means unknown (not 0): show no amount rather than an empty bar.
                None => format!("[{:^w$}]     ", "…", w = BAR_WIDTH),
            };
            // \x1b[2K clears the previous, possibly longer, line.
            let _ = write!(
                stderr,
                "\r\x1b[2K{} {bar} {state:<9} {message}",
                task.capability
            );
            self.drawn = true;
        } else {
            // A log gets every state change but progress at most once a second: agents may
            // report many times a second, and each would be a line.
            let changed = self.last_state != state;
            let due = self
                .last_line_at
                .is_none_or(|at| at.elapsed() >= PLAIN_LINE_INTERVAL);
            if changed || due {
                let percent = fraction.map_or(String::new(), |f| format!(" {:.0}%", f * 100.0));
                let line = format!("task {} {state}{percent} {message}", task.task_id);
                let _ = writeln!(stderr, "{}", line.trim_end());
                self.last_state = state;
                self.last_line_at = Some(Instant::now());
            }
        }
        let _ = stderr.flush();
    }

    /// Ends the bar's line so later output starts on a fresh one.
    pub(super) fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
