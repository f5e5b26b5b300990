//! The `beamline-mesh call` process: run to its exit against a deadline ([`call`]), or kept
//! running ([`CallProc`]) to watch its stderr and signal it. Every process is killed (and
//! reaped) if it outlives its deadline or its handle.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wait_exit;

/// How long one `call` may take in a test (the agent answers in well under a second; a move
/// takes a few).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished `call` printed, and how it exited.
#[derive(Debug)]
pub struct CallOutput {
    pub args: Vec<String>,
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CallOutput {
    /// Asserts the exit code, showing both outputs on failure.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "beamline-mesh {:?}: expected exit {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn expect_stderr(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "beamline-mesh {:?}: stderr does not contain {needle:?}\n--- stderr ---\n{}",
            self.args,
            self.stderr
        );
        self
    }

    /// Stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "beamline-mesh {:?}: stdout is not one JSON document ({e}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// Stdout as JSON lines (each non-empty line one document).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("beamline-mesh {:?}: line {l:?} is not JSON: {e}", self.args)
                })
            })
            .collect()
    }
}

fn call_command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamline-mesh"));
    cmd.arg("call")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Only the flags say where to go in these tests.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("RUST_LOG", "warn");
    cmd
}

/// `beamline-mesh call <args>` to its exit, bounded by [`CALL_TIMEOUT`].
pub fn call(args: &[&str]) -> CallOutput {
    CallProc::spawn(args).wait(CALL_TIMEOUT)
}

/// [`call`] off the async runtime's threads (the wait blocks).
pub async fn call_async(args: &[&str]) -> CallOutput {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        call(&args)
    })
    .await
    .expect("call thread")
}

/// A running `beamline-mesh call`. Killed (and reaped) on drop.
pub struct CallProc {
    args: Vec<String>,
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    /// Every stderr line so far, and a channel that gets each as it comes.
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_rx: mpsc::Receiver<String>,
    stderr_done: Option<JoinHandle<()>>,
}

impl CallProc {
    pub fn spawn(args: &[&str]) -> CallProc {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut child = call_command(&args)
            .spawn()
            .expect("spawn beamline-mesh call");
        let mut stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = Arc::clone(&lines);
        let stderr_done = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        CallProc {
            args,
            child: Some(child),
            stdout: Some(stdout),
            stderr_lines: lines,
            stderr_rx: rx,
            stderr_done: Some(stderr_done),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("call has exited").id()
    }

    /// The first stderr line from now on that satisfies `pred`; panics after `timeout`.
    pub fn wait_stderr_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "beamline-mesh call {:?}: no matching stderr line within {timeout:?}; \
                     stderr so far:\n{}",
                    self.args,
                    self.stderr_lines.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn sigint(&self) {
        super::signal::send(self.pid(), libc::SIGINT);
    }

    /// Waits for the exit (polling); kills the process and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> CallOutput {
        let mut child = self.child.take().expect("call already waited for");
        let Some(status) = wait_exit(&mut child, timeout) else {
            panic!(
                "beamline-mesh call {:?} did not exit within {timeout:?}; stderr:\n{}",
                self.args,
                self.stderr_lines.lock().unwrap().join("\n")
            );
        };
        // The pipes close with the process, so the readers end.
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if let Some(h) = self.stderr_done.take() {
            let _ = h.join();
        }
        let stderr = self.stderr_lines.lock().unwrap().join("\n");
        CallOutput {
            args: self.args.clone(),
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for CallProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
