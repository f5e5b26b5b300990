//! Commands run to their exit: `beamline-mesh <args>` (or any command) with optional stdin, its
//! output collected, bounded by a timeout after which it is killed. For invocations that must
//! fail at start or that answer and exit.
//!
//! Owns short-lived processes only; it must not keep one running (a serving agent is the parent
//! module's [`AgentProc`](super::AgentProc)).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::agent_command;
use crate::support::deadline::wait_exit;

/// What a process that was expected to exit by itself did.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `beamline-mesh <args>` to its exit, bounded by `timeout` (then it is killed and this
/// panics). For invocations that must fail at start.
pub fn run_to_exit(args: &[&str], timeout: Duration) -> Exited {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_bounded(agent_command(&args), None, timeout)
}

/// Runs `command` to its exit with `stdin` (none: an empty input), collecting its output,
/// bounded by `timeout` (then it is killed and this panics).
pub fn run_bounded(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Exited {
    let label = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn beamline-mesh");
    let writer = stdin.map(|data| {
        let mut input = child.stdin.take().expect("stdin");
        let data = data.to_string();
        // Dropping `input` at the end closes stdin.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut input, data.as_bytes());
        })
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let Some(status) = wait_exit(&mut child, timeout) else {
        panic!("{label} did not exit within {timeout:?}");
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Exited {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
